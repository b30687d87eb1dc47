-- lib.lua: shared by every balance script (prepended to each at load time).
--
-- Money is integer micro-units, durations whole seconds. Lua 5.1 numbers are
-- doubles: exact for integers below 2^53, and every product here stays far below
-- (price <= 1e9 micros/min and durations <= 1e6 s give at most 1.7e13).
--
-- A rate is the array {charged, price_per_min, connect_fee, first_s, next_s,
-- min_s, grace_s [, quantum, half_up [, worst, segments [, next_ms]]]}; charged = 0 means the
-- level is capped for calls only (status, concurrency) and never billed (an agent
-- in transfer mode). quantum (micros) and half_up (0/1) round a call's final cost
-- (gateway/rating/rounding.py); absent: exact. A rate with periods (peak/off-peak,
-- gateway/rating/schedule.py) adds two price schedules:
--   worst    {fee, offset1, price1, offset2, price2...}: the dearest a call may meet
--            whenever it is answered within the setup window (grants and holds
--            before the answer);
--   segments {t1, price1, fee1, t2, price2, fee2...}: unix seconds at which the
--            price changes; with the answer time it gives the call's own schedule.
-- A schedule S is {fee, offset, price, ...}: price i from offset i (s after the
-- answer) until the next offset. The billed time (increments) is reckoned once for
-- the whole call and each billed second priced by S; the sum is rounded up once.
-- worst and segments are false for a rate without periods that has next_ms: its
-- increments after the first, in milliseconds (call_cost_ms), for a call whose
-- switch reports milliseconds; its next_s is 1, so everything in seconds holds.

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

-- The schedule of a level's call: nil for a rate without periods; answered_at nil
-- (not answered yet): the worst case; else the call's own from its answer.
local function level_sched(rate, answered_at)
    local worst = rate[10]
    if not worst then
        return nil
    end
    if answered_at == nil then
        return worst
    end
    local segs = rate[11]
    local first = 1
    for j = 4, #segs, 3 do
        if segs[j] <= answered_at then
            first = j
        else
            break
        end
    end
    local S = {segs[first + 2], 0, segs[first + 1]}
    for j = first + 3, #segs, 3 do
        S[#S + 1] = segs[j] - answered_at
        S[#S + 1] = segs[j + 1]
    end
    return S
end

-- Shared by every chain without periods (read only): no table made per call.
local NO_SCHEDULES = {}

local function schedules(levels, answered_at)
    local out = nil
    for i = 1, #levels do
        if levels[i][10] then
            out = out or {}
            out[i] = level_sched(levels[i], answered_at)
        end
    end
    return out or NO_SCHEDULES
end

-- Sum over the seconds [0, b) of their price per minute.
local function sched_weight(S, b)
    local w, n = 0, #S
    for j = 2, n, 2 do
        local o = S[j]
        if o >= b then
            break
        end
        local e = b
        if j + 2 <= n and S[j + 2] < b then
            e = S[j + 2]
        end
        w = w + (e - o) * S[j + 1]
    end
    return w
end

-- Largest s >= 0 with sched_weight(S, s) <= budget (>= 0); -1 when there is none.
local function sched_reach(S, budget)
    local spent, n = 0, #S
    for j = 2, n, 2 do
        local o, p = S[j], S[j + 1]
        if j + 2 > n then
            if p == 0 then
                return -1
            end
            return o + math.floor((budget - spent) / p)
        end
        local part = (S[j + 2] - o) * p
        if spent + part > budget then
            return o + math.floor((budget - spent) / p)
        end
        spent = spent + part
    end
    return -1
end

local function sched_free(S)
    if S[1] ~= 0 then
        return false
    end
    for j = 3, #S, 2 do
        if S[j] ~= 0 then
            return false
        end
    end
    return true
end

-- A cost rounded to the rate group's decimals (quantum micros), up or half-up.
local function round_cost(rate, c)
    local q = rate[8]
    if q == nil or q == 1 then
        return c
    end
    if rate[9] == 1 then
        return math.floor((c + q / 2) / q) * q
    end
    return ceil_div(c, q) * q
end

-- The largest unrounded cost whose rounding fits `available` (>= 0).
local function cost_budget(rate, available)
    local q = rate[8]
    if q == nil or q == 1 then
        return available
    end
    if rate[9] == 1 then
        return (math.floor(available / q) + 1) * q - q / 2 - 1
    end
    return math.floor(available / q) * q
end

local function charge(rate, billed, S)
    if S then
        return round_cost(rate, S[1] + ceil_div(sched_weight(S, billed), 60))
    end
    if rate[8] == nil then  -- exact and one price: the common case, kept short
        return rate[3] + ceil_div(billed * rate[2], 60)
    end
    return round_cost(rate, rate[3] + ceil_div(billed * rate[2], 60))
end

local function billed_seconds(rate, seconds)
    if seconds <= 0 or seconds <= rate[7] then
        return 0
    end
    return boundary_at_or_above(rate, math.max(seconds, rate[6]))
end

local function call_cost(rate, seconds, S)
    local b = billed_seconds(rate, seconds)
    if b == 0 then
        return 0
    end
    return charge(rate, b, S)
end

-- Milliseconds (rate[12], see gateway/rating/billing.py cost_ms). Products are split
-- at whole minutes so that every one stays below 2^53 (exact in a double).
local function billed_ms(rate, d)
    if d <= 0 or d <= rate[7] * 1000 then
        return 0
    end
    local length = math.max(d, rate[6] * 1000)
    local first = rate[4] * 1000
    if length <= first then
        return first
    end
    return first + ceil_div(length - first, rate[12]) * rate[12]
end

-- ceil(sum of ms x price / 60000) for ms spans {length, price, ...}: whole minutes
-- and the remainders apart.
local function minute_cost_ms(spans)
    local whole, rest = 0, 0
    for j = 1, #spans, 2 do
        local len, p = spans[j], spans[j + 1]
        local minutes = math.floor(len / 60000)
        whole = whole + minutes * p
        rest = rest + (len - minutes * 60000) * p
    end
    return whole + ceil_div(rest, 60000)
end

local function call_cost_ms(rate, d, S)
    local b = billed_ms(rate, d)
    if b == 0 then
        return 0
    end
    if not S then
        return round_cost(rate, rate[3] + minute_cost_ms({b, rate[2]}))
    end
    local spans, n = {}, #S
    for j = 2, n, 2 do
        local o = S[j] * 1000
        if o >= b then
            break
        end
        local e = b
        if j + 2 <= n and S[j + 2] * 1000 < b then
            e = S[j + 2] * 1000
        end
        spans[#spans + 1] = e - o
        spans[#spans + 1] = S[j + 1]
    end
    return round_cost(rate, S[1] + minute_cost_ms(spans))
end

-- Largest affordable boundary: 0 if none, -1 if every boundary is (price 0).
local function largest_affordable(rate, available, S)
    local first, grace = rate[4], rate[7]
    local free_upto = 0
    if grace >= first then
        free_upto = boundary_at_or_below(rate, grace)
    end
    local floor_billed = math.max(boundary_at_or_above(rate, grace + 1),
        boundary_at_or_above(rate, rate[6]))
    if charge(rate, floor_billed, S) > available then
        return free_upto
    end
    local budget = available
    if rate[8] ~= nil then
        budget = cost_budget(rate, available)
    end
    if S then
        local reach = sched_reach(S, 60 * (budget - S[1]))
        if reach < 0 then
            return -1
        end
        return boundary_at_or_below(rate, reach)
    end
    if rate[2] == 0 then
        return -1
    end
    -- ceil(b * price / 60) <= m  <=>  b * price <= 60 * m
    return boundary_at_or_below(rate, math.floor(60 * (budget - rate[3]) / rate[2]))
end

-- The longest time a call may be granted with `available`, capped at cap_s: an
-- increment boundary (cap_s itself below the first increment, or for a free
-- rate); 0 when not even the first increment plus connect fee fits.
-- Mirrors gateway/rating/billing.py max_seconds (a differential test holds them equal).
local function max_seconds(rate, available, cap_s, S)
    if cap_s <= 0 or available < 0 then
        return 0
    end
    if S then
        if sched_free(S) then
            return cap_s
        end
    elseif rate[2] == 0 and rate[3] == 0 then
        return cap_s
    end
    local affordable = largest_affordable(rate, available, S)
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
local function level_grant(rate, available, cap_s, S)
    if rate[1] ~= 1 then
        return cap_s
    end
    return max_seconds(rate, available, cap_s, S)
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

-- Spend caps (call rules, mirrored into the account hash as caph, capd, capc; absent
-- or -1: none). A level's spend in a window is what it was debited for calls settled
-- in it; what its live calls hold counts too, so the room left under a cap is
-- cap - spent - held, exactly as balance + limit - held is the room under the credit
-- limit. The last hour is 12 buckets of 5 minutes and the last day 24 of an hour,
-- each bucket a pair of fields (amount, bucket number) in the account hash, with the
-- window's running sum; a bucket counts whole while any of it is inside the window,
-- so spend is never under-counted. Time is Redis's own clock (TIME), the same for
-- every gateway.
local HOUR_WIDTH, HOUR_COUNT, DAY_WIDTH, DAY_COUNT = 300, 12, 3600, 24

local function clock()
    return tonumber(redis.call('TIME')[1])
end

-- The window's spend now: its running sum, less the buckets that left the window
-- since it was last brought up to date (one or two at most, except after a lull).
local function window_spent(key, prefix, width, count, now)
    local current = math.floor(now / width)
    local v = redis.call('HMGET', key, prefix .. 'sum', prefix .. 'at')
    local sum = tonumber(v[1] or 0)
    local at = tonumber(v[2] or current)
    if at >= current then
        return sum
    end
    if current - at >= count then
        sum = 0  -- every bucket written up to `at` is out of the window now
    else
        for t = at - count + 1, current - count do
            local slot = t % count
            local b = redis.call('HMGET', key, prefix .. slot, prefix .. 't' .. slot)
            if tonumber(b[2] or -1) == t then
                sum = sum - tonumber(b[1])
            end
        end
    end
    redis.call('HSET', key, prefix .. 'sum', sum, prefix .. 'at', current)
    return sum
end

local function add_to_window(key, prefix, width, count, now, amount)
    window_spent(key, prefix, width, count, now)  -- drops what left the window first
    local current = math.floor(now / width)
    local slot = current % count
    local t_field = prefix .. 't' .. slot
    if tonumber(redis.call('HGET', key, t_field) or -1) == current then
        redis.call('HINCRBY', key, prefix .. slot, amount)
    else
        redis.call('HSET', key, prefix .. slot, amount, t_field, current)
    end
    redis.call('HINCRBY', key, prefix .. 'sum', amount)
end

-- Count a debit against the level's spend windows, when it has a window cap.
local function add_spend(key, amount)
    if amount <= 0 then
        return
    end
    local caps = redis.call('HMGET', key, 'caph', 'capd')
    local now = nil
    if tonumber(caps[1] or -1) >= 0 then
        now = clock()
        add_to_window(key, 'sh', HOUR_WIDTH, HOUR_COUNT, now, amount)
    end
    if tonumber(caps[2] or -1) >= 0 then
        now = now or clock()
        add_to_window(key, 'sd', DAY_WIDTH, DAY_COUNT, now, amount)
    end
end

-- What a level may still commit to calls before its holds: balance + credit limit,
-- or less under a window cap. Returns that room, the per-call cap (-1: none) and
-- the reason when a cap is what binds (nil: the money does).
local function level_room(bal, lim, caph, capd, capc, key)
    local room = bal + lim
    local why = nil
    if caph >= 0 or capd >= 0 then
        local now = clock()
        if caph >= 0 then
            local r = caph - window_spent(key, 'sh', HOUR_WIDTH, HOUR_COUNT, now)
            if r < room then
                room, why = r, 'SPEND_CAP_HOUR'
            end
        end
        if capd >= 0 then
            local r = capd - window_spent(key, 'sd', DAY_WIDTH, DAY_COUNT, now)
            if r < room then
                room, why = r, 'SPEND_CAP_DAY'
            end
        end
    end
    return room, capc, why
end

-- Call-attempt rate (call rules: cps per second, cpm per minute, -1: none), counted in
-- fixed windows of Redis time per level, so an agent's limits count its whole subtree.
-- Returns false when this attempt is over a limit (it is counted all the same).
local function count_attempt(key, cps, cpm)
    local now = clock()
    local v = redis.call('HMGET', key, 'aps', 'apst', 'apm', 'apmt')
    local per_s, minute = 1, math.floor(now / 60)
    if tonumber(v[2] or -1) == now then
        per_s = tonumber(v[1]) + 1
    end
    local per_m = 1
    if tonumber(v[4] or -1) == minute then
        per_m = tonumber(v[3]) + 1
    end
    redis.call('HSET', key, 'aps', per_s, 'apst', now, 'apm', per_m, 'apmt', minute)
    return (cps < 0 or per_s <= cps) and (cpm < 0 or per_m <= cpm)
end

-- A level's available money for one more call (or for a running call, adding what
-- it holds for it): the room left minus what it holds, no more than its per-call cap.
local function account_available(key, own_hold)
    local v = redis.call('HMGET', key, 'bal', 'lim', 'held', 'caph', 'capd', 'capc')
    local room, capc = level_room(tonumber(v[1]), tonumber(v[2]), tonumber(v[4] or -1),
        tonumber(v[5] or -1), tonumber(v[6] or -1), key)
    local available = room - tonumber(v[3]) + (own_hold or 0)
    if capc >= 0 and capc < available then
        return capc
    end
    return available
end

-- The longest time (capped at cap_s) every charged level of a running call can
-- cover with what it holds for the call plus what it has available: the least.
local function chain_reach(levels, accounts, holds, cap_s, scheds)
    local reach = cap_s
    for i = 1, #accounts do
        local rate = levels[i]
        if rate[1] == 1 then
            local own = account_available(accounts[i], holds[i])
            reach = math.min(reach, level_grant(rate, own, cap_s, scheds[i]))
        end
    end
    return reach
end

-- Hold `seconds` of a running call on every charged level: each level's held
-- money moves by the difference to what it held; `holds` is updated in place.
local function hold_for(levels, accounts, holds, seconds, scheds)
    for i = 1, #accounts do
        local rate = levels[i]
        if rate[1] == 1 then
            local hold = call_cost(rate, seconds, scheds[i])
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
