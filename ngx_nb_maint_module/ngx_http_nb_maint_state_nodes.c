/*
 * nb_maint: the node table in shared memory (SPEC section 3): an entry
 * per node id with its health, drain, in-flight and metrics counters.
 *
 * Entries are keyed by id and keep their index while any generation that
 * may still run uses them, so that workers of an older configuration keep
 * valid indexes across a reload; unused ones are reused, zeroed.  Owns the
 * matching of configured peers to entries, the entries' counters and
 * names.  Calls state.c and json.c only.
 */

#include "ngx_http_nb_maint.h"


static void ngx_http_nb_maint_nodes_reclaim(ngx_http_nb_maint_shm_t *sh,
    ngx_uint_t *live, ngx_uint_t nlive, ngx_log_t *log);
static ngx_int_t ngx_http_nb_maint_node_add(ngx_http_nb_maint_shm_t *sh,
    ngx_str_t *id, ngx_uint_t *from);


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

    /* the owner worker may add DNS members at run time meanwhile */
    ngx_http_nb_maint_nodes_lock(sh);

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

                    if (up[i]->dns) {
                        continue;       /* slots, filled at run time */
                    }

                    if (pass == 0
                        && ngx_http_nb_maint_peer_id_check(peer,
                                                  &up[i]->uscf->host, log)
                           != NGX_OK)
                    {
                        ngx_http_nb_maint_nodes_unlock(sh);
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
                            ngx_http_nb_maint_nodes_unlock(sh);
                            return NGX_ERROR;
                        }
                    }

                    node = &sh->nodes[idx];
                    node->dns = 0;      /* a server line owns it now */

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

    ngx_http_nb_maint_nodes_unlock(sh);

    return NGX_OK;
}


/*
 * Adding and freeing node entries: the master at a reload, the owner
 * worker for DNS members.  A few memory accesses only; a holder that died
 * with it is replaced.
 */

void
ngx_http_nb_maint_nodes_lock(ngx_http_nb_maint_shm_t *sh)
{
    ngx_pid_t   pid;
    ngx_uint_t  n;

    for (n = 1; /* void */ ; n++) {

        if (ngx_atomic_cmp_set(&sh->nodes_lock, 0, ngx_pid)) {
            return;
        }

        pid = (ngx_pid_t) sh->nodes_lock;

        if (pid && (pid == ngx_pid || !ngx_http_nb_maint_holder_alive(pid))
            && ngx_atomic_cmp_set(&sh->nodes_lock, pid, ngx_pid))
        {
            return;
        }

        if (n % 64 == 0) {
            ngx_sched_yield();

        } else {
            ngx_cpu_pause();
        }
    }
}


void
ngx_http_nb_maint_nodes_unlock(ngx_http_nb_maint_shm_t *sh)
{
    (void) ngx_atomic_cmp_set(&sh->nodes_lock, ngx_pid, 0);
}


/*
 * The entry of a DNS member: the existing one of that id (a server line
 * elsewhere may have it), else a new one, unknown and not routable until
 * its checks pass.  Caller holds the nodes lock.
 */

ngx_int_t
ngx_http_nb_maint_node_claim(ngx_http_nb_maint_shm_t *sh, u_char *id,
    size_t len, ngx_uint_t gen, ngx_uint_t *added)
{
    ngx_int_t                  idx;
    ngx_str_t                  s;
    ngx_uint_t                 from;
    ngx_http_nb_maint_node_t  *node;

    *added = 0;

    idx = ngx_http_nb_maint_node_find(sh, id, len);

    if (idx == NGX_ERROR) {
        s.data = id;
        s.len = len;
        from = 0;

        idx = ngx_http_nb_maint_node_add(sh, &s, &from);
        if (idx == NGX_ERROR) {
            return NGX_ERROR;
        }

        node = &sh->nodes[idx];
        node->dns = 1;
        node->joined = ngx_http_nb_maint_now_ms();
        node->gen_first = gen;
        sh->node_down[idx] = NB_NODE_DOWN;
        *added = 1;
    }

    node = &sh->nodes[idx];

    if (node->gen_last < gen) {
        node->gen_last = gen;
    }

    return idx;
}


/* a DNS member's entry that nothing refers to any more: free */

void
ngx_http_nb_maint_node_release(ngx_http_nb_maint_shm_t *sh, ngx_uint_t i)
{
    ngx_http_nb_maint_node_t  *node;

    node = &sh->nodes[i];

    if (!node->dns) {
        return;                 /* a server line's: not ours */
    }

    node->id_len = 0;
    ngx_memory_barrier();

    ngx_memzero(node, sizeof(ngx_http_nb_maint_node_t));
    sh->node_down[i] = NB_NODE_OK;
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


/*
 * What the state lets a request do with node n: the one decision of the
 * balancer, and of the HAProxy agent that answers as the balancer would.
 * want: -1 any node, else the designated node's index (the only one).
 * A commanding node serves only as the designated node.
 */

ngx_uint_t
ngx_http_nb_maint_node_use(ngx_http_nb_maint_shm_t *sh,
    ngx_http_nb_maint_state_t *st, ngx_uint_t n, ngx_int_t want)
{
    if (want >= 0 && (ngx_int_t) n != want) {
        return NB_USE_OTHER;
    }

    if (sh->node_down[n] == NB_NODE_DOWN) {
        return NB_USE_DOWN;
    }

    if (sh->node_down[n] == NB_NODE_BUSY && want < 0) {
        return NB_USE_BUSY;
    }

    return nb_drained(st, n) ? NB_USE_DRAIN : NB_USE_OK;
}


const char *
ngx_http_nb_maint_app_code_name(ngx_uint_t code)
{
    switch (code) {
    case NB_APP_COMMANDING:
        return "APP_COMMANDING";
    case NB_APP_PREPARING:
        return "APP_PREPARING";
    case NB_APP_INITIALIZING:
        return "APP_INITIALIZING";
    default:
        return "";
    }
}


const char *
ngx_http_nb_maint_health_name(ngx_uint_t health)
{
    switch (health) {
    case NB_HEALTH_UP:
        return "up";
    case NB_HEALTH_DOWN:
        return "down";
    case NB_HEALTH_COMMANDING:
        return "commanding";
    default:
        return "unknown";
    }
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
