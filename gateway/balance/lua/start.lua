-- start.lua: the call was answered; the hold now runs from the answer time.
--
-- KEYS[1]  session hash
-- KEYS[2]  due sorted set
-- KEYS[3]  slices sorted set (session -> when its hold needs the next slice)
-- ARGV[1]  answer time (unix seconds)
-- ARGV[2]  hold margin (s)
-- ARGV[3]  slice lead (s): a slice call is extended this long before its held
--          time runs out
-- ARGV[4]  what the front needs to tell the switch to hang up (opaque), or ''
--
-- Returns {1, 'OK', granted_s, held_s}; a repeat returns the same and changes
-- nothing. {0, 'UNKNOWN_SESSION', 0, 0} when there is no reservation,
-- {0, 'SESSION_ENDED', 0, 0} when it was already settled or released.

local s = redis.call('HMGET', KEYS[1], 'st', 'granted', 'held', 'mode')
if not s[1] then
    return {0, 'UNKNOWN_SESSION', 0, 0}
end
local granted = tonumber(s[2])
local held = tonumber(s[3] or s[2])
if s[1] == 'answered' then
    return {1, 'OK', granted, held}
end
if s[1] ~= 'reserved' then
    return {0, 'SESSION_ENDED', 0, 0}
end
local at = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'st', 'answered', 'answered_at', at)
if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[1], 'reach', ARGV[4])
end
redis.call('ZADD', KEYS[2], at + held + tonumber(ARGV[2]), KEYS[1])
if s[4] == 'slice' and held < granted then
    redis.call('ZADD', KEYS[3], at + held - tonumber(ARGV[3]), KEYS[1])
end
return {1, 'OK', granted, held}
