-- charge.lua: bill a call that ended without a reservation (a Stop whose
-- authorization never reached us, or whose session was lost): debit every paying
-- level at the real duration and append the settlement, as settle.lua does.
-- The call happened, so it is charged even past a balance: never lose a call.
--
-- KEYS[1]  session hash        KEYS[2] settlement stream (same hash tag)
-- KEYS[3..] account hashes, customer first
-- ARGV[1]  now (unix seconds)
-- ARGV[2]  levels JSON (rate arrays, see lib.lua)
-- ARGV[3]  meta JSON            ARGV[4] duration (s)
-- ARGV[5]  end JSON             ARGV[6] how long (s) the session is remembered
-- ARGV[7]  the call's start (unix s): a rate with periods prices the call from it
-- ARGV[8]  the duration in ms when the switch reported it, -1 otherwise (settle.lua)
--
-- Returns {1, 'OK', costs_json, stream_id}; {1, 'DUP', costs_json, stream_id} when
-- this session was already settled; {0, 'SESSION_EXISTS', '', ''} when it holds a
-- live reservation (settle it instead); {0, 'NOT_LOADED', level, ''}. A session
-- that was released is charged (see below).

local s = redis.call('HMGET', KEYS[1], 'st', 'costs', 'stream_id')
if s[1] == 'settled' then
    return {1, 'DUP', s[2], s[3]}
end
-- A released session (its hold expired, or the NAS restarted) whose Stop still
-- comes was a real call: it is billed here like one that was never reserved.
if s[1] and s[1] ~= 'released' then
    return {0, 'SESSION_EXISTS', '', ''}
end
local n = #KEYS - 2
for i = 1, n do
    if redis.call('EXISTS', KEYS[i + 2]) == 0 then
        return {0, 'NOT_LOADED', i, ''}
    end
end
local now = tonumber(ARGV[1])
local levels = cjson.decode(ARGV[2])
local duration = tonumber(ARGV[4])
local scheds = schedules(levels, tonumber(ARGV[7]))
local duration_ms = tonumber(ARGV[8] or -1)
local costs, billed, holds, accounts = {}, {}, {}, {}
for i = 1, n do
    local rate = levels[i]
    local cost, b = 0, 0
    if rate[1] == 1 then
        if rate[12] and duration_ms >= 0 then
            b = ceil_div(billed_ms(rate, duration_ms), 1000)
            cost = call_cost_ms(rate, duration_ms, scheds[i])
        else
            b = billed_seconds(rate, duration)
            cost = call_cost(rate, duration, scheds[i])
        end
        redis.call('HINCRBY', KEYS[i + 2], 'bal', 0 - cost)
        add_spend(KEYS[i + 2], cost)
    end
    costs[i], billed[i], holds[i], accounts[i] = cost, b, 0, KEYS[i + 2]
end
local costs_json = cjson.encode(costs)
local id = append_settlement(KEYS[2], {
    session = KEYS[1], accounts = accounts, levels = levels, billed = billed, costs = costs,
    duration = duration, granted = duration, reserved_at = now,
}, ARGV[3], ARGV[5])
redis.call('HSET', KEYS[1], 'st', 'settled', 'costs', costs_json, 'stream_id', id,
    'holds', cjson.encode(holds), 'levels', ARGV[2], 'accounts', cjson.encode(accounts),
    'meta', ARGV[3], 'granted', duration, 'reserved_at', now)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return {1, 'OK', costs_json, id}
