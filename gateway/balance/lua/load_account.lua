-- load_account.lua: mirror one account from PostgreSQL, unless already mirrored.
--
-- KEYS[1]  account hash
-- ARGV[1]  balance (micros)      ARGV[2] credit limit (micros)
-- ARGV[3]  max concurrent calls (-1: no limit)
-- ARGV[4]  status (active, disabled, removed)
-- ARGV[5]  money version of the PostgreSQL row read (see apply_move.lua)
-- ARGV[6..10]  call rules: hour, day and per-call spend caps (micros), attempts per
--          second and per minute; -1 each: none (see lib.lua)
--
-- Returns 1 when loaded, 0 when the hash already existed (it is then the truer
-- copy: it holds live holds and debits PostgreSQL has not committed yet).

if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
end
redis.call('HSET', KEYS[1], 'bal', ARGV[1], 'lim', ARGV[2], 'held', 0, 'calls', 0,
    'maxc', ARGV[3], 'st', ARGV[4], 'lver', ARGV[5],
    'caph', ARGV[6] or -1, 'capd', ARGV[7] or -1, 'capc', ARGV[8] or -1,
    'cps', ARGV[9] or -1, 'cpm', ARGV[10] or -1)
return 1
