// Starts a real licol server on a free loopback port with a temporary
// database and configuration, as tests/integration/licol_harness.py does,
// and reads the one-time manager password it prints.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, openSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const SOURCE_DIR = process.env.LICOL_SOURCE_DIR || resolve(here, '..', '..');
export const SHARED_DIR = process.env.LICOL_SHARED_DIR || resolve(SOURCE_DIR, '..', 'shared');
export const LICOL_BIN = process.env.LICOL_BIN || join(SOURCE_DIR, 'build', 'licol');

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolveConnect) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => { socket.destroy(); resolveConnect(true); });
    socket.once('error', () => resolveConnect(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class LicolServer {
  constructor(extraConfig = {}) {
    this.tmp = mkdtempSync(join(tmpdir(), 'licol-browser-'));
    this.extraConfig = extraConfig;
    this.proc = null;
    this.adminEmail = 'gerant@test.invalid';
    this.adminPassword = null;
  }

  async start(timeoutMs = 20000) {
    this.port = await freePort();
    this.baseUrl = `http://127.0.0.1:${this.port}`;
    const config = {
      listen_host: '127.0.0.1',
      listen_port: String(this.port),
      db: join(this.tmp, 'licol.db'),
      var_dir: join(this.tmp, 'var'),
      web_dir: join(SOURCE_DIR, 'web'),
      // LICOL_SCRIPTS_DIR and LICOL_PLUGINS_DIR point the server at other
      // script directories, for instance a copy kept stable while the
      // repository's scripts are being edited.
      scripts_dir: process.env.LICOL_SCRIPTS_DIR || join(SOURCE_DIR, 'scripts'),
      plugins_dir: process.env.LICOL_PLUGINS_DIR || join(SOURCE_DIR, 'plugins'),
      admin_email: this.adminEmail,
      public_url: this.baseUrl,
      log_level: 'info',
      ...this.extraConfig,
    };
    const configPath = join(this.tmp, 'licol.conf');
    writeFileSync(configPath, Object.entries(config).map(([k, v]) => `${k} = ${v}\n`).join(''));
    this.stdoutPath = join(this.tmp, 'stdout.log');
    this.stderrPath = join(this.tmp, 'stderr.log');
    this.proc = spawn(LICOL_BIN, ['serve', '--config', configPath], {
      cwd: this.tmp,
      stdio: ['ignore', openSync(this.stdoutPath, 'w'), openSync(this.stderrPath, 'w')],
    });
    let exited = null;
    this.proc.once('exit', (code) => { exited = code; });

    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (exited !== null) throw new Error(`licol exited with ${exited}:\n${this.stderr()}`);
      if (await canConnect(this.port)) break;
      await sleep(50);
    }
    if (!(await canConnect(this.port))) throw new Error(`licol did not start listening:\n${this.stderr()}`);
    const match = /Mot de passe à usage unique : (\S+)/.exec(this.stdout());
    this.adminPassword = match ? match[1] : null;
    return this;
  }

  // Creates an account with `licol user add` on this server's database.
  // The password is given on standard input, so no change is forced.
  addUser({ email, role, lastName, firstName, password }) {
    const result = spawnSync(LICOL_BIN, ['user', 'add', '--db', join(this.tmp, 'licol.db'), '--email', email,
      '--role', role, '--nom', lastName, '--prenom', firstName, '--password-stdin'],
    { cwd: this.tmp, input: `${password}\n`, encoding: 'utf8', timeout: 60000 });
    if (result.status !== 0) throw new Error(`licol user add failed (${result.status}): ${result.stderr}`);
  }

  stdout() {
    return readFileSync(this.stdoutPath, 'utf8');
  }

  stderr() {
    try {
      return readFileSync(this.stderrPath, 'utf8');
    } catch {
      return '';
    }
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 20000);
    await exited;
    clearTimeout(timer);
  }

  async cleanup() {
    await this.stop();
    if (!process.env.LICOL_KEEP_TMP) rmSync(this.tmp, { recursive: true, force: true });
  }
}
