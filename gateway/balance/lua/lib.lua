-- lib.lua: shared by every balance script (prepended to each at load time).
--
-- Money is integer micro-units, durations whole seconds. Lua 5.1 numbers are
-- doubles: exact for integers below 2^53, and every product here stays far below
-- (price <= 1e9 micros/min and durations <= 1e6 s give at most 1.7e13).
--
-- A rate is the array {charged, price_per_min, connect_fee, first_s, next_s,
-- min_s, grace_s}; charged = 0 means the level is capped for calls only
-- (status, concurrency) and never billed (an agent in transfer mode).

local function ceil_div(a, b)
    return math.floor((a + b - 1) / b)
end

local function boundary_at_or_above(rate, s)
    if s <= rate[4] then
        return rate[4]
    end
    return rate[4] + ceil_div(s - rate[4], rate[5]) * rate[5]
end

-- Largest boundary <= s; the caller guarantees s >= first increment.
local function boundary_at_or_below(rate, s)
    return rate[4] + math.floor((s - rate[4]) / rate[5]) * rate[5]
end

local function charge(rate, billed)
    return rate[3] + ceil_div(billed * rate[2], 60)
end

local function billed_seconds(rate, seconds)
    if seconds <= 0 or seconds <= rate[7] then
        return 0
    end
    return boundary_at_or_above(rate, math.max(seconds, rate[6]))
end

local function call_cost(rate, seconds)
    local b = billed_seconds(rate, seconds)
    if b == 0 then
        return 0
    end
    return charge(rate, b)
end

-- Largest affordable boundary: 0 if none, -1 if every boundary is (price 0).
local function largest_affordable(rate, available)
    local first, grace = rate[4], rate[7]
    local free_upto = 0
    if grace >= first then
        free_upto = boundary_at_or_below(rate, grace)
    end
    local floor_billed = math.max(boundary_at_or_above(rate, grace + 1),
        boundary_at_or_above(rate, rate[6]))
    if charge(rate, floor_billed) > available then
        return free_upto
    end
    if rate[2] == 0 then
        return -1
    end
    -- ceil(b * price / 60) <= m  <=>  b * price <= 60 * m
    return boundary_at_or_below(rate, math.floor(60 * (available - rate[3]) / rate[2]))
end

-- The longest time a call may be granted with `available`, capped at cap_s: an
-- increment boundary (cap_s itself below the first increment, or for a free
-- rate); 0 when not even the first increment plus connect fee fits.
-- Mirrors gateway/rating/billing.py max_seconds (a differential test holds them equal).
local function max_seconds(rate, available, cap_s)
    if cap_s <= 0 or available < 0 then
        return 0
    end
    if rate[2] == 0 and rate[3] == 0 then
        return cap_s
    end
    local affordable = largest_affordable(rate, available)
    if affordable == 0 then
        return 0
    end
    if cap_s < rate[4] then
        return cap_s
    end
    local cap_boundary = boundary_at_or_below(rate, cap_s)
    if affordable < 0 then
        return cap_boundary
    end
    return math.min(affordable, cap_boundary)
end

-- The longest time over a whole chain: the least over the charged levels of what
-- each can afford (max_seconds against cap_s on its own increments, never capped
-- by another level's rounding). Mirrors gateway/rating/billing.py grant_seconds.
local function level_grant(rate, available, cap_s)
    if rate[1] ~= 1 then
        return cap_s
    end
    return max_seconds(rate, available, cap_s)
end

-- The time a slice of `s` seconds covers at every charged level: each level's
-- hold is rounded up to its own increments, so the slice is the least of those
-- roundings (never below s), capped at cap_s.
local function slice_cover(levels, s, cap_s)
    local cover = cap_s
    for i = 1, #levels do
        local rate = levels[i]
        if rate[1] == 1 then
            cover = math.min(cover, boundary_at_or_above(rate, s))
        end
    end
    return cover
end

local function account_available(key)
    local v = redis.call('HMGET', key, 'bal', 'lim', 'held')
    return tonumber(v[1]) + tonumber(v[2]) - tonumber(v[3])
end

-- The longest time (capped at cap_s) every charged level of a running call can
-- cover with what it holds for the call plus what it has available: the least.
local function chain_reach(levels, accounts, holds, cap_s)
    local reach = cap_s
    for i = 1, #accounts do
        local rate = levels[i]
        if rate[1] == 1 then
            local own = account_available(accounts[i]) + holds[i]
            reach = math.min(reach, level_grant(rate, own, cap_s))
        end
    end
    return reach
end

-- Hold `seconds` of a running call on every charged level: each level's held
-- money moves by the difference to what it held; `holds` is updated in place.
local function hold_for(levels, accounts, holds, seconds)
    for i = 1, #accounts do
        local rate = levels[i]
        if rate[1] == 1 then
            local hold = call_cost(rate, seconds)
            redis.call('HINCRBY', accounts[i], 'held', hold - holds[i])
            holds[i] = hold
        end
    end
end

-- Append one settled call to the settlement stream; returns the entry id.
-- The entry has one field, 's': JSON with the session key, the accounts, each
-- level's rate, billed seconds and cost, the duration, and the meta and end
-- objects. Those two are spliced in as the caller gave them, not decoded and
-- re-encoded: cjson would keep only 14 significant digits of their numbers.
local function append_settlement(stream, call, meta_json, end_json)
    local body = cjson.encode(call)
    local entry = string.sub(body, 1, -2) .. ',"meta":' .. meta_json .. ',"end":' .. end_json .. '}'
    return redis.call('XADD', stream, '*', 's', entry)
end
