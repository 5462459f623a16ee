// "Gestion des cavaliers": the list of people with a filter per status,
// search, sorting, pagination, badges and a row selection for bulk
// actions. The filters live in the URL query so that reload and the back
// button keep them.

import { api, query } from '../api.js';
import { h, replace, announce, formatDate, formatPhone, plural, ROLES, roleLabel, uniqueId } from '../dom.js';
import { messageBox, showMessage, confirmDialog, withBusy } from '../ui.js';

const STATUS_FILTERS = [...ROLES, ['tous', 'Tous']];
const STATUS_PLURALS = {
  gerant: 'Gérants', employe: 'Employés', client: 'Clients', visiteur: 'Visiteurs',
  comptable: 'Comptables', proprietaire: 'Propriétaires', tous: 'Tous',
};

const SORTS = [
  ['nom', 'Nom (A à Z)'],
  ['-nom', 'Nom (Z à A)'],
  ['prenom', 'Prénom'],
  ['naissance', 'Date de naissance'],
  ['licence', 'Numéro de licence'],
  ['galop', 'Galop'],
  ['maj', 'Dernière modification'],
];
const PAGE_SIZES = [25, 50, 100, 200];

const CONSENT_BADGES = {
  accepte: ['Consentement donné', 'badge--ok'],
  en_attente: ['Consentement en attente', 'badge--warn'],
  refuse: ['Consentement refusé', 'badge--bad'],
  a_renouveler: ['Consentement à renouveler', 'badge--warn'],
};

// Reads the list state from the URL query, with defaults and bounds.
function readState(params) {
  const status = params.get('statut');
  const sort = params.get('tri');
  const perPage = Number(params.get('par_page'));
  const page = Number(params.get('page'));
  return {
    status: STATUS_FILTERS.some(([key]) => key === status) ? status : 'tous',
    q: params.get('q') || '',
    sort: SORTS.some(([key]) => key === sort) ? sort : 'nom',
    perPage: PAGE_SIZES.includes(perPage) ? perPage : 50,
    page: Number.isInteger(page) && page > 0 ? page : 1,
  };
}

function writeState(app, state) {
  const params = new URLSearchParams();
  if (state.status !== 'tous') params.set('statut', state.status);
  if (state.q) params.set('q', state.q);
  if (state.sort !== 'nom') params.set('tri', state.sort);
  if (state.perPage !== 50) params.set('par_page', String(state.perPage));
  if (state.page > 1) params.set('page', String(state.page));
  app.updateQuery(params);
}

function licenceBadge(item) {
  const season = new Date().getFullYear();
  if (item.licence_valid) return h('span', { class: 'badge badge--ok' }, `Licence ${season} valide`);
  if (item.licence_number) return h('span', { class: 'badge badge--warn' }, `Licence ${season} non renouvelée`);
  return h('span', { class: 'badge badge--muted' }, 'Sans licence');
}

function consentBadge(status) {
  const badge = CONSENT_BADGES[status];
  if (!badge) return null;
  return h('span', { class: `badge ${badge[1]}` }, badge[0]);
}

// Sends the recovery mail to the selected people (POST
// /api/v1/recovery-mails) after a confirmation, and reports who has no
// usable address.
async function sendRecoveryMails(selected, button, resultBox) {
  const count = selected.size;
  const ok = await confirmDialog('Envoyer le mail de récupération',
    count === 1
      ? 'La personne sélectionnée recevra un lien pour choisir son mot de passe.'
      : `Les ${count} personnes sélectionnées recevront un lien pour choisir leur mot de passe (un seul mail par adresse partagée).`,
    'Envoyer');
  if (!ok) return;
  await withBusy(button, 'Envoi…', async () => {
    replace(resultBox);
    let result;
    try {
      result = await api('POST', '/recovery-mails', { person_ids: [...selected.keys()] });
    } catch (err) {
      if (err.status !== 401) showMessage(resultBox, 'error', err.message);
      return;
    }
    const lines = [];
    lines.push(`${plural(result.queued || 0, 'mail mis', 'mails mis')} en file d'envoi (${plural(result.addresses || 0, 'adresse')}).`);
    if (result.already_sent) lines.push(`${plural(result.already_sent, 'adresse avait', 'adresses avaient')} déjà reçu ce mail.`);
    const without = result.without_email || [];
    showMessage(resultBox, without.length ? 'info' : 'success', lines.join(' '),
      without.length ? [
        h('p', {}, `Sans adresse e-mail valable (${without.length}) : contactez ces personnes autrement ou corrigez leur fiche.`),
        h('ul', {}, without.map((person) => h('li', {}, h('a', { href: `/cavaliers/${person.id}` }, person.name || `Personne n° ${person.id}`), ` : ${person.reason}`))),
      ] : null);
    announce(lines.join(' '));
  });
}

export async function ridersPage(ctx) {
  const { app, main } = ctx;
  const state = readState(ctx.query);
  const selected = new Map(); // id -> list item, kept across pages and filters
  let lastItems = [];
  let searchTimer = null;
  let requestSerial = 0;

  app.setTitle('Gestion des cavaliers');

  // ---- static parts: title, filters, search, sort ----
  const statusButtons = new Map();
  const statusGroup = h('div', { class: 'status-filters', role: 'group', 'aria-label': 'Filtrer par statut' },
    STATUS_FILTERS.map(([key]) => {
      const count = h('span', { class: 'status-filter__count' });
      const button = h('button', {
        type: 'button', class: 'status-filter', 'aria-pressed': String(key === state.status), 'data-status': key,
        onclick: () => {
          state.status = key;
          state.page = 1;
          for (const [other, entry] of statusButtons) entry.button.setAttribute('aria-pressed', String(other === key));
          load();
        },
      }, h('span', { class: 'status-filter__label' }, STATUS_PLURALS[key]), ' ', count);
      statusButtons.set(key, { button, count });
      return button;
    }));

  const searchId = uniqueId('recherche');
  const searchInput = h('input', {
    id: searchId, type: 'search', name: 'q', value: state.q, autocomplete: 'off',
    'aria-describedby': `${searchId}-aide`,
  });
  const searchForm = h('form', { class: 'search', role: 'search', onsubmit: (event) => { event.preventDefault(); runSearch(); } },
    h('label', { for: searchId }, 'Rechercher'),
    h('p', { class: 'field__help', id: `${searchId}-aide` }, 'Nom, numéro de licence, e-mail ou téléphone. Les accents et les majuscules sont ignorés.'),
    h('div', { class: 'search__row' }, searchInput, h('button', { type: 'submit', class: 'button' }, 'Rechercher')));
  searchInput.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 350);
  });

  function runSearch() {
    clearTimeout(searchTimer);
    const value = searchInput.value.trim();
    if (value === state.q) return;
    state.q = value;
    state.page = 1;
    load();
  }

  const sortId = uniqueId('tri');
  const sortSelect = h('select', { id: sortId, name: 'tri', onchange: () => { state.sort = sortSelect.value; state.page = 1; load(); } },
    SORTS.map(([key, label]) => h('option', { value: key, selected: key === state.sort }, label)));
  const sizeId = uniqueId('par-page');
  const sizeSelect = h('select', { id: sizeId, name: 'par_page', onchange: () => { state.perPage = Number(sizeSelect.value); state.page = 1; load(); } },
    PAGE_SIZES.map((size) => h('option', { value: size, selected: size === state.perPage }, `${size} par page`)));
  const listOptions = h('div', { class: 'list-options' },
    h('div', { class: 'field field--inline' }, h('label', { for: sortId }, 'Trier par'), sortSelect),
    h('div', { class: 'field field--inline' }, h('label', { for: sizeId }, 'Affichage'), sizeSelect));

  // ---- bulk actions bar (shown when at least one bulk action is allowed) ----
  const bulkEnabled = app.can('mail.send');
  const selectionCount = h('p', { class: 'bulk__count', 'aria-live': 'polite' });
  const clearSelection = h('button', { type: 'button', class: 'button button--small button--secondary', onclick: () => { selected.clear(); renderRows(lastItems); } }, 'Tout désélectionner');
  const recoveryNoteId = uniqueId('note-recuperation');
  const recoveryButton = h('button', { type: 'button', class: 'button button--small', disabled: true, 'aria-describedby': recoveryNoteId }, 'Envoyer mail de récupération');
  const bulkResult = h('div', { class: 'bulk__result' });
  recoveryButton.addEventListener('click', () => sendRecoveryMails(selected, recoveryButton, bulkResult));
  const bulkBar = bulkEnabled ? h('section', { class: 'bulk', 'aria-label': 'Actions sur la sélection' },
    selectionCount,
    h('div', { class: 'bulk__actions' }, recoveryButton, clearSelection),
    h('p', { class: 'bulk__note', id: recoveryNoteId }, 'Envoie à chaque personne sélectionnée un lien pour choisir son mot de passe. Une famille qui partage une adresse reçoit un seul mail.'),
    bulkResult) : null;

  const feedback = h('div', { class: 'list-feedback' });
  const summary = h('p', { class: 'list-summary' });
  const tableHolder = h('div', { class: 'table-holder' });
  const pagination = h('nav', { class: 'pagination', 'aria-label': 'Pagination' });

  replace(main,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Gestion des cavaliers'),
      app.can('rider.create') ? h('a', { href: '/cavaliers/nouveau', class: 'button' }, 'Nouveau cavalier') : null),
    ctx.flash ? messageBox(ctx.flash.kind, ctx.flash.message) : null,
    statusGroup,
    h('div', { class: 'toolbar' }, searchForm, listOptions),
    bulkBar,
    feedback,
    summary,
    tableHolder,
    pagination);

  function updateSelectionBar() {
    recoveryButton.disabled = selected.size === 0;
    selectionCount.textContent = selected.size === 0
      ? 'Aucun cavalier sélectionné.'
      : `${plural(selected.size, 'cavalier sélectionné', 'cavaliers sélectionnés')}.`;
    clearSelection.disabled = selected.size === 0;
  }

  function renderRows(items) {
    lastItems = items;
    updateSelectionBar();
    if (!items.length) {
      replace(tableHolder, h('p', { class: 'empty' }, state.q
        ? `Aucun cavalier ne correspond à « ${state.q} » dans ce statut.`
        : 'Aucun cavalier dans ce statut.'));
      return;
    }

    const allOnPage = items.every((item) => selected.has(item.id));
    const selectAll = h('input', {
      type: 'checkbox', 'aria-label': 'Sélectionner tous les cavaliers de la page', checked: allOnPage,
      onchange: () => {
        for (const item of items) {
          if (selectAll.checked) selected.set(item.id, item);
          else selected.delete(item.id);
        }
        renderRows(items);
      },
    });
    // Consent statuses exist only once the consent feature is installed;
    // until then every item has null and the column is left out.
    const showConsent = items.some((item) => item.consent_status);
    const sortKey = state.sort.replace(/^-/, '');
    const ariaSort = (key) => {
      if (sortKey !== key) return null;
      return state.sort.startsWith('-') ? 'descending' : 'ascending';
    };

    const rows = items.map((item) => {
      const name = [item.last_name ? item.last_name.toUpperCase() : '', item.first_name && item.first_name !== '.' ? item.first_name : '']
        .filter(Boolean).join(' ') || `Personne n° ${item.id}`;
      const box = h('input', {
        type: 'checkbox', 'aria-label': `Sélectionner ${name}`, checked: selected.has(item.id),
        onchange: () => {
          if (box.checked) selected.set(item.id, item);
          else selected.delete(item.id);
          selectAll.checked = items.every((row) => selected.has(row.id));
          updateSelectionBar();
        },
      });
      const contact = [item.email, formatPhone(item.mobile || item.phone)].filter(Boolean);
      return h('tr', { 'data-id': item.id },
        bulkEnabled ? h('td', { class: 'cell-select' }, box) : null,
        h('th', { scope: 'row', 'data-label': 'Nom', class: 'cell-name' }, h('a', { href: `/cavaliers/${item.id}` }, name)),
        h('td', { 'data-label': 'Naissance' }, formatDate(item.birth_date) || h('span', { class: 'muted' }, 'inconnue')),
        h('td', { 'data-label': 'Licence' },
          item.licence_number ? h('span', { class: 'mono' }, item.licence_number) : null, ' ', licenceBadge(item)),
        h('td', { 'data-label': 'Galop' }, item.galop_label || item.galop || ''),
        h('td', { 'data-label': 'Contact' }, contact.map((text) => h('span', { class: 'contact-line' }, text))),
        h('td', { 'data-label': 'Statuts' }, (item.roles || []).map((role) => h('span', { class: 'badge badge--role' }, roleLabel(role)))),
        showConsent ? h('td', { 'data-label': 'Consentement' }, consentBadge(item.consent_status) || h('span', { class: 'muted' }, '—')) : null);
    });

    replace(tableHolder, h('table', { class: 'table table--cards' },
      h('caption', { class: 'visually-hidden' }, `Cavaliers : ${STATUS_PLURALS[state.status].toLowerCase()}, page ${state.page}`),
      h('thead', {}, h('tr', {},
        bulkEnabled ? h('th', { scope: 'col', class: 'cell-select' }, selectAll) : null,
        h('th', { scope: 'col', 'aria-sort': ariaSort('nom') }, 'Nom'),
        h('th', { scope: 'col', 'aria-sort': ariaSort('naissance') }, 'Naissance'),
        h('th', { scope: 'col', 'aria-sort': ariaSort('licence') }, 'Licence'),
        h('th', { scope: 'col', 'aria-sort': ariaSort('galop') }, 'Galop'),
        h('th', { scope: 'col' }, 'Contact'),
        h('th', { scope: 'col' }, 'Statuts'),
        showConsent ? h('th', { scope: 'col' }, 'Consentement') : null)),
      h('tbody', {}, rows)));
  }

  function renderPagination(total) {
    const pages = Math.max(1, Math.ceil(total / state.perPage));
    if (pages <= 1) {
      replace(pagination);
      return;
    }
    const go = (page) => { state.page = page; load(true); };
    const pageId = uniqueId('page');
    const pageInput = h('input', { id: pageId, type: 'number', min: 1, max: pages, value: state.page, inputmode: 'numeric', class: 'pagination__input' });
    replace(pagination,
      h('button', { type: 'button', class: 'button button--secondary button--small', disabled: state.page <= 1, onclick: () => go(state.page - 1) }, '← Page précédente'),
      h('form', { class: 'pagination__jump', onsubmit: (event) => {
        event.preventDefault();
        const page = Math.min(pages, Math.max(1, Math.round(Number(pageInput.value)) || 1));
        go(page);
      } },
      h('label', { for: pageId }, 'Page'), pageInput, h('span', {}, `sur ${pages}`),
      h('button', { type: 'submit', class: 'button button--secondary button--small' }, 'Aller')),
      h('button', { type: 'button', class: 'button button--secondary button--small', disabled: state.page >= pages, onclick: () => go(state.page + 1) }, 'Page suivante →'));
  }

  async function load(focusTable) {
    const serial = ++requestSerial;
    writeState(app, state);
    tableHolder.setAttribute('aria-busy', 'true');
    replace(feedback);
    try {
      const data = await api('GET', `/riders${query({
        status: state.status, q: state.q, sort: state.sort, page: state.page, per_page: state.perPage,
      })}`);
      if (serial !== requestSerial || !ctx.isCurrent()) return;
      for (const [key, entry] of statusButtons) {
        const n = data.counts ? data.counts[key] : undefined;
        entry.count.textContent = n === undefined ? '' : `(${n.toLocaleString('fr-FR')})`;
      }
      const pages = Math.max(1, Math.ceil(data.total / state.perPage));
      if (state.page > pages && data.total > 0) {
        state.page = pages;
        load(focusTable);
        return;
      }
      const text = data.total === 0 ? 'Aucun cavalier trouvé.'
        : `${plural(data.total, 'cavalier trouvé', 'cavaliers trouvés')}${pages > 1 ? ` — page ${state.page} sur ${pages}` : ''}.`;
      summary.textContent = text;
      announce(text);
      renderRows(data.items || []);
      renderPagination(data.total);
      if (focusTable) summary.focus();
    } catch (err) {
      if (serial !== requestSerial) return;
      if (err.status === 401) return;
      showMessage(feedback, 'error', err.message);
    } finally {
      if (serial === requestSerial) tableHolder.removeAttribute('aria-busy');
    }
  }

  summary.setAttribute('tabindex', '-1');
  updateSelectionBar();
  await load();
  return () => clearTimeout(searchTimer);
}
