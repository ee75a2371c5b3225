/*
 * nb_maint: who is a bypass request (SPEC section 6) and which URIs pass
 * the gate (nb_maint_pass), for the gate, the balancer and WebSockets; and
 * the module's per-request context, which caches the answer.
 *
 * A client in nb_maint_bypass_allow, or one sending a valid, unexpired
 * bypass cookie (signed as secret.c signs it).  Reads shared memory only.
 * The directives nb_maint_bypass_allow and nb_maint_pass (with NocoBase's
 * static paths as the default) are parsed here too.
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
    return ngx_http_nb_maint_cookie_expires(r) != 0;
}


/*
 * nb_maint_pass matches the normalized URI, while proxy_pass forwards the
 * raw one when the URI was not changed (r->valid_unparsed_uri): a match
 * counts only when the raw path is that very URI, so "/api/../dist/x"
 * (or "//", "/./", %-escapes) is gated like any other (issue 21, item 13).
 */

static ngx_uint_t
ngx_http_nb_maint_uri_plain(ngx_http_request_t *r)
{
    u_char  *p, *end;

    if (!r->valid_unparsed_uri) {
        return 1;               /* what goes on is r->uri itself */
    }

    p = r->unparsed_uri.data;
    end = p + r->unparsed_uri.len;

    while (p < end && *p != '?' && *p != '#') {
        p++;
    }

    return (size_t) (p - r->unparsed_uri.data) == r->uri.len
           && ngx_memcmp(r->unparsed_uri.data, r->uri.data, r->uri.len) == 0;
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
            /* the raw path is looked at only for a URI that would pass */
            return ngx_http_nb_maint_uri_plain(r);
        }
    }

    return 0;
}


char *
ngx_http_nb_maint_bypass_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_nb_maint_loc_conf_t *nlcf = conf;

    ngx_int_t    rc;
    ngx_str_t   *value;
    ngx_cidr_t  *cidr;

    value = cf->args->elts;

    if (nlcf->bypass_allow == NGX_CONF_UNSET_PTR) {
        nlcf->bypass_allow = ngx_array_create(cf->pool, 4,
                                              sizeof(ngx_cidr_t));
        if (nlcf->bypass_allow == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    cidr = ngx_array_push(nlcf->bypass_allow);
    if (cidr == NULL) {
        return NGX_CONF_ERROR;
    }

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "all", 3) == 0) {
        ngx_memzero(cidr, sizeof(ngx_cidr_t));
        cidr->family = AF_INET;

#if (NGX_HAVE_INET6)
        /* "all" is both families, as in allow/deny */
        cidr = ngx_array_push(nlcf->bypass_allow);
        if (cidr == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(cidr, sizeof(ngx_cidr_t));
        cidr->family = AF_INET6;
#endif

        return NGX_CONF_OK;
    }

    rc = ngx_ptocidr(&value[1], cidr);

    if (rc == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_bypass_allow\": invalid address or "
                           "network \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (rc == NGX_DONE) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"nb_maint_bypass_allow\": low address bits of "
                           "%V are meaningless", &value[1]);
    }

    return NGX_CONF_OK;
}


char *
ngx_http_nb_maint_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_nb_maint_loc_conf_t *nlcf = conf;

    u_char               errstr[NGX_MAX_CONF_ERRSTR];
    ngx_str_t           *value;
    ngx_regex_t        **re;
    ngx_regex_compile_t  rc;

    value = cf->args->elts;

    /* "off": not even NocoBase's static paths pass here */
    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        if (nlcf->pass != NGX_CONF_UNSET_PTR) {
            return "is duplicate";
        }

        nlcf->pass = NULL;
        nlcf->pass_off = 1;
        return NGX_CONF_OK;
    }

    if (nlcf->pass == NULL) {
        return "cannot follow \"nb_maint_pass off\"";
    }

    if (value[1].len < 2 || value[1].data[0] != '~') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_pass\": expected \"~regex\", "
                           "\"~*regex\" or \"off\", got \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern.data = value[1].data + 1;
    rc.pattern.len = value[1].len - 1;

    if (rc.pattern.data[0] == '*') {
        rc.pattern.data++;
        rc.pattern.len--;
        rc.options = NGX_REGEX_CASELESS;
    }

    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (rc.pattern.len == 0 || ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_pass\": invalid regex \"%V\": %V",
                           &value[1], &rc.err);
        return NGX_CONF_ERROR;
    }

    if (nlcf->pass == NGX_CONF_UNSET_PTR) {
        nlcf->pass = ngx_array_create(cf->pool, 4, sizeof(ngx_regex_t *));
        if (nlcf->pass == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    re = ngx_array_push(nlcf->pass);
    if (re == NULL) {
        return NGX_CONF_ERROR;
    }

    *re = rc.regex;

    return NGX_CONF_OK;
}


/*
 * What NocoBase's web client loads, under its public path (the API
 * prefix's parent); an open page needs these while the nodes are busy or
 * stopped (an upgrade).  From NocoBase 2.2 (tag v2.2.0):
 *
 *   static/plugins/  the plugins' client code: the nginx template
 *                    packages/core/cli-v1/nocobase.conf.tpl, and
 *                    packages/core/server/src/gateway/index.ts
 *                    (PLUGIN_STATICS_PATH)
 *   dist/            storage/dist-client, the CDN copy (gateway/index.ts,
 *                    "location ^~ {{distPath}}" of nocobase.conf.tpl)
 *   v/               the 2.x modern client (APP_MODERN_CLIENT_PREFIX,
 *                    packages/core/app/client-v2/rsbuild.config.ts)
 *   storage/uploads/ uploaded files (gateway/index.ts, with the headers of
 *                    gateway/static-file-security.ts; nocobase.conf.tpl)
 *   assets/          the core bundle: every js, css, font and image of the
 *                    build (packages/core/app/client/rsbuild.config.ts,
 *                    output.distPath js/css/... "assets")
 *   global.css, browser-checker.js
 *                    the index page's head tags (same file, html.tags)
 *   favicon/, file-placeholder/, nocobase.png, robots.txt
 *                    packages/core/app/client/public/, copied into
 *                    dist/client as they are: the favicon
 *                    (client-v2/src/BaseApplication.tsx updateFavicon),
 *                    the upload placeholders (client/src/schema-component/
 *                    antd/upload/placeholder.ts), the default logo
 *                    (plugin-system-settings/src/server/server.ts)
 *
 * The files are anchored at their end; the index page and the client's
 * routes are not here: a fresh load is answered by the gate.
 */

char *
ngx_http_nb_maint_default_pass(ngx_conf_t *cf,
    ngx_http_nb_maint_loc_conf_t *conf)
{
    u_char               errstr[NGX_MAX_CONF_ERRSTR], *p;
    size_t               len;
    ngx_uint_t           i;
    ngx_regex_t        **re;
    ngx_regex_compile_t  rc;

    static const char    tail[] =
        "(?:(?:static/plugins|dist|v|storage/uploads|assets|favicon"
        "|file-placeholder)/"
        "|(?:global\\.css|browser-checker\\.js|nocobase\\.png|robots\\.txt)$)";

    /* "/nocobase/api/" -> "/nocobase/" */
    len = conf->api_prefix.len;

    if (len && conf->api_prefix.data[len - 1] == '/') {
        len--;
    }

    while (len && conf->api_prefix.data[len - 1] != '/') {
        len--;
    }

    if (len == 0) {
        return NGX_CONF_OK;
    }

    /* "^" + the path with every byte quoted + tail */
    p = ngx_pnalloc(cf->pool, 1 + 2 * len + sizeof(tail));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));
    rc.pattern.data = p;

    *p++ = '^';

    for (i = 0; i < len; i++) {
        if (!((conf->api_prefix.data[i] >= 'a'
               && conf->api_prefix.data[i] <= 'z')
              || (conf->api_prefix.data[i] >= 'A'
                  && conf->api_prefix.data[i] <= 'Z')
              || (conf->api_prefix.data[i] >= '0'
                  && conf->api_prefix.data[i] <= '9')))
        {
            *p++ = '\\';
        }

        *p++ = conf->api_prefix.data[i];
    }

    p = ngx_cpymem(p, tail, sizeof(tail) - 1);

    rc.pattern.len = p - rc.pattern.data;
    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_api_prefix\": cannot make the static "
                           "path pattern \"%V\": %V", &rc.pattern, &rc.err);
        return NGX_CONF_ERROR;
    }

    conf->pass = ngx_array_create(cf->pool, 1, sizeof(ngx_regex_t *));
    if (conf->pass == NULL) {
        return NGX_CONF_ERROR;
    }

    re = ngx_array_push(conf->pass);
    if (re == NULL) {
        return NGX_CONF_ERROR;
    }

    *re = rc.regex;

    return NGX_CONF_OK;
}
