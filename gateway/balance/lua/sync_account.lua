-- sync_account.lua: copy an account's limits and status (not money) after a change.
--
-- KEYS[1]  account hash
-- ARGV[1]  credit limit (micros)   ARGV[2] max concurrent calls (-1: no limit)
-- ARGV[3]  status
-- ARGV[4..8]  call rules as in load_account.lua (ARGV[6..10] there)
--
-- Returns 1 when updated, 0 when the account is not mirrored (nothing to do: it
-- is loaded with the new values on first use).

if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
redis.call('HSET', KEYS[1], 'lim', ARGV[1], 'maxc', ARGV[2], 'st', ARGV[3],
    'caph', ARGV[4] or -1, 'capd', ARGV[5] or -1, 'capc', ARGV[6] or -1,
    'cps', ARGV[7] or -1, 'cpm', ARGV[8] or -1)
return 1
