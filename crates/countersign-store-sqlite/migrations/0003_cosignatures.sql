-- Witness cosignatures of checkpoints: not audit events (cosigning would grow the log it
-- cosigns), but kept so every console can compare its view with every other console's.
CREATE TABLE cosignatures (
    key_id      TEXT NOT NULL,
    tree_size   INTEGER NOT NULL,
    approver_id TEXT NOT NULL,
    signature   BLOB NOT NULL,                -- DER ECDSA over the cosigning payload
    received_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, tree_size)
) STRICT;
CREATE INDEX cosignatures_size ON cosignatures(tree_size);
