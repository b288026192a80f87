-- key resign: one audit checkpoint re-signed with the new signing key
-- (sa-admin verified the old signature with an --old-verify-key).
--   ARGV[4] the checkpoint as read, ARGV[5] its number, ARGV[6] the new one
local key = P .. SA_KEY_AUDIT .. ':sig'

if not redis.call('ZSCORE', key, ARGV[4]) then
    return 0                    -- gone meanwhile (trimmed): nothing to do
end
redis.call('ZREM', key, ARGV[4])
redis.call('ZADD', key, ARGV[5], ARGV[6])
return 1
