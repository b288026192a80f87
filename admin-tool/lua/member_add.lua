-- team member add / remove: ARGV[4] team, ARGV[5] user, ARGV[6] the
-- member record (signed by sa-admin; '' to remove the member), ARGV[7]
-- the member's field exactly as sa-admin read it ('' when none).
-- ARGV[8] '1' when the record is a removal's tombstone (SA_FRESH_PERIOD:
-- the same record with "removed": true, no permissions and a higher
-- version, kept so that an older record put back is told from it).
-- Ownership was proven by sa-admin (permitted() compares the records).
local team, user, rec, old = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local tomb = ARGV[8] == '1'
local members = P .. SA_KEY_TEAM .. team .. SA_KEY_MEMBERS

local denied = permitted(team, 'ownership')
if denied then
    return denied
end

local cur = redis.call('HGET', members, user)
if (cur or '') ~= old then
    return fail('CONFLICT', "the member record of '" .. user .. "' changed meanwhile")
end

if rec == '' then
    if not cur then
        return fail('NOTFOUND', "'" .. user .. "' is not a member of team '"
                    .. team .. "'")
    end
    redis.call('HDEL', members, user)
    audit('team.member_remove', user, team)
    return 1
end

if tomb and not cur then
    return fail('NOTFOUND', "'" .. user .. "' is not a member of team '"
                .. team .. "'")
end

redis.call('HSET', members, user, rec)
record_written(rec)
audit(tomb and 'team.member_remove' or 'team.member_add', user, team)
return 1
