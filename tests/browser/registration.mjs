// Browser tests of the public registration form (web/inscription.html) and
// of the staff registrations page, against a real licol server whose
// database contains the federation file ffe-2025.csv, a real SMTP server on
// loopback (tests/tools/smtp_sink.py) and Debian's headless Chromium
// driven by playwright-core. The tests run in order: a parent registers a
// minor, an imported rider registers again, a bot fills the hidden field,
// then staff decide.
//
// Screenshots go to tests/browser/artifacts-inscription/ (apart from run.mjs's
// artifacts/, which that runner empties at each start). The last line is
// "N passed, N failed, N skipped"; the exit code is 1 when a test failed.
//
// Usage: LICOL_BIN=build/licol node tests/browser/registration.mjs [name filter]

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LicolServer, SHARED_DIR, SOURCE_DIR, LICOL_BIN } from './server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = join(here, 'artifacts-inscription');
const CHROMIUM = process.env.LICOL_CHROMIUM || '/usr/bin/chromium';
const DESKTOP = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };
const MAX_SHOT_HEIGHT = 3000;
const STAFF = { email: 'accueil@test.invalid', password: 'Selle-et-filet-2026' };
const CONFIRM_RE = /https?:\/\/\S+#confirmer=[A-Za-z0-9_-]{43}/;

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (err) {
  console.error('playwright-core is missing: run tests/browser/setup.sh (npm ci in tests/browser) first.');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
for (const [path, hint] of [[CHROMIUM, 'install it with "apt-get install -y chromium"'], [LICOL_BIN, 'build it first or set LICOL_BIN']]) {
  if (!existsSync(path)) {
    console.error(`Missing ${path}: ${hint}.`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}

// ---- a minimal test runner (as in run.mjs) ---------------------------------

const tests = [];
function test(name, fn) {
  tests.push({ name, fn });
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

function assertEqual(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

// ---- SMTP sink ----------------------------------------------------------------

class SmtpSink {
  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'licol-sink-'));
    this.proc = null;
    this.port = null;
  }

  async start() {
    const port = await freePort();
    return new Promise((resolve, reject) => {
      this.proc = spawn('/usr/bin/python3', [join(SOURCE_DIR, 'tests', 'tools', 'smtp_sink.py'), '--port', String(port), '--dir', this.dir]);
      let out = '';
      this.proc.stdout.on('data', (chunk) => {
        out += chunk;
        if (/^ready/.test(out) && !this.port) {
          this.port = port;
          resolve(this);
        }
      });
      this.proc.once('exit', (code) => { if (!this.port) reject(new Error(`smtp sink exited with ${code}`)); });
    });
  }

  messages() {
    return readdirSync(this.dir).filter((f) => f.endsWith('.json')).sort()
      .map((f) => JSON.parse(readFileSync(join(this.dir, f), 'utf8')));
  }

  // Waits for count verification mails (the invitations to choose a
  // password that follow a confirmation are left out).
  async wait(count, timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs;
    let found = [];
    while (Date.now() < deadline) {
      found = this.messages().filter((m) => CONFIRM_RE.test(m.text || ''));
      if (found.length >= count) return found;
      await sleep(100);
    }
    throw new Error(`expected ${count} verification mails, got ${found.length}`);
  }

  stop() {
    if (this.proc && this.proc.exitCode === null) this.proc.kill('SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---- shared state and helpers ---------------------------------------------------

const sink = new SmtpSink();
let server;
let browser;
let context;
let page;

async function shot(name, viewport = DESKTOP) {
  await page.setViewportSize(viewport);
  await page.waitForTimeout(100);
  const suffix = viewport === PHONE ? 'telephone' : 'bureau';
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  await page.screenshot({
    path: join(ARTIFACTS, `${name}-${suffix}.png`),
    fullPage: true,
    clip: { x: 0, y: 0, width: viewport.width, height: Math.min(height, MAX_SHOT_HEIGHT) },
  });
}

async function shots(name) {
  await shot(name, PHONE);
  await shot(name, DESKTOP);
}

async function openForm() {
  await page.goto(`${server.baseUrl}/inscription.html`);
  await page.locator('form button[type="submit"]').waitFor();
}

// Fills the form's fields by name; a select gets selectOption, a checkbox
// a tick when the value is true.
async function fill(values) {
  for (const [name, value] of Object.entries(values)) {
    const control = page.locator(`[name="${name}"]`);
    const tag = await control.evaluate((el) => el.tagName.toLowerCase());
    const type = await control.getAttribute('type');
    if (tag === 'select') await control.selectOption(value);
    else if (type === 'checkbox') await control.setChecked(Boolean(value));
    else await control.fill(value);
  }
}

async function submitAndWaitForSent() {
  await page.click('form button[type="submit"]');
  await page.locator('h1:text("Inscription envoyée")').waitFor();
  return page.locator('.message--success').textContent();
}

function errorOf(name) {
  return page.locator(`[name="${name}"] ~ .field__error, .field:has([name="${name}"]) .field__error`).first();
}

function linkIn(message) {
  const match = CONFIRM_RE.exec(message.text);
  assert(match, `no confirmation link in: ${message.text}`);
  return match[0];
}

function sql(statement) {
  const result = spawnSync('sqlite3', [join(server.tmp, 'licol.db'), statement], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`sqlite3 failed: ${result.stderr}`);
  return result.stdout.trim();
}

// Publishes version 1 of the terms of use and of the photo consent through
// the consent API, logged in as staff outside the browser.
async function publishDocuments() {
  const login = await fetch(`${server.baseUrl}/api/v1/session`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(STAFF),
  });
  if (login.status !== 200) throw new Error(`staff login: ${login.status}`);
  const cookie = login.headers.get('set-cookie').split(';')[0];
  const { csrf_token: csrf } = await login.json();
  for (const [key, title, text] of [
    ['cgu', 'Conditions générales d’utilisation', 'Le club accueille les cavaliers selon les règles suivantes…'],
    ['photos', 'Utilisation de photos où je figure', 'Le club peut publier des photos des cours.'],
  ]) {
    const response = await fetch(`${server.baseUrl}/api/v1/consents/documents/${key}/versions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Cookie: cookie, 'X-CSRF-Token': csrf },
      body: JSON.stringify({ title, text }),
    });
    if (response.status >= 300) throw new Error(`publishing ${key}: ${response.status} ${await response.text()}`);
  }
}

// ---- tests -----------------------------------------------------------------------

const PARENT = 'famille.roux@example.test';

test('form shows every section', async () => {
  await openForm();
  for (const name of ['last_name', 'first_name', 'sex', 'birth_date', 'email', 'mobile', 'licence_number', 'taille_cm']) {
    assert(await page.locator(`[name="${name}"]`).isVisible(), `no visible field ${name}`);
  }
  assert(!(await page.locator('#responsable').isVisible()), 'guardian section shown before a birth date');
  assertEqual(await page.locator('[name="consents.cgu"]').isChecked(), false, 'terms box ticked by default');
  assertEqual(await page.locator('[name="consents.photos"]').isChecked(), false, 'photo box ticked by default');
  assert(!(await page.locator('#site-web').isVisible()) || (await page.locator('#site-web').boundingBox()).x < 0, 'honeypot visible');
  await shots('formulaire');
});

test('minor registered by a parent', async () => {
  await openForm();
  await fill({ last_name: 'Roux', first_name: 'Léna', sex: 'F', birth_date: '2016-04-12', email: PARENT,
    address: '8 allée des Tilleuls', postcode: '35000', city: 'Rennes' });
  await page.locator('#responsable').waitFor({ state: 'visible' });
  assertEqual(await page.locator('[name="mobile"]').getAttribute('required'), null, 'mobile still required for a minor');

  // Without the guardian and the terms: messages next to each field.
  await page.click('form button[type="submit"]');
  await errorOf('guardian.last_name').waitFor();
  assert((await errorOf('guardian.last_name').textContent()).includes('responsable légal'), 'guardian message');
  assert((await errorOf('consents.cgu').textContent()).includes('accepter'), 'terms message');
  assertEqual(await page.getAttribute('[name="guardian.email"]', 'aria-invalid'), 'true', 'aria-invalid on guardian e-mail');
  await shots('mineur-erreurs');

  await fill({ 'guardian.last_name': 'Roux', 'guardian.first_name': 'Camille', 'guardian.email': PARENT,
    'guardian.phone': '06 45 67 89 01', 'consents.cgu': true });
  const sent = await submitAndWaitForSent();
  assert(sent.includes('e-mail de confirmation'), `success message: ${sent}`);
  await shots('mineur-envoye');

  const [mail] = await sink.wait(1);
  assertEqual(mail.rcpt_tos[0], PARENT, 'verification mail recipient');
  await page.goto(linkIn(mail));
  await page.locator('h1:text("Adresse confirmée")').waitFor();
  assertEqual(new URL(page.url()).hash, '', 'token left in the address bar');
  await shots('mineur-confirme');

  assertEqual(sql("SELECT status FROM registration WHERE first_name = 'Léna'"), 'to_validate', 'registration status');
  assertEqual(sql("SELECT count(*) FROM family_link f JOIN person p ON p.id = f.person_id WHERE p.first_name = 'Léna' AND f.is_legal_guardian = 1"), '1', 'guardian link');
  assertEqual(sql("SELECT group_concat(d.key || ':' || c.decision) FROM consent_proof c JOIN consent_document d ON d.id = c.document_id JOIN person p ON p.id = c.person_id WHERE p.first_name = 'Léna' AND c.channel = 'registration'"),
    'cgu:accepted,photos:refused', 'consent proofs');

  // The link works once.
  await page.goto(linkIn(mail));
  await page.locator('h1:text("Lien non valable")').waitFor();
});

test('duplicate of an imported rider', async () => {
  const before = sql('SELECT count(*) FROM person');
  await openForm();
  await fill({ last_name: 'SCHMITT', first_name: 'Clara', sex: 'F', birth_date: '2002-02-22', email: 'clara.nouvelle@example.test',
    mobile: '06 00 11 22 33', address: '171 impasse de la Gare', postcode: '97400', city: 'Saint-Denis',
    licence_number: '6327815g', 'consents.cgu': true });
  const sent = await submitAndWaitForSent();
  assert(sent.includes('Si le club vous connaît déjà'), `success message: ${sent}`);
  await shots('doublon-envoye');

  const messages = await sink.wait(2);
  const mail = messages[1];
  assertEqual(mail.rcpt_tos[0], 'celine.schmitt@icloud.com', 'mail sent to the address on file');
  await page.goto(linkIn(mail));
  await page.locator('h1:text("Adresse confirmée")').waitFor();
  assert((await page.locator('.message--success').textContent()).includes('rattachée à votre fiche'), 'linked message');
  await shots('doublon-confirme');
  assertEqual(sql('SELECT count(*) FROM person'), before, 'people after a duplicate registration');

  // A rider without an address on file: staff will decide.
  await openForm();
  await fill({ last_name: 'de Villiers', first_name: 'Cécile', sex: 'F', birth_date: '1969-08-13', email: 'cecile.dv@example.test',
    mobile: '06 99 88 77 66', address: '119 boulevard des Prés', postcode: '01000', city: 'Bourg-en-Bresse', 'consents.cgu': true });
  await submitAndWaitForSent();
  const third = (await sink.wait(3))[2];
  assertEqual(third.rcpt_tos[0], 'cecile.dv@example.test', 'mail to the applicant when nobody has an address on file');
  await page.goto(linkIn(third));
  await page.locator('h1:text("Adresse confirmée")').waitFor();
  assertEqual(sql('SELECT count(*) FROM person'), before, 'people after a possible duplicate');
});

test('bot filling the honeypot', async () => {
  const registrations = sql('SELECT count(*) FROM registration');
  const mails = sink.messages().length;
  await openForm();
  await fill({ last_name: 'Bot', first_name: 'Spam', sex: 'M', birth_date: '1980-01-01', email: 'bot@spam.example',
    mobile: '06 12 12 12 12', address: '1 rue', postcode: '75001', city: 'Paris', 'consents.cgu': true });
  // A bot fills every input it finds, the hidden one included.
  await page.evaluate(() => { document.getElementById('site-web').value = 'http://spam.example'; });
  const sent = await submitAndWaitForSent();
  assert(sent.includes('e-mail de confirmation'), 'the bot gets the usual answer');
  await shots('robot');
  await sleep(1500);
  assertEqual(sink.messages().length, mails, 'mails after the bot');
  assertEqual(sql('SELECT count(*) FROM registration'), registrations, 'registrations after the bot');
  assert(server.stderr().includes('hidden field filled'), 'the bot is logged');
});

// Opens the staff page: through the navigation once main.js routes
// /inscriptions, otherwise by rendering the page module in the staff shell.
async function openStaffPage(status = '') {
  await page.goto(`${server.baseUrl}/inscriptions${status ? `?statut=${status}` : ''}`);
  await page.waitForLoadState('networkidle');
  if (await page.locator('h1:text("Inscriptions en ligne")').count()) return;
  await page.evaluate(async () => {
    const { registrationsPage } = await import('/js/pages/registrations.js');
    const main = document.getElementById('contenu');
    const ctx = {
      main,
      query: new URLSearchParams(location.search),
      isCurrent: () => true,
      app: {
        setTitle: (title) => { document.title = title; },
        navigate: (path) => { history.pushState(null, '', path); ctx.query = new URLSearchParams(location.search); registrationsPage(ctx); },
      },
    };
    await registrationsPage(ctx);
  });
  await page.locator('h1:text("Inscriptions en ligne")').waitFor();
}

test('staff list marks the possible duplicate', async () => {
  const login = await context.request.post(`${server.baseUrl}/api/v1/session`, { data: STAFF });
  assertEqual(login.status(), 200, 'staff login');
  await openStaffPage();
  const rows = page.locator('table tbody tr[data-id]');
  assertEqual(await rows.count(), 3, 'registrations waiting for staff');
  const cecile = page.locator('tr[data-id]', { hasText: 'DE VILLIERS' });
  assert((await cecile.textContent()).includes('doublon possible'), 'possible duplicate badge');
  assert((await page.locator('tr[data-id]', { hasText: 'SCHMITT' }).textContent()).includes('fiche existante'), 'linked badge');
  assert((await page.locator('tr[data-id]', { hasText: 'ROUX' }).textContent()).includes('mineur'), 'minor badge');
  await shots('equipe-liste');

  await cecile.locator('button:text("Examiner")').click();
  await page.locator('button:text("Rattacher à la fiche existante")').waitFor();
  await shots('equipe-doublon');
  await page.click('button:text("Rattacher à la fiche existante")');
  await page.locator('.message--success', { hasText: 'rattachée à la fiche existante' }).waitFor();
  assertEqual(await page.locator('tr[data-id]', { hasText: 'DE VILLIERS' }).count(), 0, 'validated row left the list');

  const roux = page.locator('tr[data-id]', { hasText: 'ROUX' });
  await roux.locator('button:text("Examiner")').click();
  await page.locator('text=Responsable légal').first().waitFor();
  await shots('equipe-mineur');
  await page.getByRole('button', { name: 'Valider', exact: true }).click();
  await page.locator('.message--success', { hasText: 'Inscription validée.' }).waitFor();
  assertEqual(sql("SELECT group_concat(r.role) FROM person_role r JOIN person p ON p.id = r.person_id WHERE p.first_name = 'Léna'"), 'client', 'roles after validation');

  await openStaffPage('validated');
  assertEqual(await page.locator('table tbody tr[data-id]').count(), 2, 'validated registrations');
  await shots('equipe-validees');
});

// ---- run -------------------------------------------------------------------------

async function main() {
  const filter = process.argv[2] || '';
  rmSync(ARTIFACTS, { recursive: true, force: true });
  mkdirSync(ARTIFACTS, { recursive: true });
  let passed = 0;
  let failed = 0;
  const pageErrors = [];

  try {
    await sink.start();
    server = new LicolServer({ smtp_url: `smtp://127.0.0.1:${sink.port}`, mail_from: 'contact@club.test',
      club_name: 'Écurie du Moulin', mail_from_name: 'Écurie du Moulin' });
    const imported = spawnSync(LICOL_BIN, ['import', '--db', join(server.tmp, 'licol.db'), join(SHARED_DIR, 'samples', 'ffe-2025.csv')],
      { encoding: 'utf8', env: { ...process.env, LICOL_HOME: SOURCE_DIR }, timeout: 600000 });
    if (imported.status !== 0) throw new Error(`licol import failed: ${imported.stderr}`);
    await server.start();
    server.addUser({ email: STAFF.email, role: 'employe', lastName: 'Accueil', firstName: 'Inès', password: STAFF.password });
    await publishDocuments();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    context = await browser.newContext({ viewport: DESKTOP, locale: 'fr-FR', timezoneId: 'Europe/Paris', userAgent: 'Mozilla/5.0 (test inscription)' });
    context.setDefaultTimeout(10000);
    page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => { if (msg.type() === 'error') pageErrors.push(msg.text()); });
    await context.route((url) => !url.href.startsWith(server.baseUrl), (route) => {
      pageErrors.push(`request outside the server: ${route.request().url()}`);
      return route.abort();
    });
  } catch (err) {
    console.error(`setup failed: ${err.stack || err}`);
    console.log('0 passed, 1 failed');
    if (server) await server.cleanup();
    sink.stop();
    if (browser) await browser.close();
    process.exit(1);
  }

  for (const { name, fn } of tests) {
    if (filter && !name.includes(filter)) continue;
    const started = Date.now();
    pageErrors.length = 0;
    try {
      await fn();
      const errors = pageErrors.filter((text) => !text.includes('404') && !text.includes('422'));
      if (errors.length) throw new Error(`errors in the page: ${errors.join(' | ')}`);
      passed += 1;
      console.log(`ok      ${name} (${Date.now() - started} ms)`);
    } catch (err) {
      failed += 1;
      console.log(`FAILED  ${name}: ${err.message}`);
      try {
        await page.screenshot({ path: join(ARTIFACTS, `echec-${name.replace(/[^a-z0-9]+/gi, '-')}.png`), fullPage: true });
      } catch {
        // the page may be gone
      }
    }
  }

  await browser.close();
  if (failed) console.log(`server log:\n${server.stderr().split('\n').slice(-30).join('\n')}`);
  await server.cleanup();
  sink.stop();
  console.log(`${passed} passed, ${failed} failed, 0 skipped`);
  process.exit(failed ? 1 : 0);
}

await main();
