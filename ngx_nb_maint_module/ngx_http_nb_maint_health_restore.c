/*
 * nb_maint: the end of a restore (SPEC sections 3 and 10a): "restoring"
 * turns into "normal" once every node of the upstreams that is not down in
 * the configuration has passed "rise" checks that started after the
 * restore was requested.  Only a gateway that checks nodes ends a restore,
 * and with other gateways on the store only once every checking gateway
 * agreed (the cluster-wide gate: the store's verdict hook and store.gate,
 * doc/redis-store.md).
 *
 * Owns which nodes are pending (status, metrics), whether this gateway
 * checks nodes, and the write of "normal" through the store; health.c
 * calls it after each passed check and every owner tick.  Calls state.c
 * and the store only.
 */

#include "ngx_http_nb_maint.h"


/* a node that restore still waits for (SPEC section 3) */

ngx_uint_t
ngx_http_nb_maint_node_pending(ngx_http_nb_maint_srv_conf_t *up,
    ngx_uint_t j, ngx_http_nb_maint_state_t *st)
{
    ngx_http_nb_maint_node_t  *node;

    if (st->mode != NB_MODE_RESTORING || up->down[j] || !up->check.set) {
        return 0;
    }

    node = &ngx_http_nb_maint_shm()->nodes[up->nodes[j]];

    return node->restore_mark != st->restore_started
           || node->restore_passes < up->check.rise;
}


ngx_uint_t
ngx_http_nb_maint_pending_count(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_state_t *st)
{
    ngx_uint_t                      i, j, n, want, resolved, healthy;
    ngx_http_nb_maint_srv_conf_t  **up;

    up = nmcf->upstreams.elts;
    n = 0;

    ngx_http_nb_maint_dns_apply_all(nmcf);

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        for (j = 0; j < up[i]->nnodes; j++) {
            n += ngx_http_nb_maint_node_pending(up[i], j, st);
        }

        /* DNS members: also as many as expected, never an empty set */
        if (up[i]->dns && st->mode == NB_MODE_RESTORING) {
            ngx_http_nb_maint_dns_restore_count(up[i], st, &want, &resolved,
                                                &healthy);
            if (healthy < want) {
                n += want - healthy;
            }
        }
    }

    return n;
}


cJSON *
ngx_http_nb_maint_pending_json(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_state_t *st)
{
    cJSON                          *list;
    ngx_uint_t                      i, j, k, dup;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_node_t       *node;
    ngx_http_nb_maint_srv_conf_t  **up;

    list = cJSON_CreateArray();
    if (list == NULL) {
        return NULL;
    }

    sh = ngx_http_nb_maint_shm();
    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        for (j = 0; j < up[i]->nnodes; j++) {
            if (!ngx_http_nb_maint_node_pending(up[i], j, st)) {
                continue;
            }

            node = &sh->nodes[up[i]->nodes[j]];

            /* a node in two upstreams is listed once */
            dup = 0;
            for (k = 0; k < (ngx_uint_t) cJSON_GetArraySize(list); k++) {
                if (ngx_strncmp(cJSON_GetArrayItem(list, k)->valuestring,
                                node->id, node->id_len) == 0
                    && cJSON_GetArrayItem(list, k)->valuestring[node->id_len]
                       == '\0')
                {
                    dup = 1;
                }
            }

            if (!dup) {
                cJSON_AddItemToArray(list,
                          ngx_http_nb_maint_json_strn(node->id, node->id_len));
            }
        }
    }

    return list;
}


/* whether this gateway checks any node a restore waits for (SPEC 10a) */

ngx_uint_t
ngx_http_nb_maint_restore_checking(ngx_http_nb_maint_main_conf_t *nmcf)
{
    ngx_uint_t                      i, j;
    ngx_http_nb_maint_srv_conf_t  **up;

    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        if (!up[i]->check.set) {
            continue;
        }

        if (up[i]->dns) {
            return 1;           /* checks its members, even none yet */
        }

        for (j = 0; j < up[i]->nnodes; j++) {
            if (!up[i]->down[j]) {
                return 1;
            }
        }
    }

    return 0;
}


/* whether a restore waits for checks: this gateway checks nodes, or
 * another live one on the store does (else POST restore ends it at once) */

ngx_uint_t
ngx_http_nb_maint_restore_gated(ngx_http_nb_maint_main_conf_t *nmcf)
{
    return ngx_http_nb_maint_restore_checking(nmcf)
           || ngx_http_nb_maint_shm()->restore_checkers > 0;
}


/* status "restore": DNS members expected, resolved, healthy (SPEC 10a) */

static void
ngx_http_nb_maint_restore_members_json(ngx_http_nb_maint_main_conf_t *nmcf,
    cJSON *restore)
{
    cJSON                          *list, *obj;
    ngx_uint_t                      i, want, resolved, healthy, sum[3];
    ngx_http_nb_maint_state_t      *st;
    ngx_http_nb_maint_srv_conf_t  **up;

    up = nmcf->upstreams.elts;
    st = ngx_http_nb_maint_snapshot();
    list = NULL;
    sum[0] = sum[1] = sum[2] = 0;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        if (up[i]->dns == NULL) {
            continue;
        }

        if (list == NULL) {
            list = cJSON_AddArrayToObject(restore, "members");
            if (list == NULL) {
                return;
            }
        }

        ngx_http_nb_maint_dns_restore_count(up[i], st, &want, &resolved,
                                            &healthy);
        if (st->mode != NB_MODE_RESTORING) {
            want = 0;
        }

        obj = cJSON_CreateObject();
        cJSON_AddItemToArray(list, obj);
        cJSON_AddItemToObject(obj, "upstream",
                              ngx_http_nb_maint_json_strn(
                                                  up[i]->uscf->host.data,
                                                  up[i]->uscf->host.len));
        cJSON_AddNumberToObject(obj, "expected", (double) want);
        cJSON_AddNumberToObject(obj, "resolved", (double) resolved);
        cJSON_AddNumberToObject(obj, "healthy", (double) healthy);

        sum[0] += want;
        sum[1] += resolved;
        sum[2] += healthy;
    }

    if (list) {
        cJSON_AddNumberToObject(restore, "expected", (double) sum[0]);
        cJSON_AddNumberToObject(restore, "resolved", (double) sum[1]);
        cJSON_AddNumberToObject(restore, "healthy", (double) sum[2]);
    }
}


/* status "restore": checked, note, and the other gateways still awaited */

void
ngx_http_nb_maint_restore_status_json(ngx_http_nb_maint_main_conf_t *nmcf,
    cJSON *restore)
{
    u_char                   *p, *end, *q, buf[NB_STORE_ERROR_LEN];
    size_t                    len;
    cJSON                    *list;
    ngx_uint_t                checking;
    ngx_atomic_uint_t         v;
    ngx_http_nb_maint_shm_t  *sh;

    checking = ngx_http_nb_maint_restore_checking(nmcf);

    cJSON_AddBoolToObject(restore, "checked", checking);

    if (!checking) {
        cJSON_AddStringToObject(restore, "note",
                                "this gateway checks no node (no upstream, "
                                "or nb_maint_check off): nothing gates a "
                                "restore here; POST restore ends it at once "
                                "unless a gateway sharing the store checks "
                                "nodes, which then ends it (or force)");
    }

    ngx_http_nb_maint_restore_members_json(nmcf, restore);

    if (nmcf->store.verdict == NULL) {
        return;
    }

    sh = ngx_http_nb_maint_shm();

    do {
        v = ngx_http_nb_maint_read_begin();
        len = ngx_min(sh->restore_awaited_len, sizeof(buf));
        ngx_memcpy(buf, sh->restore_awaited, len);
    } while (ngx_http_nb_maint_read_retry(v));

    list = cJSON_CreateArray();
    if (list == NULL) {
        return;
    }

    for (p = buf, end = buf + len; p < end; p = q + 1) {
        q = ngx_strlchr(p, end, ' ');
        if (q == NULL) {
            q = end;
        }

        if (q > p) {
            cJSON_AddItemToArray(list, ngx_http_nb_maint_json_strn(p, q - p));
        }
    }

    cJSON_AddItemToObject(restore, "gateways_awaited", list);
}


static ngx_uint_t  ngx_http_nb_maint_restoring_busy;


static void
ngx_http_nb_maint_restore_saved(void *data, ngx_int_t rc)
{
    ngx_pool_t *pool = data;

    ngx_http_nb_maint_restoring_busy = 0;

    if (rc == NGX_BUSY) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                       "nb_maint: restore: other gateways still awaited");

    } else if (rc != NGX_OK && rc != NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "nb_maint: every node is healthy but the store did not "
                      "accept \"normal\"; retrying");
    }

    ngx_destroy_pool(pool);
}


/*
 * restoring -> normal once no node is pending, on a gateway that checks
 * nodes; the store's gate (other gateways on it) has the last word
 */

void
ngx_http_nb_maint_restore_finish(ngx_log_t *log)
{
    ngx_int_t                       rc;
    ngx_str_t                       actor = ngx_string("nb_maint");
    ngx_uint_t                      checking, pending;
    ngx_pool_t                     *pool;
    ngx_http_nb_maint_state_t       old, st;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_nb_maint_module);

    old = *ngx_http_nb_maint_snapshot();

    checking = ngx_http_nb_maint_restore_checking(nmcf);
    pending = ngx_http_nb_maint_pending_count(nmcf, &old);

    if (nmcf->store.verdict) {
        nmcf->store.verdict(&nmcf->store, checking,
                            old.mode == NB_MODE_RESTORING
                            ? old.restore_started : 0, pending);
    }

    if (ngx_http_nb_maint_restoring_busy
        || old.mode != NB_MODE_RESTORING || !checking || pending)
    {
        return;
    }

    st = old;
    st.mode = NB_MODE_NORMAL;
    st.restoring_from = NB_MODE_NONE;
    st.node_len = 0;
    st.reason_len = 0;
    st.retry_after = NB_RETRY_AFTER_DEFAULT;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return;
    }

    ngx_http_nb_maint_restoring_busy = 1;

    /* the store checks that every other checking gateway agreed */
    nmcf->store.gate = old.restore_started;

    rc = ngx_http_nb_maint_state_save(nmcf, &old, &st, "restored", &actor, -1,
                                      pool, log,
                                      ngx_http_nb_maint_restore_saved, pool);

    nmcf->store.gate = 0;

    if (rc != NGX_AGAIN) {
        ngx_http_nb_maint_restore_saved(pool, rc);
    }
}
