-- Accounts: login sessions, API tokens for integrators, and the login
-- attempts used for rate limiting. Passwords live on person
-- (password_hash, see 0001_core.sql).

ALTER TABLE person ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;

-- A browser session. The cookie carries a random token; only its hash is
-- stored, so a copy of the database does not let anyone log in.
CREATE TABLE session (
    id           INTEGER PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    person_id    INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT
);

CREATE INDEX session_person ON session (person_id);

-- Tokens for integrators, scoped to one role, revocable. Only the hash of
-- the token is stored; the token itself is shown once at creation.
CREATE TABLE api_token (
    id          INTEGER PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN
                ('gerant', 'employe', 'client', 'visiteur', 'comptable', 'proprietaire')),
    created_by  INTEGER REFERENCES person (id) ON DELETE SET NULL,
    created_at  TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at  TEXT
);

-- Failed logins, by address and by e-mail, for the rate limit.
CREATE TABLE login_attempt (
    id    INTEGER PRIMARY KEY,
    at    INTEGER NOT NULL,   -- Unix time, seconds
    ip    TEXT NOT NULL,
    email TEXT NOT NULL
);

CREATE INDEX login_attempt_ip ON login_attempt (ip, at);
CREATE INDEX login_attempt_email ON login_attempt (email, at);
