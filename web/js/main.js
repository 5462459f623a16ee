// Entry point of the staff interface: session state, the page router
// (history API, clean URLs served by the Licol server as index.html), the
// header navigation, and the handling of 401 and 403 common to all pages.

import { api, ApiError, setCsrfToken, setUnauthenticatedHandler } from './api.js';
import { h, replace, personName } from './dom.js';
import { messageBox } from './ui.js';
import { loginPage, passwordPage } from './pages/login.js';
import { ridersPage } from './pages/riders.js';
import { riderPage, newRiderPage } from './pages/rider.js';
import { importsPage } from './pages/imports.js';
import { scriptsPage } from './pages/scripts.js';
import { tokensPage } from './pages/tokens.js';
import { outboxPage } from './pages/outbox.js';
import { consentsPage } from './pages/consents.js';
import { myConsentsPage } from './pages/my_consents.js';
import { registrationsPage } from './pages/registrations.js';
import { fetchPage } from './pages/fetch.js';

const main = document.getElementById('contenu');
const nav = document.getElementById('nav-principale');
const account = document.getElementById('compte');
const menuButton = document.getElementById('menu');
const header = document.querySelector('.app-header');

// On phones the navigation folds behind the "Menu" button (CSS decides
// when the button shows); following a link folds it again.
function setMenuOpen(open) {
  header.classList.toggle('app-header--open', open);
  menuButton.setAttribute('aria-expanded', String(open));
}
menuButton.addEventListener('click', () => setMenuOpen(menuButton.getAttribute('aria-expanded') !== 'true'));

// Pages by path. perm: the action of the permission map needed to open the
// page (the server checks again on every request).
const ROUTES = [
  { pattern: /^\/connexion$/, page: loginPage, public: true },
  { pattern: /^\/mot-de-passe$/, page: passwordPage },
  { pattern: /^\/cavaliers$/, page: ridersPage, perm: 'riders.list' },
  { pattern: /^\/cavaliers\/nouveau$/, page: newRiderPage, perm: 'rider.create' },
  { pattern: /^\/cavaliers\/(\d+)$/, page: riderPage },
  { pattern: /^\/imports$/, page: importsPage, perm: 'import.read' },
  { pattern: /^\/imports\/(\d+)$/, page: importsPage, perm: 'import.read' },
  { pattern: /^\/scripts$/, page: scriptsPage, perm: 'scripts.status' },
  { pattern: /^\/jetons$/, page: tokensPage, perm: 'tokens.manage' },
  { pattern: /^\/mails$/, page: outboxPage, perm: 'outbox.read' },
  { pattern: /^\/consentement$/, page: consentsPage, perm: 'consent.manage' },
  { pattern: /^\/mes-accords$/, page: myConsentsPage },
  { pattern: /^\/inscriptions$/, page: registrationsPage, perm: 'registrations.manage' },
  { pattern: /^\/mise-a-jour$/, page: fetchPage, perm: 'import.read' },
];

const app = {
  user: null,
  permissions: {},
  permissionsSelf: {}, // actions allowed on one's own sheet and one's family's
  flash: null, // message shown once on the next page (after logout, expiry)
  navigation: 0,
  cleanup: null,

  // True when the permission map from the server allows action.
  can(action) {
    return this.permissions[action] === true;
  },

  // True when action is allowed on the person personId: either on anyone,
  // or on oneself and one's family through permissions_self.
  canOn(action, personId) {
    if (this.can(action)) return true;
    if (!this.user || this.permissionsSelf[action] !== true) return false;
    return personId === this.user.id || (this.user.family || []).some((member) => member.id === personId);
  },

  // The first page for this user: the rider list for staff, else their
  // own profile sheet.
  homePath() {
    if (this.can('riders.list')) return '/cavaliers';
    return this.user ? `/cavaliers/${this.user.id}` : '/connexion';
  },

  setSession(body) {
    this.user = body.user;
    this.permissions = body.permissions || {};
    this.permissionsSelf = body.permissions_self || {};
    setCsrfToken(body.csrf_token);
  },

  clearSession() {
    this.user = null;
    this.permissions = {};
    this.permissionsSelf = {};
    setCsrfToken(null);
  },

  navigate(path, options = {}) {
    if (options.replace) history.replaceState(null, '', path);
    else history.pushState(null, '', path);
    render();
  },

  // Replaces the query string of the current URL without rendering again
  // (pages keep their filters in the URL so that reload and back work).
  updateQuery(params) {
    const search = params.toString();
    history.replaceState(null, '', location.pathname + (search ? `?${search}` : ''));
  },

  async logout() {
    try {
      await api('DELETE', '/session', null, { quiet401: true });
    } catch (err) {
      // The session is gone either way; a failure here only means the
      // server already forgot it or cannot be reached.
    }
    this.clearSession();
    this.flash = { kind: 'success', message: 'Vous êtes déconnecté.' };
    this.navigate('/connexion');
  },

  setTitle(title) {
    document.title = title ? `${title} · Licol` : 'Licol';
  },
};

setUnauthenticatedHandler(() => {
  if (!app.user) return;
  app.clearSession();
  app.flash = { kind: 'info', message: 'Votre session a expiré. Reconnectez-vous pour continuer.' };
  const back = location.pathname + location.search;
  app.navigate(`/connexion?retour=${encodeURIComponent(back)}`, { replace: true });
});

// ---- header ---------------------------------------------------------------

function navLink(path, label) {
  const current = location.pathname === path || location.pathname.startsWith(`${path}/`);
  return h('li', {}, h('a', { href: path, 'aria-current': current ? 'page' : null }, label));
}

function renderHeader() {
  setMenuOpen(false);
  if (!app.user || app.user.must_change_password) {
    nav.hidden = true;
    account.hidden = true;
    menuButton.hidden = true;
    replace(nav);
    replace(account);
    return;
  }
  const links = [];
  if (app.can('riders.list')) links.push(navLink('/cavaliers', 'Cavaliers'));
  else links.push(navLink(`/cavaliers/${app.user.id}`, 'Ma fiche'));
  if (app.can('import.read') || app.can('import.run')) links.push(navLink('/imports', 'Imports'));
  if (app.can('import.read')) links.push(navLink('/mise-a-jour', 'Mise à jour FFE'));
  if (app.can('registrations.manage')) links.push(navLink('/inscriptions', 'Inscriptions'));
  if (app.can('outbox.read')) links.push(navLink('/mails', 'Mails'));
  if (app.can('consent.manage')) links.push(navLink('/consentement', 'Consentement'));
  if (!app.can('riders.list')) links.push(navLink('/mes-accords', 'Mes accords'));
  if (app.can('scripts.status')) links.push(navLink('/scripts', 'État des scripts'));
  if (app.can('tokens.manage')) links.push(navLink('/jetons', "Jetons d'API"));
  replace(nav, h('ul', {}, links));
  nav.hidden = false;

  replace(account,
    h('span', { class: 'app-account__name' }, personName(app.user) || app.user.email),
    h('a', { href: '/mot-de-passe', class: 'app-account__link' }, 'Mot de passe'),
    h('button', { type: 'button', class: 'button button--small button--ghost', onclick: () => app.logout() }, 'Se déconnecter'));
  account.hidden = false;
  menuButton.hidden = false;
}

// ---- pages ----------------------------------------------------------------

function forbiddenPage(ctx) {
  app.setTitle('Accès refusé');
  replace(ctx.main,
    h('h1', {}, 'Accès refusé'),
    messageBox('error', "Vous n'avez pas le droit de consulter cette page. Si vous pensez que c'est une erreur, demandez au gérant du club de vérifier vos statuts."),
    h('p', {}, h('a', { href: app.homePath() }, "Retour à l'accueil")));
}

function notFoundPage(ctx) {
  app.setTitle('Page introuvable');
  replace(ctx.main,
    h('h1', {}, 'Page introuvable'),
    h('p', {}, "Cette adresse ne correspond à aucune page de Licol."),
    h('p', {}, h('a', { href: app.homePath() }, "Retour à l'accueil")));
}

// Shows a failure to load a page: 403 as "access refused", 404 as "not
// found", anything else with the server's message and a retry button.
function pageFailure(ctx, err) {
  if (err instanceof ApiError && err.status === 401) return; // already sent to the login page
  if (err instanceof ApiError && err.status === 403) {
    forbiddenPage(ctx);
    return;
  }
  app.setTitle('Erreur');
  replace(ctx.main,
    h('h1', {}, err instanceof ApiError && err.status === 404 ? 'Élément introuvable' : 'La page ne peut pas être affichée'),
    messageBox('error', err.message || String(err)),
    h('p', {}, h('button', { type: 'button', class: 'button', onclick: () => render() }, 'Réessayer')));
  if (!(err instanceof ApiError)) console.error(err);
}

async function loadSession() {
  try {
    app.setSession(await api('GET', '/session', null, { quiet401: true }));
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) throw err;
    app.clearSession();
  }
}

let sessionChecked = false;

async function render() {
  const navigation = ++app.navigation;
  if (app.cleanup) {
    app.cleanup();
    app.cleanup = null;
  }

  if (!sessionChecked) {
    try {
      await loadSession();
      sessionChecked = true;
    } catch (err) {
      replace(main, h('h1', {}, 'Licol'), messageBox('error', err.message),
        h('p', {}, h('button', { type: 'button', class: 'button', onclick: () => render() }, 'Réessayer')));
      return;
    }
  }

  let path = location.pathname.replace(/\/+$/, '') || '/';
  if (!app.user && path !== '/connexion') {
    const back = path === '/' ? '' : `?retour=${encodeURIComponent(path + location.search)}`;
    history.replaceState(null, '', `/connexion${back}`);
    path = '/connexion';
  } else if (app.user && app.user.must_change_password && path !== '/mot-de-passe') {
    history.replaceState(null, '', '/mot-de-passe');
    path = '/mot-de-passe';
  } else if (app.user && (path === '/' || path === '/connexion')) {
    path = app.homePath();
    history.replaceState(null, '', path);
  }

  renderHeader();
  const ctx = {
    app,
    main,
    params: [],
    query: new URLSearchParams(location.search),
    isCurrent: () => navigation === app.navigation,
  };
  const route = ROUTES.find((r) => r.pattern.test(path));
  replace(main, h('p', { class: 'loading' }, 'Chargement…'));
  try {
    if (!route) {
      notFoundPage(ctx);
    } else if (route.perm && !app.can(route.perm)) {
      forbiddenPage(ctx);
    } else {
      ctx.params = route.pattern.exec(path).slice(1);
      const flash = app.flash;
      app.flash = null;
      ctx.flash = flash;
      const cleanup = await route.page(ctx);
      if (typeof cleanup === 'function') {
        if (ctx.isCurrent()) app.cleanup = cleanup;
        else cleanup();
      }
    }
  } catch (err) {
    if (ctx.isCurrent()) pageFailure(ctx, err);
    return;
  }
  if (!ctx.isCurrent()) return;

  // Move the focus to the page title so that keyboard and screen-reader
  // users start at the new content.
  const title = main.querySelector('h1');
  if (title && !main.contains(document.activeElement)) {
    title.setAttribute('tabindex', '-1');
    title.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
}

app.render = render;
app.reloadSession = loadSession;

// Links inside the application are followed without reloading the page.
document.addEventListener('click', (event) => {
  const link = event.target.closest('a');
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const href = link.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith('/api/') || link.hasAttribute('download') || link.target) return;
  // Static pages such as /choisir-mot-de-passe.html are not routes of
  // this application: the browser loads them.
  if (href.split(/[?#]/)[0].split('/').pop().includes('.')) return;
  event.preventDefault();
  if (href !== location.pathname + location.search) app.navigate(href);
});

window.addEventListener('popstate', () => render());

render();
