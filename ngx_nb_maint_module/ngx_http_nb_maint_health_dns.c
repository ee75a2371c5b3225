/*
 * nb_maint: following the DNS name of an nb_maint_resolve upstream (SPEC
 * section 10a), in the owner worker.
 *
 * Every owner tick, each name whose interval is up is resolved with
 * nginx's resolver (asynchronous, timed by resolver_timeout; its cache
 * honours the answer's TTL or the resolver's valid=).  A usable answer
 * becomes the slot table in shared memory: a new address takes a free slot
 * and a node entry (unknown, not routable until it passes rise checks), an
 * address gone from the answer is "leaving" (no new requests) and leaves
 * the node table once its requests and WebSockets are done; a drained one
 * is undrained through the store first, so that its id may come back as a
 * new pod.  A failed query, or an empty answer, keeps the last good set
 * (fail-static).  Calls upstream_dns.c, state.c and state_nodes.c.
 */

#include "ngx_http_nb_maint.h"


#define NB_DNS_LEAVE_MIN        1000    /* ms leaving before it may go */


static void ngx_http_nb_maint_dns_resolved(ngx_resolver_ctx_t *ctx);


static void
ngx_http_nb_maint_dns_failed(ngx_http_nb_maint_srv_conf_t *up,
    const char *err, ngx_log_t *log)
{
    size_t                       len;
    ngx_http_nb_maint_dns_sh_t  *t;

    t = ngx_http_nb_maint_dns_table(up);

    if (t->ok || t->error_len == 0) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "nb_maint: upstream \"%V\": resolving \"%V\" failed: "
                      "%s; keeping the last %ui addresses",
                      &up->uscf->host, &up->dns->host, err, t->naddrs);
    }

    len = ngx_min(ngx_strlen(err), NB_DNS_ERROR_LEN);
    ngx_memcpy(t->error, err, len);
    t->error_len = len;
    t->ok = 0;
    (void) ngx_atomic_fetch_add(&t->failures, 1);
}


static void
ngx_http_nb_maint_dns_query(ngx_http_nb_maint_srv_conf_t *up,
    ngx_log_t *log)
{
    ngx_resolver_ctx_t           *ctx;
    ngx_http_nb_maint_dns_sh_t   *t;

    t = ngx_http_nb_maint_dns_table(up);
    t->last_try = ngx_http_nb_maint_now_ms();

    ctx = ngx_resolve_start(up->dns->resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_http_nb_maint_dns_failed(up, "no resolver", log);
        return;
    }

    ctx->name = up->dns->host;
    ctx->handler = ngx_http_nb_maint_dns_resolved;
    ctx->data = up;
    ctx->timeout = up->dns->resolver_timeout;

    up->dns->busy = 1;

    /* a cached answer calls the handler at once */
    if (ngx_resolve_name(ctx) != NGX_OK) {
        up->dns->busy = 0;
        ngx_http_nb_maint_dns_failed(up, "resolver error", log);
    }
}


/* is slot k's address in the answer?  Marks the one found as placed */

static ngx_uint_t
ngx_http_nb_maint_dns_found(ngx_http_nb_maint_slot_t *s,
    ngx_sockaddr_t *addrs, socklen_t *lens, u_char *placed, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (!placed[i] && lens[i] == s->socklen
            && ngx_cmp_sockaddr(&addrs[i].sockaddr, lens[i],
                                (struct sockaddr *) &s->addr, s->socklen, 1)
               == NGX_OK)
        {
            placed[i] = 1;
            return 1;
        }
    }

    return 0;
}


/* an address of the answer takes a free slot and a node entry */

static ngx_uint_t
ngx_http_nb_maint_dns_join(ngx_http_nb_maint_srv_conf_t *up,
    ngx_http_nb_maint_dns_sh_t *t, ngx_sockaddr_t *addr, socklen_t len,
    ngx_uint_t *added, ngx_log_t *log)
{
    u_char                     id[NB_NODE_ID_LEN];
    size_t                     idlen;
    ngx_int_t                  idx;
    ngx_uint_t                 k, add;
    ngx_http_nb_maint_shm_t   *sh;
    ngx_http_nb_maint_slot_t  *s;

    sh = ngx_http_nb_maint_shm();

    for (k = 0; k < up->dns->max; k++) {
        if (t->slot[k].state == NB_SLOT_EMPTY) {
            break;
        }
    }

    if (k == up->dns->max) {
        t->overflow++;
        return 0;
    }

    idlen = ngx_sock_ntop(&addr->sockaddr, len, id, NB_NODE_ID_LEN, 1);

    idx = ngx_http_nb_maint_node_claim(sh, id, idlen,
                                       ngx_http_nb_maint_generation(), &add);
    if (idx == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "nb_maint: upstream \"%V\": no node entry left for "
                      "%*s", &up->uscf->host, idlen, id);
        return 0;
    }

    *added |= add;

    s = &t->slot[k];
    ngx_memcpy(&s->addr, addr, len);
    s->socklen = len;
    s->node = idx;
    s->since = ngx_http_nb_maint_now_ms();
    s->state = NB_SLOT_ACTIVE;
    sh->nodes[idx].leaving = 0;

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "nb_maint: upstream \"%V\": %*s joined from \"%V\"",
                  &up->uscf->host, idlen, id, &up->dns->host);

    return 1;
}


/* the slots that stay, come back or leave; returns whether any changed */

static ngx_uint_t
ngx_http_nb_maint_dns_keep(ngx_http_nb_maint_srv_conf_t *up,
    ngx_http_nb_maint_dns_sh_t *t, ngx_sockaddr_t *addrs, socklen_t *lens,
    u_char *placed, ngx_uint_t n, ngx_log_t *log)
{
    ngx_uint_t                 k, found, changed;
    ngx_http_nb_maint_shm_t   *sh;
    ngx_http_nb_maint_node_t  *node;
    ngx_http_nb_maint_slot_t  *s;

    sh = ngx_http_nb_maint_shm();
    changed = 0;

    for (k = 0; k < NB_DNS_SLOTS; k++) {
        s = &t->slot[k];

        if (s->state == NB_SLOT_EMPTY) {
            continue;
        }

        node = &sh->nodes[s->node];
        found = (k < up->dns->max)
                && ngx_http_nb_maint_dns_found(s, addrs, lens, placed, n);

        if (found && s->state == NB_SLOT_LEAVING) {
            s->state = NB_SLOT_ACTIVE;
            node->leaving = 0;
            changed = 1;

        } else if (!found && s->state == NB_SLOT_ACTIVE) {
            s->state = NB_SLOT_LEAVING;
            s->since = ngx_http_nb_maint_now_ms();
            node->leaving = 1;
            changed = 1;

            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "nb_maint: upstream \"%V\": %*s left \"%V\", "
                          "no new requests", &up->uscf->host,
                          node->id_len, node->id, &up->dns->host);
        }

        if (node->gen_last < ngx_http_nb_maint_generation()) {
            node->gen_last = ngx_http_nb_maint_generation();
        }
    }

    return changed;
}


/* a new node entry may be the designated node, or a drained id */

static void
ngx_http_nb_maint_dns_nodes_moved(ngx_http_nb_maint_shm_t *sh)
{
    ngx_http_nb_maint_publish_lock();
    sh->designated = ngx_http_nb_maint_node_find(sh, sh->state.node,
                                                 sh->state.node_len);
    ngx_http_nb_maint_drain_resolve(sh, &sh->state);
    ngx_http_nb_maint_publish_unlock();

    (void) ngx_atomic_fetch_add(&sh->nodes_seq, 1);
}


/* a usable answer: the new member set */

static void
ngx_http_nb_maint_dns_update(ngx_http_nb_maint_srv_conf_t *up,
    ngx_resolver_addr_t *ra, ngx_uint_t nra, ngx_log_t *log)
{
    u_char                       placed[NB_DNS_SLOTS];
    socklen_t                    lens[NB_DNS_SLOTS];
    ngx_uint_t                   i, n, changed, added;
    ngx_sockaddr_t               addrs[NB_DNS_SLOTS];
    ngx_http_nb_maint_shm_t     *sh;
    ngx_http_nb_maint_dns_sh_t  *t;

    sh = ngx_http_nb_maint_shm();
    t = ngx_http_nb_maint_dns_table(up);

    n = 0;

    for (i = 0; i < nra && n < NB_DNS_SLOTS; i++) {
        if (ra[i].socklen > sizeof(ngx_sockaddr_t)) {
            continue;
        }

        ngx_memcpy(&addrs[n], ra[i].sockaddr, ra[i].socklen);
        ngx_inet_set_port(&addrs[n].sockaddr, up->dns->port);
        lens[n] = ra[i].socklen;
        placed[n] = 0;
        n++;
    }

    t->overflow = 0;
    added = 0;

    ngx_http_nb_maint_nodes_lock(sh);

    t->seq++;
    ngx_memory_barrier();

    changed = ngx_http_nb_maint_dns_keep(up, t, addrs, lens, placed, n, log);

    for (i = 0; i < n; i++) {
        if (!placed[i]) {
            changed |= ngx_http_nb_maint_dns_join(up, t, &addrs[i], lens[i],
                                                  &added, log);
        }
    }

    ngx_memory_barrier();
    t->seq++;

    ngx_http_nb_maint_nodes_unlock(sh);

    if (added || changed) {
        ngx_http_nb_maint_dns_nodes_moved(sh);
    }

    if (t->overflow) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "nb_maint: upstream \"%V\": \"%V\" has %ui addresses "
                      "more than max=%ui", &up->uscf->host, &up->dns->host,
                      t->overflow, up->dns->max);
    }

    if (!t->ok && t->error_len) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "nb_maint: upstream \"%V\": \"%V\" resolves again",
                      &up->uscf->host, &up->dns->host);
    }

    t->naddrs = n;
    t->error_len = 0;
    t->last_ok = ngx_http_nb_maint_now_ms();
    t->ok = 1;

    if (changed) {
        (void) ngx_atomic_fetch_add(&t->changes, 1);
    }

    ngx_http_nb_maint_dns_apply(up);
}


static void
ngx_http_nb_maint_dns_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_http_nb_maint_srv_conf_t *up = ctx->data;

    up->dns->busy = 0;

    if (!ngx_http_nb_maint_is_owner()) {
        ngx_resolve_name_done(ctx);
        return;
    }

    if (ctx->state) {
        ngx_http_nb_maint_dns_failed(up, ngx_resolver_strerror(ctx->state),
                                     ngx_cycle->log);

    } else if (ctx->naddrs == 0) {
        ngx_http_nb_maint_dns_failed(up, "no addresses", ngx_cycle->log);

    } else {
        ngx_http_nb_maint_dns_update(up, ctx->addrs, ctx->naddrs,
                                     ngx_cycle->log);
    }

    ngx_resolve_name_done(ctx);
}


typedef struct {
    ngx_pool_t                    *pool;
    ngx_http_nb_maint_srv_conf_t  *up;
} ngx_http_nb_maint_dns_undrain_t;


static void
ngx_http_nb_maint_dns_undrained(void *data, ngx_int_t rc)
{
    ngx_http_nb_maint_dns_undrain_t *u = data;

    u->up->dns->undraining = 0;
    ngx_destroy_pool(u->pool);
}


/* a drained member that left: undrained through the store, once */

static void
ngx_http_nb_maint_dns_undrain(ngx_http_nb_maint_srv_conf_t *up,
    ngx_uint_t n, ngx_log_t *log)
{
    ngx_int_t                         rc;
    ngx_str_t                         actor = ngx_string("nb_maint");
    ngx_pool_t                       *pool;
    ngx_http_nb_maint_state_t         old, st;
    ngx_http_nb_maint_main_conf_t    *nmcf;
    ngx_http_nb_maint_dns_undrain_t  *u;

    if (up->dns->undraining) {
        return;
    }

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_nb_maint_module);
    old = *ngx_http_nb_maint_snapshot();

    if (!nb_drained(&old, n)) {
        return;
    }

    st = old;
    st.drain[n / 8] &= (u_char) ~(1 << (n % 8));

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return;
    }

    u = ngx_palloc(pool, sizeof(ngx_http_nb_maint_dns_undrain_t));
    if (u == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    u->pool = pool;
    u->up = up;
    up->dns->undraining = 1;

    rc = ngx_http_nb_maint_state_save(nmcf, &old, &st, "undrain", &actor, n,
                                      pool, log,
                                      ngx_http_nb_maint_dns_undrained, u);
    if (rc != NGX_AGAIN) {
        ngx_http_nb_maint_dns_undrained(u, rc);
    }
}


/* is node n in another table's slot (two upstreams of one name)? */

static ngx_uint_t
ngx_http_nb_maint_dns_shared(ngx_http_nb_maint_shm_t *sh,
    ngx_http_nb_maint_slot_t *self, ngx_int_t n)
{
    ngx_uint_t  i, k;

    for (i = 0; i < NB_DNS_UPSTREAMS; i++) {
        for (k = 0; k < NB_DNS_SLOTS; k++) {
            if (&sh->dns[i].slot[k] != self
                && sh->dns[i].slot[k].state != NB_SLOT_EMPTY
                && sh->dns[i].slot[k].node == n)
            {
                return 1;
            }
        }
    }

    return 0;
}


/* leaving members whose requests and WebSockets are done: gone */

static void
ngx_http_nb_maint_dns_leave(ngx_http_nb_maint_srv_conf_t *up, ngx_log_t *log)
{
    ngx_int_t                    n;
    ngx_uint_t                   k, freed;
    ngx_msec_t                   now;
    ngx_http_nb_maint_shm_t     *sh;
    ngx_http_nb_maint_node_t    *node;
    ngx_http_nb_maint_slot_t    *s;
    ngx_http_nb_maint_dns_sh_t  *t;

    sh = ngx_http_nb_maint_shm();
    t = ngx_http_nb_maint_dns_table(up);
    now = ngx_http_nb_maint_now_ms();
    freed = 0;

    for (k = 0; k < NB_DNS_SLOTS; k++) {
        s = &t->slot[k];
        n = s->node;

        if (s->state != NB_SLOT_LEAVING || now - s->since < NB_DNS_LEAVE_MIN) {
            continue;
        }

        node = &sh->nodes[n];

        if (node->active || node->websockets) {
            continue;
        }

        if (nb_drained(ngx_http_nb_maint_snapshot(), n)) {
            ngx_http_nb_maint_dns_undrain(up, n, log);
            continue;
        }

        if (sh->designated == n) {
            continue;           /* the state names it: kept, not routed */
        }

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "nb_maint: upstream \"%V\": %*s is gone",
                      &up->uscf->host, node->id_len, node->id);

        ngx_http_nb_maint_nodes_lock(sh);
        t->seq++;
        ngx_memory_barrier();

        s->state = NB_SLOT_EMPTY;
        s->node = -1;

        if (!ngx_http_nb_maint_dns_shared(sh, s, n)) {
            ngx_http_nb_maint_node_release(sh, n);
        }

        ngx_memory_barrier();
        t->seq++;
        ngx_http_nb_maint_nodes_unlock(sh);

        freed = 1;
    }

    if (freed) {
        (void) ngx_atomic_fetch_add(&t->changes, 1);
        (void) ngx_atomic_fetch_add(&sh->nodes_seq, 1);
        ngx_http_nb_maint_dns_apply(up);
    }
}


/* every owner tick (health.c): queries that are due, members that left */

void
ngx_http_nb_maint_dns_tick(ngx_uint_t owner, ngx_log_t *log)
{
    ngx_uint_t                      i;
    ngx_msec_t                      now;
    ngx_http_nb_maint_dns_sh_t     *t;
    ngx_http_nb_maint_srv_conf_t  **up;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_nb_maint_module);
    up = nmcf->upstreams.elts;
    now = ngx_http_nb_maint_now_ms();

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        t = ngx_http_nb_maint_dns_table(up[i]);

        if (t == NULL) {
            continue;
        }

        /* every worker: a change reaches idle workers too */
        ngx_http_nb_maint_dns_apply(up[i]);

        if (!owner) {
            continue;
        }

        ngx_http_nb_maint_dns_leave(up[i], log);

        if (!up[i]->dns->busy
            && now - t->last_try >= up[i]->dns->interval)
        {
            ngx_http_nb_maint_dns_query(up[i], log);
        }
    }
}
