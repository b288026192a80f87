-- Prepended to every script (see the Makefile).  Conventions:
--   ARGV[1] key prefix, ARGV[2] acting user, ARGV[3] now (unix seconds);
--   the script's own arguments follow from ARGV[4].
-- Every script checks everything first and writes only when all checks
-- pass, so that a refused change writes nothing but its audit entry
-- (audit_denied, rate-limited).  Errors are "CODE message"
-- with CODE one of NOTFOUND, NOPERM, EXISTS, CONFLICT (sa-admin retries).

local P, ACTOR, NOW = ARGV[1], ARGV[2], ARGV[3]

-- ARGV[2] may say how the actor was proven and through which channel too:
-- three lines, the actor, the proof ("local", "token:<id>" or "proxy") and
-- the channel ("cli" or "api"); user names hold no newline.  The audit
-- entries then record both.
local PROOF, CHANNEL
do
    local a, p, c = string.match(ACTOR, '^([^\n]*)\n([^\n]*)\n([^\n]*)$')
    if a then
        ACTOR, PROOF, CHANNEL = a, p, c
    end
end

-- The change key (redis-sentinel:// URLs; admin-tool/redis.h): KEYS[1],
-- when given, keeps the script's reply for a day, written in the same
-- atomic step as the change by sa_changed (embed.pl puts every script's
-- own part in a function whose reply goes through it).  Run again with the
-- same key, a script changes nothing and gives that reply: a change whose
-- reply was lost is found made, or made once.
local CHANGE = KEYS[1]
if CHANGE then
    local done = redis.call('GET', CHANGE)
    if done then
        return cjson.decode(done)[1]
    end
end

local function sa_changed(reply)
    if CHANGE then
        redis.call('SET', CHANGE, cjson.encode({ reply }), 'EX', 86400)
    end
    return reply
end

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

-- The audit log is a chain: each entry carries seq (1, 2, ... from
-- audit:seq), prev (the link of the entry before) and link (a hash of prev,
-- seq and the entry), and audit:head holds the newest link.  Counter,
-- head and entry change in this one script, so concurrent writers can
-- never fork the chain or share a number; 'sa-admin audit --verify' then
-- finds an entry deleted (a gap in seq) or added by something other than
-- a script (no seq, or a prev that is not the link before it).  MAXLEN
-- trims the oldest entries: the chain then starts after seq 1.
--
-- Signed: the script's reply carries the numbers and the last link of
-- the entries it wrote (sa_receipt, below); sa-admin, which holds the
-- signing key, signs that checkpoint into audit:sig (admin-tool/audit.c).
-- The receipt never comes from anything a writer could have changed: it
-- is this script run's own, not stored with the change key.
local AUDIT_FROM, AUDIT_TO, AUDIT_LINK
local function audit(action, target, team)
    local seq = redis.call('INCR', P .. SA_KEY_AUDIT .. ':seq')
    local prev = redis.call('GET', P .. SA_KEY_AUDIT .. ':head') or ''
    local fields = { prev, seq, NOW, ACTOR, action, target, team }
    if PROOF then
        fields[8], fields[9] = PROOF, CHANNEL
    end
    local link = redis.sha1hex(table.concat(fields, '\n'))
    redis.call('SET', P .. SA_KEY_AUDIT .. ':head', link)
    if PROOF then
        redis.call('XADD', P .. SA_KEY_AUDIT, 'MAXLEN', '~', 1000000, '*',
                   'time', NOW, 'actor', ACTOR, 'action', action,
                   'target', target, 'team', team, 'proof', PROOF,
                   'channel', CHANNEL, 'seq', seq, 'prev', prev,
                   'link', link)
    else
        redis.call('XADD', P .. SA_KEY_AUDIT, 'MAXLEN', '~', 1000000, '*',
                   'time', NOW, 'actor', ACTOR, 'action', action,
                   'target', target, 'team', team, 'seq', seq, 'prev', prev,
                   'link', link)
    end
    AUDIT_FROM = AUDIT_FROM or seq
    AUDIT_TO, AUDIT_LINK = seq, link
    -- now and then, the signatures of entries MAXLEN trimmed go too
    if seq % 1024 == 0 then
        local first = redis.call('XRANGE', P .. SA_KEY_AUDIT, '-', '+',
                                 'COUNT', 1)[1]
        local fseq
        for i = 1, first and #first[2] or 0, 2 do
            if first[2][i] == 'seq' then
                fseq = tonumber(first[2][i + 1])
            end
        end
        if fseq then
            redis.call('ZREMRANGEBYSCORE', P .. SA_KEY_AUDIT .. ':sig',
                       '-inf', '(' .. fseq)
        end
    end
end

-- the reply of a script that wrote audit entries, with their receipt
-- (admin-tool/audit.h takes it off again before any caller sees it)
local function sa_receipt(reply)
    if AUDIT_TO == nil or (type(reply) == 'table' and reply.err) then
        return reply
    end
    if reply == nil then
        reply = false
    end
    return { 'sa-audit:1', AUDIT_FROM, AUDIT_TO, AUDIT_LINK, reply }
end

-- A refused attempt leaves an entry too (action 'denied', target the
-- permission lacked), at most one a minute per actor, team and permission:
-- a loop of refused attempts cannot flood the log out of its MAXLEN.
local function audit_denied(team, perm)
    local key = P .. SA_KEY_AUDIT .. ':denied:' .. ACTOR .. ':' .. team
                .. ':' .. perm
    if redis.call('SET', key, '1', 'NX', 'EX', 60) then
        audit('denied', perm, team)
    end
end


-- The permission sa-admin proved (admin-tool/perm.h): the team record and
-- the acting user's member record ('' for the owner or the operator)
-- exactly as it read and verified them.  They come as ARGV[4] and ARGV[5]
-- and are taken away here, so a script's own arguments start at ARGV[4].
local PROOF_TEAM, PROOF_MEMBER = ARGV[4], ARGV[5]
table.remove(ARGV, 4)
table.remove(ARGV, 4)

-- nil when the records sa-admin checked perm against are still those
-- bytes; a script cannot verify a signature, so any change since is a
-- CONFLICT and sa-admin reads and judges them again
local function permitted(team, perm)
    if PROOF_TEAM == nil or PROOF_TEAM == '' then
        return fail('NOPERM', perm .. " in team '" .. team .. "' was not checked")
    end
    local cur = redis.pcall('GET', P .. SA_KEY_TEAM .. team)
    if cur ~= PROOF_TEAM then
        return fail('CONFLICT', "team '" .. team .. "' changed meanwhile")
    end
    if PROOF_MEMBER ~= '' then
        cur = redis.call('HGET', P .. SA_KEY_TEAM .. team .. SA_KEY_MEMBERS, ACTOR)
        if cur ~= PROOF_MEMBER then
            return fail('CONFLICT', "the member record of '" .. ACTOR
                        .. "' in team '" .. team .. "' changed meanwhile")
        end
    end
    return nil
end

-- A change of account aid of team: the permission still proven, the
-- account record (akey) still at version aver and still naming aid and
-- team.  nil, or the error to return.
local function account_permitted(team, perm, akey, aid, aver)
    return permitted(team, perm)
        or unchanged(akey, aver, "account '" .. aid .. "'")
        or names(akey, aid, team)
end

-- Takes the stream entry off the notification group if it is still worker
-- me's (not reclaimed by another since): true, or false when it is not.
local function take_entry(stream, entry, me)
    local p = redis.call('XPENDING', stream, SA_NOTIFY_GROUP, entry, entry, 1)
    if #p == 0 or p[1][2] ~= me then
        return false
    end
    redis.call('XACK', stream, SA_NOTIFY_GROUP, entry)
    redis.call('XDEL', stream, entry)
    return true
end

-- exat '0': the record stays for good
local function put(key, value, exat)
    if exat == '0' then
        redis.call('SET', key, value)
    else
        redis.call('SET', key, value, 'EXAT', exat)
    end
end


-- A record permission checks read (account, team, member, application,
-- personal token) written: the record itself, as stored (signed by
-- sa-admin), published on <prefix>records, where serve's refresher hears
-- it (refresh.h), so that a change made and its older record put back
-- before the refresher's next run is told from the current one.  A
-- deletion publishes the signed marker sa-admin made for it (a higher
-- version, no usable record).  Signed, so that whoever else can publish
-- there (any Redis writer) can make the refresher remember no version
-- sa-admin did not sign (docs/admin-api.md, "Reviewed").
local function record_written(rec)
    if rec and rec ~= '' then
        redis.call('PUBLISH', P .. SA_KEY_RECORDS, rec)
    end
end


-- Publishes the changed token ids, each as <id>:<version> with the version
-- its record has now (schema/README.md): gateways then refuse any older
-- record of it, even one they never read.  An id whose record is gone or
-- unreadable goes alone, as before versions were carried.
local function invalidate(ids)
    local items = {}
    for i, id in ipairs(ids) do
        local v = version_of(P .. SA_KEY_TOKEN .. id)
        if v and v ~= -1 then
            items[i] = id .. ':' .. v
        else
            items[i] = id
        end
    end
    -- at most 1000 items a message (about 25 kB, well under the 1 MiB a
    -- gateway's subscriber reads), so a change of an account of any number
    -- of tokens reaches every gateway
    for i = 1, #items, 1000 do
        redis.call('PUBLISH', P .. SA_KEY_INVALIDATE,
                   table.concat(items, ' ', i, math.min(i + 999, #items)))
    end
end


-- Notifications (schema/README.md, "Notifications").  A subscription is
-- the JSON at notify:<app> field <aid>: its public part routes here, its
-- sealed part (which only the worker can open) decides at delivery.

-- true when a subscription's event list takes etype ('*' takes all)
local function takes(events, etype)
    if type(events) ~= 'table' then
        return false
    end
    for _, e in ipairs(events) do
        if e == '*' or e == etype then
            return true
        end
    end
    return false
end

-- Queues one delivery per destination of subscription s (of app, aid)
-- when it takes etype (force: whatever it takes, for ping); extra: the
-- entry's own fields; last: the subscription ends with this change, so
-- the entry carries a copy of it.  Returns the number queued.
local function queue(app, aid, s, etype, extra, force, last)
    local ok, sub = pcall(cjson.decode, s)
    if not ok or type(sub) ~= 'table' then
        -- unreadable: queued anyway, for the worker to report
        sub = { webhook = true, events = { '*' } }
    end
    if sub.disabled_at and sub.disabled_at ~= cjson.null then
        return 0
    end
    if not force and not takes(sub.events, etype) then
        return 0
    end
    local n = 0
    for _, dest in ipairs({ 'webhook', 'slack' }) do
        -- <dest>_events: what this destination takes (the sealed copy
        -- decides at delivery)
        local only = sub[dest .. '_events']
        if sub[dest] and sub[dest] ~= cjson.null
           and (force or type(only) ~= 'table' or takes(only, etype)) then
            local f = { 'app', app, 'account', aid, 'dest', dest,
                        'type', etype }
            for _, v in ipairs(extra) do
                f[#f + 1] = v
            end
            if last then
                f[#f + 1] = 'sub'
                f[#f + 1] = s
            end
            redis.call('XADD', P .. SA_KEY_EVENTS, '*', unpack(f))
            n = n + 1
        end
    end
    return n
end

-- An account's event (ev: a signed envelope from sa-admin, '' for none) to
-- every subscription of the account; gone: apps whose subscriptions end
-- with this change (they get this event last, then are removed).
local function notify(aid, etype, ev, gone)
    if ev == nil or ev == '' then
        return 0
    end
    local n = 0
    for _, app in ipairs(redis.call('SMEMBERS', P .. SA_KEY_ACCOUNT .. aid
                                                .. SA_KEY_SUBS)) do
        local s = redis.call('HGET', P .. SA_KEY_NOTIFY .. app, aid)
        if s then
            n = n + queue(app, aid, s, etype, { 'ev', ev }, false,
                          gone and gone[app])
        end
    end
    return n
end

-- the subscription of aid to app goes
local function unsubscribe(app, aid)
    redis.call('HDEL', P .. SA_KEY_NOTIFY .. app, aid)
    redis.call('SREM', P .. SA_KEY_ACCOUNT .. aid .. SA_KEY_SUBS, app)
end

-- the expiry index: the next time a token.expiring notice is due, 7 days
-- and 1 day before the expiry; a mark already past is skipped
local function expiry_index(tid, exp)
    exp = tonumber(exp) or 0
    local now = tonumber(NOW)
    if exp == 0 then
        redis.call('ZREM', P .. SA_KEY_EXPIRING, tid)
    elseif exp - 7 * 86400 > now then
        redis.call('ZADD', P .. SA_KEY_EXPIRING, exp - 7 * 86400, tid)
    elseif exp - 86400 > now then
        redis.call('ZADD', P .. SA_KEY_EXPIRING, exp - 86400, tid)
    else
        redis.call('ZREM', P .. SA_KEY_EXPIRING, tid)
    end
end
