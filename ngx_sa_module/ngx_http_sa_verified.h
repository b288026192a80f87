/*
 * What this worker has verified.  A signature check costs tens of
 * microseconds; Redis answers a GET with the same bytes again and again.
 * So per token id the worker remembers the digest of the envelope whose
 * signature last verified, the record decoded from it, and the highest
 * version it has seen: a reply with the same digest is the same bytes and
 * needs neither the signature check nor the JSON parse, and an older
 * version than one seen is a replay.  Redis is still read on every lookup:
 * only the verification is remembered, never the answer.
 */

#ifndef NGX_HTTP_SA_VERIFIED_H
#define NGX_HTTP_SA_VERIFIED_H

#include <ngx_config.h>
#include <ngx_core.h>

#include "sa_record.h"


/* a worker's table, owned by its lookup (ngx_http_sa_lookup.c) */
typedef struct ngx_http_sa_verified_s  ngx_http_sa_verified_t;


/* NULL: no memory */
ngx_http_sa_verified_t *ngx_http_sa_verified_init(ngx_cycle_t *cycle);
void ngx_http_sa_verified_exit(ngx_http_sa_verified_t *v);

/* the record of exactly these envelope bytes, if they verified before */
sa_token_record_t *ngx_http_sa_verified_find(ngx_http_sa_verified_t *v,
    u_char *id, u_char digest[SA_DIGEST_LEN]);

/*
 * Remembers a record that just verified.  NGX_DECLINED: a newer version
 * of this token was seen, the record is a replay and must be refused.
 */
ngx_int_t ngx_http_sa_verified_remember(ngx_http_sa_verified_t *v,
    u_char *id, u_char digest[SA_DIGEST_LEN], sa_token_record_t *rec);

#endif /* NGX_HTTP_SA_VERIFIED_H */
