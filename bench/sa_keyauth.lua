-- Variants (e), (f) and (g) of bench/run: the same check done the way it is
-- done in OpenResty, with lua-resty-redis (cosocket, set_keepalive pool):
--
--   Authorization: Bearer sat_<id>_...  ->  GET <prefix>tok:<id> from Redis,
--   strip the 91-character signature prefix "sa1.<86>." and decode the JSON
--   with cjson; refuse a record that is missing, revoked, expired or has no
--   scopes (401), admit the rest.
--
--   (e) access():         Kong's key-auth plugin: access_by_lua, the record
--                         kept per worker in lua-resty-lrucache, keyed by the
--                         token text (ttl 300 s); Redis only on a miss
--   (f) access_nocache(): the same in access_by_lua without a cache: one
--                         Redis GET on every request
--   (g) auth_service():   the same as the content handler of the location
--                         that auth_request calls (a subrequest skips the
--                         access phase, so content_by_lua): 200 or 401, no
--                         cache
--
-- None of them verifies the Ed25519 signature nor compares the BLAKE2b hash
-- of the token (Debian packages no Lua binding for either), so any token that
-- merely has a valid id passes: a faithful Lua version would be slower on
-- every Redis lookup.

local lrucache = require "resty.lrucache"
local redis    = require "nginx.redis"      -- Debian's lua-resty-redis
local cjson    = require "cjson.safe"

local ngx_var  = ngx.var
local ngx_exit = ngx.exit
local ngx_time = ngx.time
local ngx_null = ngx.null
local sub      = string.sub
local match    = string.match

local _M = {}

local conf = {
    host    = "127.0.0.1",
    port    = 6379,
    prefix  = "sa:",
    ttl     = 300,        -- seconds, lrucache
    items   = 200000,     -- lrucache slots per worker
    timeout = 200,        -- ms, as sa_redis_timeout
    idle    = 60000,      -- ms, keepalive idle timeout
    pool    = 64,         -- keepalive pool size
}

local cache

-- from init_by_lua (master): every worker gets its own copy of the cache
function _M.init(opts)
    for k, v in pairs(opts or {}) do
        conf[k] = v
    end
    cache = assert(lrucache.new(conf.items))
end

local SIG_PREFIX = 91      -- "sa1." .. 86 chars of base64url .. "."

-- the record, false when it is refused, nil + err when Redis failed
local function lookup(token)
    local red = redis:new()
    red:set_timeout(conf.timeout)

    local ok, err = red:connect(conf.host, conf.port)
    if not ok then
        return nil, err
    end

    local res
    res, err = red:get(conf.prefix .. "tok:" .. sub(token, 5, 20))
    if not res then
        red:close()
        return nil, err
    end

    red:set_keepalive(conf.idle, conf.pool)

    if res == ngx_null or #res <= SIG_PREFIX or sub(res, 1, 4) ~= "sa1." then
        return false
    end

    local rec = cjson.decode(sub(res, SIG_PREFIX + 1))
    if type(rec) ~= "table" or rec.revoked
       or type(rec.scopes) ~= "table" or #rec.scopes == 0
    then
        return false
    end

    return rec
end

local function expired(rec)
    local exp = tonumber(rec.expires_at) or 0
    return exp ~= 0 and exp <= ngx_time()
end

-- the token of the Authorization header, nil when there is none
local function bearer()
    local auth = ngx_var.http_authorization
    local token = auth and match(auth, "^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(sat_%w+_%w+)%s*$")

    if not token or #token ~= 70 then
        return nil
    end

    return token
end

-- the status a token gets without a cache: 200, 401 or 503
local function check(token)
    local rec, err = lookup(token)
    if rec == nil then
        ngx.log(ngx.ERR, "sa_keyauth: redis: ", err)
        return 503
    end
    if not rec or expired(rec) then
        return 401
    end
    return 200
end

-- (e) access_by_lua, with the per-worker cache
function _M.access()
    local token = bearer()
    if not token then
        return ngx_exit(401)
    end

    local rec = cache:get(token)

    if rec == nil then
        local err
        rec, err = lookup(token)
        if rec == nil then
            ngx.log(ngx.ERR, "sa_keyauth: redis: ", err)
            return ngx_exit(503)
        end
        if not rec then
            return ngx_exit(401)
        end
        cache:set(token, rec, conf.ttl)
    end

    if expired(rec) then
        return ngx_exit(401)
    end
end

-- (f) access_by_lua, Redis on every request
function _M.access_nocache()
    local token = bearer()
    if not token then
        return ngx_exit(401)
    end

    local status = check(token)
    if status ~= 200 then
        return ngx_exit(status)
    end
end

-- (g) content_by_lua of the auth_request location: the answer is the status
function _M.auth_service()
    local token = bearer()
    return ngx_exit(token and check(token) or 401)
end

return _M
