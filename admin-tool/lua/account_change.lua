-- account grant / ungrant / delete: the account record and every one of
-- its token records change together.
--   ARGV[4] team, ARGV[5] action, ARGV[6] account id, ARGV[7] its version,
--   ARGV[8] new account record ('' to delete), ARGV[9] perm,
--   ARGV[10] account name, ARGV[11] number of tokens, then per token: id,
--   version, record, exat.  The version is the one sa-admin verified, or
--   '0': the record had expired out of Redis; '*': it failed verification
--   and is overwritten whatever it holds; '-': it names another account,
--   only its entry in this account's index goes.  After the tokens:
--   the event (a signed envelope, '' for none), then for a deletion the
--   signed marker published on <prefix>records (record_written()).
-- The tokens are those whose signed records name the account, found by
-- sa-admin, which may include some the index misses (they are put back);
-- the index only tells whether one was issued meanwhile.
local team, action, aid, aver, arec, perm, aname = ARGV[4], ARGV[5], ARGV[6],
                                                   ARGV[7], ARGV[8], ARGV[9],
                                                   ARGV[10]
local ntok = tonumber(ARGV[11])
local ev = ARGV[12 + ntok * 4]
local akey = P .. SA_KEY_ACCOUNT .. aid
local tset = akey .. SA_KEY_TOKENS

local denied = account_permitted(team, perm, akey, aid, aver)
if denied then
    return denied
end

local given = {}
for i = 0, ntok - 1 do
    given[ARGV[12 + i * 4]] = true
end

-- a token issued meanwhile would escape the change
for _, tid in ipairs(redis.call('SMEMBERS', tset)) do
    if not given[tid] then
        return fail('CONFLICT', 'the account gained tokens meanwhile')
    end
end

local ids = {}
for i = 0, ntok - 1 do
    local tid, tver = ARGV[12 + i * 4], ARGV[13 + i * 4]
    if tver == '*' then
        ids[#ids + 1] = tid
    elseif tver == '0' then
        if redis.call('EXISTS', P .. SA_KEY_TOKEN .. tid) == 1 then
            return fail('CONFLICT', "token '" .. tid .. "' changed meanwhile")
        end
    elseif tver ~= '-' then
        denied = unchanged(P .. SA_KEY_TOKEN .. tid, tver, "token '" .. tid .. "'")
        if denied then
            return denied
        end
        ids[#ids + 1] = tid
    end
end

for i = 0, ntok - 1 do
    local tid, tver = ARGV[12 + i * 4], ARGV[13 + i * 4]
    if tver == '0' or tver == '-' then
        redis.call('SREM', tset, tid)
    else
        put(P .. SA_KEY_TOKEN .. tid, ARGV[14 + i * 4], ARGV[15 + i * 4])
        redis.call('SADD', tset, tid)
    end
end

-- subscriptions of applications the account no longer holds end here:
-- they get this change's event last
local apps, gone = {}, {}
if arec ~= '' then
    local ok, a = pcall(cjson.decode, string.sub(arec, SA_ENVELOPE_HEAD_LEN + 1))
    for _, app in ipairs(ok and type(a) == 'table' and a.apps or {}) do
        apps[app] = true
    end
end
for _, app in ipairs(redis.call('SMEMBERS', akey .. SA_KEY_SUBS)) do
    if not apps[app] and not apps['*'] then
        gone[app] = true
    end
end
notify(aid, ({ ['account.grant'] = 'account.granted',
               ['account.ungrant'] = 'account.ungranted',
               ['account.delete'] = 'account.deleted' })[action], ev, gone)
for app in pairs(gone) do
    unsubscribe(app, aid)
end

if arec == '' then
    for i = 0, ntok - 1 do
        redis.call('ZREM', P .. SA_KEY_EXPIRING, ARGV[12 + i * 4])
    end
    record_written(ARGV[13 + ntok * 4])
    redis.call('DEL', akey, tset)
    redis.call('SREM', P .. SA_KEY_TEAM .. team .. SA_KEY_ACCOUNTS, aid)
    if redis.call('HGET', P .. SA_KEY_TEAM .. team .. SA_KEY_NAMES, aname) == aid then
        redis.call('HDEL', P .. SA_KEY_TEAM .. team .. SA_KEY_NAMES, aname)
    end
else
    redis.call('SET', akey, arec)
    record_written(arec)
end

audit(action, aid, team)
if #ids > 0 then
    invalidate(ids)
end
return 1
