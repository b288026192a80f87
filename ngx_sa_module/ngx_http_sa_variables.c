/*
 * The $sa_* variables: the identity of an accepted token, its id, the
 * verdict.  They only read the verdict (ngx_http_sa_get_ctx()), never make
 * one: a read in the rewrite phase of a redirect's target must not restore
 * an old verdict.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sa_module.h"


typedef enum {
    NGX_HTTP_SA_VAR_ACCOUNT,
    NGX_HTTP_SA_VAR_ACCOUNT_NAME,
    NGX_HTTP_SA_VAR_ACCOUNT_EMAIL,
    NGX_HTTP_SA_VAR_TEAM,
    NGX_HTTP_SA_VAR_TOKEN_ID,
    NGX_HTTP_SA_VAR_SCOPES,
    NGX_HTTP_SA_VAR_STATUS
} ngx_http_sa_var_e;


static ngx_int_t
ngx_http_sa_scopes_value(ngx_http_request_t *r, sa_token_record_t *rec,
    ngx_http_variable_value_t *v)
{
    size_t   i, len;
    u_char  *p;

    len = 0;
    for (i = 0; i < rec->nscopes; i++) {
        len += rec->scopes[i].len + 1;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;

    for (i = 0; i < rec->nscopes; i++) {
        if (i) {
            *p++ = ' ';
        }
        p = ngx_cpymem(p, rec->scopes[i].data, rec->scopes[i].len);
    }

    v->len = p - v->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sa_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    sa_str_t            *s;
    ngx_http_sa_ctx_t   *ctx;
    sa_token_record_t   *rec;

    /*
     * A subrequest judged by a location with sa_auth has its own verdict;
     * others (SSI, auth_request, mirror) inherit the main request's.
     */
    ctx = (r != r->main) ? ngx_http_get_module_ctx(r, ngx_http_sa_module)
                         : NULL;

    if (ctx == NULL) {
        ctx = ngx_http_sa_get_ctx(r->main);
    }

    if (ctx == NULL || ctx->rc == NGX_AGAIN) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    /* the identity only for a request the module let through */
    rec = (ctx->status == NGX_HTTP_SA_OK) ? ctx->record : NULL;
    s = NULL;

    switch ((ngx_http_sa_var_e) data) {

    case NGX_HTTP_SA_VAR_STATUS:
        v->len = ngx_http_sa_statuses[ctx->status].name.len;
        v->data = ngx_http_sa_statuses[ctx->status].name.data;
        return NGX_OK;

    case NGX_HTTP_SA_VAR_TOKEN_ID:
        if (!ctx->has_id) {
            v->not_found = 1;
            return NGX_OK;
        }
        v->len = SA_TOKEN_ID_LEN;
        v->data = ctx->id;
        return NGX_OK;

    case NGX_HTTP_SA_VAR_SCOPES:
        if (rec == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }
        return ngx_http_sa_scopes_value(r, rec, v);

    case NGX_HTTP_SA_VAR_ACCOUNT:
        s = rec ? &rec->account : NULL;
        break;

    case NGX_HTTP_SA_VAR_ACCOUNT_NAME:
        s = rec ? &rec->name : NULL;
        break;

    case NGX_HTTP_SA_VAR_ACCOUNT_EMAIL:
        s = rec ? &rec->email : NULL;
        break;

    case NGX_HTTP_SA_VAR_TEAM:
        s = rec ? &rec->team : NULL;
        break;
    }

    if (s == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->data = (u_char *) s->data;

    return NGX_OK;
}


static ngx_http_variable_t  ngx_http_sa_vars[] = {

    { ngx_string("sa_account"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_ACCOUNT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sa_account_name"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_ACCOUNT_NAME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sa_account_email"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_ACCOUNT_EMAIL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sa_team"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_TEAM, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sa_token_id"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_TOKEN_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sa_scopes"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_SCOPES, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sa_status"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_sa_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_sa_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}

