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
 *
 * A second, core module in this file checks once the whole configuration
 * is read (http{} may come after stream{}) that every nb_maint_agent names
 * an http upstream with "nb_maint;": else "nginx -t" fails.  It may call the
 * http module's configuration only, never the other way round.
 */

#include "ngx_http_nb_maint.h"
#include <ngx_stream.h>


#define NB_AGENT_LINE     (NB_NODE_ID_LEN + 16)
#define NB_AGENT_TIMEOUT  5000


typedef struct {
    ngx_str_t                      upstream;
    ngx_http_nb_maint_srv_conf_t  *up;       /* set by the check below */
} ngx_stream_nb_maint_srv_conf_t;


/* one nb_maint_agent directive, where it was written */

typedef struct {
    ngx_stream_nb_maint_srv_conf_t  *conf;
    ngx_str_t                        file;
    ngx_uint_t                       line;
} ngx_stream_nb_maint_agent_t;


typedef struct {
    ngx_array_t                      agents;  /* ngx_stream_nb_maint_agent_t */
} ngx_stream_nb_maint_main_conf_t;


typedef struct {
    size_t      len;
    u_char      buf[NB_AGENT_LINE];
} ngx_stream_nb_maint_ctx_t;


static void *ngx_stream_nb_maint_create_main_conf(ngx_conf_t *cf);
static void *ngx_stream_nb_maint_create_srv_conf(ngx_conf_t *cf);
static char *ngx_stream_nb_maint_check(ngx_cycle_t *cycle, void *conf);
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

    ngx_stream_nb_maint_create_main_conf,  /* create main configuration */
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


/* the check after the whole configuration: a core module's init_conf */

static ngx_core_module_t  ngx_stream_nb_maint_check_module_ctx = {
    ngx_string("nb_maint_agent_check"),
    NULL,                                  /* create conf */
    ngx_stream_nb_maint_check              /* init conf */
};


ngx_module_t  ngx_stream_nb_maint_check_module = {
    NGX_MODULE_V1,
    &ngx_stream_nb_maint_check_module_ctx, /* module context */
    NULL,                                  /* module directives */
    NGX_CORE_MODULE,                       /* module type */
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
ngx_stream_nb_maint_create_main_conf(ngx_conf_t *cf)
{
    ngx_stream_nb_maint_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_stream_nb_maint_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&amcf->agents, cf->pool, 2,
                       sizeof(ngx_stream_nb_maint_agent_t))
        != NGX_OK)
    {
        return NULL;
    }

    return amcf;
}


static void *
ngx_stream_nb_maint_create_srv_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_stream_nb_maint_srv_conf_t));
}


static char *
ngx_stream_nb_maint_agent(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_stream_nb_maint_srv_conf_t *nscf = conf;

    ngx_str_t                        *value;
    ngx_stream_core_srv_conf_t       *cscf;
    ngx_stream_nb_maint_agent_t      *agent;
    ngx_stream_nb_maint_main_conf_t  *amcf;

    if (nscf->upstream.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "needs an upstream name";
    }

    nscf->upstream = value[1];

    /* checked once the http{} block is known too, wherever it is */

    amcf = ngx_stream_conf_get_module_main_conf(cf, ngx_stream_nb_maint_module);

    agent = ngx_array_push(&amcf->agents);
    if (agent == NULL) {
        return NGX_CONF_ERROR;
    }

    agent->conf = nscf;
    agent->file = cf->conf_file->file.name;
    agent->line = cf->conf_file->line;

    cscf = ngx_stream_conf_get_module_srv_conf(cf, ngx_stream_core_module);
    cscf->handler = ngx_stream_nb_maint_handler;

    return NGX_CONF_OK;
}


/* the nb_maint upstream called "name" in the http module's configuration */

static ngx_http_nb_maint_srv_conf_t *
ngx_stream_nb_maint_find(ngx_http_nb_maint_main_conf_t *nmcf, ngx_str_t *name)
{
    ngx_uint_t                      i;
    ngx_http_nb_maint_srv_conf_t  **up;

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


/* whether the http module has a plain upstream called "name" */

static ngx_uint_t
ngx_stream_nb_maint_http_upstream(ngx_cycle_t *cycle, ngx_str_t *name)
{
    ngx_uint_t                       i;
    ngx_http_upstream_srv_conf_t   **uscfp;
    ngx_http_upstream_main_conf_t   *umcf;

    umcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_upstream_module);
    if (umcf == NULL) {
        return 0;
    }

    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (uscfp[i]->srv_conf != NULL
            && uscfp[i]->host.len == name->len
            && ngx_strncmp(uscfp[i]->host.data, name->data, name->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * Core modules' init_conf runs after the whole configuration is parsed,
 * stream{} and http{} in either order: every agent gets its upstream here
 * or "nginx -t" fails naming the directive and where it is written.
 */

static char *
ngx_stream_nb_maint_check(ngx_cycle_t *cycle, void *conf)
{
    const char                       *why;
    ngx_uint_t                        i;
    ngx_stream_nb_maint_agent_t      *agent;
    ngx_http_nb_maint_main_conf_t    *nmcf;
    ngx_stream_nb_maint_main_conf_t  *amcf;

    amcf = ngx_stream_cycle_get_module_main_conf(cycle,
                                                 ngx_stream_nb_maint_module);
    if (amcf == NULL) {
        return NGX_CONF_OK;
    }

    nmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_nb_maint_module);

    agent = amcf->agents.elts;

    for (i = 0; i < amcf->agents.nelts; i++) {

        if (nmcf != NULL) {
            agent[i].conf->up = ngx_stream_nb_maint_find(nmcf,
                                                     &agent[i].conf->upstream);
            if (agent[i].conf->up != NULL) {
                continue;
            }
        }

        if (nmcf == NULL) {
            why = "there is no http{} block with nb_maint";

        } else if (ngx_stream_nb_maint_http_upstream(cycle,
                                                     &agent[i].conf->upstream))
        {
            why = "that http upstream has no \"nb_maint;\"";

        } else {
            why = "there is no http upstream of that name";
        }

        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "\"nb_maint_agent\" names upstream \"%V\", but %s, "
                      "in %V:%ui", &agent[i].conf->upstream, why,
                      &agent[i].file, agent[i].line);

        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the agent's answer for one node id */

static const char *
ngx_stream_nb_maint_answer(ngx_stream_session_t *s, u_char *id, size_t len)
{
    ngx_str_t                        esc;
    ngx_int_t                        want;
    ngx_uint_t                       j, mode;
    ngx_http_nb_maint_shm_t         *sh;
    ngx_http_nb_maint_node_t        *node;
    ngx_http_nb_maint_state_t       *st;
    ngx_http_nb_maint_srv_conf_t    *up;
    ngx_stream_nb_maint_srv_conf_t  *nscf;

    nscf = ngx_stream_get_module_srv_conf(s, ngx_stream_nb_maint_module);

    /* resolved by ngx_stream_nb_maint_check(): nginx does not start without */
    up = nscf->up;
    if (up == NULL) {
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

    /* as the balancer decides for a public request (issue 21, item 9) */

    want = -1;

    if (mode == NB_MODE_MAINTENANCE) {
        want = ngx_http_nb_maint_designated();
        if (want < 0) {
            return "maint";
        }
    }

    switch (ngx_http_nb_maint_node_use(sh, st, up->nodes[j], want)) {

    case NB_USE_OK:
        return "up ready";

    case NB_USE_DRAIN:
        return "up drain";

    case NB_USE_DOWN:
    case NB_USE_BUSY:   /* commanding, not designated: as HAProxy's own
                           check of NocoBase's readiness says (a 503) */
        return "down";

    default:            /* not the designated node */
        return "maint";
    }
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
