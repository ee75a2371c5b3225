/*
 * nb_maint: GET metrics, the Prometheus text format (SPEC section 5).
 *
 * Owns the exposition only: one family per metric, its HELP and TYPE first
 * and all its samples together, counters ending in _total, times in
 * _timestamp_seconds, as `promtool check metrics` wants.  The buffer is
 * measured before it is written.  Reads the state snapshot and the shared
 * memory counters (state.c), the node table (state_nodes.c) and the
 * pending nodes (health_restore.c); nothing below calls it.
 */

#include "ngx_http_nb_maint.h"


/* a number as written: "-9223372036854775808" or "123.456" */
#define NB_VALUE_LEN            (NGX_INT64_LEN + 5)
/* ",le=\"0.005\"" and the like */
#define NB_LE_LEN               24

/* every line before the per-node families has a bounded width */
#define NB_METRICS_HEAD_LEN                                                   \
    (4608 + NB_OUT_N * (64 + NGX_ATOMIC_T_LEN * NB_WORKER_ROWS))


typedef struct {
    const char                 *name;
    const char                 *type;
    const char                 *help;
} ngx_http_nb_maint_family_t;


/* the per-node families, in this order (NB_FAM_*) */
#define NB_FAM_UP               0
#define NB_FAM_DRAIN            1
#define NB_FAM_ACTIVE           2
#define NB_FAM_WEBSOCKETS       3
#define NB_FAM_COMMANDING       4
#define NB_FAM_REQUESTS         5      /* from here: once per node entry */
#define NB_FAM_FAILURES         6
#define NB_FAM_LAST_CHECK       7
#define NB_FAM_CHECK            8
#define NB_FAM_N                9

static ngx_http_nb_maint_family_t  ngx_http_nb_maint_node_families[] = {
    { "nb_maint_node_up", "gauge",
      "Node health: 1 up, 0 down, -1 unknown or commanding." },
    { "nb_maint_node_drain", "gauge",
      "Whether the node is drained." },
    { "nb_maint_node_active", "gauge",
      "Requests in flight to the node." },
    { "nb_maint_node_websockets", "gauge",
      "Open proxied WebSockets to the node." },
    { "nb_maint_node_commanding", "gauge",
      "Whether the node answers NocoBase's busy envelope (APP_COMMANDING, "
      "APP_PREPARING, APP_INITIALIZING)." },
    { "nb_maint_node_requests_total", "counter",
      "Requests proxied to the node, each try counted." },
    { "nb_maint_node_failures_total", "counter",
      "Tries to the node that nginx counted as failed (connect error, "
      "timeout, proxy_next_upstream answers)." },
    { "nb_maint_node_last_check_timestamp_seconds", "gauge",
      "When the last health check of the node ended." },
    { "nb_maint_node_check_duration_seconds", "histogram",
      "Health check latency." }
};


static const char  *ngx_http_nb_maint_outcomes[NB_OUT_N] = {
    "proxied", "bypass", "maintenance_page", "no_healthy_node", "passed"
};


/* the length of the UTF-8 sequence at p, 0 if it is not one (overlong,
 * surrogate, above U+10FFFF, cut) */

static size_t
ngx_http_nb_maint_utf8_len(u_char *p, u_char *end)
{
    size_t    len, i;
    uint32_t  u, min;

    u = *p;

    if (u >= 0xc2 && u <= 0xdf) {
        len = 2;
        u &= 0x1f;
        min = 0x80;

    } else if (u >= 0xe0 && u <= 0xef) {
        len = 3;
        u &= 0x0f;
        min = 0x800;

    } else if (u >= 0xf0 && u <= 0xf4) {
        len = 4;
        u &= 0x07;
        min = 0x10000;

    } else {
        return 0;
    }

    if ((size_t) (end - p) < len) {
        return 0;
    }

    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        u = (u << 6) | (p[i] & 0x3f);
    }

    if (u < min || u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff)) {
        return 0;
    }

    return len;
}


/*
 * A Prometheus label value: backslash, double quote and newline escaped,
 * and bytes that are not UTF-8 written as U+FFFD (an upstream name may
 * hold anything its quoted config string held).  With dst NULL: the bytes
 * it needs.
 */

static size_t
ngx_http_nb_maint_label(u_char *dst, ngx_str_t *v)
{
    size_t   n, k;
    u_char  *p, *q, *end, c;

    n = 0;
    p = v->data;
    end = v->data + v->len;

    while (p < end) {
        c = *p;

        if (c >= 0x80) {
            k = ngx_http_nb_maint_utf8_len(p, end);

            if (k == 0) {
                q = (u_char *) "\xef\xbf\xbd";
                k = 3;
                p++;

            } else {
                q = p;
                p += k;
            }

            if (dst) {
                ngx_memcpy(dst + n, q, k);
            }

            n += k;
            continue;
        }

        p++;

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


/* upstream="...",node="..." of every configured node, in config order */

static ngx_str_t *
ngx_http_nb_maint_labels(ngx_http_request_t *r,
    ngx_http_nb_maint_main_conf_t *nmcf, ngx_uint_t *nlabels)
{
    u_char                         *p;
    ngx_str_t                      *labels, id;
    ngx_uint_t                      i, j, k, n;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_node_t       *node;
    ngx_http_nb_maint_srv_conf_t  **up;

    sh = ngx_http_nb_maint_shm();
    up = nmcf->upstreams.elts;

    n = 0;
    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        n += up[i]->nnodes;
    }

    labels = ngx_palloc(r->pool, (n ? n : 1) * sizeof(ngx_str_t));
    if (labels == NULL) {
        return NULL;
    }

    k = 0;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        for (j = 0; j < up[i]->nnodes; j++, k++) {
            node = &sh->nodes[up[i]->nodes[j]];
            id.data = node->id;
            id.len = node->id_len;

            labels[k].len = sizeof("upstream=\"\",node=\"\"") - 1
                            + ngx_http_nb_maint_label(NULL,
                                                      &up[i]->uscf->host)
                            + ngx_http_nb_maint_label(NULL, &id);

            p = ngx_pnalloc(r->pool, labels[k].len);
            if (p == NULL) {
                return NULL;
            }

            labels[k].data = p;

            p = ngx_cpymem(p, "upstream=\"", sizeof("upstream=\"") - 1);
            p += ngx_http_nb_maint_label(p, &up[i]->uscf->host);
            p = ngx_cpymem(p, "\",node=\"", sizeof("\",node=\"") - 1);
            p += ngx_http_nb_maint_label(p, &id);
            *p = '"';
        }
    }

    *nlabels = n;

    return labels;
}


static size_t
ngx_http_nb_maint_family_head_len(ngx_http_nb_maint_family_t *f)
{
    return sizeof("# HELP  \n# TYPE  \n") - 1 + 2 * ngx_strlen(f->name)
           + ngx_strlen(f->help) + ngx_strlen(f->type);
}


static u_char *
ngx_http_nb_maint_family_head(u_char *p, u_char *last,
    ngx_http_nb_maint_family_t *f)
{
    return ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s %s\n",
                        f->name, f->help, f->name, f->type);
}


/* the most bytes the node families can take */

static size_t
ngx_http_nb_maint_nodes_len(ngx_str_t *labels, ngx_uint_t n)
{
    size_t      len, line;
    ngx_uint_t  f, k, lines;

    len = 0;

    for (f = 0; f < NB_FAM_N; f++) {
        len += ngx_http_nb_maint_family_head_len(
                                       &ngx_http_nb_maint_node_families[f]);

        lines = (f == NB_FAM_CHECK) ? NB_CHECK_BUCKETS + 3 : 1;

        for (k = 0; k < n; k++) {
            line = ngx_strlen(ngx_http_nb_maint_node_families[f].name)
                   + sizeof("_bucket{} \n") - 1 + labels[k].len
                   + NB_LE_LEN + NB_VALUE_LEN;

            len += lines * line;
        }
    }

    return len;
}


/* a bucket bound in seconds as Prometheus clients write it: 0.005, 1, 2.5 */

static u_char *
ngx_http_nb_maint_le(u_char *p, u_char *last, ngx_msec_t ms)
{
    u_char  frac[4], *f;

    p = ngx_slprintf(p, last, "%M", ms / 1000);

    if (ms % 1000 == 0) {
        return p;
    }

    f = ngx_sprintf(frac, "%03M", ms % 1000);

    while (f[-1] == '0') {
        f--;
    }

    p = ngx_slprintf(p, last, ".");

    return ngx_slprintf(p, last, "%*s", (size_t) (f - frac), frac);
}


/* the check latency histogram of one node: cumulative buckets, sum, count */

static u_char *
ngx_http_nb_maint_node_histogram(u_char *p, u_char *last, const char *name,
    ngx_str_t *labels, ngx_http_nb_maint_node_t *n)
{
    ngx_uint_t          i;
    ngx_msec_t          bounds[NB_CHECK_BUCKETS] = NB_CHECK_BOUNDS_MS;
    ngx_atomic_uint_t   cum, sum;

    cum = 0;

    for (i = 0; i < NB_CHECK_BUCKETS; i++) {
        cum += n->check_bucket[i];

        p = ngx_slprintf(p, last, "%s_bucket{%V,le=\"", name, labels);
        p = ngx_http_nb_maint_le(p, last, bounds[i]);
        p = ngx_slprintf(p, last, "\"} %uA\n", cum);
    }

    cum += n->check_bucket[NB_CHECK_BUCKETS];
    sum = n->check_sum_ms;

    return ngx_slprintf(p, last,
                        "%s_bucket{%V,le=\"+Inf\"} %uA\n"
                        "%s_sum{%V} %uA.%03uA\n"
                        "%s_count{%V} %uA\n",
                        name, labels, cum,
                        name, labels, sum / 1000, sum % 1000,
                        name, labels, cum);
}


/* one node's sample(s) of family f */

static u_char *
ngx_http_nb_maint_node_sample(u_char *p, u_char *last, ngx_uint_t f,
    ngx_str_t *labels, ngx_http_nb_maint_node_t *n,
    ngx_http_nb_maint_state_t *st, ngx_uint_t idx)
{
    ngx_int_t    v;
    const char  *name;

    name = ngx_http_nb_maint_node_families[f].name;

    switch (f) {

    case NB_FAM_UP:
        v = (n->health == NB_HEALTH_UP) ? 1
            : (n->health == NB_HEALTH_DOWN ? 0 : -1);
        break;

    case NB_FAM_DRAIN:
        v = (nb_drained(st, idx) != 0);
        break;

    case NB_FAM_COMMANDING:
        v = (n->health == NB_HEALTH_COMMANDING);
        break;

    case NB_FAM_ACTIVE:
        return ngx_slprintf(p, last, "%s{%V} %uA\n", name, labels,
                            (ngx_atomic_uint_t) nb_active(n));

    case NB_FAM_WEBSOCKETS:
        return ngx_slprintf(p, last, "%s{%V} %uA\n", name, labels,
                            n->websockets);

    case NB_FAM_REQUESTS:
        return ngx_slprintf(p, last, "%s{%V} %uA\n", name, labels,
                            n->requests);

    case NB_FAM_FAILURES:
        return ngx_slprintf(p, last, "%s{%V} %uA\n", name, labels,
                            n->failures);

    case NB_FAM_LAST_CHECK:
        if (n->last_check == 0) {
            return p;           /* never checked: no sample */
        }

        return ngx_slprintf(p, last, "%s{%V} %M.%03M\n", name, labels,
                            n->last_check / 1000, n->last_check % 1000);

    default: /* NB_FAM_CHECK */
        return ngx_http_nb_maint_node_histogram(p, last, name, labels, n);
    }

    return ngx_slprintf(p, last, "%s{%V} %i\n", name, labels, v);
}


/*
 * Every per-node family, each with the samples of every node.  The gauges
 * are given per upstream; the counters and the histogram belong to the
 * node entry, which a node in several upstreams shares: they are given
 * once, under the first upstream that lists the node, so that sums add up.
 */

static u_char *
ngx_http_nb_maint_nodes_write(u_char *p, u_char *last,
    ngx_http_nb_maint_main_conf_t *nmcf, ngx_str_t *labels,
    ngx_http_nb_maint_state_t *st)
{
    u_char                          seen[NB_MAX_NODES / 8];
    ngx_uint_t                      f, i, j, k, idx;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_srv_conf_t  **up;

    sh = ngx_http_nb_maint_shm();
    up = nmcf->upstreams.elts;

    for (f = 0; f < NB_FAM_N; f++) {
        p = ngx_http_nb_maint_family_head(p, last,
                                          &ngx_http_nb_maint_node_families[f]);
        ngx_memzero(seen, sizeof(seen));
        k = 0;

        for (i = 0; i < nmcf->upstreams.nelts; i++) {
            for (j = 0; j < up[i]->nnodes; j++, k++) {
                idx = up[i]->nodes[j];

                if (f >= NB_FAM_REQUESTS) {
                    if (seen[idx / 8] & (1 << (idx % 8))) {
                        continue;
                    }

                    seen[idx / 8] |= 1 << (idx % 8);
                }

                p = ngx_http_nb_maint_node_sample(p, last, f, &labels[k],
                                                  &sh->nodes[idx], st, idx);
            }
        }
    }

    return p;
}


/* nb_maint_resolve upstreams: the resolver's state (SPEC section 10a) */

#define NB_METRICS_DNS_HELP_LEN  512
#define NB_METRICS_DNS_ROW_LEN   128     /* a row, less its label */

static size_t
ngx_http_nb_maint_dns_metrics_len(ngx_http_nb_maint_main_conf_t *nmcf)
{
    size_t                          len;
    ngx_uint_t                      i;
    ngx_http_nb_maint_srv_conf_t  **up;

    up = nmcf->upstreams.elts;
    len = NB_METRICS_DNS_HELP_LEN;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        if (up[i]->dns) {
            len += 3 * (NB_METRICS_DNS_ROW_LEN
                        + ngx_http_nb_maint_label(NULL, &up[i]->uscf->host));
        }
    }

    return len;
}


static u_char *
ngx_http_nb_maint_dns_metrics_write(u_char *p, u_char *last,
    ngx_http_nb_maint_main_conf_t *nmcf)
{
    u_char                          lb[3 * NB_NODE_ID_LEN * 2];
    size_t                          n;
    ngx_uint_t                      i, f;
    ngx_http_nb_maint_dns_sh_t     *t;
    ngx_http_nb_maint_srv_conf_t  **up;
    static const char              *help[] = {
        "nb_maint_resolve_ok Whether the last query of the upstream's DNS "
        "name was answered (0: the last good set is kept).\n"
        "# TYPE nb_maint_resolve_ok gauge",
        "nb_maint_resolve_addresses Addresses in the last good answer.\n"
        "# TYPE nb_maint_resolve_addresses gauge",
        "nb_maint_resolve_failures_total Failed or empty answers.\n"
        "# TYPE nb_maint_resolve_failures_total counter"
    };
    static const char              *name[] = {
        "nb_maint_resolve_ok", "nb_maint_resolve_addresses",
        "nb_maint_resolve_failures_total"
    };

    up = nmcf->upstreams.elts;

    for (f = 0; f < 3; f++) {
        p = ngx_slprintf(p, last, "# HELP %s\n", help[f]);

        for (i = 0; i < nmcf->upstreams.nelts; i++) {
            t = ngx_http_nb_maint_dns_table(up[i]);
            if (t == NULL
                || ngx_http_nb_maint_label(NULL, &up[i]->uscf->host)
                   > sizeof(lb))
            {
                continue;
            }

            n = ngx_http_nb_maint_label(lb, &up[i]->uscf->host);

            p = ngx_slprintf(p, last, "%s{upstream=\"%*s\"} %ui\n", name[f],
                             n, lb,
                             f == 0 ? (ngx_uint_t) (t->ok != 0)
                             : f == 1 ? t->naddrs : (ngx_uint_t) t->failures);
        }
    }

    return p;
}


/* the cluster-wide families: mode, version, store, zone, outcomes */

static u_char *
ngx_http_nb_maint_head_write(u_char *p, u_char *last,
    ngx_http_nb_maint_main_conf_t *nmcf, ngx_http_nb_maint_state_t *st)
{
    size_t                    used, total;
    ngx_uint_t                i, w, sum;
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    p = ngx_slprintf(p, last,
            "# HELP nb_maint_mode Current maintenance mode (1 for the "
            "active one).\n"
            "# TYPE nb_maint_mode gauge\n");

    for (i = 0; i <= NB_MODE_RESTORING; i++) {
        p = ngx_slprintf(p, last, "nb_maint_mode{mode=\"%s\"} %d\n",
                         ngx_http_nb_maint_mode_name(i), st->mode == i);
    }

    p = ngx_slprintf(p, last,
            "# HELP nb_maint_version State version (+1 on every change).\n"
            "# TYPE nb_maint_version gauge\n"
            "nb_maint_version %uL\n"
            "# HELP nb_maint_since_timestamp_seconds When the mode was "
            "entered.\n"
            "# TYPE nb_maint_since_timestamp_seconds gauge\n"
            "nb_maint_since_timestamp_seconds %T\n"
            "# HELP nb_maint_restore_pending_nodes Nodes a restore still "
            "waits for (0 unless restoring).\n"
            "# TYPE nb_maint_restore_pending_nodes gauge\n"
            "nb_maint_restore_pending_nodes %ui\n"
            "# HELP nb_maint_store_up Whether the state store accepts "
            "writes.\n"
            "# TYPE nb_maint_store_up gauge\n"
            "nb_maint_store_up{type=\"%V\"} %d\n",
            st->version, st->since,
            ngx_http_nb_maint_pending_count(nmcf, st),
            &nmcf->store.type, sh->store_ok != 0);

    if (ngx_strcmp(nmcf->store.type.data, "redis") == 0) {
        p = ngx_slprintf(p, last,
                "# HELP nb_maint_store_failovers_total Redis primary "
                "changes this gateway followed (Sentinel failovers).\n"
                "# TYPE nb_maint_store_failovers_total counter\n"
                "nb_maint_store_failovers_total %ui\n"
                "# HELP nb_maint_store_last_failover_timestamp_seconds When "
                "this gateway last followed a failover (0: never).\n"
                "# TYPE nb_maint_store_last_failover_timestamp_seconds "
                "gauge\n"
                "nb_maint_store_last_failover_timestamp_seconds %T\n",
                sh->store_failovers, sh->store_last_failover);
    }

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

    return p;
}


ngx_int_t
ngx_http_nb_maint_metrics(ngx_http_request_t *r, ngx_str_t *out)
{
    u_char                         *p, *last;
    size_t                          len;
    ngx_str_t                      *labels;
    ngx_uint_t                      n;
    ngx_http_nb_maint_state_t      *st;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    st = ngx_http_nb_maint_snapshot();
    nmcf = ngx_http_get_module_main_conf(r, ngx_http_nb_maint_module);

    ngx_http_nb_maint_dns_apply_all(nmcf);

    labels = ngx_http_nb_maint_labels(r, nmcf, &n);
    if (labels == NULL) {
        return NGX_ERROR;
    }

    /* measure, then write; one byte more tells a full buffer from a cut */

    len = NB_METRICS_HEAD_LEN + nmcf->store.type.len
          + ngx_http_nb_maint_nodes_len(labels, n)
          + ngx_http_nb_maint_dns_metrics_len(nmcf) + 1;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    last = p + len;

    p = ngx_http_nb_maint_head_write(p, last, nmcf, st);

    if ((size_t) (p - out->data) > NB_METRICS_HEAD_LEN + nmcf->store.type.len)
    {
        goto overflow;
    }

    p = ngx_http_nb_maint_nodes_write(p, last, nmcf, labels, st);

    if (ngx_http_nb_maint_dns_metrics_len(nmcf) > NB_METRICS_DNS_HELP_LEN) {
        p = ngx_http_nb_maint_dns_metrics_write(p, last, nmcf);
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
