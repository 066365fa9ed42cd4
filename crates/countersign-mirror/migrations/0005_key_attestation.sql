-- Whether every decision on a request was signed by a key a trusted manufacturer's root vouched
-- for at enrolment, and which roots did (one per line): the CSV export's attestation columns.
ALTER TABLE requests ADD COLUMN attested_only INTEGER NOT NULL DEFAULT 1;
ALTER TABLE requests ADD COLUMN attesting_roots TEXT NOT NULL DEFAULT '';
-- Requests indexed before take them from their stored (verified) events; decisions recorded
-- before attestation was kept carry none, so they count as claimed.
UPDATE requests SET
    attested_only = NOT EXISTS (SELECT 1 FROM events e WHERE e.action_id = requests.id
                                AND e.kind = 'decision_recorded'
                                AND json_extract(e.body, '$.event.attested_by') IS NULL),
    attesting_roots = COALESCE((SELECT group_concat(root, char(10)) FROM
                                  (SELECT DISTINCT json_extract(e.body, '$.event.attested_by') AS root
                                   FROM events e WHERE e.action_id = requests.id
                                   AND e.kind = 'decision_recorded'
                                   AND json_extract(e.body, '$.event.attested_by') IS NOT NULL
                                   ORDER BY e.seq)), '');

-- The root each key's enrolment named: a decision may claim no other for its key.
ALTER TABLE keys ADD COLUMN attested_by TEXT;
UPDATE keys SET attested_by = (SELECT json_extract(e.body, '$.event.attested_by') FROM events e
                               WHERE e.seq = keys.enrolled_seq);
