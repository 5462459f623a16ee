// "Jetons d'API": the tokens that let other software (invoicing, the
// club's website) use the Licol API with one role. A token's text is shown
// once, right after its creation; the server keeps only a digest of it.

import { api, ApiError } from '../api.js';
import { h, replace, announce, formatDateTime, ROLES, roleLabel } from '../dom.js';
import { formField, messageBox, showMessage, showFieldErrors, clearFieldErrors, confirmDialog, withBusy } from '../ui.js';

function tokenRow(token, onRevoke) {
  const revoked = Boolean(token.revoked_at);
  return h('tr', { 'data-token-id': token.id },
    h('th', { scope: 'row', 'data-label': 'Nom' }, token.name),
    h('td', { 'data-label': 'Statut' }, roleLabel(token.role)),
    h('td', { 'data-label': 'Créé le' }, formatDateTime(token.created_at),
      token.created_by ? h('span', { class: 'muted' }, ` par ${token.created_by.name}`) : null),
    h('td', { 'data-label': 'Dernière utilisation' }, token.last_used_at ? formatDateTime(token.last_used_at) : h('span', { class: 'muted' }, 'jamais')),
    h('td', { 'data-label': 'État' }, revoked
      ? h('span', { class: 'badge badge--bad' }, `Révoqué le ${formatDateTime(token.revoked_at)}`)
      : h('span', { class: 'badge badge--ok' }, 'Actif')),
    h('td', { 'data-label': 'Actions' }, revoked ? null : h('button', {
      type: 'button', class: 'button button--small button--danger-ghost', onclick: () => onRevoke(token),
    }, 'Révoquer', h('span', { class: 'visually-hidden' }, ` le jeton ${token.name}`))));
}

export async function tokensPage(ctx) {
  const { app, main } = ctx;
  app.setTitle("Jetons d'API");

  const listMessages = h('div', { class: 'form-messages' });
  const listHolder = h('div', {});

  async function loadList() {
    const data = await api('GET', '/tokens');
    const tokens = data.items || [];
    if (!tokens.length) {
      replace(listHolder, h('p', { class: 'empty' }, 'Aucun jeton pour l’instant.'));
      return;
    }
    replace(listHolder, h('div', { class: 'table-holder' }, h('table', { class: 'table table--cards' },
      h('thead', {}, h('tr', {}, ['Nom', 'Statut', 'Créé le', 'Dernière utilisation', 'État', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, tokens.map((token) => tokenRow(token, revoke))))));
  }

  async function revoke(token) {
    const ok = await confirmDialog('Révoquer le jeton',
      `Le logiciel qui utilise le jeton « ${token.name} » ne pourra plus accéder à Licol. Cette action est irréversible.`,
      'Révoquer');
    if (!ok) return;
    replace(listMessages);
    try {
      await api('DELETE', `/tokens/${token.id}`);
      await loadList();
      showMessage(listMessages, 'success', `Le jeton « ${token.name} » est révoqué.`);
    } catch (err) {
      if (err.status !== 401) showMessage(listMessages, 'error', err.message);
    }
  }

  // ---- creation form ----
  const messages = h('div', { class: 'form-messages' });
  const created = h('div', { 'aria-live': 'polite' });
  const fields = {
    name: formField({ name: 'name', label: 'Nom du jeton', required: true, help: 'Le logiciel ou le service qui l’utilisera, par exemple « Logiciel de facturation ».' }),
    role: formField({
      name: 'role', label: 'Statut donné au jeton', type: 'select', value: 'comptable', required: true,
      choices: ROLES, help: 'Le jeton peut faire ce que ce statut permet, sur toutes les fiches. Choisissez le statut le plus restreint qui suffit.',
    }),
  };
  const submit = h('button', { type: 'submit', class: 'button' }, 'Créer le jeton');
  const form = h('form', { class: 'form form--wide panel', novalidate: true, 'aria-labelledby': 'titre-nouveau-jeton' },
    h('h2', { id: 'titre-nouveau-jeton' }, 'Nouveau jeton'),
    messages, h('div', { class: 'field-grid' }, fields.name.element, fields.role.element),
    h('div', { class: 'actions' }, submit), created);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(fields);
    replace(messages);
    replace(created);
    const name = fields.name.control.value.trim();
    if (!name) {
      showFieldErrors(fields, { name: 'Donnez un nom au jeton.' });
      return;
    }
    await withBusy(submit, 'Création…', async () => {
      let token;
      try {
        token = await api('POST', '/tokens', { name, role: fields.role.control.value });
      } catch (err) {
        if (err instanceof ApiError && err.status === 422) {
          const rest = showFieldErrors(fields, err.fields);
          showMessage(messages, 'error', err.message, rest.length ? h('p', {}, rest.join(' ')) : null);
        } else if (err.status !== 401) {
          showMessage(messages, 'error', err.message);
        }
        return;
      }
      form.reset(); // before showing the token, whose box is inside the form
      const text = h('input', { type: 'text', readonly: true, value: token.token, class: 'mono', 'aria-label': 'Texte du jeton' });
      const copy = h('button', {
        type: 'button', class: 'button button--secondary button--small',
        onclick: async () => {
          text.select();
          try {
            await navigator.clipboard.writeText(token.token);
            announce('Jeton copié.');
            copy.textContent = 'Copié';
          } catch (err) {
            copy.textContent = 'Sélectionné : copiez avec Ctrl+C';
          }
        },
      }, 'Copier');
      replace(created, messageBox('success', `Jeton « ${token.name} » créé. Copiez-le maintenant : il ne sera plus jamais affiché.`,
        h('div', { class: 'search__row' }, text, copy),
        h('p', {}, 'Le logiciel l’envoie dans l’en-tête « Authorization: Bearer … » de chaque requête.')));
      text.focus();
      text.select();
      await loadList();
    });
  });

  await loadList();
  if (!ctx.isCurrent()) return;
  replace(main,
    h('h1', {}, "Jetons d'API"),
    h('p', { class: 'muted' }, 'Un jeton permet à un autre logiciel du club d’utiliser Licol avec un seul statut. Révoquez un jeton dès qu’il ne sert plus ou s’il a pu être divulgué.'),
    form,
    h('section', { class: 'panel', 'aria-labelledby': 'titre-jetons' },
      h('h2', { id: 'titre-jetons' }, 'Jetons existants'), listMessages, listHolder));
}
