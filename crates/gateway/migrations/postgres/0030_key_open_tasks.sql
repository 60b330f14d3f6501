-- How many tasks of the key are pending or processing, kept by the hold (+1) and
-- the settlement (-1) that every task has exactly once, in their transactions:
-- `max_concurrent` is checked against it instead of counting the key's open
-- tasks on every create (a count that grows with the tasks a key keeps open).
ALTER TABLE api_keys ADD COLUMN open_tasks BIGINT NOT NULL DEFAULT 0;
UPDATE api_keys SET open_tasks = (
    SELECT COUNT(*) FROM tasks WHERE tasks.key_id = api_keys.id AND tasks.status IN ('pending', 'processing')
);
