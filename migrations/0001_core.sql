-- Core rider file: people, their roles, licences by season, family links,
-- custom (plugin) fields and the field-level audit log.
-- Dates are ISO 8601 text (yyyy-mm-dd); timestamps are UTC
-- (yyyy-mm-ddThh:mm:ssZ).

-- Ordered, extensible scale of riding levels ("Galops"). rank orders the
-- levels across tracks; clubs may add rows (speciality Galops) without code.
CREATE TABLE galop_level (
    code  TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    track TEXT NOT NULL,            -- 'poney', 'cavalier', or a speciality
    rank  INTEGER NOT NULL
);

INSERT INTO galop_level (code, label, track, rank) VALUES
    ('poney-bronze',  'Galop Poney de Bronze', 'poney', 10),
    ('poney-argent',  'Galop Poney d''Argent', 'poney', 20),
    ('poney-or',      'Galop Poney d''Or',     'poney', 30),
    ('galop-bronze',  'Galop de Bronze',       'poney', 40),
    ('galop-1',       'Galop 1',               'cavalier', 45),
    ('galop-argent',  'Galop d''Argent',       'poney', 50),
    ('galop-2',       'Galop 2',               'cavalier', 55),
    ('galop-or',      'Galop d''Or',           'poney', 60),
    ('galop-3',       'Galop 3',               'cavalier', 70),
    ('galop-4',       'Galop 4',               'cavalier', 80),
    ('galop-5',       'Galop 5',               'cavalier', 90),
    ('galop-6',       'Galop 6',               'cavalier', 100),
    ('galop-7',       'Galop 7',               'cavalier', 110),
    ('galop-8',       'Galop 8',               'cavalier', 120),
    ('galop-9',       'Galop 9',               'cavalier', 130);

CREATE TABLE person (
    id              INTEGER PRIMARY KEY,
    last_name       TEXT NOT NULL DEFAULT '',
    first_name      TEXT NOT NULL DEFAULT '',
    birth_date      TEXT,                    -- NULL when unknown
    sex             TEXT CHECK (sex IN ('F', 'M')),
    email           TEXT,                    -- valid, lower-cased; may be shared by a family
    email_invalid   TEXT,                    -- an address that failed validation, never mailed
    phone           TEXT,                    -- E.164 when recognised, else as typed
    mobile          TEXT,
    address         TEXT,
    address2        TEXT,
    postcode        TEXT,
    city            TEXT,
    country         TEXT,                    -- ISO 3166-1 alpha-2
    licence_number  TEXT,                    -- seven digits and a letter, the identity key
    licence_raw     TEXT,                    -- a value from the file that is not a valid number
    galop           TEXT REFERENCES galop_level (code),
    password_hash   TEXT,                    -- libsodium crypto_pwhash_str (argon2id)
    password_changed_at TEXT,
    match_key       TEXT,                    -- folded "last|first|birth" used to match imports
    search_text     TEXT NOT NULL DEFAULT '',-- folded name, e-mail, phone, licence for search
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    created_by_import INTEGER                -- import_run id that created the person, if any
);

CREATE UNIQUE INDEX person_licence_number ON person (licence_number)
    WHERE licence_number IS NOT NULL;
CREATE INDEX person_match_key ON person (match_key);
CREATE INDEX person_email ON person (email);
CREATE INDEX person_name ON person (last_name COLLATE NOCASE, first_name COLLATE NOCASE);

CREATE TABLE person_role (
    person_id INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    role      TEXT NOT NULL CHECK (role IN
              ('gerant', 'employe', 'client', 'visiteur', 'comptable', 'proprietaire')),
    PRIMARY KEY (person_id, role)
) WITHOUT ROWID;

CREATE INDEX person_role_role ON person_role (role, person_id);

-- One licence per person and season (the "millésime", a calendar year).
CREATE TABLE licence (
    id        INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    season    INTEGER NOT NULL,
    number    TEXT NOT NULL,
    type      TEXT,                          -- 'pratiquant', 'competition', 'dirigeant', ...
    category  TEXT,                          -- 'junior', 'senior', ...
    club      TEXT,                          -- FFE club number
    taken_on  TEXT,                          -- date the licence was entered
    UNIQUE (person_id, season)
);

CREATE INDEX licence_season ON licence (season);

-- A directed link: related_id is the relationship of person_id
-- (for example person = child, related = mother, relationship = 'mère').
CREATE TABLE family_link (
    id                INTEGER PRIMARY KEY,
    person_id         INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    related_id        INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    relationship      TEXT NOT NULL,
    is_legal_guardian INTEGER NOT NULL DEFAULT 0 CHECK (is_legal_guardian IN (0, 1)),
    is_payer          INTEGER NOT NULL DEFAULT 0 CHECK (is_payer IN (0, 1)),
    created_at        TEXT NOT NULL,
    UNIQUE (person_id, related_id),
    CHECK (person_id <> related_id)
);

CREATE INDEX family_link_related ON family_link (related_id);

-- Further contact points, for example the second address of an e-mail
-- field that contained two.
CREATE TABLE person_contact (
    id        INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    kind      TEXT NOT NULL CHECK (kind IN ('email', 'phone')),
    value     TEXT NOT NULL,
    note      TEXT,
    UNIQUE (person_id, kind, value)
);

-- Values of custom profile fields declared by plugins. Rows stay when a
-- plugin is removed, so that re-installing it brings the data back.
CREATE TABLE person_field (
    person_id INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (person_id, key)
) WITHOUT ROWID;

-- Who changed which field of whom, when, from what to what, and through
-- which action. actor_id is NULL for the system (imports run from the CLI,
-- scheduled updates).
CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    actor_id      INTEGER,
    person_id     INTEGER,
    action        TEXT NOT NULL,             -- 'create', 'update', 'delete', 'import', ...
    field         TEXT,
    old_value     TEXT,
    new_value     TEXT,
    import_run_id INTEGER
);

CREATE INDEX audit_log_person ON audit_log (person_id, id);
CREATE INDEX audit_log_import ON audit_log (import_run_id);
