-- Variant (e) of bench/run: the same check done the way Kong's key-auth
-- plugin does it in OpenResty.  In access_by_lua, per worker:
--
--   Authorization: Bearer sat_<id>_...  ->  lua-resty-lrucache, keyed by the
--   token text (ttl 300 s); on a miss GET <prefix>tok:<id> from Redis with
--   lua-resty-redis (cosocket, set_keepalive pool), strip the 91-character
--   signature prefix "sa1.<86>." and decode the JSON with cjson; refuse a
--   record that is missing, revoked, expired or has no scopes (401), cache
--   the rest.
--
-- It does NOT verify the Ed25519 signature nor compare the BLAKE2b hash of
-- the token (Debian packages no Lua binding for either), so any token that
-- merely has a valid id passes: a faithful Lua version would be slower on
-- every miss.  The benchmark measures the warm (hit) path.

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

function _M.access()
    local auth = ngx_var.http_authorization
    local token = auth and match(auth, "^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(sat_%w+_%w+)%s*$")

    if not token or #token ~= 70 then
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

return _M
