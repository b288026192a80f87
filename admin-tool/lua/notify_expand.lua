-- The delivery worker turns an entry a gateway wrote (token.denied: a
-- token id, an application, a status; token.quota_warning and
-- token.quota_exhausted: a token id, an application, the count, the quota
-- and its period; no account, no destination) into deliveries, if the
-- account subscribed to them.
--   ARGV[4] the entry, ARGV[5] this worker, ARGV[6] app, ARGV[7] the
--   account (from the verified token record; '' when it did not verify),
--   ARGV[8] token id, ARGV[9] status, ARGV[10] time of the entry,
--   ARGV[11] its type, ARGV[12] used, ARGV[13] quota, ARGV[14] period
local entry, me, app, aid, etype = ARGV[4], ARGV[5], ARGV[6], ARGV[7],
                                   ARGV[11]
local stream = P .. SA_KEY_EVENTS

if not take_entry(stream, entry, me) then
    return 0
end

if aid == '' then
    return 0
end
local s = redis.call('HGET', P .. SA_KEY_NOTIFY .. app, aid)
if not s then
    return 0
end
if etype == 'token.denied' then
    return queue(app, aid, s, etype, { 'token', ARGV[8], 'status', ARGV[9],
                                       'time', ARGV[10] }, false, false)
end
if etype == 'token.quota_warning' or etype == 'token.quota_exhausted' then
    return queue(app, aid, s, etype, { 'token', ARGV[8], 'used', ARGV[12],
                                       'quota', ARGV[13], 'period', ARGV[14],
                                       'time', ARGV[10] }, false, false)
end
return 0
