// Login page and the password change page (forced after a one-time
// password, or chosen from the header).

import { api, ApiError } from '../api.js';
import { h, replace } from '../dom.js';
import { formField, showMessage, showFieldErrors, clearFieldErrors, withBusy } from '../ui.js';

// Keeps only a path inside the application as the page to return to after
// login, so that a crafted link cannot send the user to another site.
function safeReturnPath(value) {
  if (!value || !value.startsWith('/') || value.startsWith('//') || value.startsWith('/connexion')) return null;
  return value;
}

export async function loginPage(ctx) {
  const { app, main } = ctx;
  app.setTitle('Connexion');

  const messages = h('div', { class: 'form-messages' });
  const fields = {
    email: formField({ name: 'email', label: 'Adresse e-mail', type: 'email', required: true, autocomplete: 'username' }),
    password: formField({ name: 'password', label: 'Mot de passe', type: 'password', required: true, autocomplete: 'current-password' }),
  };
  const submit = h('button', { type: 'submit', class: 'button' }, 'Se connecter');
  const form = h('form', { class: 'form', novalidate: true },
    messages, fields.email.element, fields.password.element,
    h('div', { class: 'actions' }, submit, h('a', { href: '/choisir-mot-de-passe.html' }, 'Mot de passe oublié ?')));

  if (ctx.flash) showMessage(messages, ctx.flash.kind, ctx.flash.message);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(fields);
    replace(messages);
    const email = fields.email.control.value.trim();
    const password = fields.password.control.value;
    const missing = {};
    if (!email) missing.email = 'Saisissez votre adresse e-mail.';
    if (!password) missing.password = 'Saisissez votre mot de passe.';
    if (Object.keys(missing).length) {
      showFieldErrors(fields, missing);
      return;
    }
    await withBusy(submit, 'Connexion…', async () => {
      try {
        const body = await api('POST', '/session', { email, password }, { quiet401: true });
        app.setSession(body);
        const back = safeReturnPath(ctx.query.get('retour'));
        app.navigate(body.user.must_change_password ? '/mot-de-passe' : (back || app.homePath()), { replace: true });
      } catch (err) {
        if (err instanceof ApiError && err.status === 422) {
          const rest = showFieldErrors(fields, err.fields);
          if (rest.length) showMessage(messages, 'error', rest.join(' '));
        } else {
          showMessage(messages, 'error', err.message);
          fields.password.control.focus();
        }
        fields.password.control.value = '';
      }
    });
  });

  replace(main,
    h('div', { class: 'narrow' },
      h('h1', {}, 'Connexion'),
      h('p', { class: 'muted' }, 'Espace du club : connectez-vous avec votre adresse e-mail et votre mot de passe.'),
      form));
  fields.email.control.focus();
}

export async function passwordPage(ctx) {
  const { app, main } = ctx;
  const forced = Boolean(app.user && app.user.must_change_password);
  app.setTitle('Changer de mot de passe');

  const messages = h('div', { class: 'form-messages' });
  const fields = {
    current_password: formField({ name: 'current_password', label: forced ? 'Mot de passe reçu (à usage unique)' : 'Mot de passe actuel', type: 'password', required: true, autocomplete: 'current-password' }),
    new_password: formField({ name: 'new_password', label: 'Nouveau mot de passe', type: 'password', required: true, autocomplete: 'new-password', help: 'Choisissez un mot de passe long : une phrase de plusieurs mots est facile à retenir et difficile à deviner.' }),
    confirmation: formField({ name: 'confirmation', label: 'Nouveau mot de passe (confirmation)', type: 'password', required: true, autocomplete: 'new-password' }),
  };
  const submit = h('button', { type: 'submit', class: 'button' }, 'Enregistrer le mot de passe');
  const actions = h('div', { class: 'actions' }, submit);
  if (forced) {
    actions.append(h('button', { type: 'button', class: 'button button--secondary', onclick: () => app.logout() }, 'Se déconnecter'));
  } else {
    actions.append(h('a', { href: app.homePath(), class: 'button button--secondary' }, 'Annuler'));
  }
  const form = h('form', { class: 'form', novalidate: true },
    messages, fields.current_password.element, fields.new_password.element, fields.confirmation.element, actions);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(fields);
    replace(messages);
    const current = fields.current_password.control.value;
    const fresh = fields.new_password.control.value;
    const problems = {};
    if (!current) problems.current_password = 'Saisissez votre mot de passe actuel.';
    if (!fresh) problems.new_password = 'Saisissez le nouveau mot de passe.';
    if (fresh && fields.confirmation.control.value !== fresh) problems.confirmation = 'Les deux saisies du nouveau mot de passe sont différentes.';
    if (Object.keys(problems).length) {
      showFieldErrors(fields, problems);
      return;
    }
    await withBusy(submit, 'Enregistrement…', async () => {
      try {
        await api('POST', '/account/password', { current_password: current, new_password: fresh });
        await app.reloadSession();
        app.flash = { kind: 'success', message: 'Votre mot de passe a été changé.' };
        app.navigate(app.homePath(), { replace: true });
      } catch (err) {
        if (err instanceof ApiError && err.status === 422 && Object.keys(err.fields).length) {
          const rest = showFieldErrors(fields, err.fields);
          if (rest.length) showMessage(messages, 'error', rest.join(' '));
        } else if (err instanceof ApiError && err.status === 401 && err.code !== 'unauthenticated') {
          fields.current_password.setError(err.message);
          fields.current_password.control.focus();
        } else {
          showMessage(messages, 'error', err.message);
        }
      }
    });
  });

  replace(main,
    h('div', { class: 'narrow' },
      h('h1', {}, forced ? 'Choisissez votre mot de passe' : 'Changer de mot de passe'),
      forced ? h('p', {}, 'Vous vous êtes connecté avec un mot de passe à usage unique. Choisissez maintenant votre mot de passe personnel pour accéder à Licol.') : null,
      form));
}
