-- token scope / revoke: one token record replaced.
--   ARGV[4] team, ARGV[5] action, ARGV[6] token id, ARGV[7] its version,
--   ARGV[8] new record, ARGV[9] exat, ARGV[10] account id, ARGV[11] the
--   event (a signed envelope, '' for none)
local team, action, tid, tver, rec, exat = ARGV[4], ARGV[5], ARGV[6],
                                           ARGV[7], ARGV[8], ARGV[9]
local aid, ev = ARGV[10], ARGV[11]

local denied = permitted(team, 'service_accounts:tokens')
    or unchanged(P .. SA_KEY_TOKEN .. tid, tver, "token '" .. tid .. "'")
    or names(P .. SA_KEY_TOKEN .. tid, tid, team)
if denied then
    return denied
end

put(P .. SA_KEY_TOKEN .. tid, rec, exat)
if action == 'token.revoke' then
    redis.call('ZREM', P .. SA_KEY_EXPIRING, tid)
end
if aid and aid ~= '' then
    notify(aid, action == 'token.revoke' and 'token.revoked'
                or 'token.rescoped', ev)
end
audit(action, tid, team)
invalidate({ tid })
return 1
