/*
 * nb_maint: what the redis store reads back from Redis (SPEC section 8):
 * a state parsed and checked, and the audit list (LRANGE) put into the
 * ring.  Both the reads (store_redis_cmd.c) and the writes
 * (store_redis_write.c: a conflict, a resync) use them.
 *
 * May call: the redis connections (store_redis_conn.c), the local cache
 * (store_cache.c), the shared state and JSON.  No call here ever blocks.
 */

#include "ngx_http_nb_maint_store_redis.h"


static ngx_uint_t  ngx_http_nb_maint_redis_events_stale;


/* states coming from Redis */

ngx_int_t
ngx_http_nb_maint_redis_parse_state(ngx_http_nb_maint_store_t *store,
    const char *s, size_t len, ngx_http_nb_maint_state_t *st,
    ngx_log_t *log)
{
    cJSON                           *json;
    const char                      *err;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    json = ngx_http_nb_maint_json_parse(s, len, NULL, &err);

    if (json == NULL
        || ngx_http_nb_maint_state_parse(json, ngx_http_nb_maint_shm(), st,
                                         &err, log)
           != NGX_OK)
    {
        cJSON_Delete(json);
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "nb_maint: malformed state in redis key \"%V\" (%s), "
                      "keeping ours", &rcf->key_state, err);
        ngx_http_nb_maint_set_store_status(0, "malformed value in redis key "
                                           "\"%V\": %s", &rcf->key_state,
                                           err);
        return NGX_ERROR;
    }

    cJSON_Delete(json);

    return NGX_OK;
}


static void
ngx_http_nb_maint_redis_events(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    size_t      i, n;
    ngx_str_t  *ev;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return;
    }

    ev = ngx_alloc(sizeof(ngx_str_t) * (reply->elements + 1), op->conn->log);
    if (ev == NULL) {
        return;
    }

    for (i = 0, n = 0; i < reply->elements; i++) {
        if (reply->element[i]->type == REDIS_REPLY_STRING) {
            ev[n].data = (u_char *) reply->element[i]->str;
            ev[n].len = reply->element[i]->len;
            n++;
        }
    }

    ngx_http_nb_maint_events_replace(ev, n);
    ngx_free(ev);

    ngx_http_nb_maint_cache_update(op->conn->store);
}




void
ngx_http_nb_maint_redis_fetch_events(ngx_http_nb_maint_store_t *store)
{
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    /* not connected (a change came by pub/sub first): the next sync asks */
    ngx_http_nb_maint_redis_events_stale = 1;

    if (!ngx_http_nb_maint_redis_cmd.ready) {
        return;
    }

    op = ngx_http_nb_maint_redis_op(&ngx_http_nb_maint_redis_cmd,
                                    ngx_http_nb_maint_redis_events);
    if (op == NULL) {
        return;
    }

    a.n = 0;
    nb_arg_lit(&a, "LRANGE");
    nb_arg_str(&a, &rcf->key_events);
    nb_arg_lit(&a, NB_REDIS_EVENTS_READ);
    nb_arg_lit(&a, "-1");

    if (ngx_http_nb_maint_redis_send(op, &a) == NGX_OK) {
        ngx_http_nb_maint_redis_events_stale = 0;
    }
}


/* the audit list asked for while disconnected: asked for now */

void
ngx_http_nb_maint_redis_fetch_stale_events(ngx_http_nb_maint_store_t *store)
{
    if (ngx_http_nb_maint_redis_events_stale) {
        ngx_http_nb_maint_redis_fetch_events(store);
    }
}
