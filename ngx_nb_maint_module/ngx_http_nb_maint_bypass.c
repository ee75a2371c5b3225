/*
 * nb_maint: who is a bypass request (SPEC section 6) and which URIs pass
 * the gate (nb_maint_pass), for the gate, the balancer and WebSockets; and
 * the module's per-request context, which caches the answer.
 *
 * A client in nb_maint_bypass_allow, or one sending a valid, unexpired
 * bypass cookie (signed as secret.c signs it).  Reads shared memory only.
 *
 * May call: secret.c (cookie signatures), the shared header.
 */

#include "ngx_http_nb_maint.h"
#include <openssl/crypto.h>


static ngx_int_t ngx_http_nb_maint_cookie_valid(ngx_http_request_t *r);


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


static ngx_int_t
ngx_http_nb_maint_cookie_valid(ngx_http_request_t *r)
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

    return CRYPTO_memcmp(sig, dot + 1, NB_SIG_B64_LEN) == 0;
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
