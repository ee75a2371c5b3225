/*
 * nb_maint: what the redis store's files share (SPEC section 8); included
 * by them only, never by the rest of the module.
 *
 *   store_redis.c           configuration and life cycle (top: calls all)
 *   store_redis_write.c     writes: the CAS script and WAIT
 *   store_redis_gate.c      the cluster-wide restore gate (SPEC 10a)
 *   store_redis_cmd.c       reads, pub/sub, periodic re-read, re-publish,
 *                           cluster-wide in-flight counts
 *   store_redis_sentinel.c  finding and following the primary
 *   store_redis_resolve.c   host names the sentinels answer, resolved
 *   store_redis_conn.c      hiredis async on nginx events (bottom)
 *   store_cache.c           the local cache file (below the redis files)
 */

#ifndef _NGX_HTTP_NB_MAINT_STORE_REDIS_H_INCLUDED_
#define _NGX_HTTP_NB_MAINT_STORE_REDIS_H_INCLUDED_


#include "ngx_http_nb_maint.h"
#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#define NB_REDIS_TIMEOUT       2000
#define NB_REDIS_BACKOFF_MIN   250
#define NB_REDIS_BACKOFF_MAX   5000
#define NB_REDIS_EVENTS_KEEP   "-5000"
#define NB_REDIS_EVENTS_READ   "-1000"
#define NB_SENTINELS_MAX       8
#define NB_SENTINEL_BACKOFF    1000
#define NB_REDIS_ERROR_LEN     128
#define NB_PRIMARY_LEN         (NGX_SOCKADDR_STRLEN + 8)
#define NB_GATE_TTL            5000   /* ms: a checking gateway's word */


typedef struct {
    u_char                         host[NGX_SOCKADDR_STRLEN];
    int                            port;
    ngx_str_t                      user;
    ngx_str_t                      password;
    ngx_int_t                      db;
    ngx_str_t                      url;          /* without the password */
    ngx_str_t                      key_version;
    ngx_str_t                      key_state;
    ngx_str_t                      key_events;
    ngx_str_t                      key_secret;
    ngx_str_t                      channel;
    ngx_str_t                      key_gateways;
    ngx_str_t                      key_active;   /* "P:active:" */
    ngx_str_t                      key_failover; /* the last recorded */
    ngx_str_t                      key_checkers; /* restore gate: names */
    ngx_str_t                      key_checker;  /* "P:checker:" + name */
    ngx_str_t                      gateway;      /* this one: host:pid */

    /* redis-sentinel:// */
    ngx_uint_t                     sentinel;
    ngx_uint_t                     nsentinels;
    u_char                         sentinel_host[NB_SENTINELS_MAX]
                                                [NGX_SOCKADDR_STRLEN];
    int                            sentinel_port[NB_SENTINELS_MAX];
    ngx_str_t                      master_name;
    ngx_str_t                      sentinel_password;
    ngx_uint_t                     known;        /* host:port found */

    ngx_http_core_loc_conf_t      *clcf;         /* http{}: its resolver */

    /* WAIT after every write (issue 12) */
    ngx_uint_t                     min_replicas;
    ngx_msec_t                     wait_ms;
} ngx_http_nb_maint_redis_conf_t;


typedef struct ngx_http_nb_maint_redis_conn_s  ngx_http_nb_maint_redis_conn_t;

typedef void (*ngx_http_nb_maint_redis_conn_pt)(
    ngx_http_nb_maint_redis_conn_t *conn);

struct ngx_http_nb_maint_redis_conn_s {
    redisAsyncContext             *ac;
    ngx_connection_t              *c;
    ngx_event_t                    retry;
    ngx_msec_t                     backoff;
    ngx_uint_t                     ready;
    ngx_uint_t                     wanted;
    ngx_uint_t                     subscriber;
    ngx_uint_t                     refused;     /* said why already */
    ngx_uint_t                     sentinel;    /* 1: asks a sentinel */
    ngx_uint_t                     awaiting;    /* the primary's address */
    ngx_uint_t                     primary_ok;  /* found for this connect */
    ngx_http_nb_maint_redis_conn_pt  on_ready;  /* usable now */
    ngx_uint_t                     quiet;       /* repeated failures: info */
    ngx_uint_t                     failing;     /* ... said once already */
    u_char                         error[NB_REDIS_ERROR_LEN]; /* last one */
    ngx_msec_t                     blocked_until; /* WAITs queued end */
    ngx_http_nb_maint_store_t     *store;
    ngx_log_t                     *log;
    const char                    *name;
};


typedef struct ngx_http_nb_maint_redis_op_s  ngx_http_nb_maint_redis_op_t;

typedef void (*ngx_http_nb_maint_redis_reply_pt)(
    ngx_http_nb_maint_redis_op_t *op, redisReply *reply);

struct ngx_http_nb_maint_redis_op_s {
    ngx_event_t                       timer;
    ngx_http_nb_maint_redis_conn_t   *conn;
    ngx_http_nb_maint_redis_reply_pt  handler;
    ngx_http_nb_maint_store_done_pt   done;
    void                             *data;
    ngx_uint_t                        finished;
    ngx_uint_t                        once;       /* no WAIT: internal */
    uint64_t                          expected;
    ngx_http_nb_maint_state_t         st;
    ngx_str_t                         event;      /* malloc'ed */
};


/* a command's arguments; hiredis copies them when the command is queued */
#define NB_REDIS_ARGS  24

typedef struct {
    int                               n;
    const char                       *v[NB_REDIS_ARGS];
    size_t                            len[NB_REDIS_ARGS];
} ngx_http_nb_maint_redis_args_t;

#define nb_arg(a, s, l)                                                       \
    (a)->v[(a)->n] = (const char *) (s); (a)->len[(a)->n++] = (l)
#define nb_arg_lit(a, lit)   nb_arg(a, lit, sizeof(lit) - 1)
#define nb_arg_str(a, str)   nb_arg(a, (str)->data, (str)->len)



/* store_redis_conn.c: connections and commands */

extern ngx_http_nb_maint_redis_conn_t  ngx_http_nb_maint_redis_cmd;
extern ngx_http_nb_maint_redis_conn_t  ngx_http_nb_maint_redis_sub;
extern ngx_http_nb_maint_redis_conn_t  ngx_http_nb_maint_redis_sen;
extern ngx_http_nb_maint_redis_conn_pt ngx_http_nb_maint_redis_resolve;

ngx_str_t *ngx_http_nb_maint_redis_log_str(const char *s, size_t len);
void ngx_http_nb_maint_redis_conn_init(ngx_http_nb_maint_redis_conn_t *conn,
    ngx_http_nb_maint_store_t *store, ngx_log_t *log, const char *name,
    ngx_uint_t subscriber);
ngx_int_t ngx_http_nb_maint_redis_open(ngx_http_nb_maint_redis_conn_t *conn,
    u_char *host, int port);
void ngx_http_nb_maint_redis_connect(ngx_http_nb_maint_redis_conn_t *conn);
void ngx_http_nb_maint_redis_close(ngx_http_nb_maint_redis_conn_t *conn);
void ngx_http_nb_maint_redis_schedule(ngx_http_nb_maint_redis_conn_t *conn);
void ngx_http_nb_maint_redis_store_down(ngx_http_nb_maint_redis_conn_t *conn,
    const char *why);
ngx_http_nb_maint_redis_op_t *ngx_http_nb_maint_redis_op(
    ngx_http_nb_maint_redis_conn_t *conn,
    ngx_http_nb_maint_redis_reply_pt handler);
ngx_int_t ngx_http_nb_maint_redis_send(ngx_http_nb_maint_redis_op_t *op,
    ngx_http_nb_maint_redis_args_t *a);
ngx_int_t ngx_http_nb_maint_redis_send_argv(ngx_http_nb_maint_redis_op_t *op,
    int argc, const char **argv, const size_t *argvlen);
void ngx_http_nb_maint_redis_ignore(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply);
void ngx_http_nb_maint_redis_blocking(ngx_http_nb_maint_redis_conn_t *conn,
    ngx_msec_t ms);

#define NB_REDIS_PERM_SUBSCRIBE  1     /* the subscriber's SUBSCRIBE */
#define NB_REDIS_PERM_SCRIPT     2     /* EVAL, or a command in a script */
#define NB_REDIS_PERM_OTHER      4     /* the re-read */

ngx_uint_t ngx_http_nb_maint_redis_is_noperm(const char *s, size_t len);
void ngx_http_nb_maint_redis_noperm(ngx_http_nb_maint_redis_conn_t *conn,
    ngx_uint_t what, const char *s, size_t len);
void ngx_http_nb_maint_redis_perm_ok(ngx_uint_t what);
ngx_uint_t ngx_http_nb_maint_redis_perm_refused(void);

/* store_redis_resolve.c */
typedef void (*ngx_http_nb_maint_redis_named_pt)(
    ngx_http_nb_maint_store_t *store, ngx_int_t rc);

ngx_uint_t ngx_http_nb_maint_redis_numeric(u_char *host, size_t len);
u_char *ngx_http_nb_maint_redis_name_error(void);
ngx_int_t ngx_http_nb_maint_redis_name(ngx_http_nb_maint_store_t *store,
    u_char *host, size_t len, int port,
    ngx_http_nb_maint_redis_named_pt named);
void ngx_http_nb_maint_redis_name_cancel(void);

/* store_redis_sentinel.c */
void ngx_http_nb_maint_sentinel_init_process(ngx_http_nb_maint_store_t *store,
    ngx_cycle_t *cycle);
void ngx_http_nb_maint_sentinel_exit_process(
    ngx_http_nb_maint_store_t *store);
void ngx_http_nb_maint_sentinel_ask(ngx_http_nb_maint_redis_conn_t *conn);
ngx_int_t ngx_http_nb_maint_redis_primary(ngx_http_nb_maint_redis_conf_t *rcf,
    ngx_log_t *log, u_char *old, size_t *old_len);
void ngx_http_nb_maint_sentinel_tick(ngx_http_nb_maint_store_t *store,
    ngx_uint_t owner);

/* store_redis_cmd.c */
ngx_int_t ngx_http_nb_maint_redis_parse_state(ngx_http_nb_maint_store_t *store,
    const char *s, size_t len, ngx_http_nb_maint_state_t *st,
    ngx_log_t *log);
void ngx_http_nb_maint_redis_fetch_events(ngx_http_nb_maint_store_t *store);
void ngx_http_nb_maint_redis_fetch_stale_events(
    ngx_http_nb_maint_store_t *store);
void ngx_http_nb_maint_redis_subscribe(ngx_http_nb_maint_redis_conn_t *conn);
void ngx_http_nb_maint_redis_sync(ngx_http_nb_maint_store_t *store);
void ngx_http_nb_maint_redis_active(ngx_http_nb_maint_store_t *store);

/* store_redis_gate.c */
ngx_int_t ngx_http_nb_maint_redis_gate_init(ngx_http_nb_maint_store_t *store,
    ngx_cycle_t *cycle);
void ngx_http_nb_maint_redis_verdict(ngx_http_nb_maint_store_t *store,
    ngx_uint_t checking, ngx_msec_t restore_started, ngx_uint_t pending);
void ngx_http_nb_maint_redis_awaited(redisReply **names, size_t n,
    ngx_int_t checkers);
void ngx_http_nb_maint_redis_gate_tick(ngx_http_nb_maint_store_t *store);

/* store_redis_write.c */
ngx_int_t ngx_http_nb_maint_redis_save(ngx_http_nb_maint_store_t *store,
    uint64_t expected, ngx_http_nb_maint_state_t *st, ngx_str_t *event,
    ngx_log_t *log, ngx_http_nb_maint_store_done_pt done, void *data);
void ngx_http_nb_maint_redis_failover_note(ngx_http_nb_maint_store_t *store,
    u_char *from, size_t from_len, u_char *to, size_t to_len);
void ngx_http_nb_maint_redis_failover_try(ngx_http_nb_maint_store_t *store);
void ngx_http_nb_maint_redis_failover_synced(
    ngx_http_nb_maint_store_t *store);
void ngx_http_nb_maint_redis_probe_script(ngx_http_nb_maint_store_t *store);
ngx_int_t ngx_http_nb_maint_redis_resync(ngx_http_nb_maint_store_t *store,
    uint64_t v, const char *s, size_t len, ngx_log_t *log);

/* store_cache.c */
char *ngx_http_nb_maint_cache_init(ngx_conf_t *cf,
    ngx_http_nb_maint_store_t *store, ngx_str_t *path);
void ngx_http_nb_maint_cache_load(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, ngx_slab_pool_t *shpool, ngx_log_t *log);
ngx_int_t ngx_http_nb_maint_cache_init_process(
    ngx_http_nb_maint_store_t *store, ngx_cycle_t *cycle);
void ngx_http_nb_maint_cache_update(ngx_http_nb_maint_store_t *store);


#endif /* _NGX_HTTP_NB_MAINT_STORE_REDIS_H_INCLUDED_ */
