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
static void ngx_http_nb_maint_sentinel_watch_init(
    ngx_http_nb_maint_store_t *store, ngx_cycle_t *cycle);


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

    ngx_http_nb_maint_sentinel_watch_init(store, cycle);
}


/* the primary moved (a switch, or the owner found it): connect there */

static void
ngx_http_nb_maint_sentinel_reconnect(ngx_http_nb_maint_redis_conn_t *conn)
{
    if (!conn->wanted) {
        return;
    }

    conn->primary_ok = 1;       /* no need to ask the sentinels */
    conn->backoff = 1;

    if (conn->ac) {
        /* its pending commands are answered first */
        redisAsyncDisconnect(conn->ac);
        return;
    }

    if (conn->awaiting) {
        return;                 /* the sentinels answer soon */
    }

    if (conn->retry.timer_set) {
        ngx_del_timer(&conn->retry);
    }

    ngx_http_nb_maint_redis_connect(conn);
}


/* the primary moved to a host name: connections ask the sentinels again */

static void
ngx_http_nb_maint_sentinel_reask(ngx_http_nb_maint_redis_conn_t *conn)
{
    if (!conn->wanted || conn->ac == NULL) {
        return;
    }

    conn->primary_ok = 0;
    conn->backoff = 1;
    redisAsyncDisconnect(conn->ac);
}


/*
 * The owner: which server is the primary now.  A change under Sentinel is
 * a failover: counted and timed in shared memory (status, metrics); old
 * gets the primary before it and NGX_OK is returned, for the audit log.
 */

ngx_int_t
ngx_http_nb_maint_redis_primary(ngx_http_nb_maint_redis_conf_t *rcf,
    ngx_log_t *log, u_char *old, size_t *old_len)
{
    u_char                   now[NB_PRIMARY_LEN], *p;
    size_t                   len;
    ngx_uint_t               moved;
    ngx_http_nb_maint_shm_t *sh;

    sh = ngx_http_nb_maint_shm();

    p = ngx_snprintf(now, sizeof(now), "%s:%d", rcf->host, rcf->port);
    len = p - now;

    ngx_http_nb_maint_publish_lock();

    if (sh->store_primary_len == len
        && ngx_memcmp(sh->store_primary, now, len) == 0)
    {
        ngx_http_nb_maint_publish_unlock();
        return NGX_DECLINED;
    }

    moved = (sh->store_primary_len && rcf->sentinel);

    *old_len = sh->store_primary_len;
    ngx_memcpy(old, sh->store_primary, *old_len);

    if (moved) {
        sh->store_last_failover = ngx_time();
        sh->store_failovers++;
    }

    sh->store_primary_len = ngx_cpymem(sh->store_primary, now, len)
                            - sh->store_primary;

    ngx_http_nb_maint_publish_unlock();

    if (!moved) {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "nb_maint: store_failover: the redis primary of \"%V\" "
                  "moved from %*s to %*s", &rcf->master_name, *old_len, old,
                  len, now);

    return NGX_OK;
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

    /* store.sentinels_ok is the owner's watch's (below) */

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

        if (*ngx_http_nb_maint_redis_name_error()) {
            p = ngx_snprintf(why, sizeof(why) - 1, "%s",
                             ngx_http_nb_maint_redis_name_error());

        } else {
            p = ngx_snprintf(why, sizeof(why) - 1, "sentinels unreachable, "
                             "no primary known for \"%V\"",
                             &rcf->master_name);
        }

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


/* a host name the sentinel answered is resolved (store_redis_resolve.c) */

static void
ngx_http_nb_maint_sentinel_named(ngx_http_nb_maint_store_t *store,
    ngx_int_t rc)
{
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    if (rc == NGX_OK) {
        rcf->known = 1;
        ngx_http_nb_maint_sentinel_found = 1;

    } else {
        ngx_http_nb_maint_sentinel_next++;
    }

    ngx_add_timer(&ngx_http_nb_maint_sentinel_ev, 1);
}


static void
ngx_http_nb_maint_sentinel_answer(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    ngx_int_t                        port, rc;
    ngx_http_nb_maint_redis_conn_t  *conn = op->conn;
    ngx_http_nb_maint_redis_conf_t  *rcf = conn->store->data;
    ngx_uint_t                       i = ngx_http_nb_maint_sentinel_next;

    rc = NGX_DECLINED;

    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
        && reply->element[0]->type == REDIS_REPLY_STRING
        && reply->element[1]->type == REDIS_REPLY_STRING
        && (port = ngx_atoi((u_char *) reply->element[1]->str,
                            reply->element[1]->len))
           > 0 && port < 65536)
    {
        /* an address as it is, a name through nginx's resolver */
        rc = ngx_http_nb_maint_redis_name(conn->store,
                                          (u_char *) reply->element[0]->str,
                                          reply->element[0]->len, port,
                                          ngx_http_nb_maint_sentinel_named);
    }

    if (rc == NGX_OK) {
        rcf->known = 1;
        ngx_http_nb_maint_sentinel_found = 1;

    } else if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "nb_maint: sentinel %s:%d: %s", rcf->sentinel_host[i],
                      rcf->sentinel_port[i],
                      reply == NULL ? "no answer"
                      : reply->type == REDIS_REPLY_ERROR ? reply->str
                      : "does not know the master");

        ngx_http_nb_maint_sentinel_next++;

    } else if (rc == NGX_ERROR) {
        ngx_http_nb_maint_sentinel_next++;
    }

    if (conn->ac) {
        redisAsyncDisconnect(conn->ac);
    }

    if (rc == NGX_AGAIN) {
        return;     /* the resolver answers: sentinel_named() */
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


/*
 * The owner watches every sentinel: one connection each, subscribed to
 * +switch-master, so that a switch moves the store to the new primary at
 * once (a lost connection or READONLY still makes it ask again).  Every
 * NB_SENTINEL_BEAT ms the SUBSCRIBE is sent again as a heartbeat (hiredis
 * 0.14 takes no PING on a subscribed connection); a sentinel that has not
 * answered for NB_SENTINEL_DEAD ms, or whose connection is lost, is
 * unreachable.  What the watch sees is store.sentinels_ok and
 * store.warning; the store keeps using the primary it knows meanwhile.
 */

#define NB_SENTINEL_BEAT     2000
#define NB_SENTINEL_DEAD     5000

#define NB_WATCH_UNKNOWN     0
#define NB_WATCH_UP          1
#define NB_WATCH_DOWN        2


typedef struct {
    ngx_http_nb_maint_redis_conn_t  conn;
    ngx_uint_t                      index;
    ngx_uint_t                      state;     /* NB_WATCH_* */
    ngx_uint_t                      opened;
    ngx_msec_t                      beat;      /* last SUBSCRIBE sent */
    ngx_msec_t                      seen;      /* last answer */
} ngx_http_nb_maint_sentinel_watch_t;


static ngx_http_nb_maint_sentinel_watch_t
    ngx_http_nb_maint_watch[NB_SENTINELS_MAX];


static void ngx_http_nb_maint_watch_retry(ngx_event_t *ev);


static void
ngx_http_nb_maint_sentinel_watch_init(ngx_http_nb_maint_store_t *store,
    ngx_cycle_t *cycle)
{
    ngx_uint_t                           i;
    ngx_http_nb_maint_sentinel_watch_t  *w;
    ngx_http_nb_maint_redis_conf_t      *rcf = store->data;

    for (i = 0; i < rcf->nsentinels; i++) {
        w = &ngx_http_nb_maint_watch[i];

        ngx_http_nb_maint_redis_conn_init(&w->conn, store, cycle->log,
                                          "sentinel watch", 0);
        w->conn.sentinel = 1;
        w->conn.quiet = 1;
        w->conn.retry.handler = ngx_http_nb_maint_watch_retry;
        w->index = i;
        w->state = NB_WATCH_UNKNOWN;
        w->opened = 0;
    }
}


/* "<master> <old-ip> <old-port> <new-ip> <new-port>" */

static void
ngx_http_nb_maint_watch_switch(ngx_http_nb_maint_sentinel_watch_t *w,
    u_char *s, size_t len)
{
    u_char                          *f[5], *end, *p;
    size_t                           flen[5];
    ngx_int_t                        port;
    ngx_uint_t                       n;
    ngx_http_nb_maint_redis_conf_t  *rcf = w->conn.store->data;

    end = s + len;

    for (n = 0, p = s; n < 5 && p < end; n++) {
        f[n] = p;
        while (p < end && *p != ' ') {
            p++;
        }
        flen[n] = p - f[n];
        p++;
    }

    if (n != 5 || flen[0] != rcf->master_name.len
        || ngx_strncmp(f[0], rcf->master_name.data, flen[0]) != 0
        || flen[3] == 0 || flen[3] >= NGX_SOCKADDR_STRLEN)
    {
        return;     /* another master, or malformed */
    }

    port = ngx_atoi(f[4], flen[4]);
    if (port <= 0 || port > 65535) {
        return;
    }

    if (!ngx_http_nb_maint_redis_numeric(f[3], flen[3])) {
        /* a host name: the sentinels are asked again, and the name goes
         * through nginx's resolver (store_redis_resolve.c) */
        ngx_log_error(NGX_LOG_NOTICE, w->conn.log, 0,
                      "nb_maint: sentinel %s:%d: +switch-master \"%V\" to "
                      "%*s:%i, asking the sentinels",
                      rcf->sentinel_host[w->index],
                      rcf->sentinel_port[w->index], &rcf->master_name,
                      flen[3], f[3], port);
        ngx_http_nb_maint_sentinel_reask(&ngx_http_nb_maint_redis_cmd);
        ngx_http_nb_maint_sentinel_reask(&ngx_http_nb_maint_redis_sub);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, w->conn.log, 0,
                  "nb_maint: sentinel %s:%d: +switch-master \"%V\" %*s:%*s "
                  "-> %*s:%i, reconnecting",
                  rcf->sentinel_host[w->index], rcf->sentinel_port[w->index],
                  &rcf->master_name, flen[1], f[1], flen[2], f[2], flen[3],
                  f[3], port);

    if (ngx_strlen(rcf->host) == flen[3]
        && ngx_strncmp(rcf->host, f[3], flen[3]) == 0 && rcf->port == port)
    {
        return;     /* there already */
    }

    *ngx_cpymem(rcf->host, f[3], flen[3]) = '\0';
    rcf->port = port;
    rcf->known = 1;

    /*
     * Connections still open (the old primary alive: SENTINEL FAILOVER, a
     * healed partition) move now; ones already lost reconnect on their
     * back-off as the other workers do, so that store.ok never comes
     * before those workers can write.
     */

    if (ngx_http_nb_maint_redis_cmd.ac) {
        ngx_http_nb_maint_sentinel_reconnect(&ngx_http_nb_maint_redis_cmd);
    }

    if (ngx_http_nb_maint_redis_sub.ac) {
        ngx_http_nb_maint_sentinel_reconnect(&ngx_http_nb_maint_redis_sub);
    }
}


static void
ngx_http_nb_maint_watch_message(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                          *reply = r;
    ngx_http_nb_maint_sentinel_watch_t  *w = privdata;
    ngx_http_nb_maint_redis_conf_t      *rcf = w->conn.store->data;

    ngx_uint_t  level;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    w->seen = ngx_current_msec;

    if (w->state != NB_WATCH_UP) {
        level = (w->state == NB_WATCH_DOWN) ? NGX_LOG_NOTICE : NGX_LOG_INFO;

        ngx_log_error(level, w->conn.log, 0, "nb_maint: sentinel %s:%d answers",
                      rcf->sentinel_host[w->index],
                      rcf->sentinel_port[w->index]);
        w->state = NB_WATCH_UP;
        w->conn.failing = 0;
        w->conn.backoff = NB_REDIS_BACKOFF_MIN;
    }

    if (reply->element[2]->type == REDIS_REPLY_STRING
        && ngx_strcmp(reply->element[0]->str, "message") == 0)
    {
        ngx_http_nb_maint_watch_switch(w, (u_char *) reply->element[2]->str,
                                       reply->element[2]->len);
    }
}


static void
ngx_http_nb_maint_watch_open(ngx_http_nb_maint_sentinel_watch_t *w)
{
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conf_t  *rcf = w->conn.store->data;

    w->opened = 1;

    if (ngx_http_nb_maint_redis_open(&w->conn, rcf->sentinel_host[w->index],
                                     rcf->sentinel_port[w->index])
        != NGX_OK)
    {
        return;     /* retried */
    }

    w->beat = ngx_current_msec;
    w->seen = ngx_current_msec;

    if (rcf->sentinel_password.len) {
        op = ngx_http_nb_maint_redis_op(&w->conn,
                                        ngx_http_nb_maint_redis_ignore);
        if (op) {
            a.n = 0;
            nb_arg_lit(&a, "AUTH");
            nb_arg_str(&a, &rcf->sentinel_password);
            (void) ngx_http_nb_maint_redis_send(op, &a);
        }
    }

    (void) redisAsyncCommand(w->conn.ac, ngx_http_nb_maint_watch_message, w,
                             "SUBSCRIBE +switch-master");
}


static void
ngx_http_nb_maint_watch_retry(ngx_event_t *ev)
{
    ngx_http_nb_maint_redis_conn_t *conn = ev->data;

    if (conn->wanted && conn->ac == NULL && !ngx_exiting && !ngx_quit) {
        ngx_http_nb_maint_watch_open(
                              (ngx_http_nb_maint_sentinel_watch_t *) conn);
    }
}


/* the owner's tick: heartbeats, and what the watch says in the status */

static void
ngx_http_nb_maint_watch_beat(ngx_http_nb_maint_sentinel_watch_t *w)
{
    ngx_http_nb_maint_redis_conf_t  *rcf = w->conn.store->data;

    if (!w->conn.wanted) {
        w->conn.wanted = 1;
        ngx_http_nb_maint_watch_open(w);
        return;
    }

    if (w->conn.ac == NULL) {
        if (w->opened) {
            w->state = NB_WATCH_DOWN;
        }
        return;
    }

    if ((ngx_msec_int_t) (ngx_current_msec - w->seen) > NB_SENTINEL_DEAD) {
        ngx_log_error(NGX_LOG_WARN, w->conn.log, 0,
                      "nb_maint: sentinel %s:%d did not answer for %d ms",
                      rcf->sentinel_host[w->index],
                      rcf->sentinel_port[w->index], NB_SENTINEL_DEAD);

        w->state = NB_WATCH_DOWN;
        (void) ngx_cpystrn(w->conn.error, (u_char *) "no answer",
                           NB_REDIS_ERROR_LEN);
        w->conn.failing = 1;
        redisAsyncDisconnect(w->conn.ac);
        return;
    }

    if ((ngx_msec_int_t) (ngx_current_msec - w->beat) >= NB_SENTINEL_BEAT) {
        w->beat = ngx_current_msec;
        (void) redisAsyncCommand(w->conn.ac, ngx_http_nb_maint_watch_message,
                                 w, "SUBSCRIBE +switch-master");
    }
}


static void
ngx_http_nb_maint_watch_status(ngx_http_nb_maint_redis_conf_t *rcf)
{
    u_char                              *p, *end, buf[NB_STORE_ERROR_LEN];
    ngx_uint_t                           i, up, down;
    ngx_http_nb_maint_shm_t             *sh;
    ngx_http_nb_maint_sentinel_watch_t  *w;

    p = buf;
    end = buf + sizeof(buf);

    for (i = 0, up = 0, down = 0; i < rcf->nsentinels; i++) {
        w = &ngx_http_nb_maint_watch[i];

        if (w->state == NB_WATCH_UP) {
            up++;

        } else if (w->state == NB_WATCH_DOWN) {
            p = ngx_slprintf(p, end, "%s%s:%d (%s)", down ? ", " : "",
                             rcf->sentinel_host[i], rcf->sentinel_port[i],
                             w->conn.error);
            down++;
        }
    }

    sh = ngx_http_nb_maint_shm();

    ngx_http_nb_maint_publish_lock();

    sh->store_sentinels_up = up;
    sh->store_sentinels_n = rcf->nsentinels;
    sh->store_sentinels_ok = (down < rcf->nsentinels);

    if (down == 0) {
        sh->store_warning_len = 0;

    } else {
        sh->store_warning_len = ngx_slprintf(sh->store_warning,
                                    sh->store_warning + NB_STORE_ERROR_LEN,
                                    "%ui of %ui sentinels unreachable: %*s%s",
                                    down, rcf->nsentinels, p - buf, buf,
                                    (down == rcf->nsentinels)
                                    ? "; using the primary known before, a "
                                      "failover is not followed until one "
                                      "answers"
                                    : "")
                                - sh->store_warning;
    }

    ngx_http_nb_maint_publish_unlock();
}


/*
 * Non-owners: follow the primary the owner found (its watch, its ROLE),
 * when the owner's finding changes; a worker that found a newer primary
 * by itself first is not sent back to the one before.
 */

static u_char  ngx_http_nb_maint_followed[NB_PRIMARY_LEN];
static size_t  ngx_http_nb_maint_followed_len = (size_t) -1;


static void
ngx_http_nb_maint_sentinel_follow(ngx_http_nb_maint_redis_conf_t *rcf)
{
    u_char                   now[NB_PRIMARY_LEN], *colon;
    size_t                   len, seen;
    ngx_int_t                port;
    ngx_atomic_uint_t        v;
    ngx_http_nb_maint_shm_t *sh;

    sh = ngx_http_nb_maint_shm();

    do {
        v = ngx_http_nb_maint_read_begin();
        len = ngx_min(sh->store_primary_len, sizeof(now));
        ngx_memcpy(now, sh->store_primary, len);
    } while (ngx_http_nb_maint_read_retry(v));

    seen = ngx_http_nb_maint_followed_len;

    if (seen == len && ngx_memcmp(ngx_http_nb_maint_followed, now, len) == 0)
    {
        return;
    }

    ngx_memcpy(ngx_http_nb_maint_followed, now, len);
    ngx_http_nb_maint_followed_len = len;

    if (seen == (size_t) -1) {
        return;         /* the first look: what it was when we started */
    }

    colon = len ? ngx_strlchr(now, now + len, ':') : NULL;

    while (colon && ngx_strlchr(colon + 1, now + len, ':')) {
        colon = ngx_strlchr(colon + 1, now + len, ':');     /* IPv6 */
    }

    if (colon == NULL || colon == now
        || (size_t) (colon - now) >= NGX_SOCKADDR_STRLEN)
    {
        return;
    }

    port = ngx_atoi(colon + 1, now + len - (colon + 1));

    if (port <= 0 || port > 65535
        || (ngx_http_nb_maint_redis_cmd.ready
            && rcf->port == port
            && ngx_strlen(rcf->host) == (size_t) (colon - now)
            && ngx_strncmp(rcf->host, now, colon - now) == 0))
    {
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "nb_maint: the redis primary is %*s now, reconnecting",
                  len, now);

    *ngx_cpymem(rcf->host, now, colon - now) = '\0';
    rcf->port = port;
    rcf->known = 1;

    ngx_http_nb_maint_sentinel_reconnect(&ngx_http_nb_maint_redis_cmd);
}


void
ngx_http_nb_maint_sentinel_tick(ngx_http_nb_maint_store_t *store,
    ngx_uint_t owner)
{
    ngx_uint_t                           i;
    ngx_http_nb_maint_sentinel_watch_t  *w;
    ngx_http_nb_maint_redis_conf_t      *rcf = store->data;

    if (!rcf->sentinel) {
        return;
    }

    for (i = 0; i < rcf->nsentinels; i++) {
        w = &ngx_http_nb_maint_watch[i];

        if (owner) {
            ngx_http_nb_maint_watch_beat(w);

        } else if (w->conn.wanted) {
            w->conn.wanted = 0;
            w->state = NB_WATCH_UNKNOWN;
            w->opened = 0;

            if (w->conn.ac) {
                redisAsyncDisconnect(w->conn.ac);
            }
        }
    }

    if (owner) {
        ngx_http_nb_maint_watch_status(rcf);

    } else {
        /* also while reconnecting: at once, not after the back-off */
        ngx_http_nb_maint_sentinel_follow(rcf);
    }
}


/* the worker exits: every sentinel socket closed */

void
ngx_http_nb_maint_sentinel_exit_process(ngx_http_nb_maint_store_t *store)
{
    ngx_uint_t                       i;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    if (ngx_http_nb_maint_sentinel_ev.timer_set) {
        ngx_del_timer(&ngx_http_nb_maint_sentinel_ev);
    }

    ngx_http_nb_maint_redis_name_cancel();
    ngx_http_nb_maint_redis_close(&ngx_http_nb_maint_redis_sen);

    for (i = 0; i < rcf->nsentinels; i++) {
        ngx_http_nb_maint_redis_close(&ngx_http_nb_maint_watch[i].conn);
    }
}
