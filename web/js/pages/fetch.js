// "Mise à jour automatique": the schedule of the automatic download of the
// federation file, the last downloads with their outcome, and the
// "Mettre à jour maintenant" button.

import { api } from '../api.js';
import { h, replace, announce, formatDateTime } from '../dom.js';
import { messageBox, showMessage, withBusy } from '../ui.js';

const PHASES = {
  download: 'téléchargement en cours',
  retry_wait: 'nouvel essai prévu',
  import: 'import en cours',
};
const OUTCOME_BADGES = {
  imported: 'badge--ok',
  unchanged: 'badge--ok',
  same_content: 'badge--ok',
  import_failed: 'badge--bad',
  failed: 'badge--bad',
};

export async function fetchPage(ctx) {
  const { app, main } = ctx;
  app.setTitle('Mise à jour automatique');

  const data = await api('GET', '/fetch');
  if (!ctx.isCurrent()) return;

  const result = h('div', { class: 'result-area', 'aria-live': 'polite' });
  const run = app.can('import.run')
    ? h('button', { type: 'button', class: 'button', disabled: data.running || !data.configured ? '' : null },
      'Mettre à jour maintenant')
    : null;
  if (run) {
    run.addEventListener('click', () => withBusy(run, 'Lancement…', async () => {
      try {
        await api('POST', '/fetch/run');
      } catch (err) {
        if (err.status !== 401) showMessage(result, 'error', err.message);
        return;
      }
      showMessage(result, 'success', 'La mise à jour est lancée. Actualisez la page pour suivre son avancement.');
      announce('Mise à jour lancée.');
      app.render();
    }));
  }

  const state = [];
  if (!data.configured) {
    state.push(messageBox('error', data.source_error
      ? `La source du fichier fédéral est mal décrite : ${data.source_error}`
      : 'Aucune adresse de téléchargement n’est configurée (paramètre fetch_url). Voir la documentation « Mise à jour automatique ».'));
  }
  state.push(h('dl', { class: 'facts' },
    h('dt', {}, 'Programmation'), h('dd', {}, data.schedule_label || 'aucune (seulement à la demande)'),
    h('dt', {}, 'Prochaine mise à jour'), h('dd', {}, data.next_run_at ? formatDateTime(data.next_run_at) : '—'),
    h('dt', {}, 'En ce moment'), h('dd', {}, data.running
      ? `${PHASES[data.phase] || 'en cours'}${data.retry_at ? ` (le ${formatDateTime(data.retry_at)})` : ''}`
      : 'rien en cours')));
  if (data.skipped) {
    state.push(h('p', { class: 'muted' },
      `Dernière mise à jour sautée le ${formatDateTime(data.skipped.at)} : ${data.skipped.reason}`));
  }

  const rows = data.history.map((f) => h('tr', {},
    h('td', { 'data-label': 'Début' }, formatDateTime(f.started_at)),
    h('td', { 'data-label': 'Déclenchement' }, f.trigger === 'manual'
      ? `à la demande${f.actor && f.actor.name ? ` (${f.actor.name})` : ''}` : 'programmé'),
    h('td', { 'data-label': 'Résultat' },
      h('span', { class: `badge ${OUTCOME_BADGES[f.outcome] || 'badge--warn'}` }, f.outcome_label || 'en cours')),
    h('td', { 'data-label': 'Détail' }, f.error || (f.bytes ? `${Math.round(f.bytes / 1024)} Ko reçus` : '')),
    h('td', { 'data-label': 'Import' }, f.import_run_id
      ? h('a', { href: `/imports/${f.import_run_id}` }, `Import n° ${f.import_run_id}`) : '')));

  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Mise à jour automatique'),
      h('button', { type: 'button', class: 'button button--secondary', onclick: () => app.render() }, 'Actualiser')),
    h('p', { class: 'muted' }, 'Licol télécharge la liste des licenciés de la FFE et l’importe avec les règles sûres : licences mises à jour, champs vides complétés, rien de remplacé. Un fichier identique au précédent n’est jamais importé deux fois.'),
    ...state,
    run,
    result,
    rows.length
      ? h('div', { class: 'table-holder' }, h('table', { class: 'table table--cards' },
        h('caption', {}, 'Derniers téléchargements'),
        h('thead', {}, h('tr', {}, ['Début', 'Déclenchement', 'Résultat', 'Détail', 'Import'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows)))
      : h('p', { class: 'empty' }, 'Aucun téléchargement pour l’instant.'));
}
