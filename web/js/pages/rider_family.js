// Family tab of the profile sheet. It lists the linked people with their
// relationship and the legal guardian and payer flags. Staff link an
// existing person found by a search, or a new person, and remove links.

import { api, ApiError, query } from '../api.js';
import { h, replace, announce, formatDate, personName, uniqueId } from '../dom.js';
import { formField, showMessage, showFieldErrors, clearFieldErrors, confirmDialog, withBusy } from '../ui.js';

const RELATIONSHIPS = ['mère', 'père', 'fille', 'fils', 'enfant', 'sœur', 'frère', 'conjoint', 'conjointe',
  'grand-mère', 'grand-père', 'tante', 'oncle', 'tuteur', 'tutrice', 'autre'];

export function familyPanel(ctx, rider, panel) {
  const { app } = ctx;
  const canEdit = app.canOn('family.update', rider.id);
  const listHolder = h('div', {});
  const listMessages = h('div', { class: 'form-messages' });

  function renderList() {
    const links = rider.family || [];
    if (!links.length) {
      replace(listHolder, h('p', { class: 'empty' }, 'Aucun membre de la famille n’est lié à cette fiche.'));
      return;
    }
    const thisName = personName({ first_name: rider.fields.first_name, last_name: rider.fields.last_name });
    replace(listHolder, h('ul', { class: 'family-list' }, links.map((link) => {
      const other = personName(link.person);
      const explanation = link.direction === 'parent'
        ? `${other} est ${link.relationship ? `« ${link.relationship} »` : 'un proche'} de ${thisName}.`
        : `${thisName} est ${link.relationship ? `« ${link.relationship} »` : 'un proche'} de ${other}.`;
      const remove = canEdit ? h('button', {
        type: 'button', class: 'button button--small button--danger-ghost',
        onclick: async () => {
          const ok = await confirmDialog('Retirer le lien familial',
            `Le lien entre ${thisName} et ${other} sera supprimé. Les deux fiches restent enregistrées.`, 'Retirer le lien');
          if (!ok) return;
          try {
            await api('DELETE', `/riders/${rider.id}/family/${link.link_id}`);
            rider.family = rider.family.filter((l) => l.link_id !== link.link_id);
            renderList();
            showMessage(listMessages, 'success', `Le lien avec ${other} a été retiré.`);
          } catch (err) {
            if (err.status !== 401) showMessage(listMessages, 'error', err.message);
          }
        },
      }, 'Retirer le lien', h('span', { class: 'visually-hidden' }, ` avec ${other}`)) : null;
      return h('li', { class: 'family-card', 'data-link-id': link.link_id },
        h('div', { class: 'family-card__main' },
          h('a', { href: `/cavaliers/${link.person.id}`, class: 'family-card__name' }, other),
          h('span', { class: 'family-card__relationship' }, link.relationship || ''),
          h('p', { class: 'muted family-card__explanation' }, explanation),
          h('p', { class: 'badges' },
            link.is_legal_guardian ? h('span', { class: 'badge badge--info' }, 'Responsable légal') : null,
            link.is_payer ? h('span', { class: 'badge badge--info' }, 'Payeur') : null)),
        remove);
    })));
  }

  replace(panel, h('h2', {}, 'Famille'), listMessages, listHolder, canEdit ? addForm(ctx, rider, () => {
    renderList();
  }) : null);
  renderList();
}

// Form that links an existing person (found by search) or a new one.
function addForm(ctx, rider, onAdded) {
  const thisFirstName = rider.fields.first_name && rider.fields.first_name !== '.' ? rider.fields.first_name : 'cette personne';
  const messages = h('div', { class: 'form-messages' });
  let chosen = null;

  // ---- mode: existing or new person ----
  const modeName = uniqueId('mode');
  const existingId = uniqueId('mode-existant');
  const newId = uniqueId('mode-nouveau');
  const modeExisting = h('input', { type: 'radio', name: modeName, id: existingId, value: 'existant', checked: true });
  const modeNew = h('input', { type: 'radio', name: modeName, id: newId, value: 'nouveau' });
  const modeFieldset = h('fieldset', { class: 'plain' },
    h('legend', {}, 'Personne à lier'),
    h('div', { class: 'checkbox-row' },
      h('div', { class: 'field field--checkbox' }, modeExisting, h('label', { for: existingId }, 'Une personne déjà enregistrée')),
      h('div', { class: 'field field--checkbox' }, modeNew, h('label', { for: newId }, 'Une nouvelle personne'))));

  // ---- existing person: search ----
  const search = formField({ name: 'person_search', label: 'Rechercher la personne', type: 'search', help: 'Nom, numéro de licence, e-mail ou téléphone.', autocomplete: 'off' });
  const searchButton = h('button', { type: 'button', class: 'button button--secondary' }, 'Chercher');
  const results = h('div', { class: 'search-results', 'aria-live': 'polite' });
  const chosenText = h('p', { class: 'chosen', 'aria-live': 'polite' });
  const existingPart = h('div', { class: 'family-existing' },
    h('div', { class: 'search__row search__row--field' }, search.element, searchButton), results, chosenText);

  async function runSearch() {
    const q = search.control.value.trim();
    search.clearError();
    if (!q) {
      search.setError('Saisissez un nom, un numéro de licence, un e-mail ou un téléphone.');
      search.control.focus();
      return;
    }
    replace(results, h('p', { class: 'muted' }, 'Recherche…'));
    try {
      const data = await api('GET', `/riders${query({ status: 'tous', q, per_page: 10 })}`);
      const items = (data.items || []).filter((item) => item.id !== rider.id);
      if (!items.length) {
        replace(results, h('p', { class: 'empty' }, `Aucune personne trouvée pour « ${q} ».`));
        return;
      }
      replace(results, h('ul', { class: 'choice-list', 'aria-label': 'Personnes trouvées' }, items.map((item) => {
        const label = personName(item);
        const details = [formatDate(item.birth_date), item.licence_number, item.email].filter(Boolean).join(' · ');
        return h('li', {}, h('button', {
          type: 'button', class: 'choice', 'data-person-id': item.id,
          onclick: () => {
            chosen = item;
            for (const other of results.querySelectorAll('.choice')) other.setAttribute('aria-pressed', String(other.dataset.personId === String(item.id)));
            chosenText.textContent = `Personne choisie : ${label}.`;
          },
          'aria-pressed': 'false',
        }, h('span', { class: 'choice__name' }, label), details ? h('span', { class: 'choice__details' }, details) : null));
      })));
      announce(`${items.length} personne${items.length > 1 ? 's' : ''} trouvée${items.length > 1 ? 's' : ''}.`);
    } catch (err) {
      if (err.status !== 401) showMessage(results, 'error', err.message);
    }
  }
  searchButton.addEventListener('click', runSearch);
  search.control.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      runSearch();
    }
  });

  // ---- new person ----
  const newFields = {
    last_name: formField({ name: 'new_last_name', label: 'Nom', required: true }),
    first_name: formField({ name: 'new_first_name', label: 'Prénom' }),
    birth_date: formField({ name: 'new_birth_date', label: 'Date de naissance', type: 'date' }),
    email: formField({ name: 'new_email', label: 'E-mail', type: 'email' }),
    mobile: formField({ name: 'new_mobile', label: 'Portable', type: 'tel' }),
  };
  const newPart = h('div', { class: 'field-grid', hidden: true }, Object.values(newFields).map((f) => f.element));

  function syncMode() {
    existingPart.hidden = !modeExisting.checked;
    newPart.hidden = modeExisting.checked;
  }
  modeExisting.addEventListener('change', syncMode);
  modeNew.addEventListener('change', syncMode);

  // ---- link details ----
  const listId = uniqueId('liens');
  const relationship = formField({
    name: 'relationship', label: 'Lien de parenté', required: true,
    help: `Ce que la personne liée est pour ${thisFirstName} : mère, père, frère, sœur, tuteur…`,
  });
  relationship.control.setAttribute('list', listId);
  const guardian = formField({ name: 'is_legal_guardian', label: 'Responsable légal', type: 'checkbox' });
  const payer = formField({ name: 'is_payer', label: 'Payeur (reçoit les factures)', type: 'checkbox' });
  const linkFields = { relationship, is_legal_guardian: guardian, is_payer: payer, person_id: search };

  const submit = h('button', { type: 'submit', class: 'button' }, 'Ajouter à la famille');
  const form = h('form', { class: 'form form--wide fieldset', novalidate: true, 'aria-labelledby': `${listId}-titre` },
    h('h3', { id: `${listId}-titre` }, 'Ajouter un membre de la famille'),
    messages, modeFieldset, existingPart, newPart,
    h('div', { class: 'field-grid' }, relationship.element,
      h('datalist', { id: listId }, RELATIONSHIPS.map((r) => h('option', { value: r })))),
    h('div', { class: 'checkbox-row' }, guardian.element, payer.element),
    h('div', { class: 'actions' }, submit));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(linkFields);
    clearFieldErrors(newFields);
    replace(messages);
    const body = {
      relationship: relationship.control.value.trim(),
      is_legal_guardian: guardian.control.checked,
      is_payer: payer.control.checked,
    };
    const problems = {};
    if (modeExisting.checked) {
      if (!chosen) problems.person_id = 'Cherchez puis choisissez la personne à lier.';
      else body.person_id = chosen.id;
    } else {
      body.new_person = {};
      for (const [key, field] of Object.entries(newFields)) {
        const value = field.control.value.trim();
        if (value) body.new_person[key] = value;
      }
      if (!body.new_person.last_name) newFields.last_name.setError('Le nom de la nouvelle personne est obligatoire.');
    }
    if (!body.relationship) problems.relationship = 'Indiquez le lien de parenté.';
    const unplaced = showFieldErrors(linkFields, problems);
    if (Object.keys(problems).length || unplaced.length || (body.new_person && !body.new_person.last_name)) {
      if (body.new_person && !body.new_person.last_name && !Object.keys(problems).length) newFields.last_name.control.focus();
      return;
    }

    await withBusy(submit, 'Ajout…', async () => {
      try {
        const created = await api('POST', `/riders/${rider.id}/family`, body);
        // Reload the sheet's family so that the list shows the server's view
        // (names, direction, link id).
        const fresh = await api('GET', `/riders/${rider.id}`);
        rider.family = fresh.family || [];
        onAdded(created);
        form.reset();
        chosen = null;
        replace(results);
        chosenText.textContent = '';
        syncMode();
        showMessage(messages, 'success', 'Le membre de la famille a été ajouté.');
      } catch (err) {
        if (err instanceof ApiError && err.status === 422) {
          // Keys of the new person's fields may come as "new_person.<key>".
          const mapped = {};
          const combined = { ...linkFields };
          for (const [key, message] of Object.entries(err.fields)) {
            const bare = key.replace(/^new_person\./, '');
            if (key !== bare || (!(key in linkFields) && key in newFields)) {
              combined[`new:${bare}`] = newFields[bare];
              mapped[`new:${bare}`] = message;
            } else {
              mapped[key] = message;
            }
          }
          const rest = showFieldErrors(Object.fromEntries(Object.entries(combined).filter(([, f]) => f)), mapped);
          showMessage(messages, 'error', err.message, rest.length ? h('p', {}, rest.join(' ')) : null);
        } else if (err.status !== 401) {
          showMessage(messages, 'error', err.message);
        }
      }
    });
  });

  return form;
}
