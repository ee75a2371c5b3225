/*
 * nb_maint: the HAProxy agent (SPEC section 9).
 *
 *     stream {
 *         server { listen 127.0.0.1:9777; nb_maint_agent nocobase; }
 *     }
 *
 * HAProxy's agent-check connects, sends "<node id>\n" (agent-send) and
 * reads one line: "up ready", "up drain", "maint" or "down", as the cluster
 * state in nb_maint's shared memory says.  The state is read through the
 * http module (load ngx_http_nb_maint_module.so before this one).
 */

#include "ngx_http_nb_maint.h"
#include <ngx_stream.h>


#define NB_AGENT_LINE     (NB_NODE_ID_LEN + 16)
#define NB_AGENT_TIMEOUT  5000


typedef struct {
    ngx_str_t   upstream;
} ngx_stream_nb_maint_srv_conf_t;


typedef struct {
    size_t      len;
    u_char      buf[NB_AGENT_LINE];
} ngx_stream_nb_maint_ctx_t;


static void *ngx_stream_nb_maint_create_srv_conf(ngx_conf_t *cf);
static char *ngx_stream_nb_maint_agent(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_stream_nb_maint_handler(ngx_stream_session_t *s);
static void ngx_stream_nb_maint_read(ngx_event_t *rev);


static ngx_command_t  ngx_stream_nb_maint_commands[] = {

    { ngx_string("nb_maint_agent"),
      NGX_STREAM_SRV_CONF|NGX_CONF_TAKE1,
      ngx_stream_nb_maint_agent,
      NGX_STREAM_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_stream_module_t  ngx_stream_nb_maint_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_stream_nb_maint_create_srv_conf,   /* create server configuration */
    NULL                                   /* merge server configuration */
};


ngx_module_t  ngx_stream_nb_maint_module = {
    NGX_MODULE_V1,
    &ngx_stream_nb_maint_module_ctx,       /* module context */
    ngx_stream_nb_maint_commands,          /* module directives */
    NGX_STREAM_MODULE,                     /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_stream_nb_maint_create_srv_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_stream_nb_maint_srv_conf_t));
}


static char *
ngx_stream_nb_maint_agent(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_stream_nb_maint_srv_conf_t *nscf = conf;

    ngx_str_t                   *value;
    ngx_stream_core_srv_conf_t  *cscf;

    if (nscf->upstream.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    nscf->upstream = value[1];

    cscf = ngx_stream_conf_get_module_srv_conf(cf, ngx_stream_core_module);
    cscf->handler = ngx_stream_nb_maint_handler;

    return NGX_CONF_OK;
}


/* the nb_maint upstream named by the directive, from the http module */

static ngx_http_nb_maint_srv_conf_t *
ngx_stream_nb_maint_upstream(ngx_str_t *name)
{
    ngx_uint_t                       i;
    ngx_http_nb_maint_srv_conf_t   **up;
    ngx_http_nb_maint_main_conf_t   *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_nb_maint_module);
    if (nmcf == NULL || nmcf->shm_zone == NULL) {
        return NULL;
    }

    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        if (up[i]->uscf->host.len == name->len
            && ngx_strncmp(up[i]->uscf->host.data, name->data, name->len) == 0)
        {
            return up[i];
        }
    }

    return NULL;
}


/* the agent's answer for one node id */

static const char *
ngx_stream_nb_maint_answer(ngx_stream_session_t *s, u_char *id, size_t len)
{
    ngx_str_t                        esc;
    ngx_uint_t                       j, mode;
    ngx_http_nb_maint_shm_t         *sh;
    ngx_http_nb_maint_node_t        *node;
    ngx_http_nb_maint_state_t       *st;
    ngx_http_nb_maint_srv_conf_t    *up;
    ngx_stream_nb_maint_srv_conf_t  *nscf;

    nscf = ngx_stream_get_module_srv_conf(s, ngx_stream_nb_maint_module);

    up = ngx_stream_nb_maint_upstream(&nscf->upstream);
    if (up == NULL) {
        ngx_log_error(NGX_LOG_ERR, s->connection->log, 0,
                      "nb_maint_agent: \"%V\" is not an http upstream with "
                      "\"nb_maint;\"", &nscf->upstream);
        return "down";
    }

    sh = ngx_http_nb_maint_shm();

    for (j = 0; j < up->nnodes; j++) {
        node = &sh->nodes[up->nodes[j]];

        if (node->id_len == len && ngx_strncmp(node->id, id, len) == 0) {
            goto found;
        }
    }

    /* the id comes from the network: escaped before it reaches the log */

    if (ngx_http_nb_maint_escape_log_str(s->connection->pool, id, len, &esc)
        == NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, s->connection->log, 0,
                      "nb_maint_agent: \"%V\" is not a server of upstream "
                      "\"%V\"", &esc, &nscf->upstream);
    }

    return "down";

found:

    st = ngx_http_nb_maint_snapshot();

    mode = (st->mode == NB_MODE_RESTORING) ? st->restoring_from : st->mode;

    if (mode == NB_MODE_UPGRADE) {
        return "maint";
    }

    if (mode == NB_MODE_MAINTENANCE
        && !(st->node_len == len && ngx_strncmp(st->node, id, len) == 0))
    {
        return "maint";
    }

    if (node->health == NB_HEALTH_DOWN) {
        return "down";
    }

    if (nb_drained(st, up->nodes[j])) {
        return "up drain";
    }

    return "up ready";
}


static void
ngx_stream_nb_maint_handler(ngx_stream_session_t *s)
{
    ngx_connection_t           *c;
    ngx_stream_nb_maint_ctx_t  *ctx;

    c = s->connection;
    c->log->action = "answering an nb_maint agent check";

    ctx = ngx_pcalloc(c->pool, sizeof(ngx_stream_nb_maint_ctx_t));
    if (ctx == NULL) {
        ngx_stream_finalize_session(s, NGX_STREAM_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_stream_set_ctx(s, ctx, ngx_stream_nb_maint_module);

    c->read->handler = ngx_stream_nb_maint_read;

    ngx_stream_nb_maint_read(c->read);
}


static void
ngx_stream_nb_maint_reply(ngx_stream_session_t *s,
    ngx_stream_nb_maint_ctx_t *ctx)
{
    u_char            *p, *end, out[64];
    size_t             len;
    ngx_connection_t  *c;

    c = s->connection;

    /* the id: the first line, without "\r" and surrounding blanks */

    p = ctx->buf;
    end = ngx_strlchr(p, p + ctx->len, '\n');
    if (end == NULL) {
        end = p + ctx->len;
    }

    while (end > p && (end[-1] == '\r' || end[-1] == ' ')) {
        end--;
    }

    while (p < end && *p == ' ') {
        p++;
    }

    len = ngx_sprintf(out, "%s\n", ngx_stream_nb_maint_answer(s, p, end - p))
          - out;

    if (c->send(c, out, len) != (ssize_t) len) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "nb_maint_agent: could not send the answer");
    }

    ngx_stream_finalize_session(s, NGX_STREAM_OK);
}


static void
ngx_stream_nb_maint_read(ngx_event_t *rev)
{
    ssize_t                     n;
    ngx_connection_t           *c;
    ngx_stream_session_t       *s;
    ngx_stream_nb_maint_ctx_t  *ctx;

    c = rev->data;
    s = c->data;
    ctx = ngx_stream_get_module_ctx(s, ngx_stream_nb_maint_module);

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "nb_maint_agent: no node id received");
        ngx_stream_finalize_session(s, NGX_STREAM_OK);
        return;
    }

    for ( ;; ) {
        n = c->recv(c, ctx->buf + ctx->len, NB_AGENT_LINE - ctx->len);

        if (n == NGX_AGAIN) {
            if (!rev->timer_set) {
                ngx_add_timer(rev, NB_AGENT_TIMEOUT);
            }

            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_stream_finalize_session(s,
                                            NGX_STREAM_INTERNAL_SERVER_ERROR);
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_stream_finalize_session(s, NGX_STREAM_OK);
            return;
        }

        if (n == 0) {
            break;          /* the peer is done sending */
        }

        ctx->len += n;

        if (ngx_strlchr(ctx->buf, ctx->buf + ctx->len, '\n')
            || ctx->len == NB_AGENT_LINE)
        {
            break;
        }
    }

    if (rev->timer_set) {
        ngx_del_timer(rev);
    }

    ngx_stream_nb_maint_reply(s, ctx);
}
