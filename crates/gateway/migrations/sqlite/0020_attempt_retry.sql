-- A submit the upstream refused for a reason worth one more try on the same
-- route (its rate limit, a 5xx, a refused connection) says so here, with the
-- pace of that retry ('throttled' or 'brief'); the failover policy reads the
-- run of such refusals to know when the route is spent.
ALTER TABLE task_attempts ADD COLUMN retry TEXT;
