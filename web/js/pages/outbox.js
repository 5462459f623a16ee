// "File des mails": the mails waiting, sent and failed (with the reason
// given by the SMTP server), filtered by state, and a button to send a
// failed mail again once its cause is fixed.

import { api, query } from '../api.js';
import { h, replace, announce, formatDateTime, plural } from '../dom.js';
import { messageBox, showMessage, withBusy } from '../ui.js';

const STATES = [
  ['', 'Tous'],
  ['queued', 'En attente'],
  ['sending', 'En cours'],
  ['sent', 'Envoyés'],
  ['failed', 'En échec'],
];
const STATE_LABELS = { queued: 'en attente', sending: 'en cours', sent: 'envoyé', failed: 'échec' };
const KIND_LABELS = { recuperation: 'Mot de passe', consentement: 'Conditions', test: 'Essai' };
const PAGE_SIZE = 100;

export async function outboxPage(ctx) {
  const { app, main } = ctx;
  const state = ctx.query.get('etat') || '';
  const page = Math.max(1, Number(ctx.query.get('page')) || 1);
  app.setTitle('File des mails');

  const data = await api('GET', `/outbox${query({ state: state || null, limit: PAGE_SIZE, offset: (page - 1) * PAGE_SIZE })}`);
  if (!ctx.isCurrent()) return;

  const result = h('div', { class: 'result-area', 'aria-live': 'polite' });
  const filters = h('div', { class: 'status-filters', role: 'group', 'aria-label': 'Filtrer par état' },
    STATES.map(([key, label]) => {
      const count = key ? data.counts[key] : Object.values(data.counts).reduce((a, b) => a + b, 0);
      const params = new URLSearchParams();
      if (key) params.set('etat', key);
      return h('a', {
        class: 'button button--small' + (key === state ? '' : ' button--secondary'),
        href: `/mails${params.toString() ? `?${params}` : ''}`,
        'aria-current': key === state ? 'true' : null,
      }, `${label} (${count})`);
    }));

  const rows = data.items.map((mail) => {
    const retry = mail.state === 'failed' && app.can('mail.send')
      ? h('button', { type: 'button', class: 'button button--small' }, 'Renvoyer')
      : null;
    if (retry) {
      retry.addEventListener('click', () => withBusy(retry, 'Envoi…', async () => {
        try {
          await api('POST', `/outbox/${mail.id}/retry`);
        } catch (err) {
          if (err.status !== 401) showMessage(result, 'error', err.message);
          return;
        }
        showMessage(result, 'success', `Le mail à ${mail.recipient} est de nouveau en attente d'envoi.`);
        announce('Mail remis en file d’envoi.');
        app.render();
      }));
    }
    return h('tr', {},
      h('td', { 'data-label': 'Créé le' }, formatDateTime(mail.created_at)),
      h('td', { 'data-label': 'Type' }, KIND_LABELS[mail.kind] || mail.kind),
      h('th', { scope: 'row', 'data-label': 'Destinataire' },
        mail.person_id ? h('a', { href: `/cavaliers/${mail.person_id}` }, mail.recipient) : mail.recipient),
      h('td', { 'data-label': 'Sujet' }, mail.subject),
      h('td', { 'data-label': 'État' }, h('span', { class: `badge ${mail.state === 'failed' ? 'badge--bad' : mail.state === 'sent' ? 'badge--ok' : 'badge--warn'}` }, STATE_LABELS[mail.state] || mail.state)),
      h('td', { 'data-label': 'Essais' }, String(mail.attempts)),
      h('td', { 'data-label': 'Détail' },
        mail.state === 'sent' ? `Envoyé le ${formatDateTime(mail.sent_at)}`
          : mail.last_error ? mail.last_error
            : mail.state === 'queued' ? `Prochain essai le ${formatDateTime(mail.next_attempt_at)}` : ''),
      h('td', { 'data-label': 'Action' }, retry));
  });

  const total = state ? data.counts[state] : Object.values(data.counts).reduce((a, b) => a + b, 0);
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const pageLink = (n, label) => {
    const params = new URLSearchParams();
    if (state) params.set('etat', state);
    if (n > 1) params.set('page', String(n));
    return h('a', { class: 'button button--small button--secondary', href: `/mails${params.toString() ? `?${params}` : ''}` }, label);
  };

  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'File des mails'),
      h('button', { type: 'button', class: 'button button--secondary', onclick: () => app.render() }, 'Actualiser')),
    h('p', { class: 'muted' }, 'Chaque mail est enregistré ici avant d’être envoyé. Un mail en échec indique la réponse du serveur d’envoi : corrigez la cause (adresse du cavalier, réglages d’envoi) puis renvoyez-le.'),
    data.sender_running ? null : messageBox('error', 'L’envoi des mails n’est pas démarré : vérifiez le réglage smtp_url. Les mails restent en attente.'),
    filters,
    result,
    rows.length
      ? h('div', { class: 'table-holder' }, h('table', { class: 'table table--cards' },
        h('caption', { class: 'visually-hidden' }, `Mails, ${plural(total, 'résultat')}`),
        h('thead', {}, h('tr', {}, ['Créé le', 'Type', 'Destinataire', 'Sujet', 'État', 'Essais', 'Détail', 'Action'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows)))
      : h('p', { class: 'empty' }, 'Aucun mail.'),
    pages > 1 ? h('nav', { class: 'pagination', 'aria-label': 'Pages' },
      page > 1 ? pageLink(page - 1, 'Page précédente') : null,
      h('span', {}, ` Page ${page} sur ${pages} `),
      page < pages ? pageLink(page + 1, 'Page suivante') : null) : null);
}
