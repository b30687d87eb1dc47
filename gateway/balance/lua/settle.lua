-- settle.lua: the call ended; turn its holds into debits at the real duration and
-- append the settlement to the stream in the same atomic step.
--
-- KEYS[1]  session hash
-- KEYS[2]  due sorted set
-- KEYS[3]  settlement stream (same hash tag)
-- ARGV[1]  duration (s) the switch reported; 0 for a failed call
-- ARGV[2]  end JSON: disconnect time, cause... merged into the stream entry
-- ARGV[3]  how long (s) the settled session is kept to answer repeats
--
-- Returns {1, 'OK', costs_json, stream_id}; a repeat returns {1, 'DUP', costs_json,
-- stream_id} of the first settlement and changes nothing.
-- {0, 'UNKNOWN_SESSION', '', ''} / {0, 'SESSION_ENDED', '', ''} (released).
--
-- The stream entry is written by append_settlement (lib.lua).

local s = redis.call('HMGET', KEYS[1], 'st', 'holds', 'levels', 'accounts', 'meta',
    'costs', 'stream_id', 'granted', 'answered_at', 'reserved_at')
if not s[1] then
    return {0, 'UNKNOWN_SESSION', '', ''}
end
if s[1] == 'settled' then
    return {1, 'DUP', s[6], s[7]}
end
if s[1] == 'released' then
    return {0, 'SESSION_ENDED', '', ''}
end

local duration = tonumber(ARGV[1])
local holds = cjson.decode(s[2])
local levels = cjson.decode(s[3])
local accounts = cjson.decode(s[4])
local costs, billed = {}, {}
for i = 1, #accounts do
    local rate = levels[i]
    local cost, b = 0, 0
    if rate[1] == 1 then
        b = billed_seconds(rate, duration)
        cost = call_cost(rate, duration)
        redis.call('HINCRBY', accounts[i], 'held', 0 - holds[i])
        redis.call('HINCRBY', accounts[i], 'bal', 0 - cost)
    end
    redis.call('HINCRBY', accounts[i], 'calls', -1)
    costs[i] = cost
    billed[i] = b
end

local costs_json = cjson.encode(costs)
local id = append_settlement(KEYS[3], {
    session = KEYS[1], accounts = accounts, levels = levels, billed = billed, costs = costs,
    duration = duration, granted = tonumber(s[8]), answered_at = tonumber(s[9]),
    reserved_at = tonumber(s[10]),
}, s[5], ARGV[2])
redis.call('HSET', KEYS[1], 'st', 'settled', 'costs', costs_json, 'stream_id', id)
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, 'OK', costs_json, id}
