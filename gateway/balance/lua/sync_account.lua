-- sync_account.lua: copy an account's limits and status (not money) after a change.
--
-- KEYS[1]  account hash
-- ARGV[1]  credit limit (micros)   ARGV[2] max concurrent calls (-1: no limit)
-- ARGV[3]  status
--
-- Returns 1 when updated, 0 when the account is not mirrored (nothing to do: it
-- is loaded with the new values on first use).

if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
redis.call('HSET', KEYS[1], 'lim', ARGV[1], 'maxc', ARGV[2], 'st', ARGV[3])
return 1
