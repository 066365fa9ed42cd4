-- An approver's verified copy of the service's audit log, and the request index built from it.
-- Times are milliseconds since the epoch; ids are UUID text; key ids lowercase hex.

-- What has been verified: the service's key (pinned at the first sync), the last checkpoint
-- whose signature and consistency were checked, and how many of its events are stored and
-- verified (a prefix, proven by a consistency proof, while a long sync is under way).
CREATE TABLE trust (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    server_url    TEXT NOT NULL,
    origin        TEXT NOT NULL,
    server_key    TEXT NOT NULL,             -- base64 SPKI DER
    checkpoint    TEXT,                      -- signed note
    verified_size INTEGER NOT NULL DEFAULT 0,
    frontier      BLOB NOT NULL              -- Merkle frontier of the verified prefix
) STRICT;

-- The log's events, verbatim: `body` is the leaf bytes (RFC 8785 JSON).
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    recorded_at INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    action_id   TEXT,
    leaf_hash   BLOB NOT NULL,
    body        TEXT NOT NULL
) STRICT;
CREATE INDEX events_action ON events(action_id) WHERE action_id IS NOT NULL;

-- Every checkpoint this mirror verified, so old reports can name what they are anchored to.
CREATE TABLE checkpoints (
    tree_size   INTEGER PRIMARY KEY,
    note        TEXT NOT NULL,
    verified_at INTEGER NOT NULL
) STRICT;

-- Approver keys as the log enrolled and revoked them (decisions verify against these).
CREATE TABLE keys (
    key_id       TEXT PRIMARY KEY,
    approver_id  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    enrolled_seq INTEGER NOT NULL,
    revoked_seq  INTEGER
) STRICT;

-- A failed check: loud in the console, non-zero in the CLI, kept for the record.
CREATE TABLE alarms (
    id        INTEGER PRIMARY KEY,
    raised_at INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    message   TEXT NOT NULL
) STRICT;

-- One row per request, keyed by the seq of its `request_created` event, so key order is log
-- order and full-text matches come back newest first without a sort.
CREATE TABLE requests (
    seq            INTEGER PRIMARY KEY,      -- seq of its request_created event
    id             TEXT NOT NULL UNIQUE,
    digest         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    action_type    TEXT NOT NULL,
    resource       TEXT NOT NULL,
    environment    TEXT NOT NULL,
    requester      TEXT NOT NULL,
    on_behalf_of   TEXT,
    tags           TEXT NOT NULL,            -- space-separated
    justification  TEXT NOT NULL,
    parameters     TEXT NOT NULL,            -- "key value" text for search
    policy_outcome TEXT NOT NULL,
    quorum         INTEGER NOT NULL,
    status         TEXT NOT NULL,            -- pending, approved, denied, expired, cancelled
    decided_at     INTEGER,
    approvers      TEXT NOT NULL DEFAULT '', -- space-separated, in decision order
    comments       TEXT NOT NULL DEFAULT '',
    approvals      INTEGER NOT NULL DEFAULT 0,
    denials        INTEGER NOT NULL DEFAULT 0,
    hardware_only  INTEGER NOT NULL DEFAULT 1, -- every decision signed by a hardware key
    grant_id       TEXT,
    redeemed_at    INTEGER,
    outcome        TEXT,                     -- succeeded, failed
    last_seq       INTEGER NOT NULL
) STRICT;
CREATE INDEX requests_created ON requests(created_at);
CREATE INDEX requests_requester ON requests(requester, seq);
CREATE INDEX requests_status ON requests(status, seq);
CREATE INDEX requests_type ON requests(action_type, seq);
CREATE INDEX requests_environment ON requests(environment, seq);

-- Who decided what, for the approver filter and per-approver report tables.
CREATE TABLE request_approvers (
    request_seq INTEGER NOT NULL,
    approver_id   TEXT NOT NULL,
    verdict       TEXT NOT NULL,
    PRIMARY KEY (approver_id, request_seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE request_tags (
    tag           TEXT NOT NULL,
    request_seq INTEGER NOT NULL,
    PRIMARY KEY (tag, request_seq)
) STRICT, WITHOUT ROWID;

-- Full text over the request's searchable columns, reading them from `requests` (external
-- content: the text is stored once).
CREATE VIRTUAL TABLE requests_fts USING fts5(
    action_type, resource, requester, approvers, justification, comments, parameters, tags,
    content = 'requests', content_rowid = 'seq', tokenize = 'unicode61'
);
CREATE TRIGGER requests_fts_insert AFTER INSERT ON requests BEGIN
    INSERT INTO requests_fts(rowid, action_type, resource, requester, approvers, justification,
        comments, parameters, tags)
    VALUES (new.seq, new.action_type, new.resource, new.requester, new.approvers,
        new.justification, new.comments, new.parameters, new.tags);
END;
CREATE TRIGGER requests_fts_update AFTER UPDATE OF approvers, comments ON requests BEGIN
    INSERT INTO requests_fts(requests_fts, rowid, action_type, resource, requester, approvers,
        justification, comments, parameters, tags)
    VALUES ('delete', old.seq, old.action_type, old.resource, old.requester, old.approvers,
        old.justification, old.comments, old.parameters, old.tags);
    INSERT INTO requests_fts(rowid, action_type, resource, requester, approvers, justification,
        comments, parameters, tags)
    VALUES (new.seq, new.action_type, new.resource, new.requester, new.approvers,
        new.justification, new.comments, new.parameters, new.tags);
END;
