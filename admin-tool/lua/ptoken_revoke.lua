-- user token revoke: the record replaced by its tombstone (revoked, a
-- higher version), kept until the token's expiry + 7 days like the
-- record it replaces, so that the older record cannot simply come back.
--   ARGV[4] user (the record's), ARGV[5] token id, ARGV[6] the version
--   sa-admin read, ARGV[7] the tombstone (signed), ARGV[8] exat.
local user, tid, ver, rec, exat = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local key = P .. SA_KEY_PTOKEN .. tid

local denied = unchanged(key, ver, "personal token '" .. tid .. "'")
if denied then
    return denied
end

-- sa-admin verified the record it read; this catches one swapped since
local ok, cur = pcall(cjson.decode, string.sub(redis.call('GET', key),
                                               SA_ENVELOPE_HEAD_LEN + 1))
if not ok or type(cur) ~= 'table' or cur.id ~= tid or cur.user ~= user then
    return fail('CONFLICT', 'the record of ' .. tid .. ' changed meanwhile')
end

put(key, rec, exat)
record_written(rec)
audit('user.token.revoke', user .. '/' .. tid, '')
return 1
