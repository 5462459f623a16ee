// "Mes accords": a logged-in rider reads the club's documents, accepts
// them, and withdraws an accord as easily as it was given, for themself
// and for the family members they manage. Decisions are recorded with the
// channel "espace cavalier" (POST /api/v1/consents/me).

import { api } from '../api.js';
import { h, replace, announce, formatDateTime } from '../dom.js';
import { messageBox, showMessage, withBusy } from '../ui.js';

const STATUS_TEXT = {
  accepte: 'accepte les conditions en vigueur',
  en_attente: 'n’a pas encore répondu',
  a_renouveler: 'avait accepté une version précédente : à renouveler',
  refuse: 'a refusé ou retiré son accord',
};
const DECISION_TEXT = { accepted: 'accepté', refused: 'refusé', withdrawn: 'retiré' };

function personLabel(record, app) {
  if (record.person) return `${record.person.first_name || ''} ${record.person.last_name || ''}`.trim();
  return record.id === app.user.id ? 'Vous' : `Personne n° ${record.id}`;
}

function documentPanel(app, record, doc, current, box) {
  const last = current ? current.last : null;
  const accepted = last && last.decision === 'accepted' && last.current;
  const buttons = [];
  const decide = (decision, label, okText) => {
    const button = h('button', { type: 'button', class: decision === 'accepted' ? 'button' : 'button button--secondary' }, label);
    button.addEventListener('click', () => withBusy(button, 'Enregistrement…', async () => {
      try {
        await api('POST', '/consents/me', {
          person_id: record.id, decisions: { [doc.key]: decision }, version_ids: { [doc.key]: doc.version_id },
        });
      } catch (err) {
        if (err.status !== 401) showMessage(box, 'error', err.message);
        return;
      }
      announce(okText);
      app.flash = { kind: 'success', message: okText };
      app.render();
    }));
    buttons.push(button);
  };
  if (accepted) {
    decide('withdrawn', 'Retirer mon accord', `Accord retiré : ${doc.title}.`);
  } else {
    decide('accepted', 'J’accepte', `Accord enregistré : ${doc.title}.`);
    if (!last || last.decision === 'accepted') decide('refused', 'Je refuse', `Refus enregistré : ${doc.title}.`);
  }
  return h('details', { class: 'panel' },
    h('summary', {}, `${doc.title} (version ${doc.version}${doc.required ? '' : ', facultatif'}) — `,
      last ? `${DECISION_TEXT[last.decision] || last.decision}${last.current ? '' : ' (ancienne version)'} le ${formatDateTime(last.at)}` : 'pas de réponse'),
    h('div', { class: 'consent-text', tabindex: '0', style: 'white-space: pre-wrap; max-height: 20rem; overflow: auto;' }, doc.text),
    h('p', { class: 'muted' }, `Empreinte SHA-256 : ${doc.hash}`),
    h('div', { class: 'bulk__actions' }, buttons));
}

export async function myConsentsPage(ctx) {
  const { app, main } = ctx;
  app.setTitle('Mes accords');
  const data = await api('GET', '/consents/me');
  if (!ctx.isCurrent()) return;
  const box = h('div', { 'aria-live': 'polite' });

  const sections = data.people.map((record) => h('section', { class: 'panel', 'aria-labelledby': `accords-${record.id}` },
    h('h2', { id: `accords-${record.id}` }, personLabel(record, app)),
    h('p', {}, record.status ? `Statut : ${STATUS_TEXT[record.status] || record.status}.` : 'Aucune condition à accepter.'),
    data.documents.map((doc) => documentPanel(app, record, doc,
      (record.documents || []).find((d) => d.key === doc.key), box))));

  replace(main,
    h('h1', {}, 'Mes accords'),
    ctx.flash ? messageBox(ctx.flash.kind, ctx.flash.message) : null,
    h('p', { class: 'muted' }, 'Les conditions du club et vos accords facultatifs. Vous pouvez retirer un accord à tout moment ; chaque réponse est conservée avec sa date.'),
    box,
    data.documents.length ? sections : h('p', { class: 'empty' }, 'Le club n’a publié aucune condition.'));
}
