-- token issue (and the new half of rotate):
--   ARGV[4] team, ARGV[5] account id, ARGV[6] account version,
--   ARGV[7] new token id, ARGV[8] record, ARGV[9] exat,
--   ARGV[10] action, ARGV[11] the event (a signed envelope, '' for
--   none), then for rotate: ARGV[12] old id, ARGV[13] old version,
--   ARGV[14] old record, ARGV[15] old exat
local team, aid, aver, tid, rec, exat, action = ARGV[4], ARGV[5], ARGV[6],
                                                ARGV[7], ARGV[8], ARGV[9],
                                                ARGV[10]
local ev = ARGV[11]
local old = ARGV[12]
local akey = P .. SA_KEY_ACCOUNT .. aid

local denied = account_permitted(team, 'service_accounts:tokens', akey, aid, aver)
if denied then
    return denied
end

if old then
    denied = unchanged(P .. SA_KEY_TOKEN .. old, ARGV[13], "token '" .. old .. "'")
        or names(P .. SA_KEY_TOKEN .. old, old, team)
    if denied then
        return denied
    end
end

if redis.call('EXISTS', P .. SA_KEY_TOKEN .. tid) == 1 then
    return fail('CONFLICT', 'token id taken')
end

put(P .. SA_KEY_TOKEN .. tid, rec, exat)
redis.call('SADD', akey .. SA_KEY_TOKENS, tid)

local ids = { tid }
if old then
    put(P .. SA_KEY_TOKEN .. old, ARGV[14], ARGV[15])
    ids[2] = old
    -- the old token is on its way out: no expiry notices for it
    redis.call('ZREM', P .. SA_KEY_EXPIRING, old)
end

-- exat is the expiry + 7 days (an expired record answers for a week)
expiry_index(tid, exat == '0' and 0 or tonumber(exat) - 7 * 86400)
notify(aid, old and 'token.rotated' or 'token.issued', ev)

audit(action, old or tid, team)
invalidate(ids)
return 1
