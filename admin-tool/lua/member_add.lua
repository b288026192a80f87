-- team member add: ARGV[4] team, ARGV[5] user, ARGV[6] perms ("a,b" or "")
local team, user, perms = ARGV[4], ARGV[5], ARGV[6]

local owner = redis.call('HGET', P .. SA_KEY_TEAM .. team, 'owner')
if not owner then
    return fail('NOTFOUND', "team '" .. team .. "' does not exist")
end
if owner ~= ACTOR then
    return fail('NOPERM', "only the owner of team '" .. team
                .. "' adds members")
end
if user == owner then
    return fail('EXISTS', "'" .. user .. "' owns team '" .. team
                .. "' and holds every permission")
end

redis.call('HSET', P .. SA_KEY_TEAM .. team .. SA_KEY_MEMBERS, user, perms)
audit('team.member_add', user, team)
return 1
