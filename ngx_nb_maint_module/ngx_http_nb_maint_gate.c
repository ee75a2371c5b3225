/*
 * nb_maint: the gate (nb_maint_gate, nb_maint_pass, nb_maint_bypass_allow)
 * and who is a bypass request (SPEC sections 4 and 6).
 *
 * The gate runs first in the rewrite phase, so that "return" and "rewrite"
 * in a gated location cannot slip past it.  It reads shared memory only.
 */

#include "ngx_http_nb_maint.h"


static ngx_int_t ngx_http_nb_maint_gate_handler(ngx_http_request_t *r);


ngx_int_t
ngx_http_nb_maint_gate_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_nb_maint_gate_handler;

    return NGX_OK;
}


ngx_http_nb_maint_ctx_t *
ngx_http_nb_maint_get_ctx(ngx_http_request_t *r)
{
    ngx_http_nb_maint_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_nb_maint_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_nb_maint_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        ctx->node = -1;
        ngx_http_set_ctx(r, ctx, ngx_http_nb_maint_module);
    }

    return ctx;
}


/* 1 if the request is a bypass request, 0 if public */

ngx_int_t
ngx_http_nb_maint_is_bypass(ngx_http_request_t *r)
{
    ngx_http_nb_maint_ctx_t       *ctx;
    ngx_http_nb_maint_loc_conf_t  *nlcf;

    ctx = ngx_http_nb_maint_get_ctx(r);
    if (ctx == NULL) {
        return 0;
    }

    if (ctx->bypass) {
        return ctx->bypass == 2;
    }

    nlcf = ngx_http_get_module_loc_conf(r, ngx_http_nb_maint_module);

    ctx->bypass = 1;

    if (nlcf->bypass_allow
        && ngx_cidr_match(r->connection->sockaddr, nlcf->bypass_allow)
           == NGX_OK)
    {
        ctx->bypass = 2;
    }

    return ctx->bypass == 2;
}


static ngx_int_t
ngx_http_nb_maint_passed(ngx_http_request_t *r,
    ngx_http_nb_maint_loc_conf_t *nlcf)
{
    ngx_uint_t     i;
    ngx_regex_t  **re;

    if (nlcf->pass == NULL) {
        return 0;
    }

    re = nlcf->pass->elts;

    for (i = 0; i < nlcf->pass->nelts; i++) {
        if (ngx_regex_exec(re[i], &r->uri, NULL, 0) >= 0) {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_nb_maint_gate_handler(ngx_http_request_t *r)
{
    ngx_http_nb_maint_state_t     *st;
    ngx_http_nb_maint_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_http_nb_maint_module);

    if (!nlcf->gate || nlcf->admin) {
        return NGX_DECLINED;
    }

    st = ngx_http_nb_maint_snapshot();

    if (st->mode != NB_MODE_UPGRADE
        && !(st->mode == NB_MODE_RESTORING
             && st->restoring_from == NB_MODE_UPGRADE))
    {
        return NGX_DECLINED;
    }

    if (ngx_http_nb_maint_passed(r, nlcf) || ngx_http_nb_maint_is_bypass(r)) {
        return NGX_DECLINED;
    }

    return ngx_http_nb_maint_page_send(r, st->mode);
}
