-- Automatic update from the federation file: one row per attempt to fetch
-- the licensee file, scheduled or requested by staff. A row is written when
-- the fetch starts (outcome NULL) and completed when it ends, which for a
-- downloaded file is when its import ends. Timestamps are UTC
-- (yyyy-mm-ddThh:mm:ssZ), which sort as text.
--
-- outcome:
--   unchanged      the server answered 304 Not Modified; nothing imported
--   same_content   downloaded, but a file with this SHA-256 was already
--                  applied; nothing imported
--   imported       downloaded and imported (import_run_id)
--   import_failed  downloaded, but the import failed or could not start
--   failed         the download failed (error); nothing changed
CREATE TABLE fetch_run (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    trigger       TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    actor_id      INTEGER REFERENCES person (id) ON DELETE SET NULL, -- who asked, for 'manual'
    url           TEXT,                   -- without credentials
    attempts      INTEGER NOT NULL DEFAULT 0,
    http_status   INTEGER,                -- of the last attempt; NULL when no answer came
    bytes         INTEGER NOT NULL DEFAULT 0,
    sha256        TEXT,                   -- lower-case hex, as import_run.sha256
    etag          TEXT,                   -- validators of the response (or, for 304, those sent)
    last_modified TEXT,
    outcome       TEXT CHECK (outcome IN ('unchanged', 'same_content', 'imported',
                                          'import_failed', 'failed')),
    error         TEXT,                   -- French, for staff
    import_run_id INTEGER REFERENCES import_run (id) ON DELETE SET NULL
);

CREATE INDEX fetch_run_started ON fetch_run (started_at);
CREATE INDEX fetch_run_sha256 ON fetch_run (sha256);
