-- key refresh: token records renewed, nothing in them changed but
-- fresh_until and the signature.
--   ARGV[4 ..] triples: a token id, its record exactly as sa-admin read and
--   verified it, the same payload with a later fresh_until, signed.
-- Each record is replaced only when its key still holds those very bytes:
-- a record changed meanwhile (a rescope, a revocation, a put-back older
-- one) is left as it is, so a refresh can never bring back a revoked
-- token or lower a version.  KEEPTTL: the token's EXAT stays.  No audit
-- entry (freshness grants nothing) and no invalidation: the record's
-- content is the same, and a gateway asks Redis again once the fresh_until
-- it cached has passed.
-- Returns one integer per triple: 1 renewed, 0 gone, 2 changed meanwhile.
local out = {}

for i = 4, #ARGV, 3 do
    local key = P .. SA_KEY_TOKEN .. ARGV[i]
    local cur = redis.call('GET', key)
    if not cur then
        out[#out + 1] = 0
    elseif cur ~= ARGV[i + 1] then
        out[#out + 1] = 2
    else
        redis.call('SET', key, ARGV[i + 2], 'KEEPTTL')
        out[#out + 1] = 1
    end
end

return out
