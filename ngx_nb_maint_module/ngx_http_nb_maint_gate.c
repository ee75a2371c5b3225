/*
 * nb_maint: the gate (nb_maint_gate, nb_maint_pass, nb_maint_bypass_allow)
 * and who is a bypass request (SPEC sections 4 and 6).
 *
 * The gate runs first in the rewrite phase, so that "return" and "rewrite"
 * in a gated location cannot slip past it.  It reads shared memory only.
 */

#include "ngx_http_nb_maint.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>


#define NB_COOKIE_NAME  "nb_maint_bypass"
#define NB_SIG_B64_LEN  43      /* base64url of 32 bytes, no padding */


static ngx_int_t ngx_http_nb_maint_gate_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_nb_maint_cookie_valid(ngx_http_request_t *r);


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

    if ((nlcf->bypass_allow
         && ngx_cidr_match(r->connection->sockaddr, nlcf->bypass_allow)
            == NGX_OK)
        || ngx_http_nb_maint_cookie_valid(r))
    {
        ctx->bypass = 2;
    }

    return ctx->bypass == 2;
}


/*
 * Bypass cookies: "<expires>.<base64url HMAC-SHA256(key, 'nb_maint:' +
 * expires)>".  The key is nb_maint_secret's, or a random one kept in the
 * store so that every gateway sharing the store accepts the same cookie.
 */

static void
ngx_http_nb_maint_cookie_key(u_char *key)
{
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_nb_maint_module);

    if (nmcf->secret_set) {
        ngx_memcpy(key, nmcf->secret, NB_SECRET_LEN);
        return;
    }

    /* the store's key may be replaced meanwhile: a consistent copy */
    ngx_http_nb_maint_secret_copy(key);
}


static void
ngx_http_nb_maint_cookie_sign(u_char *exp, size_t len, u_char *out)
{
    u_char        md[EVP_MAX_MD_SIZE], msg[NGX_TIME_T_LEN + 16],
                  key[NB_SECRET_LEN];
    unsigned int  mdlen;
    ngx_str_t     src, dst;

    len = ngx_sprintf(msg, "nb_maint:%*s", len, exp) - msg;

    ngx_http_nb_maint_cookie_key(key);

    HMAC(EVP_sha256(), key, NB_SECRET_LEN, msg, len, md, &mdlen);

    ngx_explicit_memzero(key, NB_SECRET_LEN);

    src.data = md;
    src.len = mdlen;
    dst.data = out;

    ngx_encode_base64url(&dst, &src);
}


ngx_int_t
ngx_http_nb_maint_cookie_make(ngx_http_request_t *r, time_t expires,
    ngx_str_t *value)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, sizeof(NB_COOKIE_NAME "=.") + NGX_TIME_T_LEN
                             + NB_SIG_B64_LEN + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value->data = p;
    p = ngx_sprintf(p, NB_COOKIE_NAME "=%T", expires);
    *p = '.';

    ngx_http_nb_maint_cookie_sign(value->data + sizeof(NB_COOKIE_NAME),
                                  p - (value->data + sizeof(NB_COOKIE_NAME)),
                                  p + 1);

    value->len = p + 1 + NB_SIG_B64_LEN - value->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_cookie_valid(ngx_http_request_t *r)
{
    return ngx_http_nb_maint_cookie_expires(r) != 0;
}


/* when the request's valid, unexpired bypass cookie expires; 0: none */

time_t
ngx_http_nb_maint_cookie_expires(ngx_http_request_t *r)
{
    u_char     *dot, sig[NB_SIG_B64_LEN + 4];
    time_t      expires;
    ngx_str_t   name = ngx_string(NB_COOKIE_NAME), v;

    if (ngx_http_nb_maint_parse_cookie(r, &name, &v) == NGX_DECLINED) {
        return 0;
    }

    dot = ngx_strlchr(v.data, v.data + v.len, '.');

    if (dot == NULL || dot == v.data || (size_t) (dot - v.data) > NGX_TIME_T_LEN
        || (size_t) (v.data + v.len - (dot + 1)) != NB_SIG_B64_LEN)
    {
        return 0;
    }

    expires = ngx_atotm(v.data, dot - v.data);

    if (expires == NGX_ERROR || expires <= ngx_time()) {
        return 0;
    }

    ngx_http_nb_maint_cookie_sign(v.data, dot - v.data, sig);

    return CRYPTO_memcmp(sig, dot + 1, NB_SIG_B64_LEN) == 0 ? expires : 0;
}


/* at zone creation (master): a random cookie key unless the store has one */

void
ngx_http_nb_maint_secret_init(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_shm_t *sh, ngx_log_t *log)
{
    if (sh->secret_set || ngx_test_config) {
        return;
    }

    if (RAND_bytes(sh->secret, NB_SECRET_LEN) != 1) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "nb_maint: cannot make a random cookie key");
        return;
    }

    sh->secret_set = 1;

    if (!sh->store_readonly
        && ngx_http_nb_maint_file_write(&nmcf->store, &sh->state, NULL, 1, log)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "nb_maint: cannot keep the cookie key in the store; "
                      "bypass cookies will not survive a restart");
    }
}


ngx_int_t
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

    /* NocoBase's /ws while gated: answered here (SPEC section 7) */
    if (r->uri.len == nlcf->ws_path.len) {
        rc = ngx_http_nb_maint_ws_gate(r, nlcf, gated);

        if (rc != NGX_DECLINED) {
            return rc;
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
