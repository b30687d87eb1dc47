-- apply_move.lua: mirror a money move that PostgreSQL has committed.
--
-- KEYS[1]  account hash
-- KEYS[2]  dedupe key for this ledger entry (same hash tag)
-- ARGV[1]  amount (micros, signed)
-- ARGV[2]  the account's money version after the move
-- ARGV[3]  dedupe key lifetime (s)
--
-- Returns 1 applied; 0 not mirrored (the next load reads PostgreSQL, which has
-- it); 2 already in the mirror's snapshot (loaded at or after that version);
-- 3 already applied (a retried move).

if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
if tonumber(ARGV[2]) <= tonumber(redis.call('HGET', KEYS[1], 'lver')) then
    return 2
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[3])) then
    return 3
end
redis.call('HINCRBY', KEYS[1], 'bal', tonumber(ARGV[1]))
return 1
