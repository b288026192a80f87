-- app create / adopt: ARGV[4] app, ARGV[5] its owner team, ARGV[6] the
-- application record (signed by sa-admin), ARGV[7] 'app.create' or
-- 'app.adopt'.  The operator's (sa-admin checked); the owner team's record
-- must be the one sa-admin verified (permitted()).
local app, team, rec, action = ARGV[4], ARGV[5], ARGV[6], ARGV[7]

local denied = permitted(team, 'ownership')
if denied then
    return denied
end
if redis.call('EXISTS', P .. SA_KEY_APP .. app) == 1 then
    return fail('EXISTS', "application '" .. app .. "' already exists")
end

redis.call('SET', P .. SA_KEY_APP .. app, rec)
record_written(rec)
redis.call('SADD', P .. SA_KEY_APPS, app)
audit(action, app, team)
return 1
