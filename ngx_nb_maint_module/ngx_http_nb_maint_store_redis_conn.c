/*
 * nb_maint: the redis store's connections (SPEC section 8): hiredis' async
 * API on nginx's event loop.
 *
 * Owns the three connections of a worker (command, subscriber, sentinel),
 * their sockets as nginx connections, the handshake (AUTH, SELECT, ROLE,
 * PING), commands with a timeout, reconnection with a back-off, and the
 * store status a lost connection sets.  The layer above says what happens
 * once a connection is usable (conn->on_ready) and how the primary is
 * found (ngx_http_nb_maint_redis_resolve).  May call: the shared state
 * (store status, owner); nothing else of the module.  No call here ever
 * blocks.
 */

#include "ngx_http_nb_maint_store_redis.h"


ngx_http_nb_maint_redis_conn_t   ngx_http_nb_maint_redis_cmd;
ngx_http_nb_maint_redis_conn_t   ngx_http_nb_maint_redis_sub;
ngx_http_nb_maint_redis_conn_t   ngx_http_nb_maint_redis_sen;
ngx_http_nb_maint_redis_conn_pt  ngx_http_nb_maint_redis_resolve;

/* the worker exits: replies are not handled any more (their requests may
 * be gone), nothing reconnects, nothing is said about the store */
static ngx_uint_t                ngx_http_nb_maint_redis_closing;


static void ngx_http_nb_maint_redis_role(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply);


/* a string Redis sent, escaped for a log line ("%V"): it comes from the
 * network; one at a time (a static buffer) */

#define NB_REDIS_LOG_MAX  128

ngx_str_t *
ngx_http_nb_maint_redis_log_str(const char *s, size_t len)
{
    static u_char     buf[NB_REDIS_LOG_MAX * 4];
    static ngx_str_t  out;

    out.data = buf;
    out.len = ngx_http_nb_maint_escape_log(buf, (u_char *) s,
                                           ngx_min(len, NB_REDIS_LOG_MAX));

    return &out;
}


/* hiredis <-> nginx events */

static void
ngx_http_nb_maint_redis_ev_read(ngx_event_t *ev)
{
    ngx_connection_t                *c = ev->data;
    ngx_http_nb_maint_redis_conn_t  *conn = c->data;

    if (conn->ac) {
        redisAsyncHandleRead(conn->ac);
    }
}


static void
ngx_http_nb_maint_redis_ev_write(ngx_event_t *ev)
{
    ngx_connection_t                *c = ev->data;
    ngx_http_nb_maint_redis_conn_t  *conn = c->data;

    if (conn->ac) {
        redisAsyncHandleWrite(conn->ac);
    }
}


/* hiredis asks for read/write interest: level-triggered, as it expects */

static void
ngx_http_nb_maint_redis_event(void *privdata, ngx_uint_t write, ngx_uint_t on)
{
    ngx_http_nb_maint_redis_conn_t *conn = privdata;

    ngx_event_t  *ev;

    if (conn->c == NULL) {
        return;
    }

    ev = write ? conn->c->write : conn->c->read;

    if (on && !ev->active) {
        (void) ngx_add_event(ev, write ? NGX_WRITE_EVENT : NGX_READ_EVENT,
                             NGX_LEVEL_EVENT);

    } else if (!on && ev->active) {
        (void) ngx_del_event(ev, write ? NGX_WRITE_EVENT : NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_nb_maint_redis_add_read(void *privdata)
{
    ngx_http_nb_maint_redis_event(privdata, 0, 1);
}


static void
ngx_http_nb_maint_redis_del_read(void *privdata)
{
    ngx_http_nb_maint_redis_event(privdata, 0, 0);
}


static void
ngx_http_nb_maint_redis_add_write(void *privdata)
{
    ngx_http_nb_maint_redis_event(privdata, 1, 1);
}


static void
ngx_http_nb_maint_redis_del_write(void *privdata)
{
    ngx_http_nb_maint_redis_event(privdata, 1, 0);
}


/* hiredis frees the context and closes the socket: drop our side */

static void
ngx_http_nb_maint_redis_cleanup(void *privdata)
{
    ngx_http_nb_maint_redis_conn_t *conn = privdata;

    ngx_connection_t  *c;

    c = conn->c;
    if (c == NULL) {
        return;
    }

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    conn->c = NULL;
}


static void
ngx_http_nb_maint_redis_drop(ngx_http_nb_maint_redis_conn_t *conn)
{
    redisAsyncContext  *ac;

    ac = conn->ac;
    if (ac == NULL) {
        return;
    }

    conn->ac = NULL;
    conn->ready = 0;

    redisAsyncFree(ac);

    ngx_http_nb_maint_redis_schedule(conn);
}


/* commands with a timeout */

static void
ngx_http_nb_maint_redis_op_timeout(ngx_event_t *ev)
{
    ngx_http_nb_maint_redis_op_t  *op = ev->data;

    ngx_http_nb_maint_redis_conn_t  *conn;

    conn = op->conn;

    ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                  "nb_maint: redis did not answer in %d ms, reconnecting",
                  NB_REDIS_TIMEOUT);

    ngx_http_nb_maint_redis_store_down(conn, "no answer");

    /* frees the context: every pending op gets its NULL reply now */
    ngx_http_nb_maint_redis_drop(conn);
}


static void
ngx_http_nb_maint_redis_op_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_http_nb_maint_redis_op_t *op = privdata;

    if (op->timer.timer_set) {
        ngx_del_timer(&op->timer);
    }

    if (!ngx_http_nb_maint_redis_closing) {
        op->handler(op, r);
    }

    if (op->event.data) {
        ngx_free(op->event.data);
    }

    ngx_free(op);
}


ngx_http_nb_maint_redis_op_t *
ngx_http_nb_maint_redis_op(ngx_http_nb_maint_redis_conn_t *conn,
    ngx_http_nb_maint_redis_reply_pt handler)
{
    ngx_http_nb_maint_redis_op_t  *op;

    op = ngx_calloc(sizeof(ngx_http_nb_maint_redis_op_t), conn->log);
    if (op == NULL) {
        return NULL;
    }

    op->conn = conn;
    op->handler = handler;
    op->timer.handler = ngx_http_nb_maint_redis_op_timeout;
    op->timer.data = op;
    op->timer.log = conn->log;
    op->timer.cancelable = 1;

    return op;
}


/*
 * Redis answers a connection's commands in order, and WAIT holds the
 * connection for up to its timeout: a command queued behind WAITs gets
 * their time on top of its own NB_REDIS_TIMEOUT, so that a slow replica
 * never makes it look like Redis stopped answering (issue 21 item 6).
 */

void
ngx_http_nb_maint_redis_blocking(ngx_http_nb_maint_redis_conn_t *conn,
    ngx_msec_t ms)
{
    if ((ngx_msec_int_t) (conn->blocked_until - ngx_current_msec) < 0) {
        conn->blocked_until = ngx_current_msec;
    }

    conn->blocked_until += ms;
}


static ngx_msec_t
ngx_http_nb_maint_redis_budget(ngx_http_nb_maint_redis_conn_t *conn)
{
    ngx_msec_int_t  left;

    left = (ngx_msec_int_t) (conn->blocked_until - ngx_current_msec);

    return NB_REDIS_TIMEOUT + (left > 0 ? (ngx_msec_t) left : 0);
}


ngx_int_t
ngx_http_nb_maint_redis_send_argv(ngx_http_nb_maint_redis_op_t *op, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_http_nb_maint_redis_conn_t  *conn = op->conn;

    if (conn->ac == NULL
        || redisAsyncCommandArgv(conn->ac, ngx_http_nb_maint_redis_op_reply,
                                 op, argc, argv, argvlen)
           != REDIS_OK)
    {
        if (op->event.data) {
            ngx_free(op->event.data);
        }

        ngx_free(op);
        return NGX_ERROR;
    }

    ngx_add_timer(&op->timer, ngx_http_nb_maint_redis_budget(conn));

    return NGX_OK;
}


ngx_int_t
ngx_http_nb_maint_redis_send(ngx_http_nb_maint_redis_op_t *op,
    ngx_http_nb_maint_redis_args_t *a)
{
    return ngx_http_nb_maint_redis_send_argv(op, a->n, a->v, a->len);
}


/* connections */

static void
ngx_http_nb_maint_redis_retry(ngx_event_t *ev)
{
    ngx_http_nb_maint_redis_conn_t *conn = ev->data;

    if (conn->wanted && conn->ac == NULL && !ngx_exiting && !ngx_quit) {
        ngx_http_nb_maint_redis_connect(conn);
    }
}


void
ngx_http_nb_maint_redis_schedule(ngx_http_nb_maint_redis_conn_t *conn)
{
    ngx_msec_t  max;

    if (!conn->wanted || conn->retry.timer_set || ngx_exiting || ngx_quit
        || ngx_http_nb_maint_redis_closing)
    {
        return;
    }

    ngx_add_timer(&conn->retry, conn->backoff);

    max = ((ngx_http_nb_maint_redis_conf_t *) conn->store->data)->sentinel
          ? NB_SENTINEL_BACKOFF : NB_REDIS_BACKOFF_MAX;

    conn->backoff = ngx_min(conn->backoff * 2, max);
}


void
ngx_http_nb_maint_redis_store_down(ngx_http_nb_maint_redis_conn_t *conn,
    const char *why)
{
    ngx_http_nb_maint_redis_conf_t  *rcf = conn->store->data;

    if (conn == &ngx_http_nb_maint_redis_cmd && ngx_http_nb_maint_is_owner()) {
        ngx_http_nb_maint_set_store_status(0, "%V: %s", &rcf->url, why);
    }
}


static void
ngx_http_nb_maint_redis_on_disconnect(const redisAsyncContext *ac,
    int status)
{
    ngx_http_nb_maint_redis_conn_t *conn = ac->data;

    const char  *why;
    ngx_uint_t   level;

    if (ngx_http_nb_maint_redis_closing) {
        conn->ac = NULL;
        conn->ready = 0;
        return;
    }

    level = (conn->wanted && !(conn->quiet && conn->failing))
            ? NGX_LOG_ERR : NGX_LOG_INFO;

    why = (ac->errstr && ac->errstr[0]) ? ac->errstr : NULL;

    ngx_log_error(level, conn->log, 0,
                  "nb_maint: redis %s connection lost%s%s", conn->name,
                  why ? ": " : "", why ? why : "");

    (void) ngx_cpystrn(conn->error, (u_char *) (why ? why : "connection lost"),
                       NB_REDIS_ERROR_LEN);
    conn->failing = 1;

    if (why && ngx_http_nb_maint_redis_is_noperm(why, ngx_strlen(why))) {
        /* hiredis drops a connection whose SUBSCRIBE is refused */
        ngx_http_nb_maint_redis_noperm(conn, NB_REDIS_PERM_SUBSCRIBE, why,
                                       ngx_strlen(why));
    }

    /* a refusal or timeout already said why: keep that */
    if (why || ngx_http_nb_maint_shm()->store_ok) {
        ngx_http_nb_maint_redis_store_down(conn, why ? why
                                                     : "connection lost");
    }
    conn->ac = NULL;
    conn->ready = 0;

    ngx_http_nb_maint_redis_schedule(conn);
}


static void
ngx_http_nb_maint_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_nb_maint_redis_conn_t *conn = ac->data;

    ngx_uint_t  level;

    if (status != REDIS_OK) {
        level = (conn->quiet && conn->failing) ? NGX_LOG_INFO : NGX_LOG_ERR;

        ngx_log_error(level, conn->log, 0,
                      "nb_maint: cannot connect to redis (%s connection): %s",
                      conn->name, ac->errstr);

        (void) ngx_cpystrn(conn->error, (u_char *) ac->errstr,
                           NB_REDIS_ERROR_LEN);
        conn->failing = 1;

        ngx_http_nb_maint_redis_store_down(conn, ac->errstr);

        /* hiredis frees the context after this callback */
        conn->ac = NULL;
        conn->ready = 0;
        ngx_http_nb_maint_redis_schedule(conn);
    }
}


/* AUTH: a refusal names the user, never the password */

static void
ngx_http_nb_maint_redis_authed(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    u_char                           why[NB_STORE_ERROR_LEN], *p;
    ngx_http_nb_maint_redis_conn_t  *conn = op->conn;
    ngx_http_nb_maint_redis_conf_t  *rcf = conn->store->data;

    if (reply == NULL || reply->type != REDIS_REPLY_ERROR || conn->refused) {
        return;
    }

    conn->refused = 1;

    p = ngx_snprintf(why, sizeof(why) - 1,
                     "authentication as %s%V%s failed (check the user and "
                     "password in nb_maint_store): %s",
                     rcf->user.len ? "user \"" : "the default user",
                     &rcf->user, rcf->user.len ? "\"" : "", reply->str);
    *p = '\0';

    ngx_log_error(NGX_LOG_ERR, conn->log, 0,
                  "nb_maint: redis refused the %s connection: %s",
                  conn->name, why);

    ngx_http_nb_maint_redis_store_down(conn, (char *) why);

    if (conn->ac) {
        redisAsyncDisconnect(conn->ac);
    }
}


/* the answer to AUTH / SELECT / PING: the connection is usable */

static void
ngx_http_nb_maint_redis_ready(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    ngx_http_nb_maint_redis_conn_t  *conn = op->conn;
    ngx_http_nb_maint_redis_conf_t  *rcf = conn->store->data;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        if (conn->refused) {
            return;     /* the first refusal said why */
        }

        conn->refused = 1;

        ngx_log_error(NGX_LOG_ERR, conn->log, 0,
                      "nb_maint: redis refused the %s connection: %V",
                      conn->name,
                      ngx_http_nb_maint_redis_log_str(reply->str, reply->len));

        ngx_http_nb_maint_redis_store_down(conn, reply->str);

        if (conn->ac) {
            redisAsyncDisconnect(conn->ac);
        }

        return;
    }

    if (reply->type != REDIS_REPLY_STATUS
        || ngx_strcmp(reply->str, "PONG") != 0)
    {
        return;      /* OK of AUTH or SELECT: wait for the PONG */
    }

    conn->ready = 1;
    conn->failing = 0;
    conn->backoff = NB_REDIS_BACKOFF_MIN;

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "nb_maint: redis %s connection to %V ready", conn->name,
                  &rcf->url);

    if (conn->on_ready) {
        conn->on_ready(conn);
    }
}


/* ROLE on the server the sentinels named: it must be the primary */

static void
ngx_http_nb_maint_redis_role(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    u_char                           why[128], *p;
    ngx_http_nb_maint_redis_conn_t  *conn = op->conn;
    ngx_http_nb_maint_redis_conf_t  *rcf = conn->store->data;

    if (reply == NULL || conn->refused) {
        return;
    }

    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0
        && reply->element[0]->type == REDIS_REPLY_STRING
        && ngx_strcmp(reply->element[0]->str, "master") == 0)
    {
        return;
    }

    conn->refused = 1;

    p = ngx_snprintf(why, sizeof(why) - 1, "%s:%d is not the primary (yet), "
                     "asking the sentinels again", rcf->host, rcf->port);
    *p = '\0';

    ngx_log_error(NGX_LOG_WARN, conn->log, 0, "nb_maint: redis %s connection: "
                  "%s", conn->name, why);

    ngx_http_nb_maint_redis_store_down(conn, (char *) why);

    if (conn->ac) {
        redisAsyncDisconnect(conn->ac);
    }
}


void
ngx_http_nb_maint_redis_ignore(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, op->conn->log, 0, "nb_maint: redis: %V",
                      ngx_http_nb_maint_redis_log_str(reply->str, reply->len));
    }
}


/*
 * hiredis 0.14 allocates an array for whatever element count a reply
 * announces ("*400000000" asks for gigabytes, found by the redis fuzz
 * target).  Our replies hold at most the events list (5000 lines): a count
 * over the limit makes the reader fail (out of memory), and the connection
 * is dropped and made again like any broken one.
 */

#define NB_REDIS_MAX_ELEMENTS  65536

static redisReplyObjectFunctions  ngx_http_nb_maint_redis_fn;
static void *(*ngx_http_nb_maint_redis_array_default)(const redisReadTask *t,
    int elements);


static void *
ngx_http_nb_maint_redis_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || elements > NB_REDIS_MAX_ELEMENTS) {
        return NULL;
    }

    return ngx_http_nb_maint_redis_array_default(task, elements);
}


static void
ngx_http_nb_maint_redis_reader_limit(redisReader *rd)
{
    if (rd == NULL || rd->fn == NULL) {
        return;
    }

    if (ngx_http_nb_maint_redis_array_default == NULL) {
        ngx_http_nb_maint_redis_fn = *rd->fn;
        ngx_http_nb_maint_redis_array_default = rd->fn->createArray;
        ngx_http_nb_maint_redis_fn.createArray = ngx_http_nb_maint_redis_array;
    }

    rd->fn = &ngx_http_nb_maint_redis_fn;
}


/* a hiredis context on nginx's event loop */

ngx_int_t
ngx_http_nb_maint_redis_open(ngx_http_nb_maint_redis_conn_t *conn,
    u_char *host, int port)
{
    redisAsyncContext  *ac;
    ngx_connection_t   *c;

    ac = redisAsyncConnect((char *) host, port);

    if (ac == NULL || ac->err) {
        ngx_log_error(NGX_LOG_ERR, conn->log, 0,
                      "nb_maint: cannot connect to %s:%d: %s", host, port,
                      ac ? ac->errstr : "out of memory");
        if (ac) {
            ngx_http_nb_maint_redis_store_down(conn, ac->errstr);
            redisAsyncFree(ac);
        }

        ngx_http_nb_maint_redis_schedule(conn);
        return NGX_ERROR;
    }

    ngx_http_nb_maint_redis_reader_limit(ac->c.reader);

    c = ngx_get_connection(ac->c.fd, conn->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_nb_maint_redis_schedule(conn);
        return NGX_ERROR;
    }

    c->data = conn;
    c->read->handler = ngx_http_nb_maint_redis_ev_read;
    c->write->handler = ngx_http_nb_maint_redis_ev_write;
    c->read->log = conn->log;
    c->write->log = conn->log;
    c->log = conn->log;

    conn->c = c;
    conn->ac = ac;
    conn->ready = 0;
    conn->blocked_until = ngx_current_msec;

    ac->data = conn;
    ac->ev.data = conn;
    ac->ev.addRead = ngx_http_nb_maint_redis_add_read;
    ac->ev.delRead = ngx_http_nb_maint_redis_del_read;
    ac->ev.addWrite = ngx_http_nb_maint_redis_add_write;
    ac->ev.delWrite = ngx_http_nb_maint_redis_del_write;
    ac->ev.cleanup = ngx_http_nb_maint_redis_cleanup;

    (void) redisAsyncSetConnectCallback(ac, ngx_http_nb_maint_redis_on_connect);
    (void) redisAsyncSetDisconnectCallback(ac,
                                        ngx_http_nb_maint_redis_on_disconnect);

    conn->refused = 0;

    return NGX_OK;
}


void
ngx_http_nb_maint_redis_connect(ngx_http_nb_maint_redis_conn_t *conn)
{
    u_char                           db[NGX_INT_T_LEN];
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conf_t  *rcf = conn->store->data;

    if (rcf->sentinel && !conn->primary_ok) {
        /* every (re)connection asks the sentinels for the primary first */
        conn->awaiting = 1;
        ngx_http_nb_maint_redis_resolve(conn);
        return;
    }

    conn->primary_ok = 0;

    if (ngx_http_nb_maint_redis_open(conn, rcf->host, rcf->port) != NGX_OK) {
        return;
    }

    /* queued until connected: AUTH, SELECT, then a PING that says "ready" */

    conn->refused = 0;

    if (rcf->password.len) {
        op = ngx_http_nb_maint_redis_op(conn, ngx_http_nb_maint_redis_authed);
        if (op == NULL) {
            return;
        }

        a.n = 0;
        nb_arg_lit(&a, "AUTH");

        if (rcf->user.len) {
            nb_arg_str(&a, &rcf->user);
        }

        nb_arg_str(&a, &rcf->password);

        (void) ngx_http_nb_maint_redis_send(op, &a);
    }

    if (rcf->db > 0) {
        op = ngx_http_nb_maint_redis_op(conn, ngx_http_nb_maint_redis_ready);
        if (op == NULL) {
            return;
        }

        a.n = 0;
        nb_arg_lit(&a, "SELECT");
        nb_arg(&a, db, ngx_sprintf(db, "%i", rcf->db) - db);

        (void) ngx_http_nb_maint_redis_send(op, &a);
    }

    if (rcf->sentinel) {
        /* what the sentinels said, checked with the server itself */
        op = ngx_http_nb_maint_redis_op(conn, ngx_http_nb_maint_redis_role);
        if (op == NULL) {
            return;
        }

        a.n = 0;
        nb_arg_lit(&a, "ROLE");

        (void) ngx_http_nb_maint_redis_send(op, &a);
    }

    op = ngx_http_nb_maint_redis_op(conn, ngx_http_nb_maint_redis_ready);
    if (op == NULL) {
        return;
    }

    a.n = 0;
    nb_arg_lit(&a, "PING");

    (void) ngx_http_nb_maint_redis_send(op, &a);
}


/*
 * The worker exits (exit_process): the socket is closed now, so that no
 * "open socket left" alert follows; pending commands are dropped unanswered
 * (whatever waited for them is gone with the worker).
 */

void
ngx_http_nb_maint_redis_close(ngx_http_nb_maint_redis_conn_t *conn)
{
    redisAsyncContext  *ac;

    conn->wanted = 0;

    if (conn->retry.timer_set) {
        ngx_del_timer(&conn->retry);
    }

    ac = conn->ac;
    if (ac == NULL) {
        return;
    }

    conn->ac = NULL;
    conn->ready = 0;

    ngx_http_nb_maint_redis_closing = 1;
    redisAsyncFree(ac);
    ngx_http_nb_maint_redis_closing = 0;
}


void
ngx_http_nb_maint_redis_conn_init(ngx_http_nb_maint_redis_conn_t *conn,
    ngx_http_nb_maint_store_t *store, ngx_log_t *log, const char *name,
    ngx_uint_t subscriber)
{
    ngx_memzero(conn, sizeof(ngx_http_nb_maint_redis_conn_t));

    conn->store = store;
    conn->log = log;
    conn->name = name;
    conn->subscriber = subscriber;
    conn->backoff = NB_REDIS_BACKOFF_MIN;

    conn->retry.handler = ngx_http_nb_maint_redis_retry;
    conn->retry.data = conn;
    conn->retry.log = log;
    conn->retry.cancelable = 1;
}
