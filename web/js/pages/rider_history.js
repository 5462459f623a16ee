// History tab of the profile sheet: who changed which field, when, from
// what to what, and through which import, newest first, one page at a time.

import { api } from '../api.js';
import { h, replace, append, formatDateTime, roleLabel } from '../dom.js';
import { showMessage, withBusy } from '../ui.js';
import { fieldLabel, displayValue } from '../fields_form.js';

const ACTION_LABELS = {
  create: 'Création',
  update: 'Modification',
  delete: 'Suppression',
  import: 'Import',
  undo: 'Annulation d’import',
  'role.add': 'Statut ajouté',
  'role.remove': 'Statut retiré',
  'family.add': 'Lien familial ajouté',
  'family.remove': 'Lien familial retiré',
  password: 'Mot de passe',
};

function valueCell(field, value) {
  if (value === null || value === undefined || value === '') return h('span', { class: 'muted' }, '(vide)');
  if (field === 'role') return roleLabel(value);
  return displayValue(field, value);
}

export async function historyPanel(ctx, rider, panel) {
  const messages = h('div', { class: 'form-messages' });
  const body = h('tbody', {});
  const more = h('button', { type: 'button', class: 'button button--secondary' }, 'Afficher les modifications plus anciennes');
  const table = h('div', { class: 'table-holder' }, h('table', { class: 'table table--cards' },
    h('thead', {}, h('tr', {}, ['Date', 'Par', 'Action', 'Champ', 'Avant', 'Après'].map((t) => h('th', { scope: 'col' }, t)))),
    body));
  let page = 1;
  let shown = 0;

  replace(panel, h('h2', {}, 'Historique des modifications'), messages, h('p', { class: 'loading' }, 'Chargement…'));

  async function loadPage() {
    const data = await api('GET', `/riders/${rider.id}/history?page=${page}`);
    const items = data.items || [];
    append(body, items.map((item) => {
      const by = item.actor ? item.actor.name || `Personne n° ${item.actor.id}` : (item.import_run_id ? 'Import' : 'Système');
      return h('tr', {},
        h('td', { 'data-label': 'Date' }, formatDateTime(item.at)),
        h('td', { 'data-label': 'Par' }, by,
          item.import_run_id ? [' ', h('a', { href: `/imports/${item.import_run_id}` }, `(import n° ${item.import_run_id})`)] : null),
        h('td', { 'data-label': 'Action' }, ACTION_LABELS[item.action] || item.action),
        h('td', { 'data-label': 'Champ' }, item.field ? fieldLabel(item.field) : ''),
        h('td', { 'data-label': 'Avant' }, valueCell(item.field, item.old_value)),
        h('td', { 'data-label': 'Après' }, valueCell(item.field, item.new_value)));
    }));
    shown += items.length;
    const perPage = data.per_page || 50;
    const hasMore = data.total !== undefined ? shown < data.total : items.length >= perPage;
    more.hidden = !hasMore;
    return items.length;
  }

  more.addEventListener('click', () => withBusy(more, 'Chargement…', async () => {
    page += 1;
    try {
      await loadPage();
    } catch (err) {
      page -= 1;
      if (err.status !== 401) showMessage(messages, 'error', err.message);
    }
  }));

  try {
    await loadPage();
    if (!shown) {
      replace(panel, h('h2', {}, 'Historique des modifications'), h('p', { class: 'empty' }, 'Aucune modification enregistrée.'));
      return;
    }
    replace(panel, h('h2', {}, 'Historique des modifications'), messages, table, h('div', { class: 'actions' }, more));
  } catch (err) {
    if (err.status === 401) return;
    replace(panel, h('h2', {}, 'Historique des modifications'), messages);
    showMessage(messages, 'error', err.message);
  }
}
