/*
 * nb_maint: the balancer (SPEC section 3, "Routing per mode").
 *
 * Owns the per-request peer get/free of an upstream with "nb_maint;":
 * nginx's round robin restricted to the peers the state allows (mode,
 * designated node, drain, health), in-flight and per-node request and
 * failure counts, and the 503 page instead of a 502 when no allowed node
 * is left.  Reads shared memory only (state.c); calls gate.c for who is a
 * bypass request.  upstream.c installs it per request (init_peer).
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


static ngx_int_t ngx_http_nb_maint_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_nb_maint_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);


/*
 * An upstream that has no node left for a request (no healthy node, or the
 * designated one is not): said once when that begins, by whichever worker
 * sees it first, and once when a request gets a node again; not once a
 * request.  The flag holds the time it began (the page's "since").
 */

static time_t
ngx_http_nb_maint_outage(ngx_http_nb_maint_peer_data_t *pd, ngx_log_t *log,
    ngx_uint_t on)
{
    ngx_atomic_t       *flag;
    ngx_atomic_uint_t   was, now;

    flag = &ngx_http_nb_maint_shm()->outage[ngx_min(pd->conf->index,
                                                NB_OUTAGE_UPSTREAMS - 1)];
    was = *flag;
    now = on ? (ngx_atomic_uint_t) ngx_time() : 0;

    if ((was != 0) == (on != 0) || !ngx_atomic_cmp_set(flag, was, now)) {
        return (time_t) *flag;
    }

    if (on) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "nb_maint: upstream \"%V\": no node available%s; "
                      "requests get the 503 page until one is",
                      &pd->conf->uscf->host,
                      pd->want >= 0 ? " (the designated node is not)" : "");

    } else {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "nb_maint: upstream \"%V\": a node is available again",
                      &pd->conf->uscf->host);
    }

    return (time_t) now;
}


/*
 * No allowed node: the client gets the 503 page of "mode" instead of the
 * 502 that nginx would send, and no error_page may turn it into another.
 * NGX_DECLINED, not NGX_BUSY: nginx answers 502 the same way (which the
 * header filter turns into the page) without its "no live upstreams" error
 * for every request; the outage itself is logged once.
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
    pc->sockaddr = NULL;
    pc->tries = 0;

    if (mode == NB_PAGE_NO_NODE) {
        ctx->outage = ngx_http_nb_maint_outage(pd, pc->log, 1);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "nb_maint: no allowed node in upstream \"%V\" (%s)",
                   pd->rrp.peers->name,
                   mode == NB_PAGE_NO_NODE ? "no healthy node"
                                           : ngx_http_nb_maint_mode_name(mode));

    return NGX_DECLINED;
}


ngx_int_t
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

    if (pd->conf->dns) {
        return pd->conf->dns->slot_node[i];   /* peer i is slot i */
    }

    primary = pd->conf->uscf->peer.data;

    return pd->conf->nodes[(peers == primary) ? i : primary->number + i];
}


/* what the state allows: the designated node only, not down, not drained */

static ngx_uint_t
ngx_http_nb_maint_node_allowed(ngx_http_nb_maint_peer_data_t *pd,
    ngx_http_nb_maint_shm_t *sh, ngx_http_nb_maint_state_t *st, ngx_uint_t n)
{
    return ngx_http_nb_maint_node_use(sh, st, n, pd->want) == NB_USE_OK;
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

        if (peer->down) {
            continue;    /* also the empty slots of DNS members: cheap */
        }

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

    /* DNS members: this worker's peers follow the owner's table first */
    ngx_http_nb_maint_dns_apply(pd->conf);

    if (ngx_http_nb_maint_get_rr_peer(pc, pd, sh, st) != NGX_OK) {
        pd->node = -1;
        return ngx_http_nb_maint_no_peer(pc, pd, NB_PAGE_NO_NODE);
    }

    (void) ngx_atomic_fetch_add(&sh->nodes[pd->node].active, 1);
    (void) ngx_atomic_fetch_add(&sh->nodes[pd->node].requests, 1);

    if (sh->outage[ngx_min(pd->conf->index, NB_OUTAGE_UPSTREAMS - 1)]) {
        ngx_http_nb_maint_outage(pd, pc->log, 0);
    }

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
