-- The manufacturer's root (certificate subject) whose chain vouched for a key's device at
-- enrolment (a TPM's endorsement key certificate, a token's PIV attestation); NULL when the
-- key's hardware is only claimed. A policy may require it.
ALTER TABLE approver_keys ADD COLUMN attested_by TEXT;
