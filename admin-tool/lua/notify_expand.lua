-- The delivery worker turns an entry the gateway wrote (token.denied: a
-- token id, an application, a status; no account, no destination) into
-- deliveries, if the account subscribed to them.
--   ARGV[4] the entry, ARGV[5] this worker, ARGV[6] app, ARGV[7] the
--   account (from the verified token record; '' when it did not verify),
--   ARGV[8] token id, ARGV[9] status, ARGV[10] time of the refusal
local entry, me, app, aid = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
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
return queue(app, aid, s, 'token.denied', { 'token', ARGV[8], 'status', ARGV[9],
                                            'time', ARGV[10] }, false, false)
