-- Online registrations ("inscriptions en ligne"). A row is written when the
-- public form passes validation and stays as the record of the request:
--
--   email_pending  waiting for the link in the verification mail
--   to_validate    address confirmed, waiting for staff
--   validated      staff validated: person_id is the person created or linked
--   refused        staff refused
--
-- data holds the submitted person fields in their stored (normalised) form
-- as a JSON object keyed by field key; guardian the legal guardian of a
-- minor; consents the decisions shown on the form with the version id and
-- SHA-256 of each text, recorded as consent proofs once a person exists.
-- candidate_id is the existing person the applicant seems to be (same
-- licence number, or same match_key), and verify_to says where the
-- verification mail went: the applicant's address, or the address already
-- on file for the candidate. Only the BLAKE2b-256 digest of the link's
-- token is stored. Timestamps are UTC (yyyy-mm-ddThh:mm:ssZ).
CREATE TABLE registration (
    id               INTEGER PRIMARY KEY,
    status           TEXT NOT NULL DEFAULT 'email_pending' CHECK (status IN
                     ('email_pending', 'to_validate', 'validated', 'refused')),
    last_name        TEXT NOT NULL,
    first_name       TEXT NOT NULL,
    birth_date       TEXT,
    email            TEXT NOT NULL,
    licence_number   TEXT,
    is_minor         INTEGER NOT NULL DEFAULT 0 CHECK (is_minor IN (0, 1)),
    data             TEXT NOT NULL,
    guardian         TEXT,
    consents         TEXT NOT NULL DEFAULT '[]',
    candidate_id     INTEGER REFERENCES person (id) ON DELETE SET NULL,
    duplicate_reason TEXT CHECK (duplicate_reason IN ('licence', 'identity')),
    verify_to        TEXT NOT NULL DEFAULT 'applicant' CHECK (verify_to IN ('applicant', 'on_file')),
    person_id        INTEGER REFERENCES person (id) ON DELETE SET NULL,
    token_hash       BLOB UNIQUE CHECK (token_hash IS NULL OR length(token_hash) = 32),
    token_expires_at TEXT,
    verified_at      TEXT,
    ip               TEXT,
    user_agent       TEXT,
    created_at       TEXT NOT NULL,
    decided_at       TEXT,
    decided_by       INTEGER REFERENCES person (id) ON DELETE SET NULL,
    refusal_reason   TEXT
);

CREATE INDEX registration_status ON registration (status, id);

-- Submissions per IP address, for the rate limit of the public form. Rows
-- older than the window are deleted at the next submission.
CREATE TABLE registration_attempt (
    at INTEGER NOT NULL, -- Unix time
    ip TEXT NOT NULL
);

CREATE INDEX registration_attempt_ip ON registration_attempt (ip, at);
