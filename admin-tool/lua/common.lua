-- Prepended to every script (see the Makefile).  Conventions:
--   ARGV[1] key prefix, ARGV[2] acting user, ARGV[3] now (unix seconds);
--   the script's own arguments follow from ARGV[4].
-- Every script checks everything first and writes only when all checks
-- pass, so that a refused change writes nothing.  Errors are "CODE message"
-- with CODE one of NOTFOUND, NOPERM, EXISTS, CONFLICT (sa-admin retries).

local P, ACTOR, NOW = ARGV[1], ARGV[2], ARGV[3]

local function fail(code, msg)
    return redis.error_reply(code .. ' ' .. msg)
end

-- the version inside a signed record, nil when the key does not exist
local function version_of(key)
    local v = redis.call('GET', key)
    if not v then
        return nil
    end
    local ok, rec = pcall(cjson.decode, string.sub(v, SA_ENVELOPE_HEAD_LEN + 1))
    if not ok or type(rec) ~= 'table' or rec.version == nil then
        return -1
    end
    return string.format('%d', rec.version)
end

-- nil when the record at key still has the version sa-admin read
local function unchanged(key, version, what)
    local cur = version_of(key)
    if cur == nil then
        return fail('NOTFOUND', what .. ' does not exist')
    end
    if cur ~= version then
        return fail('CONFLICT', what .. ' changed meanwhile')
    end
    return nil
end

-- nil when the record at key names id and team: sa-admin verified it, and
-- the team the permission is checked in must be the record's (the script
-- cannot check signatures; this catches a record swapped since the read)
local function names(key, id, team)
    local v = redis.call('GET', key)
    local ok, rec = pcall(cjson.decode, string.sub(v or '', SA_ENVELOPE_HEAD_LEN + 1))
    if not ok or type(rec) ~= 'table' or rec.id ~= id or rec.team ~= team then
        return fail('CONFLICT', 'the record of ' .. id .. ' changed meanwhile')
    end
    return nil
end

-- nil when ACTOR owns the team or holds perm in it
local function permitted(team, perm)
    local owner = redis.call('HGET', P .. SA_KEY_TEAM .. team, 'owner')
    if not owner then
        return fail('NOTFOUND', "team '" .. team .. "' does not exist")
    end
    if owner == ACTOR then
        return nil
    end
    local perms = redis.call('HGET', P .. SA_KEY_TEAM .. team .. SA_KEY_MEMBERS, ACTOR)
    for p in string.gmatch(perms or '', '[^,]+') do
        if p == perm then
            return nil
        end
    end
    return fail('NOPERM', "'" .. ACTOR .. "' lacks " .. perm
                .. " in team '" .. team .. "'")
end

-- exat '0': the record stays for good
local function put(key, value, exat)
    if exat == '0' then
        redis.call('SET', key, value)
    else
        redis.call('SET', key, value, 'EXAT', exat)
    end
end

local function audit(action, target, team)
    redis.call('XADD', P .. SA_KEY_AUDIT, 'MAXLEN', '~', 1000000, '*',
               'time', NOW, 'actor', ACTOR, 'action', action,
               'target', target, 'team', team)
end

local function invalidate(ids)
    redis.call('PUBLISH', P .. SA_KEY_INVALIDATE, table.concat(ids, ' '))
end

