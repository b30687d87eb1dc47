-- start.lua: the call was answered; the hold now runs from the answer time.
--
-- KEYS[1]  session hash
-- KEYS[2]  due sorted set
-- ARGV[1]  answer time (unix seconds)
-- ARGV[2]  hold margin (s)
--
-- Returns {1, 'OK', granted_s}; a repeat returns the same and changes nothing.
-- {0, 'UNKNOWN_SESSION', 0} when there is no reservation, {0, 'SESSION_ENDED', 0}
-- when it was already settled or released.

local s = redis.call('HMGET', KEYS[1], 'st', 'granted')
if not s[1] then
    return {0, 'UNKNOWN_SESSION', 0}
end
local granted = tonumber(s[2])
if s[1] == 'answered' then
    return {1, 'OK', granted}
end
if s[1] ~= 'reserved' then
    return {0, 'SESSION_ENDED', 0}
end
local at = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'st', 'answered', 'answered_at', at)
redis.call('ZADD', KEYS[2], at + granted + tonumber(ARGV[2]), KEYS[1])
return {1, 'OK', granted}
