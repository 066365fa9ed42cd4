-- An agent's idempotency key, scoped to the agent ("<requester>\n<key>"): the same key names the
-- same request, so a retry after an unknown outcome never creates a second one.
ALTER TABLE actions ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX actions_idempotency_key ON actions(idempotency_key)
    WHERE idempotency_key IS NOT NULL;
