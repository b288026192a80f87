-- notify test / emit: events that are not a change.
--   test: ARGV[4] 'test', ARGV[5] team, ARGV[6] account id, ARGV[7] app,
--         ARGV[8] the ping event (signed envelope)
--   emit: ARGV[4] 'emit', ARGV[5] app, ARGV[6] event type, ARGV[7] the
--         event (signed envelope), ARGV[8] the team sa-admin proved the
--         permission in (the application's owner team or one it is
--         shared with)
-- Returns the number of deliveries queued.
local mode = ARGV[4]

if mode == 'test' then
    local team, aid, app, ev = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
    local denied = permitted(team, 'service_accounts:create')
    if denied then
        return denied
    end
    local s = redis.call('HGET', P .. SA_KEY_NOTIFY .. app, aid)
    if not s then
        return fail('NOTFOUND', "account '" .. aid .. "' has no notifications for '"
                    .. app .. "'")
    end
    local n = queue(app, aid, s, 'ping', { 'ev', ev }, true, false)
    audit('notify.test', aid, team)
    return n
end

local app, etype, ev, team = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local denied = permitted(team, 'service_accounts:create')
if denied then
    return denied
end
local subs = redis.call('HGETALL', P .. SA_KEY_NOTIFY .. app)
local n = 0
for i = 1, #subs, 2 do
    n = n + queue(app, subs[i], subs[i + 1], etype, { 'ev', ev }, false, false)
end
audit('notify.emit', app .. ' ' .. etype, team)
return n
