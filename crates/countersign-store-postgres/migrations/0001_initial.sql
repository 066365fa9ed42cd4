-- The approval service's state and its audit log, the same shape as the SQLite store so the
-- two stay easy to compare and to migrate between. Times are milliseconds since the epoch,
-- ids are UUID text, digests lowercase hex, JSON canonical (RFC 8785) text.

CREATE TABLE audit_events (
    seq         BIGINT PRIMARY KEY,           -- Merkle leaf index, from 0, no gaps
    recorded_at BIGINT NOT NULL,
    action_id   TEXT,
    kind        TEXT NOT NULL,
    event_json  TEXT NOT NULL,                -- the leaf bytes
    leaf_hash   BYTEA NOT NULL
);
CREATE INDEX audit_events_action ON audit_events(action_id) WHERE action_id IS NOT NULL;

CREATE TABLE checkpoints (
    tree_size BIGINT PRIMARY KEY,
    note      TEXT NOT NULL
);

CREATE TABLE agent_tokens (
    token_id   TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE approvers (
    id           TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    groups_json  TEXT NOT NULL
);

CREATE TABLE approver_keys (
    key_id      TEXT PRIMARY KEY,
    approver_id TEXT NOT NULL REFERENCES approvers(id),
    kind        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    label       TEXT NOT NULL,
    attestation TEXT,
    enrolled_at BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX approver_keys_approver ON approver_keys(approver_id);

CREATE TABLE enrolment_codes (
    code_hash   TEXT PRIMARY KEY,
    approver_id TEXT NOT NULL REFERENCES approvers(id),
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE challenges (
    challenge  TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    used       BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    approver_id TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE actions (
    id          TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    status      TEXT NOT NULL,
    quorum      BIGINT NOT NULL,
    digest      TEXT NOT NULL,
    action_json TEXT NOT NULL
);
CREATE INDEX actions_status ON actions(status, created_at);
CREATE INDEX actions_pending_expiry ON actions(expires_at) WHERE status = 'pending';

CREATE TABLE decisions (
    rowid_      BIGSERIAL PRIMARY KEY,
    action_id   TEXT NOT NULL REFERENCES actions(id),
    approver_id TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    nonce       TEXT NOT NULL UNIQUE,
    key_kind    TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    signed_json TEXT NOT NULL,
    UNIQUE (action_id, approver_id)
);

CREATE TABLE grants (
    grant_id    TEXT PRIMARY KEY,
    action_id   TEXT NOT NULL UNIQUE REFERENCES actions(id),
    signed_json TEXT NOT NULL,
    redeemed_at BIGINT
);

CREATE TABLE outcomes (
    action_id    TEXT PRIMARY KEY REFERENCES actions(id),
    outcome_json TEXT NOT NULL,
    reported_at  BIGINT NOT NULL
);

-- Finding the latest event of a kind (e.g. the policy in force at start-up) without a scan.
CREATE INDEX audit_events_kind ON audit_events(kind, seq);
