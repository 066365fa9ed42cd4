-- Break-glass: how many reviews a request granted without quorum needs (NULL: not
-- break-glass), and the signed reviews.
ALTER TABLE actions ADD COLUMN review_quorum BIGINT;
CREATE INDEX actions_review ON actions(created_at) WHERE review_quorum IS NOT NULL;
CREATE TABLE reviews (
    action_id   TEXT NOT NULL REFERENCES actions(id),
    reviewer_id TEXT NOT NULL,
    nonce       TEXT NOT NULL UNIQUE,
    key_kind    TEXT NOT NULL,
    concern     BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    signed_json TEXT NOT NULL,
    PRIMARY KEY (action_id, reviewer_id)
);
