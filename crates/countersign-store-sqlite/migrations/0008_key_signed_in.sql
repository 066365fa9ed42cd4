-- The latest sign-in at the organisation's OpenID Provider that vouched for a key (at enrolment
-- or again since); NULL when none did. A policy may ask for a recent one.
ALTER TABLE approver_keys ADD COLUMN signed_in_at INTEGER;
