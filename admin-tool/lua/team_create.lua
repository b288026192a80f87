-- team create: ARGV[4] team, ARGV[5] owner
local team, owner = ARGV[4], ARGV[5]

if redis.call('SADD', P .. SA_KEY_TEAMS, team) == 0 then
    return fail('EXISTS', "team '" .. team .. "' already exists")
end

redis.call('HSET', P .. SA_KEY_TEAM .. team, 'owner', owner,
           'created_at', NOW, 'created_by', ACTOR)
audit('team.create', team, team)
return 1
