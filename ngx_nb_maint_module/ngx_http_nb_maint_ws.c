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
 * Every worker keeps its own sockets in a list; a socket has no timer of
 * its own.
 *
 * May call: ws_message.c, bypass.c, state.c.
 */

#include "ngx_http_nb_maint_ws.h"
#include <openssl/sha.h>


#define NB_WS_GUID          "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define NB_WS_CTL_MAX       125

/*
 * Unsent output a socket may hold: the handshake and a message or two.  A
 * client that makes the gateway queue more (pings without reading) is
 * closed, never buffered further.
 */
#define NB_WS_OUT_MAX       8192

/*
 * The kernel's send buffer of a gated socket (it doubles the value): what
 * it holds for a client that does not read is bounded too, not autotuned
 * up to megabytes.  "listen ... sndbuf=" of the server wins.
 */
#define NB_WS_SNDBUF        16384


/* a WebSocket the gateway answers itself */
struct ngx_http_nb_maint_ws_s {
    ngx_queue_t              queue;
    ngx_http_request_t      *request;
    uint64_t                 sent;        /* state key of the last message */

    /* the client frame being read */
    u_char                   head[14];
    size_t                   head_len;
    uint64_t                 left;        /* payload bytes still to read */
    u_char                   mask[4];
    ngx_uint_t               pos;         /* payload bytes read */
    ngx_uint_t               opcode;
    ngx_uint_t               payload;     /* reading the payload */
    u_char                   ctl[NB_WS_CTL_MAX];

    /* bytes the socket did not take yet: NB_WS_OUT_MAX, allocated once */
    u_char                  *out;
    size_t                   out_len;
    unsigned                 closing:1;   /* close once sent */
    unsigned                 close_sent:1;   /* no frame after a close */
    unsigned                 fragmented:1;   /* in a fragmented message */
};


static void ngx_http_nb_maint_ws_read(ngx_http_request_t *r);
static void ngx_http_nb_maint_ws_read_frames(ngx_http_nb_maint_ws_t *ws);
static void ngx_http_nb_maint_ws_write(ngx_http_request_t *r);
static ngx_int_t ngx_http_nb_maint_ws_start(ngx_http_request_t *r,
    u_char *accept);


static ngx_queue_t        ngx_http_nb_maint_ws_gated;
static ngx_event_t        ngx_http_nb_maint_ws_ev;
static ngx_connection_t   ngx_http_nb_maint_ws_dummy;
static uint64_t           ngx_http_nb_maint_ws_key_now;
static ngx_http_request_t *ngx_http_nb_maint_ws_running;  /* its handler */


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
    c = r->connection;

    ngx_queue_remove(&ws->queue);
    ws->queue.next = NULL;

    ngx_http_finalize_request(r, NGX_ERROR);

    /*
     * In the socket's own handlers the close runs once they return; from
     * the timer or another socket's handler (a state change seen at its
     * handshake) it must run here, or it would wait for the client's next
     * bytes.  Either way ws is not used after this.
     */
    if (r != ngx_http_nb_maint_ws_running) {
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

    c = ws->request->connection;

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
        ws->out = ngx_palloc(ws->request->pool, NB_WS_OUT_MAX);
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
    ngx_connection_t  *c;

    c = ws->request->connection;

    while (ws->out_len) {
        n = c->send(c, ws->out, ws->out_len);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                return NGX_ERROR;
            }

            return NGX_AGAIN;
        }

        if (n == NGX_ERROR || n == 0) {
            return NGX_ERROR;
        }

        ngx_memmove(ws->out, ws->out + n, ws->out_len - n);
        ws->out_len -= n;
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


/*
 * Client frames (RFC 6455 section 5): masked; data is read and dropped,
 * pings answered, a close echoed.  NGX_ERROR: a protocol error (the caller
 * closes with 1002); NGX_ABORT: the socket must go at once.
 */

static ngx_int_t
ngx_http_nb_maint_ws_frame_end(ngx_http_nb_maint_ws_t *ws)
{
    u_char      frame[4 + NB_WS_CTL_MAX], *p;
    ngx_uint_t  code;

    switch (ws->opcode) {

    case 0x9:                                   /* ping: pong */
        p = ngx_http_nb_maint_ws_frame(frame, 0xa, ws->ctl, ws->pos);

        if (ngx_http_nb_maint_ws_queue(ws, frame, p - frame) != NGX_OK) {
            return NGX_ABORT;
        }

        return NGX_OK;

    case 0x8:                                   /* close: echo the code */
        if (ws->pos == 1) {
            return NGX_ERROR;
        }

        if (ws->pos >= 2) {
            code = (ws->ctl[0] << 8) | ws->ctl[1];

            /* codes a peer may send (RFC 6455 section 7.4) */
            if (code < 1000 || code >= 5000
                || (code >= 1004 && code <= 1006)
                || (code >= 1015 && code < 3000))
            {
                return NGX_ERROR;
            }
        }

        if (ngx_http_nb_maint_ws_queue_close(ws, ws->ctl,
                                             ws->pos >= 2 ? 2 : 0)
            != NGX_OK)
        {
            return NGX_ABORT;
        }

        return NGX_OK;

    default:                                    /* "ping" text and others */
        return NGX_OK;
    }
}


/* a complete frame header: the checks of RFC 6455 section 5 */

static ngx_int_t
ngx_http_nb_maint_ws_header(ngx_http_nb_maint_ws_t *ws, uint64_t len)
{
    ngx_uint_t  fin, opcode;

    fin = ws->head[0] & 0x80;
    opcode = ws->head[0] & 0x0f;

    /* RSV bits clear (no extension is agreed), masked, a sane length */
    if ((ws->head[0] & 0x70) || !(ws->head[1] & 0x80) || (len >> 63)) {
        return NGX_ERROR;
    }

    if (opcode & 0x8) {
        /* close, ping, pong; others reserved; short and not fragmented */
        if (opcode > 0xa || len > NB_WS_CTL_MAX || !fin) {
            return NGX_ERROR;
        }

    } else {
        /* continuation only inside a message, text/binary only outside */
        if (opcode > 0x2 || (opcode == 0x0) != ws->fragmented) {
            return NGX_ERROR;
        }

        ws->fragmented = !fin;
    }

    ws->opcode = opcode;

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_ws_parse(ngx_http_nb_maint_ws_t *ws, u_char *p, u_char *end)
{
    size_t     need, n, i;
    uint64_t   len;
    ngx_int_t  rc;

    /* after a close frame (either way) what a client sends is ignored */

    while (p < end && !ws->close_sent) {

        if (!ws->payload) {
            ws->head[ws->head_len++] = *p++;

            if (ws->head_len < 2) {
                continue;
            }

            len = ws->head[1] & 0x7f;
            need = 2 + (len == 126 ? 2 : (len == 127 ? 8 : 0)) + 4;

            if (ws->head_len < need) {
                continue;
            }

            if (len == 126) {
                len = (ws->head[2] << 8) | ws->head[3];

            } else if (len == 127) {
                len = 0;
                for (i = 2; i < 10; i++) {
                    len = (len << 8) | ws->head[i];
                }
            }

            if (ngx_http_nb_maint_ws_header(ws, len) != NGX_OK) {
                return NGX_ERROR;
            }

            ngx_memcpy(ws->mask, &ws->head[need - 4], 4);
            ws->head_len = 0;
            ws->left = len;
            ws->pos = 0;
            ws->payload = 1;

        } else {
            n = (size_t) ngx_min((uint64_t) (end - p), ws->left);

            if (ws->opcode & 0x8) {
                for (i = 0; i < n; i++) {
                    ws->ctl[ws->pos] = p[i] ^ ws->mask[ws->pos % 4];
                    ws->pos++;
                }
            }

            p += n;
            ws->left -= n;
        }

        if (ws->left == 0) {
            ws->payload = 0;

            rc = ngx_http_nb_maint_ws_frame_end(ws);
            if (rc != NGX_OK) {
                return rc;
            }
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

    rc = ngx_http_nb_maint_ws_parse(ws, p, end);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_INFO, ws->request->connection->log, 0,
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


static void
ngx_http_nb_maint_ws_read(ngx_http_request_t *r)
{
    ngx_http_nb_maint_ws_t  *ws;

    ws = ((ngx_http_nb_maint_ctx_t *)
          ngx_http_get_module_ctx(r, ngx_http_nb_maint_module))->wsock;

    ngx_http_nb_maint_ws_running = r;
    ngx_http_nb_maint_ws_read_frames(ws);
    ngx_http_nb_maint_ws_running = NULL;
}


static void
ngx_http_nb_maint_ws_read_frames(ngx_http_nb_maint_ws_t *ws)
{
    u_char             buf[4096];
    ssize_t            n;
    ngx_connection_t  *c;

    c = ws->request->connection;

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_nb_maint_ws_close(ws);
            return;
        }

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

    ngx_http_nb_maint_ws_running = r;
    ngx_http_nb_maint_ws_sync(ctx->wsock);
    ngx_http_nb_maint_ws_running = NULL;
}


/* is this NocoBase's WebSocket handshake on nb_maint_ws_path? */

static ngx_uint_t
ngx_http_nb_maint_ws_request(ngx_http_request_t *r,
    ngx_http_nb_maint_loc_conf_t *nlcf, ngx_str_t *key)
{
    ngx_uint_t        i, upgrade, version;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (r->method != NGX_HTTP_GET || r->http_version != NGX_HTTP_VERSION_11
        || r != r->main
        || r->uri.len != nlcf->ws_path.len
        || ngx_strncmp(r->uri.data, nlcf->ws_path.data, r->uri.len) != 0)
    {
        return 0;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return 0;
    }
#endif

    upgrade = 0;
    version = 0;
    key->len = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

#define nb_hdr(name)  (h[i].key.len == sizeof(name) - 1                       \
                       && ngx_strncasecmp(h[i].key.data, (u_char *) name,    \
                                          sizeof(name) - 1) == 0)

        if (nb_hdr("Upgrade")) {
            upgrade = ngx_strlcasestrn(h[i].value.data,
                                       h[i].value.data + h[i].value.len,
                                       (u_char *) "websocket", 9 - 1)
                      != NULL;

        } else if (nb_hdr("Sec-WebSocket-Version")) {
            version = (h[i].value.len == 2
                       && ngx_strncmp(h[i].value.data, "13", 2) == 0);

        } else if (nb_hdr("Sec-WebSocket-Key")) {
            *key = h[i].value;
        }

#undef nb_hdr
    }

    /* the key is 16 bytes in base64 */
    return upgrade && version && key->len == 24;
}


/*
 * From the gate: NocoBase's /ws while public traffic is gated is answered
 * here.  NGX_DECLINED: not ours, the request goes on.
 */

ngx_int_t
ngx_http_nb_maint_ws_gate(ngx_http_request_t *r,
    ngx_http_nb_maint_loc_conf_t *nlcf, ngx_uint_t gated)
{
    u_char        sha[SHA_DIGEST_LENGTH], buf[24 + sizeof(NB_WS_GUID)];
    u_char        accept[32];
    ngx_int_t     rc;
    ngx_str_t     key, src, dst;

    if (!ngx_http_nb_maint_ws_request(r, nlcf, &key)) {
        return NGX_DECLINED;
    }

    if (gated) {
        if (ngx_http_nb_maint_passed(r, nlcf)
            || ngx_http_nb_maint_is_bypass(r))
        {
            return NGX_DECLINED;
        }

    } else if (ngx_http_nb_maint_public_node()) {
        return NGX_DECLINED;
    }

    ngx_memcpy(buf, key.data, 24);
    ngx_memcpy(buf + 24, NB_WS_GUID, sizeof(NB_WS_GUID) - 1);

    SHA1(buf, 24 + sizeof(NB_WS_GUID) - 1, sha);

    src.data = sha;
    src.len = SHA_DIGEST_LENGTH;
    dst.data = accept;

    ngx_encode_base64(&dst, &src);
    accept[dst.len] = '\0';

    nb_count(ngx_http_nb_maint_shm(),
             gated ? NB_OUT_GATED : NB_OUT_NO_NODE);

    ngx_http_nb_maint_ws_running = r;
    rc = ngx_http_nb_maint_ws_start(r, accept);
    ngx_http_nb_maint_ws_running = NULL;

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
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
    ngx_connection_t          *c;
    ngx_pool_cleanup_t        *cln;
    ngx_http_nb_maint_ws_t    *ws;
    ngx_http_nb_maint_ctx_t   *ctx;
    ngx_http_core_loc_conf_t  *clcf;
    int                        sndbuf;

    ctx = ngx_http_nb_maint_get_ctx(r);

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_nb_maint_ws_t));
    if (ctx == NULL || cln == NULL) {
        return NULL;
    }

    ws = cln->data;
    ngx_memzero(ws, sizeof(ngx_http_nb_maint_ws_t));

    ws->request = r;
    ctx->wsock = ws;

    cln->handler = ngx_http_nb_maint_ws_cleanup;

    c = r->connection;
    c->log->action = "answering a WebSocket for nb_maint";

    /* small frames go out at once, as on an upgraded proxied socket */
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        return NULL;
    }

    if (c->listening && c->listening->sndbuf == -1) {
        sndbuf = NB_WS_SNDBUF;

        if (setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, (const void *) &sndbuf,
                       sizeof(int))
            == -1)
        {
            ngx_log_error(NGX_LOG_ALERT, c->log, ngx_socket_errno,
                          "setsockopt(SO_SNDBUF, %d) failed, ignored",
                          sndbuf);
        }
    }

    /* an old worker closes it at once on reload: the client reconnects */
    c->idle = 1;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    r->keepalive = 0;
    r->lingering_close = 0;
    r->read_event_handler = ngx_http_nb_maint_ws_read;
    r->write_event_handler = ngx_http_nb_maint_ws_write;

    ngx_queue_insert_tail(&ngx_http_nb_maint_ws_gated, &ws->queue);

    ngx_http_nb_maint_ws_arm();

    return ws;
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

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the access log shows the 101 */
    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    r->header_sent = 1;

    ws = ngx_http_nb_maint_ws_adopt(r);
    if (ws == NULL) {
        return NGX_ERROR;
    }

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

