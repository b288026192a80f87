-- app share / unshare: ARGV[4] app, ARGV[5] its owner team, ARGV[6] the
-- record exactly as sa-admin read and verified it, ARGV[7] the new record,
-- ARGV[8] 'app.share' or 'app.unshare', ARGV[9] the team shared or
-- unshared.  The owner team's owner's (permitted()).
local app, team, old, rec, action, other = ARGV[4], ARGV[5], ARGV[6],
                                           ARGV[7], ARGV[8], ARGV[9]
local key = P .. SA_KEY_APP .. app

local denied = permitted(team, 'ownership')
if denied then
    return denied
end
local cur = redis.call('GET', key)
if not cur then
    return fail('NOTFOUND', "application '" .. app .. "' does not exist")
end
if cur ~= old then
    return fail('CONFLICT', "application '" .. app .. "' changed meanwhile")
end

redis.call('SET', key, rec)
record_written(rec)
audit(action, app .. ' ' .. other, team)
return 1
