"""Regression tests for account takeovers found by adversarial testing:
family links give access downwards only, nobody but a manager may change a
manager's record, clients may not edit federation fields, an e-mail change
voids pending password links, and a person may not move their login onto
an address another record uses."""

import sqlite3
import unittest

from licol_harness import LicolServer, Session
from test_import import PASSWORD, manager_session


def person_id(server, email):
    db = sqlite3.connect(server.db)
    try:
        return db.execute("SELECT id FROM person WHERE email = ?", (email,)).fetchone()[0]
    finally:
        db.close()


def link(server, child, parent):
    db = sqlite3.connect(server.db)
    db.execute("INSERT INTO family_link (person_id, related_id, relationship, is_legal_guardian,"
               " is_payer, created_at) VALUES (?, ?, 'responsable légal', 1, 1, 'x')", (child, parent))
    db.commit()
    db.close()


class AccountTakeoverTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = LicolServer().start()
        cls.manager = manager_session(cls.server)
        cls.manager_id = person_id(cls.server, "gerant@test.invalid")
        cls.server.add_user("employe@test.invalid", "employe", PASSWORD, "Martin", "Paul")
        cls.server.add_user("parent@test.invalid", "client", PASSWORD, "Durand", "Anne")
        cls.server.add_user("enfant@test.invalid", "client", PASSWORD, "Durand", "Léo")
        cls.parent = person_id(cls.server, "parent@test.invalid")
        cls.child = person_id(cls.server, "enfant@test.invalid")
        link(cls.server, cls.child, cls.parent)

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def session(self, email):
        s = Session(self.server)
        s.login(email, PASSWORD)
        return s

    def test_parent_reaches_child(self):
        status, _ = self.session("parent@test.invalid").json("GET", "/api/v1/riders/%d" % self.child)
        self.assertEqual(status, 200)

    def test_child_does_not_reach_parent(self):
        child = self.session("enfant@test.invalid")
        status, _ = child.json("GET", "/api/v1/riders/%d" % self.parent)
        self.assertEqual(status, 403)
        status, _ = child.json("PATCH", "/api/v1/riders/%d" % self.parent, {"email": "pirate@test.invalid"})
        self.assertEqual(status, 403)

    def test_employee_cannot_change_manager(self):
        employee = self.session("employe@test.invalid")
        status, _ = employee.json("PATCH", "/api/v1/riders/%d" % self.manager_id, {"email": "pirate@test.invalid"})
        self.assertEqual(status, 403)
        db = sqlite3.connect(self.server.db)
        self.assertEqual(db.execute("SELECT email FROM person WHERE id = ?", (self.manager_id,)).fetchone()[0],
                         "gerant@test.invalid")
        db.close()
        # The employee still edits ordinary riders.
        status, _ = employee.json("PATCH", "/api/v1/riders/%d" % self.child, {"city": "Saumur"})
        self.assertEqual(status, 200)

    def test_client_cannot_edit_federation_fields(self):
        parent = self.session("parent@test.invalid")
        status, body = parent.json("GET", "/api/v1/riders/%d" % self.parent)
        self.assertEqual(status, 200)
        self.assertNotIn("galop", body["editable"])
        self.assertNotIn("licence_number", body["editable"])
        self.assertIn("city", body["editable"])
        status, _ = parent.json("PATCH", "/api/v1/riders/%d" % self.parent, {"galop": "galop-7"})
        self.assertIn(status, (403, 422))

    def test_login_not_moved_onto_family_address(self):
        db = sqlite3.connect(self.server.db)
        db.execute("INSERT INTO person (last_name, first_name, email, created_at, updated_at)"
                   " VALUES ('Famille', 'Sans compte', 'famille@test.invalid', 'x', 'x')")
        db.commit()
        db.close()
        parent = self.session("parent@test.invalid")
        status, body = parent.json("PATCH", "/api/v1/riders/%d" % self.parent, {"email": "famille@test.invalid"})
        self.assertEqual(status, 409)
        self.assertIn("email", body["error"]["fields"])

    def test_email_change_voids_password_links(self):
        db = sqlite3.connect(self.server.db)
        db.execute("INSERT INTO person (last_name, first_name, email, created_at, updated_at)"
                   " VALUES ('Invitée', 'Claire', 'ancienne@test.invalid', 'x', 'x')")
        db.commit()
        invited = db.execute("SELECT id FROM person WHERE email = 'ancienne@test.invalid'").fetchone()[0]
        db.close()
        status, body = self.manager.json("POST", "/api/v1/recovery-mails", {"person_id": invited})
        self.assertEqual(status, 200, body)
        db = sqlite3.connect(self.server.db)
        live = ("SELECT COUNT(*) FROM password_token WHERE person_id = ? AND used_at IS NULL"
                " AND voided_at IS NULL AND kind <> 'consent'")
        before = db.execute(live, (invited,)).fetchone()[0]
        db.close()
        self.assertGreater(before, 0)
        status, _ = self.manager.json("PATCH", "/api/v1/riders/%d" % invited, {"email": "nouvelle@test.invalid"})
        self.assertEqual(status, 200)
        db = sqlite3.connect(self.server.db)
        self.assertEqual(db.execute(live, (invited,)).fetchone()[0], 0)
        db.close()


if __name__ == "__main__":
    unittest.main()
