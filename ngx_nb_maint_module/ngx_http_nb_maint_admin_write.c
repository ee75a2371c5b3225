/*
 * nb_maint: the admin API's writes (SPEC sections 3 and 5).
 *
 * Owns: POST mode, POST restore, POST nodes/{id}/drain and undrain.
 * Every change goes through ngx_http_nb_maint_admin_apply(): the
 * change is made on a copy of the current state, If-Match is checked, the
 * store is asked first and shared memory is published to only once the
 * store has accepted it (state.c); a write without If-Match that loses a
 * race is built again on the new state.
 * May call: http.c (answers), admin_status.c (the status a write answers),
 * state.c, json.c and node_id.c.
 */

#include "ngx_http_nb_maint_admin.h"


/* fills st with the new state; returns NGX_OK, NGX_DECLINED (no change) */
typedef ngx_int_t (*ngx_http_nb_maint_change_pt)(ngx_http_request_t *r,
    ngx_http_nb_maint_change_t *ch, ngx_http_nb_maint_state_t *st);

struct ngx_http_nb_maint_change_s {
    ngx_http_nb_maint_change_pt   apply;
    const char                   *action;
    cJSON                        *body;
    ngx_int_t                     node;        /* node index or -1 */
    ngx_uint_t                    flag;        /* force, drain value */
    ngx_uint_t                    expect;      /* restore: "expect" */

    /* set by apply on a refusal */
    ngx_uint_t                    status;
    const char                   *code;
    const char                   *message;
    const char                   *id;          /* the node id it is about */
};


/* a write without If-Match that loses races: built again on the new state */
#define NB_WRITE_TRIES  64


static ngx_int_t ngx_http_nb_maint_admin_apply(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, ngx_http_nb_maint_change_t *ch);


/* a refused change: its error, naming the node it is about */

static ngx_int_t
ngx_http_nb_maint_admin_refused(ngx_http_request_t *r,
    ngx_http_nb_maint_change_t *ch)
{
    if (ch->id) {
        return ngx_http_nb_maint_admin_error(r, ch->status, ch->code,
                                             "node \"%s\" %s", ch->id,
                                             ch->message);
    }

    return ngx_http_nb_maint_admin_error(r, ch->status, ch->code, "%s",
                                         ch->message);
}


/* the answer to a write, once the store has replied */

static ngx_int_t
ngx_http_nb_maint_admin_result(ngx_http_request_t *r, ngx_int_t rc)
{
    u_char                          why[NB_STORE_ERROR_LEN];
    size_t                          len;
    ngx_atomic_uint_t               v;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_admin_ctx_t  *ctx;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_http_nb_maint_module);

    switch (rc) {

    case NGX_OK:
        /* the state as written: others may have moved it on meanwhile */
        ctx = ngx_http_get_module_ctx(r, ngx_http_nb_maint_module);

        return ngx_http_nb_maint_admin_send_state(r, NGX_HTTP_OK,
                                                  ctx->written);

    case NGX_DECLINED:
        return ngx_http_nb_maint_admin_error(r, NGX_HTTP_CONFLICT,
                                             "version_conflict",
                                             "the state changed meanwhile "
                                             "(now version %uL); read it "
                                             "and retry",
                                             ngx_http_nb_maint_snapshot()
                                             ->version);

    case NGX_ABORT:
        return ngx_http_nb_maint_admin_error(r,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "store_unreplicated",
                                             "the change reached the redis "
                                             "primary but not enough "
                                             "replicas in time: it may or "
                                             "may not survive a failover");

    default:
        /* what the store said, e.g. a permission the Redis user lacks */
        sh = ngx_http_nb_maint_shm();

        do {
            v = ngx_http_nb_maint_read_begin();
            len = sh->store_ok ? 0 : ngx_min(sh->store_error_len,
                                             NB_STORE_ERROR_LEN);
            ngx_memcpy(why, sh->store_error, len);
        } while (ngx_http_nb_maint_read_retry(v));

        return ngx_http_nb_maint_admin_error(r,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "store_unavailable",
                                             "the %V store did not accept "
                                             "the change%s%*s%s; nothing "
                                             "changed", &nmcf->store.type,
                                             len ? " (" : "", len, why,
                                             len ? ")" : "");
    }
}


static void
ngx_http_nb_maint_admin_saved(void *data, ngx_int_t rc)
{
    ngx_http_request_t *r = data;

    ngx_http_nb_maint_admin_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_nb_maint_module);

    /*
     * Another write was first.  Without If-Match the client asked for its
     * change on the latest state, not for a precondition: build it again
     * on the state the store has now (issue 9, defect 16).
     */

    if (rc == NGX_DECLINED && ctx->if_match < 0
        && ++ctx->tries < NB_WRITE_TRIES)
    {
        rc = ngx_http_nb_maint_admin_apply(r, ctx, ctx->change);

        if (rc != NGX_DONE) {
            ngx_http_finalize_request(r, rc);
        }

        return;
    }

    if (rc == NGX_DECLINED && ctx->if_match < 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nb_maint: %s lost %d races in a row, giving up",
                      ctx->change->action, NB_WRITE_TRIES);
        rc = NGX_ERROR;
    }

    ngx_http_finalize_request(r, ngx_http_nb_maint_admin_result(r, rc));
}


/*
 * Every write: If-Match, the change on a copy of the current state, then
 * the store's compare-and-save.  NGX_DONE: the answer comes from
 * ngx_http_nb_maint_admin_saved() once the store has replied.
 */

static ngx_int_t
ngx_http_nb_maint_admin_apply(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, ngx_http_nb_maint_change_t *ch)
{
    ngx_int_t                       rc;
    ngx_http_nb_maint_state_t       old, st;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_http_nb_maint_module);

    old = *ngx_http_nb_maint_snapshot();

    if (ctx->if_match >= 0 && (uint64_t) ctx->if_match != old.version) {
        return ngx_http_nb_maint_admin_error(r, NGX_HTTP_CONFLICT,
                                             "version_conflict",
                                             "the state is at version %uL, "
                                             "not %i", old.version,
                                             ctx->if_match);
    }

    st = old;
    rc = ch->apply(r, ch, &st);

    if (rc == NGX_ERROR) {
        return ngx_http_nb_maint_admin_refused(r, ch);
    }

    if (rc == NGX_DECLINED || ngx_http_nb_maint_state_same(&old, &st)) {
        /* nothing to change: no version, no event */
        return ngx_http_nb_maint_admin_send_state(r, NGX_HTTP_OK, NULL);
    }

    /* kept for another try if a concurrent write wins the store */

    if (ctx->change == NULL) {
        ctx->change = ngx_palloc(r->pool, sizeof(ngx_http_nb_maint_change_t));
        ctx->written = ngx_palloc(r->pool, sizeof(ngx_http_nb_maint_state_t));

        if (ctx->change == NULL || ctx->written == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *ctx->change = *ch;
    }

    *ctx->written = st;

    rc = ngx_http_nb_maint_state_save(nmcf, &old, ctx->written, ch->action,
                                      &ctx->actor, ch->node, r->pool,
                                      r->connection->log,
                                      ngx_http_nb_maint_admin_saved, r);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc == NGX_DECLINED && ctx->if_match < 0
        && ++ctx->tries < NB_WRITE_TRIES)
    {
        /* a store that answered at once: the new state is ours to see */
        return ngx_http_nb_maint_admin_apply(r, ctx, ctx->change);
    }

    if (rc == NGX_DECLINED && ctx->if_match < 0) {
        rc = NGX_ERROR;
    }

    return ngx_http_nb_maint_admin_result(r, rc);
}


#define nb_refuse(ch, st, c, m)                                               \
    (ch)->status = st; (ch)->code = c; (ch)->message = m; return NGX_ERROR

/* the same about one node: the answer names it, "node \"<id>\" <m>" */
#define nb_refuse_id(ch, st, c, m, i)                                        \
    (ch)->id = i; nb_refuse(ch, st, c, m)


static ngx_int_t
ngx_http_nb_maint_restore_apply(ngx_http_request_t *r,
    ngx_http_nb_maint_change_t *ch, ngx_http_nb_maint_state_t *st)
{
    if (st->mode == NB_MODE_NORMAL) {
        nb_refuse(ch, NGX_HTTP_CONFLICT, "invalid_transition",
                  "the cluster is already in normal mode");
    }

    if (st->mode == NB_MODE_RESTORING && !ch->flag) {
        return NGX_DECLINED;
    }

    /* nothing checks nodes, here or on another gateway: normal at once */

    if (ch->flag
        || !ngx_http_nb_maint_restore_gated(
                   ngx_http_get_module_main_conf(r, ngx_http_nb_maint_module)))
    {
        ch->action = ch->flag ? "force_restore" : "restore";
        st->mode = NB_MODE_NORMAL;
        st->restoring_from = NB_MODE_NONE;
        st->node_len = 0;

        /* normal mode has its own (empty) reason and the default */
        st->reason_len = 0;
        st->retry_after = NB_RETRY_AFTER_DEFAULT;

        return NGX_OK;
    }

    ch->action = "restore";
    st->restoring_from = st->mode;
    st->mode = NB_MODE_RESTORING;
    st->restore_started = ngx_http_nb_maint_now_ms();
    st->restore_expect = ch->expect;

    return NGX_OK;
}


/* POST mode: the known fields, "force" and "mode" */

static ngx_int_t
ngx_http_nb_maint_mode_fields(ngx_http_nb_maint_change_t *ch,
    ngx_uint_t *force, ngx_int_t *mode)
{
    cJSON  *item, *body;

    body = ch->body;

    for (item = body->child; item; item = item->next) {
        if (ngx_strcmp(item->string, "mode") != 0
            && ngx_strcmp(item->string, "node") != 0
            && ngx_strcmp(item->string, "reason") != 0
            && ngx_strcmp(item->string, "retry_after") != 0
            && ngx_strcmp(item->string, "force") != 0)
        {
            nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                      "unknown field; allowed: mode, node, reason, "
                      "retry_after, force");
        }
    }

    item = cJSON_GetObjectItemCaseSensitive(body, "force");

    if (item && !cJSON_IsBool(item)) {
        nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                  "\"force\" must be true or false");
    }

    *force = cJSON_IsTrue(item);

    item = cJSON_GetObjectItemCaseSensitive(body, "mode");
    *mode = NGX_ERROR;

    if (cJSON_IsString(item)) {
        *mode = ngx_http_nb_maint_mode_parse((u_char *) item->valuestring,
                                             ngx_strlen(item->valuestring));
    }

    if (*mode == NGX_ERROR || *mode == NB_MODE_RESTORING) {
        nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                  "\"mode\" must be \"maintenance\", \"upgrade\" or "
                  "\"normal\"");
    }

    return NGX_OK;
}


/* POST mode: "node", a known and (unless forced) healthy one */

static ngx_int_t
ngx_http_nb_maint_mode_node(ngx_http_nb_maint_change_t *ch, ngx_int_t mode,
    ngx_uint_t force, const char **id)
{
    cJSON                    *item;
    ngx_int_t                 node;
    const char               *s;
    ngx_http_nb_maint_shm_t  *sh;

    s = NULL;
    sh = ngx_http_nb_maint_shm();
    item = cJSON_GetObjectItemCaseSensitive(ch->body, "node");

    if (item && !cJSON_IsNull(item)) {
        if (!cJSON_IsString(item)
            || !ngx_http_nb_maint_node_id_valid((u_char *) item->valuestring,
                                                ngx_strlen(item->valuestring)))
        {
            nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                      "\"node\" must be a node id like \"10.0.0.5:13000\"");
        }

        s = item->valuestring;

        if (mode == NB_MODE_NORMAL) {
            nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                      "\"node\" is not used with mode \"normal\"");
        }

        if (sh->nnodes) {
            node = ngx_http_nb_maint_node_find(sh, (u_char *) s,
                                               ngx_strlen(s));
            if (node == NGX_ERROR) {
                nb_refuse_id(ch, NGX_HTTP_BAD_REQUEST, "unknown_node",
                             "is not a server of any nb_maint upstream", s);
            }

            /* everyone would be sent to a node that does not answer */

            if (!force && sh->nodes[node].health == NB_HEALTH_DOWN) {
                nb_refuse_id(ch, NGX_HTTP_CONFLICT, "node_unhealthy",
                             "is down: its health checks fail, so every "
                             "request would get the no-node 503 page; start "
                             "it first, or send \"force\": true to "
                             "designate it anyway", s);
            }
        }
    }

    if (mode == NB_MODE_MAINTENANCE && s == NULL) {
        nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "node_required",
                  "mode \"maintenance\" needs \"node\": the one node that "
                  "keeps serving");
    }

    *id = s;

    return NGX_OK;
}


/* POST mode: "reason" and "retry_after" */

static ngx_int_t
ngx_http_nb_maint_mode_text(ngx_http_nb_maint_change_t *ch)
{
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(ch->body, "reason");

    if (item && !cJSON_IsNull(item)
        && (!cJSON_IsString(item)
            || ngx_strlen(item->valuestring) > NB_REASON_LEN))
    {
        nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                  "\"reason\" must be a string of at most 512 bytes");
    }

    item = cJSON_GetObjectItemCaseSensitive(ch->body, "retry_after");

    if (item && !cJSON_IsNull(item)
        && (!cJSON_IsNumber(item) || item->valuedouble < 0
            || item->valuedouble > NB_RETRY_AFTER_MAX
            || item->valuedouble != (double) (ngx_int_t) item->valuedouble))
    {
        nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                  "\"retry_after\" must be an integer from 0 to 86400");
    }

    return NGX_OK;
}


/* the change itself: a new mode has its own reason and retry_after */

static void
ngx_http_nb_maint_mode_set(ngx_http_nb_maint_change_t *ch,
    ngx_http_nb_maint_state_t *st, ngx_int_t mode, const char *s)
{
    size_t   len;
    cJSON   *item, *body;

    body = ch->body;

    if ((ngx_uint_t) mode != st->mode) {
        st->reason_len = 0;
        st->retry_after = NB_RETRY_AFTER_DEFAULT;
        st->node_len = 0;
        st->restoring_from = NB_MODE_NONE;
    }

    st->mode = mode;

    if (s) {
        len = ngx_strlen(s);
        st->node_len = len;
        ngx_memcpy(st->node, s, len);

    } else if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(body, "node"))) {
        st->node_len = 0;       /* "node": null clears it (upgrade) */
    }

    ch->node = -1;

    item = cJSON_GetObjectItemCaseSensitive(body, "reason");
    if (cJSON_IsString(item)) {
        st->reason_len = ngx_strlen(item->valuestring);
        ngx_memcpy(st->reason, item->valuestring, st->reason_len);
    }

    item = cJSON_GetObjectItemCaseSensitive(body, "retry_after");
    if (cJSON_IsNumber(item)) {
        st->retry_after = (ngx_uint_t) item->valuedouble;
    }
}


static ngx_int_t
ngx_http_nb_maint_mode_apply(ngx_http_request_t *r,
    ngx_http_nb_maint_change_t *ch, ngx_http_nb_maint_state_t *st)
{
    ngx_int_t    mode;
    ngx_uint_t   force;
    const char  *s;

    /* validate everything before touching st: all or nothing */

    if (ngx_http_nb_maint_mode_fields(ch, &force, &mode) != NGX_OK
        || ngx_http_nb_maint_mode_node(ch, mode, force, &s) != NGX_OK
        || ngx_http_nb_maint_mode_text(ch) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (mode == NB_MODE_NORMAL) {
        ch->flag = force;
        return ngx_http_nb_maint_restore_apply(r, ch, st);
    }

    ngx_http_nb_maint_mode_set(ch, st, mode, s);

    return NGX_OK;
}


ngx_int_t
ngx_http_nb_maint_admin_mode(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    ngx_int_t                   rc;
    ngx_http_nb_maint_change_t  ch;
    ngx_http_nb_maint_state_t   st, *cur;

    if (body == NULL) {
        return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                             "bad_json", "a JSON body with "
                                             "\"mode\" is required");
    }

    ngx_memzero(&ch, sizeof(ngx_http_nb_maint_change_t));
    ch.apply = ngx_http_nb_maint_mode_apply;
    ch.action = "mode";
    ch.body = body;
    ch.node = -1;

    /* validate against the current state first, without the write lock */

    cur = ngx_http_nb_maint_snapshot();
    st = *cur;
    rc = ngx_http_nb_maint_mode_apply(r, &ch, &st);

    if (rc == NGX_ERROR && ch.status != NGX_HTTP_CONFLICT) {
        return ngx_http_nb_maint_admin_refused(r, &ch);
    }

    ch.action = "mode";

    return ngx_http_nb_maint_admin_apply(r, ctx, &ch);
}


ngx_int_t
ngx_http_nb_maint_admin_restore(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    cJSON                       *item;
    ngx_http_nb_maint_change_t   ch;

    ngx_memzero(&ch, sizeof(ngx_http_nb_maint_change_t));
    ch.apply = ngx_http_nb_maint_restore_apply;
    ch.action = "restore";
    ch.node = -1;

    if (body) {
        for (item = body->child; item; item = item->next) {
            if (ngx_strcmp(item->string, "expect") == 0) {
                /* DNS members a restore waits for (SPEC section 10a) */
                if (!cJSON_IsNumber(item) || item->valuedouble < 1
                    || item->valuedouble > NB_DNS_SLOTS
                    || item->valuedouble != (double) (int) item->valuedouble)
                {
                    return ngx_http_nb_maint_admin_error(r,
                                   NGX_HTTP_BAD_REQUEST, "bad_field",
                                   "\"expect\" must be an integer 1..%d",
                                   NB_DNS_SLOTS);
                }

                ch.expect = (ngx_uint_t) item->valuedouble;
                continue;
            }

            if (ngx_strcmp(item->string, "force") != 0) {
                return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                                     "bad_field",
                                                     "unknown field; "
                                                     "allowed: force, "
                                                     "expect");
            }

            if (!cJSON_IsBool(item)) {
                return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                                     "bad_field",
                                                     "\"force\" must be "
                                                     "true or false");
            }

            ch.flag = cJSON_IsTrue(item);
        }
    }

    return ngx_http_nb_maint_admin_apply(r, ctx, &ch);
}


static ngx_int_t
ngx_http_nb_maint_drain_apply(ngx_http_request_t *r,
    ngx_http_nb_maint_change_t *ch, ngx_http_nb_maint_state_t *st)
{
    if ((nb_drained(st, ch->node) != 0) == (ch->flag != 0)) {
        return NGX_DECLINED;
    }

    if (ch->flag) {
        st->drain[ch->node / 8] |= (u_char) (1 << (ch->node % 8));

    } else {
        st->drain[ch->node / 8] &= (u_char) ~(1 << (ch->node % 8));
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_admin_drain_set(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body, ngx_uint_t drain)
{
    ngx_http_nb_maint_change_t  ch;

    if (body && body->child) {
        return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                             "bad_field", "drain and undrain "
                                             "take no fields");
    }

    ngx_memzero(&ch, sizeof(ngx_http_nb_maint_change_t));
    ch.apply = ngx_http_nb_maint_drain_apply;
    ch.node = ctx->node;
    ch.flag = drain;
    ch.action = drain ? "drain" : "undrain";

    return ngx_http_nb_maint_admin_apply(r, ctx, &ch);
}


ngx_int_t
ngx_http_nb_maint_admin_drain(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    return ngx_http_nb_maint_admin_drain_set(r, ctx, body, 1);
}


ngx_int_t
ngx_http_nb_maint_admin_undrain(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    return ngx_http_nb_maint_admin_drain_set(r, ctx, body, 0);
}
