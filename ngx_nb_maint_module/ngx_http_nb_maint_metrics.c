/*
 * nb_maint: GET metrics, the Prometheus text format (SPEC section 5).
 */

#include "ngx_http_nb_maint.h"


static const char  *ngx_http_nb_maint_outcomes[NB_OUT_N] = {
    "proxied", "bypass", "maintenance_page", "no_healthy_node", "passed"
};


/* one node's websockets and commanding lines, and their help text */
#define NB_NODE_WS_METRICS_LEN(host)                                          \
    (2 * (64 + (host) + NB_NODE_ID_LEN + NGX_ATOMIC_T_LEN))
#define NB_WS_METRICS_HELP_LEN  512


/* bytes needed for one node's three lines */
#define NB_NODE_METRICS_LEN  (3 * (64 + NB_NODE_ID_LEN + NGX_ATOMIC_T_LEN))


/* open proxied WebSockets, and whether a node is running a command */

static u_char *
ngx_http_nb_maint_metrics_ws(u_char *p, ngx_http_nb_maint_main_conf_t *nmcf)
{
    ngx_uint_t                       i, j;
    ngx_http_nb_maint_shm_t         *sh;
    ngx_http_nb_maint_node_t        *n;
    ngx_http_nb_maint_srv_conf_t   **up;

    sh = ngx_http_nb_maint_shm();
    up = nmcf->upstreams.elts;

    p = ngx_sprintf(p,
            "# HELP nb_maint_node_websockets Open proxied WebSockets to "
            "the node.\n"
            "# TYPE nb_maint_node_websockets gauge\n"
            "# HELP nb_maint_node_commanding Whether the node answers "
            "NocoBase's busy envelope (APP_COMMANDING...).\n"
            "# TYPE nb_maint_node_commanding gauge\n");

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        for (j = 0; j < up[i]->nnodes; j++) {
            n = &sh->nodes[up[i]->nodes[j]];

            p = ngx_sprintf(p,
                    "nb_maint_node_websockets{upstream=\"%V\",node=\"%*s\"}"
                    " %A\n"
                    "nb_maint_node_commanding{upstream=\"%V\",node=\"%*s\"}"
                    " %d\n",
                    &up[i]->uscf->host, n->id_len, n->id, n->websockets,
                    &up[i]->uscf->host, n->id_len, n->id,
                    n->health == NB_HEALTH_COMMANDING);
        }
    }

    return p;
}


ngx_int_t
ngx_http_nb_maint_metrics(ngx_http_request_t *r, ngx_str_t *out)
{
    u_char                          *p;
    size_t                           len, used, total;
    ngx_uint_t                       i, j, w, sum;
    ngx_http_nb_maint_shm_t         *sh;
    ngx_http_nb_maint_node_t        *n;
    ngx_http_nb_maint_state_t       *st;
    ngx_http_nb_maint_main_conf_t   *nmcf;
    ngx_http_nb_maint_srv_conf_t   **up;

    sh = ngx_http_nb_maint_shm();
    st = ngx_http_nb_maint_snapshot();
    nmcf = ngx_http_get_module_main_conf(r, ngx_http_nb_maint_module);

    len = 4096 + NB_OUT_N * 128;
    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        len += up[i]->nnodes * (NB_NODE_METRICS_LEN + up[i]->uscf->host.len);
        len += up[i]->nnodes * NB_NODE_WS_METRICS_LEN(up[i]->uscf->host.len);
    }

    len += NB_WS_METRICS_HELP_LEN;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    p = ngx_sprintf(p,
            "# HELP nb_maint_mode Current maintenance mode (1 for the "
            "active one).\n"
            "# TYPE nb_maint_mode gauge\n");

    for (i = 0; i <= NB_MODE_RESTORING; i++) {
        p = ngx_sprintf(p, "nb_maint_mode{mode=\"%s\"} %d\n",
                        ngx_http_nb_maint_mode_name(i), st->mode == i);
    }

    p = ngx_sprintf(p,
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

    p = ngx_sprintf(p,
            "# HELP nb_maint_zone_bytes Shared memory zone size and use.\n"
            "# TYPE nb_maint_zone_bytes gauge\n"
            "nb_maint_zone_bytes{kind=\"total\"} %uz\n"
            "nb_maint_zone_bytes{kind=\"used\"} %uz\n"
            "# HELP nb_maint_node_bytes Shared memory per node entry.\n"
            "# TYPE nb_maint_node_bytes gauge\n"
            "nb_maint_node_bytes %uz\n",
            total, used, sizeof(ngx_http_nb_maint_node_t));

    p = ngx_sprintf(p,
            "# HELP nb_maint_requests_total Requests by nb_maint outcome.\n"
            "# TYPE nb_maint_requests_total counter\n");

    for (i = 0; i < NB_OUT_N; i++) {
        sum = 0;
        for (w = 0; w < NB_WORKER_ROWS; w++) {
            sum += sh->counters[w][i];
        }

        p = ngx_sprintf(p, "nb_maint_requests_total{outcome=\"%s\"} %ui\n",
                        ngx_http_nb_maint_outcomes[i], sum);
    }

    p = ngx_sprintf(p,
            "# HELP nb_maint_node_up Node health: 1 up, 0 down, -1 unknown.\n"
            "# TYPE nb_maint_node_up gauge\n"
            "# HELP nb_maint_node_drain Whether the node is drained.\n"
            "# TYPE nb_maint_node_drain gauge\n"
            "# HELP nb_maint_node_active Requests in flight to the node.\n"
            "# TYPE nb_maint_node_active gauge\n");

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        for (j = 0; j < up[i]->nnodes; j++) {
            n = &sh->nodes[up[i]->nodes[j]];

#define nb_labels  "{upstream=\"%V\",node=\"%*s\"}"

            p = ngx_sprintf(p, "nb_maint_node_up" nb_labels " %d\n"
                            "nb_maint_node_drain" nb_labels " %d\n"
                            "nb_maint_node_active" nb_labels " %A\n",
                            &up[i]->uscf->host, n->id_len, n->id,
                            n->health == NB_HEALTH_UP ? 1
                            : (n->health == NB_HEALTH_DOWN ? 0 : -1),
                            &up[i]->uscf->host, n->id_len, n->id,
                            nb_drained(st, up[i]->nodes[j]) != 0,
                            &up[i]->uscf->host, n->id_len, n->id,
                            nb_active(n));
#undef nb_labels
        }
    }

    p = ngx_http_nb_maint_metrics_ws(p, nmcf);

    out->len = p - out->data;

    return NGX_OK;
}
