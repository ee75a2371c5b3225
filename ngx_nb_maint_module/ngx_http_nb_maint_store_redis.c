/*
 * nb_maint: the redis store (SPEC section 8, "nb_maint_store redis://").
 *
 * hiredis' async API on nginx's event loop: every worker keeps one command
 * connection (writes are compare-and-set Lua scripts on the version key,
 * answered when Redis replies); the owner worker also subscribes to the
 * change channel, re-reads the state every second, re-publishes its state
 * when Redis lost it, and mirrors everything into shared memory.  The last
 * state is kept in a local cache file, so that a restart while Redis is down
 * still serves it.  No call here ever blocks.
 */

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

    /* redis-sentinel:// */
    ngx_uint_t                     sentinel;
    ngx_uint_t                     nsentinels;
    u_char                         sentinel_host[NB_SENTINELS_MAX]
                                                [NGX_SOCKADDR_STRLEN];
    int                            sentinel_port[NB_SENTINELS_MAX];
    ngx_str_t                      master_name;
    ngx_str_t                      sentinel_password;
    ngx_uint_t                     known;        /* host:port found */

    /* WAIT after every write (issue 12) */
    ngx_uint_t                     min_replicas;
    ngx_msec_t                     wait_ms;
} ngx_http_nb_maint_redis_conf_t;


typedef struct {
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
    ngx_http_nb_maint_store_t     *store;
    ngx_log_t                     *log;
    const char                    *name;
} ngx_http_nb_maint_redis_conn_t;


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
    uint64_t                          expected;
    ngx_http_nb_maint_state_t         st;
    ngx_str_t                         event;      /* malloc'ed */
};


/* a command's arguments; hiredis copies them when the command is queued */
#define NB_REDIS_ARGS  12

typedef struct {
    int                               n;
    const char                       *v[NB_REDIS_ARGS];
    size_t                            len[NB_REDIS_ARGS];
} ngx_http_nb_maint_redis_args_t;

#define nb_arg(a, s, l)                                                       \
    (a)->v[(a)->n] = (const char *) (s); (a)->len[(a)->n++] = (l)
#define nb_arg_lit(a, lit)   nb_arg(a, lit, sizeof(lit) - 1)
#define nb_arg_str(a, str)   nb_arg(a, (str)->data, (str)->len)


static ngx_http_nb_maint_redis_conn_t  ngx_http_nb_maint_redis_cmd;
static ngx_http_nb_maint_redis_conn_t  ngx_http_nb_maint_redis_sub;
static ngx_http_nb_maint_redis_conn_t  ngx_http_nb_maint_redis_sen;
static ngx_event_t                     ngx_http_nb_maint_sentinel_ev;
static ngx_uint_t                      ngx_http_nb_maint_sentinel_busy;
static ngx_uint_t                      ngx_http_nb_maint_sentinel_next;
static ngx_uint_t                      ngx_http_nb_maint_sentinel_found;
static ngx_uint_t                      ngx_http_nb_maint_redis_ticks;
static ngx_uint_t                      ngx_http_nb_maint_redis_syncing;


/* a string Redis sent, escaped for a log line ("%V"): it comes from the
 * network; one at a time (a static buffer) */

#define NB_REDIS_LOG_MAX  128

static ngx_str_t *
ngx_http_nb_maint_redis_log_str(const char *s, size_t len)
{
    static u_char     buf[NB_REDIS_LOG_MAX * 4];
    static ngx_str_t  out;

    out.data = buf;
    out.len = ngx_http_nb_maint_escape_log(buf, (u_char *) s,
                                           ngx_min(len, NB_REDIS_LOG_MAX));

    return &out;
}


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

/*
 * In-flight counts, cluster-wide: each owner publishes its gateway's counts
 * (a hash that expires) and gets the sum of the other gateways' back.
 * KEYS: gateways set, own hash; ARGV: ttl, own id, hash prefix, node, n, ...
 */
static const char  ngx_http_nb_maint_redis_active_lua[] =
    "redis.call('DEL', KEYS[2]) "
    "if #ARGV > 3 then "
    "  redis.call('HSET', KEYS[2], unpack(ARGV, 4)) "
    "  redis.call('EXPIRE', KEYS[2], ARGV[1]) "
    "end "
    "redis.call('SADD', KEYS[1], ARGV[2]) "
    "local sum = {} "
    "for _, gw in ipairs(redis.call('SMEMBERS', KEYS[1])) do "
    "  if gw ~= ARGV[2] then "
    "    local h = redis.call('HGETALL', ARGV[3] .. gw) "
    "    if #h == 0 then redis.call('SREM', KEYS[1], gw) end "
    "    for i = 1, #h, 2 do "
    "      sum[h[i]] = (sum[h[i]] or 0) + (tonumber(h[i + 1]) or 0) "
    "    end "
    "  end "
    "end "
    "local r = {} "
    "for k, v in pairs(sum) do r[#r + 1] = k; r[#r + 1] = tostring(v) end "
    "return r";

/*
 * Redis lost our state (restarted empty, or from an old snapshot): put it
 * back, highest version wins, with the events Redis lacks.
 * KEYS: version, state, events; ARGV: version, state, channel, message,
 * event, ... (oldest first)
 */
static const char  ngx_http_nb_maint_redis_republish_lua[] =
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0 "
    "if tonumber(ARGV[1]) <= cur then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[1]) "
    "redis.call('SET', KEYS[2], ARGV[2]) "
    "local function ver(s) "
    "  local ok, e = pcall(cjson.decode, s) "
    "  if ok and type(e) == 'table' then return tonumber(e.version) or 0 end "
    "  return 0 "
    "end "
    "local last = 0 "
    "local tail = redis.call('LINDEX', KEYS[3], -1) "
    "if tail then last = ver(tail) end "
    "for i = 5, #ARGV do "
    "  local v = ver(ARGV[i]) "
    "  if v > last then redis.call('RPUSH', KEYS[3], ARGV[i]); last = v end "
    "end "
    "redis.call('LTRIM', KEYS[3], " NB_REDIS_EVENTS_KEEP ", -1) "
    "redis.call('PUBLISH', ARGV[3], ARGV[4]) "
    "return 1";


static ngx_int_t ngx_http_nb_maint_redis_save(
    ngx_http_nb_maint_store_t *store, uint64_t expected,
    ngx_http_nb_maint_state_t *st, ngx_str_t *event, ngx_log_t *log,
    ngx_http_nb_maint_store_done_pt done, void *data);
static ngx_int_t ngx_http_nb_maint_redis_init_process(
    ngx_http_nb_maint_store_t *store, ngx_cycle_t *cycle);
static void ngx_http_nb_maint_redis_tick(ngx_http_nb_maint_store_t *store,
    ngx_uint_t owner, ngx_log_t *log);
static void ngx_http_nb_maint_redis_connect(
    ngx_http_nb_maint_redis_conn_t *conn);
static void ngx_http_nb_maint_redis_sync(ngx_http_nb_maint_store_t *store);
static void ngx_http_nb_maint_sentinel_ask(ngx_http_nb_maint_store_t *store);
static void ngx_http_nb_maint_redis_primary(
    ngx_http_nb_maint_redis_conf_t *rcf, ngx_log_t *log);
static ngx_int_t ngx_http_nb_maint_redis_open(
    ngx_http_nb_maint_redis_conn_t *conn, u_char *host, int port);
static void ngx_http_nb_maint_redis_ignore(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply);
static void ngx_http_nb_maint_redis_role(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply);


/* at zone creation (master): the local cache; Redis is the owner's job */

static void
ngx_http_nb_maint_redis_load(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, ngx_slab_pool_t *shpool, ngx_log_t *log)
{
    u_char                          *p;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    ngx_http_nb_maint_file_load(store, sh, shpool, log);

    if (sh->store_ok) {
        p = ngx_snprintf(sh->store_error, NB_STORE_ERROR_LEN,
                         "%V: not connected yet", &rcf->url);
        sh->store_error_len = p - sh->store_error;
        sh->store_ok = 0;
    }
}


/* configuration: redis://[[user]:password@]host:port[/db][?prefix=p&cache=f] */

static ngx_int_t
ngx_http_nb_maint_redis_key(ngx_conf_t *cf, ngx_str_t *key, ngx_str_t *prefix,
    const char *name)
{
    key->len = prefix->len + 1 + ngx_strlen(name);
    key->data = ngx_pnalloc(cf->pool, key->len + 1);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(key->data, "%V:%s%Z", prefix, name);

    return NGX_OK;
}


/* "redis://user:secret@h:p" -> "redis://user:***@h:p" */

static ngx_int_t
ngx_http_nb_maint_redis_redact(ngx_pool_t *pool, ngx_str_t *url,
    ngx_str_t *out)
{
    u_char  *p, *end, *at, *colon, *q;

    p = url->data;
    end = url->data + url->len;

    q = ngx_strlchr(p, end, '?');
    if (q) {
        end = q;
    }

    p = ngx_strnstr(p, (char *) "://", end - p);
    p = p ? p + 3 : url->data;

    at = NULL;
    for (q = p; q < end; q++) {
        if (*q == '@') {
            at = q;
        }
    }

    colon = at ? ngx_strlchr(p, at, ':') : NULL;

    if (colon == NULL) {
        *out = *url;
        return NGX_OK;
    }

    out->data = ngx_pnalloc(pool, url->len + 3);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    q = ngx_cpymem(out->data, url->data, colon + 1 - url->data);
    q = ngx_cpymem(q, "***", 3);
    q = ngx_cpymem(q, at, url->data + url->len - at);
    out->len = q - out->data;

    return NGX_OK;
}


/* "h1:p1,h2:p2/master[/db]": resolved here, in the master */

static ngx_int_t
ngx_http_nb_maint_redis_sentinels(ngx_conf_t *cf,
    ngx_http_nb_maint_redis_conf_t *rcf, u_char *p, u_char *end,
    ngx_str_t *shown)
{
    u_char     *slash, *comma, *q;
    ngx_url_t   u;

    slash = ngx_strlchr(p, end, '/');

    if (slash == NULL || slash + 1 >= end) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_store\": no master name in \"%V\", "
                           "expected redis-sentinel://host:port[,host:port...]"
                           "/master-name[/db]", shown);
        return NGX_ERROR;
    }

    /* the master's name and the database */

    q = ngx_strlchr(slash + 1, end, '/');

    rcf->master_name.data = slash + 1;
    rcf->master_name.len = (q ? q : end) - (slash + 1);

    if (q && q + 1 < end) {
        rcf->db = ngx_atoi(q + 1, end - (q + 1));
        if (rcf->db == NGX_ERROR || rcf->db > 1000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"nb_maint_store\": bad database in \"%V\"",
                               shown);
            return NGX_ERROR;
        }
    }

    if (rcf->master_name.len == 0) {
        return NGX_ERROR;
    }

    /* the sentinels */

    for ( /* void */ ; p < slash; p = comma + 1) {
        comma = ngx_strlchr(p, slash, ',');
        if (comma == NULL) {
            comma = slash;
        }

        if (rcf->nsentinels == NB_SENTINELS_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"nb_maint_store\": more than %d sentinels",
                               NB_SENTINELS_MAX);
            return NGX_ERROR;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url.data = p;
        u.url.len = comma - p;
        u.default_port = 26379;

        if (u.url.len == 0
            || ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"nb_maint_store\": %s in \"%V\"",
                               u.err ? u.err : "bad sentinel address", shown);
            return NGX_ERROR;
        }

        q = rcf->sentinel_host[rcf->nsentinels];
        q += ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, q,
                           NGX_SOCKADDR_STRLEN - 1, 0);
        *q = '\0';
        rcf->sentinel_port[rcf->nsentinels++] =
                                     ngx_inet_get_port(u.addrs[0].sockaddr);
    }

    if (rcf->nsentinels == 0) {
        return NGX_ERROR;
    }

    rcf->url.data = ngx_pnalloc(cf->pool, 64 + rcf->master_name.len);
    if (rcf->url.data == NULL) {
        return NGX_ERROR;
    }

    rcf->url.len = ngx_sprintf(rcf->url.data, "redis-sentinel://%V/%i",
                               &rcf->master_name,
                               rcf->db < 0 ? 0 : rcf->db)
                   - rcf->url.data;

    return NGX_OK;
}


char *
ngx_http_nb_maint_store_redis_init(ngx_conf_t *cf,
    ngx_http_nb_maint_store_t *store, ngx_str_t *url)
{
    u_char                          *p, *end, *at, *host, *q, *amp;
    ngx_int_t                        n;
    ngx_str_t                        prefix, cache, name, value, *v, shown;
    ngx_url_t                        u;
    ngx_http_nb_maint_redis_conf_t  *rcf;

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_nb_maint_redis_conf_t));
    if (rcf == NULL) {
        return NGX_CONF_ERROR;
    }

    /* every message names the URL without its password */
    if (ngx_http_nb_maint_redis_redact(cf->pool, url, &shown) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (url->data[5] == '-') {
        rcf->sentinel = 1;
        p = url->data + sizeof("redis-sentinel://") - 1;

    } else {
        p = url->data + sizeof("redis://") - 1;
    }

    end = url->data + url->len;

    ngx_str_set(&prefix, "nb_maint");
    ngx_str_set(&cache, "nb_maint_redis_cache.json");
    rcf->db = -1;
    rcf->wait_ms = 1000;

    /* the query */

    q = ngx_strlchr(p, end, '?');

    if (q) {
        for (q++; q < end; q = amp + 1) {
            amp = ngx_strlchr(q, end, '&');
            if (amp == NULL) {
                amp = end;
            }

            name.data = q;
            value.data = ngx_strlchr(q, amp, '=');

            if (value.data == NULL) {
                goto invalid;
            }

            name.len = value.data - q;
            value.data++;
            value.len = amp - value.data;

            if (name.len == 6 && ngx_strncmp(name.data, "prefix", 6) == 0) {
                v = &prefix;

            } else if (name.len == 5 && ngx_strncmp(name.data, "cache", 5) == 0)
            {
                v = &cache;

            } else if (name.len == 17
                       && ngx_strncmp(name.data, "sentinel_password", 17) == 0)
            {
                v = &rcf->sentinel_password;

            } else if (name.len == 12
                       && ngx_strncmp(name.data, "min_replicas", 12) == 0)
            {
                n = ngx_atoi(value.data, value.len);
                if (n == NGX_ERROR || n > 100) {
                    goto invalid;
                }

                rcf->min_replicas = n;
                continue;

            } else if (name.len == 7 && ngx_strncmp(name.data, "wait_ms", 7) == 0)
            {
                n = ngx_atoi(value.data, value.len);
                if (n == NGX_ERROR || n < 1 || n > 60000) {
                    goto invalid;
                }

                rcf->wait_ms = n;
                continue;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"nb_maint_store\": unknown parameter "
                                   "\"%V\"", &name);
                return NGX_CONF_ERROR;
            }

            if (value.len == 0) {
                goto invalid;
            }

            *v = value;
        }

        end = ngx_strlchr(p, end, '?');
    }

    /* credentials */

    at = NULL;
    for (q = p; q < end; q++) {
        if (*q == '@') {
            at = q;
        }
    }

    if (at) {
        q = ngx_strlchr(p, at, ':');
        if (q == NULL || q + 1 == at) {
            goto invalid;
        }

        /* "user:pass@" (Redis 6 ACL user) or ":pass@" (requirepass) */

        rcf->user.len = q - p;
        rcf->user.data = ngx_pnalloc(cf->pool, rcf->user.len + 1);
        rcf->password.len = at - (q + 1);
        rcf->password.data = ngx_pnalloc(cf->pool, rcf->password.len + 1);

        if (rcf->user.data == NULL || rcf->password.data == NULL) {
            return NGX_CONF_ERROR;
        }

        *ngx_cpymem(rcf->user.data, p, rcf->user.len) = '\0';
        *ngx_cpymem(rcf->password.data, q + 1, rcf->password.len) = '\0';

        p = at + 1;
    }

    host = p;

    if (rcf->sentinel) {
        if (ngx_http_nb_maint_redis_sentinels(cf, rcf, host, end, &shown)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        goto keys;
    }

    /* the database */

    q = ngx_strlchr(host, end, '/');

    if (q) {
        if (q + 1 < end) {
            rcf->db = ngx_atoi(q + 1, end - (q + 1));
            if (rcf->db == NGX_ERROR || rcf->db > 1000) {
                goto invalid;
            }
        }

        end = q;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = host;
    u.url.len = end - host;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_store\": %s in \"%V\"",
                           u.err ? u.err : "bad address", &shown);
        return NGX_CONF_ERROR;
    }

    /* resolved here, in the master: hiredis would resolve blocking */

    p = rcf->host;
    p += ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, p,
                       NGX_SOCKADDR_STRLEN - 1, 0);
    *p = '\0';
    rcf->port = ngx_inet_get_port(u.addrs[0].sockaddr);

    rcf->known = 1;

    rcf->url.data = ngx_pnalloc(cf->pool, 64 + NGX_SOCKADDR_STRLEN);
    if (rcf->url.data == NULL) {
        return NGX_CONF_ERROR;
    }

    rcf->url.len = ngx_sprintf(rcf->url.data, "redis://%s:%d/%i",
                               rcf->host, rcf->port,
                               rcf->db < 0 ? 0 : rcf->db)
                   - rcf->url.data;

keys:

    if (ngx_http_nb_maint_redis_key(cf, &rcf->key_version, &prefix, "version")
        != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->key_state, &prefix, "state")
           != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->key_events, &prefix,
                                       "events")
           != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->key_secret, &prefix,
                                       "secret")
           != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->channel, &prefix,
                                       "changes:db")
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_nb_maint_redis_key(cf, &rcf->key_gateways, &prefix,
                                    "gateways")
        != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->key_active, &prefix,
                                       "active:")
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* pub/sub ignores the database: the channel names it */

    p = ngx_pnalloc(cf->pool, rcf->channel.len + NGX_INT_T_LEN + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    rcf->channel.len = ngx_sprintf(p, "%V%i%Z", &rcf->channel,
                                   rcf->db < 0 ? 0 : rcf->db) - p - 1;
    rcf->channel.data = p;

    /* the local cache is a file store's state file */

    if (ngx_conf_full_name(cf->cycle, &cache, 0) != NGX_OK
        || ngx_http_nb_maint_store_file_init(cf, store, &cache)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&store->type, "redis");
    store->data = rcf;
    store->load = ngx_http_nb_maint_redis_load;
    store->save = ngx_http_nb_maint_redis_save;
    store->init_process = ngx_http_nb_maint_redis_init_process;
    store->tick = ngx_http_nb_maint_redis_tick;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"nb_maint_store\": invalid redis URL \"%V\", "
                       "expected redis://[[user]:password@]host:port[/db]"
                       "[?prefix=name]", &shown);
    return NGX_CONF_ERROR;
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


static void ngx_http_nb_maint_redis_schedule(
    ngx_http_nb_maint_redis_conn_t *conn);
static void ngx_http_nb_maint_redis_store_down(
    ngx_http_nb_maint_redis_conn_t *conn, const char *why);


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

    op->handler(op, r);

    if (op->event.data) {
        ngx_free(op->event.data);
    }

    ngx_free(op);
}


static ngx_http_nb_maint_redis_op_t *
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


static ngx_int_t
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

    ngx_add_timer(&op->timer, NB_REDIS_TIMEOUT);

    return NGX_OK;
}


static ngx_int_t
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


static void
ngx_http_nb_maint_redis_schedule(ngx_http_nb_maint_redis_conn_t *conn)
{
    ngx_msec_t  max;

    if (!conn->wanted || conn->retry.timer_set || ngx_exiting || ngx_quit) {
        return;
    }

    ngx_add_timer(&conn->retry, conn->backoff);

    max = ((ngx_http_nb_maint_redis_conf_t *) conn->store->data)->sentinel
          ? NB_SENTINEL_BACKOFF : NB_REDIS_BACKOFF_MAX;

    conn->backoff = ngx_min(conn->backoff * 2, max);
}


static void
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


    level = conn->wanted ? NGX_LOG_ERR : NGX_LOG_INFO;

    why = (ac->errstr && ac->errstr[0]) ? ac->errstr : NULL;

    ngx_log_error(level, conn->log, 0,
                  "nb_maint: redis %s connection lost%s%s", conn->name,
                  why ? ": " : "", why ? why : "");

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

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, conn->log, 0,
                      "nb_maint: cannot connect to redis (%s connection): %s",
                      conn->name, ac->errstr);

        ngx_http_nb_maint_redis_store_down(conn, ac->errstr);

        /* hiredis frees the context after this callback */
        conn->ac = NULL;
        conn->ready = 0;
        ngx_http_nb_maint_redis_schedule(conn);
    }
}


static void
ngx_http_nb_maint_redis_message(redisAsyncContext *ac, void *r,
    void *privdata);


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
    conn->backoff = NB_REDIS_BACKOFF_MIN;

    if (!conn->subscriber && ngx_http_nb_maint_is_owner()) {
        ngx_http_nb_maint_redis_primary(rcf, conn->log);
    }

    ngx_log_error(NGX_LOG_INFO, conn->log, 0,
                  "nb_maint: redis %s connection to %V ready", conn->name,
                  &rcf->url);

    if (conn->subscriber) {
        (void) redisAsyncCommand(conn->ac, ngx_http_nb_maint_redis_message,
                                 conn, "SUBSCRIBE %s", rcf->channel.data);

    } else if (ngx_http_nb_maint_is_owner()) {
        ngx_http_nb_maint_redis_sync(conn->store);
    }
}


/* the owner: which server is the primary now, and when it changed */

static void
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


static void
ngx_http_nb_maint_sentinel_ask(ngx_http_nb_maint_store_t *store)
{
    if (ngx_http_nb_maint_sentinel_busy) {
        return;
    }

    ngx_http_nb_maint_sentinel_busy = 1;
    ngx_http_nb_maint_sentinel_next = 0;
    ngx_http_nb_maint_sentinel_found = 0;

    ngx_http_nb_maint_sentinel_try(store);
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

static ngx_int_t
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


static void
ngx_http_nb_maint_redis_connect(ngx_http_nb_maint_redis_conn_t *conn)
{
    u_char                           db[NGX_INT_T_LEN];
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conf_t  *rcf = conn->store->data;

    if (rcf->sentinel && !conn->primary_ok) {
        /* every (re)connection asks the sentinels for the primary first */
        conn->awaiting = 1;
        ngx_http_nb_maint_sentinel_ask(conn->store);
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


static void
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


static ngx_int_t
ngx_http_nb_maint_redis_init_process(ngx_http_nb_maint_store_t *store,
    ngx_cycle_t *cycle)
{
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    ngx_http_nb_maint_redis_conn_init(&ngx_http_nb_maint_redis_cmd, store,
                                      cycle->log, "command", 0);
    ngx_http_nb_maint_redis_conn_init(&ngx_http_nb_maint_redis_sub, store,
                                      cycle->log, "subscriber", 1);
    ngx_http_nb_maint_redis_conn_init(&ngx_http_nb_maint_redis_sen, store,
                                      cycle->log, "sentinel", 0);
    ngx_http_nb_maint_redis_sen.sentinel = 1;

    ngx_http_nb_maint_sentinel_ev.handler = ngx_http_nb_maint_sentinel_step;
    ngx_http_nb_maint_sentinel_ev.data = store;
    ngx_http_nb_maint_sentinel_ev.log = cycle->log;
    ngx_http_nb_maint_sentinel_ev.cancelable = 1;

    ngx_http_nb_maint_shm()->store_sentinel = rcf->sentinel;
    ngx_http_nb_maint_shm()->store_replicas_wanted = rcf->min_replicas;

    ngx_http_nb_maint_redis_cmd.wanted = 1;
    ngx_http_nb_maint_redis_connect(&ngx_http_nb_maint_redis_cmd);

    return NGX_OK;
}


/* states coming from Redis */

static ngx_int_t
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
}


static void
ngx_http_nb_maint_redis_fetch_events(ngx_http_nb_maint_store_t *store)
{
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

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

    (void) ngx_http_nb_maint_redis_send(op, &a);
}


/* a published change: {"state":{...},"event":{...}} */

static void
ngx_http_nb_maint_redis_apply_message(ngx_http_nb_maint_store_t *store,
    const char *s, size_t len, ngx_log_t *log)
{
    char                       *ev;
    cJSON                      *json, *state, *event;
    uint64_t                    have;
    ngx_str_t                   e;
    const char                 *err;
    ngx_http_nb_maint_state_t   st;

    json = ngx_http_nb_maint_json_parse(s, len, NULL, &err);
    state = cJSON_GetObjectItemCaseSensitive(json, "state");
    event = cJSON_GetObjectItemCaseSensitive(json, "event");

    if (state == NULL
        || ngx_http_nb_maint_state_parse(state, ngx_http_nb_maint_shm(), &st,
                                         &err, log)
           != NGX_OK
        || (event && ngx_http_nb_maint_json_keep_version(event) != NGX_OK))
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "nb_maint: ignoring a malformed change message");
        cJSON_Delete(json);
        return;
    }

    ev = event ? cJSON_PrintUnformatted(event) : NULL;
    e.data = (u_char *) ev;
    e.len = ev ? ngx_strlen(ev) : 0;

    have = ngx_http_nb_maint_snapshot()->version;

    if (ngx_http_nb_maint_state_apply(store, &st, &e, log) == NGX_OK
        && st.version > have + 1)
    {
        /* we missed changes: take the audit log as Redis has it */
        ngx_http_nb_maint_redis_fetch_events(store);
    }

    if (ev) {
        cJSON_free(ev);
    }

    cJSON_Delete(json);
}


static void
ngx_http_nb_maint_redis_message(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                      *reply = r;
    ngx_http_nb_maint_redis_conn_t  *conn = privdata;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[2]->type != REDIS_REPLY_STRING
        || ngx_strcmp(reply->element[0]->str, "message") != 0)
    {
        return;
    }

    ngx_http_nb_maint_redis_apply_message(conn->store, reply->element[2]->str,
                                          reply->element[2]->len, conn->log);
}


/* the owner's periodic read: MGET version state secret */

static void
ngx_http_nb_maint_redis_ignore(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, op->conn->log, 0, "nb_maint: redis: %V",
                      ngx_http_nb_maint_redis_log_str(reply->str, reply->len));
    }
}


static void
ngx_http_nb_maint_redis_republish(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_state_t *st)
{
    u_char                          *msg, *buf, *p, ver[NGX_INT64_LEN];
    char                            *state;
    size_t                           slen, evlen, *argvlen;
    ngx_uint_t                       i, k, n, argc;
    const char                     **argv;
    ngx_http_nb_maint_shm_t         *sh;
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    state = ngx_http_nb_maint_state_serialize(st, 0);
    if (state == NULL) {
        return;
    }

    slen = ngx_strlen(state);
    sh = ngx_http_nb_maint_shm();

    op = ngx_http_nb_maint_redis_op(&ngx_http_nb_maint_redis_cmd,
                                    ngx_http_nb_maint_redis_ignore);
    msg = ngx_alloc(slen + sizeof("{\"state\":,\"event\":null}"),
                    ngx_cycle->log);
    argv = ngx_alloc((9 + NB_EVENTS_MAX) * (sizeof(char *) + sizeof(size_t)),
                     ngx_cycle->log);
    buf = NULL;

    if (op == NULL || msg == NULL || argv == NULL) {
        goto done;
    }

    argvlen = (size_t *) (argv + 9 + NB_EVENTS_MAX);

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_nb_maint_redis_republish_lua;
    argvlen[1] = sizeof(ngx_http_nb_maint_redis_republish_lua) - 1;
    argv[2] = "3";
    argvlen[2] = 1;
    argv[3] = (char *) rcf->key_version.data;
    argvlen[3] = rcf->key_version.len;
    argv[4] = (char *) rcf->key_state.data;
    argvlen[4] = rcf->key_state.len;
    argv[5] = (char *) rcf->key_events.data;
    argvlen[5] = rcf->key_events.len;
    argv[6] = (char *) ver;
    argvlen[6] = ngx_sprintf(ver, "%uL", st->version) - ver;
    argv[7] = state;
    argvlen[7] = slen;
    argv[8] = (char *) rcf->channel.data;
    argvlen[8] = rcf->channel.len;
    argv[9] = (char *) msg;
    argvlen[9] = ngx_sprintf(msg, "{\"state\":%s,\"event\":null}", state)
                 - msg;
    argc = 10;

    /* the audit events we hold, copied out of the ring (oldest first) */

    ngx_rwlock_rlock(&sh->lock);

    n = ngx_min(sh->ev_count, NB_EVENTS_MAX - 1);
    i = (sh->ev_next + NB_EVENTS_MAX - n) % NB_EVENTS_MAX;

    for (evlen = 0, k = 0; k < n; k++) {
        evlen += sh->events[(i + k) % NB_EVENTS_MAX].len;
    }

    buf = ngx_alloc(evlen + 1, ngx_cycle->log);
    p = buf;

    for (k = 0; buf && k < n; k++, i = (i + 1) % NB_EVENTS_MAX) {
        argv[argc] = (char *) p;
        argvlen[argc++] = sh->events[i].len;
        p = ngx_cpymem(p, sh->events[i].data, sh->events[i].len);
    }

    ngx_rwlock_unlock(&sh->lock);

    if (buf == NULL) {
        goto done;
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "nb_maint: re-publishing version %uL and %ui events to %V",
                  st->version, argc - 10, &rcf->url);

    /* hiredis copies the arguments at once; on failure op is freed */
    (void) ngx_http_nb_maint_redis_send_argv(op, argc, argv, argvlen);
    op = NULL;

done:

    if (op) {
        ngx_free(op);
    }

    if (msg) {
        ngx_free(msg);
    }

    if (argv) {
        ngx_free(argv);
    }

    if (buf) {
        ngx_free(buf);
    }

    cJSON_free(state);
}


static void
ngx_http_nb_maint_redis_keep_secret(ngx_http_nb_maint_store_t *store)
{
    u_char                           hex[NB_SECRET_LEN * 2];
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    op = ngx_http_nb_maint_redis_op(&ngx_http_nb_maint_redis_cmd,
                                    ngx_http_nb_maint_redis_ignore);
    if (op == NULL) {
        return;
    }

    ngx_hex_dump(hex, ngx_http_nb_maint_shm()->secret, NB_SECRET_LEN);

    a.n = 0;
    nb_arg_lit(&a, "SET");
    nb_arg_str(&a, &rcf->key_secret);
    nb_arg(&a, hex, sizeof(hex));
    nb_arg_lit(&a, "NX");

    (void) ngx_http_nb_maint_redis_send(op, &a);
}


/*
 * The cookie key as Redis has it: decoded and checked whole on the side,
 * then published at once (issue 9, defect 14); a malformed one changes
 * nothing.
 */

static void
ngx_http_nb_maint_redis_take_secret(ngx_http_nb_maint_store_t *store,
    redisReply *secret, ngx_log_t *log)
{
    u_char                          *p, key[NB_SECRET_LEN], have[NB_SECRET_LEN];
    ngx_int_t                        b;
    ngx_uint_t                       i;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    p = (u_char *) secret->str;

    if (secret->len != NB_SECRET_LEN * 2) {
        goto malformed;
    }

    for (i = 0; i < NB_SECRET_LEN; i++) {
        b = ngx_hextoi(p + 2 * i, 2);

        if (b == NGX_ERROR) {
            goto malformed;
        }

        key[i] = (u_char) b;
    }

    ngx_http_nb_maint_secret_copy(have);

    if (!ngx_http_nb_maint_shm()->secret_set
        || ngx_memcmp(have, key, NB_SECRET_LEN) != 0)
    {
        ngx_http_nb_maint_secret_publish(key);
    }

    ngx_explicit_memzero(key, NB_SECRET_LEN);
    ngx_explicit_memzero(have, NB_SECRET_LEN);

    return;

malformed:

    ngx_explicit_memzero(key, NB_SECRET_LEN);

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "nb_maint: malformed cookie key in redis key \"%V\" "
                  "(not %d hex digits), keeping ours", &rcf->key_secret,
                  NB_SECRET_LEN * 2);
}


static void
ngx_http_nb_maint_redis_synced(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    redisReply                      *ver, *state, *secret;
    ngx_int_t                        v;
    ngx_http_nb_maint_shm_t         *sh;
    ngx_http_nb_maint_state_t        st, *have;
    ngx_http_nb_maint_store_t       *store = op->conn->store;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;
    ngx_log_t                       *log = op->conn->log;

    ngx_http_nb_maint_redis_syncing = 0;

    if (reply == NULL) {
        ngx_http_nb_maint_redis_store_down(op->conn, "no answer");
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "nb_maint: redis: %V",
                      ngx_http_nb_maint_redis_log_str(reply->str, reply->len));
        ngx_http_nb_maint_redis_store_down(op->conn, reply->str);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        return;
    }

    ver = reply->element[0];
    state = reply->element[1];
    secret = reply->element[2];

    sh = ngx_http_nb_maint_shm();
    have = ngx_http_nb_maint_snapshot();

    /* the cookie key: Redis' wins, ours fills an empty Redis */

    if (secret->type == REDIS_REPLY_STRING) {
        ngx_http_nb_maint_redis_take_secret(store, secret, log);

    } else if (secret->type == REDIS_REPLY_NIL && sh->secret_set) {
        ngx_http_nb_maint_redis_keep_secret(store);
    }

    v = 0;

    if (ver->type == REDIS_REPLY_STRING) {
        v = ngx_atoi((u_char *) ver->str, ver->len);

        if (v == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "nb_maint: malformed value in redis key \"%V\": "
                          "\"%V\", keeping ours", &rcf->key_version,
                          ngx_http_nb_maint_redis_log_str(ver->str, ver->len));
            ngx_http_nb_maint_set_store_status(0, "malformed value in redis "
                                               "key \"%V\"",
                                               &rcf->key_version);
            return;
        }
    }

    if ((uint64_t) v < have->version) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "nb_maint: redis has version %i, this gateway has "
                      "%uL (redis lost data?): re-publishing ours", v,
                      have->version);
        st = *have;
        ngx_http_nb_maint_redis_republish(store, &st);
        goto ok;
    }

    if ((uint64_t) v > have->version) {
        if (state->type != REDIS_REPLY_STRING
            || ngx_http_nb_maint_redis_parse_state(store, state->str,
                                                   state->len, &st, log)
               != NGX_OK)
        {
            return;
        }

        if (st.version != (uint64_t) v) {
            st.version = v;
        }

        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "nb_maint: redis is at version %i, catching up", v);

        (void) ngx_http_nb_maint_state_apply(store, &st, NULL, log);
        ngx_http_nb_maint_redis_fetch_events(store);
    }

ok:

    if (!sh->store_ok) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "nb_maint: redis store %V is available", &rcf->url);
        ngx_http_nb_maint_set_store_status(1, NULL);
    }
}


static void
ngx_http_nb_maint_redis_sync(ngx_http_nb_maint_store_t *store)
{
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    if (ngx_http_nb_maint_redis_syncing || !ngx_http_nb_maint_redis_cmd.ready)
    {
        return;
    }

    op = ngx_http_nb_maint_redis_op(&ngx_http_nb_maint_redis_cmd,
                                    ngx_http_nb_maint_redis_synced);
    if (op == NULL) {
        return;
    }

    a.n = 0;
    nb_arg_lit(&a, "MGET");
    nb_arg_str(&a, &rcf->key_version);
    nb_arg_str(&a, &rcf->key_state);
    nb_arg_str(&a, &rcf->key_secret);

    if (ngx_http_nb_maint_redis_send(op, &a) == NGX_OK) {
        ngx_http_nb_maint_redis_syncing = 1;
    }
}


/* the owner: in-flight counts of this gateway out, the others' in */

static void
ngx_http_nb_maint_redis_active_sums(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    size_t                     i;
    ngx_int_t                  n, k;
    ngx_uint_t                 seen[NB_MAX_NODES / (8 * sizeof(ngx_uint_t))];
    ngx_http_nb_maint_shm_t   *sh;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_nb_maint_redis_ignore(op, reply);
        return;
    }

    sh = ngx_http_nb_maint_shm();
    ngx_memzero(seen, sizeof(seen));

    for (i = 0; i + 1 < reply->elements; i += 2) {
        if (reply->element[i]->type != REDIS_REPLY_STRING
            || reply->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        k = ngx_http_nb_maint_node_find(sh, (u_char *) reply->element[i]->str,
                                        reply->element[i]->len);
        n = ngx_atoi((u_char *) reply->element[i + 1]->str,
                     reply->element[i + 1]->len);

        if (k == NGX_ERROR || n == NGX_ERROR) {
            continue;
        }

        sh->nodes[k].active_remote = n;
        seen[k / (8 * sizeof(ngx_uint_t))] |= 1UL << (k % (8 * sizeof(ngx_uint_t)));
    }

    for (k = 0; k < (ngx_int_t) sh->nnodes; k++) {
        if (!(seen[k / (8 * sizeof(ngx_uint_t))]
              & (1UL << (k % (8 * sizeof(ngx_uint_t))))))
        {
            sh->nodes[k].active_remote = 0;
        }
    }
}


static void
ngx_http_nb_maint_redis_active(ngx_http_nb_maint_store_t *store)
{
    u_char                          *p, *end, *own, *buf;
    size_t                          *argvlen;
    ngx_uint_t                       i, argc;
    const char                     **argv;
    ngx_http_nb_maint_shm_t         *sh;
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    sh = ngx_http_nb_maint_shm();

    if (sh->nnodes == 0) {
        return;
    }

    argc = 9 + 2 * sh->nnodes;

    argv = ngx_alloc(argc * (sizeof(char *) + sizeof(size_t)), ngx_cycle->log);
    buf = ngx_alloc(256 + rcf->key_active.len
                    + sh->nnodes * NGX_ATOMIC_T_LEN, ngx_cycle->log);
    op = ngx_http_nb_maint_redis_op(&ngx_http_nb_maint_redis_cmd,
                                    ngx_http_nb_maint_redis_active_sums);

    if (argv == NULL || buf == NULL || op == NULL) {
        goto done;
    }

    argvlen = (size_t *) (argv + argc);
    p = buf;
    end = buf + 256 + rcf->key_active.len + sh->nnodes * NGX_ATOMIC_T_LEN;

    /* this gateway: "hostname:master pid" */
    own = p;
    p = ngx_slprintf(p, end, "%V%V:%P", &rcf->key_active,
                     &ngx_cycle->hostname, ngx_parent);

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_nb_maint_redis_active_lua;
    argvlen[1] = sizeof(ngx_http_nb_maint_redis_active_lua) - 1;
    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = (char *) rcf->key_gateways.data;
    argvlen[3] = rcf->key_gateways.len;
    argv[4] = (char *) own;
    argvlen[4] = p - own;
    argv[5] = "5";
    argvlen[5] = 1;
    argv[6] = (char *) own + rcf->key_active.len;
    argvlen[6] = (p - own) - rcf->key_active.len;
    argv[7] = (char *) rcf->key_active.data;
    argvlen[7] = rcf->key_active.len;

    argc = 8;

    for (i = 0; i < sh->nnodes; i++) {
        if (sh->nodes[i].id_len == 0) {
            continue;       /* a free entry */
        }

        argv[argc] = (char *) sh->nodes[i].id;
        argvlen[argc++] = sh->nodes[i].id_len;

        argv[argc] = (char *) p;
        argvlen[argc++] = ngx_slprintf(p, end, "%A", sh->nodes[i].active) - p;
        p += argvlen[argc - 1];
    }

    /* hiredis copies the arguments at once */
    (void) ngx_http_nb_maint_redis_send_argv(op, argc, argv, argvlen);
    op = NULL;

done:

    if (op) {
        ngx_free(op);
    }

    if (argv) {
        ngx_free(argv);
    }

    if (buf) {
        ngx_free(buf);
    }
}


/* the owner: subscriber connection and the periodic re-read */

static void
ngx_http_nb_maint_redis_tick(ngx_http_nb_maint_store_t *store,
    ngx_uint_t owner, ngx_log_t *log)
{
    ngx_http_nb_maint_redis_conn_t  *sub = &ngx_http_nb_maint_redis_sub;

    if (!owner) {
        if (sub->wanted) {
            sub->wanted = 0;
            if (sub->ac) {
                redisAsyncDisconnect(sub->ac);
            }
        }
        return;
    }

    if (!sub->wanted) {
        sub->wanted = 1;
        ngx_http_nb_maint_redis_connect(sub);
    }

    if (!ngx_http_nb_maint_redis_cmd.ready) {
        if (ngx_http_nb_maint_shm()->store_ok
            && ngx_http_nb_maint_redis_cmd.ac == NULL)
        {
            ngx_http_nb_maint_redis_store_down(&ngx_http_nb_maint_redis_cmd,
                                               "not connected");
        }
        return;
    }

    if (++ngx_http_nb_maint_redis_ticks % 2 == 0) {
        ngx_http_nb_maint_redis_sync(store);
        ngx_http_nb_maint_redis_active(store);
    }
}


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


static ngx_int_t
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
