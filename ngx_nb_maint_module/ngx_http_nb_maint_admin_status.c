/*
 * nb_maint: the admin API's reads (SPEC section 5).
 *
 * Owns: GET status (the state, the store, restore progress, every node,
 * with ETag and If-None-Match), GET nodes/{id}, GET events (since=N,
 * action=a,b, limit=N) and GET metrics (the text itself comes from metrics.c).  The status document
 * is also what a write answers and what the event stream sends.
 * May call: http.c (answers), json.c, state.c, state_nodes.c (the node
 * table and its counters), health_restore.c (pending nodes) and metrics.c.
 * Called by admin.c, admin_write.c and dashboard.c.
 */

#include "ngx_http_nb_maint_admin.h"


/* "app": {"code":"APP_COMMANDING","command":{"name":"upgrade"},
 *         "since":"...","seconds":80} of a commanding node */

static ngx_int_t
ngx_http_nb_maint_node_app_json(ngx_http_nb_maint_node_t *n, cJSON *obj)
{
    u_char       t[32], *p;
    cJSON       *app, *cmd;
    ngx_msec_t   since, now;

    app = cJSON_AddObjectToObject(obj, "app");
    if (app == NULL) {
        return NGX_ERROR;
    }

    cJSON_AddStringToObject(app, "code",
                            ngx_http_nb_maint_app_code_name(n->app_code));

    if (n->app_command_len) {
        cmd = cJSON_AddObjectToObject(app, "command");
        if (cmd == NULL) {
            return NGX_ERROR;
        }

        cJSON_AddItemToObject(cmd, "name",
                              ngx_http_nb_maint_json_strn(n->app_command,
                                  ngx_min(n->app_command_len,
                                          NB_APP_COMMAND_LEN)));
    }

    since = n->app_since;
    now = ngx_http_nb_maint_now_ms();

    if (since) {
        p = ngx_http_nb_maint_time_rfc3339(t, since / 1000);
        *p = '\0';
        cJSON_AddStringToObject(app, "since", (char *) t);
        cJSON_AddNumberToObject(app, "seconds",
                                (double) (now > since ? (now - since) / 1000
                                                      : 0));
    }

    return NGX_OK;
}


cJSON *
ngx_http_nb_maint_node_json(ngx_http_nb_maint_node_t *n,
    ngx_http_nb_maint_state_t *st, ngx_uint_t i)
{
    u_char       t[32], *p;
    cJSON       *obj;
    const char  *health;

    obj = cJSON_CreateObject();
    if (obj == NULL) {
        return NULL;
    }

    health = ngx_http_nb_maint_health_name(n->health);

    cJSON_AddItemToObject(obj, "id",
                          ngx_http_nb_maint_json_strn(n->id, n->id_len));
    cJSON_AddStringToObject(obj, "health", health);
    if (n->health == NB_HEALTH_COMMANDING
        && ngx_http_nb_maint_node_app_json(n, obj) != NGX_OK)
    {
        cJSON_Delete(obj);
        return NULL;
    }

    cJSON_AddBoolToObject(obj, "drain", nb_drained(st, i));
    cJSON_AddNumberToObject(obj, "active", (double) nb_active(n));
    cJSON_AddNumberToObject(obj, "websockets", (double) n->websockets);
    cJSON_AddNumberToObject(obj, "fails", (double) n->fall_count);

    if (ngx_http_nb_maint_node_stats_json(n, obj) != NGX_OK) {
        cJSON_Delete(obj);
        return NULL;
    }

    if (n->last_check) {
        p = ngx_http_nb_maint_time_rfc3339(t, n->last_check / 1000);
        *p = '\0';
        cJSON_AddStringToObject(obj, "last_check", (char *) t);

    } else {
        cJSON_AddNullToObject(obj, "last_check");
    }

    return obj;
}


/* every upstream with its nodes, in configuration order */

cJSON *
ngx_http_nb_maint_upstreams_json(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_state_t *st)
{
    cJSON                          *list, *obj, *nodes, *n;
    ngx_uint_t                      i, j;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_srv_conf_t  **up;

    sh = ngx_http_nb_maint_shm();

    list = cJSON_CreateArray();
    if (list == NULL) {
        return NULL;
    }

    up = nmcf->upstreams.elts;

    ngx_http_nb_maint_dns_apply_all(nmcf);

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        obj = cJSON_CreateObject();
        cJSON_AddItemToArray(list, obj);

        cJSON_AddItemToObject(obj, "name",
                              ngx_http_nb_maint_json_strn(
                                                  up[i]->uscf->host.data,
                                                  up[i]->uscf->host.len));
        nodes = cJSON_AddArrayToObject(obj, "nodes");
        if (nodes == NULL
            || ngx_http_nb_maint_dns_json(up[i], obj) != NGX_OK)
        {
            cJSON_Delete(list);
            return NULL;
        }

        for (j = 0; j < up[i]->nnodes; j++) {
            n = ngx_http_nb_maint_node_json(&sh->nodes[up[i]->nodes[j]], st,
                                            up[i]->nodes[j]);
            if (n == NULL) {
                cJSON_Delete(list);
                return NULL;
            }

            if (up[i]->dns) {
                ngx_http_nb_maint_dns_node_json(up[i],
                                      &sh->nodes[up[i]->nodes[j]], n);

            } else if (up[i]->down[j]) {
                cJSON_AddBoolToObject(n, "config_down", 1);
            }

            if (j >= ((ngx_http_upstream_rr_peers_t *)
                      up[i]->uscf->peer.data)->number)
            {
                cJSON_AddBoolToObject(n, "backup", 1);
            }

            cJSON_AddItemToArray(nodes, n);
        }
    }

    return list;
}


/*
 * The store's status as published, in a zone-shaped copy from pool: the
 * JSON is made from the copy, with nothing held.
 */

static ngx_http_nb_maint_shm_t *
ngx_http_nb_maint_store_copy(ngx_pool_t *pool)
{
    ngx_http_nb_maint_shm_t  *sh, *copy;

    sh = ngx_http_nb_maint_shm();

    copy = ngx_palloc(pool, offsetof(ngx_http_nb_maint_shm_t, ev_next));
    if (copy == NULL) {
        return NULL;
    }

    ngx_http_nb_maint_shm_read(&copy->store_ok, &sh->store_ok,
                               offsetof(ngx_http_nb_maint_shm_t, ev_next)
                               - offsetof(ngx_http_nb_maint_shm_t, store_ok));

    return copy;
}


/* store.primary, last_failover, sentinels, replication (issue 12) */

static void
ngx_http_nb_maint_store_redis_json(ngx_http_nb_maint_shm_t *sh,
    cJSON *store)
{
    u_char  t[32], *p;

    if (sh->store_primary_len) {
        cJSON_AddItemToObject(store, "primary",
                              ngx_http_nb_maint_json_strn(sh->store_primary,
                                                  sh->store_primary_len));
    } else {
        cJSON_AddNullToObject(store, "primary");
    }

    if (sh->store_last_failover) {
        p = ngx_http_nb_maint_time_rfc3339(t, sh->store_last_failover);
        *p = '\0';
        cJSON_AddStringToObject(store, "last_failover", (char *) t);

    } else {
        cJSON_AddNullToObject(store, "last_failover");
    }

    if (sh->store_sentinel) {
        cJSON_AddBoolToObject(store, "sentinels_ok",
                              sh->store_sentinels_ok != 0);
        cJSON_AddNumberToObject(store, "sentinels_reachable",
                                (double) sh->store_sentinels_up);
        cJSON_AddNumberToObject(store, "failovers",
                                (double) sh->store_failovers);
    }

    /* working, but degraded: e.g. no sentinel answers */

    if (sh->store_warning_len) {
        cJSON_AddItemToObject(store, "warning",
                              ngx_http_nb_maint_json_strn(sh->store_warning,
                                                  sh->store_warning_len));
    } else {
        cJSON_AddNullToObject(store, "warning");
    }

    cJSON_AddNumberToObject(store, "min_replicas",
                            (double) sh->store_replicas_wanted);

    if (sh->store_replicas_wanted && sh->store_replicas_acked >= 0) {
        cJSON_AddNumberToObject(store, "replicas_acked",
                                (double) sh->store_replicas_acked);
    } else {
        cJSON_AddNullToObject(store, "replicas_acked");
    }
}


/* the status with the given state (a write's answer), or the current one */

cJSON *
ngx_http_nb_maint_status_json_of(ngx_http_request_t *r,
    ngx_http_nb_maint_state_t *written, uint64_t *version)
{
    cJSON                          *root, *store, *restore, *pending, *ups;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_state_t       st;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    sh = ngx_http_nb_maint_shm();
    nmcf = ngx_http_get_module_main_conf(r, ngx_http_nb_maint_module);

    if (written) {
        st = *written;

    } else {
        ngx_http_nb_maint_shm_read(&st, &sh->state, sizeof(st));
    }

    *version = st.version;

    root = ngx_http_nb_maint_state_to_json(&st);
    if (root == NULL) {
        return NULL;
    }

    store = cJSON_AddObjectToObject(root, "store");
    restore = cJSON_AddObjectToObject(root, "restore");

    if (store == NULL || restore == NULL) {
        cJSON_Delete(root);
        return NULL;
    }

    /* the store's fields copied, turned into JSON with nothing held */

    sh = ngx_http_nb_maint_store_copy(r->pool);
    if (sh == NULL) {
        cJSON_Delete(root);
        return NULL;
    }

    cJSON_AddStringToObject(store, "type",
                            (char *) nmcf->store.type.data);
    cJSON_AddBoolToObject(store, "ok", sh->store_ok != 0);

    if (sh->store_error_len) {
        cJSON_AddItemToObject(store, "error",
                              ngx_http_nb_maint_json_strn(sh->store_error,
                                                      sh->store_error_len));
    } else {
        cJSON_AddNullToObject(store, "error");
    }

    if (ngx_strcmp(nmcf->store.type.data, "redis") == 0) {
        ngx_http_nb_maint_store_redis_json(sh, store);
    }

    pending = ngx_http_nb_maint_pending_json(nmcf, &st);
    ups = ngx_http_nb_maint_upstreams_json(nmcf, &st);

    if (pending == NULL || ups == NULL) {
        cJSON_Delete(pending);
        cJSON_Delete(ups);
        cJSON_Delete(root);
        return NULL;
    }

    cJSON_AddItemToObject(restore, "pending", pending);
    cJSON_AddItemToObject(root, "upstreams", ups);

    ngx_http_nb_maint_restore_status_json(nmcf, restore);

    return root;
}


/* ETag: "<version>", the state's version (SPEC section 5) */

static ngx_int_t
ngx_http_nb_maint_admin_etag(ngx_http_request_t *r, uint64_t version)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_nb_maint_add_header(r, "ETag", p,
                                     ngx_sprintf(p, "\"%uL\"", version) - p)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* If-None-Match: "*", or a list of (weak) tags one of which is "version" */

static ngx_uint_t
ngx_http_nb_maint_admin_none_match(ngx_http_request_t *r, uint64_t version)
{
    u_char     *p, *end, *q;
    ngx_int_t   n;

    if (r->headers_in.if_none_match == NULL) {
        return 0;
    }

    p = r->headers_in.if_none_match->value.data;
    end = p + r->headers_in.if_none_match->value.len;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        if (p == end) {
            break;
        }

        if (*p == '*') {
            return 1;
        }

        if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
            p += 2;
        }

        if (p == end || *p != '"') {
            return 0;
        }

        q = ngx_strlchr(++p, end, '"');
        if (q == NULL) {
            return 0;
        }

        n = ngx_atoi(p, q - p);

        if (n != NGX_ERROR && (uint64_t) n == version) {
            return 1;
        }

        p = q + 1;
    }

    return 0;
}


ngx_int_t
ngx_http_nb_maint_admin_send_state(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_nb_maint_state_t *written)
{
    cJSON     *json;
    uint64_t   version;

    json = ngx_http_nb_maint_status_json_of(r, written, &version);

    if (json == NULL || ngx_http_nb_maint_admin_etag(r, version) != NGX_OK) {
        cJSON_Delete(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_nb_maint_admin_send(r, status, json);
}


ngx_int_t
ngx_http_nb_maint_admin_status(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    ngx_int_t  rc;
    uint64_t   version;

    version = ngx_http_nb_maint_snapshot()->version;

    if (!ngx_http_nb_maint_admin_none_match(r, version)) {
        return ngx_http_nb_maint_admin_send_state(r, NGX_HTTP_OK, NULL);
    }

    /* not modified: headers only, the ETag again */

    if (ngx_http_nb_maint_admin_etag(r, version) != NGX_OK
        || nb_add_header_lit(r, "Cache-Control", "no-store") == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_NOT_MODIFIED;
    r->headers_out.content_length_n = -1;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


ngx_int_t
ngx_http_nb_maint_admin_node(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    return ngx_http_nb_maint_admin_send(r, NGX_HTTP_OK,
                      ngx_http_nb_maint_node_json(&sh->nodes[ctx->node],
                                                  ngx_http_nb_maint_snapshot(),
                                                  ctx->node));
}


/* GET events?since=N */

/* "since": NGX_OK, NGX_DECLINED (absent) or NGX_ERROR (not a version) */

ngx_int_t
ngx_http_nb_maint_admin_since(ngx_http_request_t *r, uint64_t *since)
{
    ngx_int_t  n;
    ngx_str_t  arg;

    *since = 0;

    if (ngx_http_arg(r, (u_char *) "since", 5, &arg) != NGX_OK) {
        return NGX_DECLINED;
    }

    n = ngx_atoi(arg.data, arg.len);

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    *since = (uint64_t) n;

    return NGX_OK;
}


/*
 * The audit events newer than since, oldest first, added to list; *last is
 * the newest version in the ring, or since if that is newer.
 */

ngx_int_t
ngx_http_nb_maint_events_json(cJSON *list, uint64_t since, uint64_t *last)
{
    cJSON                    *ev, *item;
    uint64_t                  version;
    ngx_str_t                *e, *events;
    const char               *err;
    ngx_uint_t                i, n;

    *last = since;

    /* copied out, parsed with nothing held (issue 21, item 4) */

    if (ngx_http_nb_maint_events_copy(&events, &n, NULL, ngx_cycle->log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        e = &events[i];

        ev = ngx_http_nb_maint_json_parse((char *) e->data, e->len, NULL,
                                          &err);
        item = cJSON_GetObjectItemCaseSensitive(ev, "version");

        if (ngx_http_nb_maint_json_u64(item, NB_VERSION_MAX, &version)
            != NGX_OK
            || version <= since
            || ngx_http_nb_maint_json_keep_version(ev) != NGX_OK)
        {
            cJSON_Delete(ev);
            continue;
        }

        if (version > *last) {
            *last = version;
        }

        cJSON_AddItemToArray(list, ev);
    }

    ngx_http_nb_maint_events_free(events);

    return NGX_OK;
}


/* ?action=a,b (URL-decoded): whether the event's action is one of them */

static ngx_uint_t
ngx_http_nb_maint_event_wanted(cJSON *ev, ngx_str_t *actions)
{
    u_char  *p, *end, *comma;
    size_t   len;
    cJSON   *item;

    item = cJSON_GetObjectItemCaseSensitive(ev, "action");
    if (!cJSON_IsString(item)) {
        return 0;
    }

    len = ngx_strlen(item->valuestring);
    p = actions->data;
    end = p + actions->len;

    for ( ;; ) {
        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        if ((size_t) (comma - p) == len
            && ngx_strncmp(p, item->valuestring, len) == 0)
        {
            return 1;
        }

        if (comma == end) {
            return 0;
        }

        p = comma + 1;
    }
}


/* only the events of those actions (actions->len: filter), the last limit */

static void
ngx_http_nb_maint_events_filter(cJSON *list, ngx_str_t *actions,
    ngx_uint_t limit)
{
    cJSON       *ev, *next;
    ngx_uint_t   n;

    if (actions->len) {
        for (ev = list->child; ev; ev = next) {
            next = ev->next;

            if (!ngx_http_nb_maint_event_wanted(ev, actions)) {
                cJSON_Delete(cJSON_DetachItemViaPointer(list, ev));
            }
        }
    }

    n = (ngx_uint_t) cJSON_GetArraySize(list);

    while (limit && n > limit) {
        cJSON_DeleteItemFromArray(list, 0);
        n--;
    }
}


/* ?action=...&limit=N: NGX_OK, NGX_ERROR (a bad limit), NGX_ABORT */

static ngx_int_t
ngx_http_nb_maint_events_args(ngx_http_request_t *r, ngx_str_t *actions,
    ngx_uint_t *limit)
{
    u_char     *dst, *src;
    ngx_int_t   n;
    ngx_str_t   arg;

    actions->len = 0;
    *limit = 0;

    if (ngx_http_arg(r, (u_char *) "limit", 5, &arg) == NGX_OK) {
        n = ngx_atoi(arg.data, arg.len);

        if (n < 1 || n > NB_EVENTS_MAX) {
            return NGX_ERROR;
        }

        *limit = n;
    }

    if (ngx_http_arg(r, (u_char *) "action", 6, &arg) == NGX_OK && arg.len) {
        dst = ngx_pnalloc(r->pool, arg.len);
        if (dst == NULL) {
            return NGX_ABORT;
        }

        actions->data = dst;
        src = arg.data;
        ngx_unescape_uri(&dst, &src, arg.len, 0);
        actions->len = dst - actions->data;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_nb_maint_admin_events(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    cJSON       *root, *list;
    uint64_t     since, last;
    ngx_int_t    rc;
    ngx_str_t    actions;
    ngx_uint_t   limit;

    if (ngx_http_nb_maint_admin_since(r, &since) == NGX_ERROR) {
        return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                             "bad_field", "\"since\" "
                                             "must be a version number");
    }

    rc = ngx_http_nb_maint_events_args(r, &actions, &limit);

    if (rc == NGX_ABORT) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                             "bad_field", "\"limit\" must "
                                             "be an integer from 1 to %d",
                                             NB_EVENTS_MAX);
    }

    root = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(root, "events");

    if (list == NULL
        || ngx_http_nb_maint_events_json(list, since, &last) != NGX_OK)
    {
        cJSON_Delete(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_nb_maint_events_filter(list, &actions, limit);

    return ngx_http_nb_maint_admin_send(r, NGX_HTTP_OK, root);
}


/* GET metrics */

ngx_int_t
ngx_http_nb_maint_admin_metrics(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    ngx_str_t  out;

    if (ngx_http_nb_maint_metrics(r, &out) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_nb_maint_admin_output(r, NGX_HTTP_OK,
                                          "text/plain; version=0.0.4", &out);
}
