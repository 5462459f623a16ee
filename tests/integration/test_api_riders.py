"""The rider API against a real licol server and SQLite file: list, search,
counts, pagination, one record, creation, edits with audit rows, plugin
fields, roles, family links, history, deletion, and what each role (and an
API token) may not do."""

import datetime
import sqlite3
import unittest

from licol_harness import LicolServer, Session, quote

from test_api_auth import PASSWORD, manager_session

ROLES = ["gerant", "employe", "client", "visiteur", "comptable", "proprietaire"]


class RidersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = LicolServer().start()
        cls.manager = manager_session(cls.server)
        cls.ids = {}
        cls.sessions = {"gerant": cls.manager}
        for role in ROLES[1:]:
            email = "%s@test.invalid" % role
            cls.ids[role] = cls.server.add_user(email, role, PASSWORD, role.capitalize(), "Compte")
            session = Session(cls.server)
            session.login(email, PASSWORD)
            cls.sessions[role] = session
        status, body = cls.manager.json("POST", "/api/v1/tokens", {"name": "Intégration", "role": "employe"})
        assert status == 201, body
        cls.token = Session(cls.server, token=body["token"])
        status, body = cls.manager.json("POST", "/api/v1/tokens", {"name": "Client", "role": "client"})
        cls.client_token = Session(cls.server, token=body["token"])

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def create(self, session=None, **fields):
        status, body = (session or self.manager).json("POST", "/api/v1/riders", fields)
        self.assertEqual(status, 201, body)
        return body

    def audit_rows(self, person_id):
        db = sqlite3.connect(self.server.db)
        try:
            return db.execute("SELECT actor_id, action, field, old_value, new_value FROM audit_log"
                              " WHERE person_id = ? ORDER BY id", (person_id,)).fetchall()
        finally:
            db.close()

    # ---- creation and validation ------------------------------------------

    def test_create_normalises_values(self):
        rider = self.create(last_name="Lefèvre", first_name=" Anaïs ", email="Anais.LEFEVRE@Example.FR",
                            phone="06.12.34.56.78", licence_number="7654321b", galop="G4",
                            birth_date="2012-05-04", sex="F", postcode="1000", country="France")
        fields = rider["fields"]
        self.assertEqual(fields["first_name"], "Anaïs")
        self.assertEqual(fields["email"], "anais.lefevre@example.fr")
        self.assertEqual(fields["phone"], "+33612345678")
        self.assertEqual(fields["licence_number"], "7654321B")
        self.assertEqual(fields["galop"], "galop-4")
        self.assertEqual(fields["postcode"], "01000")
        self.assertEqual(fields["country"], "FR")
        self.assertEqual(rider["roles"], ["client"])
        self.assertIn("last_name", rider["editable"])

    def test_create_validation_messages_in_french(self):
        status, body = self.manager.json("POST", "/api/v1/riders", {
            "first_name": "Sans nom", "email": "pas-une-adresse", "birth_date": "31/02/2010",
            "licence_number": "en cours", "galop": "Galop 42", "sex": "Z", "taille_cm": "12",
            "inconnu": "x"})
        self.assertEqual(status, 422)
        self.assertEqual(body["error"]["code"], "validation")
        fields = body["error"]["fields"]
        self.assertIn("obligatoire", fields["last_name"])
        self.assertIn("adresse e-mail", fields["email"])
        self.assertIn("date", fields["birth_date"])
        self.assertIn("sept chiffres", fields["licence_number"])
        self.assertIn("Galop", fields["galop"])
        self.assertIn("Sexe", fields["sex"])
        self.assertIn("entre 60 et 230", fields["taille_cm"])
        self.assertEqual(fields["inconnu"], "Champ inconnu.")

    def test_create_writes_audit_rows(self):
        rider = self.create(last_name="Audit", first_name="Création")
        rows = self.audit_rows(rider["id"])
        manager_id = self.manager.json("GET", "/api/v1/session")[1]["user"]["id"]
        self.assertIn((manager_id, "create", "last_name", None, "Audit"), rows)
        self.assertIn((manager_id, "create", "first_name", None, "Création"), rows)
        self.assertIn((manager_id, "role.add", "role", None, "client"), rows)

    def test_create_with_roles(self):
        rider = self.create(last_name="Multi", roles=["client", "proprietaire"])
        self.assertEqual(sorted(rider["roles"]), ["client", "proprietaire"])
        status, body = self.manager.json("POST", "/api/v1/riders", {"last_name": "X", "roles": ["roi"]})
        self.assertEqual(status, 422)
        self.assertIn("roles", body["error"]["fields"])

    def test_duplicate_licence_is_409(self):
        self.create(last_name="Premier", licence_number="1111111A")
        status, body = self.manager.json("POST", "/api/v1/riders",
                                         {"last_name": "Second", "licence_number": "1111111a"})
        self.assertEqual(status, 409)
        self.assertEqual(body["error"]["code"], "conflict")
        self.assertIn("licence_number", body["error"]["fields"])

    def test_invalid_json_is_400(self):
        status, _, _ = self.manager.call("POST", "/api/v1/riders", raw_body=b"{pas du json",
                                         headers={"Content-Type": "application/json"})
        self.assertEqual(status, 400)

    # ---- edits ---------------------------------------------------------------

    def test_patch_updates_and_audits(self):
        rider = self.create(last_name="Avant", email="avant@example.fr")
        status, body = self.manager.json("PATCH", "/api/v1/riders/%d" % rider["id"],
                                         {"last_name": "Après", "email": None, "city": "Saumur"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["fields"]["last_name"], "Après")
        self.assertIsNone(body["fields"]["email"])
        self.assertEqual(body["fields"]["city"], "Saumur")
        rows = self.audit_rows(rider["id"])
        self.assertIn("update", [r[1] for r in rows])
        updates = [r[2:] for r in rows if r[1] == "update"]
        self.assertIn(("last_name", "Avant", "Après"), updates)
        self.assertIn(("email", "avant@example.fr", None), updates)
        self.assertIn(("city", None, "Saumur"), updates)

    def test_patch_unchanged_value_writes_nothing(self):
        rider = self.create(last_name="Stable")
        before = len(self.audit_rows(rider["id"]))
        status, _ = self.manager.json("PATCH", "/api/v1/riders/%d" % rider["id"], {"last_name": "Stable"})
        self.assertEqual(status, 200)
        self.assertEqual(len(self.audit_rows(rider["id"])), before)

    def test_patch_validation_is_422_and_changes_nothing(self):
        rider = self.create(last_name="Valide")
        status, body = self.manager.json("PATCH", "/api/v1/riders/%d" % rider["id"],
                                         {"last_name": "Changé", "birth_date": "2099-01-01"})
        self.assertEqual(status, 422)
        self.assertIn("futur", body["error"]["fields"]["birth_date"])
        self.assertEqual(self.manager.json("GET", "/api/v1/riders/%d" % rider["id"])[1]["fields"]["last_name"],
                         "Valide")

    def test_plugin_fields_read_validated_written(self):
        rider = self.create(last_name="Gabarit", taille_cm="142", certificat_medical_date="2026-01-15")
        self.assertEqual(rider["fields"]["taille_cm"], "142")
        self.assertEqual(rider["fields"]["certificat_medical_date"], "2026-01-15")
        db = sqlite3.connect(self.server.db)
        stored = dict(db.execute("SELECT key, value FROM person_field WHERE person_id = ?",
                                 (rider["id"],)).fetchall())
        db.close()
        self.assertEqual(stored, {"taille_cm": "142", "certificat_medical_date": "2026-01-15"})
        # The plugin's own validate function rejects a date in the future.
        status, body = self.manager.json("PATCH", "/api/v1/riders/%d" % rider["id"],
                                         {"certificat_medical_date": "2099-01-01"})
        self.assertEqual(status, 422)
        self.assertIn("futur", body["error"]["fields"]["certificat_medical_date"])
        status, body = self.manager.json("PATCH", "/api/v1/riders/%d" % rider["id"], {"taille_cm": ""})
        self.assertEqual(status, 200)
        self.assertIsNone(body["fields"]["taille_cm"])
        updates = [r[2:] for r in self.audit_rows(rider["id"]) if r[1] == "update"]
        self.assertIn(("taille_cm", "142", None), updates)

    def test_plugin_hooks_answer_on_create_and_update(self):
        rider = self.create(last_name="Crochet")
        result = rider["hook_results"]["certificat-medical"]
        self.assertEqual(result["statut"], "absent")
        self.assertIn("certificat", result["avertissements"][0])
        recent = (datetime.date.today() - datetime.timedelta(days=30)).isoformat()
        status, body = self.manager.json("PATCH", "/api/v1/riders/%d" % rider["id"],
                                         {"certificat_medical_date": recent})
        self.assertEqual(status, 200)
        self.assertNotIn("hook_results", body)
        old = (datetime.date.today() - datetime.timedelta(days=400)).isoformat()
        status, body = self.manager.json("PATCH", "/api/v1/riders/%d" % rider["id"],
                                         {"certificat_medical_date": old})
        self.assertEqual(body["hook_results"]["certificat-medical"]["statut"], "expire")

    def test_plugin_field_visibility_by_role(self):
        rider = self.create(last_name="Visible", certificat_medical_date="2026-01-15")
        status, body = self.sessions["comptable"].json("GET", "/api/v1/riders/%d" % rider["id"])
        self.assertEqual(status, 200)
        self.assertNotIn("certificat_medical_date", body["fields"])
        self.assertEqual(body["editable"], [])

    def test_missing_rider_is_404(self):
        self.assertEqual(self.manager.json("GET", "/api/v1/riders/999999")[0], 404)
        self.assertEqual(self.manager.json("PATCH", "/api/v1/riders/999999", {"city": "x"})[0], 404)
        self.assertEqual(self.manager.json("GET", "/api/v1/riders/abc")[0], 404)

    # ---- list, search, counts -------------------------------------------------

    def test_search_ignores_accents_and_case(self):
        rider = self.create(last_name="Lambert", first_name="Thérèse", licence_number="2222222C",
                            mobile="07 11 22 33 44", email="t.lambert@example.fr")
        for q in ["Therese", "THÉRÈSE", "lambert therese", "2222222c", "t.lambert@example", "0711223344"]:
            status, body = self.manager.json("GET", "/api/v1/riders?q=" + quote(q))
            self.assertEqual(status, 200)
            self.assertIn(rider["id"], [i["id"] for i in body["items"]], q)
        status, body = self.manager.json("GET", "/api/v1/riders?q=" + quote("T.Lambert@Example.FR"))
        self.assertEqual([i["id"] for i in body["items"]], [rider["id"]])
        status, body = self.manager.json("GET", "/api/v1/riders?q=" + quote("100%_"))
        self.assertEqual(body["items"], [])

    def test_counts_per_status(self):
        status, before = self.manager.json("GET", "/api/v1/riders?q=compteur")
        self.assertEqual(before["counts"]["tous"], 0)
        self.create(last_name="Compteur", first_name="Un", roles=["client"])
        self.create(last_name="Compteur", first_name="Deux", roles=["client", "proprietaire"])
        self.create(last_name="Compteur", first_name="Trois", roles=["visiteur"])
        status, body = self.manager.json("GET", "/api/v1/riders?q=compteur")
        self.assertEqual(body["counts"]["client"], 2)
        self.assertEqual(body["counts"]["proprietaire"], 1)
        self.assertEqual(body["counts"]["visiteur"], 1)
        self.assertEqual(body["counts"]["gerant"], 0)
        self.assertEqual(body["counts"]["tous"], 3)
        self.assertEqual(body["total"], 3)
        status, body = self.manager.json("GET", "/api/v1/riders?q=compteur&status=client")
        self.assertEqual(body["total"], 2)
        self.assertEqual(sorted(i["first_name"] for i in body["items"]), ["Deux", "Un"])
        self.assertTrue(all("client" in i["roles"] for i in body["items"]))

    def test_pagination_and_sort(self):
        for n in range(7):
            self.create(last_name="Paginé", first_name="P%d" % n, birth_date="201%d-01-01" % n)
        status, page1 = self.manager.json("GET", "/api/v1/riders?q=pagine&per_page=3&sort=prenom")
        status, page3 = self.manager.json("GET", "/api/v1/riders?q=pagine&per_page=3&page=3&sort=prenom")
        self.assertEqual(page1["total"], 7)
        self.assertEqual([i["first_name"] for i in page1["items"]], ["P0", "P1", "P2"])
        self.assertEqual([i["first_name"] for i in page3["items"]], ["P6"])
        self.assertEqual(page3["page"], 3)
        status, body = self.manager.json("GET", "/api/v1/riders?q=pagine&per_page=2&sort=-naissance")
        self.assertEqual([i["first_name"] for i in body["items"]], ["P6", "P5"])
        status, body = self.manager.json("GET", "/api/v1/riders?per_page=5000")
        self.assertEqual(body["per_page"], 200)

    def test_list_rejects_bad_parameters(self):
        for query in ["status=roi", "sort=taille", "page=0", "per_page=abc"]:
            status, body = self.manager.json("GET", "/api/v1/riders?" + query)
            self.assertEqual(status, 422, query)

    def test_list_item_shape(self):
        rider = self.create(last_name="Forme", galop="Galop 2", licence_number="3333333D")
        db = sqlite3.connect(self.server.db)
        db.execute("INSERT INTO licence (person_id, season, number) VALUES (?, strftime('%Y', 'now'), '3333333D')",
                   (rider["id"],))
        db.commit()
        db.close()
        status, body = self.manager.json("GET", "/api/v1/riders?q=forme")
        item = body["items"][0]
        for key in ["id", "last_name", "first_name", "birth_date", "email", "phone", "mobile",
                    "licence_number", "licence_season", "licence_valid", "galop", "galop_label",
                    "roles", "consent_status"]:
            self.assertIn(key, item)
        self.assertTrue(item["licence_valid"])
        self.assertEqual(item["galop_label"], "Galop 2")
        status, body = self.manager.json("GET", "/api/v1/riders/%d" % rider["id"])
        self.assertEqual(body["licences"][0]["number"], "3333333D")

    def test_list_sees_changes_made_by_another_connection(self):
        rider = self.create(last_name="Cachée")
        self.manager.json("GET", "/api/v1/riders?q=cachee")
        db = sqlite3.connect(self.server.db)
        db.execute("UPDATE person SET first_name = 'Externe' WHERE id = ?", (rider["id"],))
        db.commit()
        db.close()
        status, body = self.manager.json("GET", "/api/v1/riders?q=cachee")
        self.assertEqual(body["items"][0]["first_name"], "Externe")

    # ---- roles -------------------------------------------------------------

    def test_put_roles(self):
        rider = self.create(last_name="Rôles")
        status, body = self.manager.json("PUT", "/api/v1/riders/%d/roles" % rider["id"],
                                         {"roles": ["employe", "client"]})
        self.assertEqual(status, 200)
        self.assertEqual(sorted(body["roles"]), ["client", "employe"])
        rows = self.audit_rows(rider["id"])
        self.assertIn("role.add", [r[1] for r in rows])
        status, body = self.manager.json("PUT", "/api/v1/riders/%d/roles" % rider["id"], {"roles": []})
        self.assertEqual(body["roles"], [])
        self.assertIn(("role.remove", "role", "employe", None), [r[1:] for r in self.audit_rows(rider["id"])])

    def test_employee_cannot_grant_manager(self):
        rider = self.create(last_name="Promotion")
        status, body = self.sessions["employe"].json("PUT", "/api/v1/riders/%d/roles" % rider["id"],
                                                     {"roles": ["gerant"]})
        self.assertEqual(status, 403)
        status, body = self.sessions["employe"].json("PUT", "/api/v1/riders/%d/roles" % rider["id"],
                                                     {"roles": ["client", "visiteur"]})
        self.assertEqual(status, 200)

    def test_last_manager_keeps_role(self):
        manager_id = self.manager.json("GET", "/api/v1/session")[1]["user"]["id"]
        status, body = self.manager.json("PUT", "/api/v1/riders/%d/roles" % manager_id, {"roles": ["client"]})
        self.assertEqual(status, 409)
        self.assertEqual(self.manager.json("DELETE", "/api/v1/riders/%d" % manager_id)[0], 409)

    # ---- deletion and history --------------------------------------------------

    def test_delete_rider(self):
        rider = self.create(last_name="Supprimé")
        self.assertEqual(self.sessions["comptable"].json("DELETE", "/api/v1/riders/%d" % rider["id"])[0], 403)
        status, _ = self.manager.json("DELETE", "/api/v1/riders/%d" % rider["id"])
        self.assertEqual(status, 204)
        self.assertEqual(self.manager.json("GET", "/api/v1/riders/%d" % rider["id"])[0], 404)
        self.assertEqual(self.audit_rows(rider["id"])[-1][1], "delete")

    def test_history(self):
        rider = self.create(last_name="Histoire")
        self.manager.json("PATCH", "/api/v1/riders/%d" % rider["id"], {"city": "Lamotte-Beuvron"})
        status, body = self.manager.json("GET", "/api/v1/riders/%d/history" % rider["id"])
        self.assertEqual(status, 200)
        first = body["items"][0]
        self.assertEqual(first["action"], "update")
        self.assertEqual(first["field"], "city")
        self.assertEqual(first["new_value"], "Lamotte-Beuvron")
        self.assertIsNone(first["old_value"])
        self.assertEqual(first["actor"]["name"], "Gérant")
        self.assertIsNone(first["import_run_id"])
        self.assertEqual(self.sessions["client"].json("GET", "/api/v1/riders/%d/history" % rider["id"])[0], 403)

    # ---- reference data ----------------------------------------------------

    def test_fields_catalogue(self):
        status, body = self.manager.json("GET", "/api/v1/fields")
        self.assertEqual(status, 200)
        keys = [f["key"] for f in body["fields"]]
        self.assertEqual(keys[0], "last_name")
        self.assertIn("taille_cm", keys)
        field = [f for f in body["fields"] if f["key"] == "certificat_medical_date"][0]
        self.assertEqual(field["plugin"], "certificat-medical")
        self.assertEqual(field["editable_by"], ["gerant", "employe"])
        for key in ["label", "type", "group", "choices", "required", "visible_to"]:
            self.assertIn(key, field)
        self.assertEqual(self.sessions["client"].json("GET", "/api/v1/fields")[0], 200)

    def test_galops(self):
        status, body = self.manager.json("GET", "/api/v1/galops")
        self.assertEqual(status, 200)
        codes = [g["code"] for g in body]
        self.assertLess(codes.index("galop-bronze"), codes.index("galop-3"))
        self.assertEqual([g for g in body if g["code"] == "galop-3"][0]["label"], "Galop 3")

    def test_scripts_status(self):
        status, body = self.manager.json("GET", "/api/v1/scripts/status")
        self.assertEqual(status, 200)
        self.assertIn("version", body)
        self.assertIn("scripts/roles.lua", body["files"])
        self.assertEqual(self.sessions["client"].json("GET", "/api/v1/scripts/status")[0], 403)


class FamilyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = LicolServer().start()
        cls.manager = manager_session(cls.server)
        cls.parent_id = cls.server.add_user("famille@test.invalid", "client", PASSWORD, "Moreau", "Claire")
        cls.parent = Session(cls.server)
        cls.parent.login("famille@test.invalid", PASSWORD)

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def create(self, **fields):
        status, body = self.manager.json("POST", "/api/v1/riders", fields)
        self.assertEqual(status, 201, body)
        return body

    def test_parent_reaches_child_through_link(self):
        child = self.create(last_name="Moreau", first_name="Jules", email="famille@test.invalid",
                            birth_date="2015-03-02")
        stranger = self.create(last_name="Étranger")
        self.assertEqual(self.parent.json("GET", "/api/v1/riders/%d" % child["id"])[0], 403)
        status, body = self.manager.json("POST", "/api/v1/riders/%d/family" % child["id"], {
            "person_id": self.parent_id, "relationship": "mère", "is_legal_guardian": True,
            "is_payer": True})
        self.assertEqual(status, 201, body)
        link = body["family"][0]
        self.assertEqual(link["direction"], "parent")
        self.assertEqual(link["person"]["id"], self.parent_id)
        self.assertTrue(link["is_legal_guardian"])
        status, body = self.parent.json("GET", "/api/v1/riders/%d" % child["id"])
        self.assertEqual(status, 200)
        self.assertEqual(body["fields"]["first_name"], "Jules")
        self.assertEqual(self.parent.json("PATCH", "/api/v1/riders/%d" % child["id"],
                                          {"mobile": "0611111111"})[0], 200)
        self.assertEqual(self.parent.json("GET", "/api/v1/riders/%d" % stranger["id"])[0], 403)
        status, body = self.parent.json("GET", "/api/v1/session")
        self.assertIn(child["id"], [f["id"] for f in body["user"]["family"]])
        self.assertEqual([r[0] for r in sqlite3.connect(self.server.db).execute(
            "SELECT action FROM audit_log WHERE person_id = ? AND action = 'family.add'",
            (child["id"],))], ["family.add"])

    def test_parent_adds_new_child(self):
        status, body = self.parent.json("POST", "/api/v1/riders/%d/family" % self.parent_id, {
            "new_person": {"last_name": "Moreau", "first_name": "Inès", "birth_date": "2017-09-10"},
            "relationship": "mère", "direction": "child", "is_legal_guardian": True})
        self.assertEqual(status, 201, body)
        child_id = body["person_id"]
        self.assertEqual(body["related_id"], self.parent_id)
        status, child = self.parent.json("GET", "/api/v1/riders/%d" % child_id)
        self.assertEqual(status, 200)
        self.assertEqual(child["family"][0]["direction"], "parent")
        status, body = self.parent.json("POST", "/api/v1/riders/%d/family" % self.parent_id, {
            "new_person": {"first_name": "Sans nom"}, "relationship": "mère", "direction": "child"})
        self.assertEqual(status, 422)
        self.assertIn("last_name", body["error"]["fields"])

    def test_client_cannot_link_a_stranger(self):
        stranger = self.create(last_name="Inconnu")
        status, _ = self.parent.json("POST", "/api/v1/riders/%d/family" % self.parent_id, {
            "person_id": stranger["id"], "relationship": "fils", "direction": "child"})
        self.assertEqual(status, 403)

    def test_link_validation_and_conflict(self):
        a = self.create(last_name="Lien", first_name="A")
        b = self.create(last_name="Lien", first_name="B")
        url = "/api/v1/riders/%d/family" % a["id"]
        status, body = self.manager.json("POST", url, {"person_id": b["id"]})
        self.assertEqual(status, 422)
        self.assertIn("relationship", body["error"]["fields"])
        status, body = self.manager.json("POST", url, {"person_id": a["id"], "relationship": "père"})
        self.assertEqual(status, 422)
        status, body = self.manager.json("POST", url, {"person_id": 999999, "relationship": "père"})
        self.assertEqual(status, 422)
        self.assertEqual(self.manager.json("POST", url, {"person_id": b["id"], "relationship": "père"})[0], 201)
        self.assertEqual(self.manager.json("POST", "/api/v1/riders/%d/family" % b["id"],
                                           {"person_id": a["id"], "relationship": "fils"})[0], 409)

    def test_unlink(self):
        a = self.create(last_name="Délier", first_name="A")
        b = self.create(last_name="Délier", first_name="B")
        status, body = self.manager.json("POST", "/api/v1/riders/%d/family" % a["id"],
                                         {"person_id": b["id"], "relationship": "tante"})
        link_id = body["link_id"]
        self.assertEqual(self.manager.json("DELETE", "/api/v1/riders/%d/family/%d" % (a["id"], 999999))[0], 404)
        self.assertEqual(self.manager.json("DELETE", "/api/v1/riders/%d/family/%d" % (b["id"], link_id))[0], 204)
        self.assertEqual(self.manager.json("GET", "/api/v1/riders/%d" % a["id"])[1]["family"], [])

    def test_account_holder_of_shared_address(self):
        email = "partage@test.invalid"
        child = self.create(last_name="Partage", first_name="Enfant", email=email, birth_date="2015-01-01")
        sibling = self.create(last_name="Partage", first_name="Aîné", email=email, birth_date="2012-01-01")

        def holder(person):
            account = self.manager.json("GET", "/api/v1/riders/%d" % person["id"])[1]["account"]
            return account["holder"]["id"] if account["holder"] else None

        # Only minors: the oldest person.
        self.assertEqual(holder(child), sibling["id"])
        grandparent = self.create(last_name="Partage", first_name="Aïeule", email=email, birth_date="1950-01-01")
        # The oldest adult.
        self.assertEqual(holder(child), grandparent["id"])
        parent = self.create(last_name="Partage", first_name="Parent", email=email, birth_date="1985-01-01")
        self.manager.json("POST", "/api/v1/riders/%d/family" % child["id"],
                          {"person_id": parent["id"], "relationship": "père", "is_legal_guardian": True})
        # An adult legal guardian comes before an older adult.
        self.assertEqual(holder(child), parent["id"])
        self.assertEqual(holder(grandparent), parent["id"])
        self.assertFalse(self.manager.json("GET", "/api/v1/riders/%d" % parent["id"])[1]["account"]["has_login"])
        # The person with a password holds the login.
        owner = self.server.add_user(email, "client", PASSWORD, "Partage", "Titulaire")
        self.assertEqual(holder(child), owner)
        self.assertTrue(self.manager.json("GET", "/api/v1/riders/%d" % owner)[1]["account"]["has_login"])
        # Without an address there is no holder.
        alone = self.create(last_name="Seul")
        self.assertIsNone(holder(alone))

    def test_one_login_per_address(self):
        other = self.server.add_user("autre@test.invalid", "client", PASSWORD, "Autre")
        status, body = self.manager.json("PATCH", "/api/v1/riders/%d" % other, {"email": "famille@test.invalid"})
        self.assertEqual(status, 409)
        self.assertIn("email", body["error"]["fields"])
        # A person without a login may share the address.
        rider = self.create(last_name="Partage")
        status, _ = self.manager.json("PATCH", "/api/v1/riders/%d" % rider["id"], {"email": "famille@test.invalid"})
        self.assertEqual(status, 200)


class RoleMatrixTest(unittest.TestCase):
    """Every role, and API tokens, trying what roles.lua does not allow them."""

    @classmethod
    def setUpClass(cls):
        cls.server = LicolServer().start()
        cls.manager = manager_session(cls.server)
        cls.sessions, cls.ids = {}, {}
        for role in ROLES[1:]:
            email = "%s@test.invalid" % role
            cls.ids[role] = cls.server.add_user(email, role, PASSWORD, role.capitalize())
            cls.sessions[role] = Session(cls.server)
            cls.sessions[role].login(email, PASSWORD)
        status, body = cls.manager.json("POST", "/api/v1/riders", {"last_name": "Cible"})
        cls.target = body["id"]

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def expect(self, session, method, path, body, status):
        got, data = session.json(method, path, body)
        self.assertEqual(got, status, "%s %s -> %s %s" % (method, path, got, data))
        if status == 403:
            self.assertEqual(data["error"]["code"], "forbidden")

    def test_employee(self):
        s = self.sessions["employe"]
        self.expect(s, "GET", "/api/v1/riders", None, 200)
        self.expect(s, "PATCH", "/api/v1/riders/%d" % self.target, {"city": "Tours"}, 200)
        self.expect(s, "GET", "/api/v1/tokens", None, 403)
        self.expect(s, "PUT", "/api/v1/riders/%d/roles" % self.target, {"roles": ["gerant"]}, 403)

    def test_client(self):
        s, me = self.sessions["client"], self.ids["client"]
        self.expect(s, "GET", "/api/v1/riders", None, 403)
        self.expect(s, "GET", "/api/v1/riders/%d" % self.target, None, 403)
        self.expect(s, "PATCH", "/api/v1/riders/%d" % self.target, {"city": "Tours"}, 403)
        self.expect(s, "POST", "/api/v1/riders", {"last_name": "X"}, 403)
        self.expect(s, "DELETE", "/api/v1/riders/%d" % self.target, None, 403)
        self.expect(s, "PUT", "/api/v1/riders/%d/roles" % me, {"roles": ["gerant"]}, 403)
        self.expect(s, "GET", "/api/v1/scripts/status", None, 403)
        self.expect(s, "GET", "/api/v1/riders/%d" % me, None, 200)
        self.expect(s, "PATCH", "/api/v1/riders/%d" % me, {"city": "Tours"}, 200)
        # The certificate date is visible to clients but edited by staff only.
        self.expect(s, "PATCH", "/api/v1/riders/%d" % me, {"certificat_medical_date": "2026-01-01"}, 403)

    def test_visitor(self):
        s, me = self.sessions["visiteur"], self.ids["visiteur"]
        self.expect(s, "GET", "/api/v1/riders", None, 403)
        self.expect(s, "GET", "/api/v1/riders/%d" % self.target, None, 403)
        self.expect(s, "POST", "/api/v1/riders/%d/family" % me,
                    {"new_person": {"last_name": "X"}, "relationship": "fils", "direction": "child"}, 403)
        self.expect(s, "GET", "/api/v1/riders/%d" % me, None, 200)

    def test_accountant(self):
        s = self.sessions["comptable"]
        self.expect(s, "GET", "/api/v1/riders", None, 200)
        self.expect(s, "GET", "/api/v1/riders/%d" % self.target, None, 200)
        self.expect(s, "PATCH", "/api/v1/riders/%d" % self.target, {"city": "Tours"}, 403)
        self.expect(s, "POST", "/api/v1/riders", {"last_name": "X"}, 403)
        self.expect(s, "POST", "/api/v1/tokens", {"name": "x", "role": "comptable"}, 403)

    def test_owner(self):
        s, me = self.sessions["proprietaire"], self.ids["proprietaire"]
        self.expect(s, "GET", "/api/v1/riders", None, 403)
        self.expect(s, "GET", "/api/v1/riders/%d" % self.target, None, 403)
        self.expect(s, "DELETE", "/api/v1/riders/%d" % me, None, 403)
        self.expect(s, "GET", "/api/v1/riders/%d" % me, None, 200)

    def test_client_token(self):
        status, body = self.manager.json("POST", "/api/v1/tokens", {"name": "c", "role": "client"})
        s = Session(self.server, token=body["token"])
        self.expect(s, "GET", "/api/v1/riders", None, 403)
        self.expect(s, "GET", "/api/v1/riders/%d" % self.target, None, 403)
        self.expect(s, "POST", "/api/v1/riders", {"last_name": "X"}, 403)

    def test_session_permission_maps(self):
        body = self.sessions["client"].json("GET", "/api/v1/session")[1]
        self.assertFalse(body["permissions"]["riders.list"])
        self.assertTrue(body["permissions_self"]["rider.update"])
        body = self.sessions["employe"].json("GET", "/api/v1/session")[1]
        self.assertTrue(body["permissions"]["rider.roles.update"])
        self.assertFalse(body["permissions"]["tokens.manage"])
        body = self.sessions["comptable"].json("GET", "/api/v1/session")[1]
        self.assertTrue(body["permissions"]["finance.read"])
        self.assertFalse(body["permissions"]["rider.update"])


class UnauthenticatedTest(unittest.TestCase):
    ROUTES = [
        ("GET", "/api/v1/riders"), ("POST", "/api/v1/riders"), ("GET", "/api/v1/riders/1"),
        ("PATCH", "/api/v1/riders/1"), ("DELETE", "/api/v1/riders/1"),
        ("PUT", "/api/v1/riders/1/roles"), ("POST", "/api/v1/riders/1/family"),
        ("DELETE", "/api/v1/riders/1/family/1"), ("GET", "/api/v1/riders/1/history"),
        ("GET", "/api/v1/fields"), ("GET", "/api/v1/galops"), ("GET", "/api/v1/scripts/status"),
        ("GET", "/api/v1/session"), ("DELETE", "/api/v1/session"),
        ("POST", "/api/v1/account/password"), ("GET", "/api/v1/tokens"),
        ("POST", "/api/v1/tokens"), ("DELETE", "/api/v1/tokens/1"),
    ]

    @classmethod
    def setUpClass(cls):
        cls.server = LicolServer().start()
        cls.manager = manager_session(cls.server)

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_every_route_needs_login(self):
        for method, path in self.ROUTES:
            status, body = Session(self.server).json(method, path, {} if method != "GET" else None)
            self.assertEqual(status, 401, "%s %s" % (method, path))
            self.assertEqual(body["error"]["code"], "unauthenticated")

    def test_state_changes_need_csrf(self):
        for method, path in self.ROUTES:
            if method == "GET":
                continue
            for token in [None, "faux-jeton"]:
                session = Session(self.server)
                session.cookie = self.manager.cookie
                session.csrf = token
                status, body = session.json(method, path, {})
                self.assertEqual(status, 403, "%s %s (%s)" % (method, path, token))
                self.assertEqual(body["error"]["code"], "csrf")


if __name__ == "__main__":
    unittest.main()
