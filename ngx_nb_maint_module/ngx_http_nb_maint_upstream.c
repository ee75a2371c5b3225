/*
 * nb_maint: upstream nodes (SPEC section 3): the node table in shared
 * memory, "nb_maint;" in an upstream block, and nodes as JSON.
 *
 * Node entries are keyed by id and keep their index while any generation
 * that may still run uses them, so that workers of an older configuration
 * keep valid indexes across a reload; unused ones are reused.
 */

#include "ngx_http_nb_maint.h"


typedef struct {
    /* the round-robin data must be first */
    ngx_http_upstream_rr_peer_data_t   rrp;
    ngx_http_nb_maint_srv_conf_t      *conf;
    ngx_http_request_t                *request;
    ngx_int_t                          node;      /* counted in active */
    ngx_int_t                          want;      /* designated node, -1 */
} ngx_http_nb_maint_peer_data_t;


static ngx_int_t ngx_http_nb_maint_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_nb_maint_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_nb_maint_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_nb_maint_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static void ngx_http_nb_maint_nodes_reclaim(ngx_http_nb_maint_shm_t *sh,
    ngx_uint_t *live, ngx_uint_t nlive, ngx_log_t *log);
static ngx_int_t ngx_http_nb_maint_node_add(ngx_http_nb_maint_shm_t *sh,
    ngx_str_t *id, ngx_uint_t *from);


/*
 * No allowed node: the client gets the 503 page of "mode" instead of the
 * 502 that nginx would send, and no error_page may turn it into another.
 */

static ngx_int_t
ngx_http_nb_maint_no_peer(ngx_peer_connection_t *pc,
    ngx_http_nb_maint_peer_data_t *pd, ngx_uint_t mode)
{
    ngx_http_request_t       *r;
    ngx_http_nb_maint_ctx_t  *ctx;

    r = pd->request;

    ctx = ngx_http_nb_maint_get_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->no_node = 1;
    ctx->page_mode = mode;

    nb_count(ngx_http_nb_maint_shm(),
             mode == NB_PAGE_NO_NODE ? NB_OUT_NO_NODE : NB_OUT_GATED);
    r->error_page = 1;

    pc->name = pd->rrp.peers->name;
    pc->tries = 0;

    ngx_log_error(NGX_LOG_INFO, pc->log, 0,
                  "nb_maint: no allowed node in upstream \"%V\" (%s)",
                  pd->rrp.peers->name,
                  mode == NB_PAGE_NO_NODE ? "no healthy node"
                                          : ngx_http_nb_maint_mode_name(mode));

    return NGX_BUSY;
}


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


/* nb_maint_check interval=2s timeout=1s rise=2 fall=3 uri=... status=200
 *                body=~regex */

char *
ngx_http_nb_maint_check(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_nb_maint_srv_conf_t *nscf = conf;

    u_char                           errstr[NGX_MAX_CONF_ERRSTR];
    ngx_str_t                       *value, v;
    ngx_int_t                        n;
    ngx_uint_t                       i;
    ngx_regex_compile_t              rc;
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

#define nb_param(p)  (value[i].len > sizeof(p) - 1                            \
                      && ngx_strncmp(value[i].data, p, sizeof(p) - 1) == 0    \
                      && (v.data = value[i].data + sizeof(p) - 1,             \
                          v.len = value[i].len - (sizeof(p) - 1), 1))

        if (nb_param("interval=")) {
            ck->interval = ngx_parse_time(&v, 0);
            if (ck->interval == (ngx_msec_t) NGX_ERROR || ck->interval < 10) {
                goto invalid;
            }

        } else if (nb_param("timeout=")) {
            ck->timeout = ngx_parse_time(&v, 0);
            if (ck->timeout == (ngx_msec_t) NGX_ERROR || ck->timeout < 1) {
                goto invalid;
            }

        } else if (nb_param("rise=")) {
            n = ngx_atoi(v.data, v.len);
            if (n < 1 || n > 100) {
                goto invalid;
            }
            ck->rise = n;

        } else if (nb_param("fall=")) {
            n = ngx_atoi(v.data, v.len);
            if (n < 1 || n > 100) {
                goto invalid;
            }
            ck->fall = n;

        } else if (nb_param("uri=")) {
            if (v.data[0] != '/') {
                goto invalid;
            }

            for (n = 0; n < (ngx_int_t) v.len; n++) {
                if (v.data[n] <= ' ' || v.data[n] >= 0x7f) {
                    goto invalid;
                }
            }
            ck->uri = v;

        } else if (nb_param("status=")) {
            n = ngx_atoi(v.data, v.len);
            if (n < 100 || n > 599) {
                goto invalid;
            }
            ck->status = n;

        } else if (nb_param("body=")) {
            if (v.len < 2 || v.data[0] != '~') {
                goto invalid;
            }

            ngx_memzero(&rc, sizeof(ngx_regex_compile_t));
            rc.pattern.data = v.data + 1;
            rc.pattern.len = v.len - 1;
            rc.pool = cf->pool;
            rc.err.len = NGX_MAX_CONF_ERRSTR;
            rc.err.data = errstr;

            if (ngx_regex_compile(&rc) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"nb_maint_check\": invalid regex "
                                   "\"%V\": %V", &v, &rc.err);
                return NGX_CONF_ERROR;
            }

            ck->body = rc.regex;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"nb_maint_check\": unknown parameter "
                               "\"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

#undef nb_param
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"nb_maint_check\": invalid value \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
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

    up = ngx_array_push(&nmcf->upstreams);
    if (up == NULL) {
        return NGX_ERROR;
    }

    *up = nscf;

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

        if ((nscf->check.set || nscf->check.off) && !nscf->enabled) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"nb_maint_check\" in upstream \"%V\" needs "
                          "\"nb_maint;\" there", &uscfp[i]->host);
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


static ngx_int_t
ngx_http_nb_maint_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_nb_maint_peer_data_t  *pd;

    pd = ngx_palloc(r->pool, sizeof(ngx_http_nb_maint_peer_data_t));
    if (pd == NULL) {
        return NGX_ERROR;
    }

    r->upstream->peer.data = &pd->rrp;

    if (ngx_http_upstream_init_round_robin_peer(r, us) != NGX_OK) {
        return NGX_ERROR;
    }

    pd->conf = ngx_http_conf_upstream_srv_conf(us, ngx_http_nb_maint_module);
    pd->request = r;
    pd->node = -1;

    r->upstream->peer.get = ngx_http_nb_maint_get_peer;
    r->upstream->peer.free = ngx_http_nb_maint_free_peer;

    return NGX_OK;
}


/* the node index of peer i of "peers" (the primary or the backup list) */

static ngx_uint_t
ngx_http_nb_maint_peer_node(ngx_http_nb_maint_peer_data_t *pd,
    ngx_http_upstream_rr_peers_t *peers, ngx_uint_t i)
{
    ngx_http_upstream_rr_peers_t  *primary;

    primary = pd->conf->uscf->peer.data;

    return pd->conf->nodes[(peers == primary) ? i : primary->number + i];
}


/* what the state allows: the designated node only, not down, not drained */

static ngx_uint_t
ngx_http_nb_maint_node_allowed(ngx_http_nb_maint_peer_data_t *pd,
    ngx_http_nb_maint_shm_t *sh, ngx_http_nb_maint_state_t *st, ngx_uint_t n)
{
    if (pd->want >= 0 && (ngx_int_t) n != pd->want) {
        return 0;
    }

    /* a commanding node serves only as the designated node */
    if (sh->node_down[n] == NB_NODE_DOWN
        || (sh->node_down[n] == NB_NODE_BUSY && pd->want < 0))
    {
        return 0;
    }

    return !nb_drained(st, n);
}


/*
 * What round robin would consider, less what the state forbids.  nginx's
 * passive marks (max_fails) hold until fail_timeout, or until a health
 * check that started after the failure has passed.
 */

static ngx_uint_t
ngx_http_nb_maint_peer_usable(ngx_http_nb_maint_peer_data_t *pd,
    ngx_http_nb_maint_shm_t *sh, ngx_http_nb_maint_state_t *st,
    ngx_http_upstream_rr_peer_t *peer, ngx_uint_t n, time_t now)
{
    if (peer->down || !ngx_http_nb_maint_node_allowed(pd, sh, st, n)) {
        return 0;
    }

    if (peer->max_fails
        && peer->fails >= peer->max_fails
        && now - peer->checked <= peer->fail_timeout
        && !(pd->conf->check.set
             && (time_t) (sh->nodes[n].last_pass / 1000) > peer->checked))
    {
        return 0;
    }

    if (peer->max_conns && peer->conns >= peer->max_conns) {
        return 0;
    }

    return 1;
}


/* smooth weighted round robin over the usable peers of one list */

static ngx_http_upstream_rr_peer_t *
ngx_http_nb_maint_pick(ngx_http_nb_maint_peer_data_t *pd,
    ngx_http_nb_maint_shm_t *sh, ngx_http_nb_maint_state_t *st,
    ngx_uint_t *pi)
{
    time_t                         now;
    uintptr_t                      m;
    ngx_int_t                      total;
    ngx_uint_t                     i, n, p;
    ngx_http_upstream_rr_peer_t   *peer, *best;
    ngx_http_upstream_rr_peers_t  *peers;

    now = ngx_time();
    peers = pd->rrp.peers;
    best = NULL;
    total = 0;
    p = 0;

    for (peer = peers->peer, i = 0; peer; peer = peer->next, i++) {

        n = i / (8 * sizeof(uintptr_t));
        m = (uintptr_t) 1 << i % (8 * sizeof(uintptr_t));

        if (pd->rrp.tried[n] & m) {
            continue;
        }

        if (!ngx_http_nb_maint_peer_usable(pd, sh, st, peer,
                                 ngx_http_nb_maint_peer_node(pd, peers, i),
                                 now))
        {
            continue;
        }

        peer->current_weight += peer->effective_weight;
        total += peer->effective_weight;

        if (peer->effective_weight < peer->weight) {
            peer->effective_weight++;
        }

        if (best == NULL || peer->current_weight > best->current_weight) {
            best = peer;
            p = i;
        }
    }

    if (best == NULL) {
        return NULL;
    }

    pd->rrp.current = best;

    n = p / (8 * sizeof(uintptr_t));
    m = (uintptr_t) 1 << p % (8 * sizeof(uintptr_t));
    pd->rrp.tried[n] |= m;

    best->current_weight -= total;

    if (now - best->checked > best->fail_timeout) {
        best->checked = now;
    }

    *pi = p;

    return best;
}


/*
 * ngx_http_upstream_get_round_robin_peer(), restricted to the peers the
 * state allows: the primary servers first, the backup ones once no primary
 * is usable.  NGX_BUSY: no allowed peer is left.
 */

static ngx_int_t
ngx_http_nb_maint_get_rr_peer(ngx_peer_connection_t *pc,
    ngx_http_nb_maint_peer_data_t *pd, ngx_http_nb_maint_shm_t *sh,
    ngx_http_nb_maint_state_t *st)
{
    ngx_uint_t                     i, n, p;
    ngx_http_upstream_rr_peer_t   *peer;
    ngx_http_upstream_rr_peers_t  *peers;

    peers = pd->rrp.peers;
    p = 0;

    ngx_http_upstream_rr_peers_wlock(peers);

    if (peers->single) {
        peer = peers->peer;

        if (peer->down
            || !ngx_http_nb_maint_node_allowed(pd, sh, st,
                                   ngx_http_nb_maint_peer_node(pd, peers, 0))
            || (peer->max_conns && peer->conns >= peer->max_conns))
        {
            goto failed;
        }

        pd->rrp.current = peer;

    } else {
        peer = ngx_http_nb_maint_pick(pd, sh, st, &p);

        if (peer == NULL) {
            goto failed;
        }
    }

    pc->sockaddr = peer->sockaddr;
    pc->socklen = peer->socklen;
    pc->name = &peer->name;

    peer->conns++;

    ngx_http_upstream_rr_peers_unlock(peers);

    pd->node = ngx_http_nb_maint_peer_node(pd, peers, p);

    return NGX_OK;

failed:

    ngx_http_upstream_rr_peers_unlock(peers);

    if (peers->next == NULL) {
        return NGX_BUSY;
    }

    /* the backup servers, as round robin does */

    pd->rrp.peers = peers->next;

    n = (pd->rrp.peers->number + (8 * sizeof(uintptr_t) - 1))
            / (8 * sizeof(uintptr_t));

    for (i = 0; i < n; i++) {
        pd->rrp.tried[i] = 0;
    }

    return ngx_http_nb_maint_get_rr_peer(pc, pd, sh, st);
}


/*
 * Round robin over the peers the state allows: a peer that the mode, drain
 * or health forbids is never a candidate, so proxy_next_upstream cannot
 * reach it either.
 */

static ngx_int_t
ngx_http_nb_maint_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_nb_maint_peer_data_t *pd = data;

    ngx_uint_t                      bypass, mode;
    ngx_http_request_t             *r;
    ngx_http_nb_maint_ctx_t        *ctx;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_state_t      *st;

    r = pd->request;
    sh = ngx_http_nb_maint_shm();
    st = ngx_http_nb_maint_snapshot();

    pc->cached = 0;
    pc->connection = NULL;

    mode = st->mode;

    if (mode == NB_MODE_RESTORING) {
        mode = st->restoring_from;
    }

    /*
     * Who the client is matters in upgrade mode only: elsewhere bypass and
     * public requests go the same way, and the cookie is not even looked at.
     * nb_maint_pass URIs are never gated: they are routed as bypass requests.
     */
    bypass = 0;

    if (mode == NB_MODE_UPGRADE) {
        bypass = ngx_http_nb_maint_is_bypass(r)
                 || ngx_http_nb_maint_passed(r,
                        ngx_http_get_module_loc_conf(r,
                                                     ngx_http_nb_maint_module));
    }

    /* want: -1 any allowed node, else the designated node's index */

    pd->want = -1;

    if (mode == NB_MODE_UPGRADE && !bypass) {
        return ngx_http_nb_maint_no_peer(pc, pd, st->mode);
    }

    if (mode == NB_MODE_MAINTENANCE
        || (mode == NB_MODE_UPGRADE && st->node_len))
    {
        /* kept with the state: no search per request */
        pd->want = ngx_http_nb_maint_designated();
        if (pd->want < 0) {
            return ngx_http_nb_maint_no_peer(pc, pd, NB_PAGE_NO_NODE);
        }
    }

    if (ngx_http_nb_maint_get_rr_peer(pc, pd, sh, st) != NGX_OK) {
        pd->node = -1;
        return ngx_http_nb_maint_no_peer(pc, pd, NB_PAGE_NO_NODE);
    }

    (void) ngx_atomic_fetch_add(&sh->nodes[pd->node].active, 1);
    (void) ngx_atomic_fetch_add(&sh->nodes[pd->node].requests, 1);

    nb_count(sh, NB_OUT_PROXIED);

    if (bypass) {
        nb_count(sh, NB_OUT_BYPASS);
    }

    ctx = ngx_http_nb_maint_get_ctx(r);
    if (ctx) {
        ctx->node = pd->node;
    }

    return NGX_OK;
}


/* after a failed try: is any peer left that the next try could use? */

static ngx_uint_t
ngx_http_nb_maint_peer_left(ngx_http_nb_maint_peer_data_t *pd)
{
    time_t                          now;
    uintptr_t                       m;
    ngx_uint_t                      i, n, left;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_state_t      *st;
    ngx_http_upstream_rr_peer_t    *peer;
    ngx_http_upstream_rr_peers_t   *peers;

    if (pd->rrp.peers->single) {
        return 0;               /* round robin never tries it twice */
    }

    sh = ngx_http_nb_maint_shm();
    st = ngx_http_nb_maint_snapshot();
    now = ngx_time();
    left = 0;

    for (peers = pd->rrp.peers; peers && !left; peers = peers->next) {

        ngx_http_upstream_rr_peers_rlock(peers);

        for (peer = peers->peer, i = 0; peer; peer = peer->next, i++) {

            n = i / (8 * sizeof(uintptr_t));
            m = (uintptr_t) 1 << i % (8 * sizeof(uintptr_t));

            if (peers == pd->rrp.peers && (pd->rrp.tried[n] & m)) {
                continue;
            }

            if (ngx_http_nb_maint_peer_usable(pd, sh, st, peer,
                                  ngx_http_nb_maint_peer_node(pd, peers, i),
                                  now))
            {
                left = 1;
                break;
            }
        }

        ngx_http_upstream_rr_peers_unlock(peers);
    }

    return left;
}


static void
ngx_http_nb_maint_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_nb_maint_peer_data_t *pd = data;

    ngx_http_nb_maint_ctx_t  *ctx;
    ngx_http_nb_maint_shm_t  *sh;

    if (pd->node >= 0) {
        sh = ngx_http_nb_maint_shm();
        ctx = ngx_http_get_module_ctx(pd->request, ngx_http_nb_maint_module);

        /* an upgraded connection was moved from active to websockets */
        if (ctx && ctx->ws) {
            ctx->ws = 0;
            (void) ngx_atomic_fetch_add(&sh->nodes[pd->node].websockets, -1);

        } else {
            (void) ngx_atomic_fetch_add(&sh->nodes[pd->node].active, -1);
        }

        if (state & NGX_PEER_FAILED) {
            (void) ngx_atomic_fetch_add(&sh->nodes[pd->node].failures, 1);
        }

        pd->node = -1;
    }

    ngx_http_upstream_free_round_robin_peer(pc, data, state);

    /*
     * The last allowed node could not be reached (refused, connect timed
     * out): the client gets the no-node 503 now, as every later request of
     * the same outage does, never a 502 or 504.  A node that took the
     * request and then failed it keeps nginx's own answer.
     */

    if ((state & NGX_PEER_FAILED)
        && pd->request->upstream && !pd->request->upstream->request_sent
        && !ngx_http_nb_maint_peer_left(pd))
    {
        ctx = ngx_http_nb_maint_get_ctx(pd->request);

        if (ctx && !ctx->no_node) {
            ctx->no_node = 1;
            ctx->page_mode = NB_PAGE_NO_NODE;
            pd->request->error_page = 1;
        }
    }
}


/* a configured peer's name must be a valid node id */

static ngx_int_t
ngx_http_nb_maint_peer_id_check(ngx_http_upstream_rr_peer_t *peer,
    ngx_str_t *upstream, ngx_log_t *log)
{
    ngx_str_t  name;

    if (ngx_http_nb_maint_node_id_valid(peer->name.data, peer->name.len)) {
        return NGX_OK;
    }

    name.len = ngx_http_nb_maint_escape_log(NULL, peer->name.data,
                                            ngx_min(peer->name.len, 256));
    name.data = ngx_alloc(name.len, log);

    if (name.data) {
        (void) ngx_http_nb_maint_escape_log(name.data, peer->name.data,
                                            ngx_min(peer->name.len, 256));
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "nb_maint: server \"%V\" of upstream \"%V\" is "
                      "not a valid node id (at most %d bytes, no "
                      "control characters, quotes or backslashes)",
                      &name, upstream, NB_NODE_ID_LEN - 1);
        ngx_free(name.data);
    }

    return NGX_ERROR;
}


/* configured peer j of an upstream: the primary ones, then the backups */

ngx_http_upstream_rr_peer_t *
ngx_http_nb_maint_peer(ngx_http_nb_maint_srv_conf_t *up, ngx_uint_t j)
{
    ngx_http_upstream_rr_peer_t   *peer;
    ngx_http_upstream_rr_peers_t  *peers;

    for (peers = up->uscf->peer.data; peers; peers = peers->next) {
        for (peer = peers->peer; peer; peer = peer->next) {
            if (j-- == 0) {
                return peer;
            }
        }
    }

    return NULL;
}


/*
 * Match every configured peer to a node entry (master, at zone init).
 *
 * Entries carry the range of generations that use them (the newest one is
 * "mark", the one being loaded).  Workers of older generations keep their
 * indexes until they exit, so an entry is freed only when no generation
 * that may still run falls in its range, and it is not drained or
 * designated (the state refers to it).  New ids take a free entry, or one
 * more at the end.  Ranges only grow, so a configuration that nginx rolls
 * back frees nothing early.
 */

ngx_int_t
ngx_http_nb_maint_nodes_init(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_shm_t *sh, ngx_uint_t mark, ngx_log_t *log)
{
    ngx_int_t                       idx;
    ngx_int_t                       nlive;
    ngx_uint_t                      i, j, pass, free;
    ngx_uint_t                      live[NB_WORKER_SLOTS + 1];
    ngx_http_upstream_rr_peer_t    *peer;
    ngx_http_upstream_rr_peers_t   *peers;
    ngx_http_nb_maint_node_t       *node;
    ngx_http_nb_maint_srv_conf_t  **up;

    up = nmcf->upstreams.elts;

    /* pass 0: mark the entries this configuration keeps; pass 1: add */

    for (pass = 0; pass < 2; pass++) {

        if (pass == 1) {
            nlive = ngx_http_nb_maint_live_gens(sh, mark, live,
                                                NB_WORKER_SLOTS + 1);
            if (nlive > 0) {
                ngx_http_nb_maint_nodes_reclaim(sh, live, nlive, log);
            }
        }

        free = 0;

        for (i = 0; i < nmcf->upstreams.nelts; i++) {
            j = 0;

            for (peers = up[i]->uscf->peer.data; peers; peers = peers->next) {
                for (peer = peers->peer; peer; peer = peer->next, j++) {

                    if (pass == 0
                        && ngx_http_nb_maint_peer_id_check(peer,
                                                  &up[i]->uscf->host, log)
                           != NGX_OK)
                    {
                        return NGX_ERROR;
                    }

                    idx = ngx_http_nb_maint_node_find(sh, peer->name.data,
                                                      peer->name.len);

                    if (idx == NGX_ERROR) {
                        if (pass == 0) {
                            continue;
                        }

                        idx = ngx_http_nb_maint_node_add(sh, &peer->name,
                                                         &free);
                        if (idx == NGX_ERROR) {
                            ngx_log_error(NGX_LOG_EMERG, log, 0,
                                          "nb_maint: more than %d nodes in "
                                          "use (old configurations' workers "
                                          "may still hold some)",
                                          NB_MAX_NODES);
                            return NGX_ERROR;
                        }
                    }

                    node = &sh->nodes[idx];

                    if (node->gen_first == 0) {
                        node->gen_first = mark;
                    }

                    if (node->gen_last < mark) {
                        node->gen_last = mark;
                    }

                    up[i]->nodes[j] = idx;
                    up[i]->down[j] = peer->down;
                }
            }
        }
    }

    return NGX_OK;
}


/* free the entries that nothing uses or refers to any more */

static void
ngx_http_nb_maint_nodes_reclaim(ngx_http_nb_maint_shm_t *sh,
    ngx_uint_t *live, ngx_uint_t nlive, ngx_log_t *log)
{
    ngx_uint_t                 i, k;
    ngx_http_nb_maint_node_t  *node;

    for (i = 0; i < sh->nnodes; i++) {
        node = &sh->nodes[i];

        for (k = 0; k < nlive; k++) {
            if (live[k] >= node->gen_first && live[k] <= node->gen_last) {
                break;
            }
        }

        if (node->id_len == 0
            || k < nlive
            || nb_drained(&sh->state, i)
            || (sh->state.node_len == node->id_len
                && ngx_memcmp(sh->state.node, node->id, node->id_len) == 0))
        {
            continue;
        }

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "nb_maint: node %*s is in no configuration any more, "
                      "its entry is free", node->id_len, node->id);

        node->id_len = 0;
        ngx_memory_barrier();

        ngx_memzero(node, sizeof(ngx_http_nb_maint_node_t));
        sh->node_down[i] = NB_NODE_OK;
    }
}


/* an entry for a new id: a free one, else one more; the id is complete
 * before a lookup can match it */

static ngx_int_t
ngx_http_nb_maint_node_add(ngx_http_nb_maint_shm_t *sh, ngx_str_t *id,
    ngx_uint_t *from)
{
    ngx_uint_t                 i;
    ngx_http_nb_maint_node_t  *node;

    for (i = *from; i < sh->nnodes; i++) {
        if (sh->nodes[i].id_len == 0) {
            break;
        }
    }

    *from = i;

    if (i == NB_MAX_NODES) {
        return NGX_ERROR;
    }

    node = &sh->nodes[i];

    ngx_memzero(node, sizeof(ngx_http_nb_maint_node_t));
    ngx_memcpy(node->id, id->data, id->len);
    node->health = NB_HEALTH_UNKNOWN;
    sh->node_down[i] = NB_NODE_OK;

    ngx_memory_barrier();
    node->id_len = id->len;

    if (i == sh->nnodes) {
        ngx_memory_barrier();
        sh->nnodes++;
    }

    return i;
}


cJSON *
ngx_http_nb_maint_upstreams_json(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_state_t *st)
{
    cJSON                          *list, *obj, *nodes, *n;
    ngx_uint_t                      i, j;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_srv_conf_t  **up;

    sh = ngx_http_nb_maint_shm();

    list = cJSON_CreateArray();
    if (list == NULL) {
        return NULL;
    }

    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        obj = cJSON_CreateObject();
        cJSON_AddItemToArray(list, obj);

        cJSON_AddItemToObject(obj, "name",
                              ngx_http_nb_maint_json_strn(
                                                  up[i]->uscf->host.data,
                                                  up[i]->uscf->host.len));
        nodes = cJSON_AddArrayToObject(obj, "nodes");
        if (nodes == NULL) {
            cJSON_Delete(list);
            return NULL;
        }

        for (j = 0; j < up[i]->nnodes; j++) {
            n = ngx_http_nb_maint_node_json(&sh->nodes[up[i]->nodes[j]], st,
                                            up[i]->nodes[j]);
            if (n == NULL) {
                cJSON_Delete(list);
                return NULL;
            }

            if (up[i]->down[j]) {
                cJSON_AddBoolToObject(n, "config_down", 1);
            }

            if (j >= ((ngx_http_upstream_rr_peers_t *)
                      up[i]->uscf->peer.data)->number)
            {
                cJSON_AddBoolToObject(n, "backup", 1);
            }

            cJSON_AddItemToArray(nodes, n);
        }
    }

    return list;
}


/* a node that restore still waits for (SPEC section 3) */

ngx_uint_t
ngx_http_nb_maint_node_pending(ngx_http_nb_maint_srv_conf_t *up,
    ngx_uint_t j, ngx_http_nb_maint_state_t *st)
{
    ngx_http_nb_maint_node_t  *node;

    if (st->mode != NB_MODE_RESTORING || up->down[j] || !up->check.set) {
        return 0;
    }

    node = &ngx_http_nb_maint_shm()->nodes[up->nodes[j]];

    return node->restore_mark != st->restore_started
           || node->restore_passes < up->check.rise;
}


ngx_uint_t
ngx_http_nb_maint_pending_count(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_state_t *st)
{
    ngx_uint_t                      i, j, n;
    ngx_http_nb_maint_srv_conf_t  **up;

    up = nmcf->upstreams.elts;
    n = 0;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        for (j = 0; j < up[i]->nnodes; j++) {
            n += ngx_http_nb_maint_node_pending(up[i], j, st);
        }
    }

    return n;
}


cJSON *
ngx_http_nb_maint_pending_json(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_state_t *st)
{
    cJSON                          *list;
    ngx_uint_t                      i, j, k, dup;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_node_t       *node;
    ngx_http_nb_maint_srv_conf_t  **up;

    list = cJSON_CreateArray();
    if (list == NULL) {
        return NULL;
    }

    sh = ngx_http_nb_maint_shm();
    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        for (j = 0; j < up[i]->nnodes; j++) {
            if (!ngx_http_nb_maint_node_pending(up[i], j, st)) {
                continue;
            }

            node = &sh->nodes[up[i]->nodes[j]];

            /* a node in two upstreams is listed once */
            dup = 0;
            for (k = 0; k < (ngx_uint_t) cJSON_GetArraySize(list); k++) {
                if (ngx_strncmp(cJSON_GetArrayItem(list, k)->valuestring,
                                node->id, node->id_len) == 0
                    && cJSON_GetArrayItem(list, k)->valuestring[node->id_len]
                       == '\0')
                {
                    dup = 1;
                }
            }

            if (!dup) {
                cJSON_AddItemToArray(list,
                          ngx_http_nb_maint_json_strn(node->id, node->id_len));
            }
        }
    }

    return list;
}


/*
 * A health check of node n took ms: the latency histogram and the last
 * latency.  Only the owner worker checks; atomics all the same, as a
 * worker taking the checks over may still see an old one finish.
 */

void
ngx_http_nb_maint_check_observe(ngx_http_nb_maint_node_t *n, ngx_msec_t ms)
{
    ngx_uint_t  i;
    ngx_msec_t  bounds[NB_CHECK_BUCKETS] = NB_CHECK_BOUNDS_MS;

    for (i = 0; i < NB_CHECK_BUCKETS; i++) {
        if (ms <= bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&n->check_bucket[i], 1);
    (void) ngx_atomic_fetch_add(&n->check_sum_ms, ms);
    n->check_ms = ms;
    ngx_memory_barrier();
    (void) ngx_atomic_fetch_add(&n->check_count, 1);
}


/* the node's counters in GET status and GET nodes/{id} */

ngx_int_t
ngx_http_nb_maint_node_stats_json(ngx_http_nb_maint_node_t *n, cJSON *obj)
{
    cJSON  *item;

    if (cJSON_AddNumberToObject(obj, "requests", (double) n->requests)
        == NULL
        || cJSON_AddNumberToObject(obj, "failures", (double) n->failures)
           == NULL)
    {
        return NGX_ERROR;
    }

    if (n->check_count) {
        item = cJSON_AddNumberToObject(obj, "check_ms", (double) n->check_ms);

    } else {
        item = cJSON_AddNullToObject(obj, "check_ms");
    }

    return item ? NGX_OK : NGX_ERROR;
}
