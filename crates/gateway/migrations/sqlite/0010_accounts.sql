-- Accounts for running vidgate as a business (issue 12): per-key limits, key
-- management by keys, disabled accounts, top-up codes, sign-up rate counters
-- and the audit log of every admin action that moves money or access.

-- A key's budget replaces its credit cap: an existing cap becomes a total budget.
ALTER TABLE api_keys RENAME COLUMN credit_cap TO budget_credits;
ALTER TABLE api_keys ADD COLUMN budget_period TEXT;
UPDATE api_keys SET budget_period = 'total' WHERE budget_credits IS NOT NULL;
-- Held plus charged since period_start, for day and month budgets (lifetime
-- spending stays in `spent`).
ALTER TABLE api_keys ADD COLUMN period_start BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN period_spent BIGINT NOT NULL DEFAULT 0 CHECK (period_spent >= 0);
ALTER TABLE api_keys ADD COLUMN rpm BIGINT;
ALTER TABLE api_keys ADD COLUMN max_concurrent BIGINT;
-- Creates per second over the last minute, "second:count,...", for rpm.
ALTER TABLE api_keys ADD COLUMN rate_window TEXT;
ALTER TABLE api_keys ADD COLUMN manage_keys BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN created_by TEXT;
-- An account's first key is the one made with it: it manages the others.
UPDATE api_keys SET manage_keys = 1 WHERE id = (
    SELECT k2.id FROM api_keys k2 WHERE k2.account_id = api_keys.account_id ORDER BY k2.created_at, k2.id LIMIT 1);

ALTER TABLE accounts ADD COLUMN disabled_at BIGINT;

-- Every task across accounts, newest first (the console's task list).
CREATE INDEX tasks_by_time ON tasks (created_us DESC, id DESC);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    account_id TEXT,
    before_state TEXT,
    after_state TEXT,
    source TEXT NOT NULL
);
CREATE INDEX audit_by_account ON audit_log (account_id, id);

CREATE TABLE code_batches (
    id TEXT PRIMARY KEY,
    value BIGINT NOT NULL CHECK (value > 0),
    count BIGINT NOT NULL,
    uses_per_code BIGINT NOT NULL,
    expires_at BIGINT,
    note TEXT,
    created_at BIGINT NOT NULL
);

-- Codes are kept as the SHA-256 of their text only.
CREATE TABLE topup_codes (
    code_hash TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL REFERENCES code_batches (id),
    prefix TEXT NOT NULL,
    value BIGINT NOT NULL,
    uses_left BIGINT NOT NULL CHECK (uses_left >= 0),
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX topup_codes_by_batch ON topup_codes (batch_id);

-- One redemption of a code per account.
CREATE TABLE code_redemptions (
    code_hash TEXT NOT NULL,
    account_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (code_hash, account_id)
);

-- Fixed-window counters shared by every replica (sign-ups per client address).
CREATE TABLE rate_counters (
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (scope, subject, window_start)
);
