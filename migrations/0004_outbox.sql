-- Durable mail queue. Every mail is written here before any attempt to send
-- it, and the sender only moves rows between states:
--   queued  -> sending (claimed, attempts + 1) -> sent
--                                              -> queued (retry later)
--                                              -> failed (permanent error or
--                                                 attempts exhausted)
-- A row left in 'sending' by a killed process goes back to 'queued' when the
-- sender starts, so delivery is at-least-once. Timestamps are UTC
-- (yyyy-mm-ddThh:mm:ssZ), which sort as text.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind <> ''),   -- 'recuperation', 'consentement', 'test', ...
    state           TEXT NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    sender          TEXT NOT NULL,          -- envelope sender (MAIL FROM)
    recipient       TEXT NOT NULL,          -- envelope recipient (RCPT TO)
    subject         TEXT NOT NULL,          -- as written, for the staff listing
    message_id      TEXT NOT NULL,          -- the Message-ID header, with brackets
    message         TEXT NOT NULL,          -- the complete RFC 5322 message, links and their tokens included
    person_id       INTEGER REFERENCES person (id) ON DELETE SET NULL,
    import_run_id   INTEGER,                -- import that caused the mail, if any
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,                   -- SMTP reply or libcurl error of the last failure
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);

CREATE INDEX outbox_due ON outbox (state, next_attempt_at, id);
CREATE INDEX outbox_person ON outbox (person_id);
CREATE INDEX outbox_import_run ON outbox (import_run_id);
