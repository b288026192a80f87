-- team create: ARGV[4] team, ARGV[5] owner, ARGV[6] the team record
-- (signed by sa-admin)
local team, owner, rec = ARGV[4], ARGV[5], ARGV[6]

if redis.call('SISMEMBER', P .. SA_KEY_TEAMS, team) == 1
    or redis.call('EXISTS', P .. SA_KEY_TEAM .. team) == 1 then
    return fail('EXISTS', "team '" .. team .. "' already exists")
end
-- what an earlier team of that name left (its record deleted by a Redis
-- writer): its signed member records and accounts name the team, and
-- would belong to the new one
if redis.call('EXISTS', P .. SA_KEY_TEAM .. team .. SA_KEY_MEMBERS) == 1
    or redis.call('EXISTS', P .. SA_KEY_TEAM .. team .. SA_KEY_ACCOUNTS) == 1
    or redis.call('EXISTS', P .. SA_KEY_TEAM .. team .. SA_KEY_NAMES) == 1 then
    return fail('EXISTS', "team '" .. team .. "' is gone but its members or "
                .. "accounts remain (they would belong to the new team): "
                .. "remove them from Redis first, or choose another name")
end

redis.call('SADD', P .. SA_KEY_TEAMS, team)
redis.call('SET', P .. SA_KEY_TEAM .. team, rec)
record_written(rec)
audit('team.create', team, team)
return 1
