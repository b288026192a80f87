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
-- the index forgets the tokens whose records are gone (a week after their
-- expiry), so that it holds only what 'user token list' can show
local index = P .. SA_KEY_USER .. user .. SA_KEY_PTOKENS
for _, old in ipairs(redis.call('SMEMBERS', index)) do
    if redis.call('EXISTS', P .. SA_KEY_PTOKEN .. old) == 0 then
        redis.call('SREM', index, old)
    end
end
redis.call('SADD', index, tid)
audit('user.token.issue', user .. '/' .. tid, '')
return 1
