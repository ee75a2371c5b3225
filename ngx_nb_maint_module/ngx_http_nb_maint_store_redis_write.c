/*
 * nb_maint: the redis store's writes (SPEC section 8): compare-and-set on
 * the version in a Lua script, answered when Redis replies, then WAIT for
 * the replicas when min_replicas asks for it (issue 12).
 *
 * May call: the redis connections (store_redis_conn.c), the reads
 * (store_redis_cmd.c: catching up after a conflict), the local cache
 * (store_cache.c) and the shared state.  No call here ever blocks.
 */

#include "ngx_http_nb_maint_store_redis.h"


/* KEYS: version, state, events; ARGV: expected, new version, state, event,
 * channel, message.  A conflict answers {0, version, state}: the writer
 * catches up and, without If-Match, tries again (issue 9, defect 16) */
static const char  ngx_http_nb_maint_redis_cas[] =
    "local cur = redis.call('GET', KEYS[1]) or '0' "
    "if cur ~= ARGV[1] then "
    "  return {0, cur, redis.call('GET', KEYS[2]) or ''} "
    "end "
    "redis.call('SET', KEYS[1], ARGV[2]) "
    "redis.call('SET', KEYS[2], ARGV[3]) "
    "if ARGV[4] ~= '' then "
    "  redis.call('RPUSH', KEYS[3], ARGV[4]) "
    "  redis.call('LTRIM', KEYS[3], " NB_REDIS_EVENTS_KEEP ", -1) "
    "end "
    "redis.call('PUBLISH', ARGV[5], ARGV[6]) "
    "return {1, tonumber(ARGV[2])}";


/* writes: compare-and-set on the version, answered by Redis */

/*
 * Another writer was first: take the state Redis has now, so that the
 * caller can build its change again on top of it.  NGX_ERROR when Redis
 * is behind us (it lost data; the owner re-publishes ours).
 */

static ngx_int_t
ngx_http_nb_maint_redis_conflict(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    off_t                            cur;
    redisReply                      *ver, *state;
    ngx_http_nb_maint_state_t        st;
    ngx_http_nb_maint_store_t       *store = op->conn->store;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;
    ngx_log_t                       *log = op->conn->log;

    ver = reply->element[1];
    state = (reply->elements > 2) ? reply->element[2] : NULL;

    cur = (ver->type == REDIS_REPLY_STRING)
          ? ngx_atoof((u_char *) ver->str, ver->len) : NGX_ERROR;

    if (cur == NGX_ERROR || (uint64_t) cur < op->expected) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "nb_maint: redis %V is at version %O, behind this "
                      "gateway's %uL (it lost data?): the change waits for "
                      "the state to be re-published", &rcf->url,
                      cur == NGX_ERROR ? (off_t) -1 : cur, op->expected);
        return NGX_ERROR;
    }

    if ((uint64_t) cur <= ngx_http_nb_maint_snapshot()->version) {
        return NGX_DECLINED;    /* we have it already */
    }

    if (state == NULL || state->type != REDIS_REPLY_STRING
        || ngx_http_nb_maint_redis_parse_state(store, state->str, state->len,
                                               &st, log)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    st.version = (uint64_t) cur;

    if (ngx_http_nb_maint_state_apply(store, &st, NULL, log) == NGX_OK) {
        /* its audit line comes with the list */
        ngx_http_nb_maint_redis_fetch_events(store);
    }

    return NGX_DECLINED;
}


/*
 * min_replicas: the write answers 200 only once WAIT says it reached
 * enough replicas; else 503 store_unreplicated (NGX_ABORT).
 */

static void
ngx_http_nb_maint_redis_waited(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    ngx_int_t                        acked;
    ngx_http_nb_maint_redis_conf_t  *rcf = op->conn->store->data;

    acked = (reply && reply->type == REDIS_REPLY_INTEGER)
            ? (ngx_int_t) reply->integer : -1;

    ngx_http_nb_maint_shm()->store_replicas_acked = acked;

    if (acked < (ngx_int_t) rcf->min_replicas) {
        ngx_log_error(NGX_LOG_ERR, op->conn->log, 0,
                      "nb_maint: version %uL reached %i of %ui replicas "
                      "within %M ms: it may or may not survive a failover",
                      op->st.version, acked, rcf->min_replicas,
                      rcf->wait_ms);
        op->done(op->data, NGX_ABORT);
        return;
    }

    op->done(op->data, NGX_OK);
}


static ngx_int_t
ngx_http_nb_maint_redis_wait(ngx_http_nb_maint_redis_op_t *op)
{
    u_char                           n[NGX_INT_T_LEN], ms[NGX_INT_T_LEN];
    ngx_http_nb_maint_redis_op_t    *w;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conf_t  *rcf = op->conn->store->data;

    w = ngx_http_nb_maint_redis_op(op->conn, ngx_http_nb_maint_redis_waited);
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->done = op->done;
    w->data = op->data;
    w->st.version = op->st.version;

    a.n = 0;
    nb_arg_lit(&a, "WAIT");
    nb_arg(&a, n, ngx_sprintf(n, "%ui", rcf->min_replicas) - n);
    nb_arg(&a, ms, ngx_sprintf(ms, "%M", rcf->wait_ms) - ms);

    if (ngx_http_nb_maint_redis_send(w, &a) != NGX_OK) {
        return NGX_ERROR;
    }

    /* WAIT itself takes up to wait_ms */
    ngx_add_timer(&w->timer, rcf->wait_ms + NB_REDIS_TIMEOUT);

    return NGX_OK;
}


static void
ngx_http_nb_maint_redis_saved(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    uint64_t    have;
    ngx_int_t   rc;
    ngx_log_t  *log = op->conn->log;

    if (reply == NULL) {
        rc = NGX_ERROR;

    } else if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "nb_maint: redis refused the change: %V",
                      ngx_http_nb_maint_redis_log_str(reply->str, reply->len));
        rc = NGX_ERROR;

        if (ngx_strncmp(reply->str, "READONLY", 8) == 0 && op->conn->ac) {
            /* a replica now: find the primary again */
            redisAsyncDisconnect(op->conn->ac);
        }

    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2
               && reply->element[0]->type == REDIS_REPLY_INTEGER)
    {
        if (reply->element[0]->integer == 1) {
            have = ngx_http_nb_maint_snapshot()->version;

            if (ngx_http_nb_maint_state_apply(op->conn->store, &op->st,
                                              &op->event, log)
                == NGX_OK
                && op->st.version > have + 1)
            {
                /* changes in between reached Redis before us */
                ngx_http_nb_maint_redis_fetch_events(op->conn->store);
            }

            ngx_http_nb_maint_cache_update(op->conn->store);

            rc = NGX_OK;

            if (((ngx_http_nb_maint_redis_conf_t *) op->conn->store->data)
                ->min_replicas
                && ngx_http_nb_maint_redis_wait(op) == NGX_OK)
            {
                return;     /* WAIT answers */
            }

        } else {
            rc = ngx_http_nb_maint_redis_conflict(op, reply);
        }

    } else {
        rc = NGX_ERROR;
    }

    op->done(op->data, rc);
}


ngx_int_t
ngx_http_nb_maint_redis_save(ngx_http_nb_maint_store_t *store,
    uint64_t expected, ngx_http_nb_maint_state_t *st, ngx_str_t *event,
    ngx_log_t *log, ngx_http_nb_maint_store_done_pt done, void *data)
{
    u_char                          *msg, *ev, exp[NGX_INT64_LEN],
                                     ver[NGX_INT64_LEN];
    char                            *state;
    size_t                           slen;
    ngx_int_t                        rc;
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    if (!ngx_http_nb_maint_redis_cmd.ready) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "nb_maint: redis %V is not connected", &rcf->url);
        return NGX_ERROR;
    }

    state = ngx_http_nb_maint_state_serialize(st, 0);
    if (state == NULL) {
        return NGX_ERROR;
    }

    slen = ngx_strlen(state);

    op = ngx_http_nb_maint_redis_op(&ngx_http_nb_maint_redis_cmd,
                                    ngx_http_nb_maint_redis_saved);
    msg = ngx_alloc(slen + event->len + sizeof("{\"state\":,\"event\":}"),
                    log);
    ev = ngx_alloc(event->len + 1, log);

    rc = NGX_ERROR;

    if (op == NULL || msg == NULL || ev == NULL) {
        goto done;
    }

    /* kept for our own apply once Redis has taken it */
    op->done = done;
    op->data = data;
    op->expected = expected;
    op->st = *st;
    op->event.data = ev;
    op->event.len = ngx_cpymem(ev, event->data, event->len) - ev;

    a.n = 0;
    nb_arg_lit(&a, "EVAL");
    nb_arg_lit(&a, ngx_http_nb_maint_redis_cas);
    nb_arg_lit(&a, "3");
    nb_arg_str(&a, &rcf->key_version);
    nb_arg_str(&a, &rcf->key_state);
    nb_arg_str(&a, &rcf->key_events);
    nb_arg(&a, exp, ngx_sprintf(exp, "%uL", expected) - exp);
    nb_arg(&a, ver, ngx_sprintf(ver, "%uL", st->version) - ver);
    nb_arg(&a, state, slen);
    nb_arg_str(&a, event);
    nb_arg_str(&a, &rcf->channel);
    nb_arg(&a, msg, ngx_sprintf(msg, "{\"state\":%s,\"event\":%V}", state,
                                event) - msg);

    /* on failure send() has freed op and its event */
    rc = ngx_http_nb_maint_redis_send(op, &a);
    op = NULL;
    ev = NULL;

done:

    if (op) {
        ngx_free(op);
    }

    if (ev) {
        ngx_free(ev);
    }

    if (msg) {
        ngx_free(msg);
    }

    cJSON_free(state);

    return (rc == NGX_OK) ? NGX_AGAIN : NGX_ERROR;
}
