/*
 * nb_maint: the connection under a WebSocket the gateway answers itself
 * (SPEC section 7, issue 21): its socket options once it is adopted, and
 * its request freed once the socket is idle, as ngx_http_set_keepalive
 * frees an idle keepalive connection's (the access log line written then,
 * the request's pool and the header buffers given back).
 *
 * May call: nothing of nb_maint.
 */

#include "ngx_http_nb_maint_ws.h"


/*
 * The kernel's send buffer of a gated socket (it doubles the value): what
 * it holds for a client that does not read is bounded too, not autotuned
 * up to megabytes.  "listen ... sndbuf=" of the server wins.
 */
#define NB_WS_SNDBUF        16384


ngx_int_t
ngx_http_nb_maint_ws_conn_adopt(ngx_http_request_t *r)
{
    int                        sndbuf;
    ngx_connection_t          *c;
    ngx_http_core_loc_conf_t  *clcf;

    c = r->connection;
    c->log->action = "answering a WebSocket for nb_maint";

    /* small frames go out at once, as on an upgraded proxied socket */
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        return NGX_ERROR;
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

    return NGX_OK;
}


/*
 * The pool cleanup of handler and data, if the request holds nothing else
 * (no limit_conn slot, no other module's cleanup, nothing in flight): then
 * it may be freed.  NULL: it must live on.
 */

ngx_pool_cleanup_t *
ngx_http_nb_maint_ws_conn_idle(ngx_http_request_t *r,
    ngx_pool_cleanup_pt handler, void *data)
{
    ngx_pool_cleanup_t  *cln, *ours;
    ngx_http_cleanup_t  *hcln;

    if (r != r->main || r->count != 1 || r->blocked || r->buffered
        || r->connection->buffered || r->postponed || r->posted_requests
        || r->out)
    {
        return NULL;
    }

    for (hcln = r->cleanup; hcln; hcln = hcln->next) {
        if (hcln->handler) {
            return NULL;
        }
    }

    ours = NULL;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == handler && cln->data == data) {
            ours = cln;

        } else if (cln->handler) {
            return NULL;
        }
    }

    return ours;
}


/* large header buffers, as ngx_http_set_keepalive gives them back */

static void
ngx_http_nb_maint_ws_conn_free_bufs(ngx_connection_t *c, ngx_chain_t **chain)
{
    ngx_chain_t  *cl, *ln;

    for (cl = *chain; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_pfree(c->pool, ln->buf->start);
        ngx_free_chain(c->pool, ln);
    }

    *chain = NULL;
}


/*
 * The access log line, the request and the header buffers go, as in
 * ngx_http_set_keepalive.  The caller sets the connection's data and
 * handlers.  From the request's write handler only, once the handshake's
 * handler has returned: ngx_http_free_request marks the connection
 * destroyed, so ngx_http_request_handler then runs no posted request on it.
 */

void
ngx_http_nb_maint_ws_conn_free(ngx_http_request_t *r)
{
    ngx_buf_t              *b;
    ngx_connection_t       *c;
    ngx_http_connection_t  *hc;

    c = r->connection;
    hc = r->http_connection;

    ngx_http_free_request(r, 0);

    c->log->action = "answering a WebSocket for nb_maint";

    b = c->buffer;

    if (b && ngx_pfree(c->pool, b->start) == NGX_OK) {
        b->pos = NULL;      /* as ngx_http_keepalive_handler expects it */
    }

    ngx_http_nb_maint_ws_conn_free_bufs(c, &hc->free);
    ngx_http_nb_maint_ws_conn_free_bufs(c, &hc->busy);
    hc->nbusy = 0;
}
