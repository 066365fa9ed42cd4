-- The approval service's state and its audit log. Times are milliseconds since the epoch,
-- ids are UUID text, digests lowercase hex, JSON canonical (RFC 8785) text.

CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY,          -- Merkle leaf index, from 0, no gaps
    recorded_at INTEGER NOT NULL,
    action_id   TEXT,
    kind        TEXT NOT NULL,
    event_json  TEXT NOT NULL,                -- the leaf bytes
    leaf_hash   BLOB NOT NULL
) STRICT;
CREATE INDEX audit_events_action ON audit_events(action_id) WHERE action_id IS NOT NULL;

CREATE TABLE checkpoints (
    tree_size INTEGER PRIMARY KEY,
    note      TEXT NOT NULL
) STRICT;

CREATE TABLE agent_tokens (
    token_id   TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE TABLE approvers (
    id           TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    groups_json  TEXT NOT NULL
) STRICT;

CREATE TABLE approver_keys (
    key_id      TEXT PRIMARY KEY,
    approver_id TEXT NOT NULL REFERENCES approvers(id),
    kind        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    label       TEXT NOT NULL,
    attestation TEXT,
    enrolled_at INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX approver_keys_approver ON approver_keys(approver_id);

CREATE TABLE enrolment_codes (
    code_hash   TEXT PRIMARY KEY,
    approver_id TEXT NOT NULL REFERENCES approvers(id),
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
) STRICT;

CREATE TABLE challenges (
    challenge  TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    approver_id TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE actions (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    status      TEXT NOT NULL,
    quorum      INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    action_json TEXT NOT NULL
) STRICT;
CREATE INDEX actions_status ON actions(status, created_at);
CREATE INDEX actions_pending_expiry ON actions(expires_at) WHERE status = 'pending';

CREATE TABLE decisions (
    rowid_      INTEGER PRIMARY KEY,
    action_id   TEXT NOT NULL REFERENCES actions(id),
    approver_id TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    nonce       TEXT NOT NULL UNIQUE,
    key_kind    TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    signed_json TEXT NOT NULL,
    UNIQUE (action_id, approver_id)
) STRICT;

CREATE TABLE grants (
    grant_id    TEXT PRIMARY KEY,
    action_id   TEXT NOT NULL UNIQUE REFERENCES actions(id),
    signed_json TEXT NOT NULL,
    redeemed_at INTEGER
) STRICT;

CREATE TABLE outcomes (
    action_id    TEXT PRIMARY KEY REFERENCES actions(id),
    outcome_json TEXT NOT NULL,
    reported_at  INTEGER NOT NULL
) STRICT;
