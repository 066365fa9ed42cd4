-- How each request's agent authenticated ("api_token", "workload_token:<issuer>"), from its
-- request_created event; NULL for events recorded before the service kept it.
ALTER TABLE requests ADD COLUMN requester_auth TEXT;
-- Requests indexed before this column existed take it from their stored (verified) event.
UPDATE requests SET requester_auth = (
    SELECT CASE json_extract(e.body, '$.event.authenticated_by.method')
        WHEN 'api_token' THEN 'api_token'
        WHEN 'workload_token'
            THEN 'workload_token:' || json_extract(e.body, '$.event.authenticated_by.issuer')
    END
    FROM events e WHERE e.seq = requests.seq
);
