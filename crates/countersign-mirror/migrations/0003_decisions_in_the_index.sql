-- What the CSV export lists per request, kept in the index it reads: the policy's reason, who
-- approved and who denied (space-separated), and the key of each decision (hex ids, in order).
ALTER TABLE requests ADD COLUMN policy_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN approved_by TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN denied_by TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN key_ids TEXT NOT NULL DEFAULT '';
-- Requests indexed before take them from their stored (verified) events.
UPDATE requests SET
    policy_reason = COALESCE((SELECT json_extract(e.body, '$.event.action.policy.reason')
                              FROM events e WHERE e.seq = requests.seq), ''),
    approved_by = COALESCE((SELECT group_concat(json_extract(e.body, '$.event.decision.decision.approver_id'), ' ')
                            FROM (SELECT body FROM events WHERE action_id = requests.id
                                  AND kind = 'decision_recorded' ORDER BY seq) e
                            WHERE json_extract(e.body, '$.event.decision.decision.verdict') = 'approve'), ''),
    denied_by = COALESCE((SELECT group_concat(json_extract(e.body, '$.event.decision.decision.approver_id'), ' ')
                          FROM (SELECT body FROM events WHERE action_id = requests.id
                                AND kind = 'decision_recorded' ORDER BY seq) e
                          WHERE json_extract(e.body, '$.event.decision.decision.verdict') = 'deny'), ''),
    key_ids = COALESCE((SELECT group_concat(json_extract(e.body, '$.event.decision.decision.key_id'), ' ')
                        FROM (SELECT body FROM events WHERE action_id = requests.id
                              AND kind = 'decision_recorded' ORDER BY seq) e), '');
