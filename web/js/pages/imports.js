// Import page: upload a rider file with its options, preview it (dry run),
// confirm it, follow its progress, read its report, download its rejected
// rows, undo the last import, and browse past imports. /imports/:id shows
// the report of one run.

import { api, apiUrl, ApiError, query } from '../api.js';
import { h, replace, announce, formatDateTime, formatBytes, plural } from '../dom.js';
import { formField, messageBox, showMessage, confirmDialog, withBusy } from '../ui.js';
import { loadCatalogue, displayValue, fieldLabel } from '../fields_form.js';

const POLL_MS = 500;

const STATE_LABELS = {
  queued: ['En attente', 'badge--muted'],
  running: ['En cours', 'badge--info'],
  done: ['Terminé', 'badge--ok'],
  failed: ['Échec', 'badge--bad'],
  undone: ['Annulé', 'badge--warn'],
};

const SOURCE_LABELS = { web: 'Interface web', cli: 'Ligne de commande', auto: 'Récupération automatique' };

const FORMATS = [['auto', 'Détection automatique'], ['ffe', 'Fichier FFE (licenciés)'], ['celeris', 'Export Céléris (clients)']];

const COUNT_LABELS = [
  ['created', 'Créés', 'Personnes absentes de Licol, qui seront ou ont été ajoutées.'],
  ['updated', 'Mis à jour', 'Personnes déjà connues dont au moins un champ change.'],
  ['unchanged', 'Inchangés', 'Personnes déjà connues, identiques au fichier.'],
  ['set_aside', 'Mis de côté', 'Lignes qu’un membre de l’équipe doit vérifier (doublon possible, homonyme…).'],
  ['rejected', 'Rejetés', 'Lignes inutilisables, à corriger dans le fichier rejeté puis à réimporter.'],
];

function stateBadge(run) {
  const [label, kind] = STATE_LABELS[run.state] || [run.state, 'badge--muted'];
  return h('span', { class: `badge ${kind}` }, label);
}

function modeLabel(run) {
  return run.dry_run ? 'Prévisualisation' : 'Import';
}

function runIsFinished(run) {
  return run.state === 'done' || run.state === 'failed' || run.state === 'undone';
}

// Progress as a fraction in [0, 1], or null when unknown.
function progressFraction(run) {
  const p = run.progress || {};
  const done = p.bytes_read ?? p.lines_done;
  const total = p.bytes_total ?? p.lines_total;
  if (!total || done === undefined || done === null) return null;
  return Math.max(0, Math.min(1, done / total));
}

function countsGrid(run) {
  const counts = run.counts || {};
  return h('dl', { class: 'counts' }, COUNT_LABELS.map(([key, label, help]) =>
    h('div', { class: `counts__item counts__item--${key}`, title: help },
      h('dt', {}, label), h('dd', { 'data-count': key }, String(counts[key] ?? 0)))));
}

function changeItem(sample, change) {
  const hasOld = sample.action !== 'create' && change.old !== null && change.old !== undefined && change.old !== '';
  const newText = displayValue(change.field, change.new) || '(vide)';
  return h('li', {},
    h('span', { class: 'changes__field' }, `${change.label || change.field} : `),
    hasOld ? [h('del', {}, displayValue(change.field, change.old)), h('span', { 'aria-hidden': 'true' }, ' → '), h('span', { class: 'visually-hidden' }, ' devient ')] : null,
    h('ins', {}, newText));
}

function sampleRow(run, sample) {
  const person = sample.person || {};
  // A preview's ids may belong to people that were never saved, and an
  // undone run's created people are gone, so only a kept real run links to
  // the sheets.
  const linked = person.id && !run.dry_run && run.state === 'done';
  const name = linked ? h('a', { href: `/cavaliers/${person.id}` }, person.name) : (person.name || '');
  const listClass = sample.action === 'create' ? 'changes changes--inline' : 'changes';
  return h('tr', {},
    h('td', { 'data-label': 'Ligne' }, String(sample.row ?? '')),
    h('th', { scope: 'row', 'data-label': 'Personne' }, name),
    h('td', { 'data-label': 'Action' }, sample.action === 'create' ? 'Création' : 'Mise à jour'),
    h('td', { 'data-label': 'Changements' },
      h('ul', { class: listClass }, (sample.changes || []).map((change) => changeItem(sample, change)))));
}

const SAMPLES_SHOWN = 10;

// Sample changes, updates first because they alter known people; the
// first SAMPLES_SHOWN are shown and a button reveals the rest.
function sampleChangesTable(run) {
  const samples = (run.sample_changes || []).slice()
    .sort((a, b) => (a.action === b.action ? (a.row ?? 0) - (b.row ?? 0) : (a.action === 'update' ? -1 : 1)));
  if (!samples.length) return null;
  const body = h('tbody', {}, samples.slice(0, SAMPLES_SHOWN).map((sample) => sampleRow(run, sample)));
  const table = h('table', { class: 'table table--cards' },
    h('thead', {}, h('tr', {}, ['Ligne', 'Personne', 'Action', 'Changements'].map((t) => h('th', { scope: 'col' }, t)))),
    body);
  let more = null;
  if (samples.length > SAMPLES_SHOWN) {
    more = h('button', {
      type: 'button', class: 'button button--secondary button--small',
      onclick: () => {
        body.append(...samples.slice(SAMPLES_SHOWN).map((sample) => sampleRow(run, sample)));
        more.remove();
      },
    }, `Afficher les ${samples.length - SAMPLES_SHOWN} autres exemples`);
  }
  return h('section', { class: 'report-section' },
    h('h3', {}, `Exemples de changements (${samples.length})`),
    h('div', { class: 'table-holder' }, table),
    more ? h('div', { class: 'actions' }, more) : null);
}

function setAsideList(run) {
  const rows = run.set_aside || [];
  if (!rows.length) return null;
  return h('section', { class: 'report-section' },
    h('h3', {}, `Lignes mises de côté (${rows.length})`),
    h('ul', { class: 'issues' }, rows.map((row) => h('li', {}, h('strong', {}, `Ligne ${row.row} : `), row.reason))));
}

// Values the import kept aside or could not understand (invalid e-mail,
// licence number, date...), and riders listed twice: nothing was lost, but
// staff should look. The server sends the first 200.
function warningsList(run) {
  const rows = run.warnings || [];
  if (!rows.length) return null;
  const total = (run.counts || {}).warnings || rows.length;
  return h('section', { class: 'report-section' },
    h('h3', {}, `Avertissements (${total})`),
    total > rows.length ? h('p', { class: 'muted' }, `Les ${rows.length} premiers sont affichés.`) : null,
    h('ul', { class: 'issues' }, rows.map((row) => h('li', {},
      h('strong', {}, `Ligne ${row.row} : `),
      row.person_id && !run.dry_run ? [h('a', { href: `/cavaliers/${row.person_id}` }, row.reason)] : row.reason))));
}

// The report of a run: options, state, counts, samples and downloads.
function runReport(run) {
  const fraction = progressFraction(run);
  const rows = run.progress && run.progress.rows;
  const details = [
    ['Fichier', `${run.filename || ''}${run.size ? ` (${formatBytes(run.size)})` : ''}`],
    ['Format', [run.format_label || run.format, run.encoding, run.separator ? `séparateur « ${run.separator} »` : null].filter(Boolean).join(', ')],
    ['Remplacer les données', run.replace ? 'oui' : 'non'],
    ['Origine', SOURCE_LABELS[run.source] || run.source],
    ['Prévisualisation confirmée', run.preview_of ? `n° ${run.preview_of}` : null],
    ['Lancé par', run.by ? run.by.name : 'Système'],
    ['Début', formatDateTime(run.started_at)],
    ['Fin', formatDateTime(run.finished_at)],
  ].filter(([, value]) => value);

  return h('div', { class: 'report', 'data-run-id': run.id, 'data-state': run.state },
    h('p', { class: 'report__state' }, `${modeLabel(run)} n° ${run.id} `, stateBadge(run)),
    runIsFinished(run) ? null : h('div', { class: 'progress' },
      h('label', { for: `progression-${run.id}` }, 'Progression'),
      fraction === null
        ? h('progress', { id: `progression-${run.id}` })
        : h('progress', { id: `progression-${run.id}`, max: 100, value: Math.round(fraction * 100) }, `${Math.round(fraction * 100)} %`),
      h('p', { class: 'muted' }, fraction === null ? 'Lecture du fichier…' : `${Math.round(fraction * 100)} %`, rows ? ` — ${plural(rows, 'ligne lue', 'lignes lues')}` : '')),
    run.state === 'failed' ? messageBox('error', run.error || "L'import a échoué. Les données n'ont pas été modifiées.") : null,
    run.state === 'undone' ? messageBox('info', 'Cet import a été annulé : les personnes créées ont été supprimées et les valeurs modifiées restaurées.') : null,
    h('dl', { class: 'details' }, details.map(([term, value]) => h('div', {}, h('dt', {}, term), h('dd', {}, value)))),
    run.state === 'done' || run.state === 'undone' ? countsGrid(run) : null,
    run.state === 'done' && (run.counts || {}).rejected > 0
      ? h('p', {}, h('a', { href: apiUrl(`/imports/${run.id}/rejected.csv`), download: `rejets-import-${run.id}.csv`, class: 'button button--secondary' }, `Télécharger les lignes rejetées (${run.counts.rejected})`))
      : null,
    sampleChangesTable(run),
    setAsideList(run),
    warningsList(run));
}

// One change made since an import, which prevents undoing it:
// {person: {id, name}, field, at, action, by}.
function conflictItem(conflict) {
  const person = conflict.person || {};
  const what = conflict.field ? fieldLabel(conflict.field) : (conflict.action || 'modification');
  const when = conflict.at ? ` le ${formatDateTime(conflict.at)}` : '';
  const who = conflict.by ? ` par ${conflict.by}` : '';
  return h('li', {},
    person.id ? h('a', { href: `/cavaliers/${person.id}` }, person.name || `Personne n° ${person.id}`) : (person.name || ''),
    ` : ${what} modifié${when}${who}`);
}

// Polls a run until it finishes. onUpdate(run) is called on every response.
// Returns a stop function.
function pollRun(id, onUpdate, onError) {
  let stopped = false;
  let timer = null;
  async function tick() {
    try {
      const run = await api('GET', `/imports/${id}`);
      if (stopped) return;
      onUpdate(run);
      if (!runIsFinished(run)) timer = setTimeout(tick, POLL_MS);
    } catch (err) {
      if (!stopped) onError(err);
    }
  }
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export async function importsPage(ctx) {
  const { app, main } = ctx;
  app.setTitle('Imports');
  await loadCatalogue(); // for field labels and values in the reports
  let stopPolling = null;
  const cleanup = () => {
    if (stopPolling) stopPolling();
    stopPolling = null;
  };

  const current = h('section', { class: 'panel', 'aria-labelledby': 'titre-import-en-cours', hidden: true },
    h('h2', { id: 'titre-import-en-cours' }, 'Import en cours'));
  const currentBody = h('div', { 'aria-live': 'polite' });
  const currentActions = h('div', { class: 'actions' });
  const currentMessages = h('div', { class: 'form-messages' });
  current.append(currentMessages, currentBody, currentActions);
  const historyHolder = h('div', {});

  // Shows run in the "current" section with the actions that fit its
  // state, and keeps polling while it runs.
  function showRun(run, heading) {
    current.hidden = false;
    current.querySelector('h2').textContent = heading || (run.dry_run ? 'Prévisualisation' : `Import n° ${run.id}`);
    replace(currentBody, runReport(run));
    replace(currentActions);
    if (!runIsFinished(run)) return;
    if (run.state === 'done' && run.dry_run && run.confirmable !== false && app.can('import.run')) {
      const confirm = h('button', { type: 'button', class: 'button', 'data-action': 'confirmer' }, "Confirmer l'import");
      const cancel = h('button', { type: 'button', class: 'button button--secondary' }, 'Abandonner');
      confirm.addEventListener('click', () => withBusy(confirm, 'Lancement…', async () => {
        replace(currentMessages);
        try {
          const body = await api('POST', `/imports/${run.id}/confirm`);
          follow(body.run || body, 'Import');
        } catch (err) {
          if (err.status !== 401) showMessage(currentMessages, 'error', err.message);
        }
      }));
      cancel.addEventListener('click', () => {
        current.hidden = true;
        replace(currentMessages);
        app.navigate('/imports', { replace: true });
      });
      currentActions.append(confirm, cancel);
      announce('Prévisualisation terminée. Vérifiez les chiffres puis confirmez l’import.');
    } else if (run.state === 'done' && !run.dry_run) {
      announce(`Import n° ${run.id} terminé.`);
      if (app.can('mail.send')) currentActions.append(recoveryButton(run));
      if (run.undoable && app.can('import.undo')) currentActions.append(undoButton(run));
    } else if (run.state === 'failed') {
      announce("L'import a échoué.");
    }
  }

  // Sends every client of the run the mail to choose a password: one mail
  // per address (a family sharing one gets a single mail), and lists the
  // people without a usable address.
  function recoveryButton(run) {
    const button = h('button', { type: 'button', class: 'button button--secondary', 'data-action': 'mail-recuperation' },
      'Envoyer mail de récupération');
    button.addEventListener('click', async () => {
      const ok = await confirmDialog('Envoyer le mail de récupération',
        `Chaque personne créée ou mise à jour par l'import n° ${run.id} recevra un lien pour choisir son mot de passe (un seul mail par adresse).`,
        'Envoyer');
      if (!ok) return;
      await withBusy(button, 'Envoi…', async () => {
        replace(currentMessages);
        try {
          const result = await api('POST', '/recovery-mails', { import_run_id: run.id });
          const missing = Array.isArray(result.without_email) ? result.without_email : [];
          showMessage(currentMessages, 'success',
            `${plural(result.queued || 0, 'mail')} en file d'envoi, pour ${plural(result.addresses || 0, 'adresse')}.`,
            missing.length
              ? h('div', {}, h('p', {}, `${plural(missing.length, 'personne')} sans adresse e-mail utilisable :`),
                h('ul', {}, missing.map((p) => h('li', {}, h('a', { href: `/cavaliers/${p.id}` }, p.name), ` — ${p.reason}`))))
              : null);
        } catch (err) {
          if (err.status !== 401) showMessage(currentMessages, 'error', err.message);
        }
      });
    });
    return button;
  }

  function undoButton(run) {
    const button = h('button', { type: 'button', class: 'button button--danger', 'data-action': 'annuler-import' }, 'Annuler cet import');
    button.addEventListener('click', async () => {
      const ok = await confirmDialog("Annuler l'import",
        `Les personnes créées par l'import n° ${run.id} seront supprimées et les valeurs qu'il a modifiées seront restaurées.`,
        "Annuler l'import");
      if (!ok) return;
      await withBusy(button, 'Annulation…', async () => {
        replace(currentMessages);
        try {
          const body = await api('POST', `/imports/${run.id}/undo`);
          const undone = (body && (body.run || body)) || run;
          showRun(undone);
          showMessage(currentMessages, 'success', `L'import n° ${run.id} a été annulé.`);
          loadHistory();
        } catch (err) {
          if (err.status === 401) return;
          const conflicts = Array.isArray(err.details.conflicts) ? err.details.conflicts : [];
          showMessage(currentMessages, 'error', err.message,
            conflicts.length ? h('ul', { class: 'conflicts' }, conflicts.map(conflictItem)) : null);
        }
      });
    });
    return button;
  }

  function follow(run, heading) {
    cleanup();
    showRun(run, heading);
    current.scrollIntoView({ block: 'start' });
    loadHistory(); // lists the new run, running or finished
    if (runIsFinished(run)) return;
    stopPolling = pollRun(run.id, (fresh) => {
      showRun(fresh, heading);
      if (runIsFinished(fresh)) loadHistory();
    }, (err) => {
      if (err.status !== 401) showMessage(currentMessages, 'error', err.message);
    });
  }

  // ---- upload form ----
  let form = null;
  if (app.can('import.run')) {
    const messages = h('div', { class: 'form-messages' });
    const file = formField({ name: 'fichier', label: 'Fichier à importer', type: 'file', required: true, help: 'Fichier CSV des licenciés de la FFE ou export des clients de Céléris.' });
    file.control.setAttribute('accept', '.csv,.txt,text/csv');
    const format = formField({ name: 'format', label: 'Format du fichier', type: 'select', value: 'auto', choices: FORMATS });
    const replaceData = formField({
      name: 'replace', label: 'Remplacer les données', type: 'checkbox',
      help: "Cochée : les valeurs du fichier remplacent celles déjà enregistrées. Non cochée : le fichier complète seulement les champs vides. Le numéro de licence et le Galop suivent toujours le fichier le plus récent, et une case vide du fichier n'efface jamais une valeur connue (règles modifiables par le club dans merge.lua).",
    });
    const submit = h('button', { type: 'submit', class: 'button' }, 'Prévisualiser');
    form = h('form', { class: 'form form--wide panel', novalidate: true, 'aria-labelledby': 'titre-nouvel-import' },
      h('h2', { id: 'titre-nouvel-import' }, 'Nouvel import'),
      h('p', { class: 'muted' }, "Licol lit d'abord le fichier sans rien enregistrer et vous montre ce qui changera. Rien n'est modifié avant votre confirmation."),
      messages, file.element, h('div', { class: 'field-grid' }, format.element), replaceData.element,
      h('div', { class: 'actions' }, submit));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      replace(messages);
      file.clearError();
      const chosen = file.control.files[0];
      if (!chosen) {
        file.setError('Choisissez le fichier à importer.');
        file.control.focus();
        return;
      }
      await withBusy(submit, 'Envoi…', async () => {
        try {
          const body = await api('POST', `/imports${query({
            dry_run: 1, replace: replaceData.control.checked ? 1 : 0, format: format.control.value, filename: chosen.name,
          })}`, chosen);
          follow(body.run || body, 'Prévisualisation');
        } catch (err) {
          if (err.status === 401) return;
          if (err instanceof ApiError && err.status === 422 && Object.keys(err.fields).length) {
            const fieldMessage = err.fields.file || err.fields.fichier || err.fields.format;
            if (err.fields.format) format.setError(err.fields.format);
            if (fieldMessage && !err.fields.format) file.setError(fieldMessage);
          }
          showMessage(messages, 'error', err.message);
        }
      });
    });
  }

  // ---- history ----
  async function loadHistory() {
    let data;
    try {
      data = await api('GET', '/imports');
    } catch (err) {
      if (err.status === 401) return;
      replace(historyHolder, messageBox('error', err.message));
      return;
    }
    if (!ctx.isCurrent()) return;
    const runs = Array.isArray(data) ? data : (data.items || []);
    if (!runs.length) {
      replace(historyHolder, h('p', { class: 'empty' }, 'Aucun import pour l’instant.'));
      return;
    }
    replace(historyHolder, h('div', { class: 'table-holder' }, h('table', { class: 'table table--cards' },
      h('thead', {}, h('tr', {}, ['N°', 'Date', 'Fichier', 'Type', 'État', 'Créés', 'Mis à jour', 'Rejetés', 'Par', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, runs.map((run) => {
        const counts = run.counts || {};
        return h('tr', { 'data-run-id': run.id },
          h('td', { 'data-label': 'N°' }, String(run.id)),
          h('td', { 'data-label': 'Date' }, formatDateTime(run.finished_at || run.started_at || run.created_at)),
          h('th', { scope: 'row', 'data-label': 'Fichier' }, run.filename || ''),
          h('td', { 'data-label': 'Type' }, modeLabel(run), run.replace ? h('span', { class: 'muted' }, ' (remplacement)') : null),
          h('td', { 'data-label': 'État' }, stateBadge(run)),
          h('td', { 'data-label': 'Créés' }, String(counts.created ?? '')),
          h('td', { 'data-label': 'Mis à jour' }, String(counts.updated ?? '')),
          h('td', { 'data-label': 'Rejetés' }, String(counts.rejected ?? '')),
          h('td', { 'data-label': 'Par' }, run.by ? run.by.name : 'Système'),
          h('td', { 'data-label': 'Actions', class: 'cell-actions' },
            h('a', { href: `/imports/${run.id}` }, 'Rapport', h('span', { class: 'visually-hidden' }, ` de l'import n° ${run.id}`)),
            counts.rejected > 0 ? [' ', h('a', { href: apiUrl(`/imports/${run.id}/rejected.csv`), download: `rejets-import-${run.id}.csv` }, 'Rejets (CSV)')] : null));
      })))));
  }

  replace(main,
    h('h1', {}, 'Imports'),
    ctx.flash ? messageBox(ctx.flash.kind, ctx.flash.message) : null,
    form,
    current,
    h('section', { class: 'panel', 'aria-labelledby': 'titre-historique' },
      h('h2', { id: 'titre-historique' }, 'Historique des imports'), historyHolder));

  if (ctx.params[0]) {
    const run = await api('GET', `/imports/${ctx.params[0]}`);
    if (!ctx.isCurrent()) return cleanup;
    follow(run, `${modeLabel(run)} n° ${run.id}`);
  } else {
    await loadHistory();
  }
  return cleanup;
}
