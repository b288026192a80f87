/*
 * The lookup of a token's record in Redis: one GET per token on its way in
 * a worker, shared by the requests that wait for it (ngx_http_sa_lookup.c).
 */

#ifndef NGX_HTTP_SA_LOOKUP_H
#define NGX_HTTP_SA_LOOKUP_H

#include "ngx_http_sa_module.h"


/* the worker's part, or NULL */
ngx_http_sa_lookup_t *ngx_http_sa_lookup_init_process(ngx_cycle_t *cycle,
    ngx_http_sa_main_conf_t *smcf);
void ngx_http_sa_lookup_exit_process(ngx_http_sa_lookup_t *lu);

/*
 * NGX_AGAIN: waiting; ctx->answer is set, ctx->answered raised and
 * ctx->wake posted when the GET is answered or times out.  NGX_ERROR:
 * Redis cannot be asked now.
 */
ngx_int_t ngx_http_sa_lookup(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_main_conf_t *smcf);

/* the request is gone: no answer may reach its ctx */
void ngx_http_sa_lookup_leave(ngx_http_sa_ctx_t *ctx);

#endif /* NGX_HTTP_SA_LOOKUP_H */
