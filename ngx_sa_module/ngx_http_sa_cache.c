#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sodium.h>

#include "ngx_http_sa_cache.h"
#include "ngx_http_sa_metrics.h"
#include "sa_crypto.h"
#include "sa_token.h"


#define NGX_HTTP_SA_EVICT_BATCH  8        /* entries freed per failed alloc */
#define NGX_HTTP_SA_STAMPS       1024     /* invalidation stamps, by id hash */
#define NGX_HTTP_SA_HEARD        32       /* last invalidations, by epoch */

/* one bucket per this many bytes of zone: about 8 entries a bucket, full */
#define NGX_HTTP_SA_BUCKET_BYTES 2048

#define NGX_HTTP_SA_VERSION_WAYS 8        /* slots of a set of versions */
#define NGX_HTTP_SA_VERSIONS     16384    /* versions= by default */


typedef struct ngx_http_sa_cache_node_s  ngx_http_sa_cache_node_t;


/*
 * The last invalidations, each at the slot of its epoch: what they named.
 * Every worker hears every message and applies it to the zone, each when
 * its event loop reads it, so the same change comes once per worker, some
 * of them late: after another worker heard it and sent a GET, whose reply,
 * a record that already holds the change, is then no less good.  A reply
 * is stored as valid when every invalidation of its token since its GET
 * named a version it has (ngx_http_sa_cache_overtaken()).  Written with
 * the epoch last: a slot whose epoch matches holds that invalidation.
 */
typedef struct {
    ngx_atomic_t                 epoch;       /* 0: none */
    uint64_t                     version;     /* 0: not named */
    u_char                       id[SA_TOKEN_ID_LEN];
} ngx_http_sa_heard_t;


/*
 * The version memory: token id -> the highest record version known, apart
 * from the entries, which any well-formed token can push out.  Only two
 * things write it: a record that verified with a key of sa_verify_key (so
 * a record sa-admin signed), and an invalidation message that names a
 * version (a Redis client allowed to PUBLISH).  A lookup of an unknown
 * token, a negative entry or an eviction never does.  A set is chosen by
 * SipHash under the zone's key; when its slots are all taken, the slot
 * raised longest ago makes room (logged, at most once a second).
 *
 * A message is not authenticated: anyone who can PUBLISH could name
 * thousands of made-up ids, and a version only heard must never push out
 * one of a record this gateway verified (then the older record put back
 * would be taken).  So a slot remembers whether a signed record wrote it:
 * a heard version takes a free slot or a heard one, never a signed one;
 * a signed record takes a free slot, a heard one, then the oldest signed.
 * Signed records keep version 1 too (so every token this gateway verified
 * is held against a flood of messages); a heard version 1 names nothing
 * older and is not kept.
 */
typedef struct {
    u_char                       id[SA_TOKEN_ID_LEN];
    uint64_t                     version;     /* 0: a free slot */
    uint64_t                     seq;         /* when last raised, | SIGNED */
} ngx_http_sa_version_t;

#define NGX_HTTP_SA_VERSION_SIGNED  ((uint64_t) 1 << 63)


/*
 * The entries are found through a hash table of chains, not an rbtree: with
 * 100,000 entries a tree walk took 17 cache misses, a tenth of a worker's
 * time; a chain is a bucket and one or two entries.
 */
/*
 * A worker may die holding the zone's lock (an OOM kill, SIGKILL): nginx's
 * master then force-unlocks it (ngx_shmtx_force_unlock(), "[alert] shared
 * memory zone ... was locked by"), and whatever the dead worker was doing
 * is half-done: a node out of its chain but still queued, a queue link
 * half-rewritten, a slab page half-given.  So the entries (their table,
 * queues and nodes) live in a slab pool of their own, one block inside the
 * zone, and every holder of the lock marks the zone dirty until it lets
 * go: a holder that finds it dirty knows its predecessor died mid-change,
 * and makes that pool afresh (ngx_slab_init()), empty.  What lives beside
 * it, in the zone's own pool, is written so that any prefix of a change is
 * harmless: the epoch and stamps (single words), the version memory (see
 * ngx_http_sa_cache_remember()), the keys (written once).
 */
typedef struct ngx_http_sa_cache_sh_s {
    ngx_slab_pool_t             *pool;        /* the entries' own */
    ngx_uint_t                   dirty;       /* the lock's holder changes */
    ngx_uint_t                   rebuilt;     /* times made afresh */

    ngx_http_sa_cache_node_t   **buckets;
    ngx_uint_t                   mask;        /* buckets - 1, a power of 2 */
    ngx_queue_t                  queue;       /* LRU: most recent first */
    ngx_queue_t                  nqueue;      /* the negative entries' */
    ngx_uint_t                   negatives;   /* in nqueue */
    ngx_uint_t                   nmax;        /* at most; then reused */

    ngx_http_sa_version_t       *versions;    /* nsets * WAYS slots */
    ngx_uint_t                   nsets;
    uint64_t                     vseq;        /* versions raised so far */
    time_t                       vlogged;     /* "version memory full" */
    ngx_uint_t                   vforgotten;  /* since that line */

    /* written under the mutex, read without it */
    ngx_atomic_t                 entries;     /* for sa_cache_entries */
    ngx_atomic_t                 epoch;       /* invalidations processed */
    ngx_atomic_t                 all;         /* epoch of the last "all" */
    ngx_atomic_t                 stamps[NGX_HTTP_SA_STAMPS];
    ngx_http_sa_heard_t          heard[NGX_HTTP_SA_HEARD];

    /* drawn once, like the zone: for buckets, and for proven tokens' MACs */
    u_char                       bucket_key[crypto_shorthash_KEYBYTES];
    u_char                       mac_key[crypto_shorthash_siphashx24_KEYBYTES];
} ngx_http_sa_cache_sh_t;


/*
 * An entry: about 100 bytes, and the record packed (sa_token_record_pack():
 * no pointers, one length byte per string, usually under 150 bytes), so
 * that most entries take a 256-byte slab chunk.
 */
struct ngx_http_sa_cache_node_s {
    ngx_http_sa_cache_node_t    *next;        /* in its bucket's chain */
    u_char                       id[SA_TOKEN_ID_LEN];
    ngx_queue_t                  queue;
    ngx_msec_t                   fetched;     /* when verified from Redis */
    uint64_t                     version;
    uint32_t                     used;        /* last use written, unix s */
    u_char                       mac[16];     /* of the token that matched */
    unsigned                     proven:1;    /* mac is set */
    unsigned                     valid:1;     /* may be served */
    unsigned                     doubt:1;     /* only stale: messages lost */
    unsigned                     negative:1;  /* no record: "no such token" */
    u_char                       packed[];
};


static ngx_int_t ngx_http_sa_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


/*
 * Token ids: their hash, and trees of them (the workers' locks): by the
 * hash, then by the id itself, inserted as they are looked up.
 */
uint32_t
ngx_http_sa_id_hash(u_char *id)
{
    uint64_t  a, b;

    ngx_memcpy(&a, id, sizeof(uint64_t));
    ngx_memcpy(&b, id + sizeof(uint64_t), sizeof(uint64_t));

    /* Fibonacci hashing: the high bits of the product mix every bit in */
    return (uint32_t) (((a ^ (b * 0x9E3779B97F4A7C15ULL))
                        * 0x9E3779B97F4A7C15ULL) >> 32);
}


void
ngx_http_sa_id_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t      **p;
    ngx_http_sa_id_node_t   *n, *t;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            n = (ngx_http_sa_id_node_t *) node;
            t = (ngx_http_sa_id_node_t *) temp;

            p = (ngx_memcmp(n->id, t->id, SA_TOKEN_ID_LEN) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


ngx_http_sa_id_node_t *
ngx_http_sa_id_find(ngx_rbtree_t *tree, u_char *id)
{
    uint32_t                hash;
    ngx_int_t               rc;
    ngx_rbtree_node_t      *node, *sentinel;
    ngx_http_sa_id_node_t  *n;

    hash = ngx_http_sa_id_hash(id);
    node = tree->root;
    sentinel = tree->sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        n = (ngx_http_sa_id_node_t *) node;
        rc = ngx_memcmp(id, n->id, SA_TOKEN_ID_LEN);

        if (rc == 0) {
            return n;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


void
ngx_http_sa_id_set(ngx_http_sa_id_node_t *n, u_char *id)
{
    ngx_memcpy(n->id, id, SA_TOKEN_ID_LEN);
    n->node.key = ngx_http_sa_id_hash(id);
}


/*
 * SipHash under the zone's own key: ids are chosen by whoever mints a
 * well-formed token, and an unkeyed hash would let them build one long
 * chain that every worker walks under the zone's lock.
 */
static uint64_t
ngx_http_sa_cache_hash(ngx_http_sa_cache_t *cache, u_char *id)
{
    uint64_t  h;

    (void) crypto_shorthash((u_char *) &h, id, SA_TOKEN_ID_LEN,
                            cache->sh->bucket_key);

    return h;
}


static ngx_http_sa_cache_node_t **
ngx_http_sa_cache_bucket(ngx_http_sa_cache_t *cache, u_char *id)
{
    return &cache->sh->buckets[ngx_http_sa_cache_hash(cache, id)
                               & cache->sh->mask];
}


static ngx_http_sa_version_t *
ngx_http_sa_cache_version_set(ngx_http_sa_cache_t *cache, u_char *id)
{
    return &cache->sh->versions[((ngx_http_sa_cache_hash(cache, id) >> 32)
                                 % cache->sh->nsets)
                                * NGX_HTTP_SA_VERSION_WAYS];
}


/* the highest version known of this token, 0 for none; under the mutex */
static uint64_t
ngx_http_sa_cache_known(ngx_http_sa_cache_t *cache, u_char *id)
{
    ngx_uint_t              i;
    ngx_http_sa_version_t  *set;

    set = ngx_http_sa_cache_version_set(cache, id);

    for (i = 0; i < NGX_HTTP_SA_VERSION_WAYS; i++) {
        if (set[i].version && ngx_http_sa_id_equal(set[i].id, id)) {
            return set[i].version;
        }
    }

    return 0;
}


/*
 * Raises what is known of a token to version, never lowers it; under the
 * mutex.  signed: the version of a record that verified, else one heard.
 * A slot is reused in an order that leaves it harmless if the worker dies
 * half-way: version 0 (free) first, the id, then the version.
 */
static void
ngx_http_sa_cache_remember(ngx_http_sa_cache_t *cache, u_char *id,
    uint64_t version, ngx_uint_t signed_)
{
    uint64_t                flag;
    ngx_uint_t              i;
    ngx_http_sa_version_t  *set, *slot, *heard, *oldest;

    if (version == 0 || (version == 1 && !signed_)) {
        return;
    }

    flag = signed_ ? NGX_HTTP_SA_VERSION_SIGNED : 0;
    set = ngx_http_sa_cache_version_set(cache, id);
    slot = NULL;
    heard = NULL;
    oldest = NULL;

    for (i = 0; i < NGX_HTTP_SA_VERSION_WAYS; i++) {

        if (set[i].version == 0) {
            if (slot == NULL) {
                slot = &set[i];
            }
            continue;
        }

        if (ngx_http_sa_id_equal(set[i].id, id)) {
            if (set[i].version < version) {
                set[i].version = version;
                set[i].seq = ++cache->sh->vseq
                             | (set[i].seq & NGX_HTTP_SA_VERSION_SIGNED);
            }
            set[i].seq |= flag;
            return;
        }

        if (!(set[i].seq & NGX_HTTP_SA_VERSION_SIGNED)) {
            if (heard == NULL || set[i].seq < heard->seq) {
                heard = &set[i];
            }

        } else if (oldest == NULL || set[i].seq < oldest->seq) {
            oldest = &set[i];
        }
    }

    if (slot == NULL) {
        slot = heard ? heard : (signed_ ? oldest : NULL);

        if (cache->sh->vlogged != ngx_time()) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "sa: cache zone \"%V\": version memory full, "
                          "version %uL of token \"%*s\" forgotten "
                          "(%ui more since the last such line)",
                          &cache->shm_zone->shm.name,
                          slot ? slot->version : version,
                          (size_t) SA_TOKEN_ID_LEN, slot ? slot->id : id,
                          cache->sh->vforgotten);
            cache->sh->vlogged = ngx_time();
            cache->sh->vforgotten = 0;

        } else {
            cache->sh->vforgotten++;
        }

        /* a heard version never pushes out a signed one */
        if (slot == NULL) {
            return;
        }

        slot->version = 0;
        ngx_memory_barrier();
    }

    ngx_memcpy(slot->id, id, SA_TOKEN_ID_LEN);
    slot->seq = ++cache->sh->vseq | flag;
    ngx_memory_barrier();
    slot->version = version;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "sa: version %uL of token \"%*s\" remembered, signed: %ui",
                   version, (size_t) SA_TOKEN_ID_LEN, id, signed_);
}


static ngx_http_sa_cache_node_t *
ngx_http_sa_cache_find(ngx_http_sa_cache_t *cache, u_char *id)
{
    ngx_http_sa_cache_node_t  *cn;

    for (cn = *ngx_http_sa_cache_bucket(cache, id); cn; cn = cn->next) {
        if (ngx_http_sa_id_equal(cn->id, id)) {
            return cn;
        }
    }

    return NULL;
}


/* colliding ids share a stamp: a GET may be cached less often, never more */
static ngx_atomic_t *
ngx_http_sa_cache_stamp(ngx_http_sa_cache_t *cache, u_char *id)
{
    return &cache->sh->stamps[ngx_http_sa_id_hash(id) % NGX_HTTP_SA_STAMPS];
}


ngx_atomic_uint_t
ngx_http_sa_cache_entries(ngx_http_sa_cache_t *cache)
{
    return cache->sh->entries;
}


ngx_atomic_uint_t
ngx_http_sa_cache_epoch(ngx_http_sa_cache_t *cache)
{
    return cache->sh->epoch;
}


ngx_uint_t
ngx_http_sa_cache_changed(ngx_http_sa_cache_t *cache, u_char *id,
    ngx_atomic_uint_t epoch)
{
    return *ngx_http_sa_cache_stamp(cache, id) > epoch
           || cache->sh->all > epoch;
}


/*
 * Under the mutex: has a change of this token been heard since the GET
 * (sent at epoch) that a record of this version answered, which the record
 * may not hold?  Only an invalidation that named a version no higher than
 * the record's is known to be held by it: one without a version, one of a
 * higher version, or one no longer in the slots (or torn) counts as a
 * change, as does any stamp when there is no record.
 */
static ngx_uint_t
ngx_http_sa_cache_overtaken(ngx_http_sa_cache_t *cache, u_char *id,
    ngx_atomic_uint_t epoch, sa_token_record_t *rec)
{
    ngx_atomic_uint_t     e, now;
    ngx_http_sa_heard_t  *h;

    if (!ngx_http_sa_cache_changed(cache, id, epoch)) {
        return 0;
    }

    now = cache->sh->epoch;

    if (rec == NULL || cache->sh->all > epoch
        || now - epoch > NGX_HTTP_SA_HEARD)
    {
        return 1;
    }

    for (e = epoch + 1; e <= now; e++) {
        h = &cache->sh->heard[e % NGX_HTTP_SA_HEARD];

        if (h->epoch != e) {
            return 1;
        }

        if (ngx_http_sa_id_equal(h->id, id)
            && (h->version == 0 || h->version > rec->version))
        {
            return 1;
        }
    }

    return 0;
}


/* out of its chain and its queue, its memory still the caller's */
static void
ngx_http_sa_cache_unlink(ngx_http_sa_cache_t *cache,
    ngx_http_sa_cache_node_t *cn)
{
    ngx_http_sa_cache_node_t  **p;

    for (p = ngx_http_sa_cache_bucket(cache, cn->id); *p != cn; p = &(*p)->next)
    {
        /* void */
    }

    *p = cn->next;

    ngx_queue_remove(&cn->queue);
    cache->sh->entries--;

    if (cn->negative) {
        cache->sh->negatives--;
    }
}


static void
ngx_http_sa_cache_free_node(ngx_http_sa_cache_t *cache,
    ngx_http_sa_cache_node_t *cn)
{
    ngx_http_sa_cache_unlink(cache, cn);
    ngx_slab_free_locked(cache->sh->pool, cn);
}


/* the least recently used entries go; the zone must serve, not fail */
static void
ngx_http_sa_cache_evict_lru(ngx_http_sa_cache_t *cache, ngx_uint_t n)
{
    ngx_queue_t  *q;

    while (n-- && !ngx_queue_empty(&cache->sh->queue)) {
        q = ngx_queue_last(&cache->sh->queue);
        ngx_http_sa_cache_free_node(cache,
            ngx_queue_data(q, ngx_http_sa_cache_node_t, queue));
        ngx_http_sa_metrics_count(NGX_HTTP_SA_M_CACHE_EVICTION);
    }
}


static ngx_http_sa_cache_node_t *
ngx_http_sa_cache_alloc(ngx_http_sa_cache_t *cache, size_t size)
{
    ngx_uint_t   tries;
    void        *p;

    for (tries = 0; tries < 4; tries++) {
        p = ngx_slab_alloc_locked(cache->sh->pool, size);
        if (p != NULL) {
            return p;
        }

        if (ngx_queue_empty(&cache->sh->queue)) {
            break;
        }

        ngx_http_sa_cache_evict_lru(cache, NGX_HTTP_SA_EVICT_BATCH);
    }

    return NULL;
}


/*
 * Negative entries are a pool of their own, at most nmax (a quarter of
 * the zone): past it, or when the zone is full, the oldest one is reused
 * in place.  A flood of unknown tokens thus churns its own entries, never
 * takes the room of records, nor leaves the slab's pages cut into chunks
 * too small for one (a negative entry is half a record's chunk).
 */
static ngx_http_sa_cache_node_t *
ngx_http_sa_cache_alloc_negative(ngx_http_sa_cache_t *cache)
{
    ngx_http_sa_cache_node_t  *cn;

    cn = NULL;

    if (cache->sh->negatives < cache->sh->nmax) {
        cn = ngx_slab_alloc_locked(cache->sh->pool,
                                   sizeof(ngx_http_sa_cache_node_t));
    }

    if (cn == NULL && !ngx_queue_empty(&cache->sh->nqueue)) {
        cn = ngx_queue_data(ngx_queue_last(&cache->sh->nqueue),
                            ngx_http_sa_cache_node_t, queue);
        ngx_http_sa_cache_unlink(cache, cn);
        ngx_http_sa_metrics_count(NGX_HTTP_SA_M_CACHE_EVICTION);
    }

    return cn;
}


/*
 * The entries made afresh, empty: their pool, table and queues.  Every
 * GET in flight counts as overtaken by a change (as when messages may have
 * been lost), so none of them is cached as valid.
 */
static ngx_int_t
ngx_http_sa_cache_reset(ngx_http_sa_cache_t *cache)
{
    ngx_slab_pool_t         *pool;
    ngx_http_sa_cache_sh_t  *sh;

    sh = cache->sh;
    pool = sh->pool;

    pool->min_shift = 3;
    ngx_slab_init(pool);
    pool->log_ctx = cache->shpool->log_ctx;
    pool->log_nomem = 0;

    sh->buckets = ngx_slab_calloc_locked(pool, (sh->mask + 1)
                                         * sizeof(ngx_http_sa_cache_node_t *));
    if (sh->buckets == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&sh->queue);
    ngx_queue_init(&sh->nqueue);
    sh->entries = 0;
    sh->negatives = 0;
    sh->all = ++sh->epoch;

    return NGX_OK;
}


static void
ngx_http_sa_cache_lock(ngx_http_sa_cache_t *cache)
{
    ngx_shmtx_lock(&cache->shpool->mutex);

    if (cache->sh->dirty) {
        cache->sh->rebuilt++;

        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "sa: cache zone \"%V\" was left half-changed by a "
                      "worker that died holding its lock: entries dropped, "
                      "version memory kept",
                      &cache->shm_zone->shm.name);

        /* it cannot fail: the pool is empty and was big enough before */
        (void) ngx_http_sa_cache_reset(cache);
    }

    cache->sh->dirty = 1;
    ngx_memory_barrier();
}


static void
ngx_http_sa_cache_unlock(ngx_http_sa_cache_t *cache)
{
    ngx_memory_barrier();
    cache->sh->dirty = 0;

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


ngx_http_sa_cache_rc_e
ngx_http_sa_cache_lookup(ngx_http_sa_cache_t *cache, u_char *id,
    ngx_uint_t stale, ngx_pool_t *pool, sa_token_record_t **rec,
    ngx_uint_t *use_due, ngx_http_sa_cache_proof_t *proof)
{
    void                      *copy;
    ngx_msec_int_t             age;
    ngx_http_sa_cache_rc_e     rc;
    ngx_http_sa_cache_node_t  *cn;

    rc = NGX_HTTP_SA_CACHE_MISS;
    *rec = NULL;

    ngx_http_sa_cache_lock(cache);

    cn = ngx_http_sa_cache_find(cache, id);

    /*
     * An entry dropped because messages may have been lost (a
     * resubscription) is asked again, but while Redis cannot answer it is
     * no worse than it was during the outage: stale= may still serve it.
     * One that an invalidation named is never served.
     */
    if (cn == NULL || !(cn->valid || (stale && cn->doubt))) {
        goto done;
    }

    age = (ngx_msec_int_t) (ngx_current_msec - cn->fetched);

    if (cn->negative) {
        if (!stale && age < (ngx_msec_int_t) cache->negative_ttl) {
            rc = NGX_HTTP_SA_CACHE_NEGATIVE;
        }
        goto done;
    }

    if (cn->valid && age < (ngx_msec_int_t) cache->ttl) {
        rc = NGX_HTTP_SA_CACHE_HIT;

    } else if (stale && age < (ngx_msec_int_t) (cache->ttl + cache->stale)) {
        rc = NGX_HTTP_SA_CACHE_STALE;

    } else {
        goto done;
    }

    copy = ngx_palloc(pool, sa_token_record_unpacked_size(cn->packed));
    if (copy == NULL) {
        rc = NGX_HTTP_SA_CACHE_MISS;
        goto done;
    }

    *rec = sa_token_record_unpack(cn->packed, (char *) id, copy);

    if (proof) {
        proof->set = cn->proven;
        ngx_memcpy(proof->mac, cn->mac, sizeof(proof->mac));
    }

    if (ngx_time() - (time_t) cn->used >= NGX_HTTP_SA_USED_EVERY) {
        cn->used = (uint32_t) ngx_time();
        *use_due = 1;
    }

    ngx_queue_remove(&cn->queue);
    ngx_queue_insert_head(&cache->sh->queue, &cn->queue);

done:

    ngx_http_sa_cache_unlock(cache);

    return rc;
}


ngx_uint_t
ngx_http_sa_cache_token(ngx_http_sa_cache_t *cache, const u_char *token,
    u_char *id, sa_token_record_t *rec, ngx_http_sa_cache_proof_t *proof)
{
    u_char                     mac[sizeof(proof->mac)], hash[SA_HASH_LEN];
    ngx_http_sa_cache_node_t  *cn;

    (void) crypto_shorthash_siphashx24(mac, token, SA_TOKEN_LEN,
                                      cache->sh->mac_key);

    if (proof->set && crypto_verify_16(mac, proof->mac) == 0) {
        return 1;
    }

    sa_token_hash(token, SA_TOKEN_LEN, hash);

    if (!sa_hash_equal(hash, rec->hash)) {
        return 0;
    }

    /* the entry of this very record remembers it (not one stored since) */
    ngx_http_sa_cache_lock(cache);

    cn = ngx_http_sa_cache_find(cache, id);

    if (cn != NULL && cn->valid && !cn->negative
        && cn->version == rec->version)
    {
        ngx_memcpy(cn->mac, mac, sizeof(mac));
        cn->proven = 1;
    }

    ngx_http_sa_cache_unlock(cache);

    return 1;
}


ngx_int_t
ngx_http_sa_cache_store(ngx_http_sa_cache_t *cache, u_char *id,
    sa_token_record_t *rec, ngx_atomic_uint_t epoch, ngx_log_t *log)
{
    size_t                     size, packed;
    uint32_t                   used;
    uint64_t                   known;
    ngx_int_t                  rc;
    ngx_uint_t                 keep;
    ngx_http_sa_cache_node_t  *cn, *old, **bucket;

    rc = NGX_OK;
    used = 0;

    /* outside the mutex: how much room the packed record takes */
    packed = rec ? sa_token_record_pack(rec, NULL, 0) : 0;

    ngx_http_sa_cache_lock(cache);

    /* under the mutex: no invalidation can slip between check and store */
    keep = !ngx_http_sa_cache_overtaken(cache, id, epoch, rec);

    old = ngx_http_sa_cache_find(cache, id);

    if (rec != NULL) {
        known = ngx_http_sa_cache_known(cache, id);

        if (old != NULL && old->version > known) {
            known = old->version;
        }

        if (rec->version < known) {
            rc = NGX_DECLINED;
            goto done;
        }

        /* a record signed with our keys: a version that really exists */
        ngx_http_sa_cache_remember(cache, id, rec->version, 1);
    }

    /* a token that vanished after we saw it: its version is remembered */
    if (old != NULL) {
        used = old->used;
        ngx_http_sa_cache_free_node(cache, old);
    }

    if (rec == NULL) {
        if (cache->negative_ttl == 0) {
            goto done;
        }

        cn = ngx_http_sa_cache_alloc_negative(cache);
        if (cn == NULL) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0,
                           "sa: no room for a negative entry");
            goto done;
        }

    } else {
        /* a record too large to pack is stored as invalid, for its "used" */
        size = sizeof(ngx_http_sa_cache_node_t) + packed;

        cn = ngx_http_sa_cache_alloc(cache, size);
        if (cn == NULL) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "sa: cache zone \"%V\" is full, record not cached",
                          &cache->shm_zone->shm.name);
            goto done;
        }
    }

    ngx_memcpy(cn->id, id, SA_TOKEN_ID_LEN);
    cn->fetched = ngx_current_msec;
    cn->used = used;
    cn->proven = 0;
    cn->valid = keep && (rec == NULL || packed > 0);
    /* overtaken by a resubscription alone, not by a change of this token */
    cn->doubt = !keep && rec != NULL && packed > 0
                && *ngx_http_sa_cache_stamp(cache, id) <= epoch;
    cn->negative = (rec == NULL);
    cn->version = rec ? rec->version : 0;

    if (packed) {
        (void) sa_token_record_pack(rec, cn->packed, packed);
    }

    bucket = ngx_http_sa_cache_bucket(cache, id);
    cn->next = *bucket;
    *bucket = cn;
    cache->sh->entries++;

    if (cn->negative) {
        ngx_queue_insert_head(&cache->sh->nqueue, &cn->queue);
        cache->sh->negatives++;

    } else {
        ngx_queue_insert_head(&cache->sh->queue, &cn->queue);
    }

done:

    ngx_http_sa_cache_unlock(cache);

    return rc;
}


void
ngx_http_sa_cache_invalidate(ngx_http_sa_cache_t *cache, u_char *id,
    uint64_t version)
{
    ngx_atomic_uint_t          epoch;
    ngx_http_sa_heard_t       *h;
    ngx_http_sa_cache_node_t  *cn;

    ngx_http_sa_cache_lock(cache);

    epoch = cache->sh->epoch + 1;

    h = &cache->sh->heard[epoch % NGX_HTTP_SA_HEARD];
    h->epoch = 0;
    ngx_memory_barrier();
    ngx_memcpy(h->id, id, SA_TOKEN_ID_LEN);
    h->version = version;
    ngx_memory_barrier();
    h->epoch = epoch;

    *ngx_http_sa_cache_stamp(cache, id) = epoch;
    cache->sh->epoch = epoch;

    ngx_http_sa_cache_remember(cache, id, version, 0);

    /* an entry of the version named, or newer, holds the change already */
    cn = ngx_http_sa_cache_find(cache, id);
    if (cn != NULL
        && (version == 0 || cn->negative || cn->version < version))
    {
        cn->valid = 0;
        cn->doubt = 0;
    }

    ngx_http_sa_cache_unlock(cache);
}


void
ngx_http_sa_cache_invalidate_all(ngx_http_sa_cache_t *cache)
{
    ngx_queue_t               *q;
    ngx_http_sa_cache_node_t  *cn;

    ngx_http_sa_cache_lock(cache);

    cache->sh->all = ++cache->sh->epoch;

    for (q = ngx_queue_head(&cache->sh->queue);
         q != ngx_queue_sentinel(&cache->sh->queue);
         q = ngx_queue_next(q))
    {
        cn = ngx_queue_data(q, ngx_http_sa_cache_node_t, queue);
        cn->doubt |= cn->valid;
        cn->valid = 0;
    }

    for (q = ngx_queue_head(&cache->sh->nqueue);
         q != ngx_queue_sentinel(&cache->sh->nqueue);
         q = ngx_queue_next(q))
    {
        cn = ngx_queue_data(q, ngx_http_sa_cache_node_t, queue);
        cn->valid = 0;
    }

    ngx_http_sa_cache_unlock(cache);
}


ngx_uint_t
ngx_http_sa_cache_used(ngx_http_sa_cache_t *cache, u_char *id, time_t now)
{
    ngx_uint_t                 write;
    ngx_http_sa_cache_node_t  *cn;

    write = 0;

    ngx_http_sa_cache_lock(cache);

    cn = ngx_http_sa_cache_find(cache, id);
    if (cn != NULL && now - cn->used >= NGX_HTTP_SA_USED_EVERY) {
        cn->used = now;
        write = 1;
    }

    ngx_http_sa_cache_unlock(cache);

    return write;
}


/* configuration */

static ngx_int_t
ngx_http_sa_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_sa_cache_t  *ocache = data;

    size_t                len, chunk, size;
    ngx_uint_t            n;
    ngx_http_sa_cache_t  *cache;

    cache = shm_zone->data;

    /* a reload keeps what the workers had cached */
    if (ocache) {
        cache->sh = ocache->sh;
        cache->shpool = ocache->shpool;
        return NGX_OK;
    }

    cache->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cache->sh = cache->shpool->data;
        return NGX_OK;
    }

    cache->sh = ngx_slab_calloc(cache->shpool,
                                sizeof(ngx_http_sa_cache_sh_t));
    if (cache->sh == NULL) {
        return NGX_ERROR;
    }

    cache->shpool->data = cache->sh;

    n = 64;
    while (n * 2 * NGX_HTTP_SA_BUCKET_BYTES <= cache->size) {
        n *= 2;
    }

    cache->sh->mask = n - 1;

    cache->sh->nsets = cache->versions / NGX_HTTP_SA_VERSION_WAYS;
    cache->sh->versions = ngx_slab_calloc(cache->shpool,
                                          cache->sh->nsets
                                          * NGX_HTTP_SA_VERSION_WAYS
                                          * sizeof(ngx_http_sa_version_t));
    if (cache->sh->versions == NULL) {
        return NGX_ERROR;
    }

    randombytes_buf(cache->sh->bucket_key, sizeof(cache->sh->bucket_key));
    randombytes_buf(cache->sh->mac_key, sizeof(cache->sh->mac_key));

    /* a quarter of the zone, in the slab's chunks of a negative entry */
    for (chunk = 8; chunk < sizeof(ngx_http_sa_cache_node_t); chunk *= 2) {
        /* void */
    }

    cache->sh->nmax = cache->size / 4 / chunk;

    len = sizeof(" in sa_cache zone \"\"") + shm_zone->shm.name.len;

    cache->shpool->log_ctx = ngx_slab_alloc(cache->shpool, len);
    if (cache->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cache->shpool->log_ctx, " in sa_cache zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone evicts; it is not an error worth a log line each time */
    cache->shpool->log_nomem = 0;

    /* the rest of the zone, one run of free pages now, is the entries' */
    for (size = cache->shpool->pfree * ngx_pagesize;
         size >= 2 * ngx_pagesize;
         size -= ngx_pagesize)
    {
        cache->sh->pool = ngx_slab_alloc(cache->shpool, size);
        if (cache->sh->pool) {
            break;
        }
    }

    if (cache->sh->pool == NULL) {
        return NGX_ERROR;
    }

    cache->sh->pool->end = (u_char *) cache->sh->pool + size;
    cache->sh->pool->addr = cache->sh->pool;

    return ngx_http_sa_cache_reset(cache);
}


static char *
ngx_http_sa_cache_time(ngx_conf_t *cf, ngx_str_t *v, size_t skip,
    ngx_msec_t *out)
{
    ngx_str_t  s;

    s.data = v->data + skip;
    s.len = v->len - skip;

    *out = ngx_parse_time(&s, 0);
    if (*out == (ngx_msec_t) NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid time \"%V\"", v);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_sa_cache_conf(ngx_conf_t *cf, ngx_http_sa_cache_t *cache,
    ngx_str_t *value, ngx_uint_t n, void *tag)
{
    u_char      *p;
    size_t       vsize;
    ssize_t      size;
    ngx_str_t    name, s;
    ngx_uint_t   i;

    size = 0;
    name.len = 0;
    cache->ttl = 60000;
    cache->negative_ttl = 1000;
    cache->stale = 0;
    cache->heartbeat = 1000;
    cache->versions = NGX_HTTP_SA_VERSIONS;

    for (i = 0; i < n; i++) {

        if (ngx_strncmp(value[i].data, "versions=", 9) == 0) {
            cache->versions = ngx_atoi(value[i].data + 9, value[i].len - 9);
            if (cache->versions == (ngx_uint_t) NGX_ERROR
                || cache->versions < NGX_HTTP_SA_VERSION_WAYS
                || cache->versions > 16 * 1024 * 1024)
            {
                goto invalid;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            name.data = value[i].data + 5;
            p = (u_char *) ngx_strchr(name.data, ':');
            if (p == NULL) {
                goto invalid;
            }
            name.len = p - name.data;
            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;
            size = ngx_parse_size(&s);
            if (size == NGX_ERROR || name.len == 0) {
                goto invalid;
            }
            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "sa_cache zone \"%V\" is too small", &name);
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {
            if (ngx_http_sa_cache_time(cf, &value[i], 4, &cache->ttl)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "negative_ttl=", 13) == 0) {
            if (ngx_http_sa_cache_time(cf, &value[i], 13, &cache->negative_ttl)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "stale=", 6) == 0) {
            if (ngx_http_sa_cache_time(cf, &value[i], 6, &cache->stale)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (ngx_strncmp(value[i].data, "heartbeat=", 10) == 0) {
            if (ngx_http_sa_cache_time(cf, &value[i], 10, &cache->heartbeat)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
            if (cache->heartbeat == 0) {
                goto invalid;
            }
            continue;
        }

    invalid:

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sa_cache needs \"zone=NAME:SIZE\"");
        return NGX_CONF_ERROR;
    }

    /*
     * The version memory and the zone's header come on top of the zone's
     * size, so that entries keep the room they were given: the slots and
     * the header, their slab pages' descriptors, rounded up to whole sets
     * and pages, and two pages (the log context's, and the entries' pool's
     * own header).
     */
    cache->versions = ngx_align(cache->versions, NGX_HTTP_SA_VERSION_WAYS);
    vsize = ngx_align(cache->versions * sizeof(ngx_http_sa_version_t),
                      ngx_pagesize)
            + ngx_align(sizeof(ngx_http_sa_cache_sh_t), ngx_pagesize);
    vsize += (vsize / ngx_pagesize + 3) * sizeof(ngx_slab_page_t)
             + 2 * ngx_pagesize;

    cache->size = size;
    cache->shm_zone = ngx_shared_memory_add(cf, &name, size + vsize, tag);
    if (cache->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (cache->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate sa_cache zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    cache->shm_zone->init = ngx_http_sa_cache_init_zone;
    cache->shm_zone->data = cache;

    return NGX_CONF_OK;
}
