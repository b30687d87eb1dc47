-- release.lua: free a call's holds and slots without charging anything.
--
-- KEYS[1]  session hash
-- KEYS[2]  due sorted set
-- KEYS[3]  slices sorted set
-- ARGV[1]  how long (s) the released session is kept to answer repeats
--
-- Returns {1, 'OK'}; a repeat returns {1, 'DUP'}. {0, 'UNKNOWN_SESSION'} when
-- there is no reservation, {0, 'SESSION_ENDED'} when it was settled.

local s = redis.call('HMGET', KEYS[1], 'st', 'holds', 'levels', 'accounts', 'exp', 'mode')
if not s[1] then
    return {0, 'UNKNOWN_SESSION'}
end
if s[1] == 'released' then
    return {1, 'DUP'}
end
if s[1] == 'settled' then
    return {0, 'SESSION_ENDED'}
end
local holds = cjson.decode(s[2])
local levels = cjson.decode(s[3])
local accounts = cjson.decode(s[4])
for i = 1, #accounts do
    if levels[i][1] == 1 then
        redis.call('HINCRBY', accounts[i], 'held', 0 - holds[i])
    end
    redis.call('HINCRBY', accounts[i], 'calls', -1)
end
if s[5] then
    redis.call('HINCRBY', accounts[#accounts], 'exp', 0 - tonumber(s[5]))
end
redis.call('HSET', KEYS[1], 'st', 'released')
redis.call('ZREM', KEYS[2], KEYS[1])
if s[6] == 'slice' then
    redis.call('ZREM', KEYS[3], KEYS[1])
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return {1, 'OK'}
