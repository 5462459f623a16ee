-- One-time tokens sent by mail: 'invitation' (set a first password after an
-- import), 'reset' (self-service password recovery) and 'consent' (accept
-- the club's terms from a link). The token itself is given to the caller
-- once and never stored: token_hash is its 32-byte BLAKE2b digest
-- (libsodium crypto_generichash), so a copy of the database cannot be used
-- to log in as anyone. Timestamps are UTC (yyyy-mm-ddThh:mm:ssZ).
CREATE TABLE password_token (
    id          INTEGER PRIMARY KEY,
    person_id   INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('invitation', 'reset', 'consent')),
    token_hash  BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,                       -- set once, by the single use
    voided_at   TEXT                        -- set when the password changed first
);

CREATE INDEX password_token_person ON password_token (person_id, kind);
