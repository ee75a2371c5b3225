/*
 * nb_maint: GET metrics, the Prometheus text format (SPEC section 5).
 */

#include "ngx_http_nb_maint.h"


static const char  *ngx_http_nb_maint_outcomes[NB_OUT_N] = {
    "proxied", "bypass", "maintenance_page", "no_healthy_node", "passed"
};


/*
 * A Prometheus label value: backslash, double quote and newline escaped
 * (an upstream name may hold anything its quoted config string held).
 * With dst NULL: the bytes it needs.
 */

static size_t
ngx_http_nb_maint_label(u_char *dst, ngx_str_t *v)
{
    size_t   n;
    u_char  *p, c;

    n = 0;

    for (p = v->data; p < v->data + v->len; p++) {
        c = *p;

        if (c == '\\' || c == '"' || c == '\n') {
            if (dst) {
                dst[n] = '\\';
                dst[n + 1] = (c == '\n') ? 'n' : c;
            }

            n += 2;
            continue;
        }

        if (dst) {
            dst[n] = c;
        }

        n++;
    }

    return n;
}


/* the text before the per-node lines: every value has a bounded width */

#define NB_METRICS_HEAD_LEN                                                   \
    (4096 + NB_OUT_N * (64 + NGX_ATOMIC_T_LEN * NB_WORKER_ROWS))

#define NB_NODE_UP        "nb_maint_node_up{upstream=\""
#define NB_NODE_DRAIN     "nb_maint_node_drain{upstream=\""
#define NB_NODE_ACTIVE    "nb_maint_node_active{upstream=\""
#define NB_NODE_WS        "nb_maint_node_websockets{upstream=\""
#define NB_NODE_CMD       "nb_maint_node_commanding{upstream=\""
#define NB_NODE_WS_HELP                                                       \
    "# HELP nb_maint_node_websockets Open proxied WebSockets to the node.\n" \
    "# TYPE nb_maint_node_websockets gauge\n"                                \
    "# HELP nb_maint_node_commanding Whether the node answers NocoBase's "   \
    "busy envelope (APP_COMMANDING, APP_PREPARING, APP_INITIALIZING).\n"     \
    "# TYPE nb_maint_node_commanding gauge\n"
#define NB_NODE_MID       "\",node=\""
#define NB_NODE_END       "\"} "


/* the exact bytes of one node's three lines, values at their widest */

static size_t
ngx_http_nb_maint_node_metrics_len(size_t upstream, size_t id)
{
    size_t  labels;

    labels = upstream + sizeof(NB_NODE_MID) - 1 + id
             + sizeof(NB_NODE_END) - 1;

    return sizeof(NB_NODE_UP) - 1 + labels + sizeof("-1\n") - 1
           + sizeof(NB_NODE_DRAIN) - 1 + labels + sizeof("1\n") - 1
           + sizeof(NB_NODE_ACTIVE) - 1 + labels + NGX_ATOMIC_T_LEN + 1
           + sizeof(NB_NODE_WS) - 1 + labels + NGX_ATOMIC_T_LEN + 1
           + sizeof(NB_NODE_CMD) - 1 + labels + sizeof("1\n") - 1;
}


/* "prefix" upstream "\",node=\"" id "\"} ": last if it does not fit */

static u_char *
ngx_http_nb_maint_node_line(u_char *p, u_char *last, const char *prefix,
    ngx_str_t *upstream, ngx_str_t *id)
{
    size_t  n, plen;

    plen = ngx_strlen(prefix);
    n = plen + ngx_http_nb_maint_label(NULL, upstream)
        + sizeof(NB_NODE_MID) - 1 + ngx_http_nb_maint_label(NULL, id)
        + sizeof(NB_NODE_END) - 1;

    if ((size_t) (last - p) < n) {
        return last;
    }

    p = ngx_cpymem(p, prefix, plen);
    p += ngx_http_nb_maint_label(p, upstream);
    p = ngx_cpymem(p, NB_NODE_MID, sizeof(NB_NODE_MID) - 1);
    p += ngx_http_nb_maint_label(p, id);

    return ngx_cpymem(p, NB_NODE_END, sizeof(NB_NODE_END) - 1);
}


ngx_int_t
ngx_http_nb_maint_metrics(ngx_http_request_t *r, ngx_str_t *out)
{
    u_char                          *p, *last;
    size_t                           len, used, total, name_len;
    ngx_str_t                        id;
    ngx_uint_t                       i, j, w, sum;
    ngx_http_nb_maint_shm_t         *sh;
    ngx_http_nb_maint_node_t        *n;
    ngx_http_nb_maint_state_t       *st;
    ngx_http_nb_maint_main_conf_t   *nmcf;
    ngx_http_nb_maint_srv_conf_t   **up;

    sh = ngx_http_nb_maint_shm();
    st = ngx_http_nb_maint_snapshot();
    nmcf = ngx_http_get_module_main_conf(r, ngx_http_nb_maint_module);

    /* measure, then write */

    len = NB_METRICS_HEAD_LEN + sizeof(NB_NODE_WS_HELP) - 1
          + nmcf->store.type.len;
    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        name_len = ngx_http_nb_maint_label(NULL, &up[i]->uscf->host);

        for (j = 0; j < up[i]->nnodes; j++) {
            n = &sh->nodes[up[i]->nodes[j]];
            id.data = n->id;
            id.len = n->id_len;

            len += ngx_http_nb_maint_node_metrics_len(name_len,
                                        ngx_http_nb_maint_label(NULL, &id));
        }
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    last = p + len;

    p = ngx_slprintf(p, last,
            "# HELP nb_maint_mode Current maintenance mode (1 for the "
            "active one).\n"
            "# TYPE nb_maint_mode gauge\n");

    for (i = 0; i <= NB_MODE_RESTORING; i++) {
        p = ngx_slprintf(p, last, "nb_maint_mode{mode=\"%s\"} %d\n",
                         ngx_http_nb_maint_mode_name(i), st->mode == i);
    }

    p = ngx_slprintf(p, last,
            "# HELP nb_maint_version State version.\n"
            "# TYPE nb_maint_version counter\n"
            "nb_maint_version %uL\n"
            "# HELP nb_maint_since_seconds When the mode was entered.\n"
            "# TYPE nb_maint_since_seconds gauge\n"
            "nb_maint_since_seconds %T\n"
            "# HELP nb_maint_store_up Whether the state store accepts "
            "writes.\n"
            "# TYPE nb_maint_store_up gauge\n"
            "nb_maint_store_up{type=\"%V\"} %d\n",
            st->version, st->since, &nmcf->store.type, sh->store_ok != 0);

    ngx_http_nb_maint_zone_usage(&used, &total);

    p = ngx_slprintf(p, last,
            "# HELP nb_maint_zone_bytes Shared memory zone size and use.\n"
            "# TYPE nb_maint_zone_bytes gauge\n"
            "nb_maint_zone_bytes{kind=\"total\"} %uz\n"
            "nb_maint_zone_bytes{kind=\"used\"} %uz\n"
            "# HELP nb_maint_node_bytes Shared memory per node entry.\n"
            "# TYPE nb_maint_node_bytes gauge\n"
            "nb_maint_node_bytes %uz\n",
            total, used, sizeof(ngx_http_nb_maint_node_t));

    p = ngx_slprintf(p, last,
            "# HELP nb_maint_requests_total Requests by nb_maint outcome.\n"
            "# TYPE nb_maint_requests_total counter\n");

    for (i = 0; i < NB_OUT_N; i++) {
        sum = 0;
        for (w = 0; w < NB_WORKER_ROWS; w++) {
            sum += sh->counters[w][i];
        }

        p = ngx_slprintf(p, last,
                         "nb_maint_requests_total{outcome=\"%s\"} %ui\n",
                         ngx_http_nb_maint_outcomes[i], sum);
    }

    p = ngx_slprintf(p, last,
            "# HELP nb_maint_node_up Node health: 1 up, 0 down, -1 unknown.\n"
            "# TYPE nb_maint_node_up gauge\n"
            "# HELP nb_maint_node_drain Whether the node is drained.\n"
            "# TYPE nb_maint_node_drain gauge\n"
            "# HELP nb_maint_node_active Requests in flight to the node.\n"
            "# TYPE nb_maint_node_active gauge\n"
            NB_NODE_WS_HELP);

    if ((size_t) (last - p) < len - NB_METRICS_HEAD_LEN
                              - (sizeof(NB_NODE_WS_HELP) - 1)
                              - nmcf->store.type.len)
    {
        goto overflow;
    }

    /* the node lines: exactly as measured above */

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        for (j = 0; j < up[i]->nnodes; j++) {
            n = &sh->nodes[up[i]->nodes[j]];
            id.data = n->id;
            id.len = n->id_len;

            p = ngx_http_nb_maint_node_line(p, last, NB_NODE_UP,
                                            &up[i]->uscf->host, &id);
            p = ngx_slprintf(p, last, "%d\n",
                             n->health == NB_HEALTH_UP ? 1
                             : (n->health == NB_HEALTH_DOWN ? 0 : -1));

            p = ngx_http_nb_maint_node_line(p, last, NB_NODE_DRAIN,
                                            &up[i]->uscf->host, &id);
            p = ngx_slprintf(p, last, "%d\n",
                             nb_drained(st, up[i]->nodes[j]) != 0);

            p = ngx_http_nb_maint_node_line(p, last, NB_NODE_ACTIVE,
                                            &up[i]->uscf->host, &id);
            p = ngx_slprintf(p, last, "%A\n", nb_active(n));

            p = ngx_http_nb_maint_node_line(p, last, NB_NODE_WS,
                                            &up[i]->uscf->host, &id);
            p = ngx_slprintf(p, last, "%A\n", n->websockets);

            p = ngx_http_nb_maint_node_line(p, last, NB_NODE_CMD,
                                            &up[i]->uscf->host, &id);
            p = ngx_slprintf(p, last, "%d\n",
                             n->health == NB_HEALTH_COMMANDING);
        }
    }

    if (p == last) {
        goto overflow;
    }

    out->len = p - out->data;

    return NGX_OK;

overflow:

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "nb_maint: metrics do not fit in %uz bytes", len);

    return NGX_ERROR;
}
