-- velocity.lua: a customer's recent behaviour, for the fraud checks (calls/fraud.py).
--
-- KEYS[1]  the customer's account hash
-- KEYS[2]  its dialled-countries hash (country code -> when first dialled)
-- ARGV[1]  event: 'country', 'unrated' or 'answered'
-- ARGV[2]  'country': the E.164 country code dialled; 'answered': the duration (s)
-- ARGV[3]  'answered': what counts as a short call (s)
--
-- Counts live in fields of the account hash per clock hour of Redis time (reset when
-- the hour changes), the countries in their own hash (same hash tag), kept 30 days.
-- Returns {n, m}:
--   country   n = countries first dialled in the last hour when this one is new, else 0
--   unrated   n = attempts to unrated numbers this hour
--   answered  n = answered calls this hour, m = the short ones among them

local now = tonumber(redis.call('TIME')[1])
local hour = math.floor(now / 3600)
local event = ARGV[1]

if event == 'country' then
    if redis.call('HSETNX', KEYS[2], ARGV[2], now) == 0 then
        return {0, 0}
    end
    redis.call('EXPIRE', KEYS[2], 30 * 86400)
    local firsts = redis.call('HVALS', KEYS[2])
    local recent = 0
    for i = 1, #firsts do
        if tonumber(firsts[i]) > now - 3600 then
            recent = recent + 1
        end
    end
    return {recent, 0}
end

local v = redis.call('HMGET', KEYS[1], 'vh', 'vu', 'va', 'vs')
local u, a, s = 0, 0, 0
if tonumber(v[1] or -1) == hour then
    u, a, s = tonumber(v[2] or 0), tonumber(v[3] or 0), tonumber(v[4] or 0)
end
if event == 'unrated' then
    u = u + 1
elseif event == 'answered' then
    a = a + 1
    if tonumber(ARGV[2]) < tonumber(ARGV[3]) then
        s = s + 1
    end
end
redis.call('HSET', KEYS[1], 'vh', hour, 'vu', u, 'va', a, 'vs', s)
if event == 'unrated' then
    return {u, 0}
end
return {a, s}
