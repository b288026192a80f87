-- notify retry: a dead letter back into the retry schedule, due now.
--   ARGV[4] delivery id, ARGV[5] its new state, ARGV[6] now (ms),
--   ARGV[7] team, ARGV[8] the state sa-admin read (compared)
local dlv, state, team = ARGV[4], ARGV[5], ARGV[7]

if team ~= '' then
    local denied = permitted(team, 'service_accounts:create')
    if denied then
        return denied
    end
end
local cur = redis.call('HGET', P .. SA_KEY_FAILED, dlv)
if not cur then
    return fail('NOTFOUND', "no failed delivery '" .. dlv .. "'")
end
if cur ~= ARGV[8] then
    return fail('CONFLICT', 'the failed delivery changed meanwhile')
end
redis.call('HDEL', P .. SA_KEY_FAILED, dlv)
redis.call('HSET', P .. SA_KEY_DELIVERY, dlv, state)
redis.call('ZADD', P .. SA_KEY_DUE, ARGV[6], dlv)
audit('notify.retry', dlv, team)
return 1
