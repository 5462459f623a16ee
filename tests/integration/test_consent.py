"""Consent to the club's terms end to end, against the real server, a real
SQLite file and a real SMTP server on loopback: the mail and its personal
link, accepting (and the proof row), refusing, withdrawing, a new version
that puts acceptances back to "a_renouveler", paper consents recorded by
staff, the CSV export, reminders, the rider's own page, and the mails sent
automatically after an import when consent.lua says so.
"""

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import unittest
from urllib.parse import quote

from licol_harness import LicolServer, Session, SOURCE_DIR, SHARED_DIR
from test_mail_recovery import SmtpSink, mail_server, db_query, PASSWORD
import re

LINK_RE = re.compile(r"(https?://[^\s\"<>]+/conditions\.html#jeton=([A-Za-z0-9_-]{43}))")
CGU = "Article 1. Le cavalier respecte les chevaux.\nArticle 2. Le casque est obligatoire."
PRIVACY = "Le club garde vos coordonnées pour gérer vos licences et vos reprises."


def consent_link(message):
    match = LINK_RE.search(message["text"])
    if not match:
        raise AssertionError("no consent link in: " + message["text"])
    return match.group(2)


class ConsentTestCase(unittest.TestCase):
    scripts_dir = None

    def setUp(self):
        self.sink = SmtpSink().start()
        self.server = mail_server(self.sink.url)
        if self.scripts_dir:
            self.server = LicolServer(dict(smtp_url=self.sink.url, mail_from="contact@club.test",
                                           club_name="Écurie du Moulin", mail_rate_per_second="0"),
                                      scripts_dir=self.scripts_dir)
        self.server.start()
        self.staff_id = self.server.add_user("staff@test.invalid", "employe", PASSWORD, "Staff", "Sam")
        self.manager = Session(self.server)
        self.manager.login("staff@test.invalid", PASSWORD)
        self.publish("cgu", "Conditions générales d'utilisation", CGU)
        self.publish("confidentialite", "Politique de confidentialité", PRIVACY)
        self.publish("newsletter", "Nouvelles du club par mail", "Un mail par mois, au plus.")

    def tearDown(self):
        self.server.cleanup()
        self.sink.cleanup()

    def publish(self, key, title, text):
        status, body = self.manager.json("POST", "/api/v1/consents/documents/%s/versions" % key,
                                         {"title": title, "text": text})
        self.assertEqual(status, 201, body)
        return body

    def rider(self, **fields):
        fields.setdefault("last_name", "Martin")
        status, body = self.manager.json("POST", "/api/v1/riders", fields)
        self.assertEqual(status, 201, body)
        return body["id"]

    def status_of(self, person_id):
        status, body = self.manager.json("GET", "/api/v1/consents/persons/%d" % person_id)
        self.assertEqual(status, 200, body)
        return body["status"]

    def request(self, body):
        status, result = self.manager.json("POST", "/api/v1/consents/requests", body)
        self.assertEqual(status, 200, result)
        return result

    def answer(self, token, decisions, versions=None, person_ids=None, agent="Navigateur de test/1.0",
               expect=200):
        page = Session(self.server)
        status, body = page.json("GET", "/api/v1/consents/link/" + token)
        self.assertEqual(status, 200, body)
        payload = {"token": token, "decisions": decisions,
                   "version_ids": versions or {d["key"]: d["version_id"] for d in body["documents"]}}
        if person_ids is not None:
            payload["person_ids"] = person_ids
        status, _, data = self.server.request("POST", "/api/v1/consents/link", payload,
                                              {"User-Agent": agent})
        self.assertEqual(status, expect, data)
        return json.loads(data)


class ConsentListTest(ConsentTestCase):
    def test_list_pages_cover_every_client(self):
        ids = {self.rider(last_name="Client%03d" % i) for i in range(130)}
        status, first = self.manager.json("GET", "/api/v1/consents?limit=100")
        self.assertEqual(status, 200, first)
        self.assertEqual(first["total"], 130)
        self.assertEqual(len(first["items"]), 100)
        status, second = self.manager.json("GET", "/api/v1/consents?limit=100&offset=100")
        self.assertEqual(status, 200, second)
        self.assertEqual(second["total"], 130)
        self.assertEqual(len(second["items"]), 30)
        self.assertEqual({i["id"] for i in first["items"] + second["items"]}, ids)

        # The total follows the search, not only the status counts.
        status, found = self.manager.json("GET", "/api/v1/consents?q=client01&limit=5")
        self.assertEqual(found["total"], 10)
        self.assertEqual(len(found["items"]), 5)
        self.assertEqual(found["counts"]["tous"], 130)

        # Accents and case are ignored, as in the rider list.
        emile = self.rider(last_name="Émile")
        for q in ("émile", "Émile", "emile", "EMILE"):
            status, found = self.manager.json("GET", "/api/v1/consents?q=" + quote(q))
            self.assertEqual([i["id"] for i in found["items"]], [emile], q)


class ConsentLinkTest(ConsentTestCase):
    def test_mail_link_accept_and_proof(self):
        parent = self.rider(first_name="Claire", last_name="Dubois", email="dubois@exemple.test",
                            birth_date="1980-05-05")
        child = self.rider(first_name="Léa", last_name="Dubois", email="dubois@exemple.test",
                           birth_date="2014-03-03")
        alone = self.rider(first_name="Marc", last_name="Petit", email="marc@exemple.test")
        nobody = self.rider(first_name="Jeanne", last_name="Sansmail")
        self.assertEqual(self.status_of(parent), "en_attente")

        result = self.request({"person_ids": [child, parent, alone, nobody]})
        self.assertEqual(result["queued"], 2)
        self.assertEqual([w["id"] for w in result["without_email"]], [nobody])
        messages = self.sink.wait(2)
        by_rcpt = {m["rcpt_tos"][0]: m for m in messages}
        self.assertEqual(set(by_rcpt), {"dubois@exemple.test", "marc@exemple.test"})
        family_mail = by_rcpt["dubois@exemple.test"]
        self.assertEqual(family_mail["headers"]["Subject"],
                         "Écurie du Moulin : merci d'accepter nos conditions")
        self.assertIn("Bonjour Claire Dubois", family_mail["text"])
        self.assertIn("Léa Dubois", family_mail["text"])
        self.assertIn("/conditions.html#jeton=", family_mail["html"])
        token = consent_link(family_mail)

        status, _, page = self.server.request("GET", "/conditions.html")
        self.assertEqual(status, 200)
        self.assertIn(b"Je refuse", page)
        status, body = Session(self.server).json("GET", "/api/v1/consents/link/" + token)
        self.assertEqual(status, 200)
        self.assertEqual([p["id"] for p in body["people"]], [parent, child])
        self.assertEqual([d["key"] for d in body["documents"]],
                         ["cgu", "confidentialite", "newsletter"])
        cgu = body["documents"][0]
        self.assertEqual(cgu["hash"], hashlib.sha256(CGU.encode()).hexdigest())
        self.assertEqual(cgu["text"], CGU)

        result = self.answer(token, {"cgu": "accepted", "confidentialite": "accepted",
                                     "newsletter": "refused"})
        self.assertEqual(result["recorded"], 6)
        self.assertEqual(result["statuses"], {str(parent): "accepte", str(child): "accepte"})
        rows = db_query(self.server,
                        "SELECT p.person_id, d.key, p.version_hash, p.decision, p.channel, p.ip,"
                        " p.user_agent, p.recorded_by, p.acted_by, p.at FROM consent_proof p"
                        " JOIN consent_document d ON d.id = p.document_id"
                        " WHERE d.key = 'cgu' ORDER BY p.person_id")
        self.assertEqual(len(rows), 2)
        for row, person in zip(rows, (parent, child)):
            self.assertEqual(row[0], person)
            self.assertEqual(row[2], hashlib.sha256(CGU.encode()).hexdigest())
            self.assertEqual(row[3:8], ("accepted", "mail_link", "127.0.0.1",
                                        "Navigateur de test/1.0", None))
            self.assertRegex(row[9], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual((rows[0][8], rows[1][8]), (None, parent))

        # Staff see the statuses; the unanswered person stays "en_attente".
        status, listing = self.manager.json("GET", "/api/v1/consents?status=accepte")
        self.assertEqual(sorted(i["id"] for i in listing["items"]), sorted([parent, child]))
        status, listing = self.manager.json("GET", "/api/v1/consents")
        self.assertEqual(listing["counts"]["accepte"], 2)
        self.assertEqual(listing["counts"]["en_attente"], 2)
        status, listing = self.manager.json("GET", "/api/v1/consents?q=petit")
        self.assertEqual([i["id"] for i in listing["items"]], [alone])
        status, _ = self.manager.json("GET", "/api/v1/consents?status=bidon")
        self.assertEqual(status, 422)

        # The rider list shows the status (core/api_riders.c joins the view).
        status, riders = self.manager.json("GET", "/api/v1/riders?per_page=200")
        self.assertEqual(status, 200, riders)
        shown = {r["id"]: r["consent_status"] for r in riders["items"]}
        self.assertEqual((shown[parent], shown[child], shown[alone]),
                         ("accepte", "accepte", "en_attente"))

        # Asking again skips those who accepted.
        result = self.request({"person_ids": [parent, child]})
        self.assertEqual((result["queued"], result["up_to_date"]), (0, 2))

    def test_refuse_withdraw_and_new_version(self):
        marc = self.rider(first_name="Marc", last_name="Petit", email="marc@exemple.test")
        self.request({"person_id": marc})
        token = consent_link(self.sink.wait(1)[0])

        self.answer(token, {"cgu": "refused", "confidentialite": "refused"})
        self.assertEqual(self.status_of(marc), "refuse")
        self.answer(token, {"cgu": "accepted", "confidentialite": "accepted"})
        self.assertEqual(self.status_of(marc), "accepte")
        self.answer(token, {"cgu": "withdrawn"})
        self.assertEqual(self.status_of(marc), "refuse")
        self.answer(token, {"cgu": "accepted"})
        self.assertEqual(self.status_of(marc), "accepte")
        record = self.manager.json("GET", "/api/v1/consents/persons/%d" % marc)[1]
        decisions = [p["decision"] for p in record["proofs"] if p["document"] == "cgu"]
        self.assertEqual(decisions, ["accepted", "withdrawn", "accepted", "refused"])

        # A new version of the terms: back to "a_renouveler".
        old = {d["key"]: d["current"]["version_id"]
               for d in self.manager.json("GET", "/api/v1/consents/documents")[1]["documents"]
               if d["current"]}
        self.publish("cgu", "Conditions générales d'utilisation", CGU + "\nArticle 3. Nouveau.")
        self.assertEqual(self.status_of(marc), "a_renouveler")
        status, listing = self.manager.json("GET", "/api/v1/consents?status=a_renouveler")
        self.assertEqual([i["id"] for i in listing["items"]], [marc])
        # An answer to the text shown before the change is refused.
        self.answer(token, {"cgu": "accepted"}, versions=old, expect=409)
        self.answer(token, {"cgu": "accepted"})
        self.assertEqual(self.status_of(marc), "accepte")
        versions = db_query(self.server, "SELECT v.version FROM consent_proof p JOIN consent_version v"
                            " ON v.id = p.version_id JOIN consent_document d ON d.id = p.document_id"
                            " WHERE d.key = 'cgu' ORDER BY p.id")
        self.assertEqual([v[0] for v in versions], [1, 1, 1, 1, 2])

    def test_invalid_links(self):
        for bad in ("x" * 43, "court"):
            status, _ = Session(self.server).json("GET", "/api/v1/consents/link/" + bad)
            self.assertEqual(status, 404)
        status, _, _ = self.server.request("POST", "/api/v1/consents/link",
                                           {"token": "x" * 43, "decisions": {"cgu": "accepted"}})
        self.assertEqual(status, 404)


class ConsentStaffTest(ConsentTestCase):
    def test_paper_consent_and_csv_export(self):
        person = self.rider(first_name="=HYPERLINK(\"http://x\")", last_name="Dupont")
        status, body = self.manager.json("POST", "/api/v1/consents/paper", {
            "person_id": person, "decisions": {"cgu": "accepted", "confidentialite": "accepted"}})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["statuses"][str(person)], "accepte")
        row = db_query(self.server, "SELECT channel, ip, user_agent, recorded_by FROM consent_proof"
                       " WHERE person_id = ? ORDER BY id LIMIT 1", person)[0]
        self.assertEqual(row, ("paper", None, None, self.staff_id))
        status, body = self.manager.json("POST", "/api/v1/consents/paper", {
            "person_id": 99999, "decisions": {"cgu": "accepted"}})
        self.assertEqual(status, 422)

        status, headers, data = self.manager.call("GET", "/api/v1/consents/export.csv")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/csv"))
        self.assertIn("attachment", headers["content-disposition"])
        text = data.decode("utf-8")
        self.assertTrue(text.startswith("\ufeff"))
        rows = list(csv.reader(io.StringIO(text[1:]), delimiter=";"))
        self.assertEqual(rows[0][:3], ["preuve", "date (UTC)", "personne"])
        self.assertEqual(len(rows), 3)
        first = rows[1]
        self.assertEqual(first[3], "Dupont")
        self.assertEqual(first[4], "'=HYPERLINK(\"http://x\")")
        self.assertEqual(first[8], hashlib.sha256(CGU.encode()).hexdigest())
        self.assertEqual(first[9], "accepté")
        self.assertEqual(first[10], "papier (saisi par l'équipe)")
        self.assertEqual(first[13], "Sam Staff")
        for line in rows[1:]:
            for cell in line:
                self.assertFalse(cell[:1] in ("=", "+", "-", "@"), cell)
        status, _, data = self.manager.call("GET", "/api/v1/consents/export.csv?document=newsletter")
        self.assertEqual(len(list(csv.reader(io.StringIO(data.decode()[1:]), delimiter=";"))), 1)

    def test_reminders_follow_the_schedule(self):
        marc = self.rider(first_name="Marc", last_name="Petit", email="marc@exemple.test")
        self.request({"person_id": marc})
        self.sink.wait(1)

        def run():
            status, body = self.manager.json("POST", "/api/v1/consents/reminders/run")
            self.assertEqual(status, 200, body)
            return body["queued"]

        def age(days):
            db_query(self.server, "UPDATE consent_request SET first_sent_at ="
                     " strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?)", "-%d days" % days)

        self.assertEqual(run(), 0)
        age(8)
        self.assertEqual(run(), 1)
        self.assertEqual(run(), 0)
        age(22)
        self.assertEqual(run(), 1)
        age(60)
        self.assertEqual(run(), 0)  # at most two reminders (consent.lua: 7 and 21 days)
        messages = self.sink.wait(3)
        self.assertEqual([m["rcpt_tos"][0] for m in messages], ["marc@exemple.test"] * 3)
        self.assertEqual(db_query(self.server, "SELECT reminders, closed_at FROM consent_request"),
                         [(2, None)])
        # Once answered, the request is closed.
        self.answer(consent_link(messages[-1]), {"cgu": "accepted", "confidentialite": "accepted"})
        run()
        self.assertIsNotNone(db_query(self.server, "SELECT closed_at FROM consent_request")[0][0])

    def test_permissions_and_own_page(self):
        self.server.add_user("client@test.invalid", "client", PASSWORD, "Client", "Chloé")
        client = Session(self.server)
        client.login("client@test.invalid", PASSWORD)
        for method, path in (("GET", "/api/v1/consents"), ("GET", "/api/v1/consents/export.csv"),
                             ("POST", "/api/v1/consents/documents/cgu/versions"),
                             ("POST", "/api/v1/consents/paper")):
            status, _ = client.json(method, path, {} if method == "POST" else None)
            self.assertEqual(status, 403, path)
        status, body = client.json("GET", "/api/v1/consents/me")
        self.assertEqual(status, 200, body)
        me = body["people"][0]
        self.assertEqual(me["status"], "en_attente")
        status, body = client.json("POST", "/api/v1/consents/me", {
            "decisions": {"cgu": "accepted", "confidentialite": "accepted", "newsletter": "accepted"}})
        self.assertEqual(status, 200, body)
        self.assertEqual(list(body["statuses"].values()), ["accepte"])
        status, body = client.json("POST", "/api/v1/consents/me", {"decisions": {"newsletter": "withdrawn"}})
        self.assertEqual(status, 200)
        channels = db_query(self.server, "SELECT DISTINCT channel FROM consent_proof")
        self.assertEqual(channels, [("login",)])
        status, body = client.json("POST", "/api/v1/consents/me", {
            "person_id": self.staff_id, "decisions": {"cgu": "accepted"}})
        self.assertEqual(status, 403)


def automatic_scripts():
    tmp = tempfile.mkdtemp(prefix="licol-consent-scripts-")
    target = os.path.join(tmp, "scripts")
    shutil.copytree(os.path.join(SOURCE_DIR, "scripts"), target)
    path = os.path.join(target, "consent.lua")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace('return "bouton"', 'return "automatique"'))
    return target


class ConsentAfterImportTest(ConsentTestCase):
    def setUp(self):
        self.scripts_dir = automatic_scripts()
        super().setUp()

    def tearDown(self):
        super().tearDown()
        shutil.rmtree(os.path.dirname(self.scripts_dir), ignore_errors=True)

    def test_mails_go_after_the_import(self):
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
        self.assertEqual(run["state"], "done")
        addresses = db_query(self.server,
                             "SELECT count(DISTINCT email) FROM person WHERE email IS NOT NULL"
                             " AND id IN (SELECT person_id FROM audit_log WHERE import_run_id = ?)",
                             run_id)[0][0]
        self.assertGreater(addresses, 100)
        messages = self.sink.wait(addresses, timeout=120)
        self.assertTrue(all(m["headers"]["Subject"].endswith("merci d'accepter nos conditions")
                            for m in messages))
        recipients = [m["rcpt_tos"][0] for m in messages]
        self.assertEqual(len(recipients), len(set(recipients)))
        self.assertEqual(db_query(self.server, "SELECT count(*) FROM consent_request"
                                  " WHERE import_run_id = ?", run_id)[0][0], addresses)


if __name__ == "__main__":
    unittest.main()
