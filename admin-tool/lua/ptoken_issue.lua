-- user token issue: a person's personal token (sap_, for the admin API).
--   ARGV[4] user, ARGV[5] new token id, ARGV[6] the record (kind ptoken,
--   signed by sa-admin; it holds the token's hash, never its secret),
--   ARGV[7] exat (the expiry + 7 days).
-- Who may issue it (an operator, or the user herself) sa-admin decided;
-- the audit entry names the user and the id: <user>/<tid>.
local user, tid, rec, exat = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local key = P .. SA_KEY_PTOKEN .. tid

if redis.call('EXISTS', key) == 1 then
    return fail('CONFLICT', 'token id taken')
end

put(key, rec, exat)
redis.call('SADD', P .. SA_KEY_USER .. user .. SA_KEY_PTOKENS, tid)
audit('user.token.issue', user .. '/' .. tid, '')
return 1
