// A person's profile sheet ("fiche"): tabs for the profile fields and
// statuses, licences, family and history of changes, plus the tabs of the
// client services Licol does not provide yet. Also the "new rider" form.

import { api, ApiError } from '../api.js';
import { h, replace, announce, formatDate, formatPhone, personName, ROLES, roleLabel, uniqueId } from '../dom.js';
import { messageBox, showMessage, showFieldErrors, clearFieldErrors, comingSoonPanel, confirmDialog, withBusy } from '../ui.js';
import { loadCatalogue, buildFieldsets, controlValue } from '../fields_form.js';
import { familyPanel } from './rider_family.js';
import { historyPanel } from './rider_history.js';

// Services of a client that later versions will add, each with what it
// will show.
const COMING_SOON = [
  ['commandes', 'Commandes', 'Les achats du cavalier (cartes, forfaits, stages) et leur règlement.'],
  ['planning', 'Planning et reprises', 'Les reprises où le cavalier est inscrit, ses présences et ses absences.'],
  ['cartes', 'Cartes', 'Les cartes de séances du cavalier et le nombre de séances restantes.'],
  ['abonnements', 'Abonnements et adhésions', "Les forfaits de la saison et l'adhésion annuelle au club."],
  ['evenements', 'Événements', 'Les stages, sorties et concours auxquels le cavalier participe.'],
  ['chevaux', 'Chevaux', 'Les chevaux dont la personne est propriétaire et leur pension.'],
  ['solde', 'Solde du compte', 'Ce que la personne doit au club, ou ce que le club lui doit.'],
  ['prestations', 'Prestations à facturer', "Les prestations réalisées qui n'ont pas encore été facturées."],
  ['regularisations', 'Séances à régulariser', 'Les séances suivies sans carte ni forfait valable.'],
  ['tableau-de-bord', 'Tableau de bord', "Un résumé de l'activité de la personne au club."],
];

// Accessible tabs (WAI-ARIA tabs pattern: arrow keys move between tabs,
// Tab goes into the panel). tabs: [{key, label, soon, render(panel)}].
// render is called the first time a tab is shown.
function buildTabs(tabs, initialKey, onChange) {
  const rendered = new Set();
  const list = h('div', { class: 'tabs__list', role: 'tablist', 'aria-label': 'Sections de la fiche' });
  const panels = h('div', { class: 'tabs__panels' });
  const entries = tabs.map((tab) => {
    const tabId = uniqueId(`onglet-${tab.key}`);
    const panelId = `${tabId}-panneau`;
    const button = h('button', {
      type: 'button', role: 'tab', id: tabId, 'aria-controls': panelId, 'aria-selected': 'false', tabindex: '-1',
      class: tab.soon ? 'tabs__tab tabs__tab--soon' : 'tabs__tab', 'data-tab': tab.key,
    }, tab.label, tab.soon ? h('span', { class: 'visually-hidden' }, ' (bientôt disponible)') : null);
    const panel = h('div', { role: 'tabpanel', id: panelId, 'aria-labelledby': tabId, class: 'tabs__panel', tabindex: '0', hidden: true });
    list.append(button);
    panels.append(panel);
    return { tab, button, panel };
  });

  function select(key, focus) {
    const target = entries.find((e) => e.tab.key === key) || entries[0];
    for (const entry of entries) {
      const active = entry === target;
      entry.button.setAttribute('aria-selected', String(active));
      entry.button.tabIndex = active ? 0 : -1;
      entry.panel.hidden = !active;
    }
    if (!rendered.has(target.tab.key)) {
      rendered.add(target.tab.key);
      target.tab.render(target.panel);
    }
    if (focus) target.button.focus();
    onChange(target.tab.key);
  }

  list.addEventListener('click', (event) => {
    const button = event.target.closest('[role="tab"]');
    if (button) select(button.dataset.tab, false);
  });
  list.addEventListener('keydown', (event) => {
    const index = entries.findIndex((e) => e.button === document.activeElement);
    if (index < 0) return;
    let next = null;
    if (event.key === 'ArrowRight' || event.key === 'ArrowDown') next = (index + 1) % entries.length;
    else if (event.key === 'ArrowLeft' || event.key === 'ArrowUp') next = (index - 1 + entries.length) % entries.length;
    else if (event.key === 'Home') next = 0;
    else if (event.key === 'End') next = entries.length - 1;
    if (next === null) return;
    event.preventDefault();
    select(entries[next].tab.key, true);
  });

  select(initialKey, false);
  return h('div', { class: 'tabs' }, list, panels);
}

function roleBadges(roles) {
  return (roles || []).map((role) => h('span', { class: 'badge badge--role' }, roleLabel(role)));
}

// ---- profile tab --------------------------------------------------------

function profilePanel(ctx, rider, catalogue, onSaved) {
  return (panel) => {
    const editable = new Set(rider.editable || []);
    const messages = h('div', { class: 'form-messages' });
    // Catalogue fields this user may see, then any value the server sent
    // for a key the catalogue does not describe (a removed plugin's field),
    // shown read-only rather than hidden.
    const shown = catalogue.fields.filter((f) => f.key in rider.fields || editable.has(f.key));
    for (const key of Object.keys(rider.fields)) {
      if (!shown.some((f) => f.key === key)) shown.push({ key, label: key, type: 'text', group: 'Autres informations' });
    }
    const { element, fields } = buildFieldsets(shown, rider.fields,
      { isEditable: (key) => editable.has(key) && catalogue.fields.some((f) => f.key === key), galops: catalogue.galops });
    addImportNotes(rider, fields);
    // Values as the controls first showed them (phones are reformatted),
    // so that only what the user changed is sent.
    const initial = Object.fromEntries(Object.entries(fields).map(([key, field]) => [key, controlValue(field)]));
    const canSave = editable.size > 0;
    const submit = h('button', { type: 'submit', class: 'button' }, 'Enregistrer les modifications');
    const form = h('form', { class: 'form form--wide', novalidate: true, 'aria-label': 'Informations de la fiche' },
      messages, element,
      canSave ? h('div', { class: 'actions' }, submit) : h('p', { class: 'muted' }, "Vous pouvez consulter cette fiche mais pas la modifier."));

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFieldErrors(fields);
      replace(messages);
      const changes = {};
      for (const key of editable) {
        if (!fields[key]) continue;
        const now = controlValue(fields[key]);
        if (now !== initial[key]) changes[key] = now;
      }
      if (!Object.keys(changes).length) {
        showMessage(messages, 'info', 'Aucune modification à enregistrer.');
        return;
      }
      await withBusy(submit, 'Enregistrement…', async () => {
        try {
          const body = await api('PATCH', `/riders/${rider.id}`, changes);
          const fresh = (body && (body.rider || body)) || {};
          if (fresh.fields) Object.assign(rider.fields, fresh.fields);
          else Object.assign(rider.fields, changes);
          for (const [key, field] of Object.entries(fields)) {
            if (!(key in rider.fields) || field.control.tagName === 'SELECT') continue;
            const value = rider.fields[key] ?? '';
            field.control.value = field.control.type === 'tel' ? formatPhone(value) : value;
            initial[key] = controlValue(field);
          }
          for (const key of Object.keys(changes)) initial[key] = controlValue(fields[key]);
          showMessage(messages, 'success', 'Modifications enregistrées.');
          announce('Modifications enregistrées.');
          onSaved(rider);
        } catch (err) {
          if (err instanceof ApiError && err.status === 422) {
            const rest = showFieldErrors(fields, err.fields);
            showMessage(messages, 'error', err.message, rest.length ? h('p', {}, rest.join(' ')) : null);
            const firstInvalid = form.querySelector('[aria-invalid="true"]');
            if (firstInvalid) firstInvalid.focus();
          } else if (err.status !== 401) {
            showMessage(messages, 'error', err.message);
          }
        }
      });
    });

    replace(panel, h('h2', { class: 'visually-hidden' }, 'Profil'), form,
      rolesSection(ctx, rider, onSaved), deleteSection(ctx, rider));
  };
}

// Values an import could not use are kept for staff to see: a licence
// column that is not a licence number ("en cours"), an invalid e-mail
// address. They are shown under the field they belong to.
function addImportNotes(rider, fields) {
  const notes = [
    ['licence_number', rider.licence_raw, 'Valeur du fichier importé, non reconnue comme numéro de licence'],
    ['email', rider.email_invalid, 'Adresse du fichier importé, refusée car invalide (aucun mail ne lui est envoyé)'],
  ];
  for (const [key, value, text] of notes) {
    if (!value || !fields[key]) continue;
    fields[key].element.append(h('p', { class: 'field__note' }, `${text} : « ${value} »`));
  }
}

// Statuses of the person, editable with rider.roles.update. A user who is
// not a manager cannot grant the manager status (roles.lua refuses it).
function rolesSection(ctx, rider, onSaved) {
  const { app } = ctx;
  const current = new Set(rider.roles || []);
  if (!app.can('rider.roles.update')) {
    return h('section', { class: 'fieldset' },
      h('h3', {}, 'Statuts'),
      current.size ? h('p', {}, roleBadges([...current])) : h('p', { class: 'muted' }, 'Aucun statut.'));
  }
  const isManager = (app.user.roles || []).includes('gerant');
  const messages = h('div', { class: 'form-messages' });
  const boxes = ROLES.map(([key, label]) => {
    const id = uniqueId(`statut-${key}`);
    const locked = key === 'gerant' && !isManager;
    return h('div', { class: 'field field--checkbox' },
      h('input', { type: 'checkbox', id, name: 'roles', value: key, checked: current.has(key), disabled: locked }),
      h('label', { for: id }, label, locked ? h('span', { class: 'muted' }, ' (réservé au gérant)') : null));
  });
  const submit = h('button', { type: 'submit', class: 'button button--secondary' }, 'Enregistrer les statuts');
  const form = h('form', { class: 'fieldset' },
    h('fieldset', { class: 'plain' }, h('legend', {}, 'Statuts'), messages, h('div', { class: 'checkbox-row' }, boxes)),
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    replace(messages);
    const roles = [...form.querySelectorAll('input[name="roles"]:checked')].map((box) => box.value);
    await withBusy(submit, 'Enregistrement…', async () => {
      try {
        const body = await api('PUT', `/riders/${rider.id}/roles`, { roles });
        rider.roles = (body && (body.roles || (body.rider && body.rider.roles))) || roles;
        showMessage(messages, 'success', 'Statuts enregistrés.');
        onSaved(rider);
      } catch (err) {
        if (err.status !== 401) showMessage(messages, 'error', err.message);
      }
    });
  });
  return form;
}

// Deletion of the whole sheet (for example on a request to erase personal
// data). The server refuses to delete one's own sheet or the last manager.
function deleteSection(ctx, rider) {
  const { app } = ctx;
  if (!app.can('rider.delete') || rider.id === app.user.id) return null;
  const messages = h('div', { class: 'form-messages' });
  const button = h('button', { type: 'button', class: 'button button--danger-ghost' }, 'Supprimer la fiche');
  button.addEventListener('click', async () => {
    const name = personName({ id: rider.id, last_name: rider.fields.last_name, first_name: rider.fields.first_name });
    const ok = await confirmDialog('Supprimer la fiche',
      `La fiche de ${name}, ses licences, ses liens familiaux et ses champs seront supprimés définitivement. L'historique des modifications est conservé.`,
      'Supprimer définitivement');
    if (!ok) return;
    await withBusy(button, 'Suppression…', async () => {
      try {
        await api('DELETE', `/riders/${rider.id}`);
        app.flash = { kind: 'success', message: `La fiche de ${name} a été supprimée.` };
        app.navigate('/cavaliers');
      } catch (err) {
        if (err.status !== 401) showMessage(messages, 'error', err.message);
      }
    });
  });
  return h('section', { class: 'fieldset danger-zone', 'aria-labelledby': 'titre-suppression' },
    h('h3', { id: 'titre-suppression' }, 'Suppression'),
    messages,
    h('p', { class: 'muted' }, 'Supprime la fiche et tout ce qui s’y rattache. Cette action est irréversible.'),
    button);
}

// ---- licences tab -------------------------------------------------------

function licencesPanel(rider) {
  return (panel) => {
    const licences = (rider.licences || []).slice().sort((a, b) => b.season - a.season);
    if (!licences.length) {
      replace(panel, h('h2', {}, 'Licences'), h('p', { class: 'empty' }, "Aucune licence enregistrée pour cette personne."));
      return;
    }
    const thisYear = new Date().getFullYear();
    replace(panel, h('h2', {}, 'Licences par saison'),
      h('div', { class: 'table-holder' }, h('table', { class: 'table table--cards' },
        h('thead', {}, h('tr', {}, ['Saison', 'Numéro', 'Type', 'Catégorie', 'Club', 'Saisie le'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, licences.map((l) => h('tr', {},
          h('th', { scope: 'row', 'data-label': 'Saison' }, String(l.season), Number(l.season) === thisYear ? h('span', { class: 'badge badge--ok' }, 'en cours') : null),
          h('td', { 'data-label': 'Numéro' }, l.number ? h('span', { class: 'mono' }, l.number) : null),
          h('td', { 'data-label': 'Type' }, l.type || ''),
          h('td', { 'data-label': 'Catégorie' }, l.category || ''),
          h('td', { 'data-label': 'Club' }, l.club || ''),
          h('td', { 'data-label': 'Saisie le' }, formatDate(l.taken_on))))))));
  };
}

// ---- the page -----------------------------------------------------------

export async function riderPage(ctx) {
  const { app, main } = ctx;
  const id = Number(ctx.params[0]);
  const [rider, catalogue] = await Promise.all([api('GET', `/riders/${id}`), loadCatalogue()]);
  if (!ctx.isCurrent()) return;
  rider.fields = rider.fields || {};

  const title = h('h1', {});
  const badges = h('p', { class: 'badges' });
  function renderHead() {
    const name = personName({ id: rider.id, last_name: rider.fields.last_name, first_name: rider.fields.first_name });
    replace(title, name);
    const thisYear = new Date().getFullYear();
    const valid = (rider.licences || []).some((l) => Number(l.season) === thisYear);
    replace(badges, roleBadges(rider.roles),
      valid ? h('span', { class: 'badge badge--ok' }, `Licence ${thisYear} valide`) : h('span', { class: 'badge badge--muted' }, `Pas de licence ${thisYear}`));
    app.setTitle(`Fiche de ${name}`);
  }
  renderHead();

  const tabs = [
    { key: 'profil', label: 'Profil', render: profilePanel(ctx, rider, catalogue, renderHead) },
    { key: 'licences', label: 'Licences', render: licencesPanel(rider) },
    { key: 'famille', label: 'Famille', render: (panel) => familyPanel(ctx, rider, panel) },
    { key: 'historique', label: 'Historique', render: (panel) => historyPanel(ctx, rider, panel) },
    ...COMING_SOON.map(([key, label, description]) => ({
      key, label, soon: true, render: (panel) => replace(panel, comingSoonPanel(label, description)),
    })),
  ];

  const back = app.can('riders.list') ? h('p', { class: 'breadcrumb' }, h('a', { href: '/cavaliers' }, '← Retour à la liste des cavaliers')) : null;
  replace(main, back,
    h('div', { class: 'page-head' }, h('div', {}, title, badges)),
    ctx.flash ? messageBox(ctx.flash.kind, ctx.flash.message) : null,
    buildTabs(tabs, ctx.query.get('onglet') || 'profil', (key) => {
      const params = new URLSearchParams(location.search);
      if (key === 'profil') params.delete('onglet');
      else params.set('onglet', key);
      app.updateQuery(params);
    }));
}

// ---- new rider ----------------------------------------------------------

export async function newRiderPage(ctx) {
  const { app, main } = ctx;
  app.setTitle('Nouveau cavalier');
  const catalogue = await loadCatalogue();
  if (!ctx.isCurrent()) return;

  const myRoles = new Set(app.user.roles || []);
  const mayEdit = (field) => {
    const roles = field.editable_by || field.edit;
    return !roles || roles.length === 0 || roles.some((role) => myRoles.has(role));
  };
  const editableFields = catalogue.fields.filter(mayEdit);
  const messages = h('div', { class: 'form-messages' });
  const { element, fields } = buildFieldsets(editableFields, {}, { isEditable: () => true, galops: catalogue.galops });

  const roleBoxes = ROLES.filter(([key]) => key !== 'gerant' || myRoles.has('gerant')).map(([key, label]) => {
    const boxId = uniqueId(`nouveau-statut-${key}`);
    return h('div', { class: 'field field--checkbox' },
      h('input', { type: 'checkbox', id: boxId, name: 'roles', value: key, checked: key === 'client' }),
      h('label', { for: boxId }, label));
  });
  const rolesFieldset = app.can('rider.roles.update')
    ? h('fieldset', { class: 'fieldset' }, h('legend', {}, 'Statuts'), h('div', { class: 'checkbox-row' }, roleBoxes))
    : null;

  const submit = h('button', { type: 'submit', class: 'button' }, 'Créer la fiche');
  const form = h('form', { class: 'form form--wide', novalidate: true },
    messages, element, rolesFieldset,
    h('div', { class: 'actions' }, submit, h('a', { href: '/cavaliers', class: 'button button--secondary' }, 'Annuler')));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(fields);
    replace(messages);
    const values = {};
    for (const [key, field] of Object.entries(fields)) {
      const value = controlValue(field);
      if (value !== '') values[key] = value;
    }
    if (!values.last_name && fields.last_name) {
      showFieldErrors(fields, { last_name: 'Le nom est obligatoire.' });
      return;
    }
    await withBusy(submit, 'Création…', async () => {
      let created;
      try {
        const body = await api('POST', '/riders', values);
        created = (body && (body.rider || body)) || {};
      } catch (err) {
        if (err instanceof ApiError && err.status === 422) {
          const rest = showFieldErrors(fields, err.fields);
          showMessage(messages, 'error', err.message, rest.length ? h('p', {}, rest.join(' ')) : null);
        } else if (err.status !== 401) {
          showMessage(messages, 'error', err.message);
        }
        return;
      }
      const roles = rolesFieldset ? [...form.querySelectorAll('input[name="roles"]:checked')].map((box) => box.value) : [];
      app.flash = { kind: 'success', message: 'Fiche créée.' };
      if (roles.length) {
        try {
          await api('PUT', `/riders/${created.id}/roles`, { roles });
        } catch (err) {
          app.flash = { kind: 'error', message: `Fiche créée, mais les statuts n'ont pas été enregistrés : ${err.message}` };
        }
      }
      app.navigate(`/cavaliers/${created.id}`);
    });
  });

  replace(main,
    h('p', { class: 'breadcrumb' }, h('a', { href: '/cavaliers' }, '← Retour à la liste des cavaliers')),
    h('h1', {}, 'Nouveau cavalier'),
    form);
}
