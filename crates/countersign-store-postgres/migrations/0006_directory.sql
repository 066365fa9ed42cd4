-- People and groups provisioned by the organisation's directory over SCIM. A directory user is
-- an approver (approver_id) whose groups are recomputed from the mapped groups they are in.
CREATE TABLE directory_users (
    id          TEXT PRIMARY KEY,
    approver_id TEXT NOT NULL UNIQUE REFERENCES approvers(id),
    external_id TEXT,
    active      BIGINT NOT NULL,
    attributes  TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE directory_groups (
    id           TEXT PRIMARY KEY,
    -- Lower-cased display name: two groups may not differ only in case.
    name_key     TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    external_id  TEXT,
    maps_to      TEXT,
    version      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE directory_members (
    group_id TEXT NOT NULL REFERENCES directory_groups(id),
    user_id  TEXT NOT NULL REFERENCES directory_users(id),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX directory_members_user ON directory_members(user_id);

-- The directory's SCIM client holds an API token of its own role.
ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS api_tokens_role_check;
ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS agent_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check CHECK (role IN ('agent', 'admin', 'scim'));
