"""Online registration end to end: the real licol server, a real SQLite
file, and a real SMTP server on loopback (tests/tools/smtp_sink.py) that
receives the verification mails whose links the tests follow.

Covers: the form description; an adult's registration, confirmation and
validation; per-field messages; a minor without and with a legal
guardian; the hidden honeypot field; the per-IP rate limit; duplicates of
riders imported from the federation file (with and without an address on
file); single use and expiry of the link; staff refusal; the order of
decisions; permissions; and, once the consent module is linked in, the
terms and optional consents recorded as proofs.
"""

import json
import os
import re
import sqlite3
import subprocess
import time
import unittest

from licol_harness import LicolServer, Session, SHARED_DIR, SOURCE_DIR, LICOL_BIN
from test_mail_recovery import SmtpSink, mail_server

PASSWORD = "un-mot-de-passe-solide"
FFE_2025 = os.path.join(SHARED_DIR, "samples", "ffe-2025.csv")
CONFIRM_RE = re.compile(r"(https?://[^\s\"<>]+/inscription\.html#confirmer=([A-Za-z0-9_-]{43}))")
INVITATION_RE = re.compile(r"https?://[^\s\"<>]+#jeton=([A-Za-z0-9_-]{43})")
USER_AGENT = "Mozilla/5.0 (test d'inscription)"

# Riders of ffe-2025.csv: one with an e-mail address, one without.
IMPORTED_WITH_EMAIL = {"licence": "6327815G", "last_name": "Schmitt", "first_name": "Clara",
                       "birth_date": "2002-02-22", "email": "celine.schmitt@icloud.com"}
IMPORTED_WITHOUT_EMAIL = {"last_name": "De Villiers", "first_name": "Cécile",
                          "birth_date": "1969-08-13"}


def adult(**overrides):
    fields = {"last_name": "Moreau", "first_name": "Julie", "sex": "F",
              "birth_date": "1990-05-17", "email": "julie.moreau@example.test",
              "mobile": "06 11 22 33 44", "address": "3 chemin des Prés", "postcode": "44000",
              "city": "Nantes"}
    fields.update(overrides)
    return fields


def child(**overrides):
    fields = adult(last_name="Petit", first_name="Hugo", sex="M", birth_date="2016-09-01",
                   email="famille.petit@example.test", mobile="")
    fields.update(overrides)
    return fields


GUARDIAN = {"last_name": "Petit", "first_name": "Nadia", "email": "famille.petit@example.test",
            "phone": "06 98 76 54 32"}


class RegistrationCase(unittest.TestCase):
    """A server with an SMTP sink, a manager and an employee."""

    import_ffe = False

    def setUp(self):
        self.sink = SmtpSink().start()
        self.server = mail_server(self.sink.url)
        if self.import_ffe:
            result = subprocess.run([LICOL_BIN, "import", "--db", self.server.db, FFE_2025],
                                    capture_output=True, env=dict(os.environ, LICOL_HOME=SOURCE_DIR),
                                    timeout=600)
            self.assertEqual(result.returncode, 0, result.stderr.decode())
        self.server.start()
        self.manager_id = self.server.add_user("staff@test.invalid", "gerant", PASSWORD, "Staff",
                                               "Sam")
        self.manager = Session(self.server)
        self.manager.login("staff@test.invalid", PASSWORD)

    def tearDown(self):
        self.server.cleanup()
        self.sink.cleanup()

    def query(self, sql, *params):
        db = sqlite3.connect(self.server.db)
        try:
            rows = db.execute(sql, params).fetchall()
            db.commit()
            return rows
        finally:
            db.close()

    def scalar(self, sql, *params):
        return self.query(sql, *params)[0][0]

    def submit(self, fields, guardian=None, consents=None, **extra):
        body = {"fields": fields, "guardian": guardian, "consents": consents or {}}
        body.update(extra)
        status, _, data = self.server.request("POST", "/api/v1/inscription", body,
                                              {"User-Agent": USER_AGENT})
        return status, json.loads(data) if data else None

    def confirm(self, token):
        status, _, data = self.server.request("POST", "/api/v1/inscription/confirmation",
                                              {"token": token})
        return status, json.loads(data) if data else None

    def verification_mails(self, count, timeout=30):
        """Waits for count verification mails and returns them in order."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            mails = [m for m in self.sink.messages() if CONFIRM_RE.search(m["text"] or "")]
            if len(mails) >= count:
                return mails
            time.sleep(0.05)
        self.fail("expected %d verification mails, got %d" % (count, len(mails)))

    def link(self, count):
        """The count-th verification mail received (1-based) and its token."""
        message = self.verification_mails(count)[count - 1]
        return message, CONFIRM_RE.search(message["text"]).group(2)

    def invitations(self, address, count=1, timeout=30):
        """Waits for count invitation mails to address and returns their tokens."""
        deadline = time.time() + timeout
        tokens = []
        while time.time() < deadline:
            tokens = [INVITATION_RE.search(m["text"]).group(1) for m in self.sink.messages()
                      if m["rcpt_tos"] == [address] and INVITATION_RE.search(m["text"] or "")]
            if len(tokens) >= count:
                return tokens
            time.sleep(0.05)
        self.fail("expected %d invitation mails to %s, got %d" % (count, address, len(tokens)))

    def registration(self, rid):
        status, body = self.manager.json("GET", "/api/v1/inscriptions/%d" % rid)
        self.assertEqual(status, 200, body)
        return body

    def last_registration_id(self):
        return self.scalar("SELECT max(id) FROM registration")

    def roles(self, person_id):
        return sorted(r for (r,) in self.query("SELECT role FROM person_role WHERE person_id = ?",
                                                person_id))


class FormTest(RegistrationCase):
    def test_form_lists_public_fields(self):
        status, _, data = self.server.request("GET", "/api/v1/inscription/formulaire")
        self.assertEqual(status, 200)
        form = json.loads(data)
        keys = [f["key"] for f in form["fields"]]
        for key in ("last_name", "first_name", "sex", "birth_date", "email", "mobile",
                    "licence_number", "taille_cm", "poids_kg"):
            self.assertIn(key, keys)
        self.assertNotIn("galop", keys)  # not offered to the public
        self.assertIn("mobile", form["required_adult"])
        self.assertNotIn("mobile", form["required_minor"])
        self.assertEqual(form["majority_age"], 18)
        self.assertEqual(form["honeypot"], "site_web")


class AdultTest(RegistrationCase):
    def test_adult_registration_confirmed_then_validated(self):
        status, body = self.submit(adult())
        self.assertEqual(status, 202, body)
        self.assertIn("e-mail de confirmation", body["message"])
        rid = self.last_registration_id()
        self.assertEqual(self.scalar("SELECT status FROM registration WHERE id = ?", rid),
                         "email_pending")
        # Nothing is created before the address is confirmed.
        self.assertEqual(self.scalar("SELECT count(*) FROM person WHERE last_name = 'Moreau'"), 0)

        message, token = self.link(1)
        self.assertEqual(message["rcpt_tos"], ["julie.moreau@example.test"])
        self.assertIn("confirmez votre inscription", message["headers"]["Subject"])
        self.assertIn("Julie Moreau", message["text"])
        self.assertIsNone(re.search(token, self.scalar("SELECT hex(token_hash) FROM registration")))

        status, body = self.confirm(token)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["status"], "to_validate")
        self.assertIn("choisir votre mot de passe", body["message"])
        reg = self.registration(rid)
        self.assertEqual(reg["status"], "to_validate")
        person = reg["person_id"]
        self.assertIsNotNone(person)
        self.assertEqual(self.roles(person), ["visiteur"])
        row = self.query("SELECT last_name, email, mobile, postcode FROM person WHERE id = ?",
                         person)[0]
        self.assertEqual(row, ("Moreau", "julie.moreau@example.test", "+33611223344", "44000"))
        self.assertEqual(reg["data"]["mobile"], "+33611223344")
        self.assertEqual(reg["user_agent"], USER_AGENT)
        self.assertEqual(reg["ip"], "127.0.0.1")

        # The account is open: the invitation lets the applicant choose a
        # password and log in as a visitor who sees their own record.
        [invitation] = self.invitations("julie.moreau@example.test")
        status, _, data = self.server.request("POST", "/api/v1/password/reset",
                                              {"token": invitation, "password": PASSWORD})
        self.assertEqual(status, 200, data)
        rider = Session(self.server)
        rider.login("julie.moreau@example.test", PASSWORD)
        status, _ = rider.json("GET", "/api/v1/riders/%d" % person)
        self.assertEqual(status, 200)
        status, _ = rider.json("GET", "/api/v1/inscriptions")
        self.assertEqual(status, 403)

        status, listing = self.manager.json("GET", "/api/v1/inscriptions?status=to_validate")
        self.assertEqual(status, 200)
        self.assertEqual([item["id"] for item in listing["items"]], [rid])
        self.assertEqual(listing["counts"]["to_validate"], 1)

        status, body = self.manager.json("POST", "/api/v1/inscriptions/%d/validation" % rid, {})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["status"], "validated")
        self.assertEqual(body["person_id"], person)
        self.assertEqual(self.roles(person), ["client"])
        self.assertIsNotNone(body["decided_at"])
        actions = [a for (a,) in self.query("SELECT action FROM audit_log WHERE person_id = ?"
                                            " ORDER BY id", person)]
        self.assertIn("role.add", actions)
        self.assertIn("role.remove", actions)

        # A decision is final.
        status, body = self.manager.json("POST", "/api/v1/inscriptions/%d/refus" % rid, {})
        self.assertEqual(status, 409)

    def test_field_messages_in_french(self):
        status, body = self.submit(adult(email="pas-une-adresse", birth_date="2090-01-01",
                                         licence_number="en cours", last_name="",
                                         inconnu="x"))
        self.assertEqual(status, 422, body)
        fields = body["error"]["fields"]
        self.assertIn("e-mail", fields["email"].lower())
        self.assertIn("futur", fields["birth_date"])
        self.assertIn("sept chiffres", fields["licence_number"])
        self.assertIn("obligatoire", fields["last_name"])
        self.assertEqual(fields["inconnu"], "Champ inconnu.")
        self.assertEqual(self.scalar("SELECT count(*) FROM registration"), 0)

    def test_adult_needs_a_mobile_from_the_script(self):
        status, body = self.submit(adult(mobile=""))
        self.assertEqual(status, 422, body)
        self.assertIn("mobile", body["error"]["fields"])

    def test_plugin_field_validated(self):
        status, body = self.submit(adult(taille_cm="20"))
        self.assertEqual(status, 422, body)
        self.assertIn("taille_cm", body["error"]["fields"])
        status, body = self.submit(adult(taille_cm="165"))
        self.assertEqual(status, 202, body)
        _, token = self.link(1)
        self.confirm(token)
        person = self.registration(self.last_registration_id())["person_id"]
        self.assertEqual(self.scalar("SELECT value FROM person_field WHERE person_id = ?"
                                     " AND key = 'taille_cm'", person), "165")

    def test_link_single_use_expiry_and_garbage(self):
        self.submit(adult())
        _, token = self.link(1)
        status, _ = self.confirm(token)
        self.assertEqual(status, 200)
        status, body = self.confirm(token)
        self.assertEqual(status, 404)
        self.assertIn("n'est plus valable", body["error"]["message"])
        for bad in ("", "x" * 43, "abc", None):
            status, _ = self.confirm(bad)
            self.assertEqual(status, 404, bad)

        self.submit(adult(email="autre@example.test", first_name="Paul"))
        _, token = self.link(2)
        self.query("UPDATE registration SET token_expires_at = '2000-01-01T00:00:00Z'"
                   " WHERE status = 'email_pending'")
        status, _ = self.confirm(token)
        self.assertEqual(status, 404)

    def test_refusal_removes_the_person_created(self):
        self.submit(adult())
        _, token = self.link(1)
        self.confirm(token)
        rid = self.last_registration_id()
        person = self.registration(rid)["person_id"]
        status, body = self.manager.json("POST", "/api/v1/inscriptions/%d/refus" % rid,
                                         {"reason": "Dossier incomplet"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["status"], "refused")
        self.assertEqual(body["refusal_reason"], "Dossier incomplet")
        self.assertEqual(self.scalar("SELECT count(*) FROM person WHERE id = ?", person), 0)
        status, _ = self.manager.json("POST", "/api/v1/inscriptions/%d/validation" % rid, {})
        self.assertEqual(status, 409)

    def test_validation_waits_for_the_address(self):
        self.submit(adult())
        rid = self.last_registration_id()
        status, body = self.manager.json("POST", "/api/v1/inscriptions/%d/validation" % rid, {})
        self.assertEqual(status, 409)
        self.assertIn("pas encore confirmée", body["error"]["message"])
        status, _ = self.manager.json("POST", "/api/v1/inscriptions/999/validation", {})
        self.assertEqual(status, 404)

    def test_permissions(self):
        self.submit(adult())
        rid = self.last_registration_id()
        anonymous = Session(self.server)
        status, _ = anonymous.json("GET", "/api/v1/inscriptions")
        self.assertEqual(status, 401)
        status, _ = anonymous.json("POST", "/api/v1/inscriptions/%d/validation" % rid, {})
        self.assertEqual(status, 401)
        self.server.add_user("client@test.invalid", "client", PASSWORD, "Client", "Jean")
        self.server.add_user("compta@test.invalid", "comptable", PASSWORD, "Compta", "Anne")
        self.server.add_user("employe@test.invalid", "employe", PASSWORD, "Employe", "Eve")
        for email in ("client@test.invalid", "compta@test.invalid"):
            session = Session(self.server)
            session.login(email, PASSWORD)
            status, _ = session.json("GET", "/api/v1/inscriptions")
            self.assertEqual(status, 403, email)
            status, _ = session.json("POST", "/api/v1/inscriptions/%d/refus" % rid, {})
            self.assertEqual(status, 403, email)
        employee = Session(self.server)
        employee.login("employe@test.invalid", PASSWORD)
        status, body = employee.json("GET", "/api/v1/inscriptions")
        self.assertEqual(status, 200)
        self.assertEqual(len(body["items"]), 1)


class MinorTest(RegistrationCase):
    def test_minor_without_guardian_is_422(self):
        status, body = self.submit(child())
        self.assertEqual(status, 422, body)
        fields = body["error"]["fields"]
        for key in ("last_name", "first_name", "email", "phone"):
            self.assertIn("responsable légal", fields["guardian." + key])
        status, body = self.submit(child(), dict(GUARDIAN, email="faux", phone=""))
        self.assertEqual(status, 422)
        self.assertEqual(set(body["error"]["fields"]), {"guardian.email", "guardian.phone"})
        self.assertEqual(self.scalar("SELECT count(*) FROM registration"), 0)

    def test_minor_registered_by_a_parent(self):
        status, body = self.submit(child(), GUARDIAN)
        self.assertEqual(status, 202, body)
        _, token = self.link(1)
        status, _ = self.confirm(token)
        self.assertEqual(status, 200)
        reg = self.registration(self.last_registration_id())
        self.assertTrue(reg["is_minor"])
        self.assertEqual(reg["guardian"]["phone"], "+33698765432")
        person = reg["person_id"]
        links = self.query("SELECT related_id, is_legal_guardian FROM family_link"
                           " WHERE person_id = ?", person)
        self.assertEqual(len(links), 1)
        guardian = links[0][0]
        self.assertEqual(links[0][1], 1)
        self.assertEqual(self.query("SELECT first_name, email FROM person WHERE id = ?", guardian),
                         [("Nadia", "famille.petit@example.test")])

        # A second child of the same parent reuses the guardian's record.
        self.submit(child(first_name="Emma", birth_date="2018-02-03"), GUARDIAN)
        _, token = self.link(2)
        self.confirm(token)
        second = self.registration(self.last_registration_id())["person_id"]
        self.assertEqual(self.scalar("SELECT related_id FROM family_link WHERE person_id = ?",
                                     second), guardian)

    def test_adult_guardian_ignored(self):
        status, body = self.submit(adult(), {"last_name": ""})
        self.assertEqual(status, 202, body)


class BotTest(RegistrationCase):
    def test_honeypot_gets_success_and_creates_nothing(self):
        status, body = self.submit(adult(), site_web="http://spam.example")
        self.assertEqual(status, 202)
        status_ok, body_ok = 202, body
        self.assertIn("e-mail de confirmation", body_ok["message"])
        self.assertEqual(self.scalar("SELECT count(*) FROM registration"), 0)
        self.assertEqual(self.scalar("SELECT count(*) FROM outbox"), 0)
        self.assertIn("hidden field filled", self.server.stderr())
        # Even an invalid form is answered the same way.
        status, _ = self.submit({"last_name": ""}, site_web="x")
        self.assertEqual(status, status_ok)

    def test_rate_limit_per_ip(self):
        for i in range(10):
            status, body = self.submit(adult(first_name="Julie%s" % chr(ord("a") + i),
                                             email="julie%d@example.test" % i))
            self.assertEqual(status, 202, (i, body))
        status, _, data = self.server.request("POST", "/api/v1/inscription",
                                              {"fields": adult(email="z@example.test")})
        self.assertEqual(status, 429)
        self.assertIn("Trop d'inscriptions", data.decode())
        self.assertEqual(self.scalar("SELECT count(*) FROM registration"), 10)
        self.assertIn("rate limit reached from 127.0.0.1", self.server.stderr())


class DuplicateTest(RegistrationCase):
    import_ffe = True

    def test_imported_rider_with_address_confirms_from_it(self):
        people = self.scalar("SELECT count(*) FROM person")
        rider = IMPORTED_WITH_EMAIL
        person = self.scalar("SELECT id FROM person WHERE licence_number = ?", rider["licence"])
        roles = self.roles(person)
        status, body = self.submit(adult(last_name=rider["last_name"],
                                         first_name=rider["first_name"],
                                         birth_date=rider["birth_date"],
                                         licence_number=rider["licence"].lower(),
                                         email="nouvelle.adresse@example.test"))
        self.assertEqual(status, 202, body)
        # The answer does not tell whether the person is known.
        self.assertIn("Si le club vous connaît déjà", body["message"])
        message, token = self.link(1)
        self.assertEqual(message["rcpt_tos"], [rider["email"]])
        self.assertIn("connaît déjà", message["text"])

        rid = self.last_registration_id()
        reg = self.registration(rid)
        self.assertEqual(reg["duplicate"]["person_id"], person)
        self.assertEqual(reg["duplicate"]["reason"], "licence")
        self.assertTrue(reg["duplicate"]["mailed_to_file"])

        status, body = self.confirm(token)
        self.assertEqual(status, 200, body)
        self.assertIn("rattachée à votre fiche", body["message"])
        self.assertEqual(len(self.invitations(rider["email"])), 1)
        reg = self.registration(rid)
        self.assertEqual(reg["person_id"], person)
        self.assertEqual(self.scalar("SELECT count(*) FROM person"), people)
        self.assertEqual(self.roles(person), roles)  # an imported client stays a client
        # The address on file stays; the form's address does not replace it.
        self.assertEqual(self.scalar("SELECT email FROM person WHERE id = ?", person),
                         rider["email"])

        status, body = self.manager.json("POST", "/api/v1/inscriptions/%d/validation" % rid, {})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["person_id"], person)
        self.assertIn("client", self.roles(person))
        self.assertEqual(self.scalar("SELECT count(*) FROM person"), people)

    def test_imported_rider_without_address_waits_for_staff(self):
        people = self.scalar("SELECT count(*) FROM person")
        rider = IMPORTED_WITHOUT_EMAIL
        person = self.scalar("SELECT id FROM person WHERE birth_date = ? AND first_name = ?",
                             rider["birth_date"], "Cécile")
        before = self.query("SELECT email, mobile, address, postcode, city FROM person WHERE id = ?",
                            person)[0]
        self.assertIsNone(before[0])
        status, body = self.submit(adult(last_name=rider["last_name"].upper(),
                                         first_name="cecile", birth_date=rider["birth_date"],
                                         email="cecile.dv@example.test"))
        self.assertEqual(status, 202, body)
        message, token = self.link(1)
        self.assertEqual(message["rcpt_tos"], ["cecile.dv@example.test"])
        status, _ = self.confirm(token)
        self.assertEqual(status, 200)

        rid = self.last_registration_id()
        reg = self.registration(rid)
        self.assertEqual(reg["status"], "to_validate")
        self.assertIsNone(reg["person_id"])
        self.assertEqual(reg["duplicate"]["person_id"], person)
        self.assertEqual(reg["duplicate"]["reason"], "identity")
        self.assertFalse(reg["duplicate"]["mailed_to_file"])
        self.assertFalse(reg["duplicate"]["has_email"])
        self.assertEqual(self.scalar("SELECT count(*) FROM person"), people)

        status, body = self.manager.json("POST", "/api/v1/inscriptions/%d/validation" % rid,
                                         {"action": "nimporte"})
        self.assertEqual(status, 422)
        status, body = self.manager.json("POST", "/api/v1/inscriptions/%d/validation" % rid,
                                         {"action": "link"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["person_id"], person)
        self.assertEqual(self.scalar("SELECT count(*) FROM person"), people)

        # The confirmed address and the empty contact details are copied
        # into the record; what the record already had stays.
        email, mobile, address, postcode, city = self.query(
            "SELECT email, mobile, address, postcode, city FROM person WHERE id = ?", person)[0]
        self.assertEqual(email, "cecile.dv@example.test")
        self.assertEqual(mobile, before[1])
        self.assertEqual(address, before[2])
        self.assertEqual(postcode, before[3])
        self.assertEqual(city, before[4])
        self.assertEqual(city, "Bourg-en-Bresse")
        actors = self.query("SELECT DISTINCT actor_id FROM audit_log WHERE person_id = ?"
                            " AND action = 'update' AND field = 'email'", person)
        self.assertEqual(actors, [(self.manager_id,)])
        # The person can now choose a password.
        self.assertEqual(len(self.invitations("cecile.dv@example.test")), 1)

    def test_link_fills_empty_contact_details(self):
        person = self.scalar("SELECT id FROM person WHERE licence_number = '8862829W'")
        self.assertEqual(self.query("SELECT email, mobile, address, postcode, city FROM person"
                                    " WHERE id = ?", person)[0], (None, None, None, None, None))
        self.submit(adult(last_name="De Villiers", first_name="Sophie", birth_date="2001-10-11",
                          licence_number="8862829W", email="sophie.dv@example.test"))
        _, token = self.link(1)
        self.confirm(token)
        rid = self.last_registration_id()
        status, body = self.manager.json("POST", "/api/v1/inscriptions/%d/validation" % rid,
                                         {"action": "link"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["person_id"], person)
        self.assertEqual(self.query("SELECT email, mobile, address, postcode, city FROM person"
                                    " WHERE id = ?", person)[0],
                         ("sophie.dv@example.test", "+33611223344", "3 chemin des Prés", "44000",
                          "Nantes"))
        fields = [row[0] for row in self.query("SELECT field FROM audit_log WHERE person_id = ?"
                                               " AND action = 'update' ORDER BY id", person)]
        self.assertEqual(sorted(fields), ["address", "city", "email", "mobile", "postcode"])
        self.assertEqual(len(self.invitations("sophie.dv@example.test")), 1)

    def thomas_confirmed_from_file(self):
        """Loïc Thomas (4473259A) is on file with an address but no postal
        address; his registration is confirmed from the address on file."""
        person = self.scalar("SELECT id FROM person WHERE licence_number = '4473259A'")
        self.submit(adult(last_name="Thomas", first_name="Loïc", birth_date="1987-12-14",
                          licence_number="4473259A", email="loic.thomas@example.test"))
        _, token = self.link(1)
        status, body = self.confirm(token)
        self.assertEqual(status, 200, body)
        return person, self.last_registration_id()

    def postal(self, person):
        return self.query("SELECT email, address, postcode, city FROM person WHERE id = ?",
                          person)[0]

    def test_confirmed_from_file_fills_at_validation(self):
        person, rid = self.thomas_confirmed_from_file()
        # Confirming proves the address on file, but staff have not decided yet.
        self.assertEqual(self.postal(person), ("pauline.thomas@sfr.fr", None, None, None))
        status, body = self.manager.json("POST", "/api/v1/inscriptions/%d/validation" % rid, {})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.postal(person),
                         ("pauline.thomas@sfr.fr", "3 chemin des Prés", "44000", "Nantes"))
        actors = self.query("SELECT DISTINCT actor_id FROM audit_log WHERE person_id = ?"
                            " AND action = 'update'", person)
        self.assertEqual(actors, [(self.manager_id,)])

    def test_refusal_leaves_record_on_file_untouched(self):
        person, rid = self.thomas_confirmed_from_file()
        updates = self.scalar("SELECT COUNT(*) FROM audit_log WHERE person_id = ?"
                              " AND action = 'update'", person)
        status, body = self.manager.json("POST", "/api/v1/inscriptions/%d/refus" % rid, {})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.postal(person), ("pauline.thomas@sfr.fr", None, None, None))
        self.assertEqual(self.scalar("SELECT COUNT(*) FROM audit_log WHERE person_id = ?"
                                     " AND action = 'update'", person), updates)

    def link_sophie(self, **form):
        """Links a registration to Sophie De Villiers (8862829W, France, no
        e-mail and no postal address on file)."""
        person = self.scalar("SELECT id FROM person WHERE licence_number = '8862829W'")
        self.submit(adult(last_name="De Villiers", first_name="Sophie", birth_date="2001-10-11",
                          licence_number="8862829W", email="sophie.dv@example.test", **form))
        _, token = self.link(1)
        self.confirm(token)
        status, body = self.manager.json("POST", "/api/v1/inscriptions/%d/validation"
                                         % self.last_registration_id(), {"action": "link"})
        self.assertEqual(status, 200, body)
        return person

    def test_address_of_another_country_not_filled(self):
        person = self.link_sophie(address="12 rue Royale", postcode="1000", city="Bruxelles",
                                  country="Belgique")
        self.assertEqual(self.postal(person), ("sophie.dv@example.test", None, None, None))
        self.assertEqual(self.scalar("SELECT country FROM person WHERE id = ?", person), "FR")

    def test_partial_address_not_mixed(self):
        person = self.scalar("SELECT id FROM person WHERE licence_number = '8862829W'")
        status, body = self.manager.json("PATCH", "/api/v1/riders/%d" % person, {"city": "Lyon"})
        self.assertEqual(status, 200, body)
        self.link_sophie()
        self.assertEqual(self.postal(person), ("sophie.dv@example.test", None, None, "Lyon"))
        self.assertEqual(self.scalar("SELECT mobile FROM person WHERE id = ?", person),
                         "+33611223344")

    def test_staff_may_create_a_namesake(self):
        rider = IMPORTED_WITHOUT_EMAIL
        people = self.scalar("SELECT count(*) FROM person")
        self.submit(adult(last_name=rider["last_name"], first_name=rider["first_name"],
                          birth_date=rider["birth_date"], email="homonyme@example.test"))
        _, token = self.link(1)
        self.confirm(token)
        rid = self.last_registration_id()
        status, body = self.manager.json("POST", "/api/v1/inscriptions/%d/validation" % rid,
                                         {"action": "create"})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.scalar("SELECT count(*) FROM person"), people + 1)
        self.assertEqual(self.roles(body["person_id"]), ["client"])


class ConsentTest(RegistrationCase):
    def publish(self):
        """Publishes version 1 of the terms and of the news-mail consent."""
        for key, title in (("cgu", "Conditions générales d'utilisation"),
                           ("newsletter", "Recevoir les nouvelles du club par mail")):
            status, body = self.manager.json("POST", "/api/v1/consents/documents/%s/versions" % key,
                                             {"title": title, "text": "Texte de " + key})
            self.assertIn(status, (200, 201), body)

    def test_terms_required_and_consents_recorded(self):
        self.publish()
        _, _, data = self.server.request("GET", "/api/v1/inscription/formulaire")
        documents = {d["key"]: d for d in json.loads(data)["documents"]}
        self.assertEqual(set(documents), {"cgu", "newsletter"})
        status, body = self.submit(adult(), consents={"newsletter": True})
        self.assertEqual(status, 422)
        self.assertIn("consents.cgu", body["error"]["fields"])
        versions = {key: doc["version_id"] for key, doc in documents.items()}
        stale = dict(versions, cgu=versions["cgu"] - 1)
        status, body = self.submit(adult(), consents={"cgu": True}, version_ids=stale)
        self.assertEqual(status, 422, body)
        self.assertIn("a changé", body["error"]["fields"]["consents.cgu"])
        status, body = self.submit(adult(), consents={"cgu": True, "newsletter": False},
                                   version_ids=versions)
        self.assertEqual(status, 202, body)
        _, token = self.link(1)
        self.confirm(token)
        person = self.registration(self.last_registration_id())["person_id"]
        proofs = self.query("SELECT d.key, p.decision, p.channel, p.ip, p.user_agent,"
                            " p.version_hash FROM consent_proof p JOIN consent_document d"
                            " ON d.id = p.document_id WHERE p.person_id = ? ORDER BY d.key",
                            person)
        self.assertEqual([(k, d, c) for k, d, c, *_ in proofs],
                         [("cgu", "accepted", "registration"),
                          ("newsletter", "refused", "registration")])
        for proof in proofs:
            self.assertEqual(proof[3], "127.0.0.1")
            self.assertEqual(proof[4], USER_AGENT)
            self.assertEqual(len(proof[5]), 64)


if __name__ == "__main__":
    unittest.main()
