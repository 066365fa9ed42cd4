-- The witness policy pinned on this mirror (out of band): which witnesses must have cosigned
-- a checkpoint of the log, and how many, before it counts as verified.
CREATE TABLE witness_policy (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    body TEXT NOT NULL
) STRICT;
