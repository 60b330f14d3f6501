-- Since 0030 `max_concurrent` reads the key's open-task counter, and nothing
-- reads this index any more; every create still paid for it with a page
-- written to the log per commit.
DROP INDEX IF EXISTS tasks_open_by_key;
