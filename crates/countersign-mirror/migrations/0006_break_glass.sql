-- Break-glass requests: the reviews their policy asked for, who reviewed (one word each,
-- `:concern` after those who raised one), how many raised a concern, and when the reviews
-- were complete. Requests indexed before break-glass existed have none.
ALTER TABLE requests ADD COLUMN review_quorum INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN reviewed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN review_concerns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN reviewed_at INTEGER;
