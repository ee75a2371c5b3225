/*
 * nb_maint: the redis store (SPEC section 8, "nb_maint_store redis://" and
 * "redis-sentinel://"): its configuration and its life cycle.
 *
 * Every worker keeps one command connection (writes are compare-and-set Lua
 * scripts on the version key, answered when Redis replies); the owner
 * worker also subscribes to the change channel, re-reads the state every
 * second, re-publishes its state when Redis lost it, and mirrors everything
 * into shared memory.  The last state is kept in a local cache file, so
 * that a restart while Redis is down still serves it.
 *
 * Owns: parsing the URL, what a worker starts (init_process), what happens
 * once a connection is usable, and the owner's tick.  The top of the redis
 * files: may call all of them (store_redis_write.c, store_redis_cmd.c,
 * store_redis_sentinel.c, store_redis_conn.c, store_cache.c) and the shared
 * state; nothing calls back into it but through the store's hooks.  No call
 * here ever blocks.
 */

#include "ngx_http_nb_maint_store_redis.h"


static ngx_int_t ngx_http_nb_maint_redis_init_process(
    ngx_http_nb_maint_store_t *store, ngx_cycle_t *cycle);
static void ngx_http_nb_maint_redis_tick(ngx_http_nb_maint_store_t *store,
    ngx_uint_t owner, ngx_log_t *log);
static void ngx_http_nb_maint_redis_exit_process(
    ngx_http_nb_maint_store_t *store, ngx_cycle_t *cycle);


static ngx_uint_t  ngx_http_nb_maint_redis_ticks;


/* at zone creation (master): the local cache; Redis is the owner's job */

static void
ngx_http_nb_maint_redis_load(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, ngx_slab_pool_t *shpool, ngx_log_t *log)
{
    u_char                          *p;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    ngx_http_nb_maint_cache_load(store, sh, shpool, log);

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


/* "?prefix=p&cache=f&sentinel_password=s&min_replicas=n&wait_ms=m";
 * NGX_DECLINED: malformed, the caller says so */

static ngx_int_t
ngx_http_nb_maint_redis_query(ngx_conf_t *cf,
    ngx_http_nb_maint_redis_conf_t *rcf, u_char *q, u_char *end,
    ngx_str_t *prefix, ngx_str_t *cache)
{
    u_char     *amp;
    ngx_int_t   n;
    ngx_str_t   name, value, *v;

    for ( /* void */ ; q < end; q = amp + 1) {
        amp = ngx_strlchr(q, end, '&');
        if (amp == NULL) {
            amp = end;
        }

        name.data = q;
        value.data = ngx_strlchr(q, amp, '=');

        if (value.data == NULL) {
            return NGX_DECLINED;
        }

        name.len = value.data - q;
        value.data++;
        value.len = amp - value.data;

        if (name.len == 6 && ngx_strncmp(name.data, "prefix", 6) == 0) {
            v = prefix;

        } else if (name.len == 5 && ngx_strncmp(name.data, "cache", 5) == 0) {
            v = cache;

        } else if (name.len == 17
                   && ngx_strncmp(name.data, "sentinel_password", 17) == 0)
        {
            v = &rcf->sentinel_password;

        } else if (name.len == 12
                   && ngx_strncmp(name.data, "min_replicas", 12) == 0)
        {
            n = ngx_atoi(value.data, value.len);
            if (n == NGX_ERROR || n > 100) {
                return NGX_DECLINED;
            }

            rcf->min_replicas = n;
            continue;

        } else if (name.len == 7 && ngx_strncmp(name.data, "wait_ms", 7) == 0)
        {
            n = ngx_atoi(value.data, value.len);
            if (n == NGX_ERROR || n < 1 || n > 60000) {
                return NGX_DECLINED;
            }

            rcf->wait_ms = n;
            continue;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"nb_maint_store\": unknown parameter "
                               "\"%V\"", &name);
            return NGX_ERROR;
        }

        if (value.len == 0) {
            return NGX_DECLINED;
        }

        *v = value;
    }

    return NGX_OK;
}


/* "user:pass@" (Redis 6 ACL user) or ":pass@" (requirepass): *pp moves
 * past it */

static ngx_int_t
ngx_http_nb_maint_redis_userinfo(ngx_conf_t *cf,
    ngx_http_nb_maint_redis_conf_t *rcf, u_char **pp, u_char *end)
{
    u_char  *p, *q, *at;

    p = *pp;
    at = NULL;

    for (q = p; q < end; q++) {
        if (*q == '@') {
            at = q;
        }
    }

    if (at == NULL) {
        return NGX_OK;
    }

    q = ngx_strlchr(p, at, ':');
    if (q == NULL || q + 1 == at) {
        return NGX_DECLINED;
    }

    rcf->user.len = q - p;
    rcf->user.data = ngx_pnalloc(cf->pool, rcf->user.len + 1);
    rcf->password.len = at - (q + 1);
    rcf->password.data = ngx_pnalloc(cf->pool, rcf->password.len + 1);

    if (rcf->user.data == NULL || rcf->password.data == NULL) {
        return NGX_ERROR;
    }

    *ngx_cpymem(rcf->user.data, p, rcf->user.len) = '\0';
    *ngx_cpymem(rcf->password.data, q + 1, rcf->password.len) = '\0';

    *pp = at + 1;

    return NGX_OK;
}


/* redis://: "host:port[/db]", resolved here, in the master (hiredis would
 * resolve blocking) */

static ngx_int_t
ngx_http_nb_maint_redis_server(ngx_conf_t *cf,
    ngx_http_nb_maint_redis_conf_t *rcf, u_char *host, u_char *end,
    ngx_str_t *shown)
{
    u_char     *p, *q;
    ngx_url_t   u;

    q = ngx_strlchr(host, end, '/');

    if (q) {
        if (q + 1 < end) {
            rcf->db = ngx_atoi(q + 1, end - (q + 1));
            if (rcf->db == NGX_ERROR || rcf->db > 1000) {
                return NGX_DECLINED;
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
                           u.err ? u.err : "bad address", shown);
        return NGX_ERROR;
    }

    p = rcf->host;
    p += ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, p,
                       NGX_SOCKADDR_STRLEN - 1, 0);
    *p = '\0';
    rcf->port = ngx_inet_get_port(u.addrs[0].sockaddr);

    rcf->known = 1;

    rcf->url.data = ngx_pnalloc(cf->pool, 64 + NGX_SOCKADDR_STRLEN);
    if (rcf->url.data == NULL) {
        return NGX_ERROR;
    }

    rcf->url.len = ngx_sprintf(rcf->url.data, "redis://%s:%d/%i",
                               rcf->host, rcf->port,
                               rcf->db < 0 ? 0 : rcf->db)
                   - rcf->url.data;

    return NGX_OK;
}


/* the keys under the prefix, and the change channel (pub/sub ignores the
 * database: the channel names it) */

static ngx_int_t
ngx_http_nb_maint_redis_keys(ngx_conf_t *cf,
    ngx_http_nb_maint_redis_conf_t *rcf, ngx_str_t *prefix)
{
    u_char  *p;

    if (ngx_http_nb_maint_redis_key(cf, &rcf->key_version, prefix, "version")
        != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->key_state, prefix, "state")
           != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->key_events, prefix, "events")
           != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->key_secret, prefix, "secret")
           != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->channel, prefix,
                                       "changes:db")
           != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->key_gateways, prefix,
                                       "gateways")
           != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->key_active, prefix,
                                       "active:")
           != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->key_failover, prefix,
                                       "failover")
           != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->key_checkers, prefix,
                                       "checkers")
           != NGX_OK
        || ngx_http_nb_maint_redis_key(cf, &rcf->key_checker, prefix,
                                       "checker:")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(cf->pool, rcf->channel.len + NGX_INT_T_LEN + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    rcf->channel.len = ngx_sprintf(p, "%V%i%Z", &rcf->channel,
                                   rcf->db < 0 ? 0 : rcf->db) - p - 1;
    rcf->channel.data = p;

    return NGX_OK;
}


char *
ngx_http_nb_maint_store_redis_init(ngx_conf_t *cf,
    ngx_http_nb_maint_store_t *store, ngx_str_t *url)
{
    u_char                          *p, *end, *q;
    ngx_int_t                        rc;
    ngx_str_t                        prefix, cache, shown;
    ngx_http_nb_maint_redis_conf_t  *rcf;

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_nb_maint_redis_conf_t));
    if (rcf == NULL) {
        return NGX_CONF_ERROR;
    }

    /* every message names the URL without its password */
    if (ngx_http_nb_maint_redis_redact(cf->pool, url, &shown) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    rcf->sentinel = (url->data[5] == '-');
    p = url->data + (rcf->sentinel ? sizeof("redis-sentinel://")
                                   : sizeof("redis://")) - 1;
    end = url->data + url->len;

    ngx_str_set(&prefix, "nb_maint");
    ngx_str_set(&cache, "nb_maint_redis_cache.json");
    rcf->db = -1;
    rcf->wait_ms = 1000;

    q = ngx_strlchr(p, end, '?');

    if (q) {
        rc = ngx_http_nb_maint_redis_query(cf, rcf, q + 1, end, &prefix,
                                           &cache);
        if (rc != NGX_OK) {
            goto failed;
        }

        end = q;
    }

    rc = ngx_http_nb_maint_redis_userinfo(cf, rcf, &p, end);
    if (rc != NGX_OK) {
        goto failed;
    }

    rc = rcf->sentinel
         ? ngx_http_nb_maint_redis_sentinels(cf, rcf, p, end, &shown)
         : ngx_http_nb_maint_redis_server(cf, rcf, p, end, &shown);

    if (rc != NGX_OK) {
        goto failed;
    }

    if (ngx_http_nb_maint_redis_keys(cf, rcf, &prefix) != NGX_OK
        || ngx_http_nb_maint_cache_init(cf, store, &cache) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* a name a sentinel answers: this level's "resolver" (merged later) */
    rcf->clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    ngx_str_set(&store->type, "redis");
    store->data = rcf;
    store->load = ngx_http_nb_maint_redis_load;
    store->save = ngx_http_nb_maint_redis_save;
    store->init_process = ngx_http_nb_maint_redis_init_process;
    store->tick = ngx_http_nb_maint_redis_tick;
    store->exit_process = ngx_http_nb_maint_redis_exit_process;
    store->verdict = ngx_http_nb_maint_redis_verdict;

    return NGX_CONF_OK;

failed:

    if (rc == NGX_DECLINED) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_store\": invalid redis URL \"%V\", "
                           "expected redis://[[user]:password@]host:port[/db]"
                           "[?prefix=name]", &shown);
    }

    return NGX_CONF_ERROR;
}


/* a connection is usable: the subscriber listens, the owner's command
 * connection notes the primary and reads the state */

static void
ngx_http_nb_maint_redis_on_ready(ngx_http_nb_maint_redis_conn_t *conn)
{
    u_char                           old[NB_PRIMARY_LEN],
                                     now[NB_PRIMARY_LEN], *p;
    size_t                           old_len;
    ngx_http_nb_maint_redis_conf_t  *rcf = conn->store->data;

    if (conn->subscriber) {
        ngx_http_nb_maint_redis_subscribe(conn);
        return;
    }

    if (ngx_http_nb_maint_is_owner()) {
        if (ngx_http_nb_maint_redis_primary(rcf, conn->log, old, &old_len)
            == NGX_OK)
        {
            /* a failover: in the audit log, once cluster-wide */
            p = ngx_snprintf(now, sizeof(now), "%s:%d", rcf->host,
                             rcf->port);
            ngx_http_nb_maint_redis_failover_note(conn->store, old, old_len,
                                                  now, p - now);
        }

        ngx_http_nb_maint_redis_sync(conn->store);
    }
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
    ngx_http_nb_maint_redis_cmd.on_ready = ngx_http_nb_maint_redis_on_ready;
    ngx_http_nb_maint_redis_sub.on_ready = ngx_http_nb_maint_redis_on_ready;

    ngx_http_nb_maint_sentinel_init_process(store, cycle);

    if (ngx_http_nb_maint_redis_gate_init(store, cycle) != NGX_OK
        || ngx_http_nb_maint_cache_init_process(store, cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_nb_maint_shm()->store_sentinel = rcf->sentinel;
    ngx_http_nb_maint_shm()->store_replicas_wanted = rcf->min_replicas;

    ngx_http_nb_maint_redis_cmd.wanted = 1;
    ngx_http_nb_maint_redis_connect(&ngx_http_nb_maint_redis_cmd);

    return NGX_OK;
}


/* the owner: subscriber connection and the periodic re-read */

static void
ngx_http_nb_maint_redis_tick(ngx_http_nb_maint_store_t *store,
    ngx_uint_t owner, ngx_log_t *log)
{
    ngx_http_nb_maint_redis_conn_t  *sub = &ngx_http_nb_maint_redis_sub;

    /* the owner watches the sentinels, the others follow it */
    ngx_http_nb_maint_sentinel_tick(store, owner);

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

    /* the local cache, if it is behind (off the event loop) */
    ngx_http_nb_maint_cache_update(store);

    if (!ngx_http_nb_maint_redis_cmd.ready) {
        if (ngx_http_nb_maint_shm()->store_ok
            && ngx_http_nb_maint_redis_cmd.ac == NULL)
        {
            ngx_http_nb_maint_redis_store_down(&ngx_http_nb_maint_redis_cmd,
                                               "not connected");
        }
        return;
    }

    /* a failover not yet in the audit log */
    ngx_http_nb_maint_redis_failover_try(store);

    if (++ngx_http_nb_maint_redis_ticks % 2 == 0) {
        ngx_http_nb_maint_redis_sync(store);
        ngx_http_nb_maint_redis_active(store);
        ngx_http_nb_maint_redis_gate_tick(store);
        ngx_http_nb_maint_redis_probe_script(store);
    }
}


/* the worker exits (also after a reload): every socket closed */

static void
ngx_http_nb_maint_redis_exit_process(ngx_http_nb_maint_store_t *store,
    ngx_cycle_t *cycle)
{
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    if (ngx_http_nb_maint_redis_cmd.store == NULL) {
        return;     /* init_process did not run here */
    }

    ngx_http_nb_maint_redis_close(&ngx_http_nb_maint_redis_cmd);
    ngx_http_nb_maint_redis_close(&ngx_http_nb_maint_redis_sub);

    if (rcf->sentinel) {
        ngx_http_nb_maint_sentinel_exit_process(store);
    }
}
