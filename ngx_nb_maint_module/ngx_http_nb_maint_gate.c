/*
 * nb_maint: the gate (nb_maint_gate; SPEC sections 4 and 7): a gated
 * request in upgrade mode, or restoring from it, gets the 503 page unless
 * its URI passes (nb_maint_pass) or it is a bypass request; NocoBase's /ws
 * is answered by ws.c.
 *
 * The gate runs first in the rewrite phase, so that "return" and "rewrite"
 * in a gated location cannot slip past it.  It reads shared memory only.
 *
 * May call: bypass.c, ws.c, page.c, state.c.
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


static ngx_int_t
ngx_http_nb_maint_gate_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_uint_t                     gated;
    ngx_http_nb_maint_state_t     *st;
    ngx_http_nb_maint_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_http_nb_maint_module);

    if (!nlcf->gate || nlcf->admin) {
        return NGX_DECLINED;
    }

    st = ngx_http_nb_maint_snapshot();

    gated = st->mode == NB_MODE_UPGRADE
            || (st->mode == NB_MODE_RESTORING
                && st->restoring_from == NB_MODE_UPGRADE);

    /*
     * NocoBase's /ws while gated: answered by ws.c in the content phase,
     * once the access phase (allow/deny, auth_basic, limit_conn,
     * limit_req) has let it through (SPEC sections 7, 10a)
     */
    if (r->uri.len == nlcf->ws_path.len) {
        rc = ngx_http_nb_maint_ws_gate(r, nlcf, gated);

        if (rc != NGX_DECLINED) {
            return NGX_DECLINED;
        }
    }

    if (!gated) {
        return NGX_DECLINED;
    }

    if (ngx_http_nb_maint_passed(r, nlcf)) {
        nb_count(ngx_http_nb_maint_shm(), NB_OUT_PASSED);
        return NGX_DECLINED;
    }

    if (ngx_http_nb_maint_is_bypass(r)) {
        return NGX_DECLINED;
    }

    nb_count(ngx_http_nb_maint_shm(), NB_OUT_GATED);

    return ngx_http_nb_maint_page_send(r, st->mode);
}
