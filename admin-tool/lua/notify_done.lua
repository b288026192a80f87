-- The delivery worker: what became of one delivery.
--   ARGV[4] outcome: ok, drop, retry, handback, dead or disable
--   ARGV[5] stream entry id ('' for a delivery from the retry schedule)
--   ARGV[6] delivery id, ARGV[7] this worker (consumer name),
--   ARGV[8] its state (JSON; retry, handback, dead, disable),
--   ARGV[9] when it is due again (ms; retry, handback),
--   ARGV[10] app, ARGV[11] account id (disable), ARGV[12] the delivery
--   id notify_seen.lua remembers, ARGV[13] for how long (ms)
-- Does nothing (returns 0) when the delivery is no longer this worker's:
-- another one reclaimed it.
local outcome, entry, dlv, me, state, due = ARGV[4], ARGV[5], ARGV[6],
                                             ARGV[7], ARGV[8], ARGV[9]
local stream = P .. SA_KEY_EVENTS

if entry ~= '' then
    if not take_entry(stream, entry, me) then
        return 0
    end
else
    if redis.call('HGET', P .. SA_KEY_OWNER, dlv) ~= me then
        return 0
    end
    redis.call('HDEL', P .. SA_KEY_OWNER, dlv)
    redis.call('ZREM', P .. SA_KEY_DUE, dlv)
    redis.call('HDEL', P .. SA_KEY_DELIVERY, dlv)
end

if outcome == 'ok' then
    redis.call('SET', P .. SA_KEY_SEEN .. ARGV[12], 'done', 'PX',
               tonumber(ARGV[13]))
elseif outcome == 'retry' or outcome == 'handback' then
    redis.call('HSET', P .. SA_KEY_DELIVERY, dlv, state)
    redis.call('ZADD', P .. SA_KEY_DUE, due, dlv)
elseif outcome == 'dead' or outcome == 'disable' then
    redis.call('HSET', P .. SA_KEY_FAILED, dlv, state)
end

if outcome == 'disable' then
    local key = P .. SA_KEY_NOTIFY .. ARGV[10]
    local s = redis.call('HGET', key, ARGV[11])
    local ok, sub = pcall(cjson.decode, s or '')
    if ok and type(sub) == 'table' then
        sub.disabled_at = tonumber(NOW)
        redis.call('HSET', key, ARGV[11], cjson.encode(sub))
    end
end
return 1
