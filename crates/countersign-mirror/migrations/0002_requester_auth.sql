-- How each request's agent authenticated ("api_token", "workload_token:<issuer>"), from its
-- request_created event; NULL for events recorded before the service kept it.
ALTER TABLE requests ADD COLUMN requester_auth TEXT;
