-- team adopt: an unsigned team from before team records were signed
-- (a hash team:<team> and plain permission lists in team:<team>:members)
-- becomes signed records, as the operator saw it.
--   ARGV[4] team, ARGV[5] its owner as read, ARGV[6] the team record,
--   ARGV[7] number of members, then per member: user, permissions as
--   read, member record.
-- CONFLICT when the hash or any member changed since sa-admin read them.
local team, owner, rec, n = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local tkey = P .. SA_KEY_TEAM .. team
local members = tkey .. SA_KEY_MEMBERS

if redis.call('TYPE', tkey).ok ~= 'hash'
    or redis.call('HGET', tkey, 'owner') ~= owner
    or redis.call('HLEN', members) ~= n then
    return fail('CONFLICT', "team '" .. team .. "' changed meanwhile")
end
for i = 0, n - 1 do
    if redis.call('HGET', members, ARGV[8 + i * 3]) ~= ARGV[9 + i * 3] then
        return fail('CONFLICT', "team '" .. team .. "' changed meanwhile")
    end
end

redis.call('DEL', tkey)
redis.call('SET', tkey, rec)
redis.call('SADD', P .. SA_KEY_TEAMS, team)
for i = 0, n - 1 do
    redis.call('HSET', members, ARGV[8 + i * 3], ARGV[10 + i * 3])
end
audit('team.adopt', team, team)
return 1
