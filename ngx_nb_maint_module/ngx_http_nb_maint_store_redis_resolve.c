/*
 * nb_maint: host names in the redis store's answers (issue 21 item 8).
 *
 * A sentinel may name the primary by host name ("sentinel
 * announce-hostnames yes", common on Kubernetes).  hiredis would resolve
 * it with a blocking getaddrinfo() inside the worker; here it is resolved
 * with nginx's own resolver (the "resolver" directive at the http{} level)
 * and hiredis only ever gets a numeric address.  Without a resolver the
 * name is refused with an error that says so.  Names in the URL itself are
 * resolved once, with the configuration (as nginx does for proxy_pass).
 *
 * Owns: telling an address from a name, one resolution at a time per
 * worker, and the last error.  May call: nginx's resolver only.  No call
 * here ever blocks.
 */

#include "ngx_http_nb_maint_store_redis.h"


static ngx_resolver_ctx_t               *ngx_http_nb_maint_rctx;
static ngx_http_nb_maint_redis_named_pt  ngx_http_nb_maint_named;
static int                               ngx_http_nb_maint_named_port;
static u_char                            ngx_http_nb_maint_name_buf[
                                                        NGX_SOCKADDR_STRLEN];
static u_char                            ngx_http_nb_maint_name_err[
                                                        NB_STORE_ERROR_LEN];


/* a numeric IPv4 or IPv6 address, as hiredis may take it */

ngx_uint_t
ngx_http_nb_maint_redis_numeric(u_char *host, size_t len)
{
#if (NGX_HAVE_INET6)
    u_char  a6[16];

    if (ngx_inet6_addr(host, len, a6) == NGX_OK) {
        return 1;
    }
#endif

    return ngx_inet_addr(host, len) != INADDR_NONE;
}


/* why the last name could not be used ("" when none failed) */

u_char *
ngx_http_nb_maint_redis_name_error(void)
{
    return ngx_http_nb_maint_name_err;
}


static void
ngx_http_nb_maint_redis_name_fail(u_char *host, size_t len, const char *why)
{
    u_char  *p;

    p = ngx_snprintf(ngx_http_nb_maint_name_err,
                     NB_STORE_ERROR_LEN - 1,
                     "the primary's host name \"%*s\" %s", len, host, why);
    *p = '\0';

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "nb_maint: redis: %s",
                  ngx_http_nb_maint_name_err);
}


static void
ngx_http_nb_maint_redis_resolved(ngx_resolver_ctx_t *ctx)
{
    u_char                          *p;
    ngx_int_t                        rc;
    ngx_http_nb_maint_store_t       *store = ctx->data;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    ngx_http_nb_maint_rctx = NULL;
    rc = NGX_ERROR;

    if (ctx->state == NGX_OK && ctx->naddrs > 0) {
        p = rcf->host;
        p += ngx_sock_ntop(ctx->addrs[0].sockaddr, ctx->addrs[0].socklen, p,
                           NGX_SOCKADDR_STRLEN - 1, 0);
        *p = '\0';
        rcf->port = ngx_http_nb_maint_named_port;
        ngx_http_nb_maint_name_err[0] = '\0';
        rc = NGX_OK;

        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "nb_maint: redis: the primary \"%V\" is %s:%d",
                      &ctx->name, rcf->host, rcf->port);

    } else {
        ngx_http_nb_maint_redis_name_fail(ctx->name.data, ctx->name.len,
                                          ctx->state == NGX_RESOLVE_TIMEDOUT
                                          ? "did not resolve in time"
                                          : "could not be resolved");
    }

    ngx_resolve_name_done(ctx);

    ngx_http_nb_maint_named(store, rc);
}


/*
 * host (not NUL-terminated) and port into rcf->host and rcf->port: NGX_OK
 * at once for an address; NGX_AGAIN while the resolver works on a name
 * (then named(store, rc) is called); NGX_ERROR: refused, and why is in
 * ngx_http_nb_maint_redis_name_error().
 */

ngx_int_t
ngx_http_nb_maint_redis_name(ngx_http_nb_maint_store_t *store, u_char *host,
    size_t len, int port, ngx_http_nb_maint_redis_named_pt named)
{
    ngx_resolver_ctx_t              *ctx;
    ngx_http_core_loc_conf_t        *clcf;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    if (len == 0 || len >= NGX_SOCKADDR_STRLEN) {
        ngx_http_nb_maint_redis_name_fail(host, ngx_min(len, 64),
                                          "is not a host name");
        return NGX_ERROR;
    }

    if (ngx_http_nb_maint_redis_numeric(host, len)) {
        *ngx_cpymem(rcf->host, host, len) = '\0';
        rcf->port = port;
        return NGX_OK;
    }

    if (ngx_http_nb_maint_rctx) {
        ngx_http_nb_maint_redis_name_fail(host, len, "waits for another "
                                          "resolution");
        return NGX_ERROR;
    }

    clcf = rcf->clcf;

    ctx = ngx_resolve_start(clcf->resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_http_nb_maint_redis_name_fail(host, len,
                                          ctx ? "needs a \"resolver\" at "
                                                "the http{} level (nb_maint "
                                                "never resolves in a worker "
                                                "with a blocking call)"
                                              : "could not be resolved "
                                                "(out of memory)");
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_http_nb_maint_name_buf, host, len);

    ctx->name.data = ngx_http_nb_maint_name_buf;
    ctx->name.len = len;
    ctx->handler = ngx_http_nb_maint_redis_resolved;
    ctx->data = store;
    ctx->timeout = clcf->resolver_timeout;

    ngx_http_nb_maint_named = named;
    ngx_http_nb_maint_named_port = port;
    ngx_http_nb_maint_rctx = ctx;

    if (ngx_resolve_name(ctx) != NGX_OK) {
        /* the resolver freed ctx */
        ngx_http_nb_maint_rctx = NULL;
        ngx_http_nb_maint_redis_name_fail(host, len, "could not be resolved");
        return NGX_ERROR;
    }

    /* named() may have been called already (a cached name) */

    return NGX_AGAIN;
}


/* the worker exits: a resolution under way is dropped unanswered */

void
ngx_http_nb_maint_redis_name_cancel(void)
{
    ngx_resolver_ctx_t  *ctx;

    ctx = ngx_http_nb_maint_rctx;

    if (ctx) {
        ngx_http_nb_maint_rctx = NULL;
        ngx_resolve_name_done(ctx);
    }
}
