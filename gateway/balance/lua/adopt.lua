-- adopt.lua: an accounting request found no hold under its own session key; take
-- over a provisional hold its authorization left (an Access-Request without
-- Acct-Session-Id, or of the leg that is not billed), found by a link.
--
-- KEYS[1]  the session hash the accounting request names
-- KEYS[2]  due sorted set
-- KEYS[3..] link sorted sets, most telling first (provisional session -> reserve time)
-- ARGV[1]  now (unix seconds)
-- ARGV[2]  links' windows JSON: per link set, how old (s) a hold it finds may be
-- ARGV[3]  the call's session id   ARGV[4] its leg (both go on the CDR)
--
-- The provisional hold is renamed to KEYS[1], with everything it holds; its other
-- links are dropped, so no second request takes it.
--
-- Returns {1, 'ADOPTED'}; {1, 'EXISTS'} when KEYS[1] is already there (a racing
-- request adopted first); {0, 'NONE'} when no link leads to a live hold.

if redis.call('EXISTS', KEYS[1]) == 1 then
    return {1, 'EXISTS'}
end
local now = tonumber(ARGV[1])
local windows = cjson.decode(ARGV[2])
for i = 3, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. (now - windows[i - 2]))
    local found = redis.call('ZRANGE', KEYS[i], 0, -1)
    for _, candidate in ipairs(found) do
        local c = redis.call('HMGET', candidate, 'st', 'links')
        if c[1] == 'reserved' and c[2] then
            local links = cjson.decode(c[2])
            for _, link in ipairs(links) do
                redis.call('ZREM', link[1], candidate)
            end
            local deadline = redis.call('ZSCORE', KEYS[2], candidate)
            redis.call('RENAME', candidate, KEYS[1])
            redis.call('HDEL', KEYS[1], 'links')
            redis.call('HSET', KEYS[1], 'sid', ARGV[3], 'sleg', ARGV[4])
            redis.call('ZREM', KEYS[2], candidate)
            if deadline then
                redis.call('ZADD', KEYS[2], deadline, KEYS[1])
            end
            return {1, 'ADOPTED'}
        end
        redis.call('ZREM', KEYS[i], candidate)
    end
end
return {0, 'NONE'}
