/*
 * nb_maint: proxied WebSockets (SPEC section 3) and the worker's WebSocket
 * tick.
 *
 * The 101 from a node moves the request from the node's "active" count to
 * its "websockets" and into this worker's list.  A proxied WebSocket is
 * closed after nb_maint_ws_drain_grace when its node is drained or taken
 * out by maintenance, at once when the checks find its node down; a public one open when an upgrade starts is taken
 * over by the gateway (ws.c answers it from then on), so the open tab
 * learns of the upgrade at once.  One timer per worker looks at shared
 * memory a few times a second for both kinds; a socket has no timer of
 * its own.
 *
 * The tab on a socket a node has just accepted hears that node's app is
 * running (ws_greet.c), before the node's own bytes.
 *
 * May call: ws.c, ws_greet.c, bypass.c, state.c.
 */

#include "ngx_http_nb_maint_ws.h"


/* a proxied WebSocket: an upgraded upstream request */
typedef struct {
    ngx_queue_t              queue;
    ngx_http_request_t      *request;
    ngx_int_t                node;
    ngx_msec_t               doom;        /* closed at, 0: not doomed */
    ngx_uint_t               bypass;
} ngx_http_nb_maint_ws_proxied_t;


static void ngx_http_nb_maint_ws_tick(ngx_event_t *ev);


static ngx_queue_t        ngx_http_nb_maint_ws_proxied;
static ngx_uint_t         ngx_http_nb_maint_ws_doomed;
static uint64_t           ngx_http_nb_maint_ws_seq;   /* proxied: seen */
static ngx_uint_t         ngx_http_nb_maint_ws_nodes_seq;
static u_char             ngx_http_nb_maint_ws_down[NB_MAX_NODES];  /* seen */

static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


void
ngx_http_nb_maint_ws_init_process(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_http_nb_maint_ws_proxied);

    ngx_http_nb_maint_ws_gated_init(cycle, ngx_http_nb_maint_ws_tick);
}


/*
 * Proxied WebSockets: the 101 from a node moves the request from "active"
 * to "websockets" and into this worker's list.
 */

static void
ngx_http_nb_maint_ws_proxied_cleanup(void *data)
{
    ngx_http_nb_maint_ws_proxied_t *wp = data;

    if (wp->queue.next) {
        if (wp->doom) {
            ngx_http_nb_maint_ws_doomed--;
        }

        ngx_queue_remove(&wp->queue);
        wp->queue.next = NULL;
    }
}


ngx_int_t
ngx_http_nb_maint_ws_upgraded(ngx_http_request_t *r,
    ngx_http_nb_maint_ctx_t *ctx)
{
    ngx_pool_cleanup_t              *cln;
    ngx_http_nb_maint_shm_t         *sh;
    ngx_http_nb_maint_ws_proxied_t  *wp;

    sh = ngx_http_nb_maint_shm();

    (void) ngx_atomic_fetch_add(&sh->nodes[ctx->node].active, -1);
    (void) ngx_atomic_fetch_add(&sh->nodes[ctx->node].websockets, 1);
    ctx->ws = 1;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_nb_maint_ws_proxied_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    wp = cln->data;
    ngx_memzero(wp, sizeof(ngx_http_nb_maint_ws_proxied_t));

    wp->request = r;
    wp->node = ctx->node;
    wp->bypass = ngx_http_nb_maint_is_bypass(r);

    cln->handler = ngx_http_nb_maint_ws_proxied_cleanup;

    ngx_queue_insert_tail(&ngx_http_nb_maint_ws_proxied, &wp->queue);

    ngx_http_nb_maint_ws_arm();

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_ws_header_filter(ngx_http_request_t *r)
{
    ngx_http_nb_maint_ctx_t  *ctx;

    if (r->headers_out.status == NGX_HTTP_SWITCHING_PROTOCOLS
        && r->upstream && r->upstream->upgrade)
    {
        ctx = ngx_http_get_module_ctx(r, ngx_http_nb_maint_module);

        if (ctx && ctx->node >= 0 && !ctx->ws) {
            if (ngx_http_nb_maint_ws_upgraded(r, ctx) != NGX_OK) {
                return NGX_ERROR;
            }

            /* a tab that heard "App stopped" from its last node */
            (void) ngx_http_nb_maint_ws_greet(r, ctx);
        }
    }

    return ngx_http_next_header_filter(r);
}


ngx_int_t
ngx_http_nb_maint_ws_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_nb_maint_ws_header_filter;

    return NGX_OK;
}


/*
 * Teardown of a proxied WebSocket, as nginx core does it.
 *
 * close: the whole request goes.  A reference of our own first: the
 * upstream's cleanup, run by the terminate below, finalizes the request
 * once more and would otherwise free it while nginx still walks its
 * cleanup list (use after free); the posted terminate handler closes it
 * whatever the count, and runs here, not when the client next sends.
 */

static void
ngx_http_nb_maint_ws_proxied_close(ngx_http_nb_maint_ws_proxied_t *wp)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = wp->request;
    c = r->connection;

    ngx_http_nb_maint_ws_proxied_cleanup(wp);

    r->main->count++;
    ngx_http_finalize_request(r, NGX_ERROR);
    ngx_http_run_posted_requests(c);
}


/*
 * drop the node's side only (ngx_http_upstream_finalize_request without
 * finalizing the request): the peer is freed, TLS shut down, the
 * connection's pool destroyed, the connection closed
 */

static void
ngx_http_nb_maint_ws_proxied_drop_node(ngx_http_request_t *r,
    ngx_http_upstream_t *u)
{
    ngx_connection_t  *pc;

    *u->cleanup = NULL;
    u->cleanup = NULL;

    if (u->resolved && u->resolved->ctx) {
        ngx_resolve_name_done(u->resolved->ctx);
        u->resolved->ctx = NULL;
    }

    if (u->state && u->state->response_time == (ngx_msec_t) -1) {
        u->state->response_time = ngx_current_msec - u->start_time;

        if (u->peer.connection) {
            u->state->bytes_sent = u->peer.connection->sent;
        }
    }

    u->finalize_request(r, NGX_DONE);

    if (u->peer.free && u->peer.sockaddr) {
        u->peer.free(&u->peer, u->peer.data, 0);
        u->peer.sockaddr = NULL;
    }

    pc = u->peer.connection;
    u->peer.connection = NULL;

    if (pc == NULL) {
        return;
    }

#if (NGX_HTTP_SSL)
    if (pc->ssl) {
        pc->ssl->no_wait_shutdown = 1;
        (void) ngx_ssl_shutdown(pc);
    }
#endif

    if (pc->pool) {
        ngx_destroy_pool(pc->pool);
    }

    ngx_close_connection(pc);
}


/*
 * A public WebSocket proxied when an upgrade starts: the gateway drops the
 * node's side and answers the client itself.  Only between frames: if the
 * node's or the client's bytes are still in flight, the socket is closed.
 */

static void
ngx_http_nb_maint_ws_take_over(ngx_http_nb_maint_ws_proxied_t *wp)
{
    ngx_http_request_t      *r;
    ngx_http_upstream_t     *u;
    ngx_http_nb_maint_ws_t  *ws;

    r = wp->request;
    u = r->upstream;

    if (u == NULL || u->cleanup == NULL
        || u->buffer.pos != u->buffer.last || r->out)
    {
        ngx_http_nb_maint_ws_proxied_close(wp);
        return;
    }

    ngx_http_nb_maint_ws_proxied_cleanup(wp);
    ngx_http_nb_maint_ws_proxied_drop_node(r, u);

    ws = ngx_http_nb_maint_ws_adopt(r);
    if (ws == NULL) {
        r->main->count++;
        ngx_http_finalize_request(r, NGX_ERROR);
        ngx_http_run_posted_requests(r->connection);
        return;
    }

    ngx_http_nb_maint_ws_sync(ws);
}


/* whether a proxied WebSocket must go: drained node, or the mode */

static ngx_uint_t
ngx_http_nb_maint_ws_unwanted(ngx_http_nb_maint_ws_proxied_t *wp,
    ngx_http_nb_maint_state_t *st, ngx_int_t designated)
{
    ngx_uint_t  mode;

    /* a DNS member gone from the answer finishes like a drained node */
    if (nb_drained(st, wp->node)
        || ngx_http_nb_maint_shm()->nodes[wp->node].leaving)
    {
        return 1;
    }

    mode = (st->mode == NB_MODE_RESTORING) ? st->restoring_from : st->mode;

    if (mode == NB_MODE_MAINTENANCE) {
        return wp->node != designated;
    }

    if (mode == NB_MODE_UPGRADE) {
        return designated >= 0 && wp->node != designated;
    }

    return 0;
}


static void
ngx_http_nb_maint_ws_proxied_scan(ngx_msec_t now, ngx_uint_t changed)
{
    ngx_int_t                        designated;
    ngx_uint_t                       gated;
    ngx_queue_t                     *q, *next;
    ngx_connection_t                *c;
    ngx_http_nb_maint_shm_t         *sh;
    ngx_http_nb_maint_state_t       *st;
    ngx_http_nb_maint_main_conf_t   *nmcf;
    ngx_http_nb_maint_ws_proxied_t  *wp;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_nb_maint_module);
    sh = ngx_http_nb_maint_shm();
    st = ngx_http_nb_maint_snapshot();

    designated = ngx_http_nb_maint_designated();    /* kept with the state */

    gated = (ngx_http_nb_maint_ws_gated_key() & 3) == NB_WS_UPGRADE;

    for (q = ngx_queue_head(&ngx_http_nb_maint_ws_proxied);
         q != ngx_queue_sentinel(&ngx_http_nb_maint_ws_proxied);
         q = next)
    {
        next = ngx_queue_next(q);
        wp = ngx_queue_data(q, ngx_http_nb_maint_ws_proxied_t, queue);

        if (gated && !wp->bypass) {
            if (changed) {
                ngx_http_nb_maint_ws_take_over(wp);
            }

            continue;
        }

        /*
         * a node the checks find down (a NocoBase that stopped its app
         * answers APP_STOPPED until its process is gone, which can take
         * a while): at once, so that the tab reconnects to a node that
         * serves it and leaves "App stopped" (ws_greet.c)
         */
        if (sh->node_down[wp->node] == NB_NODE_DOWN) {
            c = wp->request->connection;

            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "nb_maint: closing a WebSocket to node %*s, "
                          "which is down", sh->nodes[wp->node].id_len,
                          sh->nodes[wp->node].id);

            ngx_http_nb_maint_ws_proxied_close(wp);
            continue;
        }

        if (!ngx_http_nb_maint_ws_unwanted(wp, st, designated)) {
            if (wp->doom) {
                wp->doom = 0;
                ngx_http_nb_maint_ws_doomed--;
            }

            continue;
        }

        if (wp->doom == 0) {
            wp->doom = now + nmcf->ws_drain_grace;
            ngx_http_nb_maint_ws_doomed++;
            continue;
        }

        if ((ngx_msec_int_t) (now - wp->doom) >= 0) {
            c = wp->request->connection;

            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "nb_maint: closing a WebSocket to node %*s",
                          sh->nodes[wp->node].id_len,
                          sh->nodes[wp->node].id);

            ngx_http_nb_maint_ws_proxied_close(wp);
        }
    }
}


/* whether a node went down since the last look (one byte a node) */

static ngx_uint_t
ngx_http_nb_maint_ws_went_down(void)
{
    u_char                    d;
    ngx_uint_t                i, n, went;
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();
    n = ngx_min(sh->nnodes, NB_MAX_NODES);
    went = 0;

    for (i = 0; i < n; i++) {
        d = sh->node_down[i];

        if (d != ngx_http_nb_maint_ws_down[i]) {
            went |= (d == NB_NODE_DOWN);
            ngx_http_nb_maint_ws_down[i] = d;
        }
    }

    return went;
}


static void
ngx_http_nb_maint_ws_tick(ngx_event_t *ev)
{
    uint64_t    seq;
    ngx_msec_t  now;
    ngx_uint_t  nodes_seq, down;

    seq = ngx_http_nb_maint_shm()->seq;
    nodes_seq = ngx_http_nb_maint_shm()->nodes_seq;   /* DNS members */
    now = ngx_current_msec;

    ngx_http_nb_maint_ws_update();

    down = !ngx_queue_empty(&ngx_http_nb_maint_ws_proxied)
           && ngx_http_nb_maint_ws_went_down();

    if (seq != ngx_http_nb_maint_ws_seq || ngx_http_nb_maint_ws_doomed
        || nodes_seq != ngx_http_nb_maint_ws_nodes_seq || down)
    {
        ngx_http_nb_maint_ws_proxied_scan(now,
                                          seq != ngx_http_nb_maint_ws_seq);
        ngx_http_nb_maint_ws_seq = seq;
        ngx_http_nb_maint_ws_nodes_seq = nodes_seq;
    }

    if (!ngx_http_nb_maint_ws_gated_empty()
        || !ngx_queue_empty(&ngx_http_nb_maint_ws_proxied))
    {
        ngx_add_timer(ev, NB_WS_TICK);
    }
}
