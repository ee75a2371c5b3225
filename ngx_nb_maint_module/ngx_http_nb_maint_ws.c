/*
 * nb_maint: the WebSockets the gateway answers itself (SPEC section 7).
 *
 * While public traffic is gated the gateway answers NocoBase's /ws itself
 * (RFC 6455) and speaks as a NocoBase node does: a "maintaining" message
 * for the current state, a new one on every change, and APP_RUNNING with
 * "refresh" followed by a close once traffic is allowed again.  Proxied
 * WebSockets are ws_proxied.c's, which also runs the worker's tick; the
 * timer event is kept here so that a new socket can arm it.
 *
 * The handshake is ws_handshake.c's.  Every socket is bounded: at most NB_WS_OUT_MAX bytes held for a client
 * that does not read, nb_maint_ws_send_timeout for output to drain,
 * nb_maint_ws_idle_timeout without a byte from the client, a server ping
 * every nb_maint_ws_ping_interval of quiet (timers of the connection's own
 * events: no memory of their own).
 *
 * Every worker keeps its own sockets in a list for state changes.
 *
 * A socket starts held by its request.  Once the 101 is out, one whose
 * request holds nothing of another module (no limit_conn slot: a cleanup
 * in the request's pool) goes "slim", as core treats an idle keepalive
 * connection (ngx_http_set_keepalive): the access log line is written
 * (101), the request and the header buffers are freed, and the socket's
 * state lives on in the connection's pool, driven by the connection's
 * events.  Otherwise the request is kept (and logged at close), so that
 * limit_conn keeps counting open sockets.
 *
 * May call: ws_conn.c, ws_frame.c, ws_message.c, state.c.
 */

#include "ngx_http_nb_maint_ws.h"


/*
 * Unsent output a socket may hold: the handshake and a message or two.  A
 * client that makes the gateway queue more (pings without reading) is
 * closed, never buffered further.
 */
#define NB_WS_OUT_MAX       8192



/* a WebSocket the gateway answers itself */
struct ngx_http_nb_maint_ws_s {
    ngx_queue_t              queue;
    ngx_connection_t        *connection;
    ngx_http_request_t      *request;     /* NULL once slim */
    ngx_pool_t              *pool;        /* the request's or connection's */
    ngx_http_nb_maint_loc_conf_t  *conf;
    uint64_t                 sent;        /* state key of the last message */
    ngx_msec_t               heard;       /* the client's last bytes */
    ngx_http_nb_maint_ws_parser_t  in;

    /* bytes the socket did not take yet: NB_WS_OUT_MAX, while any */
    u_char                  *out;
    size_t                   out_len;
    unsigned                 closing:1;   /* close once sent */
    unsigned                 close_sent:1;   /* no frame after a close */
    unsigned                 may_slim:1;  /* answered at its handshake */
};


static void ngx_http_nb_maint_ws_read(ngx_http_request_t *r);
static void ngx_http_nb_maint_ws_read_frames(ngx_http_nb_maint_ws_t *ws);
static void ngx_http_nb_maint_ws_quiet(ngx_http_nb_maint_ws_t *ws);
static void ngx_http_nb_maint_ws_write(ngx_http_request_t *r);
static void ngx_http_nb_maint_ws_slim(ngx_http_nb_maint_ws_t *ws);
static void ngx_http_nb_maint_ws_slim_event(ngx_event_t *ev);
static void ngx_http_nb_maint_ws_cleanup(void *data);
static ngx_int_t ngx_http_nb_maint_ws_start(ngx_http_request_t *r,
    u_char *accept);


static ngx_queue_t        ngx_http_nb_maint_ws_gated;
static ngx_event_t        ngx_http_nb_maint_ws_ev;
static ngx_connection_t   ngx_http_nb_maint_ws_dummy;
static uint64_t           ngx_http_nb_maint_ws_key_now;
/* the socket whose own handler runs: its close waits for the handler */
static ngx_http_nb_maint_ws_t  *ngx_http_nb_maint_ws_running;


/* at worker start: the list, and the timer that calls tick */

void
ngx_http_nb_maint_ws_gated_init(ngx_cycle_t *cycle, ngx_event_handler_pt tick)
{
    ngx_queue_init(&ngx_http_nb_maint_ws_gated);

    ngx_http_nb_maint_ws_dummy.fd = (ngx_socket_t) -1;

    ngx_http_nb_maint_ws_ev.handler = tick;
    ngx_http_nb_maint_ws_ev.data = &ngx_http_nb_maint_ws_dummy;
    ngx_http_nb_maint_ws_ev.log = cycle->log;
    ngx_http_nb_maint_ws_ev.cancelable = 1;
}


ngx_uint_t
ngx_http_nb_maint_ws_gated_empty(void)
{
    return ngx_queue_empty(&ngx_http_nb_maint_ws_gated);
}


/* the state key gated sockets were last brought up to */

uint64_t
ngx_http_nb_maint_ws_gated_key(void)
{
    return ngx_http_nb_maint_ws_key_now;
}


void
ngx_http_nb_maint_ws_arm(void)
{
    if (!ngx_http_nb_maint_ws_ev.timer_set) {
        ngx_add_timer(&ngx_http_nb_maint_ws_ev, NB_WS_TICK);
    }
}


/* gated sockets */

static void
ngx_http_nb_maint_ws_close(ngx_http_nb_maint_ws_t *ws)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (ws->queue.next == NULL) {
        return;                     /* closing already */
    }

    r = ws->request;
    c = ws->connection;

    ngx_queue_remove(&ws->queue);
    ws->queue.next = NULL;

    if (r == NULL) {
        /* slim: logged at the handshake; ws goes with the connection */
        ngx_http_close_connection(c);
        return;
    }

    ngx_http_finalize_request(r, NGX_ERROR);

    /*
     * In the socket's own handlers the close runs once they return; from
     * the timer or another socket's handler (a state change seen at its
     * handshake) it must run here, or it would wait for the client's next
     * bytes.  Either way ws is not used after this.
     */
    if (ws != ngx_http_nb_maint_ws_running) {
        ngx_http_run_posted_requests(c);
    }
}


/*
 * Send bytes, or keep what the socket does not take after those still
 * unsent.  NGX_ERROR: the socket failed, or the client does not read and
 * more than NB_WS_OUT_MAX would be held for it (the caller closes it).
 * Nothing is sent after a close frame.
 */

static ngx_int_t
ngx_http_nb_maint_ws_queue(ngx_http_nb_maint_ws_t *ws, u_char *data,
    size_t len)
{
    ssize_t            n;
    ngx_connection_t  *c;

    if (ws->close_sent) {
        return NGX_OK;
    }

    c = ws->connection;

    if (ws->out_len == 0) {
        n = c->send(c, data, len);

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (n > 0) {
            data += n;
            len -= n;
        }

        if (len == 0) {
            return NGX_OK;
        }
    }

    if (ws->out_len + len > NB_WS_OUT_MAX) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "nb_maint: WebSocket client does not read, closing");
        return NGX_ERROR;
    }

    if (ws->out == NULL) {
        ws->out = ngx_palloc(ws->pool, NB_WS_OUT_MAX);
        if (ws->out == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_memcpy(ws->out + ws->out_len, data, len);
    ws->out_len += len;

    return NGX_OK;
}


/* a close frame: nothing is sent after it, the socket goes once it is out */

static ngx_int_t
ngx_http_nb_maint_ws_queue_close(ngx_http_nb_maint_ws_t *ws, u_char *data,
    size_t len)
{
    u_char  frame[4 + NB_WS_CTL_MAX], *p;

    p = ngx_http_nb_maint_ws_frame(frame, 0x8, data, len);

    if (ngx_http_nb_maint_ws_queue(ws, frame, p - frame) != NGX_OK) {
        return NGX_ERROR;
    }

    ws->close_sent = 1;
    ws->closing = 1;

    return NGX_OK;
}


/* send what is queued; NGX_OK all sent, NGX_AGAIN, NGX_ERROR */

static ngx_int_t
ngx_http_nb_maint_ws_flush(ngx_http_nb_maint_ws_t *ws)
{
    ssize_t            n;
    ngx_uint_t         sent;
    ngx_connection_t  *c;

    c = ws->connection;
    sent = 0;

    while (ws->out_len) {
        n = c->send(c, ws->out, ws->out_len);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                return NGX_ERROR;
            }

            /* nb_maint_ws_send_timeout: without progress */
            if (ws->conf->ws_send_timeout && (sent || !c->write->timer_set)) {
                ngx_add_timer(c->write, ws->conf->ws_send_timeout);
            }

            return NGX_AGAIN;
        }

        if (n == NGX_ERROR || n == 0) {
            return NGX_ERROR;
        }

        ngx_memmove(ws->out, ws->out + n, ws->out_len - n);
        ws->out_len -= n;
        sent = 1;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    /*
     * Held only while output is in flight: an idle socket keeps no
     * buffer, as core frees an idle keepalive connection's buffers (a
     * large allocation, so ngx_pfree gives it back at once).
     */
    if (ws->out) {
        ngx_pfree(ws->pool, ws->out);
        ws->out = NULL;
    }

    return NGX_OK;
}


/* bring one socket up to the current state */

void
ngx_http_nb_maint_ws_sync(ngx_http_nb_maint_ws_t *ws)
{
    ngx_int_t   rc;
    uint64_t    key;
    ngx_str_t  *msg;

    rc = ngx_http_nb_maint_ws_flush(ws);

    if (rc == NGX_ERROR) {
        ngx_http_nb_maint_ws_close(ws);
        return;
    }

    if (rc == NGX_AGAIN) {
        return;
    }

    if (ws->closing) {
        ngx_http_nb_maint_ws_close(ws);
        return;
    }

    key = ngx_http_nb_maint_ws_key_now;

    if (ws->sent == key) {
        return;
    }

    msg = ngx_http_nb_maint_ws_message(key);

    if (msg == NULL || ngx_http_nb_maint_ws_queue(ws, msg->data, msg->len)
                       != NGX_OK)
    {
        ngx_http_nb_maint_ws_close(ws);
        return;
    }

    ws->sent = key;

    if ((key & 3) == NB_WS_ALLOWED) {
        ws->close_sent = 1;         /* the message ends with a close frame */
        ws->closing = 1;
    }

    ngx_http_nb_maint_ws_sync(ws);
}


/* a complete control frame from the client: pong a ping, echo a close */

static ngx_int_t
ngx_http_nb_maint_ws_control(ngx_http_nb_maint_ws_t *ws)
{
    u_char                          frame[4 + NB_WS_CTL_MAX], *p;
    ngx_http_nb_maint_ws_parser_t  *ps;

    ps = &ws->in;

    switch (ps->opcode) {

    case 0x9:
        p = ngx_http_nb_maint_ws_frame(frame, 0xa, ps->ctl, ps->pos);
        return ngx_http_nb_maint_ws_queue(ws, frame, p - frame);

    case 0x8:
        return ngx_http_nb_maint_ws_queue_close(ws, ps->ctl,
                                                ps->pos >= 2 ? 2 : 0);

    default:                                    /* a pong */
        return NGX_OK;
    }
}


/*
 * Client bytes; NGX_ERROR: a protocol error (the caller closes with 1002);
 * NGX_ABORT: the socket must go at once.  After a close frame (either way)
 * what a client sends is ignored.
 */

static ngx_int_t
ngx_http_nb_maint_ws_parse_all(ngx_http_nb_maint_ws_t *ws, u_char *p,
    u_char *end)
{
    ngx_int_t  rc;

    while (!ws->close_sent) {
        rc = ngx_http_nb_maint_ws_parse(&ws->in, &p, end);

        if (rc != NGX_OK) {
            return rc == NGX_AGAIN ? NGX_OK : NGX_ERROR;
        }

        if (ngx_http_nb_maint_ws_control(ws) != NGX_OK) {
            return NGX_ABORT;
        }
    }

    return NGX_OK;
}


/*
 * Frames from the client; NGX_ERROR: the socket is closed already.  A
 * protocol error gets a close frame with 1002 and the socket goes once it
 * is out.
 */

static ngx_int_t
ngx_http_nb_maint_ws_input(ngx_http_nb_maint_ws_t *ws, u_char *p, u_char *end)
{
    ngx_int_t  rc;

    static u_char  close_1002[] = { 0x03, 0xea };

    rc = ngx_http_nb_maint_ws_parse_all(ws, p, end);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                      "nb_maint: WebSocket protocol error from client");

        if (!ws->close_sent
            && ngx_http_nb_maint_ws_queue_close(ws, close_1002, 2) == NGX_OK)
        {
            return NGX_OK;
        }

        rc = NGX_ABORT;
    }

    if (rc == NGX_ABORT) {
        ngx_http_nb_maint_ws_close(ws);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a socket's event in either form: client bytes, output, its timers */

static void
ngx_http_nb_maint_ws_event(ngx_http_nb_maint_ws_t *ws, ngx_event_t *ev)
{
    ngx_http_nb_maint_ws_running = ws;

    if (ws->connection->close) {
        ngx_http_nb_maint_ws_close(ws);     /* an old worker's shutdown */

    } else if (ev->timedout && ev->write) {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, NGX_ETIMEDOUT,
                      "nb_maint: WebSocket client timed out reading");
        ngx_http_nb_maint_ws_close(ws);

    } else if (ev->timedout) {
        ev->timedout = 0;
        ngx_http_nb_maint_ws_quiet(ws);

    } else if (ev->write) {
        ngx_http_nb_maint_ws_sync(ws);

    } else {
        ngx_http_nb_maint_ws_read_frames(ws);
    }

    ngx_http_nb_maint_ws_running = NULL;
}


static void
ngx_http_nb_maint_ws_read(ngx_http_request_t *r)
{
    ngx_http_nb_maint_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_nb_maint_module);

    ngx_http_nb_maint_ws_event(ctx->wsock, r->connection->read);
}


/*
 * The read timer: nb_maint_ws_idle_timeout without a byte from the client
 * closes the socket; a ping goes out after nb_maint_ws_ping_interval of
 * quiet (a live client's pong is a byte heard).
 */

static void
ngx_http_nb_maint_ws_arm_quiet(ngx_http_nb_maint_ws_t *ws)
{
    ngx_msec_t                     quiet, next, ping;
    ngx_http_nb_maint_loc_conf_t  *nlcf;

    nlcf = ws->conf;

    quiet = ngx_current_msec - ws->heard;
    next = NGX_MAX_INT32_VALUE;

    if (nlcf->ws_idle_timeout) {
        next = nlcf->ws_idle_timeout > quiet
               ? nlcf->ws_idle_timeout - quiet : 1;
    }

    if (nlcf->ws_ping_interval) {
        ping = nlcf->ws_ping_interval > quiet
               ? nlcf->ws_ping_interval - quiet : nlcf->ws_ping_interval;
        next = ngx_min(next, ping);
    }

    if (next != NGX_MAX_INT32_VALUE) {
        ngx_add_timer(ws->connection->read, next);
    }
}


static void
ngx_http_nb_maint_ws_quiet(ngx_http_nb_maint_ws_t *ws)
{
    ngx_msec_t                     quiet;
    ngx_http_nb_maint_loc_conf_t  *nlcf;

    static u_char  ping[] = { 0x89, 0x00 };

    nlcf = ws->conf;

    quiet = ngx_current_msec - ws->heard;

    if (nlcf->ws_idle_timeout && quiet >= nlcf->ws_idle_timeout) {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log,
                      NGX_ETIMEDOUT, "nb_maint: WebSocket client timed out");
        ngx_http_nb_maint_ws_close(ws);
        return;
    }

    if (nlcf->ws_ping_interval && quiet >= nlcf->ws_ping_interval
        && ngx_http_nb_maint_ws_queue(ws, ping, sizeof(ping)) != NGX_OK)
    {
        ngx_http_nb_maint_ws_close(ws);
        return;
    }

    ngx_http_nb_maint_ws_arm_quiet(ws);
    ngx_http_nb_maint_ws_sync(ws);
}


static void
ngx_http_nb_maint_ws_read_frames(ngx_http_nb_maint_ws_t *ws)
{
    u_char             buf[4096];
    ssize_t            n;
    ngx_connection_t  *c;

    c = ws->connection;

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_nb_maint_ws_close(ws);
            return;
        }

        ws->heard = ngx_current_msec;

        if (ngx_http_nb_maint_ws_input(ws, buf, buf + n) != NGX_OK) {
            return;
        }
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_nb_maint_ws_close(ws);
        return;
    }

    ngx_http_nb_maint_ws_sync(ws);
}


static void
ngx_http_nb_maint_ws_write(ngx_http_request_t *r)
{
    ngx_http_nb_maint_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_nb_maint_module);

    ngx_http_nb_maint_ws_event(ctx->wsock, r->connection->write);

    /* posted at the handshake: the request may go now */
    ngx_http_nb_maint_ws_slim(ctx->wsock);
}


/* the slim form (see the top); ws_conn.c frees the request */

static void
ngx_http_nb_maint_ws_slim(ngx_http_nb_maint_ws_t *ws)
{
    ngx_connection_t        *c;
    ngx_pool_cleanup_t      *cln, *ours;
    ngx_http_nb_maint_ws_t  *slim;

    c = ws->connection;

    if (ws->request == NULL || !ws->may_slim || ws->queue.next == NULL
        || ws->closing || ws->out_len)
    {
        return;
    }

    ours = ngx_http_nb_maint_ws_conn_idle(ws->request,
                                          ngx_http_nb_maint_ws_cleanup, ws);
    if (ours == NULL) {
        return;             /* limit_conn's slot: the request lives on */
    }

    cln = ngx_pool_cleanup_add(c->pool, sizeof(ngx_http_nb_maint_ws_t));
    if (cln == NULL) {
        return;
    }

    slim = cln->data;
    ngx_memcpy(slim, ws, sizeof(ngx_http_nb_maint_ws_t));
    cln->handler = ngx_http_nb_maint_ws_cleanup;

    slim->request = NULL;
    slim->pool = c->pool;
    slim->out = NULL;               /* none while nothing is unsent */

    ngx_queue_insert_after(&ws->queue, &slim->queue);
    ngx_queue_remove(&ws->queue);
    ws->queue.next = NULL;
    ours->handler = NULL;

    ngx_http_nb_maint_ws_conn_free(ws->request);

    c->data = slim;
    c->read->handler = ngx_http_nb_maint_ws_slim_event;
    c->write->handler = ngx_http_nb_maint_ws_slim_event;
}


static void
ngx_http_nb_maint_ws_slim_event(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    ngx_http_nb_maint_ws_event(c->data, ev);
}


static void
ngx_http_nb_maint_ws_cleanup(void *data)
{
    ngx_http_nb_maint_ws_t *ws = data;

    if (ws->queue.next) {
        ngx_queue_remove(&ws->queue);
        ws->queue.next = NULL;
    }
}


ngx_http_nb_maint_ws_t *
ngx_http_nb_maint_ws_adopt(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t       *cln;
    ngx_http_nb_maint_ws_t   *ws;
    ngx_http_nb_maint_ctx_t  *ctx;

    ctx = ngx_http_nb_maint_get_ctx(r);

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_nb_maint_ws_t));
    if (ctx == NULL || cln == NULL) {
        return NULL;
    }

    ws = cln->data;
    ngx_memzero(ws, sizeof(ngx_http_nb_maint_ws_t));

    ws->connection = r->connection;
    ws->request = r;
    ws->pool = r->pool;
    ws->conf = ngx_http_get_module_loc_conf(r, ngx_http_nb_maint_module);
    ctx->wsock = ws;

    cln->handler = ngx_http_nb_maint_ws_cleanup;

    if (ngx_http_nb_maint_ws_conn_adopt(r) != NGX_OK) {
        return NULL;
    }

    r->read_event_handler = ngx_http_nb_maint_ws_read;
    r->write_event_handler = ngx_http_nb_maint_ws_write;

    ws->heard = ngx_current_msec;
    ngx_http_nb_maint_ws_arm_quiet(ws);

    ngx_queue_insert_tail(&ngx_http_nb_maint_ws_gated, &ws->queue);

    ngx_http_nb_maint_ws_arm();

    return ws;
}


/*
 * From the handshake (ws_handshake.c): the 101, the first message, then
 * the frames the client sent right behind its handshake.
 */

ngx_int_t
ngx_http_nb_maint_ws_open(ngx_http_request_t *r, u_char *accept)
{
    ngx_int_t  rc;

    rc = ngx_http_nb_maint_ws_start(r, accept);
    ngx_http_nb_maint_ws_running = NULL;

    return rc;
}


static ngx_int_t
ngx_http_nb_maint_ws_start(ngx_http_request_t *r, u_char *accept)
{
    u_char                  *p;
    u_char                   head[sizeof("HTTP/1.1 101 Switching Protocols\r\n"
                                         "Upgrade: websocket\r\n"
                                         "Connection: Upgrade\r\n"
                                         "Sec-WebSocket-Accept: \r\n\r\n")
                                  + 32];
    ngx_http_nb_maint_ws_t  *ws;

    /* the access log shows the 101 */
    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    r->header_sent = 1;

    ws = ngx_http_nb_maint_ws_adopt(r);
    if (ws == NULL) {
        return NGX_ERROR;
    }

    ngx_http_nb_maint_ws_running = ws;

    p = ngx_sprintf(head, "HTTP/1.1 101 Switching Protocols\r\n"
                          "Upgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: %s\r\n\r\n", accept);

    if (ngx_http_nb_maint_ws_queue(ws, head, p - head) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the handshake and the first message go out together */
    ngx_http_nb_maint_ws_update();

    if (ws->queue.next == NULL) {
        return NGX_OK;      /* closed already */
    }

    ngx_http_nb_maint_ws_sync(ws);

    if (ws->queue.next && r->header_in
        && r->header_in->pos < r->header_in->last)
    {
        /* frames the client sent right behind its handshake */
        if (ngx_http_nb_maint_ws_input(ws, r->header_in->pos,
                                       r->header_in->last)
            != NGX_OK)
        {
            return NGX_OK;
        }

        r->header_in->pos = r->header_in->last;
        ngx_http_nb_maint_ws_sync(ws);
    }

    if (ws->queue.next) {
        /* once the handler is done with the request: the slim form */
        ws->may_slim = 1;
        ngx_post_event(r->connection->write, &ngx_posted_events);
    }

    return NGX_OK;
}


/* a new state key: every gated socket of this worker hears of it */

void
ngx_http_nb_maint_ws_update(void)
{
    uint64_t                  key;
    ngx_queue_t              *q, *next;
    ngx_http_nb_maint_ws_t   *ws;

    key = ngx_http_nb_maint_ws_key();

    if (key == ngx_http_nb_maint_ws_key_now) {
        return;
    }

    ngx_http_nb_maint_ws_key_now = key;

    for (q = ngx_queue_head(&ngx_http_nb_maint_ws_gated);
         q != ngx_queue_sentinel(&ngx_http_nb_maint_ws_gated);
         q = next)
    {
        next = ngx_queue_next(q);
        ws = ngx_queue_data(q, ngx_http_nb_maint_ws_t, queue);
        ngx_http_nb_maint_ws_sync(ws);
    }
}

