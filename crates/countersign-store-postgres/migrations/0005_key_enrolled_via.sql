-- The OpenID Provider (issuer) that vouched for a key's enrolment; NULL when it was enrolled with
-- an administrator's one-time code. A policy may require the former.
ALTER TABLE approver_keys ADD COLUMN enrolled_via TEXT;
