// "État des scripts": the script version in use, when it was loaded, the
// files and plugins it contains, and the last error of a rejected reload.

import { api } from '../api.js';
import { h, replace, formatDateTime } from '../dom.js';
import { messageBox } from '../ui.js';

export async function scriptsPage(ctx) {
  const { app, main } = ctx;
  app.setTitle('État des scripts');
  const status = await api('GET', '/scripts/status');
  if (!ctx.isCurrent()) return;

  const files = status.files || [];
  const plugins = status.plugins || [];
  const refresh = h('button', { type: 'button', class: 'button button--secondary', onclick: () => app.render() }, 'Actualiser');

  const errorPart = status.last_error
    ? h('section', { class: 'panel panel--error', 'aria-labelledby': 'titre-erreur' },
      h('h2', { id: 'titre-erreur' }, 'Dernière erreur'),
      h('p', {}, status.last_error_at ? `Le ${formatDateTime(status.last_error_at)}, ` : '',
        'une nouvelle version des scripts a été refusée. La version ci-dessus reste en service jusqu’à ce que l’erreur soit corrigée.'),
      h('pre', { class: 'error-text' }, status.last_error))
    : messageBox('success', 'Aucune erreur : la dernière version enregistrée des scripts est en service.');

  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'État des scripts'), refresh),
    h('p', { class: 'muted' }, 'Les scripts décident des droits de chacun, des règles de fusion des imports et des formats de fichiers. Licol recharge un script dès qu’il est enregistré et garde l’ancienne version si la nouvelle contient une erreur.'),
    h('section', { class: 'panel', 'aria-labelledby': 'titre-version' },
      h('h2', { id: 'titre-version' }, 'Version en service'),
      h('dl', { class: 'details' },
        h('div', {}, h('dt', {}, 'Version'), h('dd', { class: 'mono', 'data-status': 'version' }, status.version || 'inconnue')),
        h('div', {}, h('dt', {}, 'Chargée le'), h('dd', { 'data-status': 'loaded_at' }, formatDateTime(status.loaded_at) || 'inconnu')),
        status.reloads !== undefined ? h('div', {}, h('dt', {}, 'Rechargements réussis'), h('dd', {}, String(status.reloads))) : null,
        status.rejected_reloads !== undefined ? h('div', {}, h('dt', {}, 'Versions refusées'), h('dd', {}, String(status.rejected_reloads))) : null)),
    errorPart,
    h('section', { class: 'panel', 'aria-labelledby': 'titre-fichiers' },
      h('h2', { id: 'titre-fichiers' }, `Fichiers chargés (${files.length})`),
      files.length ? h('ul', { class: 'file-list' }, files.map((name) => h('li', { class: 'mono' }, name))) : h('p', { class: 'empty' }, 'Aucun fichier.')),
    h('section', { class: 'panel', 'aria-labelledby': 'titre-plugins' },
      h('h2', { id: 'titre-plugins' }, `Plugins (${plugins.length})`),
      plugins.length
        ? h('div', { class: 'table-holder' }, h('table', { class: 'table table--cards' },
          h('thead', {}, h('tr', {}, ['Plugin', 'Version', 'Champs ajoutés'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, plugins.map((p) => h('tr', {},
            h('th', { scope: 'row', 'data-label': 'Plugin' }, p.name),
            h('td', { 'data-label': 'Version' }, p.version || '—'),
            h('td', { 'data-label': 'Champs ajoutés' }, String(p.fields ?? 0)))))))
        : h('p', { class: 'empty' }, 'Aucun plugin installé.')));
}
