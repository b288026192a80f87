-- notify set / remove: one subscription of an account to an application.
--   ARGV[4] team, ARGV[5] account id, ARGV[6] its version, ARGV[7] app,
--   ARGV[8] the subscription ('' to remove it), ARGV[9] (optional) the
--   subscription it keeps URLs of, which must still be there
local team, aid, aver, app, sub = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local kept = ARGV[9]
local akey = P .. SA_KEY_ACCOUNT .. aid

local denied = account_permitted(team, 'service_accounts:create', akey, aid, aver)
if denied then
    return denied
end

if sub == '' then
    if redis.call('HEXISTS', P .. SA_KEY_NOTIFY .. app, aid) == 0 then
        return fail('NOTFOUND', "account '" .. aid .. "' has no notifications for '"
                    .. app .. "'")
    end
    unsubscribe(app, aid)
    audit('notify.remove', aid, team)
    return 1
end

-- only while the account holds a grant for the application (sa-admin
-- checked the signed record; this catches a change since)
local ok, a = pcall(cjson.decode, string.sub(redis.call('GET', akey),
                                              SA_ENVELOPE_HEAD_LEN + 1))
local granted = false
for _, g in ipairs(ok and type(a) == 'table' and a.apps or {}) do
    granted = granted or g == app or g == '*'
end
if not granted then
    return fail('CONFLICT', 'the grants changed meanwhile')
end

if kept and redis.call('HGET', P .. SA_KEY_NOTIFY .. app, aid) ~= kept then
    return fail('CONFLICT', 'the notifications changed meanwhile')
end

redis.call('HSET', P .. SA_KEY_NOTIFY .. app, aid, sub)
redis.call('SADD', akey .. SA_KEY_SUBS, app)
audit('notify.set', aid, team)
return 1
