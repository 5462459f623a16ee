// Online registrations page (/inscriptions, permission
// "registrations.manage"): the registrations by status, each with what the
// applicant typed, the legal guardian of a minor, the consents given, and
// the person on file it may duplicate. Staff validate (link to the person
// on file, or create a new sheet) or refuse with an optional reason.

import { api, ApiError } from '../api.js';
import { h, replace, announce, formatDate, formatDateTime, formatPhone, plural } from '../dom.js';
import { messageBox, showMessage, withBusy } from '../ui.js';

const STATUSES = [
  ['to_validate', 'À valider'],
  ['email_pending', 'Adresse non confirmée'],
  ['validated', 'Validées'],
  ['refused', 'Refusées'],
  ['all', 'Toutes'],
];

const STATUS_BADGES = {
  email_pending: ['Adresse non confirmée', 'badge--muted'],
  to_validate: ['À valider', 'badge--info'],
  validated: ['Validée', 'badge--ok'],
  refused: ['Refusée', 'badge--bad'],
};

const DATA_LABELS = [
  ['last_name', 'Nom'], ['first_name', 'Prénom'], ['sex', 'Sexe'], ['birth_date', 'Date de naissance'],
  ['email', 'E-mail'], ['mobile', 'Portable'], ['phone', 'Téléphone'], ['address', 'Adresse'],
  ['address2', 'Complément'], ['postcode', 'Code postal'], ['city', 'Ville'], ['country', 'Pays'],
  ['licence_number', 'Numéro de licence'],
];

const GUARDIAN_LABELS = [['last_name', 'Nom'], ['first_name', 'Prénom'], ['email', 'E-mail'], ['phone', 'Téléphone']];

function name(item) {
  return `${(item.last_name || '').toUpperCase()} ${item.first_name || ''}`.trim();
}

// A registration that may be someone already on file, and that the
// applicant has not proven to be theirs through the address on file.
function possibleDuplicate(item) {
  return Boolean(item.duplicate && !item.duplicate.mailed_to_file && !item.person_id);
}

function badges(item) {
  const [label, kind] = STATUS_BADGES[item.status] || [item.status, 'badge--muted'];
  const list = [h('span', { class: `badge ${kind}` }, label)];
  if (possibleDuplicate(item) && (item.status === 'to_validate' || item.status === 'email_pending')) {
    list.push(h('span', { class: 'badge badge--warn' }, 'doublon possible'));
  } else if (item.duplicate && item.duplicate.mailed_to_file) {
    list.push(h('span', { class: 'badge badge--info' }, 'fiche existante'));
  }
  if (item.is_minor) list.push(h('span', { class: 'badge badge--muted' }, 'mineur'));
  return h('span', { class: 'badges' }, list);
}

function displayData(key, value) {
  if (value === null || value === undefined || value === '') return '—';
  if (key === 'birth_date') return formatDate(value);
  if (key === 'mobile' || key === 'phone') return formatPhone(value);
  if (key === 'sex' && value === 'F') return 'Féminin';
  if (key === 'sex' && value === 'M') return 'Masculin';
  return String(value);
}

function definitionList(pairs) {
  return h('dl', { class: 'details' }, pairs.map(([label, value]) => h('div', {}, h('dt', {}, label), h('dd', {}, value))));
}

function duplicateSection(item) {
  const dup = item.duplicate;
  if (!dup) return null;
  const person = dup.person || {};
  const reason = dup.reason === 'licence' ? 'même numéro de licence' : 'mêmes nom, prénom et date de naissance';
  let explanation;
  if (dup.mailed_to_file) {
    explanation = 'Le lien de confirmation a été envoyé à l’adresse e-mail de cette fiche : une fois confirmée, l’inscription y est rattachée.';
  } else if (dup.has_email) {
    explanation = 'Cette personne ressemble à une fiche existante. Vérifiez avant de valider.';
  } else {
    explanation = 'Cette fiche n’a pas d’adresse e-mail : la personne n’a pas pu prouver qu’il s’agit d’elle. Vérifiez avant de rattacher l’inscription à la fiche.';
  }
  return h('section', { class: 'report-section' },
    h('h3', {}, 'Fiche existante'),
    h('p', {}, h('a', { href: `/cavaliers/${dup.person_id}` }, name(person) || `Fiche n° ${dup.person_id}`),
      ` (${reason}${person.birth_date ? `, né(e) le ${formatDate(person.birth_date)}` : ''}${person.licence_number ? `, licence ${person.licence_number}` : ''})`),
    h('p', { class: 'muted' }, explanation));
}

function consentsSection(item) {
  const consents = item.consents || [];
  if (!consents.length) return null;
  return h('section', { class: 'report-section' },
    h('h3', {}, 'Consentements'),
    h('ul', {}, consents.map((c) => h('li', {}, `${c.title || c.document} : ${c.accepted ? 'accepté' : 'refusé'}`))));
}

function detailPanel(item, onDecision) {
  const data = item.data || {};
  const extra = Object.keys(data).filter((key) => !DATA_LABELS.some(([k]) => k === key));
  const messages = h('div', { class: 'form-messages' });
  const reason = h('textarea', { id: `motif-${item.id}`, name: 'reason', rows: 2, maxlength: 1000 });
  const actions = [];

  async function decide(button, path, body, done) {
    replace(messages);
    await withBusy(button, 'Enregistrement…', async () => {
      try {
        await api('POST', `/inscriptions/${item.id}/${path}`, body);
        announce(done);
        await onDecision(done);
      } catch (err) {
        showMessage(messages, 'error', err.message || String(err));
      }
    });
  }

  if (item.status === 'to_validate') {
    if (possibleDuplicate(item)) {
      const link = h('button', { type: 'button', class: 'button' }, 'Rattacher à la fiche existante');
      link.addEventListener('click', () => decide(link, 'validation', { action: 'link' }, 'Inscription validée et rattachée à la fiche existante.'));
      const create = h('button', { type: 'button', class: 'button button--secondary' }, 'Créer une nouvelle fiche');
      create.addEventListener('click', () => decide(create, 'validation', { action: 'create' }, 'Inscription validée : nouvelle fiche créée.'));
      actions.push(link, create);
    } else {
      const validate = h('button', { type: 'button', class: 'button' }, 'Valider');
      validate.addEventListener('click', () => decide(validate, 'validation', {}, 'Inscription validée.'));
      actions.push(validate);
    }
  }
  let refuseBlock = null;
  if (item.status === 'to_validate' || item.status === 'email_pending') {
    const refuse = h('button', { type: 'button', class: 'button button--danger-ghost' }, 'Refuser');
    refuse.addEventListener('click', () => decide(refuse, 'refus', { reason: reason.value.trim() }, 'Inscription refusée.'));
    refuseBlock = h('div', { class: 'field' },
      h('label', { for: reason.id }, 'Motif du refus (facultatif, gardé dans le dossier)'), reason);
    actions.push(refuse);
  }

  return h('div', { class: 'panel' },
    h('section', { class: 'report-section' },
      h('h3', {}, 'Informations saisies'),
      definitionList([
        ...DATA_LABELS.filter(([key]) => key in data).map(([key, label]) => [label, displayData(key, data[key])]),
        ...extra.map((key) => [key, displayData(key, data[key])]),
      ])),
    item.guardian ? h('section', { class: 'report-section' },
      h('h3', {}, 'Responsable légal'),
      definitionList(GUARDIAN_LABELS.map(([key, label]) => [label, displayData(key, item.guardian[key])]))) : null,
    duplicateSection(item),
    consentsSection(item),
    h('section', { class: 'report-section' },
      h('h3', {}, 'Origine'),
      definitionList([
        ['Envoyée le', formatDateTime(item.created_at)],
        ['Adresse confirmée le', item.verified_at ? formatDateTime(item.verified_at) : 'pas encore'],
        ['Adresse IP', item.ip || '—'],
        ['Navigateur', item.user_agent || '—'],
        ...(item.decided_at ? [['Décision le', formatDateTime(item.decided_at)]] : []),
        ...(item.refusal_reason ? [['Motif du refus', item.refusal_reason]] : []),
        ...(item.person_id ? [['Fiche', h('a', { href: `/cavaliers/${item.person_id}` }, `Fiche n° ${item.person_id}`)]] : []),
      ])),
    refuseBlock,
    messages,
    actions.length ? h('div', { class: 'actions' }, actions) : null);
}

// Renders the page. notice: a success message to show above the list (after
// a decision).
export async function registrationsPage(ctx, notice = null) {
  const { app, main, query } = ctx;
  const wanted = query.get('statut') || 'to_validate';
  const status = STATUSES.some(([key]) => key === wanted) ? wanted : 'to_validate';
  const flash = h('div', { class: 'form-messages' }, notice ? messageBox('success', notice) : null);
  const list = await api('GET', `/inscriptions?status=${encodeURIComponent(status)}`);
  if (!ctx.isCurrent()) return;
  app.setTitle('Inscriptions en ligne');

  const total = Object.values(list.counts).reduce((a, b) => a + b, 0);
  const filters = h('div', { class: 'status-filters', role: 'group', 'aria-label': 'Filtrer par statut' },
    STATUSES.map(([key, label]) => h('button', {
      type: 'button',
      class: 'status-filter',
      'data-status': key,
      'aria-pressed': key === status ? 'true' : 'false',
      onclick: () => app.navigate(key === 'to_validate' ? '/inscriptions' : `/inscriptions?statut=${key}`),
    }, label, ' ', h('span', { class: 'status-filter__count' }, `(${key === 'all' ? total : list.counts[key] || 0})`))));

  async function reload(message) {
    await registrationsPage(ctx, message);
  }

  const rows = [];
  for (const item of list.items) {
    const detailId = `inscription-${item.id}`;
    const toggle = h('button', { type: 'button', class: 'button button--small button--secondary', 'aria-expanded': 'false', 'aria-controls': detailId }, 'Examiner');
    const detailRow = h('tr', { id: detailId, class: 'detail-row', hidden: true }, h('td', { colspan: 6 }));
    toggle.addEventListener('click', async () => {
      const open = toggle.getAttribute('aria-expanded') === 'true';
      if (open) {
        toggle.setAttribute('aria-expanded', 'false');
        detailRow.hidden = true;
        return;
      }
      try {
        const full = await api('GET', `/inscriptions/${item.id}`);
        replace(detailRow.firstChild, detailPanel(full, reload));
        detailRow.hidden = false;
        toggle.setAttribute('aria-expanded', 'true');
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) return;
        showMessage(flash, 'error', err.message || String(err));
      }
    });
    rows.push(h('tr', { 'data-id': item.id },
      h('td', { 'data-label': 'Envoyée le' }, formatDateTime(item.created_at)),
      h('th', { scope: 'row', 'data-label': 'Nom' }, name(item)),
      h('td', { 'data-label': 'Naissance' }, item.birth_date ? formatDate(item.birth_date) : ''),
      h('td', { 'data-label': 'E-mail' }, item.email || ''),
      h('td', { 'data-label': 'Statut' }, badges(item)),
      h('td', { 'data-label': 'Actions', class: 'cell-actions' }, toggle)), detailRow);
  }

  const table = list.items.length
    ? h('div', { class: 'table-holder' }, h('table', { class: 'table table--cards' },
      h('caption', { class: 'visually-hidden' }, 'Inscriptions en ligne'),
      h('thead', {}, h('tr', {}, ['Envoyée le', 'Nom', 'Naissance', 'E-mail', 'Statut', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows)))
    : h('p', { class: 'empty' }, 'Aucune inscription dans cette catégorie.');

  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Inscriptions en ligne')),
    h('p', { class: 'muted' }, 'Les personnes qui s’inscrivent sur le formulaire public du club (',
      h('a', { href: '/inscription.html' }, 'inscription.html'),
      ') apparaissent ici une fois leur adresse e-mail confirmée.'),
    flash,
    filters,
    h('p', { class: 'list-summary' }, plural(list.items.length, 'inscription', 'inscriptions')),
    table);
}
