#include <ngx_config.h>
#include <ngx_core.h>
#include <sodium.h>

#include "ngx_http_sa_verified.h"
#include "ngx_http_sa_cache.h"


/*
 * 4096 sets of 4 slots.  A set is chosen by a keyed hash of the id (SipHash,
 * a random key per worker), so that nobody can pick token ids that push
 * other tokens' records out; within a set, the least recently used slot
 * makes room.  Direct mapping was measurably worse: 1,000 tokens in 16,384
 * slots collided often enough that about 5% of lookups verified again.
 */
#define NGX_HTTP_SA_VERIFIED_WAYS  4
#define NGX_HTTP_SA_VERIFIED_SETS  4096


typedef struct {
    u_char                   id[SA_TOKEN_ID_LEN];
    u_char                   digest[SA_DIGEST_LEN];
    uint64_t                 version;        /* the highest seen */
    sa_token_record_t       *rec;            /* ngx_alloc()ed, or NULL */
    ngx_msec_t               used;           /* last found or remembered */
} ngx_http_sa_verified_slot_t;


struct ngx_http_sa_verified_s {
    ngx_http_sa_verified_slot_t  *slots;     /* ngx_calloc()ed */
    u_char                        key[crypto_shorthash_KEYBYTES];
};


ngx_http_sa_verified_t *
ngx_http_sa_verified_init(ngx_cycle_t *cycle)
{
    ngx_http_sa_verified_t  *v;

    v = ngx_pcalloc(cycle->pool, sizeof(ngx_http_sa_verified_t));
    if (v == NULL) {
        return NULL;
    }

    randombytes_buf(v->key, sizeof(v->key));

    v->slots = ngx_calloc(NGX_HTTP_SA_VERIFIED_SETS
                          * NGX_HTTP_SA_VERIFIED_WAYS
                          * sizeof(ngx_http_sa_verified_slot_t),
                          cycle->log);

    return v->slots ? v : NULL;
}


void
ngx_http_sa_verified_exit(ngx_http_sa_verified_t *v)
{
    ngx_uint_t  i;

    if (v == NULL || v->slots == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_SA_VERIFIED_SETS * NGX_HTTP_SA_VERIFIED_WAYS;
         i++)
    {
        if (v->slots[i].rec) {
            ngx_free(v->slots[i].rec);
        }
    }

    ngx_free(v->slots);
    v->slots = NULL;
}


/* the first slot of the id's set */
static ngx_http_sa_verified_slot_t *
ngx_http_sa_verified_set(ngx_http_sa_verified_t *v, u_char *id)
{
    uint64_t  h;

    (void) crypto_shorthash((u_char *) &h, id, SA_TOKEN_ID_LEN, v->key);

    return &v->slots[(h % NGX_HTTP_SA_VERIFIED_SETS)
                     * NGX_HTTP_SA_VERIFIED_WAYS];
}


/* the id's slot in its set, or NULL */
static ngx_http_sa_verified_slot_t *
ngx_http_sa_verified_slot(ngx_http_sa_verified_slot_t *set, u_char *id)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_SA_VERIFIED_WAYS; i++) {
        if (set[i].used && ngx_http_sa_id_equal(set[i].id, id)) {
            return &set[i];
        }
    }

    return NULL;
}


sa_token_record_t *
ngx_http_sa_verified_find(ngx_http_sa_verified_t *v, u_char *id,
    u_char digest[SA_DIGEST_LEN])
{
    ngx_http_sa_verified_slot_t  *slot;

    if (v == NULL || v->slots == NULL) {
        return NULL;
    }

    slot = ngx_http_sa_verified_slot(ngx_http_sa_verified_set(v, id), id);

    if (slot == NULL || slot->rec == NULL
        || ngx_memcmp(slot->digest, digest, SA_DIGEST_LEN) != 0)
    {
        return NULL;
    }

    slot->used = ngx_current_msec | 1;

    return slot->rec;
}


/* the least recently used slot of the set, emptied for another id */
static ngx_http_sa_verified_slot_t *
ngx_http_sa_verified_evict(ngx_http_sa_verified_slot_t *set, u_char *id)
{
    ngx_uint_t                    i;
    ngx_http_sa_verified_slot_t  *slot;

    slot = &set[0];

    for (i = 1; i < NGX_HTTP_SA_VERIFIED_WAYS; i++) {
        if ((ngx_msec_int_t) (set[i].used - slot->used) < 0) {
            slot = &set[i];
        }
    }

    if (slot->rec) {
        ngx_free(slot->rec);
        slot->rec = NULL;
    }

    ngx_memcpy(slot->id, id, SA_TOKEN_ID_LEN);
    slot->version = 0;

    return slot;
}


ngx_int_t
ngx_http_sa_verified_remember(ngx_http_sa_verified_t *v, u_char *id,
    u_char digest[SA_DIGEST_LEN], sa_token_record_t *rec)
{
    void                         *copy;
    ngx_http_sa_verified_slot_t  *set, *slot;

    if (v == NULL || v->slots == NULL) {
        return NGX_OK;
    }

    set = ngx_http_sa_verified_set(v, id);
    slot = ngx_http_sa_verified_slot(set, id);

    if (slot == NULL) {
        slot = ngx_http_sa_verified_evict(set, id);

    } else if (rec->version < slot->version) {
        return NGX_DECLINED;
    }

    slot->version = rec->version;
    slot->used = ngx_current_msec | 1;      /* 0 is an empty slot */

    if (slot->rec) {
        ngx_free(slot->rec);
        slot->rec = NULL;
    }

    /* without memory the record is simply not remembered */
    copy = ngx_alloc(rec->size, ngx_cycle->log);
    if (copy != NULL) {
        ngx_memcpy(slot->digest, digest, SA_DIGEST_LEN);
        slot->rec = sa_token_record_copy(copy, rec);
    }

    return NGX_OK;
}

