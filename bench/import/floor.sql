-- Estimate of the lower bound of an import that writes what Licol's first
-- import writes. It writes the same people, licences, roles and audit rows
-- with the same indexes and settings (WAL, 16 MB cache) in one
-- transaction. Plain SQL statements load them, with no cleaning, no
-- matching and no per-row work. run.sh runs it on a database freshly
-- created by `licol migrate`, with the file converted to UTF-8 as u.csv
-- in the current directory. It is not a product path: a rider listed twice
-- is dropped (INSERT OR IGNORE) instead of merged.
PRAGMA cache_size = -16000;
PRAGMA temp_store = FILE;
.mode csv
.separator ;
.import u.csv staging
BEGIN;
-- A large import sets aside the same secondary indexes (import_index.c).
DROP INDEX person_birth_date;
DROP INDEX person_email;
DROP INDEX person_first_name;
DROP INDEX person_name;
DROP INDEX person_updated_at;
INSERT OR IGNORE INTO person (last_name, first_name, birth_date, sex, email, phone, mobile,
                              address, postcode, city, country, licence_number, match_key,
                              search_text, created_at, updated_at, created_by_import)
SELECT "Nom", "Prénom", "Date de naissance", "Sexe", nullif("Email", ''), "Téléphone",
       "Portable", "Adresse", "Code postal", "Ville", 'FR', upper("Numéro licence"),
       lower("Nom") || '|' || lower("Prénom") || '|' || "Date de naissance",
       lower("Nom" || ' ' || "Prénom" || ' ' || "Email" || ' ' || "Numéro licence"),
       '2026-12-05T00:00:00Z', '2026-12-05T00:00:00Z', 1
FROM staging;
INSERT INTO licence (person_id, season, number, type, category, club, taken_on)
SELECT id, 2026, licence_number, 'pratiquant', 'senior', '9000042', '2025-11-21' FROM person;
INSERT INTO person_role (person_id, role) SELECT id, 'client' FROM person;
INSERT INTO audit_log (at, actor_id, person_id, action, import_run_id)
SELECT '2026-12-05T00:00:00Z', NULL, id, 'create', 1 FROM person;
CREATE INDEX person_birth_date ON person (birth_date);
CREATE INDEX person_email ON person (email);
CREATE INDEX person_first_name ON person (first_name COLLATE NOCASE, last_name COLLATE NOCASE);
CREATE INDEX person_name ON person (last_name COLLATE NOCASE, first_name COLLATE NOCASE);
CREATE INDEX person_updated_at ON person (updated_at);
DROP TABLE staging;
COMMIT;
