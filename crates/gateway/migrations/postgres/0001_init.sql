-- vidgate schema, PostgreSQL flavour. Times are epoch milliseconds, money is integer
-- units of 1/10000 credit, flags are INTEGER 0/1, JSON is TEXT.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    user_group TEXT NOT NULL DEFAULT 'default',
    balance BIGINT NOT NULL CHECK (balance >= 0),
    held BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
    used BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0),
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    name TEXT NOT NULL,
    credit_cap BIGINT,
    spent BIGINT NOT NULL DEFAULT 0 CHECK (spent >= 0),
    allowed_models TEXT,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    key_id TEXT NOT NULL,
    user_group TEXT NOT NULL DEFAULT 'default',
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    progress BIGINT NOT NULL DEFAULT 0,
    request TEXT NOT NULL,
    credits_reserved BIGINT NOT NULL,
    credits_charged BIGINT,
    video_duration BIGINT NOT NULL,
    estimated_time BIGINT NOT NULL,
    callback_url TEXT,
    results TEXT,
    result_data TEXT,
    error_code TEXT,
    error_message TEXT,
    provider TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    -- When the task may next be claimed (0: now). A worker's lease, or the time
    -- of the next upstream poll while nobody holds it.
    lease_until BIGINT NOT NULL DEFAULT 0,
    deadline_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Microseconds, strictly increasing per process: orders "newest first" even
    -- for tasks created within the same millisecond.
    created_us BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX tasks_by_account ON tasks (account_id, created_us DESC, id DESC);
-- Claims read only the open tasks that are due, oldest due first.
CREATE INDEX tasks_due ON tasks (lease_until, created_at) WHERE status IN ('pending', 'processing');

-- Every movement of credits. (task_id, kind) is unique for holds and settlements,
-- so a task's money can never move twice, whatever the code above does.
CREATE TABLE ledger (
    id BIGSERIAL PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    task_id TEXT,
    kind TEXT NOT NULL,
    amount BIGINT NOT NULL,
    note TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX ledger_once ON ledger (task_id, kind) WHERE task_id IS NOT NULL;
CREATE INDEX ledger_by_account ON ledger (account_id, id);

CREATE TABLE idempotency (
    account_id TEXT NOT NULL,
    key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    task_id TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, key)
);

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    account_id TEXT,
    kind TEXT NOT NULL,
    content_type TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX files_expiry ON files (expires_at);

-- Reusable subjects made by kling-custom-element tasks; a task naming one is pinned
-- to the provider that made it.
CREATE TABLE elements (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    task_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    upstream_id TEXT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    frontal_file TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX elements_by_account ON elements (account_id);
