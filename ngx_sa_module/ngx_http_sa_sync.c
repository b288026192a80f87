/*
 * The batching sync (ngx_http_sa_sync.h): a per-worker table of items
 * (usage per token and day, shared counters), moved whole into a batch
 * every interval and sent as one EVAL of the script below.  One batch at a
 * time: until it is answered new counts wait in the table.  A batch whose
 * reply was lost (NGX_ERROR: the connection ended, or an error reply) is
 * sent again, with the same sequence number, which the script applies
 * once; a reply that is not what the script returns ends the batch (it was
 * applied, or it never will be: resending it would not help) with an
 * error line.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <sodium.h>

#include "ngx_http_sa_module.h"
#include "ngx_http_sa_sync.h"


typedef enum {
    NGX_HTTP_SA_ITEM_USAGE = 1,
    NGX_HTTP_SA_ITEM_COUNTER
} ngx_http_sa_item_type_e;

#define NGX_HTTP_SA_SYNC_APP_LEN  64       /* an application's name */
#define NGX_HTTP_SA_SYNC_SLOTS    (2 * NGX_HTTP_SA_SYNC_MAX)   /* power of 2 */

/* a count is kept below this (Lua's numbers are doubles: exact below 2^53) */
#define NGX_HTTP_SA_SYNC_COUNT_MAX  ((int64_t) 1 << 52)

/* usage is sent at most this often (ms; counters every interval) */
#define NGX_HTTP_SA_USAGE_EVERY     1000


typedef struct {
    u_char                     id[SA_TOKEN_ID_LEN];
    u_char                     type;
    u_char                     kind;
    u_char                     period_len;
    u_char                     app_len;
    uint32_t                   hash;          /* ngx_http_sa_sync_hash() */
    u_char                     period[NGX_HTTP_SA_SYNC_PERIOD_LEN];
    u_char                     app[NGX_HTTP_SA_SYNC_APP_LEN];
    time_t                     expire;
    uint64_t                   limit;
    int64_t                    counts[NGX_HTTP_SA_SYNC_FIELDS]; /* [0]: a
                                                                   counter's
                                                                   delta */
} ngx_http_sa_item_t;


struct ngx_http_sa_sync_s {
    ngx_http_sa_sync_conf_t   *conf;
    ngx_http_sa_redis_worker_t  *redis;
    ngx_log_t                 *log;
    ngx_event_t                timer;
    ngx_http_sa_item_t        *items;         /* the table */
    ngx_uint_t                 nitems;
    uint16_t                  *slots;         /* index + 1, 0: empty */
    ngx_http_sa_item_t        *batch;         /* sent, or to send again */
    ngx_uint_t                 nbatch;
    uint64_t                   seq;           /* the batch's */
    ngx_msec_t                 sent_at;
    ngx_msec_t                 backoff;       /* after a failed batch */
    ngx_msec_t                 usage_at;      /* usage last sent */
    ngx_http_sa_sync_total_pt  handlers[NGX_HTTP_SA_SYNC_KINDS];
    void                      *handler_data[NGX_HTTP_SA_SYNC_KINDS];
    u_char                     nonce[32];     /* this worker, in hex */
    uint64_t                   hkey;          /* the table's hash key */
    u_char                     day[8];        /* YYYYMMDD of today */
    time_t                     day_of;        /* its day number */
    ngx_uint_t                 dropped;       /* table full: not counted */
    time_t                     dropped_logged;
    time_t                     bad_logged;
    unsigned                   inflight:1;
    unsigned                   failed:1;      /* the last batch's reply lost */
    unsigned                   soon:1;        /* asked while in flight */
};


static const char  *ngx_http_sa_sync_kinds[NGX_HTTP_SA_SYNC_KINDS] = {
    "q", "r"
};


/*
 * ARGV: prefix, gateway, worker, seq, now, the events stream, then items:
 *   u ID DAY N (FIELD COUNT)*N
 *   c ID KIND PERIOD EXPIRE DELTA LIMIT APP
 * Returns "BAD (TOTAL MINE)*" for the counters, in order: BAD the number
 * of values found unusable (not integers: written by someone else), a
 * TOTAL or MINE -1 when unreadable (negative too), one over 2^52 as 2^52
 * (a lie that large only makes the token look busier): one counter's
 * hostile value never makes the others' numbers unreadable.
 *
 * The items are grouped by the hash they go to, one per kind of item and
 * period, whatever the number of tokens (issue 25: the cost of a batch in
 * Redis commands must not grow with its tokens; Redis counts every
 * command a script runs):
 *
 *   <prefix>usage:<YYYYMMDD>       fields <id>:<verdict>, kept 90 days
 *   <prefix>ctr:<kind>:<period>    fields <id> (the total of all
 *                                  gateways), <id>:<gateway> (its part),
 *                                  <id>:w and <id>:x (a quota's warning
 *                                  and exhaustion told), kept EXPIRE s
 *
 * and "_", set with the first write of a hash, when its EXPIRE is set
 * (one EXPIRE in the hash's life, not one a batch).  Per batch: one SET
 * (with GET: the worker's last applied batch; a Redis before 6.2 takes
 * GET and SET), then per hash one HMGET of every field the batch names
 * and one HSET of the new values, computed here (the script runs alone:
 * nothing comes between the read and the write), in slices of 4,000
 * arguments (Lua's unpack() takes some 8,000).  So a batch of rate
 * counters costs 4 commands (EVAL, SET, HMGET, HSET), one that also
 * carries the day's usage 6, a batch of 4,096 items at most some 20.  A
 * value that is not an integer is left as it is, counted in BAD and read
 * as -1; a key of another type where a hash should be (WRONGTYPE) is
 * deleted, as its writer could have, counted in BAD, and counting starts
 * afresh (the gateways keep the totals they heard: they only grow);
 * counts stop at 2^52 (Lua's numbers are exact below 2^53); a
 * notification is told when its flag is absent, and the flag is set in
 * the same HSET.
 */
static const char  ngx_http_sa_sync_script[] =
"local P, gw, seq, now, ev = ARGV[1], ARGV[2], tonumber(ARGV[4]), ARGV[5],\n"
"  ARGV[6]\n"
"local CAP, N, fmt, match, tonum = 4503599627370496, 4000, string.format,\n"
"  string.match, tonumber\n"
"local function num(v)\n"
"  if v == false then return 0 end\n"
"  if type(v) == 'string' and match(v, '^%d+$') then\n"
"    if #v > 16 then return CAP end\n"
"    local n = tonum(v)\n"
"    if n > CAP then return CAP end\n"
"    return n\n"
"  end\n"
"  return -1\n"
"end\n"
"local sk = P .. 'sync:' .. ARGV[3]\n"
"local v = redis.pcall('SET', sk, ARGV[4], 'EX', 3600, 'GET')\n"
"if type(v) == 'table' and v.err then\n"
"  v = redis.pcall('GET', sk)\n"
"  redis.pcall('SET', sk, ARGV[4], 'EX', 3600)\n"
"end\n"
"local last = (type(v) == 'string' and match(v, '^%d+$') and #v < 16\n"
"  and tonum(v)) or 0\n"
"local apply = seq > last\n"
"if last > seq then redis.pcall('SET', sk, v, 'EX', 3600) end\n"
"local gs, order, bad, out = {}, {}, 0, {}\n"
"local ig, ip, ia = {}, {}, {}\n"
"local function group(key, ttl)\n"
"  local g = gs[key]\n"
"  if g == nil then\n"
"    g = { key = key, ttl = ttl, f = { '_' }, v = nil, w = {} }\n"
"    gs[key] = g\n"
"    order[#order + 1] = g\n"
"  end\n"
"  return g\n"
"end\n"
"local n, i, na = #ARGV, 7, 0\n"
"while i <= n do\n"
"  na = na + 1\n"
"  ia[na] = i\n"
"  if ARGV[i] == 'u' then\n"
"    local g = group(P .. 'usage:' .. ARGV[i + 2], 7776000)\n"
"    local f, id, m = g.f, ARGV[i + 1], #g.f\n"
"    ig[na], ip[na] = g, m + 1\n"
"    for j = i + 4, i + 2 + 2 * tonum(ARGV[i + 3]), 2 do\n"
"      m = m + 1\n"
"      f[m] = id .. ':' .. ARGV[j]\n"
"    end\n"
"    i = i + 4 + 2 * tonum(ARGV[i + 3])\n"
"  else\n"
"    local g = group(P .. 'ctr:' .. ARGV[i + 2] .. ':' .. ARGV[i + 3],\n"
"      ARGV[i + 4])\n"
"    local f, id, m = g.f, ARGV[i + 1], #g.f\n"
"    ig[na], ip[na] = g, m + 1\n"
"    f[m + 1] = id\n"
"    f[m + 2] = id .. ':' .. gw\n"
"    if ARGV[i + 6] ~= '0' and ARGV[i + 7] ~= '' then\n"
"      f[m + 3] = id .. ':w'\n"
"      f[m + 4] = id .. ':x'\n"
"    end\n"
"    i = i + 8\n"
"  end\n"
"end\n"
"for _, g in ipairs(order) do\n"
"  local f, v = g.f, {}\n"
"  for s = 1, #f, N do\n"
"    local e = s + N - 1\n"
"    if e > #f then e = #f end\n"
"    local r = redis.pcall('HMGET', g.key, unpack(f, s, e))\n"
"    if type(r) ~= 'table' or r.err then\n"
"      bad = bad + 1\n"
"      if type(r) == 'table' and string.find(tostring(r.err), 'WRONGTYPE')\n"
"      then\n"
"        redis.pcall('DEL', g.key)\n"
"        r = {}\n"
"      else\n"
"        g.broken = true\n"
"      end\n"
"    end\n"
"    for k = s, e do v[k] = g.broken and '?' or r[k - s + 1] or false end\n"
"  end\n"
"  g.v = v\n"
"end\n"
"local function put(g, k, x)\n"
"  local w = g.w\n"
"  w[#w + 1] = g.f[k]\n"
"  w[#w + 1] = x\n"
"end\n"
"for k = 1, na do\n"
"  local i, g, p = ia[k], ig[k], ip[k]\n"
"  local v = g.v\n"
"  if ARGV[i] == 'u' then\n"
"    if apply then\n"
"      for j = i + 5, i + 3 + 2 * tonum(ARGV[i + 3]), 2 do\n"
"        local c = num(v[p])\n"
"        if c < 0 then bad = bad + 1\n"
"        else\n"
"          c = c + tonum(ARGV[j])\n"
"          if c > CAP then c = CAP end\n"
"          put(g, p, fmt('%d', c))\n"
"        end\n"
"        p = p + 1\n"
"      end\n"
"    end\n"
"  else\n"
"    local tot, mine, d = num(v[p]), num(v[p + 1]), tonum(ARGV[i + 5])\n"
"    if apply and d > 0 then\n"
"      if tot >= 0 then\n"
"        tot = tot + d\n"
"        if tot > CAP then tot = CAP end\n"
"        put(g, p, fmt('%d', tot))\n"
"      end\n"
"      if mine >= 0 then\n"
"        mine = mine + d\n"
"        if mine > CAP then mine = CAP end\n"
"        put(g, p + 1, fmt('%d', mine))\n"
"      end\n"
"    end\n"
"    if tot < 0 or mine < 0 then bad = bad + 1 end\n"
"    local limit = tonum(ARGV[i + 6])\n"
"    if limit > 0 and ARGV[i + 7] ~= '' and tot >= 0 then\n"
"      local t = { tot * 5 >= limit * 4, tot >= limit }\n"
"      local what = { 'token.quota_warning', 'token.quota_exhausted' }\n"
"      for q = 1, 2 do\n"
"        if t[q] and v[p + 1 + q] == false then\n"
"          v[p + 1 + q] = now\n"
"          put(g, p + 1 + q, now)\n"
"          redis.pcall('XADD', ev, '*', 'type', what[q], 'token',\n"
"            ARGV[i + 1], 'app', ARGV[i + 7], 'used', fmt('%d', tot),\n"
"            'quota', ARGV[i + 6], 'period', ARGV[i + 3], 'time', now)\n"
"        end\n"
"      end\n"
"    end\n"
"    out[#out + 1] = fmt('%d %d', tot, mine)\n"
"  end\n"
"end\n"
"for _, g in ipairs(order) do\n"
"  local w = g.w\n"
"  if #w > 0 and not g.broken then\n"
"    if g.v[1] == false then\n"
"      w[#w + 1] = '_'\n"
"      w[#w + 1] = '1'\n"
"    end\n"
"    for s = 1, #w, N do\n"
"      local e = s + N - 1\n"
"      if e > #w then e = #w end\n"
"      redis.pcall('HSET', g.key, unpack(w, s, e))\n"
"    end\n"
"    if g.v[1] == false then redis.pcall('EXPIRE', g.key, g.ttl) end\n"
"  end\n"
"end\n"
"return fmt('%d', bad) .. (#out > 0 and ' ' or '') .. table.concat(out, ' ')\n";


static void ngx_http_sa_sync_tick(ngx_event_t *ev);
static void ngx_http_sa_sync_failed(ngx_http_sa_sync_t *s);
static void ngx_http_sa_sync_keep_usage(ngx_http_sa_sync_t *s);
static void ngx_http_sa_sync_send(ngx_http_sa_sync_t *s);
static void ngx_http_sa_sync_reply(void *data, ngx_int_t rc,
    ngx_str_t *value);


ngx_http_sa_sync_t *
ngx_http_sa_sync_init_process(ngx_cycle_t *cycle,
    ngx_http_sa_sync_conf_t *conf, ngx_http_sa_redis_worker_t *redis)
{
    u_char               nonce[16];
    ngx_http_sa_sync_t  *s;

    s = ngx_pcalloc(cycle->pool, sizeof(ngx_http_sa_sync_t));
    if (s == NULL) {
        return NULL;
    }

    s->items = ngx_pcalloc(cycle->pool,
                           NGX_HTTP_SA_SYNC_MAX * sizeof(ngx_http_sa_item_t));
    s->batch = ngx_pcalloc(cycle->pool,
                           NGX_HTTP_SA_SYNC_MAX * sizeof(ngx_http_sa_item_t));
    s->slots = ngx_pcalloc(cycle->pool,
                           NGX_HTTP_SA_SYNC_SLOTS * sizeof(uint16_t));
    if (s->items == NULL || s->batch == NULL || s->slots == NULL) {
        return NULL;
    }

    s->conf = conf;
    s->redis = redis;
    s->log = cycle->log;

    /* names this worker's batches: unique across restarts and gateways */
    randombytes_buf(nonce, sizeof(nonce));
    ngx_hex_dump(s->nonce, nonce, sizeof(nonce));

    /* the table's slots, chosen under a random key of this worker */
    randombytes_buf(&s->hkey, sizeof(s->hkey));

    s->timer.handler = ngx_http_sa_sync_tick;
    s->timer.data = s;
    s->timer.log = cycle->log;
    s->timer.cancelable = 1;

    ngx_add_timer(&s->timer, conf->interval);

    return s;
}


/*
 * The worker exits (stop, quit, reload): what it holds is sent at once,
 * not awaited (ngx_http_sa_redis_exit_process() writes what the socket
 * takes before it closes): a batch kept after a failure, then the table.
 */
void
ngx_http_sa_sync_exit_process(ngx_http_sa_sync_t *s)
{
    ngx_http_sa_item_t  *t;

    if (s == NULL) {
        return;
    }

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    if (!s->inflight && s->nbatch) {
        ngx_http_sa_sync_send(s);
    }

    if (s->nitems) {
        t = s->batch;
        s->batch = s->items;
        s->nbatch = s->nitems;
        s->items = t;
        s->nitems = 0;
        s->seq++;
        ngx_http_sa_sync_send(s);
    }

    s->nbatch = 0;
}


void
ngx_http_sa_sync_soon(ngx_http_sa_sync_t *s)
{
    if (s == NULL || s->failed || ngx_exiting) {
        return;
    }

    if (s->inflight) {
        /* at its reply, not an interval later */
        s->soon = 1;
        return;
    }

    s->soon = 0;

    /*
     * at the end of this round of events: requests at hand go together
     * (deleted first: ngx_add_timer() keeps a timer less than 300 ms off)
     */
    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    ngx_add_timer(&s->timer, 1);
}


void
ngx_http_sa_sync_handler(ngx_http_sa_sync_t *s, ngx_http_sa_sync_kind_e kind,
    ngx_http_sa_sync_total_pt handler, void *data)
{
    s->handlers[kind] = handler;
    s->handler_data[kind] = data;
}


ngx_uint_t
ngx_http_sa_sync_up(ngx_http_sa_sync_t *s)
{
    ngx_msec_t  stall;

    /*
     * a worker that has nothing in flight still knows a connection lost
     * (a Redis killed, refusing): down, not "up until a batch is late"
     */
    if (s->failed || !ngx_http_sa_redis_command_up(s->redis)) {
        return 0;
    }

    stall = ngx_max(1000, 4 * s->conf->interval);

    return !s->inflight
           || (ngx_msec_int_t) (ngx_current_msec - s->sent_at)
              < (ngx_msec_int_t) stall;
}


/*
 * The slot of an item's key, under the worker's random key: a few
 * multiplications over 8-byte words (issue 25: two crc32s of the id and
 * the period, byte by byte, were the most of the table's cost per request)
 */
static uint32_t
ngx_http_sa_sync_hash(ngx_http_sa_sync_t *s, ngx_uint_t type,
    const u_char *id, ngx_uint_t kind, const u_char *period,
    size_t period_len)
{
    size_t    i;
    uint64_t  h, w;

#define NGX_HTTP_SA_SYNC_MIX(h, w)                                            \
    h = ((h) ^ (w)) * 0x9e3779b97f4a7c15ULL;                                 \
    h ^= h >> 29

    h = s->hkey ^ (type * 8 + kind) ^ ((uint64_t) period_len << 8);

    ngx_memcpy(&w, id, 8);
    NGX_HTTP_SA_SYNC_MIX(h, w);
    ngx_memcpy(&w, id + 8, 8);
    NGX_HTTP_SA_SYNC_MIX(h, w);

    for (i = 0; i + 8 <= period_len; i += 8) {
        ngx_memcpy(&w, period + i, 8);
        NGX_HTTP_SA_SYNC_MIX(h, w);
    }

    if (i < period_len) {
        w = 0;
        ngx_memcpy(&w, period + i, period_len - i);
        NGX_HTTP_SA_SYNC_MIX(h, w);
    }

#undef NGX_HTTP_SA_SYNC_MIX

    h *= 0xff51afd7ed558ccdULL;

    return (uint32_t) (h >> 32);
}


/* the item of this key (of hash h), made if new; NULL: the table is full */
static ngx_http_sa_item_t *
ngx_http_sa_sync_item(ngx_http_sa_sync_t *s, uint32_t h, ngx_uint_t type,
    const u_char *id, ngx_uint_t kind, const u_char *period,
    size_t period_len)
{
    ngx_uint_t           i, n;
    ngx_http_sa_item_t  *it;

    for (n = 0; n < NGX_HTTP_SA_SYNC_SLOTS; n++) {
        i = (h + n) & (NGX_HTTP_SA_SYNC_SLOTS - 1);

        if (s->slots[i] == 0) {
            break;
        }

        it = &s->items[s->slots[i] - 1];

        if (it->hash == h && it->type == type && it->kind == kind
            && it->period_len == period_len
            && ngx_memcmp(it->id, id, SA_TOKEN_ID_LEN) == 0
            && ngx_memcmp(it->period, period, period_len) == 0)
        {
            return it;
        }
    }

    if (s->nitems == NGX_HTTP_SA_SYNC_MAX || n == NGX_HTTP_SA_SYNC_SLOTS) {
        s->dropped++;

        if (s->dropped_logged != ngx_time()) {
            s->dropped_logged = ngx_time();
            ngx_log_error(NGX_LOG_ERR, s->log, 0,
                          "sa: sync: %ui tokens' counts wait for Redis, "
                          "%ui counts not kept", s->nitems, s->dropped);
        }

        return NULL;
    }

    it = &s->items[s->nitems];
    ngx_memzero(it, sizeof(ngx_http_sa_item_t));
    ngx_memcpy(it->id, id, SA_TOKEN_ID_LEN);
    it->type = (u_char) type;
    it->kind = (u_char) kind;
    it->period_len = (u_char) period_len;
    it->hash = h;
    ngx_memcpy(it->period, period, period_len);

    s->slots[(h + n) & (NGX_HTTP_SA_SYNC_SLOTS - 1)] = (uint16_t)
                                                       ++s->nitems;
    return it;
}


static ngx_inline void
ngx_http_sa_sync_inc(int64_t *v, int64_t delta)
{
    /* saturating: a count never overflows, nor goes negative */
    if (delta > NGX_HTTP_SA_SYNC_COUNT_MAX - *v) {
        *v = NGX_HTTP_SA_SYNC_COUNT_MAX;

    } else if (*v + delta < 0) {
        *v = 0;

    } else {
        *v += delta;
    }
}


void
ngx_http_sa_sync_usage(ngx_http_sa_sync_t *s, const u_char *id,
    ngx_uint_t field)
{
    time_t               now;
    ngx_tm_t             tm;
    ngx_http_sa_item_t  *it;

    if (s == NULL || field >= NGX_HTTP_SA_SYNC_FIELDS) {
        return;
    }

    now = ngx_time();

    if (now / 86400 != s->day_of || s->day[0] == '\0') {
        s->day_of = now / 86400;
        ngx_gmtime(now, &tm);
        ngx_sprintf(s->day, "%04d%02d%02d", tm.ngx_tm_year, tm.ngx_tm_mon,
                    tm.ngx_tm_mday);
    }

    it = ngx_http_sa_sync_item(s,
                               ngx_http_sa_sync_hash(s, NGX_HTTP_SA_ITEM_USAGE,
                                                     id, 0, s->day, 8),
                               NGX_HTTP_SA_ITEM_USAGE, id, 0, s->day, 8);
    if (it != NULL) {
        ngx_http_sa_sync_inc(&it->counts[field], 1);
    }
}


ngx_int_t
ngx_http_sa_sync_add(ngx_http_sa_sync_t *s, const u_char *id,
    ngx_http_sa_sync_kind_e kind, ngx_str_t *period, time_t expire,
    int64_t delta, uint64_t limit, ngx_str_t *app)
{
    ngx_http_sa_item_t  *it;

    if (s == NULL || period->len > NGX_HTTP_SA_SYNC_PERIOD_LEN) {
        return NGX_DECLINED;
    }

    it = ngx_http_sa_sync_item(s,
                               ngx_http_sa_sync_hash(s,
                                                     NGX_HTTP_SA_ITEM_COUNTER,
                                                     id, kind, period->data,
                                                     period->len),
                               NGX_HTTP_SA_ITEM_COUNTER, id, kind,
                               period->data, period->len);
    if (it == NULL) {
        return NGX_DECLINED;
    }

    ngx_http_sa_sync_inc(&it->counts[0], delta);
    it->expire = expire;
    it->limit = limit;

    if (app && app->len && app->len <= NGX_HTTP_SA_SYNC_APP_LEN) {
        ngx_memcpy(it->app, app->data, app->len);
        it->app_len = (u_char) app->len;
    }

    return NGX_OK;
}


static void
ngx_http_sa_sync_tick(ngx_event_t *ev)
{
    ngx_http_sa_item_t  *t;
    ngx_http_sa_sync_t  *s = ev->data;

    /* a failed batch waits longer each time: no error line a tick */
    if (!s->inflight && s->failed && s->nbatch
        && (ngx_msec_int_t) (ngx_current_msec - s->sent_at)
           < (ngx_msec_int_t) s->backoff)
    {
        goto next;
    }

    if (!s->inflight) {

        if (s->nbatch == 0 && s->nitems) {
            /* the table becomes the batch; a fresh table takes new counts */
            t = s->batch;
            s->batch = s->items;
            s->nbatch = s->nitems;
            s->items = t;
            s->nitems = 0;
            ngx_memzero(s->slots, NGX_HTTP_SA_SYNC_SLOTS * sizeof(uint16_t));

            /*
             * Usage goes at most once a second (or every interval, when
             * longer): counters every interval.  The usage not due goes
             * back to the table.
             */
            if ((ngx_msec_int_t) (ngx_current_msec - s->usage_at)
                < (ngx_msec_int_t) NGX_HTTP_SA_USAGE_EVERY)
            {
                ngx_http_sa_sync_keep_usage(s);

            } else {
                s->usage_at = ngx_current_msec;
            }

            if (s->nbatch) {
                s->seq++;
            }
        }

        if (s->nbatch) {
            ngx_http_sa_sync_send(s);
        }
    }

next:

    if (!ngx_exiting) {
        ngx_add_timer(&s->timer, s->conf->interval);
    }
}


static void
ngx_http_sa_sync_send(ngx_http_sa_sync_t *s)
{
    u_char                    *buf, *p, key[NGX_HTTP_SA_KEY_MAX];
    size_t                    *argvlen, n;
    ngx_uint_t                 i, f, argc, nf;
    const char               **argv;
    ngx_http_sa_item_t        *it;

#define NGX_HTTP_SA_SYNC_ARG(s, len)                                          \
    argv[argc] = (const char *) (s); argvlen[argc++] = (len)

    /* EVAL script 0 + 6, and per item at most 4 + 2 x fields or 9 */
    n = 9 + s->nbatch * (4 + 2 * NGX_HTTP_SA_SYNC_FIELDS);

    argv = ngx_alloc(n * (sizeof(char *) + sizeof(size_t)), s->log);
    buf = ngx_alloc(64 + s->nbatch * (NGX_HTTP_SA_SYNC_FIELDS + 3)
                         * (NGX_INT64_LEN + 1), s->log);
    if (argv == NULL || buf == NULL) {
        ngx_free(argv);
        ngx_free(buf);
        return;                         /* the next tick tries again */
    }

    argvlen = (size_t *) (argv + n);
    argc = 0;
    p = buf;

    NGX_HTTP_SA_SYNC_ARG("EVAL", 4);
    NGX_HTTP_SA_SYNC_ARG(ngx_http_sa_sync_script,
                         sizeof(ngx_http_sa_sync_script) - 1);
    NGX_HTTP_SA_SYNC_ARG("0", 1);
    NGX_HTTP_SA_SYNC_ARG(s->conf->prefix.data, s->conf->prefix.len);
    NGX_HTTP_SA_SYNC_ARG(s->conf->gateway, NGX_HTTP_SA_SYNC_GW_LEN);
    NGX_HTTP_SA_SYNC_ARG(s->nonce, sizeof(s->nonce));
    NGX_HTTP_SA_SYNC_ARG(p, ngx_sprintf(p, "%uL", s->seq) - p);
    p += argvlen[argc - 1];
    NGX_HTTP_SA_SYNC_ARG(p, ngx_sprintf(p, "%T", ngx_time()) - p);
    p += argvlen[argc - 1];
    NGX_HTTP_SA_SYNC_ARG(key, ngx_http_sa_key(key, &s->conf->prefix,
                                              SA_KEY_EVENTS, NULL, 0) - key);

    for (i = 0; i < s->nbatch; i++) {
        it = &s->batch[i];

        if (it->type == NGX_HTTP_SA_ITEM_USAGE) {
            nf = 0;
            for (f = 0; f < NGX_HTTP_SA_SYNC_FIELDS; f++) {
                nf += it->counts[f] != 0;
            }

            NGX_HTTP_SA_SYNC_ARG("u", 1);
            NGX_HTTP_SA_SYNC_ARG(it->id, SA_TOKEN_ID_LEN);
            NGX_HTTP_SA_SYNC_ARG(it->period, it->period_len);
            NGX_HTTP_SA_SYNC_ARG(p, ngx_sprintf(p, "%ui", nf) - p);
            p += argvlen[argc - 1];

            for (f = 0; f < NGX_HTTP_SA_SYNC_FIELDS; f++) {
                if (it->counts[f] == 0) {
                    continue;
                }

                if (f == NGX_HTTP_SA_OK) {
                    NGX_HTTP_SA_SYNC_ARG("admitted", 8);

                } else {
                    NGX_HTTP_SA_SYNC_ARG(ngx_http_sa_statuses[f].name.data,
                                         ngx_http_sa_statuses[f].name.len);
                }

                NGX_HTTP_SA_SYNC_ARG(p, ngx_sprintf(p, "%L", it->counts[f])
                                        - p);
                p += argvlen[argc - 1];
            }

            continue;
        }

        NGX_HTTP_SA_SYNC_ARG("c", 1);
        NGX_HTTP_SA_SYNC_ARG(it->id, SA_TOKEN_ID_LEN);
        NGX_HTTP_SA_SYNC_ARG(ngx_http_sa_sync_kinds[it->kind], 1);
        NGX_HTTP_SA_SYNC_ARG(it->period, it->period_len);
        NGX_HTTP_SA_SYNC_ARG(p, ngx_sprintf(p, "%T", it->expire) - p);
        p += argvlen[argc - 1];
        NGX_HTTP_SA_SYNC_ARG(p, ngx_sprintf(p, "%L", it->counts[0]) - p);
        p += argvlen[argc - 1];
        NGX_HTTP_SA_SYNC_ARG(p, ngx_sprintf(p, "%uL", it->limit) - p);
        p += argvlen[argc - 1];
        NGX_HTTP_SA_SYNC_ARG(it->app, it->app_len);
    }

#undef NGX_HTTP_SA_SYNC_ARG

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "sa: sync: batch %uL, %ui items, %ui arguments", s->seq,
                   s->nbatch, argc);

    if (ngx_http_sa_redis_command(s->redis, (int) argc, argv, argvlen,
                                  ngx_http_sa_sync_reply, s)
        == NGX_OK)
    {
        s->inflight = 1;
        s->sent_at = ngx_current_msec;

    } else {
        ngx_http_sa_sync_failed(s);     /* Redis unavailable: kept */
    }

    ngx_free(argv);
    ngx_free(buf);
}


/* the usage items of a new batch go back to the table, counts and all */
static void
ngx_http_sa_sync_keep_usage(ngx_http_sa_sync_t *s)
{
    ngx_uint_t           i, n;
    ngx_http_sa_item_t  *it, *to;

    n = 0;

    for (i = 0; i < s->nbatch; i++) {
        it = &s->batch[i];

        if (it->type == NGX_HTTP_SA_ITEM_USAGE) {
            /* its hash is kept: the key's slot is found at once */
            to = ngx_http_sa_sync_item(s, it->hash, NGX_HTTP_SA_ITEM_USAGE,
                                       it->id, 0, it->period,
                                       it->period_len);
            if (to != NULL) {
                ngx_memcpy(to->counts, it->counts, sizeof(it->counts));
            }
            continue;
        }

        if (n != i) {
            s->batch[n] = *it;
        }
        n++;
    }

    s->nbatch = n;
}


/* the batch is kept, sent again after 1, 2, 4 ... intervals, 5 s at most */
static void
ngx_http_sa_sync_failed(ngx_http_sa_sync_t *s)
{
    s->failed = 1;
    s->sent_at = ngx_current_msec;
    s->backoff = s->backoff ? ngx_min(2 * s->backoff, 5000)
                            : s->conf->interval;
}


/* "BAD (TOTAL MINE)*": the next integer, >= -1; NGX_ERROR if none */
static ngx_int_t
ngx_http_sa_sync_int(u_char **pos, u_char *last, int64_t *v)
{
    u_char      *p = *pos, *start;
    ngx_uint_t   neg = 0;

    if (p < last && *p == ' ') {
        p++;
    }

    if (p < last && *p == '-') {
        neg = 1;
        p++;
    }

    start = p;
    while (p < last && *p >= '0' && *p <= '9') {
        p++;
    }

    if (p == start || p - start > 18 || (p < last && *p != ' ')) {
        return NGX_ERROR;
    }

    *v = ngx_atoof(start, p - start);
    if (*v == NGX_ERROR || (neg && *v != 1)) {
        return NGX_ERROR;
    }

    if (neg) {
        *v = -1;
    }

    *pos = p;
    return NGX_OK;
}


static void
ngx_http_sa_sync_reply(void *data, ngx_int_t rc, ngx_str_t *value)
{
    u_char              *p, *last = NULL;
    int64_t              bad, total, mine;
    ngx_str_t            period;
    ngx_uint_t           i, ok;
    ngx_http_sa_item_t  *it;
    ngx_http_sa_sync_t  *s = data;

    s->inflight = 0;

    if (s->nbatch == 0) {
        return;                         /* the worker's exit sent it */
    }

    if (rc == NGX_ERROR) {
        /* no answer (or an error reply, logged): sent again, applied once */
        ngx_http_sa_sync_failed(s);
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                       "sa: sync: batch %uL to be sent again", s->seq);
        return;
    }

    s->failed = 0;
    s->backoff = 0;

    ok = 0;

    if (rc == NGX_OK) {
        p = value->data;
        last = p + value->len;
        ok = ngx_http_sa_sync_int(&p, last, &bad) == NGX_OK && bad >= 0;

        /* first check it all: a reply that is not the script's is ignored */
        for (i = 0; ok && i < s->nbatch; i++) {
            if (s->batch[i].type == NGX_HTTP_SA_ITEM_COUNTER) {
                ok = ngx_http_sa_sync_int(&p, last, &total) == NGX_OK
                     && ngx_http_sa_sync_int(&p, last, &mine) == NGX_OK;
            }
        }

        ok = ok && p == last;
    }

    if (!ok) {
        ngx_log_error(NGX_LOG_ERR, s->log, 0,
                      "sa: sync: Redis answered batch %uL with something "
                      "the script does not return: totals not read", s->seq);
        s->nbatch = 0;
        return;
    }

    if (bad && s->bad_logged != ngx_time()) {
        s->bad_logged = ngx_time();
        ngx_log_error(NGX_LOG_ERR, s->log, 0,
                      "sa: sync: %L usage or counter values in Redis are "
                      "not integers (written by someone else?): not counted",
                      bad);
    }

    p = value->data;
    (void) ngx_http_sa_sync_int(&p, last, &bad);

    for (i = 0; i < s->nbatch; i++) {
        it = &s->batch[i];

        if (it->type != NGX_HTTP_SA_ITEM_COUNTER) {
            continue;
        }

        (void) ngx_http_sa_sync_int(&p, last, &total);
        (void) ngx_http_sa_sync_int(&p, last, &mine);

        if (s->handlers[it->kind] == NULL) {
            continue;
        }

        if (total < 0 || mine < 0) {
            /*
             * unreadable (a Redis writer's): no news, as a count of 0
             * (totals only grow), but heard: not read again at once
             */
            total = 0;
            mine = 0;
        }

        period.data = it->period;
        period.len = it->period_len;

        s->handlers[it->kind](s->handler_data[it->kind], it->id, &period,
                              total, mine);
    }

    s->nbatch = 0;

    if (s->soon) {
        /* a total unknown was asked for meanwhile: read it now */
        ngx_http_sa_sync_soon(s);
    }
}
