-- Notices owed to outbound channels (webhooks, chat), filled from the audit log.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    channel         TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    payload         TEXT NOT NULL,                -- the notice, JSON
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,             -- due (pending), or when delivered / dead
    leased_until    INTEGER,                      -- held by a sender until then
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    last_error      TEXT,
    UNIQUE (channel, message_id)
) STRICT;
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);

-- How far into the audit log notices have been made: one row once started.
CREATE TABLE outbox_position (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    next_seq INTEGER NOT NULL
) STRICT;
