"""Start a real licol server on a loopback port against a temporary database.

Used by every integration test. The binary comes from $LICOL_BIN (set by
CTest), the source tree from $LICOL_SOURCE_DIR.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

SOURCE_DIR = os.environ.get("LICOL_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
SHARED_DIR = os.environ.get("LICOL_SHARED_DIR", os.path.join(SOURCE_DIR, "..", "shared"))
LICOL_BIN = os.environ.get("LICOL_BIN", os.path.join(SOURCE_DIR, "build", "licol"))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LicolServer:
    """A licol process with its own temporary directory.

    extra_config: dict of configuration keys written to the config file.
    """

    def __init__(self, extra_config=None, scripts_dir=None, plugins_dir=None):
        self.tmp = tempfile.mkdtemp(prefix="licol-it-")
        self.port = free_port()
        self.db = os.path.join(self.tmp, "licol.db")
        # Login sessions and failed logins live in this second file.
        self.sessions_db = self.db + "-sessions"
        self.config_path = os.path.join(self.tmp, "licol.conf")
        config = {
            "listen_host": "127.0.0.1",
            "listen_port": str(self.port),
            "db": self.db,
            "var_dir": os.path.join(self.tmp, "var"),
            "web_dir": os.path.join(SOURCE_DIR, "web"),
            "scripts_dir": scripts_dir or os.path.join(SOURCE_DIR, "scripts"),
            "plugins_dir": plugins_dir or os.path.join(SOURCE_DIR, "plugins"),
            "admin_email": "gerant@test.invalid",
            "public_url": "http://127.0.0.1:%d" % self.port,
            "log_level": "info",
        }
        config.update(extra_config or {})
        with open(self.config_path, "w", encoding="utf-8") as f:
            for key, value in config.items():
                f.write("%s = %s\n" % (key, value))
        self.proc = None
        self.stdout_path = os.path.join(self.tmp, "stdout.log")
        self.stderr_path = os.path.join(self.tmp, "stderr.log")
        self.admin_password = None

    def start(self, timeout=20):
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([LICOL_BIN, "serve", "--config", self.config_path],
                                         stdout=out, stderr=err, cwd=self.tmp)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("licol exited with %s:\n%s" % (self.proc.returncode, self.stderr()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("licol did not start listening:\n" + self.stderr())
        match = re.search(r"Mot de passe à usage unique : (\S+)", self.stdout())
        if match:
            self.admin_password = match.group(1)
        return self

    def stdout(self):
        with open(self.stdout_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def cleanup(self):
        self.stop()
        if os.environ.get("LICOL_KEEP_TMP"):
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def connection(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        """One request on a fresh connection; returns (status, headers, body bytes)."""
        conn = self.connection(timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = dict(headers or {}, **{"Content-Type": "application/json"})
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data
        finally:
            conn.close()

    def raw(self, data, read_timeout=5, shutdown=False):
        """Sends raw bytes and returns everything read until the peer closes or times out."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=read_timeout) as s:
            s.sendall(data)
            if shutdown:
                s.shutdown(socket.SHUT_WR)
            chunks = []
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            except socket.timeout:
                pass
            return b"".join(chunks)

    def add_user(self, email, role, password, last_name="Test", first_name=""):
        """Creates an account with the CLI (`licol user add`); returns its person id."""
        result = self.licol("user", "add", "--config", self.config_path, "--email", email,
                            "--role", role, "--nom", last_name, "--prenom", first_name,
                            "--password-stdin", stdin=(password + "\n").encode())
        if result.returncode != 0:
            raise AssertionError("user add failed: %s" % result.stderr.decode())
        import sqlite3
        db = sqlite3.connect(self.db)
        try:
            return db.execute("SELECT id FROM person WHERE email = ? AND password_hash IS NOT NULL",
                              (email,)).fetchone()[0]
        finally:
            db.close()

    def licol(self, *args, stdin=None):
        """Runs the licol command against this server's database and config."""
        return subprocess.run([LICOL_BIN, *args], input=stdin, capture_output=True,
                              cwd=self.tmp, timeout=600)


class Session:
    """A logged-in browser-like client: keeps the session cookie and CSRF token."""

    def __init__(self, server, token=None):
        self.server = server
        self.cookie = None
        self.csrf = None
        self.token = token  # an API token: sent as "Authorization: Bearer"

    def login(self, email, password):
        status, headers, body = self.call("POST", "/api/v1/session",
                                          {"email": email, "password": password})
        if status != 200:
            raise AssertionError("login failed: %s %s" % (status, body))
        return json.loads(body)

    def call(self, method, path, body=None, headers=None, raw_body=None):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if self.cookie:
            headers["Cookie"] = self.cookie
        if self.csrf and method not in ("GET", "HEAD"):
            headers["X-CSRF-Token"] = self.csrf
        if raw_body is not None:
            status, resp_headers, data = self.server.request(method, path, raw_body, headers)
        else:
            status, resp_headers, data = self.server.request(method, path, body, headers)
        set_cookie = resp_headers.get("set-cookie")
        if set_cookie and set_cookie.startswith("licol_session="):
            value = set_cookie.split(";", 1)[0]
            self.cookie = None if value == "licol_session=" else value
        if data and resp_headers.get("content-type", "").startswith("application/json"):
            try:
                parsed = json.loads(data)
                if isinstance(parsed, dict) and "csrf_token" in parsed:
                    self.csrf = parsed["csrf_token"]
            except ValueError:
                pass
        return status, resp_headers, data

    def json(self, method, path, body=None):
        status, _, data = self.call(method, path, body)
        return status, (json.loads(data) if data else None)


def quote(text):
    return urllib.parse.quote(text, safe="")
