-- The two "newest first" indexes were declared DESC, so every new task went in
-- at their far left: a B-tree grows well only at its right edge, and these
-- split into half-empty pages (49% full against 87% for the others), twice the
-- pages and more of them rewritten per commit. Ascending, new tasks append at
-- the right edge; "newest first" reads the same index backwards, as the query
-- plans show (no sort step).
DROP INDEX IF EXISTS tasks_by_account;
CREATE INDEX tasks_by_account ON tasks (account_id, created_us, id);
DROP INDEX IF EXISTS tasks_by_time;
CREATE INDEX tasks_by_time ON tasks (created_us, id);
