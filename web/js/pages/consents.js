// "Gestion du consentement": each client's status towards the club's
// terms, filtered by status or searched, with the actions staff need:
// ask again by mail, record a paper form, publish a new version of a
// document, send the reminders now, and export the proofs as CSV.

import { api, apiUrl, query } from '../api.js';
import { h, replace, announce, formatDateTime, plural } from '../dom.js';
import { messageBox, showMessage, confirmDialog, withBusy, formField } from '../ui.js';

const STATUSES = [
  ['', 'Tous'],
  ['en_attente', 'En attente'],
  ['a_renouveler', 'À renouveler'],
  ['accepte', 'Acceptés'],
  ['refuse', 'Refusés'],
];
const BADGES = {
  accepte: ['Accepté', 'badge--ok'],
  en_attente: ['En attente', 'badge--warn'],
  a_renouveler: ['À renouveler', 'badge--warn'],
  refuse: ['Refusé ou retiré', 'badge--bad'],
};

function reportSend(box, result) {
  const lines = [`${plural(result.queued || 0, 'mail mis', 'mails mis')} en file d'envoi.`];
  if (result.up_to_date) lines.push(`${plural(result.up_to_date, 'personne a', 'personnes ont')} déjà accepté la version en vigueur.`);
  const without = result.without_email || [];
  showMessage(box, without.length ? 'info' : 'success', lines.join(' '),
    without.length ? [
      h('p', {}, `Sans adresse e-mail valable (${without.length}) : faites-leur signer le formulaire papier.`),
      h('ul', {}, without.map((p) => h('li', {}, h('a', { href: `/cavaliers/${p.id}` }, p.name || `Personne n° ${p.id}`), ` : ${p.reason}`))),
    ] : null);
  announce(lines.join(' '));
}

async function send(box, button, body) {
  await withBusy(button, 'Envoi…', async () => {
    try {
      reportSend(box, await api('POST', '/consents/requests', body));
    } catch (err) {
      if (err.status !== 401) showMessage(box, 'error', err.message);
    }
  });
}

// The paper form: one person, a decision per document.
function paperForm(app, documents, personId, box) {
  const required = documents.filter((d) => d.current);
  const choices = [['', '— pas de réponse —'], ['accepted', 'Accepte'], ['refused', 'Refuse'], ['withdrawn', 'Retire son accord']];
  const fields = required.map((d) => formField({ name: `papier-${d.key}`, label: `${d.title} (version ${d.current.version})`, type: 'select', choices }));
  const submit = h('button', { type: 'submit', class: 'button' }, 'Enregistrer le formulaire papier');
  const form = h('form', { class: 'panel', novalidate: true },
    h('h3', {}, 'Formulaire signé sur papier'),
    h('p', { class: 'muted' }, 'Reportez la réponse écrite sur le formulaire signé. Votre nom est enregistré avec la preuve.'),
    fields.map((f) => f.element), submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const decisions = {};
    const versions = {};
    required.forEach((d, i) => {
      if (fields[i].control.value) {
        decisions[d.key] = fields[i].control.value;
        versions[d.key] = d.current.version_id;
      }
    });
    if (!Object.keys(decisions).length) {
      showMessage(box, 'error', 'Choisissez au moins une réponse.');
      return;
    }
    await withBusy(submit, 'Enregistrement…', async () => {
      try {
        await api('POST', '/consents/paper', { person_id: personId, decisions, version_ids: versions });
      } catch (err) {
        if (err.status !== 401) showMessage(box, 'error', err.message);
        return;
      }
      showMessage(box, 'success', 'Le formulaire papier est enregistré.');
      app.render();
    });
  });
  return form;
}

async function personPanel(app, id, documents) {
  const box = h('div', { 'aria-live': 'polite' });
  const record = await api('GET', `/consents/persons/${id}`);
  const resend = h('button', { type: 'button', class: 'button button--small' }, 'Renvoyer la demande par mail');
  resend.addEventListener('click', () => send(box, resend, { person_id: id }));
  return h('section', { class: 'panel', 'aria-labelledby': `titre-preuves-${id}` },
    h('h2', { id: `titre-preuves-${id}` }, 'Détail et preuves'),
    box,
    h('p', {}, resend),
    h('ul', {}, record.documents.map((d) => h('li', {}, `${d.title} : `,
      d.last ? `${d.last.decision === 'accepted' ? 'accepté' : d.last.decision === 'refused' ? 'refusé' : 'retiré'} (version ${d.last.version}${d.last.current ? '' : ', ancienne'}) le ${formatDateTime(d.last.at)}` : 'pas de réponse'))),
    record.proofs.length ? h('div', { class: 'table-holder' }, h('table', { class: 'table table--cards' },
      h('thead', {}, h('tr', {}, ['Date', 'Document', 'Décision', 'Canal', 'Adresse IP', 'Saisi par'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, record.proofs.map((p) => h('tr', {},
        h('td', { 'data-label': 'Date' }, formatDateTime(p.at)),
        h('td', { 'data-label': 'Document' }, `${p.document} v${p.version}`),
        h('td', { 'data-label': 'Décision' }, p.decision === 'accepted' ? 'accepté' : p.decision === 'refused' ? 'refusé' : 'retiré'),
        h('td', { 'data-label': 'Canal' }, { mail_link: 'lien par mail', login: 'espace cavalier', registration: 'inscription', paper: 'papier' }[p.channel] || p.channel),
        h('td', { 'data-label': 'Adresse IP' }, p.ip || '—'),
        h('td', { 'data-label': 'Saisi par' }, p.recorded_by || p.acted_by || '—')))))) : h('p', { class: 'empty' }, 'Aucune décision enregistrée.'),
    paperForm(app, documents, id, box));
}

function publishForm(app, documents, box) {
  const docField = formField({ name: 'document', label: 'Document', type: 'select', required: true, choices: documents.map((d) => [d.key, d.title]) });
  const titleField = formField({ name: 'titre', label: 'Titre', required: true, maxlength: 200 });
  const textField = formField({ name: 'texte', label: 'Texte complet', type: 'textarea', required: true, help: 'Publier une nouvelle version d’un document obligatoire remet à « à renouveler » tous ceux qui avaient accepté l’ancienne.' });
  textField.control.rows = 12;
  const submit = h('button', { type: 'submit', class: 'button' }, 'Publier la version');
  const form = h('form', { class: 'panel', novalidate: true }, h('h2', {}, 'Publier une nouvelle version'),
    docField.element, titleField.element, textField.element, submit);
  docField.control.addEventListener('change', () => {
    const doc = documents.find((d) => d.key === docField.control.value);
    titleField.control.value = doc ? doc.title : '';
    textField.control.value = doc && doc.current ? doc.current.text : '';
  });
  docField.control.dispatchEvent(new Event('change'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const ok = await confirmDialog('Publier la version', 'Chaque version publiée est conservée telle quelle et ne peut plus être modifiée.', 'Publier');
    if (!ok) return;
    await withBusy(submit, 'Publication…', async () => {
      try {
        await api('POST', `/consents/documents/${encodeURIComponent(docField.control.value)}/versions`,
          { title: titleField.control.value, text: textField.control.value });
      } catch (err) {
        if (err.status !== 401) showMessage(box, 'error', err.message);
        return;
      }
      showMessage(box, 'success', 'La nouvelle version est publiée.');
      app.render();
    });
  });
  return form;
}

const PAGE_SIZE = 100;

// Links to the previous and next pages of the list, keeping its filters.
// A page past the end (the list shrank meanwhile) links back to the last.
function pagination(current, page, pages) {
  if (pages <= 1 && page <= 1) return null;
  const pageLink = (target, label) => {
    const params = new URLSearchParams(current);
    params.delete('personne');
    if (target > 1) params.set('page', String(target)); else params.delete('page');
    return h('a', { class: 'button button--small button--secondary', href: `/consentement${params.toString() ? `?${params}` : ''}` }, label);
  };
  if (page > pages) {
    return h('nav', { class: 'pagination', 'aria-label': 'Pages' },
      h('span', {}, `La liste n’a plus que ${pages <= 1 ? 'une page' : `${pages} pages`}. `),
      pageLink(Math.max(pages, 1), pages <= 1 ? 'Revenir à la liste' : 'Aller à la dernière page'));
  }
  return h('nav', { class: 'pagination', 'aria-label': 'Pages' },
    page > 1 ? pageLink(page - 1, 'Page précédente') : null,
    h('span', { 'aria-current': 'page' }, ` Page ${page} sur ${pages} `),
    page < pages ? pageLink(page + 1, 'Page suivante') : null);
}

export async function consentsPage(ctx) {
  const { app, main } = ctx;
  const status = ctx.query.get('statut') || '';
  const q = ctx.query.get('q') || '';
  const personId = Number(ctx.query.get('personne')) || 0;
  const page = Math.max(1, Number.parseInt(ctx.query.get('page'), 10) || 1);
  app.setTitle('Gestion du consentement');

  const [list, docs] = await Promise.all([
    api('GET', `/consents${query({ status: status || null, q: q || null, limit: PAGE_SIZE, offset: (page - 1) * PAGE_SIZE })}`),
    api('GET', '/consents/documents'),
  ]);
  if (!ctx.isCurrent()) return;
  const documents = docs.documents;
  const box = h('div', { class: 'result-area', 'aria-live': 'polite' });

  const filters = h('div', { class: 'status-filters', role: 'group', 'aria-label': 'Filtrer par statut' },
    STATUSES.map(([key, label]) => {
      const params = new URLSearchParams();
      if (key) params.set('statut', key);
      if (q) params.set('q', q);
      return h('a', { class: 'button button--small' + (key === status ? '' : ' button--secondary'), href: `/consentement${params.toString() ? `?${params}` : ''}`, 'aria-current': key === status ? 'true' : null },
        `${label} (${key ? list.counts[key] : list.counts.tous})`);
    }));

  const search = formField({ name: 'q', label: 'Rechercher un nom ou une adresse', type: 'search', value: q });
  const searchForm = h('form', { role: 'search', class: 'search' }, search.element, h('button', { type: 'submit', class: 'button button--secondary' }, 'Rechercher'));
  searchForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const params = new URLSearchParams();
    if (status) params.set('statut', status);
    if (search.control.value.trim()) params.set('q', search.control.value.trim());
    app.navigate(`/consentement${params.toString() ? `?${params}` : ''}`);
  });

  const askPending = h('button', { type: 'button', class: 'button' }, 'Demander l’accord aux personnes en attente');
  askPending.addEventListener('click', async () => {
    const ok = await confirmDialog('Demander l’accord', 'Chaque client en attente ou à renouveler reçoit un mail avec un lien personnel (un seul mail par adresse partagée).', 'Envoyer');
    if (ok) send(box, askPending, { status: 'tous' });
  });
  const reminders = h('button', { type: 'button', class: 'button button--secondary' }, 'Envoyer les relances dues');
  reminders.addEventListener('click', () => withBusy(reminders, 'Envoi…', async () => {
    try {
      const result = await api('POST', '/consents/reminders/run');
      showMessage(box, 'success', `${plural(result.queued, 'relance envoyée', 'relances envoyées')}.`);
    } catch (err) {
      if (err.status !== 401) showMessage(box, 'error', err.message);
    }
  }));
  const exportLink = h('a', { class: 'button button--secondary', href: apiUrl('/consents/export.csv'), download: 'preuves-consentement.csv' }, 'Exporter les preuves (CSV)');

  const rows = list.items.map((item) => {
    const badge = BADGES[item.status] || ['—', ''];
    const params = new URLSearchParams(ctx.query);
    params.set('personne', String(item.id));
    return h('tr', {},
      h('th', { scope: 'row', 'data-label': 'Nom' }, h('a', { href: `/cavaliers/${item.id}` }, `${item.last_name || ''} ${item.first_name || ''}`.trim())),
      h('td', { 'data-label': 'Adresse e-mail' }, item.email || 'aucune'),
      h('td', { 'data-label': 'Statut' }, h('span', { class: `badge ${badge[1]}` }, badge[0])),
      h('td', { 'data-label': 'Dernière réponse' }, item.last_decision_at ? formatDateTime(item.last_decision_at) : '—'),
      h('td', { 'data-label': 'Dernier mail' }, item.last_mail_at ? `${formatDateTime(item.last_mail_at)}${item.reminders ? ` (${plural(item.reminders, 'relance')})` : ''}` : '—'),
      h('td', { 'data-label': 'Détail' }, h('a', { href: `/consentement?${params}` }, 'Preuves et formulaire papier')));
  });

  const noTerms = documents.every((d) => !d.required || !d.current);
  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Gestion du consentement'), exportLink),
    h('p', { class: 'muted' }, 'Chaque client doit accepter la version en vigueur des conditions du club. Chaque réponse est conservée comme preuve : date, version du texte, canal, adresse IP.'),
    noTerms ? messageBox('info', 'Aucune condition n’est encore publiée : publiez vos CGU, CGV et politique de confidentialité ci-dessous avant de demander l’accord.') : null,
    box,
    h('div', { class: 'bulk__actions' }, askPending, reminders),
    filters,
    searchForm,
    personId ? await personPanel(app, personId, documents) : null,
    rows.length ? h('div', { class: 'table-holder' }, h('table', { class: 'table table--cards' },
      h('thead', {}, h('tr', {}, ['Nom', 'Adresse e-mail', 'Statut', 'Dernière réponse', 'Dernier mail', 'Détail'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows))) : h('p', { class: 'empty' }, 'Aucun client dans cette liste.'),
    pagination(ctx.query, page, Math.ceil(list.total / PAGE_SIZE)),
    publishForm(app, documents, box));
}
