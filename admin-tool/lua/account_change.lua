-- account grant / ungrant / delete: the account record and every one of
-- its token records change together.
--   ARGV[4] team, ARGV[5] action, ARGV[6] account id, ARGV[7] its version,
--   ARGV[8] new account record ('' to delete), ARGV[9] perm,
--   ARGV[10] number of tokens, then per token: id, version, record, exat
local team, action, aid, aver, arec, perm = ARGV[4], ARGV[5], ARGV[6],
                                            ARGV[7], ARGV[8], ARGV[9]
local ntok = tonumber(ARGV[10])
local akey = P .. 'acct:' .. aid
local tset = akey .. ':tokens'

local denied = permitted(team, perm)
    or unchanged(akey, aver, "account '" .. aid .. "'")
if denied then
    return denied
end

-- a token issued meanwhile would escape the change
if redis.call('SCARD', tset) ~= ntok then
    return fail('CONFLICT', 'the account gained or lost tokens meanwhile')
end

local ids = {}
for i = 0, ntok - 1 do
    local tid, tver = ARGV[11 + i * 4], ARGV[12 + i * 4]
    if redis.call('SISMEMBER', tset, tid) == 0 then
        return fail('CONFLICT', 'the account gained or lost tokens meanwhile')
    end
    -- version '0': the record had expired out of Redis when sa-admin read;
    -- '*': it failed verification and is overwritten whatever it holds
    if tver == '*' then
        ids[#ids + 1] = tid
    elseif tver == '0' then
        if redis.call('EXISTS', P .. 'tok:' .. tid) == 1 then
            return fail('CONFLICT', "token '" .. tid .. "' changed meanwhile")
        end
    else
        denied = unchanged(P .. 'tok:' .. tid, tver, "token '" .. tid .. "'")
        if denied then
            return denied
        end
        ids[#ids + 1] = tid
    end
end

for i = 0, ntok - 1 do
    local tid = ARGV[11 + i * 4]
    if ARGV[12 + i * 4] == '0' then
        redis.call('SREM', tset, tid)
    else
        put(P .. 'tok:' .. tid, ARGV[13 + i * 4], ARGV[14 + i * 4])
    end
end

if arec == '' then
    local name = cjson.decode(string.sub(redis.call('GET', akey), HEAD + 1)).name
    redis.call('DEL', akey, tset)
    redis.call('SREM', P .. 'team:' .. team .. ':accounts', aid)
    redis.call('HDEL', P .. 'team:' .. team .. ':names', name)
else
    redis.call('SET', akey, arec)
end

audit(action, aid, team)
if #ids > 0 then
    invalidate(ids)
end
return 1
