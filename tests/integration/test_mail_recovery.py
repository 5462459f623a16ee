"""Password-recovery mails end to end: the real licol server sends through
the outbox worker to a real SMTP server on loopback (tests/tools/smtp_sink.py),
and the tests follow the links the mails contain.

Covers: message headers, encoding, both parts and the link; choosing a
password from the link and logging in; one mail per family address; people
without a valid e-mail listed; the clients of an import run; the
"mot de passe oublié" answer and its rate limits; single use and expiry of
tokens; the staff outbox and retry; an SMTP server that is down then back;
a SIGKILL in the middle of a batch.
"""

import glob
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import unittest

from licol_harness import LicolServer, Session, SOURCE_DIR, SHARED_DIR, free_port

PASSWORD = "un-mot-de-passe-solide"
SINK = os.path.join(SOURCE_DIR, "tests", "tools", "smtp_sink.py")
LINK_RE = re.compile(r"(https?://[^\s\"<>]+#jeton=([A-Za-z0-9_-]{43}))")


class SmtpSink:
    """tests/tools/smtp_sink.py on a loopback port, run by Debian's Python."""

    def __init__(self, port=None, *args):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="licol-sink-")
        self.args = list(args)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["/usr/bin/python3", SINK, "--port", str(self.port),
                                      "--dir", self.dir, *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("ready"):
            raise RuntimeError("smtp sink did not start: " + self.proc.stderr.read().decode())
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc:
            self.proc.stdout.close()
            self.proc.stderr.close()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self):
        return "smtp://127.0.0.1:%d" % self.port

    def messages(self):
        out = []
        for path in sorted(glob.glob(os.path.join(self.dir, "*.json"))):
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            with open(path[:-5] + ".eml", "rb") as f:
                record["raw"] = f.read()
            out.append(record)
        return out

    def wait(self, count, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            messages = self.messages()
            if len(messages) >= count:
                return messages
            time.sleep(0.05)
        raise AssertionError("expected %d messages, got %d" % (count, len(self.messages())))


def mail_server(sink_url, **extra):
    config = {"smtp_url": sink_url, "mail_from": "contact@club.test",
              "mail_from_name": "Écurie du Moulin", "club_name": "Écurie du Moulin",
              "mail_rate_per_second": "0"}
    config.update(extra)
    return LicolServer(config)


def link_of(message):
    match = LINK_RE.search(message["text"])
    if not match:
        raise AssertionError("no link in: " + message["text"])
    return match.group(1), match.group(2)


def db_query(server, sql, *params):
    db = sqlite3.connect(server.db)
    try:
        rows = db.execute(sql, params).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


class MailTestCase(unittest.TestCase):
    sink_args = ()

    def setUp(self):
        self.sink = SmtpSink(None, *self.sink_args).start()
        self.server = mail_server(self.sink.url).start()
        self.server.add_user("staff@test.invalid", "gerant", PASSWORD, "Staff", "Sam")
        self.manager = Session(self.server)
        self.manager.login("staff@test.invalid", PASSWORD)

    def tearDown(self):
        self.server.cleanup()
        self.sink.cleanup()

    def rider(self, **fields):
        fields.setdefault("last_name", "Martin")
        status, body = self.manager.json("POST", "/api/v1/riders", fields)
        self.assertEqual(status, 201, body)
        return body["id"]

    def send(self, body, expect=200):
        status, result = self.manager.json("POST", "/api/v1/recovery-mails", body)
        self.assertEqual(status, expect, result)
        return result


class RecoveryLinkTest(MailTestCase):
    def test_mail_content_link_and_login(self):
        rid = self.rider(first_name="Élodie", last_name="Lefèvre", email="elodie@exemple.test",
                         birth_date="1990-04-02")
        result = self.send({"person_id": rid})
        self.assertEqual((result["queued"], result["addresses"], result["without_email"]), (1, 1, []))
        message = self.sink.wait(1)[0]

        self.assertEqual(message["rcpt_tos"], ["elodie@exemple.test"])
        self.assertEqual(message["mail_from"], "contact@club.test")
        self.assertEqual(message["from_name"], "Écurie du Moulin")
        self.assertEqual(message["headers"]["Subject"],
                         "Écurie du Moulin : choisissez votre mot de passe")
        self.assertIn("Élodie", message["headers"]["To"])
        self.assertEqual(message["headers"]["Auto-Submitted"], "auto-generated")
        self.assertEqual(message["defects"], [])
        self.assertLessEqual(message["max_line_length"], 998)
        # Encoded on the wire: no raw UTF-8 in the headers.
        head = message["raw"].split(b"\r\n\r\n", 1)[0]
        self.assertTrue(all(b < 128 for b in head))
        self.assertIn("Bonjour Élodie Lefèvre", message["text"])
        self.assertIn("Bonjour Élodie Lefèvre", message["html"])
        url, token = link_of(message)
        self.assertTrue(url.startswith("http://127.0.0.1:%d/choisir-mot-de-passe.html#jeton="
                                       % self.server.port))
        self.assertIn('href="%s"' % url, message["html"])

        # The page behind the link exists and is French.
        status, _, page = self.server.request("GET", "/choisir-mot-de-passe.html")
        self.assertEqual(status, 200)
        self.assertIn(b'lang="fr"', page)

        visitor = Session(self.server)
        status, body = visitor.json("GET", "/api/v1/password/reset/" + token)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["first_name"], "Élodie")
        self.assertEqual(body["email"], "elodie@exemple.test")
        status, body = visitor.json("POST", "/api/v1/password/reset",
                                    {"token": token, "password": "court"})
        self.assertEqual(status, 422)
        self.assertIn("password", body["error"]["fields"])
        status, body = visitor.json("POST", "/api/v1/password/reset",
                                    {"token": token, "password": "cheval-au-galop-2026"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["email"], "elodie@exemple.test")
        visitor.login("elodie@exemple.test", "cheval-au-galop-2026")

        # Single use.
        status, body = visitor.json("GET", "/api/v1/password/reset/" + token)
        self.assertEqual(status, 404)
        self.assertIn("n'est plus valable", body["error"]["message"])
        status, _ = visitor.json("POST", "/api/v1/password/reset",
                                 {"token": token, "password": "un-autre-mot-de-passe"})
        self.assertEqual(status, 404)

    def test_expired_and_voided_tokens(self):
        rid = self.rider(first_name="Paul", email="paul@exemple.test", birth_date="1985-01-01")
        self.send({"person_id": rid})
        self.send({"person_id": rid})
        messages = self.sink.wait(2)
        first, second = link_of(messages[0])[1], link_of(messages[1])[1]
        visitor = Session(self.server)
        # Expiry: move the first token's expiry into the past.
        db_query(self.server, "UPDATE password_token SET expires_at = '2000-01-01T00:00:00Z'"
                 " WHERE id = (SELECT min(id) FROM password_token WHERE person_id = ?)", rid)
        status, _ = visitor.json("GET", "/api/v1/password/reset/" + first)
        self.assertEqual(status, 404)
        status, _ = visitor.json("POST", "/api/v1/password/reset",
                                 {"token": first, "password": "cheval-au-galop-2026"})
        self.assertEqual(status, 404)
        # Setting a password voids the other links of the person.
        self.send({"person_id": rid})
        third = link_of(self.sink.wait(3)[2])[1]
        status, _ = visitor.json("POST", "/api/v1/password/reset",
                                 {"token": third, "password": "cheval-au-galop-2026"})
        self.assertEqual(status, 200)
        status, _ = visitor.json("GET", "/api/v1/password/reset/" + second)
        self.assertEqual(status, 404)
        # Malformed tokens get the same answer.
        for bad in ("x", "A" * 43, "%2e%2e"):
            status, _ = visitor.json("GET", "/api/v1/password/reset/" + bad)
            self.assertEqual(status, 404)

    def test_family_gets_one_mail_and_people_without_email_are_listed(self):
        parent = self.rider(first_name="Claire", last_name="Dubois", email="famille@exemple.test",
                            birth_date="1980-05-05")
        child1 = self.rider(first_name="Léa", last_name="Dubois", email="famille@exemple.test",
                            birth_date="2014-03-03")
        child2 = self.rider(first_name="Hugo", last_name="Dubois", email="famille@exemple.test",
                            birth_date="2016-07-07")
        nobody = self.rider(first_name="Jeanne", last_name="Adresse")
        broken = self.rider(first_name="Mauvaise", last_name="Adresse")
        db_query(self.server, "UPDATE person SET email_invalid = 'jean.dupont@' WHERE id = ?", broken)

        result = self.send({"person_ids": [child1, child2, parent, nobody, broken, child1]})
        self.assertEqual(result["queued"], 1)
        self.assertEqual(result["addresses"], 1)
        reasons = {item["id"]: item for item in result["without_email"]}
        self.assertEqual(set(reasons), {nobody, broken})
        self.assertEqual(reasons[nobody]["name"], "Jeanne Adresse")
        self.assertEqual(reasons[nobody]["reason"], "Pas d'adresse e-mail.")
        self.assertIn("jean.dupont@", reasons[broken]["reason"])

        message = self.sink.wait(1)[0]
        time.sleep(0.5)
        self.assertEqual(len(self.sink.messages()), 1)
        self.assertEqual(message["rcpt_tos"], ["famille@exemple.test"])
        self.assertIn("Bonjour Claire Dubois", message["text"])
        self.assertIn("Léa Dubois", message["text"])
        self.assertIn("Hugo Dubois", message["text"])
        self.assertIn("Hugo Dubois", message["html"])
        # The link is the account holder's: the parent.
        token = link_of(message)[1]
        status, body = Session(self.server).json("GET", "/api/v1/password/reset/" + token)
        self.assertEqual(body["first_name"], "Claire")
        self.assertEqual(db_query(self.server, "SELECT person_id FROM outbox"), [(parent,)])

    def test_validation_and_permissions(self):
        self.send({}, expect=422)
        self.send({"person_ids": ["a"]}, expect=422)
        self.send({"import_run_id": 999}, expect=404)
        self.server.add_user("client@test.invalid", "client", PASSWORD, "Client")
        client = Session(self.server)
        client.login("client@test.invalid", PASSWORD)
        status, _ = client.json("POST", "/api/v1/recovery-mails", {"person_id": 1})
        self.assertEqual(status, 403)
        status, _ = client.json("GET", "/api/v1/outbox")
        self.assertEqual(status, 403)


class ReloadTest(MailTestCase):
    def test_sighup_restarts_sender_with_new_config(self):
        with open(self.server.config_path, "a", encoding="utf-8") as f:
            f.write("mail_from_name = Poney Club des Lilas\n")
        self.server.signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "mail sender started" not in self.server.stderr().split("SIGHUP", 1)[-1]:
            self.assertLess(time.time(), deadline, self.server.stderr())
            time.sleep(0.05)
        rid = self.rider(first_name="Inès", email="ines@exemple.test")
        self.send({"person_id": rid})
        message = self.sink.wait(1)[0]
        self.assertEqual(message["from_name"], "Poney Club des Lilas")
        self.assertEqual(self.server.stop(), 0)
        self.assertIn("mail sender stopped", self.server.stderr())


class ImportRunMailTest(MailTestCase):
    def test_mails_to_the_clients_of_an_import(self):
        with open(os.path.join(SHARED_DIR, "samples", "ffe-2025.csv"), "rb") as f:
            data = f.read()
        status, _, body = self.manager.call("POST", "/api/v1/imports?filename=ffe-2025.csv",
                                            raw_body=data, headers={"Content-Type": "text/csv"})
        self.assertEqual(status, 202, body)
        run_id = json.loads(body)["run"]["id"]
        deadline = time.time() + 120
        while time.time() < deadline:
            status, run = self.manager.json("GET", "/api/v1/imports/%d" % run_id)
            if run["state"] in ("done", "failed"):
                break
            time.sleep(0.1)
        self.assertEqual(run["state"], "done", run)

        result = self.send({"import_run_id": run_id})
        addresses = db_query(self.server,
                             "SELECT count(DISTINCT p.email) FROM person p WHERE p.email IS NOT NULL"
                             " AND p.id IN (SELECT person_id FROM audit_log WHERE import_run_id = ?)",
                             run_id)[0][0]
        without = db_query(self.server,
                           "SELECT count(*) FROM person p WHERE p.email IS NULL"
                           " AND p.id IN (SELECT person_id FROM audit_log WHERE import_run_id = ?)",
                           run_id)[0][0]
        self.assertGreater(addresses, 100)
        self.assertEqual(result["addresses"], addresses)
        self.assertEqual(result["queued"], addresses)
        self.assertEqual(len(result["without_email"]), without)
        messages = self.sink.wait(addresses, timeout=120)
        recipients = [m["rcpt_tos"][0] for m in messages]
        self.assertEqual(len(recipients), len(set(recipients)), "two mails to one inbox")
        self.assertEqual(db_query(self.server, "SELECT count(*) FROM outbox WHERE import_run_id = ?",
                                  run_id)[0][0], addresses)

        # Pressing the button again does not send the same mails twice.
        again = self.send({"import_run_id": run_id})
        self.assertEqual((again["queued"], again["already_sent"]), (0, addresses))

        status, outbox = self.manager.json("GET", "/api/v1/outbox?state=sent&limit=5")
        self.assertEqual(status, 200)
        self.assertEqual(outbox["counts"]["sent"], addresses)
        self.assertEqual(len(outbox["items"]), 5)
        self.assertEqual(outbox["items"][0]["kind"], "recuperation")


class ForgotPasswordTest(MailTestCase):
    def test_same_answer_and_rate_limits(self):
        self.rider(first_name="Nina", email="nina@exemple.test", birth_date="1995-09-09")
        known = self.server.request("POST", "/api/v1/password/forgot", {"email": "Nina@Exemple.test"})
        unknown = self.server.request("POST", "/api/v1/password/forgot",
                                      {"email": "personne@exemple.test"})
        self.assertEqual(known[0], 202)
        self.assertEqual(unknown[0], 202)
        self.assertEqual(known[2], unknown[2])
        self.assertIn("Si cette adresse est connue", json.loads(known[2])["message"])
        message = self.sink.wait(1)[0]
        time.sleep(0.3)
        self.assertEqual(len(self.sink.messages()), 1)
        self.assertEqual(message["rcpt_tos"], ["nina@exemple.test"])
        token = link_of(message)[1]
        self.assertEqual(db_query(self.server, "SELECT kind FROM password_token"), [("reset",)])
        status, body = Session(self.server).json("GET", "/api/v1/password/reset/" + token)
        self.assertEqual(body["kind"], "reset")

        # Per address: the fourth request within the hour is refused, known or not.
        for address in ("nina@exemple.test", "personne@exemple.test"):
            statuses = [self.server.request("POST", "/api/v1/password/forgot",
                                            {"email": address})[0] for _ in range(3)]
            self.assertEqual(statuses[-1], 429, address)
        # Per IP address: ten requests an hour.
        statuses = [self.server.request("POST", "/api/v1/password/forgot",
                                        {"email": "x%d@exemple.test" % i})[0] for i in range(8)]
        self.assertIn(429, statuses)
        self.assertEqual(self.server.request("POST", "/api/v1/password/forgot", {"email": "pas une adresse"})[0], 422)


class OutboxTest(MailTestCase):
    sink_args = ("--reject", "refus@exemple.test")

    def test_failed_mail_listed_and_retried(self):
        rid = self.rider(first_name="Rémi", email="refus@exemple.test", birth_date="1970-01-01")
        self.send({"person_id": rid})
        deadline = time.time() + 20
        while time.time() < deadline:
            status, outbox = self.manager.json("GET", "/api/v1/outbox?state=failed")
            if outbox["items"]:
                break
            time.sleep(0.1)
        self.assertEqual(status, 200)
        self.assertEqual(outbox["counts"]["failed"], 1)
        item = outbox["items"][0]
        self.assertIn("550", item["last_error"])
        self.assertEqual(item["recipient"], "refus@exemple.test")
        status, body = self.manager.json("GET", "/api/v1/outbox?state=bizarre")
        self.assertEqual(status, 422)

        status, body = self.manager.json("POST", "/api/v1/outbox/%d/retry" % item["id"])
        self.assertEqual(status, 200, body)
        self.assertEqual(body["state"], "queued")
        status, body = self.manager.json("POST", "/api/v1/outbox/%d/retry" % item["id"])
        self.assertIn(status, (200, 409))
        status, body = self.manager.json("POST", "/api/v1/outbox/999/retry")
        self.assertEqual(status, 404)
        self.assertEqual(body["error"]["code"], "not_found")


class SmtpOutageTest(unittest.TestCase):
    def test_mails_wait_for_the_smtp_server_then_go(self):
        port = free_port()
        sink = SmtpSink(port)
        server = mail_server(sink.url).start()
        try:
            server.add_user("staff@test.invalid", "gerant", PASSWORD, "Staff")
            manager = Session(server)
            manager.login("staff@test.invalid", PASSWORD)
            ids = []
            for i in range(3):
                status, body = manager.json("POST", "/api/v1/riders", {
                    "last_name": "Panne%d" % i, "email": "panne%d@exemple.test" % i})
                ids.append(body["id"])
            status, result = manager.json("POST", "/api/v1/recovery-mails", {"person_ids": ids})
            self.assertEqual(result["queued"], 3)
            deadline = time.time() + 20
            while time.time() < deadline:
                rows = db_query(server, "SELECT state, last_error FROM outbox")
                if all(r[1] for r in rows):
                    break
                time.sleep(0.1)
            self.assertTrue(all(r[0] == "queued" and r[1] for r in rows), rows)
            status, outbox = manager.json("GET", "/api/v1/outbox?state=queued")
            self.assertEqual(outbox["counts"]["queued"], 3)

            # The server comes back; the retry time is moved to now instead
            # of waiting for the backoff (a minute).
            sink.start()
            db_query(server, "UPDATE outbox SET next_attempt_at = '2000-01-01T00:00:00Z'")
            messages = sink.wait(3, timeout=30)
            self.assertEqual(sorted(m["rcpt_tos"][0] for m in messages),
                             ["panne0@exemple.test", "panne1@exemple.test", "panne2@exemple.test"])
        finally:
            server.cleanup()
            sink.cleanup()


class KillDuringBatchTest(unittest.TestCase):
    def test_no_mail_lost_after_sigkill(self):
        sink = SmtpSink(None, "--delay", "0.15").start()
        server = mail_server(sink.url).start()
        try:
            server.add_user("staff@test.invalid", "gerant", PASSWORD, "Staff")
            manager = Session(server)
            manager.login("staff@test.invalid", PASSWORD)
            ids = []
            for i in range(30):
                status, body = manager.json("POST", "/api/v1/riders", {
                    "last_name": "Lot%02d" % i, "email": "lot%02d@exemple.test" % i})
                self.assertEqual(status, 201, body)
                ids.append(body["id"])
            status, result = manager.json("POST", "/api/v1/recovery-mails", {"person_ids": ids})
            self.assertEqual(result["queued"], 30)
            sink.wait(5, timeout=30)
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(10)
            delivered_before = len(sink.messages())
            self.assertLess(delivered_before, 30, "the batch finished before the kill")
            states = dict(db_query(server, "SELECT state, count(*) FROM outbox GROUP BY state"))
            self.assertGreater(states.get("queued", 0) + states.get("sending", 0), 0)

            server.start()
            deadline = time.time() + 60
            expected = set("lot%02d@exemple.test" % i for i in range(30))
            while time.time() < deadline:
                got = set(m["rcpt_tos"][0] for m in sink.messages())
                if got >= expected:
                    break
                time.sleep(0.1)
            self.assertEqual(got, expected)
            self.assertEqual(db_query(server, "SELECT count(*) FROM outbox WHERE state <> 'sent'"),
                             [(0,)])
        finally:
            server.cleanup()
            sink.cleanup()


if __name__ == "__main__":
    unittest.main()
