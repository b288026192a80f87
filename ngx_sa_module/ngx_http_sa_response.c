/*
 * What the client and the upstream see: the RFC 6750 challenge or 503 with
 * Retry-After, and the Authorization header removed (with nginx's cached
 * views of it).  The $sa_* variables are in ngx_http_sa_variables.c.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sa_module.h"



/* the response: headers of RFC 6750, or the credentials hidden on success */

static ngx_int_t
ngx_http_sa_challenge(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_loc_conf_t *slcf)
{
    size_t             len;
    u_char            *p;
    ngx_uint_t         i;
    ngx_table_elt_t   *h;
    sa_scope_group_t  *g = ctx->missing;

    len = sizeof("Bearer realm=\"\"") - 1 + slcf->realm.len
          + sizeof(", error=\"insufficient_scope\"") - 1
          + sizeof(", scope=\"\"") - 1;

    for (i = 0; g && i < g->n; i++) {
        len += g->scopes[i].len + 1;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* after an error_page redirect the first challenge is still there */
    h = r->headers_out.www_authenticate;

    if (h == NULL) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    h->value.data = p;

    p = ngx_sprintf(p, "Bearer realm=\"%V\"", &slcf->realm);

    if (ctx->status == NGX_HTTP_SA_INSUFFICIENT_SCOPE
        || ctx->status == NGX_HTTP_SA_FORBIDDEN_APPLICATION
        || ctx->status == NGX_HTTP_SA_FORBIDDEN_SOURCE)
    {
        p = ngx_cpymem(p, ", error=\"insufficient_scope\"",
                       sizeof(", error=\"insufficient_scope\"") - 1);

        if (g) {
            p = ngx_cpymem(p, ", scope=\"", sizeof(", scope=\"") - 1);
            for (i = 0; i < g->n; i++) {
                if (i) {
                    *p++ = ' ';
                }
                p = ngx_cpymem(p, g->scopes[i].data, g->scopes[i].len);
            }
            *p++ = '"';
        }

    } else if (ctx->status != NGX_HTTP_SA_MISSING) {
        p = ngx_cpymem(p, ", error=\"invalid_token\"",
                       sizeof(", error=\"invalid_token\"") - 1);
    }

    h->value.len = p - h->value.data;

    r->headers_out.www_authenticate = h;

    return NGX_OK;
}


/* Retry-After: N (a 429 of sa_rate_limit) */
static ngx_int_t
ngx_http_sa_retry_after_seconds(ngx_http_request_t *r, time_t n)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (h->value.data == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    h->value.len = ngx_sprintf(h->value.data, "%T", n) - h->value.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sa_retry_after(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    ngx_str_set(&h->value, "1");

    return NGX_OK;
}


/*
 * The upstream must not see the token.  The elements of headers_in.headers
 * cannot be moved: r->headers_in.host, user_agent, cookies, content_length
 * and the others point into them.  So a new list takes every element but
 * Authorization, and the old elements, which those pointers name, stay
 * where they are.  Every upstream module (proxy, fastcgi, uwsgi, scgi,
 * grpc) and $http_* walk the new list.
 */
static void ngx_http_sa_forget_variables(ngx_http_request_t *r,
    ngx_table_elt_t *auth);


static ngx_int_t
ngx_http_sa_hide_credentials(ngx_http_request_t *r)
{
    ngx_uint_t        i, n;
    ngx_list_t        old;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *copy, *auth;

    auth = r->headers_in.authorization;
    if (auth == NULL) {
        return NGX_OK;
    }

    /* the first part is inside the list struct: walk a copy of it */
    old = r->headers_in.headers;

    n = 0;
    for (part = &old.part; part; part = part->next) {
        n += part->nelts;
    }

    if (ngx_list_init(&r->headers_in.headers, r->pool, n,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (part = &old.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (&h[i] == auth) {
                continue;
            }

            copy = ngx_list_push(&r->headers_in.headers);
            if (copy == NULL) {
                return NGX_ERROR;
            }

            *copy = h[i];
        }
    }

    r->headers_in.authorization = NULL;

    ngx_http_sa_forget_variables(r, auth);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "sa: Authorization hidden from the upstream");

    return NGX_OK;
}


/* whether p[0 .. len) holds the SA_TOKEN_SECRET_LEN bytes of secret */
static ngx_uint_t
ngx_http_sa_holds(u_char *p, size_t len, u_char *secret)
{
    u_char  *last;

    if (len < SA_TOKEN_SECRET_LEN) {
        return 0;
    }

    for (last = p + len - SA_TOKEN_SECRET_LEN; p <= last; p++) {
        if (*p == *secret
            && ngx_memcmp(p, secret, SA_TOKEN_SECRET_LEN) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* regex captures ($1) taken from the bytes start .. end are dropped */
static void
ngx_http_sa_forget_captures(ngx_http_request_t *r, u_char *start, u_char *end)
{
#if (NGX_PCRE)
    if (r->ncaptures && r->captures_data >= start && r->captures_data < end) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "sa: regex captures of the credential dropped");
        r->ncaptures = 0;
    }
#endif
}


/*
 * nginx caches a variable's value in r->variables on first use, and a
 * limit_req key, a map used in "if", or "if" itself read $http_authorization
 * before the access phase: that copy would still give the token to
 * "proxy_set_header Authorization $http_authorization" or an access log.
 * Every cached value that is a view of the hidden header (that one, or any
 * other variable pointing into its bytes) is marked unread, so that the next
 * read finds the new header list.  So is every cached copy that holds the
 * token's secret: a map's value ("map $http_authorization $key { default
 * $http_authorization; }", read by limit_conn, limit_req or "if"), or "set
 * $t $http_authorization;" before the access phase (read again, a set
 * variable is empty).  Regex captures ($1) of a match on the header are
 * dropped too.
 */
static void
ngx_http_sa_forget_variables(ngx_http_request_t *r, ngx_table_elt_t *auth)
{
    u_char                     *start, *end, *secret;
    size_t                      len;
    ngx_uint_t                  i;
    const unsigned char        *token;
    ngx_http_variable_value_t  *v;
    ngx_http_sa_main_conf_t    *smcf;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);
    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);

    start = auth->value.data;
    end = start + auth->value.len;

    /* the secret, if the credential has a token's shape */
    secret = NULL;

    if (sa_bearer_parse(start, auth->value.len, &token, &len)
        == SA_BEARER_OK
        && sa_token_shape(token, len) == SA_TOKEN_OK)
    {
        secret = (u_char *) token + SA_TOKEN_SECRET_OFF;
    }

    /* $1 of "if ($http_authorization ~ ...)" */
    ngx_http_sa_forget_captures(r, start, end);

    if (r->variables == NULL) {
        return;
    }

    v = r->variables;

    for (i = 0; i < cmcf->variables.nelts; i++) {

        if ((ngx_int_t) i == smcf->authorization_variable
            || (v[i].valid && v[i].len && v[i].data >= start
                && v[i].data < end)
            || (secret && v[i].valid && ngx_http_sa_holds(v[i].data, v[i].len,
                                                        secret)))
        {
            if (v[i].valid || v[i].not_found) {
                ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                               "sa: cached variable #%ui read again", i);
            }

            /* and $1 of a match on that copy */
            ngx_http_sa_forget_captures(r, v[i].data, v[i].data + v[i].len);

            v[i].valid = 0;
            v[i].not_found = 0;
        }
    }
}


/*
 * The verdict as the access phase wants it.  The credential is hidden
 * whatever the verdict: under "satisfy any" a refused request may still go
 * upstream.  Only a Bearer credential is ours to hide; another scheme is
 * left for whoever it belongs to.
 */
ngx_int_t
ngx_http_sa_respond(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_loc_conf_t *slcf)
{
    ngx_http_core_loc_conf_t  *clcf;

    if (slcf->hide_credentials && ctx->bearer
        && ngx_http_sa_hide_credentials(r) != NGX_OK)
    {
        return NGX_ERROR;
    }

    switch (ctx->rc) {

    case NGX_OK:
        return NGX_OK;

    case NGX_HTTP_UNAUTHORIZED:
    case NGX_HTTP_FORBIDDEN:
        if (ngx_http_sa_challenge(r, ctx, slcf) != NGX_OK) {
            return NGX_ERROR;
        }
        return ctx->rc;

    case NGX_HTTP_TOO_MANY_REQUESTS:
        /* sa_rate_limit: once, even after an error_page redirect */
        if (!ctx->retry_after) {
            if (ngx_http_sa_retry_after_seconds(r, ctx->rl_retry) != NGX_OK) {
                return NGX_ERROR;
            }
            ctx->retry_after = 1;
        }
        return NGX_HTTP_TOO_MANY_REQUESTS;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        /*
         * Under "satisfy any" Redis' failure refuses nothing: a later
         * checker (allow) may still grant access, as it would to a request
         * without a token.  503 would end the phase at once; so this
         * handler declines, and ngx_http_sa_access_last() answers 503 when
         * no checker granted.  Subrequests skip "satisfy".
         */
        if (r == r->main && clcf->satisfy == NGX_HTTP_SATISFY_ANY) {
            return NGX_DECLINED;
        }

        return ngx_http_sa_respond_unavailable(r, ctx);
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/* 503 with Retry-After */
ngx_int_t
ngx_http_sa_respond_unavailable(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx)
{
    /* once, even when an error_page redirect comes back here */
    if (!ctx->retry_after) {
        if (ngx_http_sa_retry_after(r) != NGX_OK) {
            return NGX_ERROR;
        }
        ctx->retry_after = 1;
    }

    return NGX_HTTP_SERVICE_UNAVAILABLE;
}
