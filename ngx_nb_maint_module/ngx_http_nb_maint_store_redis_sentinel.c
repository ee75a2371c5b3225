/*
 * nb_maint: the redis store's primary under Redis Sentinel (issue 12,
 * "nb_maint_store redis-sentinel://").
 *
 * Owns finding the primary (the sentinels asked in turn, SENTINEL
 * get-master-addr-by-name, before every connection to it) and noting which
 * server is the primary now and when it changed.  May call: the redis
 * connections (store_redis_conn.c) and the shared state.  No call here
 * ever blocks.
 */

#include "ngx_http_nb_maint_store_redis.h"


static ngx_event_t                     ngx_http_nb_maint_sentinel_ev;
static ngx_uint_t                      ngx_http_nb_maint_sentinel_busy;
static ngx_uint_t                      ngx_http_nb_maint_sentinel_next;
static ngx_uint_t                      ngx_http_nb_maint_sentinel_found;


static void ngx_http_nb_maint_sentinel_step(ngx_event_t *ev);


void
ngx_http_nb_maint_sentinel_init_process(ngx_http_nb_maint_store_t *store,
    ngx_cycle_t *cycle)
{
    ngx_http_nb_maint_redis_conn_init(&ngx_http_nb_maint_redis_sen, store,
                                      cycle->log, "sentinel", 0);
    ngx_http_nb_maint_redis_sen.sentinel = 1;

    ngx_http_nb_maint_sentinel_ev.handler = ngx_http_nb_maint_sentinel_step;
    ngx_http_nb_maint_sentinel_ev.data = store;
    ngx_http_nb_maint_sentinel_ev.log = cycle->log;
    ngx_http_nb_maint_sentinel_ev.cancelable = 1;

    ngx_http_nb_maint_redis_resolve = ngx_http_nb_maint_sentinel_ask;
}


/* the owner: which server is the primary now, and when it changed */

void
ngx_http_nb_maint_redis_primary(ngx_http_nb_maint_redis_conf_t *rcf,
    ngx_log_t *log)
{
    u_char                   now[NGX_SOCKADDR_STRLEN + 8], *p;
    size_t                   len;
    ngx_http_nb_maint_shm_t *sh;

    sh = ngx_http_nb_maint_shm();

    p = ngx_snprintf(now, sizeof(now), "%s:%d", rcf->host, rcf->port);
    len = p - now;

    if (sh->store_primary_len == len
        && ngx_memcmp(sh->store_primary, now, len) == 0)
    {
        return;
    }

    if (sh->store_primary_len && rcf->sentinel) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "nb_maint: store_failover: the redis primary of \"%V\" "
                      "moved from %*s to %*s", &rcf->master_name,
                      sh->store_primary_len, sh->store_primary, len, now);
        sh->store_last_failover = ngx_time();
    }

    ngx_rwlock_wlock(&sh->lock);
    sh->store_primary_len = ngx_cpymem(sh->store_primary, now, len)
                            - sh->store_primary;
    ngx_rwlock_unlock(&sh->lock);
}


/*
 * redis-sentinel://: before every connection to the primary, ask the
 * sentinels in turn (SENTINEL get-master-addr-by-name); all through
 * hiredis' async API, one question at a time per worker.
 */

static void ngx_http_nb_maint_sentinel_try(ngx_http_nb_maint_store_t *store);


static void
ngx_http_nb_maint_sentinel_done(ngx_http_nb_maint_store_t *store)
{
    u_char                           why[NB_STORE_ERROR_LEN], *p;
    ngx_uint_t                       i;
    ngx_http_nb_maint_redis_conn_t  *conn, *conns[2];
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    ngx_http_nb_maint_sentinel_busy = 0;

    if (ngx_http_nb_maint_is_owner()) {
        ngx_http_nb_maint_shm()->store_sentinels_ok =
                                          ngx_http_nb_maint_sentinel_found;
    }

    if (!ngx_http_nb_maint_sentinel_found) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "nb_maint: no sentinel answered for \"%V\"%s",
                      &rcf->master_name,
                      rcf->known ? ", using the primary known before" : "");
    }

    conns[0] = &ngx_http_nb_maint_redis_cmd;
    conns[1] = &ngx_http_nb_maint_redis_sub;

    for (i = 0; i < 2; i++) {
        conn = conns[i];

        if (!conn->awaiting) {
            continue;
        }

        conn->awaiting = 0;

        if (rcf->known) {
            conn->primary_ok = 1;
            ngx_http_nb_maint_redis_connect(conn);
            continue;
        }

        p = ngx_snprintf(why, sizeof(why) - 1, "sentinels unreachable, no "
                         "primary known for \"%V\"", &rcf->master_name);
        *p = '\0';

        ngx_http_nb_maint_redis_store_down(conn, (char *) why);
        ngx_http_nb_maint_redis_schedule(conn);
    }
}


static void
ngx_http_nb_maint_sentinel_step(ngx_event_t *ev)
{
    ngx_http_nb_maint_store_t *store = ev->data;

    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    if (ngx_http_nb_maint_sentinel_found
        || ngx_http_nb_maint_sentinel_next >= rcf->nsentinels)
    {
        ngx_http_nb_maint_sentinel_done(store);
        return;
    }

    ngx_http_nb_maint_sentinel_try(store);
}


static void
ngx_http_nb_maint_sentinel_answer(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    ngx_int_t                        port;
    ngx_http_nb_maint_redis_conn_t  *conn = op->conn;
    ngx_http_nb_maint_redis_conf_t  *rcf = conn->store->data;
    ngx_uint_t                       i = ngx_http_nb_maint_sentinel_next;

    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
        && reply->element[0]->type == REDIS_REPLY_STRING
        && reply->element[1]->type == REDIS_REPLY_STRING
        && reply->element[0]->len < NGX_SOCKADDR_STRLEN
        && (port = ngx_atoi((u_char *) reply->element[1]->str,
                            reply->element[1]->len))
           > 0 && port < 65536)
    {
        ngx_memcpy(rcf->host, reply->element[0]->str,
                   reply->element[0]->len + 1);
        rcf->port = port;
        rcf->known = 1;
        ngx_http_nb_maint_sentinel_found = 1;

    } else {
        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "nb_maint: sentinel %s:%d: %s", rcf->sentinel_host[i],
                      rcf->sentinel_port[i],
                      reply == NULL ? "no answer"
                      : reply->type == REDIS_REPLY_ERROR ? reply->str
                      : "does not know the master");

        ngx_http_nb_maint_sentinel_next++;
    }

    if (conn->ac) {
        redisAsyncDisconnect(conn->ac);
    }

    /* the next step outside of hiredis' callback */
    ngx_add_timer(&ngx_http_nb_maint_sentinel_ev, 1);
}


static void
ngx_http_nb_maint_sentinel_try(ngx_http_nb_maint_store_t *store)
{
    ngx_uint_t                       i;
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conn_t  *conn = &ngx_http_nb_maint_redis_sen;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    i = ngx_http_nb_maint_sentinel_next;

    if (conn->ac) {
        /* the last question's connection is still closing */
        ngx_add_timer(&ngx_http_nb_maint_sentinel_ev, 50);
        return;
    }

    if (ngx_http_nb_maint_redis_open(conn, rcf->sentinel_host[i],
                                     rcf->sentinel_port[i])
        != NGX_OK)
    {
        ngx_http_nb_maint_sentinel_next++;
        ngx_add_timer(&ngx_http_nb_maint_sentinel_ev, 1);
        return;
    }

    if (rcf->sentinel_password.len) {
        op = ngx_http_nb_maint_redis_op(conn, ngx_http_nb_maint_redis_ignore);
        if (op) {
            a.n = 0;
            nb_arg_lit(&a, "AUTH");
            nb_arg_str(&a, &rcf->sentinel_password);
            (void) ngx_http_nb_maint_redis_send(op, &a);
        }
    }

    op = ngx_http_nb_maint_redis_op(conn, ngx_http_nb_maint_sentinel_answer);
    if (op == NULL) {
        return;
    }

    a.n = 0;
    nb_arg_lit(&a, "SENTINEL");
    nb_arg_lit(&a, "get-master-addr-by-name");
    nb_arg_str(&a, &rcf->master_name);

    if (ngx_http_nb_maint_redis_send(op, &a) != NGX_OK) {
        ngx_http_nb_maint_sentinel_next++;
        ngx_add_timer(&ngx_http_nb_maint_sentinel_ev, 1);
    }
}


void
ngx_http_nb_maint_sentinel_ask(ngx_http_nb_maint_redis_conn_t *conn)
{
    ngx_http_nb_maint_store_t  *store = conn->store;

    if (ngx_http_nb_maint_sentinel_busy) {
        return;
    }

    ngx_http_nb_maint_sentinel_busy = 1;
    ngx_http_nb_maint_sentinel_next = 0;
    ngx_http_nb_maint_sentinel_found = 0;

    ngx_http_nb_maint_sentinel_try(store);
}
