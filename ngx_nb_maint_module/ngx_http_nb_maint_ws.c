/*
 * nb_maint: WebSockets (SPEC sections 3 and 7).
 *
 * While public traffic is gated the gateway answers NocoBase's /ws itself
 * (RFC 6455) and speaks as a NocoBase node does: a "maintaining" message
 * for the current state, a new one on every change, and APP_RUNNING with
 * "refresh" followed by a close once traffic is allowed again.
 *
 * Proxied WebSockets are counted per node apart from in-flight requests and
 * closed after nb_maint_ws_drain_grace when their node is drained or taken
 * out by maintenance.  A public one open when an upgrade starts is taken
 * over by the gateway, so the open tab learns of the upgrade at once.
 *
 * Every worker keeps its own sockets in two lists and one timer looks at
 * shared memory a few times a second; a socket has no timer of its own.
 */

#include "ngx_http_nb_maint.h"
#include <openssl/sha.h>


#define NB_WS_TICK          200         /* ms between looks at the state */
#define NB_WS_GUID          "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define NB_WS_CTL_MAX       125

#define NB_WS_ALLOWED       0           /* kinds of gated sockets' state */
#define NB_WS_UPGRADE       1
#define NB_WS_STOPPED       2


/* a WebSocket the gateway answers itself */
typedef struct {
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

    /* bytes still to send (rare: a message is small) */
    u_char                  *out;
    size_t                   out_len;
    size_t                   out_size;
    unsigned                 closing:1;   /* close once sent */
} ngx_http_nb_maint_ws_t;


/* a proxied WebSocket: an upgraded upstream request */
typedef struct {
    ngx_queue_t              queue;
    ngx_http_request_t      *request;
    ngx_int_t                node;
    ngx_msec_t               doom;        /* closed at, 0: not doomed */
    ngx_uint_t               bypass;
} ngx_http_nb_maint_ws_proxied_t;


static void ngx_http_nb_maint_ws_tick(ngx_event_t *ev);
static void ngx_http_nb_maint_ws_update(void);
static void ngx_http_nb_maint_ws_read(ngx_http_request_t *r);
static void ngx_http_nb_maint_ws_write(ngx_http_request_t *r);
static void ngx_http_nb_maint_ws_sync(ngx_http_nb_maint_ws_t *ws);
static ngx_int_t ngx_http_nb_maint_ws_start(ngx_http_request_t *r,
    u_char *accept);


static ngx_queue_t        ngx_http_nb_maint_ws_gated;
static ngx_queue_t        ngx_http_nb_maint_ws_proxied;
static ngx_uint_t         ngx_http_nb_maint_ws_doomed;
static ngx_event_t        ngx_http_nb_maint_ws_ev;
static ngx_connection_t   ngx_http_nb_maint_ws_dummy;
static uint64_t           ngx_http_nb_maint_ws_key_now;
static uint64_t           ngx_http_nb_maint_ws_seq;   /* proxied: seen */
static ngx_str_t          ngx_http_nb_maint_ws_msg;   /* frames for key_now */
static uint64_t           ngx_http_nb_maint_ws_msg_key;
static ngx_uint_t         ngx_http_nb_maint_ws_in_timer;

static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


void
ngx_http_nb_maint_ws_init_process(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_http_nb_maint_ws_gated);
    ngx_queue_init(&ngx_http_nb_maint_ws_proxied);

    ngx_http_nb_maint_ws_dummy.fd = (ngx_socket_t) -1;

    ngx_http_nb_maint_ws_ev.handler = ngx_http_nb_maint_ws_tick;
    ngx_http_nb_maint_ws_ev.data = &ngx_http_nb_maint_ws_dummy;
    ngx_http_nb_maint_ws_ev.log = cycle->log;
    ngx_http_nb_maint_ws_ev.cancelable = 1;
}


static void
ngx_http_nb_maint_ws_arm(void)
{
    if (!ngx_http_nb_maint_ws_ev.timer_set) {
        ngx_add_timer(&ngx_http_nb_maint_ws_ev, NB_WS_TICK);
    }
}


/* whether a public request would find a node now (SPEC section 3) */

ngx_uint_t
ngx_http_nb_maint_public_node(void)
{
    ngx_int_t                       want;
    ngx_uint_t                      i, j, n, mode;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_state_t      *st;
    ngx_http_nb_maint_srv_conf_t  **up;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_nb_maint_module);
    sh = ngx_http_nb_maint_shm();
    st = ngx_http_nb_maint_snapshot();

    mode = (st->mode == NB_MODE_RESTORING) ? st->restoring_from : st->mode;

    if (mode == NB_MODE_UPGRADE) {
        return 0;
    }

    /* no nb_maint upstream: nothing to judge, /ws goes where it is sent */
    if (nmcf->upstreams.nelts == 0) {
        return 1;
    }

    want = -1;

    if (mode == NB_MODE_MAINTENANCE) {
        want = ngx_http_nb_maint_designated();    /* kept with the state */
        if (want < 0) {
            return 0;
        }
    }

    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        for (j = 0; j < up[i]->nnodes; j++) {
            n = up[i]->nodes[j];

            if (up[i]->down[j] || nb_drained(st, n)
                || (want >= 0 && (ngx_int_t) n != want)
                || sh->node_down[n] == NB_NODE_DOWN
                || (sh->node_down[n] == NB_NODE_BUSY && want < 0))
            {
                continue;
            }

            return 1;
        }
    }

    return 0;
}


/* the state as gated sockets see it: version and kind */

static uint64_t
ngx_http_nb_maint_ws_key(void)
{
    ngx_uint_t                  kind;
    ngx_http_nb_maint_state_t  *st;

    st = ngx_http_nb_maint_snapshot();

    if (st->mode == NB_MODE_UPGRADE
        || (st->mode == NB_MODE_RESTORING
            && st->restoring_from == NB_MODE_UPGRADE))
    {
        kind = NB_WS_UPGRADE;

    } else if (!ngx_http_nb_maint_public_node()) {
        kind = NB_WS_STOPPED;

    } else {
        kind = NB_WS_ALLOWED;
    }

    return (st->version << 2) | kind;
}


/* a server frame: FIN + opcode, unmasked */

static u_char *
ngx_http_nb_maint_ws_frame(u_char *p, ngx_uint_t opcode, u_char *data,
    size_t len)
{
    *p++ = (u_char) (0x80 | opcode);

    if (len < 126) {
        *p++ = (u_char) len;

    } else {
        *p++ = 126;
        *p++ = (u_char) (len >> 8);
        *p++ = (u_char) len;
    }

    return ngx_cpymem(p, data, len);
}


/*
 * NocoBase's messages, rendered once per state key:
 *   {"type":"maintaining","payload":{"code":"APP_COMMANDING",
 *    "message":"...","command":{"name":"upgrade"}}}
 *   {"type":"maintaining","payload":{"code":"APP_STOPPED",...}}
 *   {"type":"maintaining","payload":{"code":"APP_RUNNING",...,
 *    "refresh":true}} and a close frame (1000)
 */

static ngx_str_t *
ngx_http_nb_maint_ws_message(uint64_t key)
{
    char                       *s;
    u_char                     *p;
    size_t                      len;
    cJSON                      *root, *pl, *cmd;
    ngx_uint_t                  kind;
    ngx_http_nb_maint_state_t  *st;

    static u_char               close_1000[] = { 0x03, 0xe8 };

    if (ngx_http_nb_maint_ws_msg.data && ngx_http_nb_maint_ws_msg_key == key)
    {
        return &ngx_http_nb_maint_ws_msg;
    }

    kind = key & 3;
    st = ngx_http_nb_maint_snapshot();

    root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "type", "maintaining");
    pl = cJSON_AddObjectToObject(root, "payload");

    if (pl == NULL) {
        cJSON_Delete(root);
        return NULL;
    }

    switch (kind) {

    case NB_WS_UPGRADE:
        cJSON_AddStringToObject(pl, "code", "APP_COMMANDING");

        if (st->reason_len) {
            cJSON_AddItemToObject(pl, "message",
                      ngx_http_nb_maint_json_strn(st->reason, st->reason_len));
        } else {
            cJSON_AddStringToObject(pl, "message",
                                    "The application is being upgraded to "
                                    "a new version. It will be back "
                                    "shortly.");
        }

        cmd = cJSON_AddObjectToObject(pl, "command");
        cJSON_AddStringToObject(cmd, "name", "upgrade");
        break;

    case NB_WS_STOPPED:
        cJSON_AddStringToObject(pl, "code", "APP_STOPPED");
        cJSON_AddStringToObject(pl, "message", "application main is stopped");
        break;

    default:
        cJSON_AddStringToObject(pl, "code", "APP_RUNNING");
        cJSON_AddStringToObject(pl, "message", "application main is running");
        cJSON_AddTrueToObject(pl, "refresh");
    }

    s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);

    if (s == NULL) {
        return NULL;
    }

    len = ngx_strlen(s);

    if (len > 65535) {
        ngx_free(s);
        return NULL;
    }

    if (ngx_http_nb_maint_ws_msg.data) {
        ngx_free(ngx_http_nb_maint_ws_msg.data);
        ngx_http_nb_maint_ws_msg.data = NULL;
    }

    p = ngx_alloc(4 + len + 4, ngx_cycle->log);
    if (p == NULL) {
        ngx_free(s);
        return NULL;
    }

    ngx_http_nb_maint_ws_msg.data = p;

    p = ngx_http_nb_maint_ws_frame(p, 0x1, (u_char *) s, len);

    if (kind == NB_WS_ALLOWED) {
        p = ngx_http_nb_maint_ws_frame(p, 0x8, close_1000, 2);
    }

    ngx_free(s);

    ngx_http_nb_maint_ws_msg.len = p - ngx_http_nb_maint_ws_msg.data;
    ngx_http_nb_maint_ws_msg_key = key;

    return &ngx_http_nb_maint_ws_msg;
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
     * In a request's own handlers the close runs once they return; from
     * the timer it must run here.  Either way ws is not used after this.
     */
    if (ngx_http_nb_maint_ws_in_timer) {
        ngx_http_run_posted_requests(c);
    }
}


/* queue bytes after those still unsent */

static ngx_int_t
ngx_http_nb_maint_ws_queue(ngx_http_nb_maint_ws_t *ws, u_char *data,
    size_t len)
{
    u_char  *p;
    size_t   size;

    if (ws->out_len + len > ws->out_size) {
        size = ngx_max(ws->out_len + len, 256);

        p = ngx_palloc(ws->request->pool, size);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (ws->out_len) {
            ngx_memcpy(p, ws->out, ws->out_len);
        }

        ws->out = p;
        ws->out_size = size;
    }

    ngx_memcpy(ws->out + ws->out_len, data, len);
    ws->out_len += len;

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

static void
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
        ws->closing = 1;
    }

    ngx_http_nb_maint_ws_sync(ws);
}


/* client frames: masked; data is read and dropped, pings answered */

static ngx_int_t
ngx_http_nb_maint_ws_frame_end(ngx_http_nb_maint_ws_t *ws)
{
    u_char  frame[4 + NB_WS_CTL_MAX], *p;
    size_t  len;

    len = ws->pos;

    switch (ws->opcode) {

    case 0x9:                                   /* ping: pong */
        p = ngx_http_nb_maint_ws_frame(frame, 0xa, ws->ctl, len);
        return ngx_http_nb_maint_ws_queue(ws, frame, p - frame);

    case 0x8:                                   /* close: echo the code */
        p = ngx_http_nb_maint_ws_frame(frame, 0x8, ws->ctl,
                                       len >= 2 ? 2 : 0);
        ws->closing = 1;
        return ngx_http_nb_maint_ws_queue(ws, frame, p - frame);

    default:                                    /* "ping" text and others */
        return NGX_OK;
    }
}


static ngx_int_t
ngx_http_nb_maint_ws_parse(ngx_http_nb_maint_ws_t *ws, u_char *p, u_char *end)
{
    size_t    need, n, i;
    uint64_t  len;

    while (p < end) {

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

            /* a complete header: RSV bits clear, masked, sane control */

            if ((ws->head[0] & 0x70) || !(ws->head[1] & 0x80)) {
                return NGX_ERROR;
            }

            ws->opcode = ws->head[0] & 0x0f;

            if (len == 126) {
                len = (ws->head[2] << 8) | ws->head[3];

            } else if (len == 127) {
                len = 0;
                for (i = 2; i < 10; i++) {
                    len = (len << 8) | ws->head[i];
                }
            }

            if ((ws->opcode & 0x8)
                && (len > NB_WS_CTL_MAX || !(ws->head[0] & 0x80)))
            {
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

            if (ngx_http_nb_maint_ws_frame_end(ws) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static void
ngx_http_nb_maint_ws_read(ngx_http_request_t *r)
{
    u_char                   buf[4096];
    ssize_t                  n;
    ngx_connection_t        *c;
    ngx_http_nb_maint_ws_t  *ws;

    c = r->connection;
    ws = ((ngx_http_nb_maint_ctx_t *)
          ngx_http_get_module_ctx(r, ngx_http_nb_maint_module))->wsock;

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_nb_maint_ws_close(ws);
            return;
        }

        if (ngx_http_nb_maint_ws_parse(ws, buf, buf + n) != NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "nb_maint: WebSocket protocol error from client");
            ngx_http_nb_maint_ws_close(ws);
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

    ngx_http_nb_maint_ws_sync(ctx->wsock);
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

    if (ngx_http_nb_maint_ws_start(r, accept) != NGX_OK) {
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


static ngx_http_nb_maint_ws_t *
ngx_http_nb_maint_ws_adopt(ngx_http_request_t *r)
{
    ngx_connection_t         *c;
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

    ws->request = r;
    ctx->wsock = ws;

    cln->handler = ngx_http_nb_maint_ws_cleanup;

    c = r->connection;
    c->log->action = "answering a WebSocket for nb_maint";

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
        if (ngx_http_nb_maint_ws_parse(ws, r->header_in->pos,
                                       r->header_in->last)
            != NGX_OK)
        {
            ngx_http_nb_maint_ws_close(ws);
            return NGX_OK;
        }

        r->header_in->pos = r->header_in->last;
        ngx_http_nb_maint_ws_sync(ws);
    }

    return NGX_OK;
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

        if (ctx && ctx->node >= 0 && !ctx->ws
            && ngx_http_nb_maint_ws_upgraded(r, ctx) != NGX_OK)
        {
            return NGX_ERROR;
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
 * A public WebSocket proxied when an upgrade starts: the gateway drops the
 * node's side and answers the client itself.  Only between frames: if the
 * node's bytes are still in flight, the socket is just closed.
 */

static void
ngx_http_nb_maint_ws_take_over(ngx_http_nb_maint_ws_proxied_t *wp)
{
    ngx_connection_t        *c;
    ngx_http_request_t      *r;
    ngx_http_upstream_t     *u;
    ngx_http_nb_maint_ws_t  *ws;

    r = wp->request;
    u = r->upstream;
    c = r->connection;

    ngx_http_nb_maint_ws_proxied_cleanup(wp);

    if (u == NULL || u->cleanup == NULL
        || u->buffer.pos != u->buffer.last || r->out)
    {
        ngx_http_finalize_request(r, NGX_ERROR);
        ngx_http_run_posted_requests(c);
        return;
    }

    *u->cleanup = NULL;
    u->cleanup = NULL;

    if (u->peer.connection) {
        ngx_close_connection(u->peer.connection);
        u->peer.connection = NULL;
    }

    if (u->peer.free && u->peer.sockaddr) {
        u->peer.free(&u->peer, u->peer.data, 0);
        u->peer.sockaddr = NULL;
    }

    ws = ngx_http_nb_maint_ws_adopt(r);
    if (ws == NULL) {
        ngx_http_finalize_request(r, NGX_ERROR);
        ngx_http_run_posted_requests(c);
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

    if (nb_drained(st, wp->node)) {
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
    ngx_http_request_t              *r;
    ngx_http_nb_maint_shm_t         *sh;
    ngx_http_nb_maint_state_t       *st;
    ngx_http_nb_maint_main_conf_t   *nmcf;
    ngx_http_nb_maint_ws_proxied_t  *wp;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_nb_maint_module);
    sh = ngx_http_nb_maint_shm();
    st = ngx_http_nb_maint_snapshot();

    designated = ngx_http_nb_maint_designated();    /* kept with the state */

    gated = (ngx_http_nb_maint_ws_key_now & 3) == NB_WS_UPGRADE;

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

            ngx_http_nb_maint_ws_proxied_cleanup(wp);

            /*
             * A reference of our own: the upstream's cleanup, run by the
             * terminate below, would otherwise free the request while
             * nginx still walks its cleanup list (heap-use-after-free
             * under make test-asan); the posted terminate handler closes
             * it whatever the count.
             */
            r = wp->request;
            r->main->count++;
            ngx_http_finalize_request(r, NGX_ERROR);
            ngx_http_run_posted_requests(c);
        }
    }
}


/* a new state key: every gated socket of this worker hears of it */

static void
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


static void
ngx_http_nb_maint_ws_tick(ngx_event_t *ev)
{
    uint64_t    seq;
    ngx_msec_t  now;

    seq = ngx_http_nb_maint_shm()->seq;
    now = ngx_current_msec;

    ngx_http_nb_maint_ws_in_timer = 1;

    ngx_http_nb_maint_ws_update();

    if (seq != ngx_http_nb_maint_ws_seq || ngx_http_nb_maint_ws_doomed) {
        ngx_http_nb_maint_ws_proxied_scan(now,
                                          seq != ngx_http_nb_maint_ws_seq);
        ngx_http_nb_maint_ws_seq = seq;
    }

    ngx_http_nb_maint_ws_in_timer = 0;

    if (!ngx_queue_empty(&ngx_http_nb_maint_ws_gated)
        || !ngx_queue_empty(&ngx_http_nb_maint_ws_proxied))
    {
        ngx_add_timer(ev, NB_WS_TICK);
    }
}
