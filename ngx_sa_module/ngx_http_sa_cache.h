/*
 * The shared-memory cache of verified token records: a slab zone with a
 * hash table of token ids (one bucket per 2 KiB of zone) and an LRU queue,
 * the queue as ngx_http_limit_req_module keeps its states.  Beside the
 * entries, and on top of the zone's size, a bounded version memory (token
 * id -> highest record version known, "versions=N" slots) that only signed
 * records and versioned invalidations write, so that an older record
 * replayed into Redis is refused however many other tokens come by.
 * Negative entries are a bounded pool of their own (a quarter of the
 * zone), so a flood of unknown tokens cannot keep records out; and the
 * entries live in a slab pool of their own, made afresh when a worker died
 * holding the lock half-way through a change (ngx_http_sa_cache.c).
 */

#ifndef NGX_HTTP_SA_CACHE_H
#define NGX_HTTP_SA_CACHE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "sa_record.h"


/* a token's last use is written to Redis at most this often (seconds) */
#define NGX_HTTP_SA_USED_EVERY  60


/* a node of a tree of token ids; whatever follows it is its user's */
typedef struct {
    ngx_rbtree_node_t    node;          /* key: ngx_http_sa_id_hash() */
    u_char               id[SA_TOKEN_ID_LEN];
} ngx_http_sa_id_node_t;

/*
 * A token id's hash, for trees and tables of ids: ids are random base62,
 * so mixing two 8-byte words is enough (a crc32 cost more than the tree
 * walk).  Chosen ids may collide on purpose; trees then compare the ids,
 * and shared tables only err on the safe side (see the cache's stamps).
 */
uint32_t ngx_http_sa_id_hash(u_char *id);

/* two ids equal: two word compares, no call (ids are compared a lot) */
static ngx_inline ngx_uint_t
ngx_http_sa_id_equal(const void *a, const void *b)
{
    uint64_t  a0, a1, b0, b1;

    ngx_memcpy(&a0, a, 8);
    ngx_memcpy(&a1, (const u_char *) a + 8, 8);
    ngx_memcpy(&b0, b, 8);
    ngx_memcpy(&b1, (const u_char *) b + 8, 8);

    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}

void ngx_http_sa_id_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel);
ngx_http_sa_id_node_t *ngx_http_sa_id_find(ngx_rbtree_t *tree, u_char *id);
void ngx_http_sa_id_set(ngx_http_sa_id_node_t *n, u_char *id);


typedef struct {
    ngx_shm_zone_t      *shm_zone;
    ngx_slab_pool_t     *shpool;
    struct ngx_http_sa_cache_sh_s  *sh;
    ngx_msec_t           ttl;
    ngx_msec_t           negative_ttl;
    ngx_msec_t           stale;
    ngx_msec_t           heartbeat;
    ngx_uint_t           versions;      /* slots of the version memory */
    size_t               size;          /* zone=NAME:SIZE */
} ngx_http_sa_cache_t;


/* what a cache entry remembers of the token that matched it, copied out */
typedef struct {
    u_char               mac[16];       /* SipHash-128 of the token */
    ngx_uint_t           set;
} ngx_http_sa_cache_proof_t;


typedef enum {
    NGX_HTTP_SA_CACHE_MISS = 0,
    NGX_HTTP_SA_CACHE_HIT,          /* fresh record, copied out */
    NGX_HTTP_SA_CACHE_NEGATIVE,     /* fresh "no such token" */
    NGX_HTTP_SA_CACHE_STALE         /* past ttl, within stale; copied out */
} ngx_http_sa_cache_rc_e;


char *ngx_http_sa_cache_conf(ngx_conf_t *cf, ngx_http_sa_cache_t *cache,
    ngx_str_t *args, ngx_uint_t nargs, void *tag);

/*
 * Looks a token up.  With stale set, an entry past its ttl but within the
 * stale time also counts (for when Redis is unavailable).  Records are
 * copied into pool: an entry may be evicted as soon as the lock is released.
 * On a hit, *use_due tells, under the same lock, whether the token's use
 * should be recorded now (see ngx_http_sa_cache_used()).
 */
ngx_http_sa_cache_rc_e ngx_http_sa_cache_lookup(ngx_http_sa_cache_t *cache,
    u_char *id, ngx_uint_t stale, ngx_pool_t *pool, sa_token_record_t **rec,
    ngx_uint_t *use_due, ngx_http_sa_cache_proof_t *proof);

/*
 * Whether the token (SA_TOKEN_LEN bytes) is the one whose BLAKE2b-256 is
 * the hash of rec, the record a lookup gave with proof.  BLAKE2b of a token
 * costs about 0.2 µs, a third of a cache hit; so an entry remembers a
 * SipHash-128 of the token bytes that matched it, under a key drawn when
 * the zone was made, and the same bytes again need only that.  Only the
 * MAC is kept, never the token; a new record starts without one.
 */
ngx_uint_t ngx_http_sa_cache_token(ngx_http_sa_cache_t *cache,
    const u_char *token, u_char *id, sa_token_record_t *rec,
    ngx_http_sa_cache_proof_t *proof);

/*
 * Invalidations are counted in the zone (its epoch), and each token id
 * remembers, in a small table shared by all workers, the epoch of the last
 * invalidation any worker processed for it.  A GET remembers the epoch read
 * before it was sent; if the token changed since, its reply may predate
 * the change: it is used for its own requests, but not cached as valid,
 * and a request that comes later does not wait for it.
 */
ngx_atomic_uint_t ngx_http_sa_cache_epoch(ngx_http_sa_cache_t *cache);
ngx_uint_t ngx_http_sa_cache_changed(ngx_http_sa_cache_t *cache, u_char *id,
    ngx_atomic_uint_t epoch);

/*
 * Stores a verified record (or, rec NULL, "no such token") that a GET sent
 * at epoch brought.  Returns NGX_DECLINED when the cache has seen a newer
 * version of this token: the record is a replay and must be refused.  A
 * full zone never fails a request: the least recently used entries make
 * room, or nothing is stored.
 */
ngx_int_t ngx_http_sa_cache_store(ngx_http_sa_cache_t *cache, u_char *id,
    sa_token_record_t *rec, ngx_atomic_uint_t epoch, ngx_log_t *log);

/*
 * The token changed: never serve the entry again.  version, when the
 * message named one (0 if not), is remembered: an older record of the
 * token is refused from now on, though no worker ever read the new one.
 */
void ngx_http_sa_cache_invalidate(ngx_http_sa_cache_t *cache, u_char *id,
    uint64_t version);

/* the zone's entry count is what the sa_cache_entries gauge shows */
ngx_atomic_uint_t ngx_http_sa_cache_entries(ngx_http_sa_cache_t *cache);

/* invalidations may have been lost: the same for every token */
void ngx_http_sa_cache_invalidate_all(ngx_http_sa_cache_t *cache);

/* 1 when this token's use should be recorded now (at most once a minute) */
ngx_uint_t ngx_http_sa_cache_used(ngx_http_sa_cache_t *cache, u_char *id,
    time_t now);

#endif /* NGX_HTTP_SA_CACHE_H */
