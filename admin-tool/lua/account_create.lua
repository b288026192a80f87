-- account create: ARGV[4] team, ARGV[5] name, ARGV[6] id, ARGV[7] record
local team, name, id, record = ARGV[4], ARGV[5], ARGV[6], ARGV[7]

local denied = permitted(team, 'service_accounts:create')
if denied then
    return denied
end

local names = P .. SA_KEY_TEAM .. team .. SA_KEY_NAMES
if redis.call('HEXISTS', names, name) == 1 then
    return fail('EXISTS', "team '" .. team .. "' already has an account '"
                .. name .. "'")
end
if redis.call('EXISTS', P .. SA_KEY_ACCOUNT .. id) == 1 then
    return fail('CONFLICT', 'account id taken')
end

redis.call('HSET', names, name, id)
redis.call('SET', P .. SA_KEY_ACCOUNT .. id, record)
record_written(record)
redis.call('SADD', P .. SA_KEY_TEAM .. team .. SA_KEY_ACCOUNTS, id)
audit('account.create', id, team)
return 1
