"""Accounts against a real licol server: login, logout, sessions and their
expiry, CSRF, the login rate limit, the one-time manager password, password
change, API tokens, and roles.lua edits applied without a restart."""

import json
import os
import shutil
import signal
import sqlite3
import tempfile
import time
import unittest

from licol_harness import LicolServer, Session, SOURCE_DIR

MANAGER = "gerant@test.invalid"
PASSWORD = "un-mot-de-passe-solide"
SAME_MESSAGE = "Adresse e-mail ou mot de passe incorrect."


def manager_session(server):
    """Logs in the first manager and replaces the one-time password."""
    session = Session(server)
    session.login(MANAGER, server.admin_password)
    status, _ = session.json("POST", "/api/v1/account/password",
                             {"current_password": server.admin_password, "new_password": PASSWORD})
    if status != 204:
        raise AssertionError("password change failed: %s" % status)
    return session


class LoginTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = LicolServer().start()
        cls.manager = manager_session(cls.server)
        cls.server.add_user("employe@test.invalid", "employe", PASSWORD, "Martin", "Paul")

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_login_returns_user_and_permissions(self):
        session = Session(self.server)
        body = session.login("employe@test.invalid", PASSWORD)
        self.assertEqual(body["user"]["email"], "employe@test.invalid")
        self.assertEqual(body["user"]["roles"], ["employe"])
        self.assertEqual(body["user"]["last_name"], "Martin")
        self.assertFalse(body["user"]["must_change_password"])
        self.assertTrue(body["permissions"]["riders.list"])
        self.assertFalse(body["permissions"]["settings.update"])
        self.assertFalse(body["permissions"]["tokens.manage"])
        self.assertGreaterEqual(len(body["csrf_token"]), 40)

    def test_cookie_attributes(self):
        status, headers, _ = self.server.request(
            "POST", "/api/v1/session", {"email": "employe@test.invalid", "password": PASSWORD})
        self.assertEqual(status, 200)
        cookie = headers["set-cookie"]
        self.assertTrue(cookie.startswith("licol_session="))
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=Strict", cookie)
        self.assertIn("Path=/", cookie)
        self.assertNotIn("Secure", cookie)

    def test_session_token_stored_as_hash(self):
        session = Session(self.server)
        session.login("employe@test.invalid", PASSWORD)
        token = session.cookie.split("=", 1)[1]
        db = sqlite3.connect(self.server.sessions_db)
        hashes = [row[0] for row in db.execute("SELECT token_hash FROM session")]
        db.close()
        self.assertNotIn(token, hashes)
        self.assertTrue(all(len(h) == 64 for h in hashes))

    def test_wrong_password_and_unknown_email_same_answer(self):
        status_a, body_a = Session(self.server).json(
            "POST", "/api/v1/session", {"email": "employe@test.invalid", "password": "mauvais-mot"})
        status_b, body_b = Session(self.server).json(
            "POST", "/api/v1/session", {"email": "personne@test.invalid", "password": "mauvais-mot"})
        self.assertEqual(status_a, 401)
        self.assertEqual(status_b, 401)
        self.assertEqual(body_a, body_b)
        self.assertEqual(body_a["error"]["code"], "invalid_credentials")
        self.assertEqual(body_a["error"]["message"], SAME_MESSAGE)

    def test_unknown_email_costs_a_hash(self):
        # Both requests verify an Argon2id hash, so neither is instant.
        start = time.monotonic()
        Session(self.server).json("POST", "/api/v1/session",
                                  {"email": "inconnu@test.invalid", "password": "x" * 12})
        unknown = time.monotonic() - start
        start = time.monotonic()
        Session(self.server).json("POST", "/api/v1/session",
                                  {"email": "employe@test.invalid", "password": "x" * 12})
        known = time.monotonic() - start
        self.assertGreater(unknown, known * 0.3)

    def test_missing_fields_are_422(self):
        status, body = Session(self.server).json("POST", "/api/v1/session", {"email": ""})
        self.assertEqual(status, 422)
        self.assertIn("email", body["error"]["fields"])
        self.assertIn("password", body["error"]["fields"])

    def test_get_session_when_logged_in(self):
        session = Session(self.server)
        session.login("employe@test.invalid", PASSWORD)
        status, body = session.json("GET", "/api/v1/session")
        self.assertEqual(status, 200)
        self.assertEqual(body["user"]["email"], "employe@test.invalid")
        self.assertIn("csrf_token", body)

    def test_get_session_without_cookie_is_401(self):
        status, body = Session(self.server).json("GET", "/api/v1/session")
        self.assertEqual(status, 401)
        self.assertEqual(body["error"]["code"], "unauthenticated")

    def test_forged_cookie_is_401(self):
        status, _, _ = self.server.request("GET", "/api/v1/session",
                                           headers={"Cookie": "licol_session=abc"})
        self.assertEqual(status, 401)

    def test_logout_clears_cookie_and_session(self):
        session = Session(self.server)
        session.login("employe@test.invalid", PASSWORD)
        old_cookie = session.cookie
        status, headers, _ = session.call("DELETE", "/api/v1/session")
        self.assertEqual(status, 204)
        self.assertIn("Max-Age=0", headers["set-cookie"])
        status, _, _ = self.server.request("GET", "/api/v1/session",
                                           headers={"Cookie": old_cookie})
        self.assertEqual(status, 401)

    def test_logout_needs_csrf(self):
        session = Session(self.server)
        session.login("employe@test.invalid", PASSWORD)
        session.csrf = None
        status, body = session.json("DELETE", "/api/v1/session")
        self.assertEqual(status, 403)
        self.assertEqual(body["error"]["code"], "csrf")

    def test_idle_session_expires(self):
        session = Session(self.server)
        session.login("employe@test.invalid", PASSWORD)
        db = sqlite3.connect(self.server.sessions_db)
        db.execute("UPDATE session SET last_seen_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-13 hours')"
                   " WHERE id = (SELECT max(id) FROM session)")
        db.commit()
        db.close()
        status, _ = session.json("GET", "/api/v1/session")
        self.assertEqual(status, 401)

    def test_absolute_expiry(self):
        session = Session(self.server)
        session.login("employe@test.invalid", PASSWORD)
        db = sqlite3.connect(self.server.sessions_db)
        db.execute("UPDATE session SET expires_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 minute')"
                   " WHERE id = (SELECT max(id) FROM session)")
        db.commit()
        db.close()
        status, _ = session.json("GET", "/api/v1/session")
        self.assertEqual(status, 401)

    def test_session_lifetime_is_seven_days(self):
        Session(self.server).login("employe@test.invalid", PASSWORD)
        db = sqlite3.connect(self.server.sessions_db)
        days = db.execute("SELECT julianday(expires_at) - julianday(created_at) FROM session"
                          " ORDER BY id DESC LIMIT 1").fetchone()[0]
        db.close()
        self.assertAlmostEqual(days, 7, places=3)


class SecureCookieTest(unittest.TestCase):
    def test_cookie_secure_setting(self):
        server = LicolServer({"cookie_secure": "1"}).start()
        try:
            status, headers, _ = server.request(
                "POST", "/api/v1/session", {"email": MANAGER, "password": server.admin_password})
            self.assertEqual(status, 200)
            self.assertIn("; Secure", headers["set-cookie"])
        finally:
            server.cleanup()


class PasswordTest(unittest.TestCase):
    def setUp(self):
        self.server = LicolServer().start()

    def tearDown(self):
        self.server.cleanup()

    def test_one_time_password_allows_only_password_change(self):
        session = Session(self.server)
        body = session.login(MANAGER, self.server.admin_password)
        self.assertTrue(body["user"]["must_change_password"])
        self.assertFalse(body["permissions"]["riders.list"])
        status, body = session.json("GET", "/api/v1/riders")
        self.assertEqual(status, 403)
        self.assertEqual(body["error"]["code"], "password_change_required")
        status, _ = session.json("POST", "/api/v1/riders", {"last_name": "X"})
        self.assertEqual(status, 403)
        status, _ = session.json("POST", "/api/v1/account/password",
                                 {"current_password": self.server.admin_password,
                                  "new_password": PASSWORD})
        self.assertEqual(status, 204)
        status, body = session.json("GET", "/api/v1/riders")
        self.assertEqual(status, 200)
        status, body = session.json("GET", "/api/v1/session")
        self.assertFalse(body["user"]["must_change_password"])

    def test_password_change_validation(self):
        session = manager_session(self.server)
        status, body = session.json("POST", "/api/v1/account/password",
                                    {"current_password": PASSWORD, "new_password": "court"})
        self.assertEqual(status, 422)
        self.assertIn("10 caractères", body["error"]["fields"]["new_password"])
        status, body = session.json("POST", "/api/v1/account/password",
                                    {"current_password": "pas-le-bon-mot", "new_password": "nouveau-mot-de-passe"})
        self.assertEqual(status, 422)
        self.assertEqual(body["error"]["fields"]["current_password"],
                         "Le mot de passe actuel est incorrect.")

    def test_password_change_ends_other_sessions(self):
        first = manager_session(self.server)
        second = Session(self.server)
        second.login(MANAGER, PASSWORD)
        status, _ = first.json("POST", "/api/v1/account/password",
                               {"current_password": PASSWORD, "new_password": "encore-un-autre-mot"})
        self.assertEqual(status, 204)
        self.assertEqual(first.json("GET", "/api/v1/session")[0], 200)
        self.assertEqual(second.json("GET", "/api/v1/session")[0], 401)
        fresh = Session(self.server)
        fresh.login(MANAGER, "encore-un-autre-mot")
        db = sqlite3.connect(self.server.db)
        rows = db.execute("SELECT action, field FROM audit_log WHERE action = 'password.change'").fetchall()
        db.close()
        self.assertEqual(len(rows), 2)


class SessionsFileTest(unittest.TestCase):
    """Sessions and failed logins live in the file beside the database
    whose name ends in "-sessions"."""

    def setUp(self):
        self.server = LicolServer().start()
        self.manager = manager_session(self.server)
        self.user_id = self.server.add_user("cible@test.invalid", "employe", PASSWORD)

    def tearDown(self):
        self.server.cleanup()

    def count(self, sql, *args):
        db = sqlite3.connect(self.server.sessions_db)
        try:
            return db.execute(sql, args).fetchone()[0]
        finally:
            db.close()

    def test_main_file_has_no_session_tables(self):
        db = sqlite3.connect(self.server.db)
        names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        db.close()
        self.assertNotIn("session", names)
        self.assertNotIn("login_attempt", names)
        self.assertGreaterEqual(self.count("SELECT COUNT(*) FROM session"), 1)

    def test_failed_login_recorded_in_sessions_file(self):
        Session(self.server).json("POST", "/api/v1/session",
                                  {"email": "cible@test.invalid", "password": "mauvais-mot"})
        self.assertEqual(
            self.count("SELECT COUNT(*) FROM login_attempt WHERE email = ?", "cible@test.invalid"), 1)

    def test_deleting_person_deletes_sessions(self):
        user = Session(self.server)
        user.login("cible@test.invalid", PASSWORD)
        self.assertEqual(self.count("SELECT COUNT(*) FROM session WHERE person_id = ?", self.user_id), 1)
        status, body = self.manager.json("DELETE", "/api/v1/riders/%d" % self.user_id)
        self.assertIn(status, (200, 204), body)
        self.assertEqual(self.count("SELECT COUNT(*) FROM session WHERE person_id = ?", self.user_id), 0)
        self.assertEqual(user.json("GET", "/api/v1/session")[0], 401)

    def test_restored_database_drops_newer_sessions(self):
        """After a restore of an older main file, a session of a person the
        copy does not have is deleted, and cannot pass to the person who
        gets the same id next."""
        self.server.stop()
        backup = self.server.db + ".copie"
        shutil.copyfile(self.server.db, backup)
        self.server.start()
        client_id = self.server.add_user("client@test.invalid", "client", PASSWORD)
        client = Session(self.server)
        client.login("client@test.invalid", PASSWORD)
        self.server.stop()

        shutil.copyfile(backup, self.server.db)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.server.db + suffix):
                os.remove(self.server.db + suffix)
        self.server.start()
        self.assertEqual(self.count("SELECT COUNT(*) FROM session WHERE person_id = ?", client_id), 0)
        self.assertEqual(client.json("GET", "/api/v1/session")[0], 401)
        manager = Session(self.server)
        manager.login(MANAGER, PASSWORD)
        status, rider = manager.json("POST", "/api/v1/riders", {"last_name": "Nouveau",
                                                                "first_name": "Venu"})
        self.assertEqual(status, 201, rider)
        self.assertEqual(rider["id"], client_id)
        self.assertEqual(client.json("GET", "/api/v1/session")[0], 401)

    def test_sessions_file_takes_main_file_mode(self):
        for mode, umask in ((0o600, 0o022), (0o640, 0o077)):
            self.server.stop()
            os.chmod(self.server.db, mode)
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.server.sessions_db + suffix):
                    os.remove(self.server.sessions_db + suffix)
            previous = os.umask(umask)
            try:
                self.server.start()
            finally:
                os.umask(previous)
            Session(self.server).login("cible@test.invalid", PASSWORD)
            self.assertEqual(os.stat(self.server.sessions_db).st_mode & 0o777, mode)
            self.assertEqual(os.stat(self.server.sessions_db + "-wal").st_mode & 0o777, mode)

    def test_upgrade_moves_open_sessions(self):
        """A database from before the sessions file keeps its open sessions."""
        user = Session(self.server)
        user.login("cible@test.invalid", PASSWORD)
        self.server.stop()

        # Rebuild the layout of migration 0009: the tables in the main file,
        # no sessions file, migration 0010 not recorded.
        sessions = sqlite3.connect(self.server.sessions_db)
        rows = sessions.execute("SELECT id, token_hash, person_id, csrf_token, created_at,"
                                " last_seen_at, expires_at, ip, user_agent FROM session").fetchall()
        sessions.close()

        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.server.sessions_db + suffix):
                os.remove(self.server.sessions_db + suffix)
        db = sqlite3.connect(self.server.db)
        db.executescript("""
            CREATE TABLE session (
                id INTEGER PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE,
                person_id INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
                csrf_token TEXT NOT NULL, created_at TEXT NOT NULL, last_seen_at TEXT NOT NULL,
                expires_at TEXT NOT NULL, ip TEXT, user_agent TEXT);
            CREATE TABLE login_attempt (
                id INTEGER PRIMARY KEY, at INTEGER NOT NULL, ip TEXT NOT NULL, email TEXT NOT NULL);
            DELETE FROM schema_migration WHERE scope = 'core' AND number = 10;
        """)
        db.executemany("INSERT INTO session VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.execute("INSERT INTO login_attempt (at, ip, email) VALUES (1, '127.0.0.1', 'x@test.invalid')")
        db.commit()
        db.close()

        self.server.start()
        self.assertIn("applied core/0010_sessions_file", self.server.stderr())
        self.assertEqual(user.json("GET", "/api/v1/session")[0], 200)
        self.assertEqual(self.count("SELECT COUNT(*) FROM login_attempt"), 1)


class RateLimitTest(unittest.TestCase):
    def setUp(self):
        self.server = LicolServer().start()
        self.server.add_user("cible@test.invalid", "client", PASSWORD)

    def tearDown(self):
        self.server.cleanup()

    def test_five_failures_per_email_then_429(self):
        for _ in range(5):
            status, _ = Session(self.server).json(
                "POST", "/api/v1/session", {"email": "cible@test.invalid", "password": "mauvais-mot"})
            self.assertEqual(status, 401)
        status, headers, data = Session(self.server).call(
            "POST", "/api/v1/session", {"email": "cible@test.invalid", "password": PASSWORD})
        self.assertEqual(status, 429)
        self.assertEqual(json.loads(data)["error"]["code"], "rate_limited")
        self.assertEqual(headers.get("retry-after"), "900")

    def test_unknown_email_limited_the_same_way(self):
        for _ in range(5):
            Session(self.server).json("POST", "/api/v1/session",
                                      {"email": "absent@test.invalid", "password": "mauvais-mot"})
        status, _ = Session(self.server).json(
            "POST", "/api/v1/session", {"email": "absent@test.invalid", "password": "mauvais-mot"})
        self.assertEqual(status, 429)

    def test_per_address_limit(self):
        for i in range(20):
            Session(self.server).json("POST", "/api/v1/session",
                                      {"email": "essai%d@test.invalid" % i, "password": "mauvais-mot"})
        status, _ = Session(self.server).json(
            "POST", "/api/v1/session", {"email": "cible@test.invalid", "password": PASSWORD})
        self.assertEqual(status, 429)

    def test_success_clears_email_failures(self):
        for _ in range(4):
            Session(self.server).json("POST", "/api/v1/session",
                                      {"email": "cible@test.invalid", "password": "mauvais-mot"})
        Session(self.server).login("cible@test.invalid", PASSWORD)
        for _ in range(4):
            Session(self.server).json("POST", "/api/v1/session",
                                      {"email": "cible@test.invalid", "password": "mauvais-mot"})
        Session(self.server).login("cible@test.invalid", PASSWORD)


class TokenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = LicolServer().start()
        cls.manager = manager_session(cls.server)
        cls.server.add_user("employe@test.invalid", "employe", PASSWORD)

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def create(self, name, role):
        status, body = self.manager.json("POST", "/api/v1/tokens", {"name": name, "role": role})
        self.assertEqual(status, 201)
        return body

    def test_token_shown_once_and_stored_as_hash(self):
        body = self.create("Logiciel de facturation", "comptable")
        self.assertTrue(body["token"].startswith("lct_"))
        status, listing = self.manager.json("GET", "/api/v1/tokens")
        self.assertEqual(status, 200)
        self.assertNotIn(body["token"], json.dumps(listing))
        item = [t for t in listing["items"] if t["id"] == body["id"]][0]
        self.assertEqual(item["role"], "comptable")
        self.assertIsNone(item["revoked_at"])
        db = sqlite3.connect(self.server.db)
        stored = db.execute("SELECT token_hash FROM api_token WHERE id = ?", (body["id"],)).fetchone()[0]
        db.close()
        self.assertNotEqual(stored, body["token"])

    def test_bearer_token_uses_its_role(self):
        body = self.create("Lecture", "comptable")
        client = Session(self.server, token=body["token"])
        status, data = client.json("GET", "/api/v1/riders")
        self.assertEqual(status, 200)
        status, data = client.json("POST", "/api/v1/riders", {"last_name": "Refus"})
        self.assertEqual(status, 403)
        self.assertEqual(data["error"]["code"], "forbidden")
        status, data = client.json("GET", "/api/v1/session")
        self.assertEqual(data["user"]["roles"], ["comptable"])
        self.assertNotIn("csrf_token", data)

    def test_bearer_token_needs_no_csrf(self):
        body = self.create("Écriture", "employe")
        client = Session(self.server, token=body["token"])
        status, data = client.json("POST", "/api/v1/riders", {"last_name": "Jeton"})
        self.assertEqual(status, 201, data)

    def test_revoked_token_is_401(self):
        body = self.create("Temporaire", "employe")
        client = Session(self.server, token=body["token"])
        self.assertEqual(client.json("GET", "/api/v1/riders")[0], 200)
        status, _ = self.manager.json("DELETE", "/api/v1/tokens/%d" % body["id"])
        self.assertEqual(status, 204)
        status, data = client.json("GET", "/api/v1/riders")
        self.assertEqual(status, 401)
        self.assertEqual(self.manager.json("DELETE", "/api/v1/tokens/999999")[0], 404)

    def test_bad_token_is_401(self):
        client = Session(self.server, token="lct_nimporte-quoi")
        self.assertEqual(client.json("GET", "/api/v1/riders")[0], 401)

    def test_token_validation(self):
        status, body = self.manager.json("POST", "/api/v1/tokens", {"name": "", "role": "roi"})
        self.assertEqual(status, 422)
        self.assertIn("name", body["error"]["fields"])
        self.assertIn("role", body["error"]["fields"])

    def test_employee_and_token_cannot_manage_tokens(self):
        employee = Session(self.server)
        employee.login("employe@test.invalid", PASSWORD)
        self.assertEqual(employee.json("GET", "/api/v1/tokens")[0], 403)
        self.assertEqual(employee.json("POST", "/api/v1/tokens", {"name": "x", "role": "gerant"})[0], 403)
        body = self.create("Employé", "employe")
        client = Session(self.server, token=body["token"])
        self.assertEqual(client.json("GET", "/api/v1/tokens")[0], 403)
        self.assertEqual(client.json("DELETE", "/api/v1/tokens/%d" % body["id"])[0], 403)

    def test_token_has_no_password(self):
        body = self.create("Sans mot de passe", "gerant")
        client = Session(self.server, token=body["token"])
        status, _ = client.json("POST", "/api/v1/account/password",
                                {"current_password": "x", "new_password": "y" * 12})
        self.assertEqual(status, 403)


class RolesReloadTest(unittest.TestCase):
    def setUp(self):
        self.scripts = tempfile.mkdtemp(prefix="licol-scripts-")
        shutil.copytree(os.path.join(SOURCE_DIR, "scripts"), self.scripts, dirs_exist_ok=True)
        self.server = LicolServer(scripts_dir=self.scripts).start()
        self.manager = manager_session(self.server)
        self.server.add_user("comptable@test.invalid", "comptable", PASSWORD)

    def tearDown(self):
        self.server.cleanup()
        shutil.rmtree(self.scripts, ignore_errors=True)

    def edit_roles(self, old, new):
        path = os.path.join(self.scripts, "roles.lua")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertIn(old, text)
        # Written to a new file and renamed, as editors save.
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text.replace(old, new, 1))
        os.replace(path + ".tmp", path)

    def wait_for(self, session, path, status, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if session.json("GET", path)[0] == status:
                return True
            time.sleep(0.2)
        return False

    def test_roles_edit_applies_without_restart(self):
        accountant = Session(self.server)
        accountant.login("comptable@test.invalid", PASSWORD)
        self.assertEqual(accountant.json("GET", "/api/v1/scripts/status")[0], 403)
        self.edit_roles('    ["finance.update"] = "toujours",\n  },',
                        '    ["finance.update"] = "toujours",\n'
                        '    ["scripts.status"] = "toujours",\n  },')
        self.assertTrue(self.wait_for(accountant, "/api/v1/scripts/status", 200))
        status, body = accountant.json("GET", "/api/v1/session")
        self.assertTrue(body["permissions"]["scripts.status"])

    def test_sighup_reloads_scripts(self):
        before = self.manager.json("GET", "/api/v1/scripts/status")[1]["reloads"]
        self.server.signal(signal.SIGHUP)
        deadline = time.time() + 10
        after = before
        while time.time() < deadline and after == before:
            time.sleep(0.1)
            after = self.manager.json("GET", "/api/v1/scripts/status")[1]["reloads"]
        self.assertEqual(after, before + 1)

    def test_broken_roles_edit_keeps_old_rules(self):
        status, before = self.manager.json("GET", "/api/v1/scripts/status")
        self.assertEqual(status, 200)
        self.edit_roles("local M = {}", "local M = {")
        deadline = time.time() + 10
        body = before
        while time.time() < deadline:
            body = self.manager.json("GET", "/api/v1/scripts/status")[1]
            if body["last_error"]:
                break
            time.sleep(0.2)
        self.assertTrue(body["last_error"])
        self.assertEqual(body["version"], before["version"])
        self.assertEqual(self.manager.json("GET", "/api/v1/riders")[0], 200)


if __name__ == "__main__":
    unittest.main()
