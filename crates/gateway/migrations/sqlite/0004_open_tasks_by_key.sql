-- The open tasks of one API key: what it holds now (GET /v1/credits) and how
-- many it runs at once. Only open tasks are indexed, so the index stays small.
CREATE INDEX tasks_open_by_key ON tasks (key_id) WHERE status IN ('pending', 'processing');
