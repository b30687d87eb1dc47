-- 0002: a per-account counter of money moves, so the Redis mirror can tell whether
-- a move is already inside the snapshot it loaded (see balance/lua/apply_move.lua).
ALTER TABLE accounts ADD COLUMN money_version bigint NOT NULL DEFAULT 0;
-- The account's money_version right after this entry moved its main balance
-- (NULL for entries that do not: call debits, commission pocket).
ALTER TABLE ledger_entries ADD COLUMN account_version bigint;
