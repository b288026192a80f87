-- The delivery worker, before a delivery goes out: each event goes to a
-- destination at most once, and a token.denied at most once a minute per
-- token and destination, however many stream entries ask for it.
--   ARGV[4] delivery id (a function of the event id and the destination),
--   ARGV[5] the stream entry ('' from the retry schedule),
--   ARGV[6] how long the delivery id is remembered (ms),
--   ARGV[7] 'token:app:account:dest' of a token.denied, else '',
--   ARGV[8] the token.denied window (s)
-- The id is remembered by the entry that first took it (a reclaim of that
-- entry, or its retries, go on) and marked 'done' when delivered
-- (notify_done.lua).  Returns 'ok', 'duplicate' or 'limited'.
local dlv, entry = ARGV[4], ARGV[5]
local seen = P .. SA_KEY_SEEN .. dlv
local v = redis.call('GET', seen)

if v == 'done' or (v and entry ~= '' and v ~= entry) then
    return 'duplicate'
end
if ARGV[7] ~= '' then
    local limit = P .. SA_KEY_LIMIT .. ARGV[7]
    local last = redis.call('GET', limit)
    if last and last ~= dlv then
        return 'limited'
    end
    if not last then
        redis.call('SET', limit, dlv, 'EX', tonumber(ARGV[8]))
    end
end
if not v and entry ~= '' then
    redis.call('SET', seen, entry, 'PX', tonumber(ARGV[6]))
end
return 'ok'
