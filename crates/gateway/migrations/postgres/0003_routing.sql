-- Upstream routing: every attempt of a task at a provider, and what the task cost us.
CREATE TABLE task_attempts (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL REFERENCES tasks (id),
    seq BIGINT NOT NULL,
    route_index BIGINT NOT NULL,
    provider TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    upstream_id TEXT,
    handle TEXT,
    status TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    polls BIGINT NOT NULL DEFAULT 0,
    cost_micro_usd BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE UNIQUE INDEX task_attempts_seq ON task_attempts (task_id, seq);
ALTER TABLE tasks ADD COLUMN upstream_cost_micro_usd BIGINT NOT NULL DEFAULT 0;
