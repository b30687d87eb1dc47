-- extend.lua: a running call needs more time held (Interim-Update, or the slice
-- keeper's periodic check).
--
-- KEYS[1]  session hash
-- KEYS[2]  due sorted set
-- KEYS[3]  slices sorted set (session -> when the keeper looks at it next)
-- ARGV[1]  now (unix seconds)
-- ARGV[2]  hold margin (s)
-- ARGV[3]  max_call_s
-- ARGV[4]  whole mode: 1 to hold a longer grant when the balance allows, 0 not to
-- ARGV[5]  seconds the call has run as the switch reports it; -1 when unknown
-- ARGV[6]  slice lead (s): the hold must cover the elapsed time plus this
-- ARGV[7]  the largest slice (s)
--
-- Slice mode: slices are added (each twice the last, up to the largest) until the
-- hold covers more than the elapsed time plus the lead, or the grant. A level that cannot
-- cover the next slice gets what it can; when no level-wide growth is possible the
-- call is cut: it must end when its held time runs out (cut_at), and the keeper
-- finds it in the slices set at that moment. Money arriving later un-cuts it.
--
-- Returns {1, 'OK', granted_s, grew, held_s, cut, cut_at}: grew = 1 when more time
-- was held, cut = 1 when the call must end at cut_at (unix seconds). The account
-- hashes are named in the session (same hash tag, same slot).
-- {0, 'UNKNOWN_SESSION', 0, 0, 0, 0, 0} / {0, 'SESSION_ENDED', ...} as in start.lua.

local s = redis.call('HMGET', KEYS[1], 'st', 'granted', 'holds', 'levels', 'accounts',
    'answered_at', 'reserved_at', 'mode', 'held', 'slice', 'cut', 'exp')
if not s[1] then
    return {0, 'UNKNOWN_SESSION', 0, 0, 0, 0, 0}
end
if s[1] ~= 'reserved' and s[1] ~= 'answered' then
    return {0, 'SESSION_ENDED', 0, 0, 0, 0, 0}
end
local granted = tonumber(s[2])
local holds = cjson.decode(s[3])
local levels = cjson.decode(s[4])
local accounts = cjson.decode(s[5])
local now = tonumber(ARGV[1])
-- Priced from the answer once there is one; before it, at the worst case.
local scheds = schedules(levels, s[6] and tonumber(s[6]) or nil)

if s[8] ~= 'slice' then
    if ARGV[4] ~= '1' then
        return {1, 'OK', granted, 0, granted, 0, 0}
    end
    local longest = chain_reach(levels, accounts, holds, tonumber(ARGV[3]), scheds)
    if longest <= granted then
        return {1, 'OK', granted, 0, granted, 0, 0}
    end
    hold_for(levels, accounts, holds, longest, scheds)
    local since = tonumber(s[6] or s[7])
    redis.call('HSET', KEYS[1], 'granted', longest, 'held', longest, 'holds', cjson.encode(holds))
    redis.call('ZADD', KEYS[2], since + longest + tonumber(ARGV[2]), KEYS[1])
    return {1, 'OK', longest, 1, longest, 0, 0}
end

local held = tonumber(s[9])
if s[1] ~= 'answered' then
    -- The hold counts from the answer; nothing runs yet.
    return {1, 'OK', granted, 0, held, 0, 0}
end
local since = tonumber(s[6])
local was_cut = s[11] == '1'
local lead = tonumber(ARGV[6])
local largest = tonumber(ARGV[7])
local need = math.max(tonumber(ARGV[5]), now - since) + lead
local slice = tonumber(s[10])
local grew, cut, steps = 0, 0, 0
while held < granted and held <= need and steps < 64 do
    steps = steps + 1
    local step = math.min(largest, math.max(2 * slice, 1))
    local reach = chain_reach(levels, accounts, holds, slice_cover(levels, held + step, granted),
        scheds)
    if reach <= held then
        cut = 1
        break
    end
    hold_for(levels, accounts, holds, reach, scheds)
    held, slice, grew = reach, step, 1
end

if was_cut and grew == 0 then
    cut = 1  -- still no money: the call stays cut at the same moment
end
if grew == 1 then
    local exposure = call_cost(levels[1], granted, scheds[1]) - holds[1]
    redis.call('HINCRBY', accounts[#accounts], 'exp', exposure - tonumber(s[12] or 0))
    redis.call('HSET', KEYS[1], 'held', held, 'holds', cjson.encode(holds), 'slice', slice,
        'exp', exposure)
    redis.call('ZADD', KEYS[2], since + held + tonumber(ARGV[2]), KEYS[1])
end
if cut == 1 then
    if not was_cut or grew == 1 then
        redis.call('HSET', KEYS[1], 'cut', 1)
        redis.call('ZADD', KEYS[3], since + held, KEYS[1])
    end
    return {1, 'OK', granted, grew, held, 1, since + held}
end
if was_cut then
    redis.call('HDEL', KEYS[1], 'cut')
end
if held < granted then
    redis.call('ZADD', KEYS[3], since + held - lead, KEYS[1])
else
    redis.call('ZREM', KEYS[3], KEYS[1])
end
return {1, 'OK', granted, grew, held, 0, 0}
