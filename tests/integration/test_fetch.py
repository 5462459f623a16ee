"""Automatic update from the federation file, against a real licol server
and a real HTTP server on loopback (tests/tools/federation_server.py).

Cases: the schedule, conditional requests (304), the same content under a
new ETag, a changed file, and a server that is down, slow or sends too
much. Also wrong credentials, the manual trigger and its permissions, and
a stop during a download."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

from licol_harness import LicolServer, Session, SHARED_DIR, SOURCE_DIR

sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "tools"))
from federation_server import FederationServer  # noqa: E402
from test_import import PASSWORD, manager_session  # noqa: E402

GEN_RIDERS = os.path.join(SHARED_DIR, "tools", "gen-riders")
FED_USER = "club-9000003"
FED_PASSWORD = "secret-de-la-federation"


def generate(rows, season, seed=3):
    """Returns the bytes of a federation file made by gen-riders."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        subprocess.run(["/usr/bin/python3", GEN_RIDERS, "--format", "ffe", "--rows", str(rows),
                        "--season", str(season), "--seed", str(seed), "--out", out.name],
                       check=True)
        with open(out.name, "rb") as f:
            return f.read()


FILE_2025 = generate(40, 2025)
FILE_2026 = generate(40, 2026)


class FetchTestCase(unittest.TestCase):
    """One federation server and one licol server per test."""

    extra_config = {}
    federation_auth = True

    def setUp(self):
        self.federation = FederationServer(
            user=FED_USER if self.federation_auth else None,
            password=FED_PASSWORD if self.federation_auth else None)
        self.federation.set_content(FILE_2025)
        self.federation.start()
        self.addCleanup(self.federation.stop)

    def start_licol(self, scripts_dir=None, **overrides):
        config = {
            "fetch_url": self.federation.url(),
            "fetch_user": FED_USER,
            "fetch_password": FED_PASSWORD,
            "fetch_schedule": "",
            "fetch_retries": "0",
            "fetch_retry_delay_ms": "100",
            "fetch_connect_timeout_ms": "2000",
            "fetch_timeout_ms": "20000",
        }
        config.update(self.extra_config)
        config.update(overrides)
        self.server = LicolServer(extra_config=config, scripts_dir=scripts_dir).start()
        self.addCleanup(self.server.cleanup)
        self.manager = manager_session(self.server)
        return self.server

    # ---- helpers ------------------------------------------------------------

    def query(self, sql, *params):
        db = sqlite3.connect(self.server.db)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def scalar(self, sql, *params):
        return self.query(sql, *params)[0][0]

    def status(self):
        status, body = self.manager.json("GET", "/api/v1/fetch")
        self.assertEqual(status, 200, body)
        return body

    def run_now(self):
        """Triggers a fetch and waits for its outcome; returns its record."""
        status, body = self.manager.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 202, body)
        return self.wait_fetch(body["fetch"]["id"])

    def wait_fetch(self, fetch_id, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for item in self.status()["history"]:
                if item["id"] == fetch_id and item["outcome"] is not None:
                    return item
            time.sleep(0.1)
        self.fail("fetch %d did not end:\n%s" % (fetch_id, self.server.stderr()[-3000:]))

    def temporary_files(self):
        fetch_dir = os.path.join(self.server.tmp, "var", "fetch")
        return os.listdir(fetch_dir) if os.path.isdir(fetch_dir) else []

    def people(self):
        return self.scalar("SELECT COUNT(*) FROM person WHERE licence_number IS NOT NULL")

    def import_runs(self):
        return self.scalar("SELECT COUNT(*) FROM import_run")


class ScheduleTest(FetchTestCase):
    def test_schedule_imports_then_unchanged(self):
        self.start_licol(fetch_schedule="every 2 seconds")
        status = self.status()
        self.assertTrue(status["configured"])
        self.assertEqual(status["schedule"], "every 2 seconds")
        self.assertEqual(status["schedule_label"], "toutes les 2 secondes")

        deadline = time.time() + 30
        outcomes = []
        while time.time() < deadline:
            history = self.status()["history"]
            outcomes = [item["outcome"] for item in reversed(history)]
            if "imported" in outcomes and "unchanged" in outcomes[outcomes.index("imported"):]:
                break
            time.sleep(0.2)
        self.assertIn("imported", outcomes, self.server.stderr()[-3000:])
        self.assertIn("unchanged", outcomes)

        history = self.status()["history"]
        imported = [item for item in history if item["outcome"] == "imported"]
        self.assertEqual(len(imported), 1, history)
        self.assertEqual(imported[0]["trigger"], "schedule")
        self.assertEqual(imported[0]["http_status"], 200)
        self.assertEqual(imported[0]["bytes"], len(FILE_2025))
        self.assertEqual(self.import_runs(), 1)
        run = self.query("SELECT state, source, dry_run, replace_data FROM import_run")[0]
        self.assertEqual(run, ("done", "auto", 0, 0))
        self.assertGreater(self.people(), 30)
        self.assertIsNotNone(self.status()["next_run_at"])

        # Later runs sent If-None-Match and got 304.
        conditional = [r for r in self.federation.requests if "If-None-Match" in r["headers"]]
        self.assertTrue(conditional)
        self.assertEqual(conditional[-1]["headers"]["If-None-Match"], self.federation.etag)
        self.assertEqual(self.temporary_files(), [])

    def test_sighup_applies_new_schedule(self):
        self.start_licol()
        self.assertIsNone(self.status()["next_run_at"])
        with open(self.server.config_path, encoding="utf-8") as f:
            text = f.read()
        with open(self.server.config_path, "w", encoding="utf-8") as f:
            f.write(text.replace("fetch_schedule = \n", "fetch_schedule = every 1 second\n"))
        self.server.signal(signal.SIGHUP)
        deadline = time.time() + 20
        while self.scalar("SELECT COUNT(*) FROM fetch_run WHERE outcome = 'imported'") == 0:
            self.assertLess(time.time(), deadline, self.server.stderr()[-3000:])
            time.sleep(0.1)
        status = self.status()
        self.assertEqual(status["schedule"], "every 1 second")
        self.assertEqual(status["schedule_label"], "toutes les secondes")

    def test_daily_schedule_next_run(self):
        self.start_licol(fetch_schedule="daily 06:30")
        status = self.status()
        self.assertEqual(status["schedule_label"], "tous les jours à 06:30")
        now = time.time()
        local = time.localtime(now)
        target = time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 6, 30, 0, 0, 0, -1))
        if target <= now:
            target = time.mktime((local.tm_year, local.tm_mon, local.tm_mday + 1, 6, 30, 0, 0, 0,
                                  -1))
        self.assertEqual(status["next_run_at"],
                         time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(target)))
        self.assertEqual(self.federation.requests, [])

    def test_invalid_schedule_refuses_start(self):
        server = LicolServer(extra_config={"fetch_schedule": "tous les matins"})
        self.addCleanup(server.cleanup)
        with self.assertRaises(RuntimeError) as raised:
            server.start()
        self.assertIn("fetch_schedule", str(raised.exception))


class ConditionalTest(FetchTestCase):
    def test_unchanged_file_imports_nothing(self):
        self.start_licol()
        first = self.run_now()
        self.assertEqual(first["outcome"], "imported", first)
        self.assertEqual(first["trigger"], "manual")
        self.assertEqual(first["actor"]["name"], "Gérant")
        self.assertEqual(first["etag"], self.federation.etag)
        self.assertEqual(first["last_modified"], self.federation.last_modified)
        people = self.people()

        second = self.run_now()
        self.assertEqual(second["outcome"], "unchanged", second)
        self.assertEqual(second["outcome_label"], "Inchangé")
        self.assertEqual(second["http_status"], 304)
        self.assertIsNone(second["import_run_id"])
        self.assertEqual(self.import_runs(), 1)
        self.assertEqual(self.people(), people)
        headers = self.federation.requests[-1]["headers"]
        self.assertEqual(headers["If-None-Match"], first["etag"])
        self.assertEqual(headers["If-Modified-Since"], first["last_modified"])

    def test_changed_file_updates_licences(self):
        self.start_licol()
        self.assertEqual(self.run_now()["outcome"], "imported")
        self.assertEqual(self.scalar("SELECT COUNT(*) FROM licence WHERE season = 2026"), 0)
        people = self.people()

        self.federation.set_content(FILE_2026)
        changed = self.run_now()
        self.assertEqual(changed["outcome"], "imported", changed)
        self.assertEqual(self.import_runs(), 2)
        self.assertGreater(self.scalar("SELECT COUNT(*) FROM licence WHERE season = 2026"), 30)
        # Riders already known got their 2026 licence, and no licence number
        # belongs to two people.
        renewed = self.scalar("SELECT COUNT(*) FROM licence a JOIN licence b"
                              " ON a.person_id = b.person_id"
                              " WHERE a.season = 2025 AND b.season = 2026")
        self.assertGreater(renewed, people // 2)
        self.assertEqual(self.scalar("SELECT COUNT(*) FROM (SELECT licence_number FROM person"
                                     " WHERE licence_number IS NOT NULL"
                                     " GROUP BY licence_number HAVING COUNT(*) > 1)"), 0)
        run = self.query("SELECT state, updated FROM import_run WHERE id = ?",
                         changed["import_run_id"])[0]
        self.assertEqual(run[0], "done")
        self.assertGreater(run[1], 0)

    def test_same_content_new_etag_not_applied_twice(self):
        self.start_licol()
        first = self.run_now()
        self.assertEqual(first["outcome"], "imported")

        self.federation.touch()
        again = self.run_now()
        self.assertEqual(again["outcome"], "same_content", again)
        self.assertEqual(again["http_status"], 200)
        self.assertEqual(again["sha256"], first["sha256"])
        self.assertNotEqual(again["etag"], first["etag"])
        self.assertEqual(self.import_runs(), 1)
        self.assertEqual(self.temporary_files(), [])

    def test_file_uploaded_by_staff_not_applied_again(self):
        self.start_licol()
        status, _, body = self.manager.call("POST", "/api/v1/imports?filename=ffe.csv",
                                            raw_body=FILE_2025,
                                            headers={"Content-Type": "text/csv"})
        self.assertEqual(status, 202, body)
        run_id = json.loads(body)["run"]["id"]
        deadline = time.time() + 60
        while self.scalar("SELECT state FROM import_run WHERE id = ?", run_id) != "done":
            self.assertLess(time.time(), deadline)
            time.sleep(0.1)
        fetched = self.run_now()
        self.assertEqual(fetched["outcome"], "same_content", fetched)
        self.assertEqual(self.import_runs(), 1)


class FailureTest(FetchTestCase):
    def assert_nothing_changed(self, item):
        self.assertEqual(item["outcome"], "failed", item)
        self.assertIsNone(item["import_run_id"])
        self.assertEqual(self.import_runs(), 0)
        self.assertEqual(self.people(), 0)
        self.assertEqual(self.temporary_files(), [])
        self.assertIn(item["error"], self.server.stderr())

    def test_server_down_retried_then_failed(self):
        self.start_licol(fetch_retries="2", fetch_retry_delay_ms="200")
        self.federation.stop()
        item = self.run_now()
        self.assert_nothing_changed(item)
        self.assertEqual(item["attempts"], 3)
        self.assertIsNone(item["http_status"])
        self.assertIn("Connexion impossible", item["error"])
        self.assertEqual(self.status()["last"]["id"], item["id"])
        self.assertIn("retrying in 200 ms", self.server.stderr())
        self.assertIn("retrying in 400 ms", self.server.stderr())

    def test_server_back_after_retry(self):
        self.start_licol(fetch_retries="3", fetch_retry_delay_ms="1000")
        self.federation.mode = "status"
        status, body = self.manager.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 202, body)
        deadline = time.time() + 10
        while self.status()["phase"] != "retry_wait":
            self.assertLess(time.time(), deadline)
            time.sleep(0.05)
        self.assertIsNotNone(self.status()["retry_at"])
        self.federation.mode = "normal"
        item = self.wait_fetch(body["fetch"]["id"])
        self.assertEqual(item["outcome"], "imported", item)
        self.assertEqual(item["attempts"], 2)
        self.assertIsNone(item["error"])

    def test_slow_server_hits_total_timeout(self):
        self.start_licol(fetch_timeout_ms="1500", fetch_retries="0")
        self.federation.mode = "slow"
        started = time.time()
        item = self.run_now()
        self.assertLess(time.time() - started, 15)
        self.assert_nothing_changed(item)
        self.assertIn("Téléchargement trop long", item["error"])
        self.assertIn("fetch_timeout_ms", item["error"])

    def test_oversized_file_aborted(self):
        self.start_licol(fetch_max_bytes="100K")
        self.federation.mode = "oversized"
        item = self.run_now()
        self.assert_nothing_changed(item)
        self.assertIn("trop volumineux", item["error"])
        self.assertIn("102400 octets", item["error"])
        self.assertLessEqual(item["bytes"], 100 * 1024)

    def test_wrong_credentials(self):
        self.start_licol(fetch_password="pas-le-bon")
        item = self.run_now()
        self.assert_nothing_changed(item)
        self.assertEqual(item["http_status"], 401)
        self.assertEqual(item["attempts"], 1)
        self.assertEqual(item["error"], "Identifiants refusés par le serveur (HTTP 401) : "
                                        "vérifiez fetch_user et fetch_password.")
        sent = self.federation.requests[-1]["headers"]["Authorization"]
        self.assertTrue(sent.startswith("Basic "))
        self.assertNotIn("pas-le-bon", self.server.stderr())

    def test_missing_credentials(self):
        self.start_licol(fetch_user="", fetch_password="")
        item = self.run_now()
        self.assert_nothing_changed(item)
        self.assertEqual(item["http_status"], 401)
        self.assertNotIn("Authorization", self.federation.requests[-1]["headers"])
        self.assertIn("renseignez fetch_user", item["error"])


class ManualTriggerTest(FetchTestCase):
    def test_permissions(self):
        self.start_licol()
        self.server.add_user("client@test.invalid", "client", PASSWORD, "Client", "Jean")
        self.server.add_user("employe@test.invalid", "employe", PASSWORD, "Employe", "Paul")
        client = Session(self.server)
        client.login("client@test.invalid", PASSWORD)
        status, body = client.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 403, body)
        status, _ = client.json("GET", "/api/v1/fetch")
        self.assertEqual(status, 403)
        status, _ = Session(self.server).json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 401)
        self.assertEqual(self.federation.requests, [])

        employe = Session(self.server)
        employe.login("employe@test.invalid", PASSWORD)
        status, body = employe.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 202, body)
        self.assertEqual(body["fetch"]["actor"]["name"], "Paul Employe")
        self.assertEqual(self.wait_fetch(body["fetch"]["id"])["outcome"], "imported")

    def test_no_overlap(self):
        self.start_licol(fetch_timeout_ms="60000")
        self.federation.mode = "slow"
        self.federation.slow_interval = 0.05
        status, body = self.manager.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 202, body)
        status, second = self.manager.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 409, second)
        self.assertEqual(second["error"]["code"], "fetch_busy")
        self.assertIn("déjà en cours", second["error"]["message"])
        self.assertTrue(self.status()["running"])
        self.assertIn("fetch skipped", self.server.stderr())
        self.federation.mode = "normal"

    def test_skipped_during_import(self):
        self.start_licol()
        large = generate(20000, 2026, seed=5)
        status, _, body = self.manager.call("POST", "/api/v1/imports?filename=grand.csv",
                                            raw_body=large, headers={"Content-Type": "text/csv"})
        self.assertEqual(status, 202, body)
        status, refused = self.manager.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 409, refused)
        self.assertEqual(refused["error"]["code"], "fetch_busy")
        self.assertIn("Un import est en cours", refused["error"]["message"])
        self.assertEqual(self.status()["skipped"]["reason"], refused["error"]["message"])
        self.assertIn("requested fetch skipped: an import in progress", self.server.stderr())
        self.assertEqual(self.federation.requests, [])
        self.assertEqual(self.scalar("SELECT COUNT(*) FROM fetch_run"), 0)

    def test_not_configured(self):
        self.start_licol(fetch_url="")
        status, body = self.manager.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 409, body)
        self.assertEqual(body["error"]["code"], "fetch_not_configured")
        self.assertFalse(self.status()["configured"])

    def test_url_with_credentials_rejected(self):
        self.start_licol(fetch_url="http://user:pw@127.0.0.1:%d/licencies.csv"
                         % self.federation.port)
        status, body = self.manager.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 422, body)
        self.assertIn("identifiants", body["error"]["message"])
        self.assertEqual(body["error"]["fetch"]["outcome"], "failed")
        self.assertEqual(self.federation.requests, [])


class SourceScriptTest(FetchTestCase):
    """federation.lua decides the request; the credentials stay in C."""

    def scripts_with(self, source):
        scripts = os.path.join(tempfile.mkdtemp(prefix="licol-fetch-scripts-"), "scripts")
        shutil.copytree(os.path.join(SOURCE_DIR, "scripts"), scripts)
        self.addCleanup(shutil.rmtree, os.path.dirname(scripts), True)
        with open(os.path.join(scripts, "federation.lua"), "w", encoding="utf-8") as f:
            f.write(source)
        return scripts

    def test_post_form_with_credentials(self):
        scripts = self.scripts_with("""
local federation = {}
function federation.source(config)
  return {
    url = config.fetch_url,
    method = "POST",
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded", ["X-Club"] = "9000003" },
    body = "club=9000003&saison=" .. config.season,
    auth = config.has_credentials and "basic" or nil,
  }
end
return federation
""")
        self.start_licol(scripts_dir=scripts)
        item = self.run_now()
        self.assertEqual(item["outcome"], "imported", item)
        request = self.federation.requests[-1]
        self.assertEqual(request["method"], "POST")
        self.assertEqual(request["body"], ("club=9000003&saison=%d" % time.localtime().tm_year).encode())
        self.assertEqual(request["headers"]["X-Club"], "9000003")
        self.assertTrue(request["headers"]["Authorization"].startswith("Basic "))

    def test_authorization_header_rejected(self):
        scripts = self.scripts_with("""
local federation = {}
function federation.source(config)
  return { url = config.fetch_url, headers = { Authorization = "Basic Y2x1YjpzZWNyZXQ=" } }
end
return federation
""")
        self.start_licol(scripts_dir=scripts)
        status, body = self.manager.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 422, body)
        self.assertEqual(body["error"]["code"], "fetch_source_invalid")
        self.assertIn("Authorization", body["error"]["message"])
        self.assertIn("fetch_user", body["error"]["message"])
        self.assertEqual(body["error"]["fetch"]["outcome"], "failed")
        self.assertEqual(self.federation.requests, [])

    def test_script_error_recorded(self):
        scripts = self.scripts_with("""
local federation = {}
function federation.source(config)
  error("adresse inconnue pour cette saison")
end
return federation
""")
        self.start_licol(scripts_dir=scripts)
        status, body = self.manager.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 422, body)
        self.assertIn("federation.lua", body["error"]["message"])
        self.assertIn("adresse inconnue", body["error"]["message"])
        last = self.status()["last"]
        self.assertEqual(last["outcome"], "failed")
        self.assertIn("adresse inconnue", last["error"])


class TlsTest(FetchTestCase):
    """HTTPS with a self-signed certificate for 127.0.0.1."""

    @classmethod
    def setUpClass(cls):
        cls.tls_dir = tempfile.mkdtemp(prefix="licol-fetch-tls-")
        cls.cert = os.path.join(cls.tls_dir, "cert.pem")
        cls.key = os.path.join(cls.tls_dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", cls.key, "-out", cls.cert],
                       check=True, capture_output=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tls_dir, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.federation.stop()
        self.federation.start(tls=(self.cert, self.key))

    def test_unknown_certificate_rejected(self):
        self.start_licol(fetch_retries="2")
        item = self.run_now()
        self.assertEqual(item["outcome"], "failed", item)
        self.assertIn("Connexion sécurisée refusée", item["error"])
        self.assertEqual(item["attempts"], 1)
        self.assertEqual(self.import_runs(), 0)
        self.assertEqual(self.temporary_files(), [])

    def test_ca_file_trusts_certificate(self):
        self.start_licol(fetch_ca_file=self.cert)
        item = self.run_now()
        self.assertEqual(item["outcome"], "imported", item)
        self.assertTrue(item["url"].startswith("https://"))

    def test_insecure_tls_skips_verification(self):
        self.start_licol(fetch_insecure_tls="oui")
        item = self.run_now()
        self.assertEqual(item["outcome"], "imported", item)
        self.assertIn("TLS certificate verification is off", self.server.stderr())


class StopTest(FetchTestCase):
    def test_stop_during_download(self):
        self.start_licol(fetch_timeout_ms="120000")
        self.federation.mode = "slow"
        status, body = self.manager.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 202, body)
        deadline = time.time() + 10
        while not self.federation.requests:
            self.assertLess(time.time(), deadline)
            time.sleep(0.05)
        started = time.time()
        self.assertEqual(self.server.stop(), 0)
        self.assertLess(time.time() - started, 5)
        row = self.query("SELECT outcome, error FROM fetch_run WHERE id = ?", body["fetch"]["id"])
        self.assertEqual(row[0][0], "failed")
        self.assertIn("arrêt du serveur", row[0][1])
        self.assertEqual(self.temporary_files(), [])

    def test_killed_process_fetch_recovered(self):
        self.start_licol(fetch_timeout_ms="120000")
        self.federation.mode = "slow"
        status, body = self.manager.json("POST", "/api/v1/fetch/run")
        self.assertEqual(status, 202, body)
        deadline = time.time() + 10
        while not self.federation.requests:
            self.assertLess(time.time(), deadline)
            time.sleep(0.05)
        self.server.proc.kill()
        self.server.proc.wait()
        row = self.query("SELECT outcome FROM fetch_run WHERE id = ?", body["fetch"]["id"])
        self.assertIsNone(row[0][0])

        self.server.start()
        row = self.query("SELECT outcome, error, finished_at FROM fetch_run WHERE id = ?",
                         body["fetch"]["id"])[0]
        self.assertEqual(row[0], "failed")
        self.assertIn("interrompue", row[1])
        self.assertIsNotNone(row[2])
        self.assertEqual(self.temporary_files(), [])


if __name__ == "__main__":
    unittest.main()
