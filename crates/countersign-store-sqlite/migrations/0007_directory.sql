-- People and groups provisioned by the organisation's directory over SCIM. A directory user is
-- an approver (approver_id) whose groups are recomputed from the mapped groups they are in.
CREATE TABLE directory_users (
    id          TEXT PRIMARY KEY,
    approver_id TEXT NOT NULL UNIQUE REFERENCES approvers(id),
    external_id TEXT,
    active      INTEGER NOT NULL,
    attributes  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE directory_groups (
    id           TEXT PRIMARY KEY,
    -- Lower-cased display name: two groups may not differ only in case.
    name_key     TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    external_id  TEXT,
    maps_to      TEXT,
    version      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE directory_members (
    group_id TEXT NOT NULL REFERENCES directory_groups(id),
    user_id  TEXT NOT NULL REFERENCES directory_users(id),
    PRIMARY KEY (group_id, user_id)
) STRICT;
CREATE INDEX directory_members_user ON directory_members(user_id);

-- The directory's SCIM client holds an API token of its own role. SQLite cannot change a
-- CHECK constraint in place: the table is rebuilt with the same rows.
CREATE TABLE api_tokens_next (
    token_id   TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    role       TEXT NOT NULL DEFAULT 'agent' CHECK (role IN ('agent', 'admin', 'scim'))
) STRICT;
INSERT INTO api_tokens_next (token_id, subject, token_hash, created_at, revoked_at, role)
    SELECT token_id, subject, token_hash, created_at, revoked_at, role FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_next RENAME TO api_tokens;
