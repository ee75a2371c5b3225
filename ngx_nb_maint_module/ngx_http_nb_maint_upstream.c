/*
 * nb_maint: "nb_maint;" and "nb_maint_check" in an upstream block, and the
 * upstream's set-up at configuration time (SPEC section 4).
 *
 * Owns the per-upstream configuration: the node list, the check
 * parameters and their defaults, and the postconfiguration checks.  Calls
 * nginx's round robin init and hands requests to balancer.c.
 */

#include "ngx_http_nb_maint.h"


static ngx_int_t ngx_http_nb_maint_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);


/* "nb_maint;" in an upstream block */

char *
ngx_http_nb_maint_upstream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_nb_maint_srv_conf_t *nscf = conf;

    ngx_http_upstream_srv_conf_t  *uscf;

    if (nscf->enabled) {
        return "is duplicate";
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint\" cannot be combined with another "
                           "load balancing method, and must come before "
                           "\"keepalive\"");
        return NGX_CONF_ERROR;
    }

    uscf->peer.init_upstream = ngx_http_nb_maint_init_upstream;

    /* every server parameter that round robin takes */

    uscf->flags = NGX_HTTP_UPSTREAM_CREATE
                  |NGX_HTTP_UPSTREAM_WEIGHT
                  |NGX_HTTP_UPSTREAM_MAX_CONNS
                  |NGX_HTTP_UPSTREAM_MAX_FAILS
                  |NGX_HTTP_UPSTREAM_FAIL_TIMEOUT
                  |NGX_HTTP_UPSTREAM_DOWN
                  |NGX_HTTP_UPSTREAM_BACKUP;

    nscf->enabled = 1;
    nscf->uscf = uscf;

    return NGX_CONF_OK;
}


/* body=~regex of nb_maint_check */

static char *
ngx_http_nb_maint_check_body(ngx_conf_t *cf,
    ngx_http_nb_maint_check_conf_t *ck, ngx_str_t *v)
{
    u_char               errstr[NGX_MAX_CONF_ERRSTR];
    ngx_regex_compile_t  rc;

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));
    rc.pattern.data = v->data + 1;
    rc.pattern.len = v->len - 1;
    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_check\": invalid regex \"%V\": %V",
                           v, &rc.err);
        return NGX_CONF_ERROR;
    }

    ck->body = rc.regex;

    return NGX_CONF_OK;
}


/*
 * One parameter of nb_maint_check: NGX_CONF_OK, NGX_CONF_ERROR (logged),
 * or "" for an invalid value.
 */

static char *
ngx_http_nb_maint_check_param(ngx_conf_t *cf,
    ngx_http_nb_maint_check_conf_t *ck, ngx_str_t *value)
{
    ngx_str_t   v;
    ngx_int_t   n;
    ngx_uint_t  i;

#define nb_param(p)  (value->len > sizeof(p) - 1                              \
                      && ngx_strncmp(value->data, p, sizeof(p) - 1) == 0      \
                      && (v.data = value->data + sizeof(p) - 1,               \
                          v.len = value->len - (sizeof(p) - 1), 1))

    if (nb_param("interval=")) {
        ck->interval = ngx_parse_time(&v, 0);
        return (ck->interval == (ngx_msec_t) NGX_ERROR || ck->interval < 10)
               ? "" : NGX_CONF_OK;
    }

    if (nb_param("timeout=")) {
        ck->timeout = ngx_parse_time(&v, 0);
        return (ck->timeout == (ngx_msec_t) NGX_ERROR || ck->timeout < 1)
               ? "" : NGX_CONF_OK;
    }

    if (nb_param("rise=") || nb_param("fall=")) {
        n = ngx_atoi(v.data, v.len);
        if (n < 1 || n > 100) {
            return "";
        }

        if (value->data[0] == 'r') {
            ck->rise = n;

        } else {
            ck->fall = n;
        }

        return NGX_CONF_OK;
    }

    if (nb_param("uri=")) {
        if (v.data[0] != '/') {
            return "";
        }

        for (i = 0; i < v.len; i++) {
            if (v.data[i] <= ' ' || v.data[i] >= 0x7f) {
                return "";
            }
        }

        ck->uri = v;
        return NGX_CONF_OK;
    }

    if (nb_param("status=")) {
        n = ngx_atoi(v.data, v.len);
        if (n < 100 || n > 599) {
            return "";
        }

        ck->status = n;
        return NGX_CONF_OK;
    }

    if (nb_param("body=")) {
        if (v.len < 2 || v.data[0] != '~') {
            return "";
        }

        return ngx_http_nb_maint_check_body(cf, ck, &v);
    }

#undef nb_param

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"nb_maint_check\": unknown parameter \"%V\"", value);
    return NGX_CONF_ERROR;
}


/* nb_maint_check interval=2s timeout=1s rise=2 fall=3 uri=... status=200
 *                body=~regex */

char *
ngx_http_nb_maint_check(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_nb_maint_srv_conf_t *nscf = conf;

    char                            *rv;
    ngx_str_t                       *value;
    ngx_uint_t                       i;
    ngx_http_nb_maint_check_conf_t  *ck;

    ck = &nscf->check;

    if (ck->set || ck->off) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* checks are on by default: "off" is the only way to have none */
    if (cf->args->nelts == 2 && value[1].len == 3
        && ngx_strncmp(value[1].data, "off", 3) == 0)
    {
        ck->off = 1;
        return NGX_CONF_OK;
    }

    ck->set = 1;

    for (i = 1; i < cf->args->nelts; i++) {
        rv = ngx_http_nb_maint_check_param(cf, ck, &value[i]);

        if (rv == NGX_CONF_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (rv != NGX_CONF_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"nb_maint_check\": invalid value \"%V\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* the default body=~^ok\s*$ of an upstream without nb_maint_check */

static ngx_int_t
ngx_http_nb_maint_check_default(ngx_conf_t *cf,
    ngx_http_nb_maint_srv_conf_t *nscf)
{
    u_char               errstr[NGX_MAX_CONF_ERRSTR];
    ngx_regex_compile_t  rc;

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    ngx_str_set(&rc.pattern, "^ok\\s*$");
    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "nb_maint: default check regex: %V", &rc.err);
        return NGX_ERROR;
    }

    nscf->check.body = rc.regex;

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_uint_t                       n;
    ngx_http_upstream_rr_peer_t     *peer;
    ngx_http_upstream_rr_peers_t    *peers;
    ngx_http_nb_maint_srv_conf_t    *nscf, **up;
    ngx_http_nb_maint_main_conf_t   *nmcf;

    if (ngx_http_upstream_init_round_robin(cf, us) != NGX_OK) {
        return NGX_ERROR;
    }

    nscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_nb_maint_module);
    nmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_nb_maint_module);

    if (nmcf->shm_zone == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"nb_maint\" in upstream \"%V\" requires "
                      "\"nb_maint_zone\" in the http block", &us->host);
        return NGX_ERROR;
    }

    /* nodes: the primary servers, then the backup ones */

    n = 0;

    for (peers = us->peer.data; peers; peers = peers->next) {
        for (peer = peers->peer; peer; peer = peer->next) {
            n++;
        }
    }

    nscf->nnodes = n;
    nscf->nodes = ngx_pcalloc(cf->pool, n * sizeof(ngx_uint_t));
    nscf->down = ngx_pcalloc(cf->pool, n * sizeof(ngx_uint_t));

    if (nscf->nodes == NULL || nscf->down == NULL) {
        return NGX_ERROR;
    }

    /* SPEC section 4: on by default, NocoBase's own readiness test */
    if (!nscf->check.off) {
        if (nscf->check.body == NULL
            && ngx_http_nb_maint_check_default(cf, nscf) != NGX_OK)
        {
            return NGX_ERROR;
        }

        nscf->check.set = 1;

        ngx_conf_init_msec_value(nscf->check.interval, 2000);
        ngx_conf_init_msec_value(nscf->check.timeout, 1000);
        ngx_conf_init_uint_value(nscf->check.rise, 2);
        ngx_conf_init_uint_value(nscf->check.fall, 3);
        ngx_conf_init_uint_value(nscf->check.status, 200);

        if (nscf->check.uri.len == 0) {
            ngx_str_set(&nscf->check.uri, "/api/__health_check");
        }
    }

    if (nscf->dns && ngx_http_nb_maint_dns_init_upstream(cf, nscf) != NGX_OK) {
        return NGX_ERROR;
    }

    up = ngx_array_push(&nmcf->upstreams);
    if (up == NULL) {
        return NGX_ERROR;
    }

    *up = nscf;
    nscf->index = nmcf->upstreams.nelts - 1;

    us->peer.init = ngx_http_nb_maint_init_peer;
    nscf->initialized = 1;

    return NGX_OK;
}


/* at postconfiguration: nothing took nb_maint's place, checks have it */

ngx_int_t
ngx_http_nb_maint_upstreams_verify(ngx_conf_t *cf)
{
    ngx_uint_t                       i;
    ngx_http_nb_maint_srv_conf_t    *nscf;
    ngx_http_upstream_srv_conf_t   **uscfp;
    ngx_http_upstream_main_conf_t   *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (uscfp[i]->srv_conf == NULL) {
            continue;
        }

        nscf = ngx_http_conf_upstream_srv_conf(uscfp[i],
                                               ngx_http_nb_maint_module);

        if ((nscf->check.set || nscf->check.off || nscf->dns)
            && !nscf->enabled)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%s\" in upstream \"%V\" needs "
                          "\"nb_maint;\" there",
                          nscf->dns ? "nb_maint_resolve" : "nb_maint_check",
                          &uscfp[i]->host);
            return NGX_ERROR;
        }

        if (nscf->enabled && !nscf->initialized) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"nb_maint\" in upstream \"%V\" is replaced by "
                          "another load balancing method", &uscfp[i]->host);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
