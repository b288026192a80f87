-- key resign: one record re-signed with the current signing key.
--   ARGV[4] kind ('token', 'account', 'team', 'member', 'app' or
--   'ptoken'), ARGV[5]
--   its id ('<team>/<user>' for a member), ARGV[6] the record exactly as
--   sa-admin read and verified it, ARGV[7] the same payload with its
--   version bumped, signed with the current key.
-- Written only when the key (a member: its field) still holds those very
-- bytes (anything else changed it meanwhile: CONFLICT, sa-admin reads it
-- again).  The key's expiry stays as it is (KEEPTTL: a token's EXAT, an
-- overlap's end).
-- No audit entry per record: `key resign` writes one for the whole run
-- (key_resign_done.lua).  Returns 1, or 0 when the record is gone.
local kind, id, old, rec = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local key, field, cur

if kind == 'member' then
    local team, user = string.match(id, '^([^/]+)/(.+)$')
    key, field = P .. SA_KEY_TEAM .. team .. SA_KEY_MEMBERS, user
    cur = redis.call('HGET', key, field)
else
    key = P .. ({ token = SA_KEY_TOKEN, account = SA_KEY_ACCOUNT,
                  team = SA_KEY_TEAM, app = SA_KEY_APP,
                  ptoken = SA_KEY_PTOKEN })[kind] .. id
    cur = redis.call('GET', key)
end

if not cur then
    return 0
end
if cur ~= old then
    return fail('CONFLICT', 'the record of ' .. kind .. " '" .. id
                .. "' changed meanwhile")
end

if field then
    redis.call('HSET', key, field, rec)
else
    redis.call('SET', key, rec, 'KEEPTTL')
end
if kind == 'token' then
    invalidate({ id })
end
return 1
