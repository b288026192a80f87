-- The delivery worker takes retries that are due: each is leased to it
-- (due again at now + lease, should it die meanwhile).
--   ARGV[4] this worker, ARGV[5] now (ms), ARGV[6] lease (ms), ARGV[7] at
--   most this many.  Returns delivery id, state, ... of each.
local me, now, lease, max = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]),
                            tonumber(ARGV[7])
local out = {}
for _, dlv in ipairs(redis.call('ZRANGEBYSCORE', P .. SA_KEY_DUE, '-inf', now,
                                'LIMIT', 0, max)) do
    local state = redis.call('HGET', P .. SA_KEY_DELIVERY, dlv)
    if state then
        redis.call('ZADD', P .. SA_KEY_DUE, now + lease, dlv)
        redis.call('HSET', P .. SA_KEY_OWNER, dlv, me)
        out[#out + 1] = dlv
        out[#out + 1] = state
    else
        redis.call('ZREM', P .. SA_KEY_DUE, dlv)
    end
end
return out
