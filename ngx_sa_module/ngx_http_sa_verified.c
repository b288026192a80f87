#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_sa_verified.h"


/* direct-mapped by the id's crc32: a colliding token takes the slot over */
#define NGX_HTTP_SA_VERIFIED_SLOTS  16384


typedef struct {
    u_char                   id[SA_TOKEN_ID_LEN];
    u_char                   digest[SA_DIGEST_LEN];
    uint64_t                 version;        /* the highest seen */
    sa_token_record_t       *rec;            /* ngx_alloc()ed, or NULL */
} ngx_http_sa_verified_slot_t;


static ngx_http_sa_verified_slot_t  *ngx_http_sa_verified;


ngx_int_t
ngx_http_sa_verified_init(ngx_cycle_t *cycle)
{
    ngx_http_sa_verified = ngx_calloc(NGX_HTTP_SA_VERIFIED_SLOTS
                                      * sizeof(ngx_http_sa_verified_slot_t),
                                      cycle->log);

    return ngx_http_sa_verified ? NGX_OK : NGX_ERROR;
}


void
ngx_http_sa_verified_exit(void)
{
    ngx_uint_t  i;

    if (ngx_http_sa_verified == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_SA_VERIFIED_SLOTS; i++) {
        if (ngx_http_sa_verified[i].rec) {
            ngx_free(ngx_http_sa_verified[i].rec);
        }
    }

    ngx_free(ngx_http_sa_verified);
    ngx_http_sa_verified = NULL;
}


static ngx_http_sa_verified_slot_t *
ngx_http_sa_verified_slot(u_char *id)
{
    return &ngx_http_sa_verified[ngx_crc32_short(id, SA_TOKEN_ID_LEN)
                                 % NGX_HTTP_SA_VERIFIED_SLOTS];
}


sa_token_record_t *
ngx_http_sa_verified_find(u_char *id, u_char digest[SA_DIGEST_LEN])
{
    ngx_http_sa_verified_slot_t  *slot;

    if (ngx_http_sa_verified == NULL) {
        return NULL;
    }

    slot = ngx_http_sa_verified_slot(id);

    if (slot->rec == NULL
        || ngx_memcmp(slot->id, id, SA_TOKEN_ID_LEN) != 0
        || ngx_memcmp(slot->digest, digest, SA_DIGEST_LEN) != 0)
    {
        return NULL;
    }

    return slot->rec;
}


ngx_int_t
ngx_http_sa_verified_remember(u_char *id, u_char digest[SA_DIGEST_LEN],
    sa_token_record_t *rec)
{
    void                         *copy;
    ngx_http_sa_verified_slot_t  *slot;

    if (ngx_http_sa_verified == NULL) {
        return NGX_OK;
    }

    slot = ngx_http_sa_verified_slot(id);

    if (ngx_memcmp(slot->id, id, SA_TOKEN_ID_LEN) == 0) {
        if (rec->version < slot->version) {
            return NGX_DECLINED;
        }

    } else {
        ngx_memcpy(slot->id, id, SA_TOKEN_ID_LEN);
        slot->version = 0;
    }

    slot->version = rec->version;

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
