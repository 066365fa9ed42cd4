-- Notices owed to outbound channels (webhooks, chat), filled from the audit log. Ids are
-- assigned under the write lock (not a sequence), so an imported SQLite outbox keeps its ids.
CREATE TABLE outbox (
    id              BIGINT PRIMARY KEY,
    channel         TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    payload         TEXT NOT NULL,                -- the notice, JSON
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,              -- due (pending), or when delivered / dead
    leased_until    BIGINT,                       -- held by a sender until then
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    last_error      TEXT,
    UNIQUE (channel, message_id)
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);

-- How far into the audit log notices have been made: one row once started.
CREATE TABLE outbox_position (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    next_seq BIGINT NOT NULL
);
