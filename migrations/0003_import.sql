-- Import runs: one row per import of a rider file (preview or real), with
-- what was read, the options, who ran it, timings and counts. The
-- field-level change log of a real run is in audit_log (import_run_id).

CREATE TABLE import_run (
    id               INTEGER PRIMARY KEY,
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'undone')),
    dry_run          INTEGER NOT NULL DEFAULT 0 CHECK (dry_run IN (0, 1)),
    replace_data     INTEGER NOT NULL DEFAULT 0 CHECK (replace_data IN (0, 1)),
    format_requested TEXT NOT NULL DEFAULT 'auto',
    format           TEXT,                  -- the format script used ("ffe", "celeris", ...)
    format_label     TEXT,
    encoding         TEXT,
    separator        TEXT,
    header           TEXT,                  -- JSON array: the file's column names
    filename         TEXT NOT NULL,
    file_size        INTEGER NOT NULL,
    file_lines       INTEGER NOT NULL DEFAULT 0,
    sha256           TEXT NOT NULL,
    file_path        TEXT,                  -- kept copy for confirming a preview; NULL once used
    source           TEXT NOT NULL CHECK (source IN ('cli', 'web', 'auto')),
    actor_id         INTEGER REFERENCES person (id) ON DELETE SET NULL,
    preview_of       INTEGER REFERENCES import_run (id),
    script_version   TEXT,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    duration_ms      INTEGER,
    rows             INTEGER NOT NULL DEFAULT 0,
    created          INTEGER NOT NULL DEFAULT 0,
    updated          INTEGER NOT NULL DEFAULT 0,
    unchanged        INTEGER NOT NULL DEFAULT 0,
    set_aside        INTEGER NOT NULL DEFAULT 0,
    rejected         INTEGER NOT NULL DEFAULT 0,
    warnings         INTEGER NOT NULL DEFAULT 0,
    error            TEXT,                  -- French, for staff, when state = 'failed'
    report           TEXT,                  -- JSON: sample changes and notes
    undone_at        TEXT,
    undone_by        INTEGER REFERENCES person (id) ON DELETE SET NULL
);

CREATE INDEX import_run_sha256 ON import_run (sha256);

-- Rows that were rejected or set aside, and per-field warnings. raw keeps
-- the original fields (JSON array) so rejected rows can be downloaded,
-- fixed and imported again.
CREATE TABLE import_row_issue (
    id        INTEGER PRIMARY KEY,
    run_id    INTEGER NOT NULL REFERENCES import_run (id) ON DELETE CASCADE,
    record_no INTEGER NOT NULL,              -- 1 = header
    line_no   INTEGER NOT NULL,              -- line in the file, as a spreadsheet shows it
    kind      TEXT NOT NULL CHECK (kind IN ('rejected', 'set_aside', 'warning')),
    field     TEXT,
    message   TEXT NOT NULL,
    person_id INTEGER,
    raw       TEXT
);

CREATE INDEX import_row_issue_run ON import_row_issue (run_id, kind, record_no);
