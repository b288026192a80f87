/*
 * Side effects of a verdict in Redis, not awaited: last use, token.denied
 * (ngx_http_sa_effects.c).
 */

#ifndef NGX_HTTP_SA_EFFECTS_H
#define NGX_HTTP_SA_EFFECTS_H

#include "ngx_http_sa_module.h"


/* the worker's part, or NULL */
ngx_http_sa_effects_t *ngx_http_sa_effects_init_process(ngx_cycle_t *cycle,
    ngx_http_sa_main_conf_t *smcf);

/* a genuine token let through: its last use, when due */
void ngx_http_sa_record_use(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx);

/* a genuine token refused: token.denied, when the location names its app */
void ngx_http_sa_report_denied(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx);

#endif /* NGX_HTTP_SA_EFFECTS_H */
