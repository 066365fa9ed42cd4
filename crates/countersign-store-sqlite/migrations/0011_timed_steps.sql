-- Escalations and reminders: how many of a request's timed steps were taken, and when the
-- next falls due (NULL: none left).
ALTER TABLE actions ADD COLUMN steps_taken INTEGER NOT NULL DEFAULT 0;
ALTER TABLE actions ADD COLUMN next_step_at INTEGER;
CREATE INDEX actions_next_step ON actions(next_step_at) WHERE status = 'pending' AND next_step_at IS NOT NULL;
