/*
 * nb_maint: NocoBase cluster maintenance for nginx.
 * Shared types and the functions the module's files offer each other.
 */

#ifndef _NGX_HTTP_NB_MAINT_H_INCLUDED_
#define _NGX_HTTP_NB_MAINT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>

#include "ngx_http_nb_maint_compat.h"


#define NB_MODE_NORMAL          0
#define NB_MODE_MAINTENANCE     1
#define NB_MODE_UPGRADE         2
#define NB_MODE_RESTORING       3
#define NB_MODE_NONE            4      /* restoring_from when not restoring */

#define NB_NODE_ID_LEN          128    /* "unix:" + a 107-byte path */
#define NB_REASON_LEN           512
#define NB_EVENTS_MAX           1024
#define NB_EVENTS_MIN           1000    /* the zone must hold this many */
#define NB_EVENT_RESERVE        1024    /* bytes per event, slab-rounded */
#define NB_BODY_MAX             65536
#define NB_RETRY_AFTER_DEFAULT  300
#define NB_RETRY_AFTER_MAX      86400
#define NB_STORE_ERROR_LEN      256
#define NB_MAX_NODES            1024
#define NB_SECRET_LEN           32
#define NB_VERSION_MAX          ((uint64_t) 0x7fffffffffffffffLL)
#define NB_DRAIN_OTHER_LEN      2048   /* drained ids of unknown nodes */
#define NB_APP_COMMAND_LEN      30     /* command.name, e.g. pm.enable */
#define NB_WS_DRAIN_GRACE       5000
#define NB_WS_SEND_TIMEOUT      60000   /* gated /ws: nginx's send_timeout */
#define NB_WS_IDLE_TIMEOUT      60000   /* ... nothing heard from the client */
#define NB_WS_PING_INTERVAL     30000   /* ... a server ping when quiet */
#define NB_CHECK_BUCKETS        10     /* check latency: 5ms .. 5s, +Inf */
#define NB_CHECK_BOUNDS_MS      { 5, 10, 25, 50, 100, 250, 500, 1000,        \
                                  2500, 5000 }
#define NB_DNS_UPSTREAMS        8      /* upstreams with nb_maint_resolve */
#define NB_DNS_SLOTS            64     /* max= of nb_maint_resolve */
#define NB_DNS_ERROR_LEN        64
#define NB_OUTAGE_UPSTREAMS     64     /* upstreams with their own
                                          "no node available" flag; the
                                          rest share the last one */


/* the cluster state of SPEC section 3: a plain value, copied around */
typedef struct {
    uint64_t                    version;
    ngx_uint_t                  mode;
    ngx_uint_t                  restoring_from;
    time_t                      since;
    ngx_uint_t                  retry_after;
    ngx_msec_t                  restore_started;  /* ngx_time ms, for checks */
    ngx_uint_t                  restore_expect;   /* POST restore "expect":
                                                     DNS members awaited,
                                                     0: nb_maint_resolve's */
    size_t                      node_len;
    size_t                      reason_len;
    u_char                      node[NB_NODE_ID_LEN];
    u_char                      reason[NB_REASON_LEN];
    u_char                      drain[NB_MAX_NODES / 8];  /* by node index */
    /* drained nodes this gateway does not know: kept in the store as they
     * are, ids separated by '\n' (SPEC section 3) */
    size_t                      drain_other_len;
    u_char                      drain_other[NB_DRAIN_OTHER_LEN];
} ngx_http_nb_maint_state_t;

#define nb_active(n)       ((n)->active + (n)->active_remote)
#define nb_drained(st, i)  ((st)->drain[(i) / 8] & (1 << ((i) % 8)))


/* one upstream peer as seen by nb_maint (health, drain, in-flight) */
typedef struct {
    u_char                      id[NB_NODE_ID_LEN];
    size_t                      id_len;
    ngx_atomic_t                active;      /* in flight here */
    ngx_atomic_t                requests;    /* tries sent here, counter */
    ngx_atomic_t                active_remote;  /* on other gateways */
    ngx_atomic_t                health;      /* NB_HEALTH_* */
    ngx_uint_t                  rise_count;  /* consecutive passes */
    ngx_uint_t                  fall_count;  /* consecutive failures */
    ngx_msec_t                  last_check;  /* ms since epoch, 0: never */
    ngx_msec_t                  last_pass;   /* start of the last passed one */
    ngx_msec_t                  restore_mark;    /* restore being counted */
    ngx_uint_t                  restore_passes;  /* passes since then */
    ngx_atomic_t                websockets;  /* open proxied WebSockets */
    ngx_msec_t                  app_since;   /* commanding since (ms) */
    u_char                      app_code;    /* NB_APP_*, when commanding */
    u_char                      app_command_len;
    u_char                      app_command[NB_APP_COMMAND_LEN];
    ngx_uint_t                  gen_first;   /* generations using it: */
    ngx_uint_t                  gen_last;    /* within [first, last] */
    u_char                      dns;         /* added for a DNS answer */
    u_char                      leaving;     /* gone from the DNS answer */
    ngx_msec_t                  joined;      /* first in a DNS answer, ms */

    /* metrics, zeroed with the entry (a reused entry starts afresh) */
    ngx_atomic_t                failures;    /* tries nginx counted failed */
    ngx_atomic_t                check_ms;    /* last check's latency */
    ngx_atomic_t                check_sum_ms;
    ngx_atomic_t                check_count;     /* 0: never checked */
    ngx_atomic_t                check_bucket[NB_CHECK_BUCKETS + 1];
} ngx_http_nb_maint_node_t;

/* the NocoBase codes of a node that is alive but busy (SPEC section 3) */
#define NB_APP_COMMANDING       1
#define NB_APP_PREPARING        2
#define NB_APP_INITIALIZING     3

#define NB_HEALTH_UNKNOWN       0
#define NB_HEALTH_UP            1
#define NB_HEALTH_DOWN          2
#define NB_HEALTH_COMMANDING    3      /* alive, running a NocoBase command */

/* node_down[] values: what the balancer may do with a node */
#define NB_NODE_OK              0
#define NB_NODE_DOWN            1
#define NB_NODE_BUSY            2      /* commanding: designated node only */

/* ngx_http_nb_maint_node_use(): what a request may do with a node */
#define NB_USE_OK               0      /* may be chosen */
#define NB_USE_OTHER            1      /* not the designated node */
#define NB_USE_DOWN             2      /* health down */
#define NB_USE_BUSY             3      /* commanding, not designated */
#define NB_USE_DRAIN            4      /* drained */


/* requests by outcome (metrics), one row per worker: no shared counter */
#define NB_OUT_PROXIED          0       /* sent to an allowed node */
#define NB_OUT_BYPASS           1       /* ... of those, bypass requests */
#define NB_OUT_GATED            2       /* 503 page of the mode */
#define NB_OUT_NO_NODE          3       /* 503, no allowed node */
#define NB_OUT_PASSED           4       /* nb_maint_pass while gated */
#define NB_OUT_N                5
#define NB_WORKER_ROWS          64

/* a worker process, for the generations that may still run */
#define NB_WORKER_SLOTS         256

typedef struct {
    ngx_atomic_t                pid;         /* 0: free */
    uint64_t                    start;       /* /proc start time, 0: none */
    ngx_uint_t                  gen;
} ngx_http_nb_maint_worker_t;

/* a member of an nb_maint_resolve upstream: slot k is peer k */
#define NB_SLOT_EMPTY           0
#define NB_SLOT_ACTIVE          1
#define NB_SLOT_LEAVING         2      /* gone from DNS, finishing */

typedef struct {
    ngx_int_t                   node;        /* node index, -1: empty */
    ngx_uint_t                  state;       /* NB_SLOT_* */
    ngx_msec_t                  since;       /* leaving since, ms */
    socklen_t                   socklen;
    ngx_sockaddr_t              addr;
} ngx_http_nb_maint_slot_t;

/* the members of one nb_maint_resolve upstream, written by the owner */
typedef struct {
    ngx_atomic_t                seq;         /* odd while being written */
    size_t                      name_len;    /* the upstream; 0: free */
    u_char                      name[NB_NODE_ID_LEN];
    ngx_uint_t                  nslots;
    ngx_http_nb_maint_slot_t    slot[NB_DNS_SLOTS];

    /* the resolver, as status and metrics show it */
    ngx_msec_t                  last_try;    /* ms since epoch */
    ngx_msec_t                  last_ok;     /* last usable answer */
    ngx_uint_t                  ok;          /* the last query answered */
    ngx_uint_t                  naddrs;      /* in the last good answer */
    ngx_uint_t                  overflow;    /* addresses beyond max= */
    ngx_atomic_t                failures;    /* counters */
    ngx_atomic_t                changes;
    size_t                      error_len;
    u_char                      error[NB_DNS_ERROR_LEN];
} ngx_http_nb_maint_dns_sh_t;


/* the owner claim: one word, (generation << 32) | pid; where the atomic
 * word has 32 bits, (generation mod 1024) << 22 | pid (pids < 2^22) */
#if (NGX_PTR_SIZE == 8)
#define NB_OWNER_PID_BITS       32
#else
#define NB_OWNER_PID_BITS       22
#endif
#define NB_OWNER_PID_MASK                                                    \
    (((ngx_atomic_uint_t) 1 << NB_OWNER_PID_BITS) - 1)
#define nb_owner_word(gen, pid)                                              \
    (((ngx_atomic_uint_t) (gen) << NB_OWNER_PID_BITS)                         \
     | ((ngx_atomic_uint_t) (pid) & NB_OWNER_PID_MASK))
#define nb_owner_pid(w)   ((ngx_pid_t) ((w) & NB_OWNER_PID_MASK))
#define nb_owner_gen(w)   ((ngx_uint_t) ((w) >> NB_OWNER_PID_BITS))


#define nb_count(sh, what)                                                    \
    (sh)->counters[ngx_worker % NB_WORKER_ROWS][what]++


#define NB_STORE_BAD_VERSION    1       /* the file's version is corrupt */
#define NB_STORE_NOT_OURS       2       /* another gateway has the file */


typedef struct {
    ngx_atomic_t                pub;         /* seqlock over what follows:
                                                odd while a writer, holding
                                                write_lock, publishes */
    ngx_atomic_t                seq;         /* == state.version, lock-free */
    ngx_shmtx_sh_t              write_mtx;   /* serializes state writers */
    ngx_shmtx_t                 write_lock;  /* in shm: its semaphore too */
    ngx_atomic_t                writer;      /* pid writing the file store */
    uint64_t                    writing;     /* ... this version */
    ngx_atomic_t                owner;       /* nb_owner_word() or 0 */
    ngx_atomic_t                owner_beat;  /* the owner's heartbeat, ms */
    ngx_uint_t                  generation;  /* +1 on every committed load */

    ngx_http_nb_maint_state_t   state;
    ngx_int_t                   designated;  /* node index of state.node,
                                                -1: none; with the state */

    ngx_uint_t                  store_ok;
    ngx_uint_t                  store_readonly;  /* NB_STORE_*: refuse */
    ngx_uint_t                  store_probe;     /* error from a probe */
    size_t                      store_error_len;
    u_char                      store_error[NB_STORE_ERROR_LEN];

    u_char                      secret[NB_SECRET_LEN];
    ngx_uint_t                  secret_set;

    /* redis: the primary in use, failovers seen, sentinels reachable */
    u_char                      store_primary[NGX_SOCKADDR_STRLEN + 8];
    size_t                      store_primary_len;
    time_t                      store_last_failover;
    ngx_uint_t                  store_sentinel;       /* 1: sentinel store */
    ngx_uint_t                  store_sentinels_ok;
    ngx_uint_t                  store_replicas_wanted;
    ngx_int_t                   store_replicas_acked; /* last write, -1 */
    ngx_uint_t                  store_failovers;      /* primary changes */
    ngx_uint_t                  store_perm;           /* NOPERM seen: bits */
    ngx_uint_t                  store_sentinels_up;   /* reachable now */
    ngx_uint_t                  store_sentinels_n;    /* configured */
    size_t                      store_warning_len;    /* degraded, yet ok */
    u_char                      store_warning[NB_STORE_ERROR_LEN];

    /* the restore gate: the other checking gateways still awaited (ids,
     * space-separated), as the redis store last saw them */
    size_t                      restore_awaited_len;
    u_char                      restore_awaited[NB_STORE_ERROR_LEN];
    ngx_uint_t                  restore_checkers;  /* other live ones */

    ngx_uint_t                  ev_next;     /* ring position to write */
    ngx_uint_t                  ev_count;
    ngx_str_t                   events[NB_EVENTS_MAX];  /* slab-allocated */

    ngx_uint_t                  counters[NB_WORKER_ROWS][NB_OUT_N];

    /* health == down, one byte a node: the balancer's loop reads these
     * few cache lines instead of every node entry */
    u_char                      node_down[NB_MAX_NODES];

    ngx_http_nb_maint_worker_t  workers[NB_WORKER_SLOTS];

    /* the master's worker children when the running generation was
     * committed: any other child was forked from that generation */
    ngx_pid_t                   commit_pids[NB_WORKER_SLOTS];
    ngx_uint_t                  ncommit_pids;

    /* DNS members (nb_maint_resolve); nodes_seq moves when a node entry
     * appears or goes at run time (snapshots re-read the designated node) */
    ngx_atomic_t                nodes_lock;  /* pid adding/freeing entries */
    ngx_atomic_t                nodes_seq;
    ngx_http_nb_maint_dns_sh_t  dns[NB_DNS_UPSTREAMS];

    /* by upstream index: since when it has had no node a request may
     * use (seconds), 0: it has one; begin and end are logged once
     * (balancer.c) */
    ngx_atomic_t                outage[NB_OUTAGE_UPSTREAMS];

    ngx_uint_t                  nnodes;
    ngx_http_nb_maint_node_t    nodes[1];    /* nnodes entries */
} ngx_http_nb_maint_shm_t;


typedef struct {
    ngx_str_t                   name;        /* token name, for the audit */
    u_char                      digest[32];  /* SHA-256 of the token */
} ngx_http_nb_maint_token_t;


typedef struct ngx_http_nb_maint_store_s  ngx_http_nb_maint_store_t;

/* rc: NGX_OK stored and published, NGX_DECLINED version conflict,
 * NGX_ERROR the store is unavailable */
typedef void (*ngx_http_nb_maint_store_done_pt)(void *data, ngx_int_t rc);

struct ngx_http_nb_maint_store_s {
    ngx_str_t                   type;        /* "file" or "redis" */
    ngx_str_t                   path;        /* state file (redis: cache) */
    ngx_str_t                   events_path;
    ngx_cycle_t                *cycle;       /* configured in (worker user) */
    void                       *data;        /* the store's own */

    /* in the master at zone creation: fills sh and store_ok */
    void                      (*load)(ngx_http_nb_maint_store_t *store,
                                      ngx_http_nb_maint_shm_t *sh,
                                      ngx_slab_pool_t *shpool, ngx_log_t *log);

    /*
     * Compare-and-save: stores st (with its audit line) only if the stored
     * version is still "expected", then publishes it to shared memory.
     * Returns the result, or NGX_AGAIN and calls done(data, rc) later.
     */
    ngx_int_t                 (*save)(ngx_http_nb_maint_store_t *store,
                                      uint64_t expected,
                                      ngx_http_nb_maint_state_t *st,
                                      ngx_str_t *event, ngx_log_t *log,
                                      ngx_http_nb_maint_store_done_pt done,
                                      void *data);

    /* every worker at start; the owner worker every tick */
    ngx_int_t                 (*init_process)(ngx_http_nb_maint_store_t *store,
                                              ngx_cycle_t *cycle);
    void                      (*tick)(ngx_http_nb_maint_store_t *store,
                                      ngx_uint_t owner, ngx_log_t *log);

    /* every worker at its exit: sockets closed, nothing answered any more */
    void                      (*exit_process)(ngx_http_nb_maint_store_t *store,
                                              ngx_cycle_t *cycle);

    /*
     * The cluster-wide restore gate (SPEC section 10a); NULL where this
     * gateway is the only one (file store).  The owner gives the store its
     * word on the restore every tick: whether it checks nodes at all, the
     * restore it sees (restore_started, 0: none) and how many of its nodes
     * are still pending.
     */
    void                      (*verdict)(ngx_http_nb_maint_store_t *store,
                                         ngx_uint_t checking,
                                         ngx_msec_t restore_started,
                                         ngx_uint_t pending);

    /* set only around the save that ends a restore by itself: the restore
     * every checking gateway must have agreed to end; a store shared with
     * other gateways answers NGX_BUSY while one of them is still awaited */
    ngx_msec_t                  gate;
};


/* nb_maint_check parameters */
typedef struct {
    ngx_msec_t                  interval;
    ngx_msec_t                  timeout;
    ngx_uint_t                  rise;
    ngx_uint_t                  fall;
    ngx_str_t                   uri;
    ngx_uint_t                  status;
    ngx_regex_t                *body;
    ngx_uint_t                  set;         /* checks run */
    ngx_uint_t                  off;         /* nb_maint_check off */
} ngx_http_nb_maint_check_conf_t;


/* nb_maint_resolve name:port max=N expect=N interval=T */
typedef struct {
    ngx_str_t                   host;        /* the name, as configured */
    ngx_str_t                   name;        /* name:port, for status */
    in_port_t                   port;
    ngx_uint_t                  max;
    ngx_uint_t                  expect;
    ngx_msec_t                  interval;
    ngx_resolver_t             *resolver;
    ngx_msec_t                  resolver_timeout;
    ngx_int_t                   table;       /* in sh->dns, -1: none */

    /* per worker: the table version applied, peer k and its node */
    ngx_atomic_uint_t           seen;
    ngx_uint_t                  busy;        /* owner: a query under way */
    ngx_uint_t                  undraining;  /* owner: an undrain write */
    ngx_http_upstream_rr_peer_t **peers;
    ngx_int_t                  *slot_node;
    ngx_sockaddr_t             *addrs;       /* peer k's sockaddr */
    u_char                     *names;       /* peer k's name, NB_NODE_ID_LEN */
} ngx_http_nb_maint_dns_conf_t;


/* an upstream { nb_maint; } */
typedef struct {
    ngx_uint_t                  enabled;
    ngx_uint_t                  initialized;
    ngx_http_upstream_srv_conf_t  *uscf;
    ngx_http_nb_maint_check_conf_t check;
    ngx_uint_t                  nnodes;
    ngx_uint_t                 *nodes;       /* shm node index per peer */
    ngx_uint_t                 *down;        /* "down" in the config */
    ngx_http_nb_maint_dns_conf_t  *dns;      /* nb_maint_resolve, or NULL */
    ngx_uint_t                  index;       /* in the main conf's list */
} ngx_http_nb_maint_srv_conf_t;


typedef struct {
    ngx_shm_zone_t             *shm_zone;
    ngx_http_nb_maint_store_t   store;
    ngx_array_t                 upstreams;   /* ngx_http_nb_maint_srv_conf_t * */
    u_char                      secret[NB_SECRET_LEN];
    ngx_uint_t                  secret_set;  /* from nb_maint_secret */
    ngx_msec_t                  ws_drain_grace;
} ngx_http_nb_maint_main_conf_t;


typedef struct {
    ngx_flag_t                  gate;
    ngx_flag_t                  admin;
    ngx_array_t                *bypass_allow;    /* ngx_cidr_t */
    ngx_array_t                *pass;            /* ngx_regex_t * */
    ngx_uint_t                  pass_off;        /* nb_maint_pass off */
    ngx_array_t                *tokens;          /* token_t */
    ngx_str_t                   page;            /* template, "" = builtin */
    ngx_str_t                   ws_path;         /* NocoBase's /ws */
    ngx_str_t                   api_prefix;      /* NocoBase's /api/ */
    ngx_msec_t                  ws_send_timeout;
    ngx_msec_t                  ws_idle_timeout;
    ngx_msec_t                  ws_ping_interval;
} ngx_http_nb_maint_loc_conf_t;


/* per request */
typedef struct {
    ngx_uint_t                  bypass;      /* 0 unknown, 1 public, 2 bypass */
    ngx_uint_t                  no_node;     /* balancer found no node */
    ngx_uint_t                  page_mode;   /* mode for the 503 page */
    time_t                      outage;      /* no node since (balancer) */
    ngx_int_t                   node;        /* node index in use, -1 */
    ngx_chain_t                *page;        /* 503 body replacing a 502 */
    ngx_uint_t                  ws;          /* an upgraded proxied one */
    void                       *wsock;       /* answered by the gateway */
} ngx_http_nb_maint_ctx_t;


extern ngx_module_t  ngx_http_nb_maint_module;


/* state: shm zone, snapshots, changes, events */
ngx_http_nb_maint_shm_t *ngx_http_nb_maint_state_zone_create(
    ngx_shm_zone_t *shm_zone);
ngx_slab_pool_t *ngx_http_nb_maint_state_use(ngx_slab_pool_t *shpool);
ngx_int_t ngx_http_nb_maint_state_init_module(ngx_cycle_t *cycle,
    ngx_http_nb_maint_main_conf_t *nmcf);
ngx_http_nb_maint_shm_t *ngx_http_nb_maint_shm(void);
ngx_int_t ngx_http_nb_maint_designated(void);
void ngx_http_nb_maint_commit_pids(ngx_http_nb_maint_shm_t *sh);
uint64_t ngx_http_nb_maint_proc_start(ngx_pid_t pid);
ngx_uint_t ngx_http_nb_maint_worker_alive(ngx_http_nb_maint_worker_t *w);
ngx_int_t ngx_http_nb_maint_worker_register(ngx_cycle_t *cycle);
ngx_int_t ngx_http_nb_maint_live_gens(ngx_http_nb_maint_shm_t *sh,
    ngx_uint_t newest, ngx_uint_t *gens, ngx_uint_t max);
void ngx_http_nb_maint_worker_unregister(void);
ngx_http_nb_maint_state_t *ngx_http_nb_maint_snapshot(void);
void ngx_http_nb_maint_state_lock_write(void);
void ngx_http_nb_maint_state_unlock_write(void);
void ngx_http_nb_maint_publish_use(ngx_slab_pool_t *shpool);
void ngx_http_nb_maint_publish_begin(ngx_http_nb_maint_shm_t *sh);
void ngx_http_nb_maint_publish_end(ngx_http_nb_maint_shm_t *sh);
ngx_uint_t ngx_http_nb_maint_holder_alive(ngx_pid_t pid);
void ngx_http_nb_maint_publish_lock(void);
void ngx_http_nb_maint_publish_unlock(void);
ngx_atomic_uint_t ngx_http_nb_maint_read_begin(void);
ngx_uint_t ngx_http_nb_maint_read_retry(ngx_atomic_uint_t v);
void ngx_http_nb_maint_shm_read(void *dst, void *src, size_t len);
ngx_int_t ngx_http_nb_maint_events_copy(ngx_str_t **events, ngx_uint_t *n,
    uint64_t *mark, ngx_log_t *log);
void ngx_http_nb_maint_events_free(ngx_str_t *events);
void ngx_http_nb_maint_ring_mark(uint64_t *mark);
void ngx_http_nb_maint_state_commit(ngx_http_nb_maint_state_t *st,
    ngx_str_t *event);
size_t ngx_http_nb_maint_zone_min_size(void);
ngx_int_t ngx_http_nb_maint_events_add(ngx_http_nb_maint_shm_t *sh,
    ngx_slab_pool_t *shpool, u_char *data, size_t len);
void ngx_http_nb_maint_ring_replace(ngx_http_nb_maint_shm_t *sh,
    ngx_slab_pool_t *shpool, ngx_str_t *events, ngx_uint_t n,
    ngx_str_t *keep);
uint64_t ngx_http_nb_maint_event_version(ngx_str_t *ev);
void ngx_http_nb_maint_set_store_status(ngx_uint_t ok, const char *fmt, ...);
void ngx_http_nb_maint_secret_publish(u_char *key);
void ngx_http_nb_maint_secret_copy(u_char *out);
ngx_uint_t ngx_http_nb_maint_state_same(ngx_http_nb_maint_state_t *a,
    ngx_http_nb_maint_state_t *b);
void ngx_http_nb_maint_drain_resolve(ngx_http_nb_maint_shm_t *sh,
    ngx_http_nb_maint_state_t *st);
ngx_msec_t ngx_http_nb_maint_now_ms(void);
void ngx_http_nb_maint_zone_usage(size_t *used, size_t *total);
ngx_int_t ngx_http_nb_maint_node_find(ngx_http_nb_maint_shm_t *sh,
    u_char *id, size_t len);
ngx_uint_t ngx_http_nb_maint_node_use(ngx_http_nb_maint_shm_t *sh,
    ngx_http_nb_maint_state_t *st, ngx_uint_t n, ngx_int_t want);

const char *ngx_http_nb_maint_mode_name(ngx_uint_t mode);
ngx_int_t ngx_http_nb_maint_mode_parse(u_char *s, size_t len);
u_char *ngx_http_nb_maint_time_rfc3339(u_char *buf, time_t t);

/* state <-> JSON (cJSON) */
cJSON *ngx_http_nb_maint_state_to_json(ngx_http_nb_maint_state_t *st);
ngx_int_t ngx_http_nb_maint_state_from_json(cJSON *obj,
    ngx_http_nb_maint_state_t *st, const char **err);
ngx_int_t ngx_http_nb_maint_json_str(ngx_pool_t *pool, cJSON *json,
    ngx_str_t *out);
ngx_int_t ngx_http_nb_maint_drain_other_add(ngx_http_nb_maint_state_t *st,
    u_char *id, size_t len);
cJSON *ngx_http_nb_maint_json_strn(u_char *s, size_t len);
cJSON *ngx_http_nb_maint_json_parse(const char *s, size_t len,
    const char **rest, const char **err);
ngx_int_t ngx_http_nb_maint_json_u64(cJSON *item, uint64_t max,
    uint64_t *out);
cJSON *ngx_http_nb_maint_json_version(uint64_t version);
ngx_int_t ngx_http_nb_maint_json_keep_version(cJSON *obj);

/* node ids: one grammar for every source; network bytes for logs */
ngx_uint_t ngx_http_nb_maint_node_id_valid(u_char *id, size_t len);
size_t ngx_http_nb_maint_escape_log(u_char *dst, u_char *src, size_t len);
ngx_int_t ngx_http_nb_maint_escape_log_str(ngx_pool_t *pool, u_char *src,
    size_t len, ngx_str_t *out);

/* file store, and the file half of the redis store (its local cache) */
char *ngx_http_nb_maint_store_file_init(ngx_conf_t *cf,
    ngx_http_nb_maint_store_t *store, ngx_str_t *path);
void ngx_http_nb_maint_file_load(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, ngx_slab_pool_t *shpool, ngx_log_t *log);
ngx_int_t ngx_http_nb_maint_file_write(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_state_t *st, ngx_str_t *event, ngx_uint_t durable,
    ngx_log_t *log);
ngx_int_t ngx_http_nb_maint_file_check(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, ngx_log_t *log);

/* redis store */
char *ngx_http_nb_maint_store_redis_init(ngx_conf_t *cf,
    ngx_http_nb_maint_store_t *store, ngx_str_t *url);

/* gate, bypass (and their directives) */
char *ngx_http_nb_maint_bypass_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_nb_maint_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_nb_maint_default_pass(ngx_conf_t *cf,
    ngx_http_nb_maint_loc_conf_t *conf);
ngx_int_t ngx_http_nb_maint_gate_init(ngx_conf_t *cf);
ngx_int_t ngx_http_nb_maint_is_bypass(ngx_http_request_t *r);
ngx_int_t ngx_http_nb_maint_passed(ngx_http_request_t *r,
    ngx_http_nb_maint_loc_conf_t *nlcf);
ngx_http_nb_maint_ctx_t *ngx_http_nb_maint_get_ctx(ngx_http_request_t *r);

/* HTTP helpers of the page and the API (http.c) */
ngx_table_elt_t *ngx_http_nb_maint_add_header(ngx_http_request_t *r,
    const char *key, u_char *value, size_t len);
#define nb_add_header_lit(r, key, lit)                                        \
    ngx_http_nb_maint_add_header(r, key, (u_char *) lit, sizeof(lit) - 1)
ngx_int_t ngx_http_nb_maint_admin_error_body(ngx_http_request_t *r,
    ngx_str_t *out);
ngx_int_t ngx_http_nb_maint_admin_output(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, ngx_str_t *body);
ngx_int_t ngx_http_nb_maint_admin_send(ngx_http_request_t *r,
    ngx_uint_t status, cJSON *json);
ngx_int_t ngx_http_nb_maint_admin_challenge(ngx_http_request_t *r);
ngx_int_t ngx_http_nb_maint_admin_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *fmt, ...);

/* 503 page */
ngx_int_t ngx_http_nb_maint_page_send(ngx_http_request_t *r,
    ngx_uint_t mode);
char *ngx_http_nb_maint_page(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_nb_maint_page_load(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *out);
ngx_int_t ngx_http_nb_maint_page_filter_init(ngx_conf_t *cf);
#define NB_PAGE_NO_NODE         100     /* page mode: no healthy node */

/* admin API */
char *ngx_http_nb_maint_admin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_nb_maint_token_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* state changes through the store, from the API or the owner worker */
ngx_int_t ngx_http_nb_maint_state_save(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_state_t *old, ngx_http_nb_maint_state_t *st,
    const char *action, ngx_str_t *actor, ngx_int_t node, ngx_pool_t *pool,
    ngx_log_t *log, ngx_http_nb_maint_store_done_pt done, void *data);
ngx_int_t ngx_http_nb_maint_state_apply(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_state_t *st, ngx_str_t *event, ngx_log_t *log);
void ngx_http_nb_maint_events_replace(ngx_str_t *events, ngx_uint_t n);
char *ngx_http_nb_maint_state_serialize(ngx_http_nb_maint_state_t *st,
    ngx_uint_t with_secret);
ngx_int_t ngx_http_nb_maint_state_parse(cJSON *json,
    ngx_http_nb_maint_shm_t *sh, ngx_http_nb_maint_state_t *st,
    const char **err, ngx_log_t *log);
ngx_uint_t ngx_http_nb_maint_generation(void);
ngx_uint_t ngx_http_nb_maint_is_owner(void);

/* upstream nodes: table, JSON */
char *ngx_http_nb_maint_upstream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_nb_maint_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_nb_maint_upstreams_verify(ngx_conf_t *cf);
ngx_http_upstream_rr_peer_t *ngx_http_nb_maint_peer(
    ngx_http_nb_maint_srv_conf_t *up, ngx_uint_t j);
ngx_uint_t ngx_http_nb_maint_node_pending(ngx_http_nb_maint_srv_conf_t *up,
    ngx_uint_t j, ngx_http_nb_maint_state_t *st);
ngx_uint_t ngx_http_nb_maint_pending_count(
    ngx_http_nb_maint_main_conf_t *nmcf, ngx_http_nb_maint_state_t *st);

/* DNS members (nb_maint_resolve): configuration, each worker's view */
char *ngx_http_nb_maint_resolve(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_nb_maint_dns_init_upstream(ngx_conf_t *cf,
    ngx_http_nb_maint_srv_conf_t *nscf);
void ngx_http_nb_maint_dns_apply(ngx_http_nb_maint_srv_conf_t *up);
void ngx_http_nb_maint_dns_apply_all(ngx_http_nb_maint_main_conf_t *nmcf);
ngx_http_nb_maint_dns_sh_t *ngx_http_nb_maint_dns_table(
    ngx_http_nb_maint_srv_conf_t *up);
ngx_int_t ngx_http_nb_maint_dns_json(ngx_http_nb_maint_srv_conf_t *up,
    cJSON *obj);
void ngx_http_nb_maint_dns_node_json(ngx_http_nb_maint_srv_conf_t *up,
    ngx_http_nb_maint_node_t *n, cJSON *obj);
ngx_int_t ngx_http_nb_maint_dns_claim(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_shm_t *sh, ngx_uint_t mark, ngx_log_t *log);

void ngx_http_nb_maint_dns_restore_count(ngx_http_nb_maint_srv_conf_t *up,
    ngx_http_nb_maint_state_t *st, ngx_uint_t *expected,
    ngx_uint_t *resolved, ngx_uint_t *healthy);

/* the owner's resolver (health_dns.c) */
void ngx_http_nb_maint_dns_tick(ngx_uint_t owner, ngx_log_t *log);

/* the balancer, installed per request by the upstream */
ngx_int_t ngx_http_nb_maint_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);

/* restore: pending nodes, restoring -> normal */
void ngx_http_nb_maint_restore_finish(ngx_log_t *log);
ngx_uint_t ngx_http_nb_maint_restore_checking(
    ngx_http_nb_maint_main_conf_t *nmcf);
ngx_uint_t ngx_http_nb_maint_restore_gated(
    ngx_http_nb_maint_main_conf_t *nmcf);
void ngx_http_nb_maint_restore_status_json(
    ngx_http_nb_maint_main_conf_t *nmcf, cJSON *restore);

/* health checks and the owner worker */
ngx_uint_t ngx_http_nb_maint_health_envelope(ngx_str_t *body,
    ngx_uint_t *app_code, u_char *command, size_t *command_len);
ngx_int_t ngx_http_nb_maint_health_init_process(ngx_cycle_t *cycle);
void ngx_http_nb_maint_health_exit_process(ngx_cycle_t *cycle);

/* bypass cookie */
#define NB_COOKIE_NAME          "nb_maint_bypass"
#define NB_SIG_B64_LEN          43      /* base64url of 32 bytes, no padding */

void ngx_http_nb_maint_cookie_sign(u_char *exp, size_t len, u_char *out);
ngx_int_t ngx_http_nb_maint_cookie_make(ngx_http_request_t *r, time_t expires,
    ngx_str_t *value);
time_t ngx_http_nb_maint_cookie_expires(ngx_http_request_t *r);
void ngx_http_nb_maint_secret_init(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_shm_t *sh, ngx_log_t *log);

/* upstream nodes: table, JSON */
void ngx_http_nb_maint_nodes_lock(ngx_http_nb_maint_shm_t *sh);
void ngx_http_nb_maint_nodes_unlock(ngx_http_nb_maint_shm_t *sh);
ngx_int_t ngx_http_nb_maint_node_claim(ngx_http_nb_maint_shm_t *sh,
    u_char *id, size_t len, ngx_uint_t gen, ngx_uint_t *added);
void ngx_http_nb_maint_node_release(ngx_http_nb_maint_shm_t *sh,
    ngx_uint_t i);
ngx_int_t ngx_http_nb_maint_nodes_init(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_shm_t *sh, ngx_uint_t mark, ngx_log_t *log);
cJSON *ngx_http_nb_maint_node_json(ngx_http_nb_maint_node_t *n,
    ngx_http_nb_maint_state_t *st, ngx_uint_t i);
cJSON *ngx_http_nb_maint_pending_json(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_state_t *st);
cJSON *ngx_http_nb_maint_upstreams_json(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_state_t *st);

/* metrics (Prometheus text), and the per-node counters they show */
ngx_int_t ngx_http_nb_maint_metrics(ngx_http_request_t *r, ngx_str_t *out);
void ngx_http_nb_maint_check_observe(ngx_http_nb_maint_node_t *n,
    ngx_msec_t ms);
ngx_int_t ngx_http_nb_maint_node_stats_json(ngx_http_nb_maint_node_t *n,
    cJSON *obj);

/* WebSockets: answered while gated, proxied ones counted and closed */
ngx_int_t ngx_http_nb_maint_ws_gate(ngx_http_request_t *r,
    ngx_http_nb_maint_loc_conf_t *nlcf, ngx_uint_t gated);
ngx_int_t ngx_http_nb_maint_ws_upgraded(ngx_http_request_t *r,
    ngx_http_nb_maint_ctx_t *ctx);
void ngx_http_nb_maint_ws_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_nb_maint_ws_filter_init(ngx_conf_t *cf);
ngx_uint_t ngx_http_nb_maint_public_node(void);
const char *ngx_http_nb_maint_health_name(ngx_uint_t health);
const char *ngx_http_nb_maint_app_code_name(ngx_uint_t code);
const char *ngx_http_nb_maint_health_why(ngx_err_t err, const char *what);

/* variables */
ngx_int_t ngx_http_nb_maint_add_variables(ngx_conf_t *cf);


#endif /* _NGX_HTTP_NB_MAINT_H_INCLUDED_ */
