"""Importing rider files, from the command line and over HTTP, against a
real SQLite file.

Covered: the first import, a re-import with and without "Remplacer les
données", the Céléris export, a preview equal to the real run, undo, a kill
during an import, rejected rows, and every kind of bad input."""

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from licol_harness import LicolServer, Session, SHARED_DIR, SOURCE_DIR, LICOL_BIN

SAMPLES = os.path.join(SHARED_DIR, "samples")
GEN_RIDERS = os.path.join(SHARED_DIR, "tools", "gen-riders")
PASSWORD = "un-mot-de-passe-solide"


def sample(name):
    return os.path.join(SAMPLES, name)


def generate(path, rows, season=2026, fmt="ffe", seed=1):
    subprocess.run([sys.executable if os.path.exists(sys.executable) else "/usr/bin/python3",
                    GEN_RIDERS, "--format", fmt, "--rows", str(rows), "--season", str(season),
                    "--seed", str(seed), "--out", path], check=True)


PERSON_COLUMNS = ("id, last_name, first_name, birth_date, sex, email, email_invalid, phone, mobile,"
                  " address, address2, postcode, city, country, licence_number, licence_raw, galop,"
                  " match_key, search_text, created_at, created_by_import")


def db_fingerprint(db_path):
    """A digest of everything an import may write, to compare states.

    person.updated_at is left out: an undo restores the values, and the
    time of that change is rightly the time of the undo."""
    db = sqlite3.connect(db_path)
    digest = hashlib.sha256()
    for query in [
        "SELECT %s FROM person ORDER BY id" % PERSON_COLUMNS,
        "SELECT * FROM person_role ORDER BY person_id, role",
        "SELECT person_id, season, number, type, category, club, taken_on FROM licence ORDER BY person_id, season",
        "SELECT person_id, related_id, relationship, is_legal_guardian, is_payer FROM family_link ORDER BY 1, 2",
        "SELECT person_id, kind, value FROM person_contact ORDER BY 1, 2, 3",
        "SELECT * FROM person_field ORDER BY 1, 2",
    ]:
        for row in db.execute(query):
            digest.update(repr(row).encode())
    db.close()
    return digest.hexdigest()


def index_schema(db_path):
    """Every index of the database with its CREATE statement."""
    db = sqlite3.connect(db_path)
    try:
        return sorted(db.execute("SELECT name, tbl_name, sql FROM sqlite_schema WHERE type = 'index'"))
    finally:
        db.close()


class CliImport:
    """Runs licol import against one temporary database."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="licol-import-")
        self.db = os.path.join(self.tmp, "licol.db")

    def run(self, *args, expect=0):
        env = dict(os.environ, LICOL_HOME=SOURCE_DIR)
        result = subprocess.run([LICOL_BIN, "import", "--db", self.db, *args], capture_output=True,
                                env=env, timeout=600)
        if expect is not None and result.returncode != expect:
            raise AssertionError("licol import %s exited %d:\n%s\n%s" % (
                " ".join(args), result.returncode, result.stdout.decode(), result.stderr.decode()))
        return result

    def json(self, *args, expect=0):
        result = self.run("--json", *args, expect=expect)
        return json.loads(result.stdout)

    def query(self, sql, *params):
        db = sqlite3.connect(self.db)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def scalar(self, sql, *params):
        return self.query(sql, *params)[0][0]


class SeasonReimportTest(unittest.TestCase):
    """The life of a club's file over two seasons, with the shared samples."""

    def setUp(self):
        self.cli = CliImport()

    def test_first_import_of_2025(self):
        out = self.cli.json(sample("ffe-2025.csv"))
        self.assertEqual(out["rows"], 300)
        self.assertEqual(out["format"], "ffe")
        self.assertEqual(out["encoding"], "windows-1252")
        self.assertEqual(out["separator"], ";")
        self.assertEqual(out["rejected"], 0)
        riders = self.cli.scalar("SELECT COUNT(*) FROM person WHERE licence_number IS NOT NULL")
        guardians = self.cli.scalar("SELECT COUNT(DISTINCT related_id) FROM family_link")
        self.assertGreater(guardians, 0)
        self.assertEqual(out["created"], self.cli.scalar("SELECT COUNT(*) FROM person"))
        # Every imported person is a client, and no person is stored twice.
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM person WHERE id NOT IN"
                                         " (SELECT person_id FROM person_role)"), 0)
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM (SELECT match_key FROM person"
                                         " WHERE birth_date IS NOT NULL GROUP BY match_key HAVING COUNT(*) > 1)"), 0)
        self.assertGreater(riders, 280)
        # Characters of Windows-1252 survive.
        self.assertGreater(self.cli.scalar("SELECT COUNT(*) FROM person WHERE address LIKE '%Cœur%'"), 0)
        # Values are cleaned.
        phones = [r[0] for r in self.cli.query("SELECT phone FROM person WHERE phone IS NOT NULL")]
        self.assertTrue(all(p.startswith("+") for p in phones), phones[:5])
        for (name,) in self.cli.query("SELECT last_name FROM person"):
            self.assertFalse(name.islower() and name, name)
        postcodes = [r[0] for r in self.cli.query("SELECT postcode FROM person WHERE country = 'FR' AND postcode IS NOT NULL")]
        self.assertTrue(all(len(p) == 5 for p in postcodes), [p for p in postcodes if len(p) != 5][:5])

    def test_reimport_2026_without_replace(self):
        self.cli.json(sample("ffe-2025.csv"))
        # Staff edit a field of a person; the file must not erase that value.
        person_id, licence = self.cli.query("SELECT id, licence_number FROM person WHERE"
                                            " licence_number = '6327815G'")[0]
        db = sqlite3.connect(self.cli.db)
        db.execute("UPDATE person SET city = 'Ville saisie' WHERE id = ?", (person_id,))
        db.commit()
        db.close()
        before_people = self.cli.scalar("SELECT COUNT(*) FROM person")
        galop_before = dict(self.cli.query("SELECT licence_number, galop FROM person WHERE licence_number IS NOT NULL"))

        out = self.cli.json(sample("ffe-2026.csv"))
        self.assertEqual(out["rows"], 330)
        self.assertEqual(out["rejected"], 0)
        # 256 riders were already known: updated or unchanged, never created again.
        self.assertEqual(out["updated"] + out["unchanged"], 256)
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM person"), before_people + out["created"])
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM (SELECT licence_number FROM person"
                                         " WHERE licence_number IS NOT NULL GROUP BY licence_number HAVING COUNT(*) > 1)"), 0)
        # Licences renewed, lapsed ones kept as history.
        self.assertGreater(self.cli.scalar("SELECT COUNT(*) FROM licence WHERE season = 2026"), 300)
        lapsed = self.cli.scalar("SELECT COUNT(*) FROM licence l WHERE season = 2025 AND NOT EXISTS"
                                 " (SELECT 1 FROM licence m WHERE m.person_id = l.person_id AND m.season = 2026)")
        self.assertEqual(lapsed, 44)
        # The staff value stays; Galops move up.
        self.assertEqual(self.cli.scalar("SELECT city FROM person WHERE id = ?", person_id), "Ville saisie")
        galop_after = dict(self.cli.query("SELECT licence_number, galop FROM person WHERE licence_number IS NOT NULL"))
        self.assertEqual(galop_after["7182950U"], "galop-6")
        self.assertEqual(galop_before["7182950U"], "galop-5")
        # Phones filled in since are added.
        self.assertEqual(self.cli.scalar("SELECT mobile FROM person WHERE licence_number = '7182950U'"),
                         "+33604219380")
        # The three riders listed twice are one person each, with a warning.
        warnings = self.cli.query("SELECT message FROM import_row_issue WHERE run_id = ? AND kind = 'warning'"
                                  " AND message LIKE '%figure déjà%'", out["run_id"])
        self.assertEqual(len(warnings), 3)

    def test_reimport_is_idempotent(self):
        self.cli.json(sample("ffe-2025.csv"))
        self.cli.json(sample("ffe-2026.csv"))
        before = db_fingerprint(self.cli.db)
        out = self.cli.json(sample("ffe-2026.csv"))
        self.assertEqual(out["created"], 0)
        self.assertEqual(out["updated"], 0)
        self.assertEqual(db_fingerprint(self.cli.db), before)

    def test_replace_overwrites_staff_values(self):
        self.cli.json(sample("ffe-2025.csv"))
        db = sqlite3.connect(self.cli.db)
        db.execute("UPDATE person SET city = 'Ville saisie', first_name = 'Prénom saisi'"
                   " WHERE licence_number = '6327815G'")
        db.commit()
        db.close()
        self.cli.json("--replace", sample("ffe-2026.csv"))
        city, first = self.cli.query("SELECT city, first_name FROM person WHERE licence_number = '6327815G'")[0]
        self.assertEqual(city, "Saint-Denis")
        self.assertEqual(first, "Clara")

    def test_empty_incoming_value_never_erases(self):
        self.cli.json(sample("ffe-2025.csv"))
        db = sqlite3.connect(self.cli.db)
        db.execute("UPDATE person SET address2 = 'Bâtiment B' WHERE licence_number = '6327815G'")
        db.commit()
        db.close()
        self.cli.json("--replace", sample("ffe-2026.csv"))
        self.assertEqual(self.cli.scalar("SELECT address2 FROM person WHERE licence_number = '6327815G'"),
                         "Bâtiment B")

    def test_celeris_export(self):
        out = self.cli.json(sample("celeris-clients.csv"))
        self.assertEqual(out["format"], "celeris")
        self.assertEqual(out["encoding"], "utf-8")
        self.assertEqual(out["separator"], ",")
        self.assertEqual(out["rows"], 500)
        self.assertEqual(out["rejected"], 0)
        # Line breaks inside quoted addresses survive as text.
        self.assertGreater(self.cli.scalar("SELECT COUNT(*) FROM person WHERE address LIKE '%' || char(10) || '%'"
                                           " OR address LIKE '% %'"), 0)
        # 0000-00-00 is an unknown birth date, not a date.
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM person WHERE birth_date LIKE '0000%'"), 0)
        # Then the federation file: the same people are recognised.
        before = self.cli.scalar("SELECT COUNT(*) FROM person")
        out = self.cli.json(sample("ffe-2026.csv"))
        self.assertLess(out["created"], 330)
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM person"), before + out["created"])

    def test_preview_equals_real_run(self):
        self.cli.json(sample("ffe-2025.csv"))
        before = db_fingerprint(self.cli.db)
        preview = self.cli.json("--dry-run", sample("ffe-2026.csv"))
        self.assertTrue(preview["dry_run"])
        self.assertEqual(db_fingerprint(self.cli.db), before)
        real = self.cli.json(sample("ffe-2026.csv"))
        for key in ("rows", "created", "updated", "unchanged", "set_aside", "rejected", "warnings"):
            self.assertEqual(preview[key], real[key], key)

    def test_undo_restores_previous_state(self):
        self.cli.json(sample("ffe-2025.csv"))
        before = db_fingerprint(self.cli.db)
        out = self.cli.json(sample("ffe-2026.csv"))
        self.assertNotEqual(db_fingerprint(self.cli.db), before)
        result = self.cli.run("--undo", str(out["run_id"]))
        self.assertIn("annulé", result.stdout.decode())
        self.assertEqual(db_fingerprint(self.cli.db), before)
        self.assertEqual(self.cli.scalar("SELECT state FROM import_run WHERE id = ?", out["run_id"]), "undone")
        # Undoing twice is refused.
        result = self.cli.run("--undo", str(out["run_id"]), expect=1)
        self.assertIn("déjà annulé", result.stderr.decode())

    def test_undo_only_last_import(self):
        first = self.cli.json(sample("ffe-2025.csv"))
        self.cli.json(sample("ffe-2026.csv"))
        result = self.cli.run("--undo", str(first["run_id"]), expect=1)
        self.assertIn("dernier import", result.stderr.decode())

    def test_undo_deletes_sessions_of_removed_people(self):
        out = self.cli.json(sample("ffe-2025.csv"))
        person_id = self.cli.scalar("SELECT MAX(id) FROM person WHERE created_by_import = ?",
                                    out["run_id"])
        sessions = sqlite3.connect(self.cli.db + "-sessions")
        sessions.execute("INSERT INTO session (token_hash, person_id, csrf_token, created_at,"
                         " last_seen_at, expires_at) VALUES ('x', ?, 'y', '2026-12-04T10:00:00Z',"
                         " '2026-12-04T10:00:00Z', '2099-01-01T00:00:00Z')", (person_id,))
        sessions.commit()
        sessions.close()

        result = self.cli.json("--undo", str(out["run_id"]))
        self.assertTrue(result["undone"])
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM person WHERE id = ?", person_id), 0)
        sessions = sqlite3.connect(self.cli.db + "-sessions")
        count = sessions.execute("SELECT COUNT(*) FROM session").fetchone()[0]
        sessions.close()
        self.assertEqual(count, 0)

    def test_undo_refused_after_staff_change(self):
        self.cli.json(sample("ffe-2025.csv"))
        out = self.cli.json(sample("ffe-2026.csv"))
        person_id = self.cli.scalar("SELECT id FROM person WHERE licence_number = '7182950U'")
        db = sqlite3.connect(self.cli.db)
        db.execute("UPDATE person SET city = 'Changée' WHERE id = ?", (person_id,))
        for _ in range(2):  # two edits of the same field are reported once
            db.execute("INSERT INTO audit_log (at, person_id, action, field, old_value, new_value)"
                       " VALUES ('2026-12-04T10:00:00Z', ?, 'update', 'city', 'Saumur', 'Changée')", (person_id,))
        db.commit()
        db.close()
        before = db_fingerprint(self.cli.db)
        result = self.cli.json("--undo", str(out["run_id"]), expect=1)
        self.assertFalse(result["undone"])
        self.assertIn("Annulation impossible", result["error"])
        self.assertIn("Paris (ville)", result["error"])
        self.assertEqual(len(result["conflicts"]), 1)
        self.assertEqual(result["conflicts"][0]["field"], "city")
        self.assertEqual(result["conflicts"][0]["label"], "ville")
        self.assertEqual(db_fingerprint(self.cli.db), before)

    def test_progress_and_summary_in_french(self):
        result = self.cli.run(sample("ffe-2025.csv"))
        text = result.stdout.decode()
        self.assertIn("Import n° 1", text)
        self.assertIn("personnes créées", text)
        self.assertIn("rejetée", text)


class BadInputTest(unittest.TestCase):
    """Every bad file gets a French message, exit code 4, and no change."""

    def setUp(self):
        self.cli = CliImport()
        self.cli.json(sample("ffe-2025.csv"))
        self.before = db_fingerprint(self.cli.db)

    def write(self, name, data):
        path = os.path.join(self.cli.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def assert_rejected(self, data, *words):
        path = self.write("bad.csv", data)
        result = self.cli.run(path, expect=4)
        message = result.stderr.decode()
        for word in words:
            self.assertIn(word.lower(), message.lower())
        self.assertNotIn("Traceback", message)
        self.assertEqual(db_fingerprint(self.cli.db), self.before)
        self.assertEqual(self.cli.scalar("SELECT state FROM import_run ORDER BY id DESC LIMIT 1"), "failed")
        return message

    def test_empty_file(self):
        self.assert_rejected(b"", "vide")

    def test_header_only(self):
        self.assert_rejected("Numéro licence;Nom;Prénom;Millésime\r\n".encode("cp1252"), "en-tête")

    def test_unknown_columns_say_what_is_expected(self):
        message = self.assert_rejected(b"foo;bar;baz\r\n1;2;3\r\n", "Colonnes", "Millésime", "foo")
        self.assertIn("Expiration licence", message)

    def test_binary_data(self):
        self.assert_rejected(bytes(range(256)) * 40, "CSV")

    def test_nul_byte(self):
        self.assert_rejected("Numéro licence;Nom;Prénom;Millésime\r\n1234567A;Du\x00pont;Jean;2026\r\n".encode("cp1252"),
                             "nul", "ligne 2")

    def test_unterminated_quote(self):
        self.assert_rejected("Numéro licence;Nom;Prénom;Millésime\r\n1234567A;\"Dupont;Jean;2026\r\n".encode("cp1252"),
                             "guillemet", "ligne 2")

    def test_huge_field(self):
        data = "Numéro licence;Nom;Prénom;Millésime\r\n1234567A;".encode("cp1252") + b"a" * 200_000 + b";Jean;2026\r\n"
        self.assert_rejected(data, "ligne 2")

    def test_file_over_size_limit(self):
        path = self.write("licol.conf", b"max_upload = 1K\n")
        with open(sample("ffe-2025.csv"), "rb") as f:
            data = self.write("big.csv", f.read())
        result = subprocess.run([LICOL_BIN, "import", "--config", path, "--db", self.cli.db, data],
                                capture_output=True, env=dict(os.environ, LICOL_HOME=SOURCE_DIR))
        self.assertEqual(result.returncode, 4)
        self.assertIn("limite", result.stderr.decode())
        self.assertEqual(db_fingerprint(self.cli.db), self.before)

    def test_ragged_rows_rejected_not_fatal(self):
        data = ("Numéro licence;Nom;Prénom;Millésime\r\n"
                "7654321B;Nouveau;Jean;2026\r\n"
                "7654322C;Court\r\n"
                "7654323D;Long;Paul;2026;x;y\r\n"
                "7654324E;Vide;Luc;2026;;\r\n").encode("cp1252")
        path = self.write("ragged.csv", data)
        out = self.cli.json(path)
        self.assertEqual(out["created"], 2)
        self.assertEqual(out["rejected"], 2)
        reasons = [r[0] for r in self.cli.query("SELECT message FROM import_row_issue WHERE run_id = ? AND kind = 'rejected'",
                                                 out["run_id"])]
        self.assertTrue(all("colonnes" in r for r in reasons), reasons)

    def test_impossible_date_is_warning(self):
        data = ("Numéro licence;Nom;Prénom;Date de naissance;Millésime\r\n"
                "7654321B;Dupont;Jean;31/13/1075;2026\r\n").encode("cp1252")
        out = self.cli.json(self.write("dates.csv", data))
        self.assertEqual(out["created"], 1)
        self.assertEqual(out["warnings"], 1)
        self.assertIsNone(self.cli.scalar("SELECT birth_date FROM person WHERE licence_number = '7654321B'"))

    def test_ambiguous_rows_set_aside(self):
        db = sqlite3.connect(self.cli.db)
        for _ in range(2):
            db.execute("INSERT INTO person (last_name, first_name, birth_date, match_key, created_at, updated_at)"
                       " VALUES ('Homonyme', 'Jean', '2010-01-01', 'homonyme|jean|2010-01-01', 'x', 'x')")
        db.commit()
        db.close()
        data = ("Numéro licence;Nom;Prénom;Date de naissance;Millésime\r\n"
                "en cours;HOMONYME;jean;01/01/2010;2026\r\n").encode("cp1252")
        out = self.cli.json(self.write("ambiguous.csv", data))
        self.assertEqual(out["set_aside"], 1)
        self.assertEqual(out["created"], 0)
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM person WHERE last_name = 'Homonyme'"), 2)

    def test_shared_licence_number_set_aside(self):
        data = ("Numéro licence;Nom;Prénom;Date de naissance;Millésime\r\n"
                "3333333C;Martin;Jeanne;01/02/2003;2026\r\n"
                "3333333C;Durand;Paul;04/05/1980;2026\r\n"
                "3333333C;MARTIN;Jeanne;01/02/2003;2026\r\n"
                "3333333C;Martin-Petit;Jeanne;01/02/2003;2026\r\n").encode("cp1252")
        out = self.cli.json(self.write("shared.csv", data))
        self.assertEqual(out["created"], 1)
        self.assertEqual(out["set_aside"], 1)
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM person WHERE licence_number = '3333333C'"), 1)
        self.assertEqual(self.cli.scalar("SELECT last_name FROM person WHERE licence_number = '3333333C'"), "Martin")
        reason = self.cli.scalar("SELECT message FROM import_row_issue WHERE run_id = ? AND kind = 'set_aside'",
                                 out["run_id"])
        self.assertIn("3333333C", reason)
        self.assertIn("diffèrent", reason)

    def test_email_alone_never_matches(self):
        email = self.cli.scalar("SELECT email FROM person WHERE email IS NOT NULL LIMIT 1")
        data = ("Numéro licence;Nom;Prénom;Email;Millésime\r\n"
                "7654321B;Autre;Personne;%s;2026\r\n" % email).encode("cp1252")
        out = self.cli.json(self.write("email.csv", data))
        self.assertEqual(out["created"], 1)


class PluginFieldsTest(unittest.TestCase):
    def test_gabarit_columns_imported_and_validated(self):
        cli = CliImport()
        path = os.path.join(cli.tmp, "gabarit.csv")
        with open(path, "wb") as f:
            f.write(("Numéro licence;Nom;Prénom;Millésime;Taille;Poids\r\n"
                     "1234567A;Dupont;Jean;2026;1,55;45 kg\r\n"
                     "1234568B;Durand;Paul;2026;9m99;abc\r\n").encode("cp1252"))
        out = cli.json(path)
        self.assertEqual(out["created"], 2)
        fields = dict(((p, k), v) for p, k, v in cli.query("SELECT person_id, key, value FROM person_field"))
        jean = cli.scalar("SELECT id FROM person WHERE licence_number = '1234567A'")
        paul = cli.scalar("SELECT id FROM person WHERE licence_number = '1234568B'")
        # The plugin's import_row_mapped hook converts metres to centimetres.
        self.assertEqual(fields[(jean, "taille_cm")], "155")
        self.assertEqual(fields[(jean, "poids_kg")], "45")
        self.assertNotIn((paul, "taille_cm"), fields)
        messages = [m for (m,) in cli.query("SELECT message FROM import_row_issue WHERE kind = 'warning'")]
        self.assertTrue(any("Taille" in m for m in messages), messages)
        self.assertTrue(any("Poids" in m and "abc" in m for m in messages), messages)
        # A re-import with a new value only fills; with --replace it replaces.
        with open(path, "wb") as f:
            f.write(("Numéro licence;Nom;Prénom;Millésime;Taille\r\n"
                     "1234567A;Dupont;Jean;2026;160\r\n").encode("cp1252"))
        cli.json(path)
        self.assertEqual(cli.scalar("SELECT value FROM person_field WHERE person_id = ? AND key = 'taille_cm'", jean), "155")
        cli.json("--replace", path)
        self.assertEqual(cli.scalar("SELECT value FROM person_field WHERE person_id = ? AND key = 'taille_cm'", jean), "160")


def club_scripts(tmp, lua_before_return):
    """Copies scripts/ under tmp with lua_before_return inserted at the end
    of the federation format's map(), and returns the copy's path."""
    scripts = os.path.join(tmp, "scripts")
    shutil.copytree(os.path.join(SOURCE_DIR, "scripts"), scripts)
    ffe = os.path.join(scripts, "formats", "ffe.lua")
    with open(ffe, encoding="utf-8") as f:
        text = f.read()
    end_of_map = "  return record\nend\n\nfunction format.selftest"
    assert end_of_map in text
    text = text.replace(end_of_map, lua_before_return + end_of_map, 1)
    with open(ffe, "w", encoding="utf-8") as f:
        f.write(text)
    return scripts


class PersonKeysRefreshTest(unittest.TestCase):
    """Keys stored by an older computation are recomputed once at start-up,
    so that the next import still recognises the people."""

    def test_stale_keys_recomputed_once(self):
        cli = CliImport()
        first = cli.json(sample("ffe-2025.csv"))
        expected = cli.query("SELECT id, match_key, search_text FROM person ORDER BY id")
        db = sqlite3.connect(cli.db)
        db.execute("UPDATE person SET match_key = upper(match_key), search_text = ''")
        db.execute("DELETE FROM schema_migration WHERE scope = 'person_keys'")
        db.commit()
        db.close()

        again = cli.json(sample("ffe-2025.csv"))
        self.assertEqual(cli.query("SELECT id, match_key, search_text FROM person ORDER BY id"),
                         expected)
        self.assertEqual(again["created"], 0)
        self.assertEqual(cli.scalar("SELECT COUNT(*) FROM person"), first["created"])
        self.assertEqual(cli.scalar("SELECT COUNT(*) FROM schema_migration"
                                    " WHERE scope = 'person_keys'"), 1)

    def test_keys_of_newer_program_refused(self):
        cli = CliImport()
        cli.json(sample("ffe-2025.csv"))
        before = db_fingerprint(cli.db)
        db = sqlite3.connect(cli.db)
        db.execute("INSERT INTO schema_migration (scope, number, name, applied_at)"
                   " VALUES ('person_keys', 999, 'refresh', '2030-01-01T00:00:00Z')")
        db.commit()
        db.close()
        result = cli.run(sample("ffe-2026.csv"), expect=None)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("version plus récente de Licol", result.stderr.decode())
        self.assertEqual(db_fingerprint(cli.db), before)


class RowRollbackTest(unittest.TestCase):
    """Rows run without a savepoint each; a row that the database refuses
    half-way makes the run start again with one savepoint per row."""

    def setUp(self):
        self.cli = CliImport()
        # A club's script that writes values the person table refuses (sex
        # must be F or M, galop a known level), for riders of one city.
        scripts = club_scripts(self.cli.tmp, "  if record.city == \"Nulle-Part\" then\n"
                                             "    record.sex = \"X\"\n"
                                             "    record.galop = \"galop-12\"\n"
                                             "  end\n")
        self.env = dict(os.environ, LICOL_HOME=SOURCE_DIR, LICOL_SCRIPTS_DIR=scripts)

    def run_file(self, lines, succeeds=True):
        """Imports lines as a federation file. Returns the JSON summary and
        the log, or for a run expected to fail, the failed run's error."""
        path = os.path.join(self.cli.tmp, "file.csv")
        with open(path, "wb") as f:
            f.write("\r\n".join(lines + [""]).encode("cp1252"))
        result = subprocess.run([LICOL_BIN, "import", "--db", self.cli.db, "--json", path],
                                capture_output=True, env=self.env, timeout=60)
        if not succeeds:
            self.assertNotEqual(result.returncode, 0)
            state, error = self.cli.query("SELECT state, error FROM import_run"
                                          " ORDER BY id DESC LIMIT 1")[0]
            self.assertEqual(state, "failed")
            return error
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        return json.loads(result.stdout), result.stderr.decode()

    def test_refused_values_dropped_with_warning(self):
        out, log = self.run_file(["Numéro licence;Nom;Prénom;Millésime;Ville",
                                  "1234568B;Bizarre;Paul;2026;Nulle-Part"])
        self.assertEqual(out["created"], 1)
        self.assertNotIn("one savepoint per row", log)
        row = self.cli.query("SELECT sex, galop, city FROM person")[0]
        self.assertEqual(row, (None, None, "Nulle-Part"))
        messages = dict(self.cli.query("SELECT field, message FROM import_row_issue"
                                       " WHERE kind = 'warning'"))
        self.assertIn("« X »", messages["sex"])
        self.assertIn("« galop-12 »", messages["galop"])

    def test_trigger_rollback_fails_whole_run(self):
        """RAISE(ROLLBACK) ends the whole transaction: the run fails and no
        row after it may be committed on its own."""
        out, _ = self.run_file(["Numéro licence;Nom;Prénom;Millésime",
                                "1234567A;Dupont;Jean;2026"])
        self.assertEqual(out["created"], 1)
        db = sqlite3.connect(self.cli.db)
        db.execute("CREATE TRIGGER cancel_all BEFORE INSERT ON person"
                   " WHEN NEW.last_name = 'Annule' BEGIN SELECT RAISE(ROLLBACK, 'tout annulé'); END")
        db.commit()
        db.close()
        before = db_fingerprint(self.cli.db)

        lines = ["Numéro licence;Nom;Prénom;Millésime"]
        lines += ["12%05dA;Avant;Personne%d;2026" % (i, i) for i in range(300)]
        lines += ["1299999Z;Annule;Paul;2026"]
        lines += ["13%05dB;Apres;Personne%d;2026" % (i, i) for i in range(300)]
        error = self.run_file(lines, succeeds=False)
        self.assertEqual(db_fingerprint(self.cli.db), before)
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM person"), 1)
        self.assertIn("annulé tout l'import à la ligne 302", error)
        self.assertIn("« tout annulé »", error)

    def test_rolled_back_row_counts_nothing(self):
        """A guardian created by a row that the database then refuses is
        rolled back with it, and is neither counted nor in the report."""
        self.run_file(["Numéro licence;Nom;Prénom;Millésime", "1234567A;Dupont;Jean;2026"])
        db = sqlite3.connect(self.cli.db)
        db.execute("CREATE TRIGGER no_link BEFORE INSERT ON family_link"
                   " BEGIN SELECT RAISE(ABORT, 'lien refusé'); END")
        db.commit()
        db.close()
        header = ("Numéro licence;Nom;Prénom;Millésime;Date de naissance;"
                  "Nom du responsable légal;Prénom du responsable légal")
        out, _ = self.run_file([header,
                                "1234568B;Petit;Hugo;2026;01/09/2016;Parent;Nouveau",
                                "1234569C;Durand;Lise;2026;02/03/1990;;"])
        self.assertEqual((out["created"], out["rejected"]), (1, 1))
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM person"), 2)
        report = json.loads(self.cli.scalar("SELECT report FROM import_run ORDER BY id DESC"
                                            " LIMIT 1"))
        names = json.dumps(report, ensure_ascii=False)
        self.assertNotIn("Nouveau", names)
        self.assertIn("Lise", names)

    def test_second_line_that_changes_counts_update(self):
        """A person listed twice whose first line changes nothing and whose
        second line adds a licence is counted once, as updated."""
        self.run_file(["Numéro licence;Nom;Prénom;Millésime", "1234567A;Dupont;Jean;2025"])
        out, _ = self.run_file(["Numéro licence;Nom;Prénom;Millésime",
                                "1234567A;Dupont;Jean;2025",
                                "1234567A;Dupont;Jean;2026"])
        self.assertEqual((out["updated"], out["unchanged"], out["created"]), (1, 0, 0))
        self.assertEqual(self.cli.query("SELECT season FROM licence ORDER BY season"),
                         [(2025,), (2026,)])

    def test_trigger_rollback_in_unreported_statement(self):
        """A rollback in a statement that succeeds for the row (here the audit
        row of an address moved out of "invalid") still fails the run."""
        out, _ = self.run_file(["Numéro licence;Nom;Prénom;Millésime;Email",
                                "1234567A;Dupont;Jean;2026;jean@@exemple.fr"])
        self.assertEqual(out["created"], 1)
        db = sqlite3.connect(self.cli.db)
        db.execute("CREATE TRIGGER cancel_audit BEFORE INSERT ON audit_log"
                   " WHEN NEW.field = 'email_invalid'"
                   " BEGIN SELECT RAISE(ROLLBACK, 'refusé par l''extension'); END")
        db.commit()
        db.close()
        before = db_fingerprint(self.cli.db)

        error = self.run_file(["Numéro licence;Nom;Prénom;Millésime;Email",
                               "1234567A;Dupont;Jean;2027;jean@exemple.fr",
                               "1234568B;Martin;Lise;2027;lise@exemple.fr"], succeeds=False)
        self.assertEqual(db_fingerprint(self.cli.db), before)
        self.assertIn("annulé tout l'import à la ligne 2", error)

    def test_trigger_ignore_on_insert_rejects_row(self):
        """RAISE(IGNORE) skips a person's insert without an error: the row is
        rejected, and nothing is attached to another person."""
        out, _ = self.run_file(["Numéro licence;Nom;Prénom;Millésime",
                                "1234567A;Dupont;Jean;2026"])
        jean = self.cli.scalar("SELECT id FROM person")
        db = sqlite3.connect(self.cli.db)
        db.execute("UPDATE person_role SET role = 'employe' WHERE person_id = ?", (jean,))
        db.execute("CREATE TRIGGER skip_person BEFORE INSERT ON person"
                   " WHEN NEW.last_name LIKE 'Ignor%' BEGIN SELECT RAISE(IGNORE); END")
        db.commit()
        db.close()

        out, _ = self.run_file(["Numéro licence;Nom;Prénom;Millésime",
                                "1111111A;Nouveau;Alice;2026",
                                "2222222B;Ignoré;Bruno;2026"])
        self.assertEqual(out["created"], 1)
        self.assertEqual(out["rejected"], 1)
        self.assertEqual(self.cli.query("SELECT role FROM person_role WHERE person_id = ?", jean),
                         [("employe",)])
        self.assertEqual(self.cli.query("SELECT number FROM licence WHERE person_id = ?", jean),
                         [("1234567A",)])
        reason = self.cli.scalar("SELECT message FROM import_row_issue WHERE kind = 'rejected'"
                                 " ORDER BY id DESC LIMIT 1")
        self.assertIn("a ignoré la création de cette personne", reason)

        undo = self.cli.json("--undo", str(out["run_id"]))
        self.assertTrue(undo["undone"])
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM person WHERE id = ?", jean), 1)

    def test_refused_row_rolled_back_alone(self):
        out, _ = self.run_file(["Numéro licence;Nom;Prénom;Millésime",
                                "1234567A;Dupont;Jean;2026",
                                "1234568B;Bizarre;Paul;2026"])
        self.assertEqual(out["created"], 2)
        paul = self.cli.scalar("SELECT id FROM person WHERE licence_number = '1234568B'")

        # An integrator's trigger (as a plugin migration may add) refuses
        # one city. Paul's row fills his city (one audit entry written)
        # before the person update fails: both must be undone, and only
        # that row.
        db = sqlite3.connect(self.cli.db)
        db.execute("CREATE TRIGGER refuse_city BEFORE UPDATE OF city ON person"
                   " WHEN NEW.city = 'Interdite' BEGIN SELECT RAISE(ABORT, 'ville refusée'); END")
        db.commit()
        db.close()

        out, log = self.run_file(["Numéro licence;Nom;Prénom;Millésime;Ville",
                                  "1234567A;Dupont;Jean;2026;Lyon",
                                  "1234568B;Bizarre;Paul;2026;Interdite",
                                  "1234569C;Durand;Lise;2026;Lyon"])

        self.assertIn("one savepoint per row", log)
        self.assertEqual(out["updated"], 1)
        self.assertEqual(out["created"], 1)
        self.assertEqual(out["rejected"], 1)

        self.assertIsNone(self.cli.scalar("SELECT city FROM person WHERE id = ?", paul))
        self.assertEqual(self.cli.scalar("SELECT COUNT(*) FROM audit_log WHERE person_id = ?"
                                         " AND action = 'update'", paul), 0)
        self.assertEqual(self.cli.scalar("SELECT city FROM person"
                                         " WHERE licence_number = '1234567A'"), "Lyon")

        reasons = [m for (m,) in self.cli.query("SELECT message FROM import_row_issue"
                                                " WHERE kind = 'rejected'")]
        self.assertEqual(len(reasons), 1)
        # The trigger's own message reaches staff.
        self.assertIn("« ville refusée »", reasons[0])


class ScriptFailureTest(unittest.TestCase):
    """A format script that fails on many rows stops the run; the rows it
    failed on are still listed for staff."""

    def test_failed_run_keeps_rejected_rows(self):
        cli = CliImport()
        scripts = club_scripts(cli.tmp, "  if record.city == \"Erreur\" then"
                                        " error(\"ville en erreur\") end\n")
        path = os.path.join(cli.tmp, "errors.csv")
        lines = ["Numéro licence;Nom;Prénom;Millésime;Ville"]
        for i in range(600):
            city = "Erreur" if 500 <= i < 520 else "Lyon"
            lines.append("%07dA;Nom%d;Prénom;2026;%s" % (1000000 + i, i, city))
        with open(path, "wb") as f:
            f.write("\r\n".join(lines + [""]).encode("cp1252"))
        env = dict(os.environ, LICOL_HOME=SOURCE_DIR, LICOL_SCRIPTS_DIR=scripts)
        result = subprocess.run([LICOL_BIN, "import", "--db", cli.db, "--json", path],
                                capture_output=True, env=env, timeout=60)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("Corrigez scripts/formats/ffe.lua", result.stderr.decode())
        self.assertEqual(cli.scalar("SELECT COUNT(*) FROM person"), 0)
        self.assertEqual(cli.scalar("SELECT state FROM import_run"), "failed")
        rejected = cli.query("SELECT line_no, message FROM import_row_issue"
                             " WHERE kind = 'rejected' ORDER BY line_no")
        self.assertEqual([line for (line, _) in rejected], list(range(502, 522)))
        self.assertTrue(all("ville en erreur" in m for (_, m) in rejected), rejected[:2])


class ProtectedCellsTest(unittest.TestCase):
    def test_apostrophe_of_download_removed(self):
        # The rejected-rows download writes '=, '+, '- and '@ so that a
        # spreadsheet does not run the cell; importing it again removes
        # the apostrophe and keeps the rest of the value.
        cli = CliImport()
        path = os.path.join(cli.tmp, "protected.csv")
        with open(path, "wb") as f:
            f.write(("Numéro licence;Nom;Prénom;Millésime;Ville\r\n"
                     "1234567A;'-Dupont;'@Jean;2026;'=Lyon\r\n").encode("cp1252"))
        out = cli.json(path)
        self.assertEqual(out["created"], 1)
        self.assertEqual(cli.query("SELECT last_name, first_name, city FROM person"),
                         [("-Dupont", "@Jean", "=Lyon")])


class LargeImportTest(unittest.TestCase):
    """A large file sets the person table's secondary indexes aside and
    builds them again before the commit."""

    def test_indexes_rebuilt_after_large_import(self):
        cli = CliImport()
        cli.json(sample("ffe-2025.csv"))
        schema = index_schema(cli.db)
        person_indexes = [name for (name, table, sql) in schema if table == "person" and sql]
        self.assertIn("person_email", person_indexes)
        big = os.path.join(cli.tmp, "big.csv")
        generate(big, 25000, seed=3)

        preview = cli.run("--json", "--dry-run", big)
        self.assertIn("indexes set aside", preview.stderr.decode())
        self.assertEqual(index_schema(cli.db), schema)

        result = cli.run("--json", big)
        self.assertIn("indexes set aside", result.stderr.decode())
        out = json.loads(result.stdout)
        self.assertEqual(json.loads(preview.stdout)["created"], out["created"])
        self.assertEqual(index_schema(cli.db), schema)
        db = sqlite3.connect(cli.db)
        try:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            # The rebuilt index serves queries: a lookup by e-mail uses it.
            plan = " ".join(r[3] for r in db.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM person WHERE email = 'x@example.org'"))
            self.assertIn("person_email", plan)
        finally:
            db.close()

    def test_index_failing_at_rebuild_fails_run(self):
        cli = CliImport()
        cli.json(sample("ffe-2025.csv"))
        # An integrator's expression index that fails for one city: set
        # aside during the run, it fails at the rebuild.
        db = sqlite3.connect(cli.db)
        db.execute("CREATE INDEX person_city_check ON person"
                   " (json_extract(CASE WHEN city = 'Boum' THEN '{' ELSE '1' END, '$'))")
        db.commit()
        db.close()
        before = db_fingerprint(cli.db)
        schema = index_schema(cli.db)
        big = os.path.join(cli.tmp, "big.csv")
        generate(big, 25000, seed=4)
        with open(big, "rb") as f:
            header = f.readline().decode("cp1252").rstrip("\r\n").split(";")
        row = dict.fromkeys(header, "")
        row.update({"Numéro licence": "7654321Z", "Nom": "Durand", "Prénom": "Paul",
                    "Millésime": "2026", "Ville": "Boum"})
        with open(big, "ab") as f:
            f.write((";".join(row[name] for name in header) + "\r\n").encode("cp1252"))
        result = cli.run("--json", big, expect=None)
        self.assertNotEqual(result.returncode, 0)
        message = result.stderr.decode()
        self.assertIn("reconstruction des index", message)
        self.assertNotIn("not an error", message)
        self.assertEqual(db_fingerprint(cli.db), before)
        self.assertEqual(index_schema(cli.db), schema)

    def test_few_wide_lines_keep_indexes(self):
        # A file larger than 20,000 ordinary rows, but of three lines.
        cli = CliImport()
        path = os.path.join(cli.tmp, "wide.csv")
        filler = ";".join("Colonne %d" % i for i in range(40))
        wide = ";".join("x" * 60000 for _ in range(40))
        with open(path, "wb") as f:
            f.write(("Numéro licence;Nom;Prénom;Millésime;%s\r\n" % filler).encode("cp1252"))
            for i in range(3):
                f.write(("123456%dA;Dupont;Jean%d;2026;%s\r\n" % (i, i, wide)).encode("cp1252"))
        self.assertGreater(os.path.getsize(path), 20000 * 120)
        result = cli.run("--json", path)
        self.assertEqual(json.loads(result.stdout)["created"], 3)
        self.assertNotIn("indexes set aside", result.stderr.decode())

    def test_small_import_keeps_indexes(self):
        cli = CliImport()
        result = cli.run("--json", sample("ffe-2025.csv"))
        self.assertNotIn("indexes set aside", result.stderr.decode())


class CrashTest(unittest.TestCase):
    def test_kill_during_import_leaves_database_unchanged(self):
        cli = CliImport()
        cli.json(sample("ffe-2025.csv"))
        before = db_fingerprint(cli.db)
        schema_before = index_schema(cli.db)
        big = os.path.join(cli.tmp, "big.csv")
        generate(big, 60000, seed=7)
        env = dict(os.environ, LICOL_HOME=SOURCE_DIR)
        proc = subprocess.Popen([LICOL_BIN, "import", "--db", cli.db, big], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        # Wait until the run is writing, then kill it.
        deadline = time.time() + 60
        while time.time() < deadline:
            if os.path.exists(cli.db + "-wal") and os.path.getsize(cli.db + "-wal") > 2_000_000:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.assertEqual(db_fingerprint(cli.db), before)
        # The run had set indexes aside (60,000 rows); the kill brings
        # them back with the rest of the transaction.
        self.assertEqual(index_schema(cli.db), schema_before)
        db = sqlite3.connect(cli.db)
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        db.close()
        # The next command marks the interrupted run as failed.
        out = cli.json(sample("ffe-2026.csv"))
        states = cli.query("SELECT state FROM import_run ORDER BY id")
        self.assertEqual([s for (s,) in states], ["done", "failed", "done"])
        self.assertGreater(out["updated"], 0)


def manager_session(server):
    session = Session(server)
    session.login("gerant@test.invalid", server.admin_password)
    status, _ = session.json("POST", "/api/v1/account/password",
                             {"current_password": server.admin_password, "new_password": PASSWORD})
    assert status == 204, status
    return session


class HttpImportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = LicolServer().start()
        cls.manager = manager_session(cls.server)
        cls.server.add_user("client@test.invalid", "client", PASSWORD, "Client", "Jean")
        cls.server.add_user("compta@test.invalid", "comptable", PASSWORD, "Compta", "Anne")

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def upload(self, session, path, **options):
        query = "&".join("%s=%s" % (k, v) for k, v in dict(options, filename=os.path.basename(path)).items())
        with open(path, "rb") as f:
            data = f.read()
        status, headers, body = session.call("POST", "/api/v1/imports?" + query, raw_body=data,
                                             headers={"Content-Type": "text/csv"})
        return status, json.loads(body)

    def wait(self, session, run_id, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, run = session.json("GET", "/api/v1/imports/%d" % run_id)
            self.assertEqual(status, 200)
            if run["state"] in ("done", "failed", "undone"):
                return run
            time.sleep(0.05)
        self.fail("import %d did not finish" % run_id)

    def test_preview_confirm_report_undo(self):
        status, body = self.upload(self.manager, sample("ffe-2025.csv"), dry_run=1)
        self.assertEqual(status, 202, body)
        preview = self.wait(self.manager, body["run"]["id"])
        self.assertEqual(preview["state"], "done")
        self.assertTrue(preview["dry_run"])
        self.assertTrue(preview["confirmable"])
        self.assertEqual(preview["counts"]["rows"], 300)
        self.assertGreater(len(preview["sample_changes"]), 0)
        change = preview["sample_changes"][0]
        self.assertEqual(change["action"], "create")
        self.assertIn("label", change["changes"][0])
        db = sqlite3.connect(self.server.db)
        self.assertEqual(db.execute("SELECT COUNT(*) FROM person WHERE licence_number IS NOT NULL").fetchone()[0], 0)

        status, body = self.manager.json("POST", "/api/v1/imports/%d/confirm" % preview["id"])
        self.assertEqual(status, 202, body)
        real = self.wait(self.manager, body["run"]["id"])
        self.assertEqual(real["state"], "done")
        self.assertEqual(real["counts"], preview["counts"])
        self.assertEqual(real["preview_of"], preview["id"])
        self.assertTrue(real["undoable"])
        self.assertEqual(real["by"]["id"], 1)
        self.assertGreater(db.execute("SELECT COUNT(*) FROM person WHERE licence_number IS NOT NULL").fetchone()[0], 280)
        # The preview's file is consumed: a second confirmation is refused.
        status, body = self.manager.json("POST", "/api/v1/imports/%d/confirm" % preview["id"])
        self.assertEqual(status, 409)

        status, history = self.manager.json("GET", "/api/v1/imports")
        self.assertEqual(status, 200)
        self.assertEqual([r["id"] for r in history["items"][:2]], [real["id"], preview["id"]])

        status, body = self.manager.json("POST", "/api/v1/imports/%d/undo" % real["id"])
        self.assertEqual(status, 200, body)
        self.assertEqual(body["run"]["state"], "undone")
        self.assertEqual(db.execute("SELECT COUNT(*) FROM person WHERE licence_number IS NOT NULL").fetchone()[0], 0)
        db.close()

    def test_rejected_rows_download(self):
        data = ("Numéro licence;Nom;Prénom;Millésime\r\n"
                "7654321B;Bon;Jean;2026\r\n"
                "=1+1;Court\r\n"
                "@SUM(A1);;;2026\r\n").encode("cp1252")
        path = os.path.join(self.server.tmp, "rejets.csv")
        with open(path, "wb") as f:
            f.write(data)
        status, body = self.upload(self.manager, path)
        run = self.wait(self.manager, body["run"]["id"])
        self.assertEqual(run["counts"]["rejected"], 2)

        status, headers, csv_bytes = self.manager.call("GET", "/api/v1/imports/%d/rejected.csv" % run["id"])
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/csv"))
        self.assertIn("attachment", headers["content-disposition"])
        text = csv_bytes.decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text), delimiter=";"))
        self.assertEqual(rows[0][-1], "Motif du rejet")
        self.assertEqual(rows[0][:4], ["Numéro licence", "Nom", "Prénom", "Millésime"])

        # No cell starts with a formula character.
        for row in rows[1:]:
            for cell in row:
                self.assertFalse(cell[:1] in ("=", "+", "-", "@"), cell)
        self.assertEqual(rows[1][0], "'=1+1")
        self.assertIn("colonnes", rows[1][-1])
        self.assertEqual(rows[2][0], "'@SUM(A1)")

        # The file can be fixed and imported again. The apostrophe is removed
        # on import: the row still rejected comes back protected once, not
        # twice.
        fixed = os.path.join(self.server.tmp, "corrige.csv")
        with open(fixed, "w", encoding="utf-8-sig") as f:
            f.write(text.replace("'=1+1;Court", "7654329Z;Court;Paul;2026"))
        status, body = self.upload(self.manager, fixed)
        run = self.wait(self.manager, body["run"]["id"])
        self.assertEqual(run["state"], "done", run)
        self.assertEqual(run["counts"]["rejected"], 1)
        status, _, csv_bytes = self.manager.call("GET", "/api/v1/imports/%d/rejected.csv" % run["id"])
        rows = list(csv.reader(io.StringIO(csv_bytes.decode("utf-8-sig")), delimiter=";"))
        self.assertEqual(rows[1][0], "'@SUM(A1)")

    def test_permissions(self):
        client = Session(self.server)
        client.login("client@test.invalid", PASSWORD)
        status, body = self.upload(client, sample("ffe-2025.csv"), dry_run=1)
        self.assertEqual(status, 403)
        self.assertEqual(body["error"]["code"], "forbidden")
        status, _ = client.json("GET", "/api/v1/imports")
        self.assertEqual(status, 403)
        compta = Session(self.server)
        compta.login("compta@test.invalid", PASSWORD)
        status, _ = compta.json("GET", "/api/v1/imports")
        self.assertEqual(status, 403)
        anonymous = Session(self.server)
        status, _ = anonymous.json("GET", "/api/v1/imports")
        self.assertEqual(status, 401)

    def test_bad_file_over_http(self):
        path = os.path.join(self.server.tmp, "vide.csv")
        with open(path, "wb") as f:
            f.write(b"foo;bar\r\n1;2\r\n")
        status, body = self.upload(self.manager, path)
        self.assertEqual(status, 202)
        run = self.wait(self.manager, body["run"]["id"])
        self.assertEqual(run["state"], "failed")
        self.assertIn("Colonnes non reconnues", run["error"])

    def test_empty_upload(self):
        status, _, body = self.manager.call("POST", "/api/v1/imports?filename=x.csv", raw_body=b"")
        self.assertEqual(status, 400)
        self.assertIn("Aucun fichier", json.loads(body)["error"]["message"])


class ServerBusyTest(unittest.TestCase):
    def test_server_answers_during_large_import_and_refuses_overlap(self):
        server = LicolServer({"max_upload": "200M"}).start()
        try:
            manager = manager_session(server)
            big = os.path.join(server.tmp, "big.csv")
            generate(big, 40000, seed=3)
            with open(big, "rb") as f:
                data = f.read()
            status, _, body = manager.call("POST", "/api/v1/imports?filename=big.csv", raw_body=data)
            self.assertEqual(status, 202, body)
            run_id = json.loads(body)["run"]["id"]
            # Meanwhile the server keeps responding, and a second import is rejected.
            latencies = []
            saw_running = False
            status2, _, body2 = manager.call("POST", "/api/v1/imports?filename=x.csv", raw_body=data[:2000])
            if status2 == 409:
                self.assertIn("déjà en cours", json.loads(body2)["error"]["message"])
            for _ in range(200):
                start = time.time()
                status, _, _ = server.request("GET", "/healthz")
                latencies.append(time.time() - start)
                self.assertEqual(status, 200)
                _, run = manager.json("GET", "/api/v1/imports/%d" % run_id)
                if run["state"] == "running":
                    saw_running = True
                    self.assertIn("percent", run["progress"])
                if run["state"] in ("done", "failed"):
                    break
                time.sleep(0.02)
            self.assertTrue(saw_running)
            self.assertLess(max(latencies), 1.0)
            while run["state"] not in ("done", "failed"):
                time.sleep(0.1)
                _, run = manager.json("GET", "/api/v1/imports/%d" % run_id)
            self.assertEqual(run["state"], "done", run.get("error"))
            self.assertEqual(run["counts"]["rows"], 40000)
        finally:
            server.cleanup()


class WritesDuringImportTest(unittest.TestCase):
    """While an import holds the write lock, logins go on and other writes
    fail at once with a French message, so that the server never stalls."""

    def test_login_works_and_edit_fails_fast(self):
        tmp = tempfile.mkdtemp(prefix="licol-slow-")
        # About 2 ms of mapping per row keeps the import writing for
        # several seconds on 2,500 rows.
        scripts = club_scripts(tmp, "  local start = os.clock()\n"
                                    "  while os.clock() - start < 0.002 do end\n")
        server = LicolServer(scripts_dir=scripts).start()
        try:
            manager = manager_session(server)
            employee_id = server.add_user("employe@test.invalid", "employe", PASSWORD)
            # A session last seen over a minute ago writes last_seen_at on
            # its next request. That write must not change how later
            # requests wait for the lock.
            server.stop()
            db = sqlite3.connect(server.sessions_db)
            db.execute("UPDATE session SET last_seen_at ="
                       " strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-2 minutes')")
            db.commit()
            db.close()
            server.start()
            self.assertEqual(manager.json("GET", "/api/v1/session")[0], 200)

            path = os.path.join(server.tmp, "lent.csv")
            generate(path, 2500, seed=11)
            with open(path, "rb") as f:
                status, _, body = manager.call("POST", "/api/v1/imports?filename=lent.csv",
                                               raw_body=f.read())
            self.assertEqual(status, 202, body)
            run_id = json.loads(body)["run"]["id"]
            for _ in range(500):
                _, run = manager.json("GET", "/api/v1/imports/%d" % run_id)
                if run["state"] == "running" and run["progress"].get("rows", 0) > 50:
                    break
                time.sleep(0.01)
            self.assertEqual(run["state"], "running")

            start = time.time()
            employee = Session(server)
            employee.login("employe@test.invalid", PASSWORD)
            self.assertLess(time.time() - start, 1.0)

            start = time.time()
            status, body = manager.json("PATCH", "/api/v1/riders/%d" % employee_id, {"city": "Pau"})
            self.assertLess(time.time() - start, 1.0)
            self.assertEqual(status, 503)
            self.assertEqual(body["error"]["code"], "busy")
            self.assertIn("Un import de fichier", body["error"]["message"])

            start = time.time()
            status, _, _ = server.request("GET", "/healthz")
            self.assertEqual(status, 200)
            self.assertLess(time.time() - start, 1.0)
            # The checks above ran while the import was still writing.
            _, run = manager.json("GET", "/api/v1/imports/%d" % run_id)
            self.assertEqual(run["state"], "running")

            while run["state"] not in ("done", "failed"):
                time.sleep(0.1)
                _, run = manager.json("GET", "/api/v1/imports/%d" % run_id)
            self.assertEqual(run["state"], "done", run.get("error"))
            status, body = manager.json("PATCH", "/api/v1/riders/%d" % employee_id, {"city": "Pau"})
            self.assertEqual(status, 200, body)
            self.assertEqual(employee.json("GET", "/api/v1/session")[0], 200)
        finally:
            server.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


class OtherProcessLockTest(unittest.TestCase):
    def test_edit_waits_half_second_at_most(self):
        """A write lock held by another process (such as `licol import` run
        by hand) makes an edit fail after half a second, not five."""
        server = LicolServer().start()
        try:
            manager = manager_session(server)
            employee_id = server.add_user("employe@test.invalid", "employe", PASSWORD)
            holder = sqlite3.connect(server.db, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            try:
                start = time.time()
                status, body = manager.json("PATCH", "/api/v1/riders/%d" % employee_id,
                                            {"city": "Pau"})
                elapsed = time.time() - start
                # The lock is known to be long now: the next write does not wait.
                start = time.time()
                again, _ = manager.json("PATCH", "/api/v1/riders/%d" % employee_id,
                                        {"city": "Pau"})
                elapsed_again = time.time() - start
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            self.assertEqual(status, 503)
            self.assertEqual(body["error"]["code"], "busy")
            self.assertIn("occupée par un autre traitement", body["error"]["message"])
            self.assertGreaterEqual(elapsed, 0.4)
            self.assertLess(elapsed, 2.0)
            self.assertEqual(again, 503)
            self.assertLess(elapsed_again, 0.3)
            status, body = manager.json("PATCH", "/api/v1/riders/%d" % employee_id,
                                        {"city": "Pau"})
            self.assertEqual(status, 200, body)

            # A short lock soon after is waited out, as before the long one.
            time.sleep(0.3)
            holder = sqlite3.connect(server.db, isolation_level=None, check_same_thread=False)
            holder.execute("BEGIN IMMEDIATE")
            release = threading.Timer(0.2, lambda: holder.execute("ROLLBACK"))
            release.start()
            try:
                status, body = manager.json("PATCH", "/api/v1/riders/%d" % employee_id,
                                            {"city": "Dax"})
            finally:
                release.join()
                holder.close()
            self.assertEqual(status, 200, body)
        finally:
            server.cleanup()


class ShutdownDuringImportTest(unittest.TestCase):
    def test_sigterm_cancels_running_import(self):
        server = LicolServer({"max_upload": "200M"}).start()
        try:
            manager = manager_session(server)
            big = os.path.join(server.tmp, "big.csv")
            generate(big, 60000, seed=5)
            with open(big, "rb") as f:
                data = f.read()
            status, _, body = manager.call("POST", "/api/v1/imports?filename=big.csv", raw_body=data)
            self.assertEqual(status, 202, body)
            run_id = json.loads(body)["run"]["id"]
            for _ in range(200):
                _, run = manager.json("GET", "/api/v1/imports/%d" % run_id)
                if run["state"] == "running" and run["progress"].get("rows", 0) > 100:
                    break
                time.sleep(0.02)
            start = time.time()
            server.signal(signal.SIGTERM)
            self.assertEqual(server.proc.wait(30), 0)
            self.assertLess(time.time() - start, 15)
            db = sqlite3.connect(server.db)
            state, error = db.execute("SELECT state, error FROM import_run WHERE id = ?", (run_id,)).fetchone()
            people = db.execute("SELECT COUNT(*) FROM person WHERE licence_number IS NOT NULL").fetchone()[0]
            db.close()
            self.assertEqual(state, "failed")
            self.assertIn("interrompu", error)
            self.assertEqual(people, 0)
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
