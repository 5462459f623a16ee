-- Consent to the club's terms (GDPR), and the rate limit of self-service
-- recovery mails. Timestamps are UTC (yyyy-mm-ddThh:mm:ssZ).

-- A document people are asked to accept: the terms ('cgu', 'cgv', the
-- privacy policy 'confidentialite', required) or an optional consent
-- ('newsletter', 'photos'), each asked separately. A document without a
-- published version is not asked.
CREATE TABLE consent_document (
    id                 INTEGER PRIMARY KEY,
    key                TEXT NOT NULL UNIQUE CHECK (key <> ''),
    title              TEXT NOT NULL,
    required           INTEGER NOT NULL DEFAULT 1 CHECK (required IN (0, 1)),
    position           INTEGER NOT NULL DEFAULT 0,
    current_version_id INTEGER,             -- consent_version.id, NULL until published
    created_at         TEXT NOT NULL
);

-- Every published version keeps its full text and the SHA-256 of that text
-- (hex), so a proof row names exactly what the person saw. Versions are
-- never edited or deleted.
CREATE TABLE consent_version (
    id           INTEGER PRIMARY KEY,
    document_id  INTEGER NOT NULL REFERENCES consent_document (id),
    version      INTEGER NOT NULL,           -- 1, 2, ... per document
    title        TEXT NOT NULL,
    text         TEXT NOT NULL,
    hash         TEXT NOT NULL CHECK (length(hash) = 64),
    published_at TEXT NOT NULL,
    published_by INTEGER REFERENCES person (id) ON DELETE SET NULL,
    UNIQUE (document_id, version)
);

-- The proof: one row per decision, never updated. version_hash repeats
-- consent_version.hash so an export stands on its own. acted_by is the
-- account holder who answered for a family sharing one address (NULL when
-- the person answered for themself); recorded_by the staff member who
-- entered a paper form.
CREATE TABLE consent_proof (
    id           INTEGER PRIMARY KEY,
    person_id    INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    document_id  INTEGER NOT NULL REFERENCES consent_document (id),
    version_id   INTEGER NOT NULL REFERENCES consent_version (id),
    version_hash TEXT NOT NULL,
    decision     TEXT NOT NULL CHECK (decision IN ('accepted', 'refused', 'withdrawn')),
    channel      TEXT NOT NULL CHECK (channel IN ('mail_link', 'login', 'registration', 'paper')),
    at           TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    recorded_by  INTEGER REFERENCES person (id) ON DELETE SET NULL,
    acted_by     INTEGER REFERENCES person (id) ON DELETE SET NULL
);

CREATE INDEX consent_proof_person ON consent_proof (person_id, document_id, id);
CREATE INDEX consent_proof_at ON consent_proof (at);

-- The latest decision of each person on each document, kept by the
-- trigger below so that the status needs one indexed lookup.
CREATE TABLE consent_last (
    person_id   INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    document_id INTEGER NOT NULL REFERENCES consent_document (id),
    proof_id    INTEGER NOT NULL,
    version_id  INTEGER NOT NULL,
    decision    TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (person_id, document_id)
) WITHOUT ROWID;

CREATE TRIGGER consent_proof_last AFTER INSERT ON consent_proof
BEGIN
    INSERT INTO consent_last (person_id, document_id, proof_id, version_id, decision, at)
    VALUES (NEW.person_id, NEW.document_id, NEW.id, NEW.version_id, NEW.decision, NEW.at)
    ON CONFLICT (person_id, document_id) DO UPDATE SET proof_id = excluded.proof_id,
        version_id = excluded.version_id, decision = excluded.decision, at = excluded.at;
END;

-- Status of each person towards the required documents that have a
-- version: 'refuse' (refused or withdrew one), 'en_attente' (never answered
-- one), 'a_renouveler' (accepted an older version of one), 'accepte' (the
-- current version of all), NULL when the club has published no terms.
-- Other lists join it: LEFT JOIN consent_person_status cs ON cs.person_id = p.id.
CREATE VIEW consent_person_status AS
SELECT p.id AS person_id,
    CASE
    WHEN NOT EXISTS (SELECT 1 FROM consent_document d
                     WHERE d.required = 1 AND d.current_version_id IS NOT NULL) THEN NULL
    WHEN EXISTS (SELECT 1 FROM consent_document d JOIN consent_last l
                 ON l.person_id = p.id AND l.document_id = d.id
                 WHERE d.required = 1 AND d.current_version_id IS NOT NULL
                 AND l.decision <> 'accepted') THEN 'refuse'
    WHEN EXISTS (SELECT 1 FROM consent_document d
                 WHERE d.required = 1 AND d.current_version_id IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM consent_last l
                                 WHERE l.person_id = p.id AND l.document_id = d.id))
        THEN 'en_attente'
    WHEN EXISTS (SELECT 1 FROM consent_document d JOIN consent_last l
                 ON l.person_id = p.id AND l.document_id = d.id
                 WHERE d.required = 1 AND l.version_id <> d.current_version_id)
        THEN 'a_renouveler'
    ELSE 'accepte' END AS status
FROM person p;

-- Consent mails sent to an address's account holder, for the reminders:
-- one open request per holder; closed once everyone it covers answered.
CREATE TABLE consent_request (
    id            INTEGER PRIMARY KEY,
    person_id     INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    email         TEXT NOT NULL,
    import_run_id INTEGER,
    first_sent_at TEXT NOT NULL,
    last_sent_at  TEXT NOT NULL,
    reminders     INTEGER NOT NULL DEFAULT 0,
    closed_at     TEXT
);

CREATE UNIQUE INDEX consent_request_open ON consent_request (person_id) WHERE closed_at IS NULL;

-- Self-service recovery requests ("mot de passe oublié"), for the rate
-- limit per address and per IP address. Rows older than a day are purged.
CREATE TABLE mail_request (
    id    INTEGER PRIMARY KEY,
    at    INTEGER NOT NULL,   -- Unix time, seconds
    ip    TEXT NOT NULL,
    email TEXT NOT NULL
);

CREATE INDEX mail_request_ip ON mail_request (ip, at);
CREATE INDEX mail_request_email ON mail_request (email, at);

INSERT INTO consent_document (key, title, required, position, created_at) VALUES
    ('cgu', 'Conditions générales d''utilisation', 1, 1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    ('cgv', 'Conditions générales de vente', 1, 2, strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    ('confidentialite', 'Politique de confidentialité', 1, 3, strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    ('newsletter', 'Recevoir les nouvelles du club par mail', 0, 4, strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    ('photos', 'Utilisation de photos où je figure', 0, 5, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));
