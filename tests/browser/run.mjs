// Browser tests of the staff interface: a real licol server (binary from
// $LICOL_BIN) with a temporary database, driven through Debian's headless
// Chromium by playwright-core. The tests run in order and share one
// logged-in browser context, because each builds on the data of the ones
// before (the manager's password, the riders created).
//
// Screenshots of every page, at desktop and phone widths, go to
// tests/browser/artifacts/. The last line is "N passed, N failed, N skipped";
// the exit code is 1 when a test failed.
//
// Usage: LICOL_BIN=build/licol node tests/browser/run.mjs [name filter]

import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { LicolServer, SHARED_DIR, LICOL_BIN } from './server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = join(here, 'artifacts');
const CHROMIUM = process.env.LICOL_CHROMIUM || '/usr/bin/chromium';
const DESKTOP = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };
const MAX_SHOT_HEIGHT = 2000;
const NEW_PASSWORD = 'Selle-et-filet-2026';

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (err) {
  console.error('playwright-core is missing: run tests/browser/setup.sh (npm ci in tests/browser) first.');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
if (!existsSync(CHROMIUM)) {
  console.error(`No Chromium at ${CHROMIUM}: install it with "apt-get install -y chromium".`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
if (!existsSync(LICOL_BIN)) {
  console.error(`No licol binary at ${LICOL_BIN}: build it first or set LICOL_BIN.`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}

// ---- a minimal test runner ----------------------------------------------

const tests = [];
function test(name, fn) {
  tests.push({ name, fn });
}

class Skip extends Error {}
function skip(reason) {
  throw new Skip(reason);
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

function assertEqual(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

// ---- shared state and helpers -------------------------------------------

const server = new LicolServer();
let browser;
let context;
let page;
const seeded = {}; // name -> person id

async function shot(name, viewport = DESKTOP, target = page) {
  await target.setViewportSize(viewport);
  await target.waitForTimeout(100);
  const suffix = viewport === PHONE ? 'telephone' : 'bureau';
  // Long pages are cut so that the picture stays readable.
  const height = await target.evaluate(() => document.documentElement.scrollHeight);
  await target.screenshot({
    path: join(ARTIFACTS, `${name}-${suffix}.png`),
    fullPage: true,
    clip: { x: 0, y: 0, width: viewport.width, height: Math.min(height, MAX_SHOT_HEIGHT) },
  });
}

// Takes the desktop and the phone screenshot of the current page.
async function shots(name, target = page) {
  await shot(name, PHONE, target);
  await shot(name, DESKTOP, target);
}

async function goto(path) {
  await page.goto(server.baseUrl + path);
  await page.waitForLoadState('networkidle');
}

// Calls the API with the browser context's cookie and the session's CSRF
// token (read from GET /api/v1/session).
async function apiCall(method, path, data) {
  const session = await context.request.get(`${server.baseUrl}/api/v1/session`);
  const { csrf_token: csrf } = await session.json();
  const response = await context.request.fetch(`${server.baseUrl}/api/v1${path}`, {
    method, data, headers: { 'X-CSRF-Token': csrf },
  });
  const text = await response.text();
  if (response.status() >= 300) throw new Error(`${method} ${path}: ${response.status()} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function createRider(fields, roles) {
  const body = await apiCall('POST', '/riders', fields);
  const rider = body.rider || body;
  if (roles) await apiCall('PUT', `/riders/${rider.id}/roles`, { roles });
  return rider.id;
}

async function rowNames() {
  return page.$$eval('table tbody tr th[data-label="Nom"]', (cells) => cells.map((c) => c.textContent.trim()));
}

async function waitForListSummary() {
  await page.waitForFunction(() => {
    const holder = document.querySelector('.table-holder');
    return holder && !holder.hasAttribute('aria-busy') && document.querySelector('.list-summary').textContent !== '';
  });
}

// ---- tests ----------------------------------------------------------------

test('login page and wrong password', async () => {
  assert(server.adminPassword, 'the server did not print a one-time password');
  await goto('/');
  assertEqual(new URL(page.url()).pathname, '/connexion', 'an anonymous visit ends on');
  await shots('connexion');
  await page.fill('input[name="email"]', server.adminEmail);
  await page.fill('input[name="password"]', 'pas-le-bon-mot-de-passe');
  await page.click('button[type="submit"]');
  const alert = page.locator('.form-messages [role="alert"]');
  await alert.waitFor();
  assert((await alert.textContent()).length > 10, 'the error message is empty');
  assertEqual(await page.inputValue('input[name="password"]'), '', 'password field after a failure');
});

test('empty login fields show errors', async () => {
  await page.fill('input[name="email"]', '');
  await page.click('button[type="submit"]');
  const error = page.locator('input[name="email"] ~ .field__error');
  await error.waitFor();
  assert((await error.textContent()).includes('adresse e-mail'), 'no message next to the e-mail field');
  assertEqual(await page.getAttribute('input[name="email"]', 'aria-invalid'), 'true', 'aria-invalid on e-mail');
});

test('forgotten password link', async () => {
  await page.click('a:has-text("Mot de passe oublié ?")');
  await page.waitForURL('**/choisir-mot-de-passe.html');
  assertEqual(await page.locator('h1', { hasText: 'Page introuvable' }).count(), 0, 'the static page was routed by the application');
  await goto('/connexion');
  await page.locator('input[name="email"]').waitFor();
});

test('forced password change', async () => {
  await page.fill('input[name="email"]', server.adminEmail);
  await page.fill('input[name="password"]', server.adminPassword);
  await page.click('button[type="submit"]');
  await page.waitForURL('**/mot-de-passe');
  assert(!(await page.isVisible('#nav-principale')), 'navigation shown before the password change');
  await shots('mot-de-passe-impose');

  // Typed twice differently: refused in the page.
  await page.fill('input[name="current_password"]', server.adminPassword);
  await page.fill('input[name="new_password"]', NEW_PASSWORD);
  await page.fill('input[name="confirmation"]', `${NEW_PASSWORD}x`);
  await page.click('button[type="submit"]');
  await page.locator('input[name="confirmation"] ~ .field__error').waitFor();

  // Too short: refused by the server, message next to the field.
  await page.fill('input[name="new_password"]', 'court');
  await page.fill('input[name="confirmation"]', 'court');
  await page.click('button[type="submit"]');
  const serverError = page.locator('input[name="new_password"] ~ .field__error');
  await serverError.waitFor();
  assert((await serverError.textContent()).includes('caractères'), `unexpected message: ${await serverError.textContent()}`);

  // Other pages are unreachable until the password is changed.
  await goto('/cavaliers');
  assertEqual(new URL(page.url()).pathname, '/mot-de-passe', 'page shown instead of /cavaliers');

  await page.fill('input[name="current_password"]', server.adminPassword);
  await page.fill('input[name="new_password"]', NEW_PASSWORD);
  await page.fill('input[name="confirmation"]', NEW_PASSWORD);
  await page.click('button[type="submit"]');
  await page.waitForURL('**/cavaliers');
  await page.locator('.message--success').waitFor();
});

test('logout and login again', async () => {
  await page.click('#compte button');
  await page.waitForURL('**/connexion');
  await page.locator('text=Vous êtes déconnecté.').waitFor();
  await goto('/cavaliers?statut=client');
  assertEqual(new URL(page.url()).pathname, '/connexion', 'after logout /cavaliers redirects to');
  await page.fill('input[name="email"]', server.adminEmail);
  await page.fill('input[name="password"]', NEW_PASSWORD);
  await page.click('button[type="submit"]');
  await page.waitForURL('**/cavaliers?statut=client');
});

test('seed riders through the API', async () => {
  seeded.therese = await createRider({ last_name: 'Dupont', first_name: 'Thérèse', birth_date: '2014-05-02', email: 'famille.dupont@example.org', mobile: '06 12 34 56 78', licence_number: '1234567A' }, ['client']);
  seeded.marie = await createRider({ last_name: 'Dupont', first_name: 'Marie', birth_date: '1983-11-20', email: 'famille.dupont@example.org' }, ['client']);
  seeded.employe = await createRider({ last_name: 'Lefèvre', first_name: 'Julien', email: 'julien.lefevre@example.org' }, ['employe']);
  seeded.visiteur = await createRider({ last_name: 'Nguyen', first_name: 'Linh' }, ['visiteur']);
  seeded.comptable = await createRider({ last_name: 'Moreau', first_name: 'Agnès', email: 'compta@example.org' }, ['comptable']);
  seeded.proprietaire = await createRider({ last_name: 'Girard', first_name: 'Étienne', phone: '02 41 00 00 00' }, ['proprietaire', 'client']);
  for (let i = 1; i <= 28; i += 1) {
    await createRider({ last_name: `Cavalier${String(i).padStart(2, '0')}`, first_name: 'Test' }, ['client']);
  }
});

test('filter by each status', async () => {
  await goto('/cavaliers');
  await waitForListSummary();
  const expected = { gerant: 1, employe: 1, client: 31, visiteur: 1, comptable: 1, proprietaire: 1, tous: 35 };
  const labels = { gerant: 'Gérant', employe: 'Employé', client: 'Client', visiteur: 'Visiteur', comptable: 'Comptable', proprietaire: 'Propriétaire' };
  for (const [status, count] of Object.entries(expected)) {
    const button = page.locator(`.status-filter[data-status="${status}"]`);
    await button.click();
    await page.waitForFunction((s) => new URL(location.href).searchParams.get('statut') === (s === 'tous' ? null : s) || s === 'tous', status);
    await waitForListSummary();
    assertEqual(await button.getAttribute('aria-pressed'), 'true', `${status} button pressed`);
    const countText = await button.locator('.status-filter__count').textContent();
    assertEqual(countText, `(${count})`, `count shown on the ${status} button`);
    const rows = await page.locator('table tbody tr').count();
    assertEqual(rows, Math.min(count, 50), `rows listed for ${status}`);
    if (status !== 'tous') {
      const roleCells = await page.$$eval('table tbody td[data-label="Statuts"]', (cells) => cells.map((c) => c.textContent));
      assert(roleCells.every((text) => text.includes(labels[status])), `a row without the ${status} status`);
    }
  }
  await page.locator('.status-filter[data-status="client"]').click();
  await waitForListSummary();
  await shots('cavaliers');
});

test('search ignores accents and case', async () => {
  await page.locator('.status-filter[data-status="tous"]').click();
  await waitForListSummary();
  const cases = [
    ['THERESE', 'DUPONT Thérèse'],
    ['1234567a', 'DUPONT Thérèse'],
    ['compta@example', 'MOREAU Agnès'],
    ['0241000000', 'GIRARD Étienne'],
    ['etienne', 'GIRARD Étienne'],
    ['agnes moreau', 'MOREAU Agnès'],
  ];
  for (const [q, name] of cases) {
    await page.fill('input[type="search"][name="q"]', q);
    await page.press('input[type="search"][name="q"]', 'Enter');
    await page.waitForFunction((text) => new URL(location.href).searchParams.get('q') === text, q);
    await waitForListSummary();
    const names = await rowNames();
    assert(names.includes(name), `search "${q}" lists ${JSON.stringify(names)}, not ${name}`);
  }
  await page.fill('input[type="search"][name="q"]', 'zzzzzz');
  await page.press('input[type="search"][name="q"]', 'Enter');
  await page.locator('.empty').waitFor();
  await shot('cavaliers-recherche-vide');
  await page.fill('input[type="search"][name="q"]', '');
  await page.press('input[type="search"][name="q"]', 'Enter');
  await waitForListSummary();
});

test('sorting and pagination', async () => {
  await goto('/cavaliers?statut=client&par_page=25');
  await waitForListSummary();
  let names = await rowNames();
  assertEqual(names.length, 25, 'rows on page 1');
  assertEqual(names[0], 'CAVALIER01 Test', 'first row sorted by name');
  await page.click('text=Page suivante →');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('page') === '2');
  await waitForListSummary();
  names = await rowNames();
  assertEqual(names.length, 6, 'rows on page 2');
  assert((await page.locator('.list-summary').textContent()).includes('page 2 sur 2'), 'summary shows the page');

  await page.selectOption('select[name="tri"]', '-nom');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('tri') === '-nom');
  await waitForListSummary();
  names = await rowNames();
  assertEqual(names[0], 'GIRARD Étienne', 'first row sorted by name, descending');
  assertEqual(await page.getAttribute('th[aria-sort]', 'aria-sort'), 'descending', 'aria-sort of the Nom column');

  // Reload keeps the filters.
  await page.reload();
  await waitForListSummary();
  assertEqual(await page.inputValue('select[name="tri"]'), '-nom', 'sort after reload');
  assertEqual(await page.getAttribute('.status-filter[data-status="client"]', 'aria-pressed'), 'true', 'status after reload');
});

test('row selection and bulk action bar', async () => {
  await goto('/cavaliers?statut=client');
  await waitForListSummary();
  const button = page.locator('.bulk button', { hasText: 'Envoyer mail de récupération' });
  assert(await button.isDisabled(), 'the recovery mail button is enabled with nobody selected');
  await page.locator('table tbody tr').nth(0).locator('input[type="checkbox"]').check();
  await page.locator('table tbody tr').nth(1).locator('input[type="checkbox"]').check();
  assertEqual((await page.locator('.bulk__count').textContent()).trim(), '2 cavaliers sélectionnés.', 'selection count');
  assert(await button.isEnabled(), 'the recovery mail button is disabled with two people selected');
  await page.locator('thead input[type="checkbox"]').check();
  assert((await page.locator('.bulk__count').textContent()).includes('31'), 'select all on the page');
  await shot('cavaliers-selection');
  await page.click('text=Tout désélectionner');
  assertEqual((await page.locator('.bulk__count').textContent()).trim(), 'Aucun cavalier sélectionné.', 'count after clearing');
});

test('recovery mail to a selection', async () => {
  await goto('/cavaliers?q=dupont');
  await waitForListSummary();
  await page.locator(`tr[data-id="${seeded.therese}"] input[type="checkbox"]`).check();
  await page.fill('input[type="search"][name="q"]', 'cavalier01');
  await page.press('input[type="search"][name="q"]', 'Enter');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('q') === 'cavalier01');
  await waitForListSummary();
  await page.locator('table tbody tr').first().locator('input[type="checkbox"]').check();
  assertEqual((await page.locator('.bulk__count').textContent()).trim(), '2 cavaliers sélectionnés.', 'selection kept across searches');

  await page.click('.bulk button:has-text("Envoyer mail de récupération")');
  await page.locator('dialog button:has-text("Envoyer")').click();
  const result = page.locator('.bulk__result .message');
  await result.waitFor();
  const text = await result.textContent();
  assert(text.includes('1 mail mis en file'), `unexpected result: ${text}`);
  assert(text.includes('CAVALIER01') || text.includes('Cavalier01'), `the person without e-mail is not listed: ${text}`);
  await shot('cavaliers-mail-recuperation');
});

test('open and edit a profile', async () => {
  await goto('/cavaliers?q=therese');
  await waitForListSummary();
  await page.click('a:has-text("DUPONT Thérèse")');
  await page.waitForURL(`**/cavaliers/${seeded.therese}`);
  await page.locator('h1', { hasText: 'Thérèse DUPONT' }).waitFor();
  assertEqual(await page.inputValue('input[name="licence_number"]'), '1234567A', 'licence number field');
  await shots('fiche-profil');

  // Invalid e-mail: the server's message appears next to the field.
  await page.fill('input[name="email"]', 'pas-une-adresse');
  await page.fill('input[name="city"]', 'Saumur');
  await page.click('button:has-text("Enregistrer les modifications")');
  const emailError = page.locator('input[name="email"] ~ .field__error');
  await emailError.waitFor();
  assert((await emailError.textContent()).includes('E-mail'), `unexpected e-mail message: ${await emailError.textContent()}`);
  assertEqual(await page.getAttribute('input[name="email"]', 'aria-invalid'), 'true', 'aria-invalid on the e-mail field');
  assert(await page.evaluate(() => document.activeElement.name === 'email'), 'focus is not on the invalid field');
  await shot('fiche-erreur-validation');

  await page.fill('input[name="email"]', 'therese.dupont@example.org');
  await page.click('button:has-text("Enregistrer les modifications")');
  await page.locator('.message--success', { hasText: 'Modifications enregistrées.' }).waitFor();
  assertEqual(await page.getAttribute('input[name="email"]', 'aria-invalid'), null, 'aria-invalid after the fix');

  await page.reload();
  await page.locator('h1', { hasText: 'Thérèse DUPONT' }).waitFor();
  assertEqual(await page.inputValue('input[name="city"]'), 'Saumur', 'city after reload');
  assertEqual(await page.inputValue('input[name="email"]'), 'therese.dupont@example.org', 'e-mail after reload');
});

test('edit statuses', async () => {
  await goto(`/cavaliers/${seeded.therese}`);
  await page.check('input[name="roles"][value="visiteur"]');
  await page.click('button:has-text("Enregistrer les statuts")');
  await page.locator('.message--success', { hasText: 'Statuts enregistrés.' }).waitFor();
  assert((await page.locator('.page-head .badges').textContent()).includes('Visiteur'), 'badge of the new status');
  await page.uncheck('input[name="roles"][value="visiteur"]');
  await page.click('button:has-text("Enregistrer les statuts")');
  await page.locator('.message--success', { hasText: 'Statuts enregistrés.' }).waitFor();
});

test('add family members', async () => {
  await goto(`/cavaliers/${seeded.therese}?onglet=famille`);
  await page.locator('h2', { hasText: 'Famille' }).waitFor();
  await page.locator('.empty', { hasText: 'Aucun membre' }).waitFor();

  // Submitting without choosing anyone: messages next to the fields.
  await page.click('button:has-text("Ajouter à la famille")');
  await page.locator('input[name="person_search"] ~ .field__error').waitFor();
  await page.locator('input[name="relationship"] ~ .field__error').waitFor();

  // An existing person, found by a search without accents.
  await page.fill('input[name="person_search"]', 'marie dupont');
  await page.click('button:has-text("Chercher")');
  await page.click(`.choice[data-person-id="${seeded.marie}"]`);
  await page.fill('input[name="relationship"]', 'mère');
  await page.check('input[name="is_legal_guardian"]');
  await page.check('input[name="is_payer"]');
  await page.click('button:has-text("Ajouter à la famille")');
  await page.locator('.message--success', { hasText: 'ajouté' }).waitFor();
  const card = page.locator('.family-card', { hasText: 'Marie DUPONT' });
  await card.waitFor();
  const cardText = await card.textContent();
  assert(cardText.includes('Responsable légal'), `legal guardian flag missing: ${cardText}`);
  assert(cardText.includes('Payeur'), `payer flag missing: ${cardText}`);

  // A new person.
  await page.check('input[type="radio"][value="nouveau"]');
  await page.fill('input[name="new_last_name"]', 'Dupont');
  await page.fill('input[name="new_first_name"]', 'Hugo');
  await page.fill('input[name="relationship"]', 'frère');
  await page.click('button:has-text("Ajouter à la famille")');
  await page.locator('.family-card', { hasText: 'Hugo DUPONT' }).waitFor();
  assert(await page.isChecked('input[type="radio"][value="existant"]'), 'the form did not come back to its first mode');
  assert(await page.isVisible('input[name="person_search"]'), 'the search is hidden after adding');
  await shots('fiche-famille');

  // Remove the brother's link through the confirmation dialog.
  await page.locator('.family-card', { hasText: 'Hugo DUPONT' }).locator('button:has-text("Retirer le lien")').click();
  await page.locator('dialog button:has-text("Retirer le lien")').click();
  await page.locator('.family-card', { hasText: 'Hugo DUPONT' }).waitFor({ state: 'detached' });
  assertEqual(await page.locator('.family-card').count(), 1, 'links left after the removal');

  // The link shows on the mother's sheet too.
  await page.click('a:has-text("Marie DUPONT")');
  await page.waitForURL(`**/cavaliers/${seeded.marie}`);
  await page.click('[role="tab"][data-tab="famille"]');
  await page.locator('.family-card', { hasText: 'Thérèse DUPONT' }).waitFor();
});

test('licences and history tabs', async () => {
  await goto(`/cavaliers/${seeded.therese}`);
  await page.click('[role="tab"][data-tab="licences"]');
  await page.locator('h2', { hasText: 'Licence' }).waitFor();
  await shot('fiche-sans-licence');
  await page.click('[role="tab"][data-tab="historique"]');
  const rows = page.locator('[role="tabpanel"]:not([hidden]) table tbody tr');
  await rows.first().waitFor();
  const text = await page.locator('[role="tabpanel"]:not([hidden]) table').textContent();
  assert(text.includes('Saumur'), 'the city change is not in the history');
  assert(text.includes('Lien familial ajouté'), 'the family link is not in the history');
  assert(!(await page.isVisible('button:has-text("Afficher les modifications plus anciennes")')), 'a "more" button with one page of history');
  await shots('fiche-historique');
});

test('tabs work with the keyboard', async () => {
  await goto(`/cavaliers/${seeded.therese}`);
  await page.focus('[role="tab"][data-tab="profil"]');
  await page.keyboard.press('ArrowRight');
  assertEqual(await page.evaluate(() => document.activeElement.dataset.tab), 'licences', 'tab after ArrowRight');
  assertEqual(await page.getAttribute('[role="tab"][data-tab="licences"]', 'aria-selected'), 'true', 'aria-selected');
  await page.keyboard.press('End');
  assertEqual(await page.evaluate(() => document.activeElement.dataset.tab), 'tableau-de-bord', 'tab after End');
});

test('list works with the keyboard', async () => {
  await goto('/cavaliers');
  await waitForListSummary();
  assertEqual(await page.evaluate(() => document.activeElement.tagName), 'H1', 'focus after loading a page');

  // The skip link comes right before the application name.
  await page.focus('.app-name');
  await page.keyboard.press('Shift+Tab');
  assertEqual(await page.evaluate(() => document.activeElement.className), 'skip-link', 'Tab stop before the name');
  assert(await page.isVisible('.skip-link'), 'the focused skip link is not visible');
  await page.keyboard.press('Enter');
  assertEqual(await page.evaluate(() => document.activeElement.id), 'contenu', 'focus after the skip link');

  await page.focus('.status-filter[data-status="comptable"]');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assertEqual(outline, 'solid', 'focus outline of a filter button');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('statut') === 'comptable');
  await waitForListSummary();
  assertEqual(JSON.stringify(await rowNames()), JSON.stringify(['MOREAU Agnès']), 'rows after Enter on a filter');
  await shot('cavaliers-clavier');
});

test('phone menu folds the navigation', async () => {
  await page.setViewportSize(PHONE);
  try {
    await goto('/cavaliers');
    await waitForListSummary();
    assert(!(await page.isVisible('#nav-principale')), 'navigation shown before opening the menu');
    assertEqual(await page.getByRole('button', { name: 'Menu', exact: true }).count(), 1, 'buttons named exactly "Menu"');
    await page.click('#menu');
    assertEqual(await page.getAttribute('#menu', 'aria-expanded'), 'true', 'aria-expanded after opening');
    assert(await page.isVisible('#nav-principale a:has-text("Imports")'), 'navigation hidden after opening the menu');
    await shot('menu-telephone-ouvert', PHONE);
    await page.click('#nav-principale a:has-text("Imports")');
    await page.waitForURL('**/imports');
    assertEqual(await page.getAttribute('#menu', 'aria-expanded'), 'false', 'aria-expanded after following a link');
    assert(!(await page.isVisible('#nav-principale')), 'navigation still open after following a link');
  } finally {
    await page.setViewportSize(DESKTOP);
  }
  assert(await page.isVisible('#nav-principale'), 'navigation hidden on a desktop screen');
  assert(!(await page.isVisible('#menu')), 'menu button shown on a desktop screen');
});

test('coming soon tabs show no data', async () => {
  const tabs = ['commandes', 'planning', 'cartes', 'abonnements', 'evenements', 'chevaux', 'solde', 'prestations', 'regularisations', 'tableau-de-bord'];
  await goto(`/cavaliers/${seeded.therese}`);
  for (const key of tabs) {
    await page.click(`[role="tab"][data-tab="${key}"]`);
    const panel = page.locator('[role="tabpanel"]:not([hidden])');
    const text = await panel.textContent();
    assert(text.includes('bientôt disponible'), `the ${key} tab is not marked as coming soon`);
    assertEqual(await panel.locator('table').count(), 0, `table in the ${key} tab`);
  }
  await shot('fiche-bientot-disponible');
});

test('create a rider from the form', async () => {
  await goto('/cavaliers');
  await page.click('a:has-text("Nouveau cavalier")');
  await page.waitForURL('**/cavaliers/nouveau');
  await page.fill('input[name="last_name"]', 'Petit');
  await page.fill('input[name="first_name"]', 'Léa');
  await page.fill('input[name="email"]', 'mauvais');
  await page.click('button:has-text("Créer la fiche")');
  await page.locator('input[name="email"] ~ .field__error').waitFor();
  await shots('nouveau-cavalier');
  await page.fill('input[name="email"]', 'lea.petit@example.org');
  await page.click('button:has-text("Créer la fiche")');
  await page.locator('h1', { hasText: 'Léa PETIT' }).waitFor();
  await page.locator('.message--success', { hasText: 'Fiche créée.' }).waitFor();
});

test('delete a rider sheet', async () => {
  await goto('/cavaliers?q=lea%20petit');
  await waitForListSummary();
  await page.click('a:has-text("PETIT Léa")');
  await page.locator('h1', { hasText: 'Léa PETIT' }).waitFor();
  await page.click('button:has-text("Supprimer la fiche")');
  await page.locator('dialog button:has-text("Annuler")').click();
  assert(await page.isVisible('h1:has-text("Léa PETIT")'), 'the sheet left after cancelling');
  await page.click('button:has-text("Supprimer la fiche")');
  await page.locator('dialog button:has-text("Supprimer définitivement")').click();
  await page.waitForURL('**/cavaliers');
  await page.locator('.message--success', { hasText: 'La fiche de Léa PETIT a été supprimée.' }).waitFor();
  const found = await apiCall('GET', '/riders?status=tous&q=lea%20petit');
  assertEqual(found.total, 0, 'people named Léa Petit after the deletion');
});

test('script status page', async () => {
  await goto('/scripts');
  await page.locator('h1', { hasText: 'État des scripts' }).waitFor();
  const version = await page.locator('[data-status="version"]').textContent();
  assert(/^[0-9a-f]{6,}$/.test(version.trim()), `unexpected version: ${version}`);
  assert((await page.locator('.file-list').textContent()).includes('roles.lua'), 'roles.lua not listed');
  await shots('etat-des-scripts');
});

test('import preview, confirm and undo', async () => {
  const probe = await context.request.get(`${server.baseUrl}/api/v1/imports`);
  if (probe.status() === 404) skip('the import routes (/api/v1/imports) are not in this server yet');
  const sample = join(SHARED_DIR, 'samples', 'ffe-2025.csv');
  if (!existsSync(sample)) skip(`sample file missing: ${sample}`);

  await goto('/imports');
  await page.locator('h1', { hasText: 'Imports' }).waitFor();
  await shots('imports');
  await page.setInputFiles('input[type="file"]', sample);
  await page.selectOption('select[name="format"]', 'ffe');
  await page.click('button:has-text("Prévisualiser")');
  const report = page.locator('.report[data-state="done"]');
  await report.waitFor({ timeout: 120000 });
  const created = Number(await report.locator('[data-count="created"]').textContent());
  assert(created > 0, 'the preview creates nobody');
  await shots('import-previsualisation');

  // A preview changes nothing.
  let list = await apiCall('GET', '/riders?status=tous&per_page=1');
  const before = list.total;

  await page.click('button[data-action="confirmer"]');
  await page.locator('.report[data-state="done"]', { hasText: 'Import n°' }).waitFor({ timeout: 120000 });
  list = await apiCall('GET', '/riders?status=tous&per_page=1');
  assertEqual(list.total, before + created, 'people after the import');
  // Values kept aside are listed for staff (the sample has invalid e-mails).
  await page.locator('.report h3', { hasText: 'Avertissements' }).waitFor();
  await page.locator('.report li', { hasText: 'louis.garnier@@laposte.net' }).waitFor();
  await shots('import-rapport');

  // The run's clients get the password mail from the report, one per address.
  await page.click('button[data-action="mail-recuperation"]');
  await page.locator('dialog button:has-text("Envoyer")').click();
  await page.locator('.message--success', { hasText: "en file d'envoi" }).waitFor({ timeout: 30000 });
  await shots('import-mail-recuperation');

  await page.click('button[data-action="annuler-import"]');
  await page.locator('dialog button:has-text("Annuler l\'import")').click();
  await page.locator('.message--success', { hasText: 'a été annulé' }).waitFor({ timeout: 60000 });
  list = await apiCall('GET', '/riders?status=tous&per_page=1');
  assertEqual(list.total, before, 'people after the undo');
  await page.locator('table tbody tr', { hasText: 'Annulé' }).first().waitFor();
  await shots('imports-historique');
});

test('undo refused after later edits', async () => {
  const probe = await context.request.get(`${server.baseUrl}/api/v1/imports`);
  if (probe.status() === 404) skip('the import routes (/api/v1/imports) are not in this server yet');
  const sample = join(SHARED_DIR, 'samples', 'ffe-2025.csv');

  await goto('/imports');
  await page.setInputFiles('input[type="file"]', sample);
  await page.click('button:has-text("Prévisualiser")');
  await page.locator('.report[data-state="done"]').waitFor({ timeout: 120000 });
  await page.click('button[data-action="confirmer"]');
  await page.locator('.report[data-state="done"]', { hasText: 'Import n°' }).waitFor({ timeout: 120000 });

  // Somebody edits an imported person: undoing would lose that edit.
  const found = await apiCall('GET', '/riders?status=tous&q=6327815G');
  assertEqual(found.total, 1, 'imported person found by licence number');
  await apiCall('PATCH', `/riders/${found.items[0].id}`, { city: 'Angers' });

  await page.click('button[data-action="annuler-import"]');
  await page.locator('dialog button:has-text("Annuler l\'import")').click();
  const refusal = page.locator('.message--error', { hasText: 'Annulation impossible' });
  await refusal.waitFor();
  assert((await refusal.locator('.conflicts li').count()) >= 1, 'no list of the conflicting changes');
  assert((await refusal.textContent()).includes('Ville'), 'the changed field is not named');
  await shot('import-annulation-refusee');

  // The imported person's licence history, by season.
  await goto(`/cavaliers/${found.items[0].id}?onglet=licences`);
  const licenceRow = page.locator('[role="tabpanel"]:not([hidden]) tbody tr').first();
  await licenceRow.waitFor();
  assert((await licenceRow.textContent()).includes('6327815G'), `licence row: ${await licenceRow.textContent()}`);
  assert((await licenceRow.textContent()).includes('2025'), `licence season: ${await licenceRow.textContent()}`);
  await shots('fiche-licences');
});

// Opens a new browser context logged in as email. Returns its page.
async function loginAs(email, password) {
  const other = await browser.newContext({ viewport: DESKTOP, locale: 'fr-FR', timezoneId: 'Europe/Paris' });
  other.setDefaultTimeout(15000);
  const otherPage = await other.newPage();
  await otherPage.goto(`${server.baseUrl}/connexion`);
  await otherPage.fill('input[name="email"]', email);
  await otherPage.fill('input[name="password"]', password);
  await otherPage.click('button[type="submit"]');
  await otherPage.waitForURL((url) => url.pathname !== '/connexion');
  await otherPage.waitForLoadState('networkidle');
  return otherPage;
}

async function navLabels(target) {
  return target.$$eval('#nav-principale a', (links) => links.map((a) => a.textContent.trim()));
}

// Writes a small FFE-style file (UTF-8, ';') next to the server's database
// and returns its path.
function writeSampleFile(name, lines) {
  const header = 'Numéro licence;Nom;Prénom;Date de naissance;Sexe;Catégorie;Type licence;Millésime;Date de saisie;Galop;Adresse;Complément adresse;Code postal;Ville;Pays;Téléphone;Portable;Email;Nom du responsable légal;Prénom du responsable légal;Email du responsable légal;Numéro club';
  const path = join(server.tmp, name);
  writeFileSync(path, [header, ...lines].join('\r\n') + '\r\n');
  return path;
}

test('import progress on a large file', async () => {
  const probe = await context.request.get(`${server.baseUrl}/api/v1/imports`);
  if (probe.status() === 404) skip('the import routes (/api/v1/imports) are not in this server yet');
  const generator = join(SHARED_DIR, 'tools', 'gen-riders');
  if (!existsSync(generator)) skip(`rider file generator missing: ${generator}`);
  const file = join(server.tmp, 'grand-fichier.csv');
  const generated = spawnSync(generator, ['--rows', '60000', '--seed', '7', '--out', file], { encoding: 'utf8', timeout: 120000 });
  assertEqual(generated.status, 0, `gen-riders exit status (${generated.stderr})`);

  await goto('/imports');
  await page.setInputFiles('input[type="file"]', file);
  await page.click('button:has-text("Prévisualiser")');
  // A determinate progress bar appears while the file is read.
  const bar = page.locator('.progress progress[value]');
  await bar.waitFor({ timeout: 30000 });
  const percent = Number(await bar.getAttribute('value'));
  assert(percent >= 0 && percent <= 100, `progress out of range: ${percent}`);
  await page.locator('#titre-historique ~ div tbody tr', { hasText: 'grand-fichier.csv' }).waitFor();
  await shot('import-progression');
  await page.locator('.report[data-state="done"]').waitFor({ timeout: 240000 });
  await page.click('button:has-text("Abandonner")');
});

test('import report with rejected rows', async () => {
  const probe = await context.request.get(`${server.baseUrl}/api/v1/imports`);
  if (probe.status() === 404) skip('the import routes (/api/v1/imports) are not in this server yet');
  const file = writeSampleFile('rejets.csv', [
    '7654321K;Fontaine;Zoé;12/03/2012;F;Junior;Licence Pratiquant;2026;02/09/2025;Galop 2;3 rue des Lilas;;49000;Angers;France;;0611223344;zoe.fontaine@example.org;Fontaine;Claire;claire.fontaine@example.org;9000007',
    ';;;01/01/2010;F;Junior;Licence Pratiquant;2026;02/09/2025;;;;;;;;;;;;;9000007',
    '7654322L;Trop;Court',
  ]);
  await goto('/imports');
  await page.setInputFiles('input[type="file"]', file);
  await page.click('button:has-text("Prévisualiser")');
  const report = page.locator('.report[data-state="done"]');
  await report.waitFor({ timeout: 60000 });
  assertEqual(await report.locator('[data-count="rejected"]').textContent(), '2', 'rejected rows');
  const link = report.locator('a:has-text("Télécharger les lignes rejetées")');
  await link.waitFor();
  const csv = await context.request.get(server.baseUrl + await link.getAttribute('href'));
  assertEqual(csv.status(), 200, 'status of the rejected rows download');
  assert((await csv.text()).includes('Motif du rejet'), 'no "Motif du rejet" column in the download');
  await shot('import-lignes-rejetees');
  await page.click('button:has-text("Abandonner")');
});

test('import of an unusable file', async () => {
  const probe = await context.request.get(`${server.baseUrl}/api/v1/imports`);
  if (probe.status() === 404) skip('the import routes (/api/v1/imports) are not in this server yet');
  const file = writeSampleFile('entete-seul.csv', []);
  await goto('/imports');
  await page.click('button:has-text("Prévisualiser")');
  await page.locator('input[type="file"] ~ .field__error', { hasText: 'Choisissez le fichier' }).waitFor();
  await page.setInputFiles('input[type="file"]', file);
  await page.click('button:has-text("Prévisualiser")');
  const failure = page.locator('.message--error');
  await failure.waitFor({ timeout: 60000 });
  assert((await failure.textContent()).length > 20, 'the failure has no explanation');
  await shot('import-fichier-refuse');
});

test('unusable imported values on sheet', async () => {
  const probe = await context.request.get(`${server.baseUrl}/api/v1/imports`);
  if (probe.status() === 404) skip('the import routes (/api/v1/imports) are not in this server yet');
  const file = writeSampleFile('valeurs-brutes.csv', [
    'en cours;Perrin;Noé;04/07/2011;M;Junior;Licence Pratiquant;2026;02/09/2025;Galop 1;;;;;France;;;noe.perrin@@example;;;;9000007',
  ]);
  await goto('/imports');
  await page.setInputFiles('input[type="file"]', file);
  await page.click('button:has-text("Prévisualiser")');
  await page.locator('.report[data-state="done"]').waitFor({ timeout: 60000 });
  await page.click('button[data-action="confirmer"]');
  await page.locator('.report[data-state="done"]', { hasText: 'Import n°' }).waitFor({ timeout: 60000 });

  const found = await apiCall('GET', '/riders?status=tous&q=noe%20perrin');
  const noe = found.items.filter((item) => item.birth_date === '2011-07-04');
  assertEqual(noe.length, 1, 'imported people named Noé Perrin born 2011-07-04');
  await goto(`/cavaliers/${noe[0].id}`);
  const licenceNote = page.locator('input[name="licence_number"] ~ .field__note');
  await licenceNote.waitFor();
  assert((await licenceNote.textContent()).includes('en cours'), 'the raw licence value is not shown');
  const emailNote = page.locator('input[name="email"] ~ .field__note');
  assert((await emailNote.textContent()).includes('noe.perrin@@example'), 'the invalid e-mail is not shown');
  await shot('fiche-valeurs-importees');
});

test('employee pages without manager status', async () => {
  server.addUser({ email: 'employe@test.invalid', role: 'employe', lastName: 'Roux', firstName: 'Camille', password: 'Licol-employe-2026' });
  const staff = await loginAs('employe@test.invalid', 'Licol-employe-2026');
  try {
    assertEqual(new URL(staff.url()).pathname, '/cavaliers', 'first page of an employee');
    assertEqual(JSON.stringify(await navLabels(staff)), JSON.stringify(['Cavaliers', 'Imports', 'Mise à jour FFE', 'Inscriptions', 'Mails', 'Consentement', 'État des scripts']), 'navigation');
    await staff.goto(`${server.baseUrl}/cavaliers/${seeded.therese}`);
    await staff.locator('h1', { hasText: 'Thérèse DUPONT' }).waitFor();
    assert(await staff.isDisabled('input[name="roles"][value="gerant"]'), 'an employee may tick the manager status');
    assert(await staff.isEnabled('input[name="roles"][value="employe"]'), 'an employee may not tick the employee status');
  } finally {
    await staff.context().close();
  }
});

test('accountant sheets read-only', async () => {
  server.addUser({ email: 'comptable@test.invalid', role: 'comptable', lastName: 'Blanc', firstName: 'Odile', password: 'Licol-comptable-2026' });
  const accountant = await loginAs('comptable@test.invalid', 'Licol-comptable-2026');
  try {
    assertEqual(JSON.stringify(await navLabels(accountant)), JSON.stringify(['Cavaliers']), 'navigation');
    assertEqual(await accountant.locator('a:has-text("Nouveau cavalier")').count(), 0, '"Nouveau cavalier" buttons');
    await accountant.locator('.list-summary:not(:empty)').waitFor();
    assertEqual(await accountant.locator('table input[type="checkbox"]').count(), 0, 'selection boxes without a bulk action');
    await accountant.goto(`${server.baseUrl}/cavaliers/${seeded.therese}`);
    await accountant.locator('h1', { hasText: 'Thérèse DUPONT' }).waitFor();
    assertEqual(await accountant.locator('button:has-text("Enregistrer les modifications")').count(), 0, 'save buttons');
    assert(await accountant.locator('input[name="last_name"]').getAttribute('readonly') !== null, 'the name field is editable');
    await accountant.click('[role="tab"][data-tab="famille"]');
    await accountant.locator('.family-card').first().waitFor();
    assertEqual(await accountant.locator('button:has-text("Ajouter à la famille")').count(), 0, 'family form');
    await accountant.goto(`${server.baseUrl}/imports`);
    await accountant.locator('h1', { hasText: 'Accès refusé' }).waitFor();
    await shot('acces-refuse', DESKTOP, accountant);
  } finally {
    await accountant.context().close();
  }
});

test('client own and family sheets', async () => {
  server.addUser({ email: 'sophie.martin@test.invalid', role: 'client', lastName: 'Martin', firstName: 'Sophie', password: 'Licol-client-2026' });
  const list = await apiCall('GET', '/riders?status=tous&q=sophie.martin');
  const sophie = list.items[0].id;
  const lou = await createRider({ last_name: 'Martin', first_name: 'Lou', birth_date: '2016-06-01' }, ['client']);
  await apiCall('POST', `/riders/${lou}/family`, { person_id: sophie, relationship: 'mère', is_legal_guardian: true, is_payer: true });

  const client = await loginAs('sophie.martin@test.invalid', 'Licol-client-2026');
  try {
    assertEqual(new URL(client.url()).pathname, `/cavaliers/${sophie}`, 'first page of a client');
    assertEqual(JSON.stringify(await navLabels(client)), JSON.stringify(['Ma fiche', 'Mes accords']), 'navigation');
    assertEqual(await client.locator('a:has-text("Retour à la liste")').count(), 0, 'link to the rider list');
    await client.fill('input[name="city"]', 'Angers');
    await client.click('button:has-text("Enregistrer les modifications")');
    await client.locator('.message--success', { hasText: 'Modifications enregistrées.' }).waitFor();
    await shots('client-ma-fiche', client);

    await client.click('[role="tab"][data-tab="famille"]');
    await client.click('a:has-text("Lou MARTIN")');
    await client.locator('h1', { hasText: 'Lou MARTIN' }).waitFor();
    assertEqual(await client.locator('button:has-text("Enregistrer les modifications")').count(), 1, 'save button on the child\'s sheet');

    await client.goto(`${server.baseUrl}/cavaliers/${seeded.therese}`);
    await client.locator('h1', { hasText: 'Accès refusé' }).waitFor();
    await client.goto(`${server.baseUrl}/cavaliers`);
    await client.locator('h1', { hasText: 'Accès refusé' }).waitFor();
  } finally {
    await client.context().close();
  }
});

test('expired session returns to login', async () => {
  await goto('/cavaliers');
  await waitForListSummary();
  await context.clearCookies();
  await page.click('.status-filter[data-status="employe"]');
  await page.waitForURL('**/connexion?retour=*');
  await page.locator('text=Votre session a expiré').waitFor();
  await page.fill('input[name="email"]', server.adminEmail);
  await page.fill('input[name="password"]', NEW_PASSWORD);
  await page.click('button[type="submit"]');
  await page.waitForURL('**/cavaliers?statut=employe');
});

test('unknown page and missing rider', async () => {
  await goto('/nulle-part');
  await page.locator('h1', { hasText: 'Page introuvable' }).waitFor();
  await goto('/cavaliers/999999');
  await page.locator('h1', { hasText: 'Élément introuvable' }).waitFor();
});

test('API token created, used and revoked', async () => {
  await goto('/cavaliers');
  await page.click('#nav-principale a:has-text("Jetons d\'API")');
  await page.waitForURL('**/jetons');
  await page.click('button:has-text("Créer le jeton")');
  await page.locator('input[name="name"] ~ .field__error').waitFor();

  await page.fill('input[name="name"]', 'Logiciel de facturation');
  await page.selectOption('select[name="role"]', 'comptable');
  await page.click('button:has-text("Créer le jeton")');
  const text = page.locator('input[aria-label="Texte du jeton"]');
  await text.waitFor();
  const token = await text.inputValue();
  assert(token.length > 20, `token text too short: ${token}`);
  await page.locator('tr', { hasText: 'Logiciel de facturation' }).waitFor();
  await shots('jetons');

  const headers = { Authorization: `Bearer ${token}` };
  let response = await context.request.get(`${server.baseUrl}/api/v1/riders?per_page=1`, { headers });
  assertEqual(response.status(), 200, 'list with the new token');

  await page.locator('tr', { hasText: 'Logiciel de facturation' }).locator('button:has-text("Révoquer")').click();
  await page.locator('dialog button:has-text("Révoquer")').click();
  await page.locator('.message--success', { hasText: 'est révoqué' }).waitFor();
  await page.locator('tr', { hasText: 'Logiciel de facturation' }).locator('.badge', { hasText: 'Révoqué' }).waitFor();
  response = await context.request.get(`${server.baseUrl}/api/v1/riders?per_page=1`, { headers });
  assertEqual(response.status(), 401, 'list with the revoked token');
});

test('voluntary password change', async () => {
  const other = 'Etrier-et-sangle-2027';
  await goto('/cavaliers');
  await page.click('#compte a:has-text("Mot de passe")');
  await page.waitForURL('**/mot-de-passe');
  await page.locator('h1', { hasText: 'Changer de mot de passe' }).waitFor();
  assert(await page.isVisible('#nav-principale'), 'navigation hidden on a voluntary change');

  await page.fill('input[name="current_password"]', 'pas-le-bon-mot-de-passe');
  await page.fill('input[name="new_password"]', other);
  await page.fill('input[name="confirmation"]', other);
  await page.click('button:has-text("Enregistrer le mot de passe")');
  const wrong = page.locator('input[name="current_password"] ~ .field__error');
  await wrong.waitFor();
  await shot('mot-de-passe-erreur');

  await page.fill('input[name="current_password"]', NEW_PASSWORD);
  await page.click('button:has-text("Enregistrer le mot de passe")');
  await page.locator('.message--success', { hasText: 'Votre mot de passe a été changé.' }).waitFor();

  await page.click('#compte button');
  await page.waitForURL('**/connexion');
  await page.fill('input[name="email"]', server.adminEmail);
  await page.fill('input[name="password"]', other);
  await page.click('button[type="submit"]');
  await page.waitForURL('**/cavaliers');
});

test('consent list pages', async () => {
  await apiCall('POST', '/consents/documents/cgu/versions', { title: 'Conditions générales', text: 'Le club accueille les cavaliers.' });
  for (let i = 0; i < 101; i += 1) await createRider({ last_name: `Pagination${String(i).padStart(3, '0')}`, first_name: 'Test' });
  const { total } = await apiCall('GET', '/consents?limit=1');
  const pages = Math.ceil(total / 100);
  assert(pages >= 2, `expected at least two pages, total ${total}`);

  await goto('/consentement');
  const position = page.locator('nav.pagination span');
  assertEqual((await position.textContent()).trim(), `Page 1 sur ${pages}`, 'first page');
  assertEqual(await page.locator('table tbody tr').count(), 100, 'rows on the first page');
  await page.click('nav.pagination a:has-text("Page suivante")');
  await page.waitForURL('**/consentement?page=2');
  await position.waitFor();
  assertEqual((await position.textContent()).trim(), `Page 2 sur ${pages}`, 'second page');
  assert(await page.isVisible('nav.pagination a:has-text("Page précédente")'), 'link back');
  await shot('consentement-pages');

  // A page past the end, as when the list shrank meanwhile, links back.
  await goto('/consentement?page=99');
  await page.locator('nav.pagination', { hasText: `${pages} pages` }).waitFor();
  await page.click('nav.pagination a:has-text("Aller à la dernière page")');
  await page.waitForURL(`**/consentement?page=${pages}`);
  await page.locator('nav.pagination span', { hasText: `Page ${pages} sur ${pages}` }).waitFor();
});

// ---- main -----------------------------------------------------------------

async function main() {
  const filter = process.argv[2] || '';
  rmSync(ARTIFACTS, { recursive: true, force: true });
  mkdirSync(ARTIFACTS, { recursive: true });
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const pageErrors = [];

  try {
    await server.start();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    context = await browser.newContext({ viewport: DESKTOP, locale: 'fr-FR', timezoneId: 'Europe/Paris' });
    context.setDefaultTimeout(15000);
    page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => { if (msg.type() === 'error') pageErrors.push(msg.text()); });
    // The pages must work offline: any request leaving the test server fails.
    await context.route((url) => !url.href.startsWith(server.baseUrl), (route) => {
      pageErrors.push(`request outside the server: ${route.request().url()}`);
      return route.abort();
    });
  } catch (err) {
    console.error(`setup failed: ${err.stack || err}`);
    console.log('0 passed, 1 failed');
    await server.cleanup();
    if (browser) await browser.close();
    process.exit(1);
  }

  for (const { name, fn } of tests) {
    if (filter && !name.includes(filter) && !['login page and wrong password', 'forced password change', 'seed riders through the API'].includes(name)) continue;
    const started = Date.now();
    pageErrors.length = 0;
    try {
      await fn();
      const errors = pageErrors.filter((text) => !text.includes('401') && !text.includes('404') && !text.includes('422') && !text.includes('409'));
      if (errors.length) throw new Error(`errors in the page: ${errors.join(' | ')}`);
      passed += 1;
      console.log(`ok      ${name} (${Date.now() - started} ms)`);
    } catch (err) {
      if (err instanceof Skip) {
        skipped += 1;
        console.log(`skipped ${name}: ${err.message}`);
        continue;
      }
      failed += 1;
      console.log(`FAILED  ${name}: ${err.message}`);
      const safeName = name.replace(/[^a-z0-9]+/gi, '-');
      try {
        await page.screenshot({ path: join(ARTIFACTS, `echec-${safeName}.png`), fullPage: true });
      } catch {
        // the page may be gone
      }
    }
  }

  await browser.close();
  if (failed) console.log(`server log:\n${server.stderr().split('\n').slice(-30).join('\n')}`);
  await server.cleanup();
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  process.exit(failed ? 1 : 0);
}

await main();
