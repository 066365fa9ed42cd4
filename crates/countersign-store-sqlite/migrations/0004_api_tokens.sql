-- Agent tokens become API tokens with a role, so administrators can work over HTTP with the
-- same issue/hash/revoke machinery (and the same audit events) as agents.
ALTER TABLE agent_tokens RENAME TO api_tokens;
ALTER TABLE api_tokens RENAME COLUMN agent_id TO subject;
ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'agent' CHECK (role IN ('agent', 'admin'));
