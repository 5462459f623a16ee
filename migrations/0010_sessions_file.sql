-- Login sessions and failed logins move to the file attached as "sessions"
-- (the database path followed by "-sessions", created by db_open), so that
-- logging in does not wait while an import holds the main file's write
-- lock. Open sessions are kept. A person's sessions are now deleted with
-- the person by a trigger that every connection creates (db_link_sessions).

INSERT OR IGNORE INTO sessions.session
    (id, token_hash, person_id, csrf_token, created_at, last_seen_at, expires_at, ip, user_agent)
SELECT id, token_hash, person_id, csrf_token, created_at, last_seen_at, expires_at, ip, user_agent
FROM main.session;

INSERT INTO sessions.login_attempt (at, ip, email)
SELECT at, ip, email FROM main.login_attempt;

DROP TABLE main.session;
DROP TABLE main.login_attempt;
