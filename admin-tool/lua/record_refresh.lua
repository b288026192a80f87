-- key refresh: the records permission checks read (account, team, member,
-- application, personal token) renewed, nothing in them changed but
-- fresh_until and the signature (refresh.h).
--   ARGV[4 ..] quadruples: the key after the prefix (acct:<aid>,
--   team:<team>, team:<team>:members, app:<app>, ptok:<tid>), the field of
--   a member ('' for a key of its own), the record exactly as sa-admin
--   read and verified it, the same payload with a later fresh_until,
--   signed.
-- As key_refresh.lua: each is replaced only when it still holds those very
-- bytes (a change made meanwhile, or an older record put back, is left);
-- KEEPTTL (a personal token's EXAT stays); no audit entry, nothing
-- published.  Returns one integer per quadruple: 1 renewed, 0 gone, 2
-- changed meanwhile.
local out = {}

for i = 4, #ARGV, 4 do
    local key, field = P .. ARGV[i], ARGV[i + 1]
    local cur
    if field == '' then
        cur = redis.call('GET', key)
    else
        cur = redis.call('HGET', key, field)
    end
    if not cur then
        out[#out + 1] = 0
    elseif cur ~= ARGV[i + 2] then
        out[#out + 1] = 2
    elseif field == '' then
        redis.call('SET', key, ARGV[i + 3], 'KEEPTTL')
        out[#out + 1] = 1
    else
        redis.call('HSET', key, field, ARGV[i + 3])
        out[#out + 1] = 1
    end
end

return out
