-- The delivery worker queues token.expiring notices that are due (the
-- expiry index: see expiry_index()).  The token record is read here only
-- to route (its account, its expiry); the worker verifies it again before
-- it delivers anything.   ARGV[4] at most this many.  Returns how many
-- deliveries were queued.
local now = tonumber(NOW)
local idx = P .. SA_KEY_EXPIRING
local n = 0
for _, tid in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', now, 'LIMIT', 0,
                                tonumber(ARGV[4]))) do
    local v = redis.call('GET', P .. SA_KEY_TOKEN .. tid)
    local ok, rec = pcall(cjson.decode, string.sub(v or '', SA_ENVELOPE_HEAD_LEN + 1))
    local exp = ok and type(rec) == 'table' and tonumber(rec.expires_at) or 0
    if exp == 0 or rec.revoked == true or now >= exp
       or type(rec.account) ~= 'string' then
        redis.call('ZREM', idx, tid)
    else
        if now < exp - 86400 then
            redis.call('ZADD', idx, exp - 86400, tid)
        else
            redis.call('ZREM', idx, tid)
        end
        for _, app in ipairs(redis.call('SMEMBERS', P .. SA_KEY_ACCOUNT
                                        .. rec.account .. SA_KEY_SUBS)) do
            local s = redis.call('HGET', P .. SA_KEY_NOTIFY .. app, rec.account)
            if s then
                n = n + queue(app, rec.account, s, 'token.expiring',
                              { 'token', tid, 'expires_at',
                                string.format('%d', exp) }, false, false)
            end
        end
    end
end
return n
