/*
 * nb_maint: the greeting on a proxied NocoBase WebSocket (issue 18).
 *
 * When a node stops, NocoBase broadcasts "maintaining" APP_STOPPED and an
 * open tab shows "App stopped".  The tab reconnects through the gateway to
 * another node, but NocoBase's client sends its token only when it is not
 * maintaining (client-v2 BaseApplication.setTokenInWebSocket) and a node
 * says nothing to a new socket (server gateway/ws-server.ts: messages only
 * on a status change), so nothing would ever clear the dialog.  The client
 * leaves its maintaining state on any message that is not "maintaining"
 * with a code other than APP_RUNNING (client-v2 Application.loadWebSocket).
 *
 * So after a node's 101 on nb_maint_ws_path the gateway puts, in front of
 * the node's own bytes, the message a node sends when its app is running
 * (app-supervisor: status "running" without "refresh", as after a plain
 * start): the tab leaves "App stopped" without reloading, sends its token
 * and goes on with that node.  Only for a node the health checks find up
 * (or do not check): a node running a command or failing speaks for itself.
 *
 * No allocation and nothing per frame: the frame goes into the free tail of
 * the upstream buffer before the first byte is relayed.
 *
 * May call: ws_message.c, state.c.
 */

#include "ngx_http_nb_maint_ws.h"


/* NocoBase's own words: errors.ts APP_RUNNING, without status/maintaining */
#define NB_WS_GREETING                                                        \
    "{\"type\":\"maintaining\",\"payload\":{\"message\":"                     \
    "\"application main is running\",\"code\":\"APP_RUNNING\"}}"


/* the request is NocoBase's WebSocket (nb_maint_ws_path) */

static ngx_uint_t
ngx_http_nb_maint_ws_greet_path(ngx_http_request_t *r)
{
    ngx_http_nb_maint_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_http_nb_maint_module);

    return r->uri.len == nlcf->ws_path.len
           && ngx_strncmp(r->uri.data, nlcf->ws_path.data, r->uri.len) == 0;
}


/*
 * r: a 101 from node ctx->node, not sent yet.  Returns NGX_OK when the
 * greeting is queued, NGX_DECLINED when this socket gets none.
 */

ngx_int_t
ngx_http_nb_maint_ws_greet(ngx_http_request_t *r,
    ngx_http_nb_maint_ctx_t *ctx)
{
    size_t                    len, rest;
    ngx_buf_t                *b;
    ngx_uint_t                health;
    ngx_http_nb_maint_shm_t  *sh;

    if (!ngx_http_nb_maint_ws_greet_path(r)) {
        return NGX_DECLINED;
    }

    sh = ngx_http_nb_maint_shm();
    health = sh->nodes[ctx->node].health;

    if (health != NB_HEALTH_UP && health != NB_HEALTH_UNKNOWN) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "nb_maint: no WebSocket greeting, node health %ui",
                       health);
        return NGX_DECLINED;
    }

    b = &r->upstream->buffer;
    len = 2 + sizeof(NB_WS_GREETING) - 1;

    /*
     * the bytes before b->pos hold the 101's header lines, which headers_in
     * and headers_out still point into: only the tail is free
     */
    if (b->start == NULL || (size_t) (b->end - b->last) < len) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "nb_maint: no room for the WebSocket greeting "
                      "(proxy_buffer_size)");
        return NGX_DECLINED;
    }

    rest = b->last - b->pos;

    if (rest) {
        ngx_memmove(b->pos + len, b->pos, rest);
    }

    (void) ngx_http_nb_maint_ws_frame(b->pos, 0x1, (u_char *) NB_WS_GREETING,
                                      sizeof(NB_WS_GREETING) - 1);
    b->last += len;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "nb_maint: WebSocket greeting queued, %uz bytes before "
                   "%uz of the node's", len, rest);

    return NGX_OK;
}
