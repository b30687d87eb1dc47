-- settle.lua: the call ended; turn its holds into debits at the real duration and
-- append the settlement to the stream in the same atomic step.
--
-- KEYS[1]  session hash
-- KEYS[2]  due sorted set
-- KEYS[3]  settlement stream (same hash tag)
-- KEYS[4]  slices sorted set
-- ARGV[1]  duration (s) the switch reported; 0 for a failed call
-- ARGV[2]  end JSON: disconnect time, cause... merged into the stream entry
-- ARGV[3]  how long (s) the settled session is kept to answer repeats
-- ARGV[4]  overrun grace (s): billed past the call's limit before it counts as overrun
-- ARGV[5]  1: bill at most limit + grace (the rest is overrun, unbilled); 0: bill it all
-- ARGV[6]  the call's start (unix s) when it has no answer time (a Stop without Start)
-- ARGV[7]  the duration in ms when the switch's times tell it (within a second of
--          ARGV[1]), -1 otherwise: rates with next_ms bill on it
--
-- A rate with periods prices the call from its answer time (lib.lua level_sched).
--
-- A call's limit is its grant, or its held time once it was cut (no further slice
-- could be held and the switch was told to hang up then). A slice call that ran past
-- its held time uncut (its extension came late) is limited to what its levels can
-- cover now, so a capped call never takes a level below its credit limit.
--
-- Returns {1, 'OK', costs_json, stream_id, overrun_s}; a repeat returns
-- {1, 'DUP', costs_json, stream_id, 0} of the first settlement and changes nothing.
-- {0, 'UNKNOWN_SESSION', '', '', 0} / {0, 'SESSION_ENDED', '', '', 0} (released).
--
-- The stream entry is written by append_settlement (lib.lua).

local s = redis.call('HMGET', KEYS[1], 'st', 'holds', 'levels', 'accounts', 'meta',
    'costs', 'stream_id', 'granted', 'answered_at', 'reserved_at', 'held', 'cut', 'exp',
    'sid', 'sleg', 'mode')
if not s[1] then
    return {0, 'UNKNOWN_SESSION', '', '', 0}
end
if s[1] == 'settled' then
    return {1, 'DUP', s[6], s[7], 0}
end
if s[1] == 'released' then
    return {0, 'SESSION_ENDED', '', '', 0}
end

local duration = tonumber(ARGV[1])
local holds = cjson.decode(s[2])
local levels = cjson.decode(s[3])
local accounts = cjson.decode(s[4])
local scheds = schedules(levels, tonumber(s[9] or ARGV[6]))
local granted = tonumber(s[8])
local limit = granted
local held = tonumber(s[11] or granted)
if s[12] == '1' then
    limit = held
elseif s[16] == 'slice' and duration > held then
    limit = math.max(chain_reach(levels, accounts, holds, granted, scheds), held)
end
local overrun = math.max(0, duration - limit - tonumber(ARGV[4]))
local billed_duration = duration
if ARGV[5] == '1' then
    billed_duration = duration - overrun
end
local duration_ms = tonumber(ARGV[7] or -1)
if duration_ms >= 0 and ARGV[5] == '1' then
    -- Milliseconds too are billed up to the limit (plus grace) at most.
    duration_ms = math.min(duration_ms, (limit + tonumber(ARGV[4])) * 1000)
end
local costs, billed = {}, {}
for i = 1, #accounts do
    local rate = levels[i]
    local cost, b = 0, 0
    if rate[1] == 1 then
        if rate[12] and duration_ms >= 0 then
            local ms = billed_ms(rate, duration_ms)
            b = ceil_div(ms, 1000)
            cost = call_cost_ms(rate, duration_ms, scheds[i])
        else
            b = billed_seconds(rate, billed_duration)
            cost = call_cost(rate, billed_duration, scheds[i])
        end
        redis.call('HINCRBY', accounts[i], 'held', 0 - holds[i])
        redis.call('HINCRBY', accounts[i], 'bal', 0 - cost)
        add_spend(accounts[i], cost)
    end
    redis.call('HINCRBY', accounts[i], 'calls', -1)
    costs[i] = cost
    billed[i] = b
end
if s[13] then
    redis.call('HINCRBY', accounts[#accounts], 'exp', 0 - tonumber(s[13]))
end
if duration > 0 and s[16] == 'slice' then
    -- The customer's average answered call (1/8 weight per call): its next first slice.
    local average = tonumber(redis.call('HGET', accounts[1], 'avgd') or duration)
    redis.call('HSET', accounts[1], 'avgd', math.floor((7 * average + duration) / 8))
end

local costs_json = cjson.encode(costs)
local call = {
    session = KEYS[1], accounts = accounts, levels = levels, billed = billed, costs = costs,
    duration = duration, granted = granted, answered_at = tonumber(s[9]),
    reserved_at = tonumber(s[10]), overrun = overrun,
}
if s[14] then
    call.linked = {s[14], s[15] or ''}
end
local id = append_settlement(KEYS[3], call, s[5], ARGV[2])
redis.call('HSET', KEYS[1], 'st', 'settled', 'costs', costs_json, 'stream_id', id)
redis.call('ZREM', KEYS[2], KEYS[1])
if s[16] == 'slice' then
    redis.call('ZREM', KEYS[4], KEYS[1])
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, 'OK', costs_json, id, overrun}
