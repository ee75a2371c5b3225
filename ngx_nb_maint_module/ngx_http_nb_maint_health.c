/*
 * nb_maint: active health checks (nb_maint_check) and the owner worker.
 *
 * One worker, the first to claim the owner word in shared memory, checks
 * every node with nginx's non-blocking peer connections and timers, writes
 * the results to the node table in shared memory (and the latency to its
 * metrics) and lets health_restore.c end a restore once no node is
 * pending.  The other workers look now and then whether the owner is still
 * there (or belongs to an older configuration) and take over.  Calls
 * state.c, state_nodes.c, health_restore.c and the store's tick.
 *
 * The claim is one compare-and-swap of a word holding both pid and
 * generation.  The owner refreshes a heartbeat every tick; an owner whose
 * process is gone is replaced at once, one whose pid exists (perhaps reused
 * by another process) only when its heartbeat stood still for
 * NB_OWNER_DEAD.  A newer generation takes over from an older one, never
 * the other way round while the newer owner lives.
 */

#include "ngx_http_nb_maint.h"


#define NB_OWNER_TICK    500
#define NB_OWNER_DEAD    3000
#define NB_CHECK_BUF     4096


typedef struct {
    ngx_event_t                      timer;     /* next check, or timeout */
    ngx_peer_connection_t            pc;
    ngx_http_upstream_rr_peer_t     *peer;
    ngx_http_nb_maint_srv_conf_t    *conf;
    ngx_uint_t                       node;
    ngx_uint_t                       slot;      /* DNS slot + 1, 0: none */
    ngx_msec_t                       started;   /* ms since epoch */
    ngx_str_t                        request;
    size_t                           sent;
    size_t                           len;
    ngx_uint_t                       app_code;
    size_t                           app_command_len;
    u_char                           app_command[NB_APP_COMMAND_LEN];
    u_char                           buf[NB_CHECK_BUF];
} ngx_http_nb_maint_check_t;


static void ngx_http_nb_maint_owner_tick(ngx_event_t *ev);
static void ngx_http_nb_maint_check_timer(ngx_event_t *ev);
static void ngx_http_nb_maint_check_start(ngx_http_nb_maint_check_t *chk);
static void ngx_http_nb_maint_check_write(ngx_event_t *wev);
static void ngx_http_nb_maint_check_read(ngx_event_t *rev);
static void ngx_http_nb_maint_check_done(ngx_http_nb_maint_check_t *chk,
    ngx_uint_t result, const char *why);
static void ngx_http_nb_maint_owner_release(void);


static ngx_event_t                 ngx_http_nb_maint_owner_ev;
static ngx_connection_t            ngx_http_nb_maint_dummy;
static ngx_array_t                 ngx_http_nb_maint_checks;
static ngx_uint_t                  ngx_http_nb_maint_owner;   /* we own */
static ngx_pool_t                 *ngx_http_nb_maint_pool;

/* the owner word and heartbeat as last seen, and since when (local ms) */
static ngx_atomic_uint_t           ngx_http_nb_maint_seen_word;
static ngx_atomic_uint_t           ngx_http_nb_maint_seen_beat;
static ngx_msec_t                  ngx_http_nb_maint_seen_at;


/* a check and its request: Host is the server's name, or the DNS name */

static ngx_http_nb_maint_check_t *
ngx_http_nb_maint_check_new(ngx_cycle_t *cycle,
    ngx_http_nb_maint_srv_conf_t *up, ngx_http_upstream_rr_peer_t *peer,
    ngx_str_t *host)
{
    u_char                      *p;
    ngx_http_nb_maint_check_t   *chk, **slot;

    chk = ngx_pcalloc(ngx_http_nb_maint_pool,
                      sizeof(ngx_http_nb_maint_check_t));
    if (chk == NULL) {
        return NULL;
    }

    chk->peer = peer;
    chk->conf = up;

    chk->request.data = ngx_pnalloc(ngx_http_nb_maint_pool,
                                    up->check.uri.len + host->len + 128);
    if (chk->request.data == NULL) {
        return NULL;
    }

    p = ngx_sprintf(chk->request.data,
                    "GET %V HTTP/1.0\r\n"
                    "Host: %V\r\n"
                    "User-Agent: nb_maint\r\n"
                    "Connection: close\r\n\r\n",
                    &up->check.uri, host);
    chk->request.len = p - chk->request.data;

    chk->timer.handler = ngx_http_nb_maint_check_timer;
    chk->timer.data = chk;
    chk->timer.log = cycle->log;
    chk->timer.cancelable = 1;

    slot = ngx_array_push(&ngx_http_nb_maint_checks);
    if (slot == NULL) {
        return NULL;
    }

    *slot = chk;

    return chk;
}


/* an nb_maint_resolve upstream: one check per slot, of its member */

static ngx_int_t
ngx_http_nb_maint_checks_dns(ngx_cycle_t *cycle,
    ngx_http_nb_maint_srv_conf_t *up)
{
    ngx_uint_t                  k;
    ngx_http_nb_maint_check_t  *chk;

    for (k = 0; k < up->dns->max; k++) {
        chk = ngx_http_nb_maint_check_new(cycle, up, up->dns->peers[k],
                                          &up->dns->name);
        if (chk == NULL) {
            return NGX_ERROR;
        }

        chk->slot = k + 1;
        chk->node = (ngx_uint_t) -1;
    }

    return NGX_OK;
}


/* the member in a DNS slot's check now, or -1: an empty or leaving slot */

static ngx_int_t
ngx_http_nb_maint_check_slot(ngx_http_nb_maint_check_t *chk)
{
    ngx_uint_t                     k;
    ngx_http_nb_maint_dns_conf_t  *dns;

    dns = chk->conf->dns;
    k = chk->slot - 1;

    ngx_http_nb_maint_dns_apply(chk->conf);

    if (dns->slot_node[k] < 0 || dns->peers[k]->down) {
        return -1;
    }

    return dns->slot_node[k];
}


/* one check per node, with the parameters of its first upstream */

static ngx_int_t
ngx_http_nb_maint_checks_create(ngx_cycle_t *cycle,
    ngx_http_nb_maint_main_conf_t *nmcf)
{
    ngx_uint_t                       i, j, k, dup;
    ngx_http_upstream_rr_peer_t     *peer;
    ngx_http_nb_maint_check_t       *chk, *c;
    ngx_http_nb_maint_srv_conf_t   **up;

    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        if (!up[i]->check.set) {
            continue;
        }

        if (up[i]->dns) {
            if (ngx_http_nb_maint_checks_dns(cycle, up[i]) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        for (j = 0; j < up[i]->nnodes; j++) {
            peer = ngx_http_nb_maint_peer(up[i], j);   /* backups too */
            dup = 0;

            for (k = 0; k < ngx_http_nb_maint_checks.nelts; k++) {
                c = ((ngx_http_nb_maint_check_t **)
                                       ngx_http_nb_maint_checks.elts)[k];
                if (c->node == up[i]->nodes[j]) {
                    dup = 1;
                    break;
                }
            }

            if (dup || up[i]->down[j]) {
                continue;
            }

            chk = ngx_http_nb_maint_check_new(cycle, up[i], peer,
                                              &peer->name);
            if (chk == NULL) {
                return NGX_ERROR;
            }

            chk->node = up[i]->nodes[j];
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_nb_maint_health_init_process(ngx_cycle_t *cycle)
{
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_nb_maint_module);

    if (ngx_http_nb_maint_worker_register(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_nb_maint_pool = ngx_create_pool(4096, cycle->log);
    if (ngx_http_nb_maint_pool == NULL) {
        return NGX_ERROR;
    }

    if (ngx_array_init(&ngx_http_nb_maint_checks, ngx_http_nb_maint_pool, 8,
                       sizeof(ngx_http_nb_maint_check_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_nb_maint_checks_create(cycle, nmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (nmcf->store.init_process
        && nmcf->store.init_process(&nmcf->store, cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_nb_maint_dummy.fd = (ngx_socket_t) -1;

    ngx_http_nb_maint_owner_ev.handler = ngx_http_nb_maint_owner_tick;
    ngx_http_nb_maint_owner_ev.data = &ngx_http_nb_maint_dummy;
    ngx_http_nb_maint_owner_ev.log = cycle->log;
    ngx_http_nb_maint_owner_ev.cancelable = 1;

    /* stagger the workers a little so that one wins the slot at once */
    ngx_add_timer(&ngx_http_nb_maint_owner_ev, 1 + (ngx_pid % 20));

    return NGX_OK;
}


void
ngx_http_nb_maint_health_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_nb_maint_module);

    if (nmcf->store.exit_process) {
        nmcf->store.exit_process(&nmcf->store, cycle);
    }

    ngx_http_nb_maint_owner_release();
    ngx_http_nb_maint_worker_unregister();
}


static void
ngx_http_nb_maint_owner_release(void)
{
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    if (sh && ngx_http_nb_maint_owner) {
        (void) ngx_atomic_cmp_set(&sh->owner,
                                  nb_owner_word(ngx_http_nb_maint_generation(),
                                                ngx_pid), 0);
        ngx_http_nb_maint_owner = 0;
    }
}


/* the owner in word w is gone: its process, or its heartbeat */

static ngx_uint_t
ngx_http_nb_maint_owner_gone(ngx_http_nb_maint_shm_t *sh,
    ngx_atomic_uint_t w)
{
    ngx_atomic_uint_t  beat;

    if (w == 0 || !ngx_http_nb_maint_holder_alive(nb_owner_pid(w))) {
        return 1;
    }

    beat = sh->owner_beat;

    if (w != ngx_http_nb_maint_seen_word
        || beat != ngx_http_nb_maint_seen_beat)
    {
        ngx_http_nb_maint_seen_word = w;
        ngx_http_nb_maint_seen_beat = beat;
        ngx_http_nb_maint_seen_at = ngx_current_msec;
        return 0;
    }

    return ngx_current_msec - ngx_http_nb_maint_seen_at >= NB_OWNER_DEAD;
}


/*
 * Health that nothing in this configuration checks any more is not kept
 * frozen: such nodes go back to "unknown" when this generation takes the
 * checks over (an older owner no longer writes once it lost the claim).
 */

static void
ngx_http_nb_maint_unchecked_reset(ngx_log_t *log)
{
    ngx_uint_t                      i, j, k, idx, checked;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_node_t       *node;
    ngx_http_nb_maint_check_t     **chk;
    ngx_http_nb_maint_srv_conf_t  **up;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_nb_maint_module);
    sh = ngx_http_nb_maint_shm();
    up = nmcf->upstreams.elts;
    chk = ngx_http_nb_maint_checks.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        if (up[i]->dns) {
            continue;           /* each slot has its check */
        }

        for (j = 0; j < up[i]->nnodes; j++) {
            idx = up[i]->nodes[j];
            checked = 0;

            for (k = 0; k < ngx_http_nb_maint_checks.nelts; k++) {
                if (chk[k]->node == idx) {
                    checked = 1;
                    break;
                }
            }

            node = &sh->nodes[idx];

            if (checked || node->health == NB_HEALTH_UNKNOWN) {
                continue;
            }

            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "nb_maint: node %*s is not checked any more, "
                          "its health is unknown", node->id_len, node->id);

            node->health = NB_HEALTH_UNKNOWN;
            node->rise_count = 0;
            node->fall_count = 0;
            node->app_code = 0;
            node->app_command_len = 0;
            node->app_since = 0;
            sh->node_down[idx] = NB_NODE_OK;
        }
    }
}


static void
ngx_http_nb_maint_owner_tick(ngx_event_t *ev)
{
    ngx_uint_t                      i, gen;
    ngx_atomic_uint_t               w, me;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_check_t     **chk;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    sh = ngx_http_nb_maint_shm();

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        ngx_http_nb_maint_owner_release();
        return;
    }

    gen = ngx_http_nb_maint_generation();
    me = nb_owner_word(gen, ngx_pid);
    w = sh->owner;

    if (w == me) {
        sh->owner_beat = ngx_http_nb_maint_now_ms();

    } else {

        if (ngx_http_nb_maint_owner) {
            ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                          "nb_maint: worker %P took over the checks",
                          nb_owner_pid(w));
            ngx_http_nb_maint_owner = 0;
        }

        if ((nb_owner_gen(w) < nb_owner_gen(me)
             || ngx_http_nb_maint_owner_gone(sh, w))
            && ngx_atomic_cmp_set(&sh->owner, w, me))
        {
            sh->owner_beat = ngx_http_nb_maint_now_ms();
            ngx_http_nb_maint_owner = 1;

            ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                          "nb_maint: worker %P runs the health checks "
                          "(%ui nodes, generation %ui)", ngx_pid,
                          ngx_http_nb_maint_checks.nelts, gen);

            ngx_http_nb_maint_unchecked_reset(ev->log);

            chk = ngx_http_nb_maint_checks.elts;

            for (i = 0; i < ngx_http_nb_maint_checks.nelts; i++) {
                if (!chk[i]->timer.timer_set && chk[i]->pc.connection == NULL)
                {
                    ngx_add_timer(&chk[i]->timer, 1);
                }
            }
        }
    }

    if (ngx_http_nb_maint_owner) {
        ngx_http_nb_maint_restore_finish(ev->log);
    }

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_nb_maint_module);
    if (nmcf->store.tick) {
        nmcf->store.tick(&nmcf->store, ngx_http_nb_maint_owner, ev->log);
    }

    ngx_http_nb_maint_dns_tick(ngx_http_nb_maint_owner, ev->log);

    ngx_add_timer(ev, NB_OWNER_TICK);
}


static void
ngx_http_nb_maint_check_timer(ngx_event_t *ev)
{
    ngx_http_nb_maint_check_t  *chk = ev->data;

    if (chk->pc.connection) {
        ngx_http_nb_maint_check_done(chk, 0, "timed out");
        return;
    }

    if (!ngx_http_nb_maint_owner || ngx_exiting || ngx_quit) {
        return;
    }

    ngx_http_nb_maint_check_start(chk);
}


static void
ngx_http_nb_maint_check_start(ngx_http_nb_maint_check_t *chk)
{
    ngx_int_t          rc;
    ngx_err_t          err;
    ngx_connection_t  *c;

    if (chk->slot) {
        rc = ngx_http_nb_maint_check_slot(chk);

        if (rc < 0) {
            ngx_add_timer(&chk->timer, chk->conf->check.interval);
            return;
        }

        chk->node = rc;
    }

    ngx_memzero(&chk->pc, sizeof(ngx_peer_connection_t));

    chk->pc.sockaddr = chk->peer->sockaddr;
    chk->pc.socklen = chk->peer->socklen;
    chk->pc.name = &chk->peer->name;
    chk->pc.get = ngx_event_get_peer;
    chk->pc.log = chk->timer.log;
    chk->pc.log_error = NGX_ERROR_INFO;

    chk->started = ngx_http_nb_maint_now_ms();
    chk->sent = 0;
    chk->len = 0;

    rc = ngx_event_connect_peer(&chk->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        err = (rc == NGX_DECLINED) ? ngx_socket_errno : 0;  /* connect() */

        if (chk->pc.connection) {
            ngx_close_connection(chk->pc.connection);
            chk->pc.connection = NULL;
        }

        ngx_http_nb_maint_check_done(chk, 0,
                          ngx_http_nb_maint_health_why(err, "connect failed"));
        return;
    }

    c = chk->pc.connection;
    c->data = chk;
    c->log = chk->timer.log;
    c->read->log = c->log;
    c->write->log = c->log;
    c->read->handler = ngx_http_nb_maint_check_read;
    c->write->handler = ngx_http_nb_maint_check_write;

    ngx_add_timer(&chk->timer, chk->conf->check.timeout);

    if (rc == NGX_OK) {
        ngx_http_nb_maint_check_write(c->write);
    }
}


static void
ngx_http_nb_maint_check_write(ngx_event_t *wev)
{
    ssize_t                     n;
    ngx_connection_t           *c;
    ngx_http_nb_maint_check_t  *chk;

    c = wev->data;
    chk = c->data;

    while (chk->sent < chk->request.len) {
        n = c->send(c, chk->request.data + chk->sent,
                    chk->request.len - chk->sent);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_http_nb_maint_check_done(chk, 0, "write event failed");
            }
            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_nb_maint_check_done(chk, 0, ngx_http_nb_maint_health_why(
                                     n ? ngx_socket_errno : 0, "send failed"));
            return;
        }

        chk->sent += n;
    }

    /* all sent: wait for the answer */
    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_nb_maint_check_done(chk, 0, "write event failed");
        return;
    }

    if (c->read->ready) {
        ngx_http_nb_maint_check_read(c->read);
    }
}


/* what a check found */
#define NB_CHECK_FAIL        0
#define NB_CHECK_PASS        1
#define NB_CHECK_COMMANDING  2


/* "HTTP/1.x NNN ...\r\n...\r\n\r\nbody" against status= and body= */

static ngx_uint_t
ngx_http_nb_maint_check_eval(ngx_http_nb_maint_check_t *chk,
    const char **why)
{
    u_char     *p, *end, *body;
    ngx_int_t   status;
    ngx_str_t   b;

    p = chk->buf;
    end = chk->buf + chk->len;

    if (chk->len < 12 || ngx_strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ') {
        *why = "not an HTTP response";
        return NB_CHECK_FAIL;
    }

    status = ngx_atoi(p + 9, 3);

    body = ngx_strlcasestrn(p, end, (u_char *) "\r\n\r\n", 4 - 1);

    if (body) {
        b.data = body + 4;
        b.len = end - b.data;
    }

    if (status != (ngx_int_t) chk->conf->check.status) {

        if (status == NGX_HTTP_SERVICE_UNAVAILABLE && body
            && ngx_http_nb_maint_health_envelope(&b, &chk->app_code,
                                                 chk->app_command,
                                                 &chk->app_command_len))
        {
            *why = ngx_http_nb_maint_app_code_name(chk->app_code);
            return NB_CHECK_COMMANDING;
        }

        *why = "unexpected status";
        return NB_CHECK_FAIL;
    }

    if (chk->conf->check.body == NULL) {
        return NB_CHECK_PASS;
    }

    if (body == NULL) {
        *why = "no body";
        return NB_CHECK_FAIL;
    }

    if (ngx_regex_exec(chk->conf->check.body, &b, NULL, 0) < 0) {
        *why = "body does not match";
        return NB_CHECK_FAIL;
    }

    return NB_CHECK_PASS;
}


static void
ngx_http_nb_maint_check_read(ngx_event_t *rev)
{
    ssize_t                     n;
    ngx_uint_t                  result;
    const char                 *why;
    ngx_connection_t           *c;
    ngx_http_nb_maint_check_t  *chk;

    c = rev->data;
    chk = c->data;

    for ( ;; ) {
        if (chk->len == NB_CHECK_BUF) {
            break;      /* enough to judge */
        }

        n = c->recv(c, chk->buf + chk->len, NB_CHECK_BUF - chk->len);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_nb_maint_check_done(chk, 0, "read event failed");
            }
            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_nb_maint_check_done(chk, 0, ngx_http_nb_maint_health_why(
                                          ngx_socket_errno, "recv failed"));
            return;
        }

        if (n == 0) {
            break;      /* the node closed: the answer is complete */
        }

        chk->len += n;
    }

    why = "";
    result = ngx_http_nb_maint_check_eval(chk, &why);

    ngx_http_nb_maint_check_done(chk, result, why);
}


/* a check's result: the node's counters and health (SPEC section 3) */

static void
ngx_http_nb_maint_check_apply(ngx_http_nb_maint_check_t *chk,
    ngx_http_nb_maint_shm_t *sh, ngx_http_nb_maint_node_t *node,
    ngx_http_nb_maint_state_t *st, ngx_uint_t result)
{
    ngx_uint_t                       old;
    ngx_http_nb_maint_check_conf_t  *ck;

    ck = &chk->conf->check;
    old = node->health;

    if (result == NB_CHECK_PASS) {
        node->last_pass = chk->started;
        node->rise_count++;
        node->fall_count = 0;

        /* a DNS member is new: traffic only once rise checks passed */
        if (old != NB_HEALTH_UP
            && ((old == NB_HEALTH_UNKNOWN && !node->dns)
                || node->rise_count >= ck->rise))
        {
            node->health = NB_HEALTH_UP;
            sh->node_down[chk->node] = NB_NODE_OK;
        }

        if (st->mode == NB_MODE_RESTORING
            && chk->started >= st->restore_started)
        {
            node->restore_passes++;
        }

    } else if (result == NB_CHECK_COMMANDING) {

        /*
         * alive and busy at once: no public traffic but the designated
         * node's, not healthy for restore, never counted as a failure
         */
        node->rise_count = 0;
        node->fall_count = 0;
        node->restore_passes = 0;

        if (old != NB_HEALTH_COMMANDING
            || node->app_code != chk->app_code
            || node->app_command_len != chk->app_command_len
            || ngx_memcmp(node->app_command, chk->app_command,
                          chk->app_command_len) != 0)
        {
            node->app_since = node->last_check;
        }

        node->app_code = (u_char) chk->app_code;
        ngx_memcpy(node->app_command, chk->app_command, chk->app_command_len);
        node->app_command_len = (u_char) chk->app_command_len;

        ngx_memory_barrier();

        node->health = NB_HEALTH_COMMANDING;
        sh->node_down[chk->node] = NB_NODE_BUSY;

    } else {
        node->fall_count++;
        node->rise_count = 0;
        node->restore_passes = 0;

        if (old != NB_HEALTH_DOWN
            && (old == NB_HEALTH_UNKNOWN || node->fall_count >= ck->fall))
        {
            node->health = NB_HEALTH_DOWN;
            sh->node_down[chk->node] = NB_NODE_DOWN;
        }
    }
}


static void
ngx_http_nb_maint_check_done(ngx_http_nb_maint_check_t *chk,
    ngx_uint_t result, const char *why)
{
    ngx_uint_t                      old, pass;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_node_t       *node;
    ngx_http_nb_maint_state_t      *st;
    ngx_http_nb_maint_check_conf_t *ck;

    if (chk->pc.connection) {
        ngx_close_connection(chk->pc.connection);
        chk->pc.connection = NULL;
    }

    if (chk->timer.timer_set) {
        ngx_del_timer(&chk->timer);
    }

    if (!ngx_http_nb_maint_is_owner()) {
        /* another worker took the checks over: its results count */
        return;
    }

    if (chk->slot
        && ngx_http_nb_maint_check_slot(chk) != (ngx_int_t) chk->node)
    {
        /* the slot changed hands meanwhile: this result is nobody's */
        if (ngx_http_nb_maint_owner && !ngx_exiting && !ngx_quit) {
            ngx_add_timer(&chk->timer, chk->conf->check.interval);
        }

        return;
    }

    sh = ngx_http_nb_maint_shm();
    node = &sh->nodes[chk->node];
    ck = &chk->conf->check;
    st = ngx_http_nb_maint_snapshot();
    old = node->health;
    pass = (result == NB_CHECK_PASS);

    node->last_check = ngx_http_nb_maint_now_ms();

    ngx_http_nb_maint_check_observe(node,
                                    node->last_check >= chk->started
                                    ? node->last_check - chk->started : 0);

    if (st->mode == NB_MODE_RESTORING
        && node->restore_mark != st->restore_started)
    {
        node->restore_mark = st->restore_started;
        node->restore_passes = 0;
    }

    ngx_http_nb_maint_check_apply(chk, sh, node, st, result);

    if (node->health != old && result == NB_CHECK_COMMANDING) {
        ngx_log_error(NGX_LOG_NOTICE, chk->timer.log, 0,
                      "nb_maint: node %V is commanding: %s%s%*s",
                      &chk->peer->name, why,
                      node->app_command_len ? " " : "",
                      (size_t) node->app_command_len, node->app_command);

    } else if (node->health != old) {
        ngx_log_error(NGX_LOG_NOTICE, chk->timer.log, 0,
                      "nb_maint: node %V is %s%s%s", &chk->peer->name,
                      ngx_http_nb_maint_health_name(node->health),
                      pass ? "" : ": ", pass ? "" : why);
    }

    if (ngx_http_nb_maint_owner && !ngx_exiting && !ngx_quit) {
        ngx_add_timer(&chk->timer, ck->interval);
    }

    if (st->mode == NB_MODE_RESTORING && pass) {
        ngx_http_nb_maint_restore_finish(chk->timer.log);
    }
}
