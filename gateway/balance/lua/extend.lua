-- extend.lua: an interim update; hold more time when the switch can be told.
--
-- KEYS[1]  session hash
-- KEYS[2]  due sorted set
-- ARGV[1]  now (unix seconds)
-- ARGV[2]  hold margin (s)
-- ARGV[3]  max_call_s
-- ARGV[4]  1 when the switch can be told of a longer grant (it will then be
--          re-granted), 0 to keep the hold as it is
--
-- Returns {1, 'OK', granted_s, grew}: grew = 1 when more time was held. The
-- account hashes are named in the session (same hash tag, same slot).
-- {0, 'UNKNOWN_SESSION', 0, 0} / {0, 'SESSION_ENDED', 0, 0} as in start.lua.

local s = redis.call('HMGET', KEYS[1], 'st', 'granted', 'holds', 'levels', 'accounts',
    'answered_at', 'reserved_at')
if not s[1] then
    return {0, 'UNKNOWN_SESSION', 0, 0}
end
if s[1] ~= 'reserved' and s[1] ~= 'answered' then
    return {0, 'SESSION_ENDED', 0, 0}
end
local granted = tonumber(s[2])
if ARGV[4] ~= '1' then
    return {1, 'OK', granted, 0}
end
local holds = cjson.decode(s[3])
local levels = cjson.decode(s[4])
local accounts = cjson.decode(s[5])
local longest = tonumber(ARGV[3])
for i = 1, #accounts do
    local rate = levels[i]
    if rate[1] == 1 then
        local own = account_available(accounts[i]) + holds[i]
        longest = math.min(longest, max_seconds(rate, own, longest))
    end
end
if longest <= granted then
    return {1, 'OK', granted, 0}
end
for i = 1, #accounts do
    local rate = levels[i]
    if rate[1] == 1 then
        local hold = call_cost(rate, longest)
        redis.call('HINCRBY', accounts[i], 'held', hold - holds[i])
        holds[i] = hold
    end
end
local since = tonumber(s[6] or s[7])
redis.call('HSET', KEYS[1], 'granted', longest, 'holds', cjson.encode(holds))
redis.call('ZADD', KEYS[2], since + longest + tonumber(ARGV[2]), KEYS[1])
return {1, 'OK', longest, 1}
