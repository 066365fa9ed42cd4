-- Finding the latest event of a kind (e.g. the policy in force at start-up) without a scan.
CREATE INDEX audit_events_kind ON audit_events(kind, seq);
