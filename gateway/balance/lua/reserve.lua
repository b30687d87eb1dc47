-- reserve.lua: authorize a call and hold its money on every level, or change nothing.
--
-- KEYS[1]  session hash        {tag}:sess:<session key>
-- KEYS[2]  due sorted set      {tag}:due   (session key -> deadline, for the sweeper)
-- KEYS[3..] account hashes, customer first, then each agent up the chain
-- ARGV[1]  now (unix seconds)
-- ARGV[2]  setup timeout (s): a hold with no answer is released after this long
-- ARGV[3]  max_call_s: the longest time ever granted
-- ARGV[4]  levels JSON: one rate array per account key (see lib.lua), same order
-- ARGV[5]  meta JSON: what the CDR needs later (caller, called, NAS...), kept as is
-- ARGV[6]  slice mode: the smallest first slice (s); 0 holds the whole grant
-- ARGV[7]  slice mode: the largest slice (s)
-- ARGV[8]  links JSON: [[link sorted set, lifetime s], ...] an accounting request
--          finds this (provisional) hold by (adopt.lua); '' when the key is final
--
-- The grant is the least over the charged levels of what each can afford (under its
-- credit limit and its spend caps: lib.lua level_room) against
-- max_call_s on its own increments. Whole mode holds the grant's cost on every
-- level; slice mode holds a first slice (the customer's average call length kept
-- between the two slice bounds, rounded up to every level's increments) and the
-- rest is extended while the call runs (extend.lua).
--
-- Returns {1, 'OK', 0, granted_s, holds_json, held_s, customer_available} on
-- success ('DUP' instead of 'OK' when the session already holds: its answer is
-- repeated), else {0, reason, level, 0, '', 0, 0} naming the first level
-- (1 = customer) that refused:
--   NOT_LOADED      the account hash is missing: load it from PostgreSQL and retry
--   DISABLED        the account is disabled or removed
--   TOO_MANY_CALLS  the account's concurrent-call limit is reached
--   ZERO_BALANCE    the customer has nothing available
--   INSUFFICIENT_FUNDS  the customer cannot pay the first increment
--   AGENT_CAP       an agent above cannot cover the first increment
--   SPEND_CAP_HOUR / SPEND_CAP_DAY / SPEND_CAP_CALL  a level's spend cap leaves no
--                   room for the first increment (call rules; see lib.lua)
--   CPS_LIMIT       a level's call-attempt rate (per second or minute) is reached;
--                   checked for every level before the rest, and the attempt is
--                   counted even when the call is refused
--   SESSION_ENDED   this session was already settled or released

local existing = redis.call('HMGET', KEYS[1], 'st', 'granted', 'holds', 'held')
if existing[1] then
    if existing[1] == 'reserved' or existing[1] == 'answered' then
        return {1, 'DUP', 0, tonumber(existing[2]), existing[3],
            tonumber(existing[4] or existing[2]), account_available(KEYS[3])}
    end
    return {0, 'SESSION_ENDED', 0, 0, '', 0, 0}
end

local now = tonumber(ARGV[1])
local max_call = tonumber(ARGV[3])
local levels = cjson.decode(ARGV[4])
local slice_min = tonumber(ARGV[6])
local scheds = schedules(levels, nil)  -- not answered yet: the worst case
local n = #KEYS - 2
local granted = max_call
local customer_available = 0

-- Every level is read first, and its call attempts counted (an agent's limit counts
-- its whole subtree even when a level below refuses the call for another reason).
local state = {}
for i = 1, n do
    local key = KEYS[i + 2]
    local a = redis.call('HMGET', key, 'st', 'calls', 'maxc', 'bal', 'lim', 'held',
        'caph', 'capd', 'capc', 'cps', 'cpm')
    if not a[1] then
        return {0, 'NOT_LOADED', i, 0, '', 0, 0}
    end
    state[i] = a
end
for i = 1, n do
    local a = state[i]
    local cps, cpm = tonumber(a[10] or -1), tonumber(a[11] or -1)
    if (cps >= 0 or cpm >= 0) and not count_attempt(KEYS[i + 2], cps, cpm) then
        return {0, 'CPS_LIMIT', i, 0, '', 0, 0}
    end
end

for i = 1, n do
    local key = KEYS[i + 2]
    local a = state[i]
    if a[1] ~= 'active' then
        return {0, 'DISABLED', i, 0, '', 0, 0}
    end
    local maxc = tonumber(a[3])
    if maxc >= 0 and tonumber(a[2]) >= maxc then
        return {0, 'TOO_MANY_CALLS', i, 0, '', 0, 0}
    end
    local rate = levels[i]
    if rate[1] == 1 then
        local room, capc, why = level_room(tonumber(a[4]), tonumber(a[5]),
            tonumber(a[7] or -1), tonumber(a[8] or -1), tonumber(a[9] or -1), key)
        local available = room - tonumber(a[6])
        if capc >= 0 and capc < available then
            available, why = capc, 'SPEND_CAP_CALL'
        end
        if i == 1 then
            customer_available = available
        end
        local level_max = level_grant(rate, available, max_call, scheds[i])
        if level_max <= 0 then
            if why then
                return {0, why, i, 0, '', 0, 0}
            end
            if i > 1 then
                return {0, 'AGENT_CAP', i, 0, '', 0, 0}
            end
            if available <= 0 then
                return {0, 'ZERO_BALANCE', i, 0, '', 0, 0}
            end
            return {0, 'INSUFFICIENT_FUNDS', i, 0, '', 0, 0}
        end
        granted = math.min(granted, level_max)
    end
end

local held = granted
local slice = 0
if slice_min > 0 then
    local average = tonumber(redis.call('HGET', KEYS[3], 'avgd') or 0)
    slice = math.min(math.max(average, slice_min), tonumber(ARGV[7]))
    held = slice_cover(levels, slice, granted)
end

local holds = {}
for i = 1, n do
    local key = KEYS[i + 2]
    local rate = levels[i]
    local hold = 0
    if rate[1] == 1 then
        hold = call_cost(rate, held, scheds[i])
        redis.call('HINCRBY', key, 'held', hold)
    end
    holds[i] = hold
    redis.call('HINCRBY', key, 'calls', 1)
end

local holds_json = cjson.encode(holds)
local accounts = {}
for i = 1, n do
    accounts[i] = KEYS[i + 2]
end
redis.call('HSET', KEYS[1],
    'st', 'reserved', 'granted', granted, 'held', held, 'holds', holds_json,
    'levels', ARGV[4], 'accounts', cjson.encode(accounts), 'meta', ARGV[5],
    'reserved_at', now)
if slice_min > 0 then
    -- What the customer was granted beyond what it holds: the tree's exposure.
    local exposure = call_cost(levels[1], granted, scheds[1]) - holds[1]
    redis.call('HSET', KEYS[1], 'mode', 'slice', 'slice', slice, 'exp', exposure)
    redis.call('HINCRBY', KEYS[n + 2], 'exp', exposure)
end
if ARGV[8] ~= '' then
    local links = cjson.decode(ARGV[8])
    for i = 1, #links do
        redis.call('ZADD', links[i][1], now, KEYS[1])
        redis.call('EXPIRE', links[i][1], links[i][2])
    end
    redis.call('HSET', KEYS[1], 'links', ARGV[8])
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), KEYS[1])
return {1, 'OK', 0, granted, holds_json, held, customer_available - holds[1]}
