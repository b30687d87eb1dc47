-- 0009: indexes the CDR report and the rate group pages need.
--
-- An admin's CDR report reads a time window of every account, newest (or oldest)
-- first: a b-tree on (setup_at, id), the report's order and tie-breaker, gives
-- each monthly partition a sorted path in both directions, so a page is read
-- without sorting the window. Agents' reports go through the GIN index on chain.
CREATE INDEX cdrs_setup ON cdrs (setup_at, id);

-- "Which accounts use this rate group": rate group visibility for agents, the
-- in-use check before a delete, and the foreign key's own check on delete.
CREATE INDEX accounts_rate_group ON accounts (rate_group_id);
