/*
 * nb_maint: the redis store's reads (SPEC section 8): states and events
 * coming from Redis, the change channel (pub/sub), the owner's periodic
 * re-read (MGET), re-publishing our state when Redis lost it, the cookie
 * key, and the cluster-wide in-flight counts.
 *
 * May call: the redis connections (store_redis_conn.c), what is read
 * back (store_redis_read.c), the writes (store_redis_write.c: a resync,
 * the failover record), the local cache (store_cache.c), the shared state
 * and JSON.  No call here ever blocks.
 */

#include "ngx_http_nb_maint_store_redis.h"


static ngx_uint_t  ngx_http_nb_maint_redis_syncing;


/*
 * Redis lost our state (restarted empty, or from an old snapshot): put it
 * back, highest version wins, with the events Redis lacks.  Versions are
 * compared as decimal strings (shorter is less, then byte by byte): Lua's
 * numbers are doubles, exact only up to 2^53 (issue 21, item 11).
 * KEYS: version, state, events; ARGV: version, state, channel, message,
 * event, ... (oldest first)
 */
static const char  ngx_http_nb_maint_redis_republish_lua[] =
    "local function norm(s) "
    "  s = string.match(s or '', '^0*(%d+)$') "
    "  if s == nil or s == '' then return '0' end "
    "  return s "
    "end "
    "local function lt(a, b) "
    "  if #a ~= #b then return #a < #b end "
    "  return a < b "
    "end "
    "local cur = norm(redis.call('GET', KEYS[1]) or '0') "
    "if not lt(cur, norm(ARGV[1])) then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[1]) "
    "redis.call('SET', KEYS[2], ARGV[2]) "
    "local function ver(s) "
    "  return norm(string.match(s, '\"version\":(%d+)')) "
    "end "
    "local last = '0' "
    "local tail = redis.call('LINDEX', KEYS[3], -1) "
    "if tail then last = ver(tail) end "
    "for i = 5, #ARGV do "
    "  local v = ver(ARGV[i]) "
    "  if lt(last, v) then redis.call('RPUSH', KEYS[3], ARGV[i]); last = v end "
    "end "
    "redis.call('LTRIM', KEYS[3], " NB_REDIS_EVENTS_KEEP ", -1) "
    "redis.call('PUBLISH', ARGV[3], ARGV[4]) "
    "return 1";


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

    /* we missed changes, or a gateway re-synced after a failover (our
     * lines below it may be unconfirmed ones): take Redis' audit log */

    if (ngx_http_nb_maint_state_apply(store, &st, &e, log) == NGX_OK
        && (st.version > have + 1
            || (ev && ngx_strstr(ev, "\"action\":\"store_resync\"") != NULL)))
    {
        ngx_http_nb_maint_redis_fetch_events(store);
    }

    /* also when another worker of this gateway applied it first */
    ngx_http_nb_maint_cache_update(store);

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
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    if (ngx_strcmp(reply->element[0]->str, "subscribe") == 0) {
        ngx_http_nb_maint_redis_perm_ok(NB_REDIS_PERM_SUBSCRIBE);
        return;
    }

    if (reply->element[2]->type != REDIS_REPLY_STRING
        || ngx_strcmp(reply->element[0]->str, "message") != 0)
    {
        return;
    }

    ngx_http_nb_maint_redis_apply_message(conn->store, reply->element[2]->str,
                                          reply->element[2]->len, conn->log);
}


/* the subscriber connection is ready: listen to the change channel */

void
ngx_http_nb_maint_redis_subscribe(ngx_http_nb_maint_redis_conn_t *conn)
{
    ngx_http_nb_maint_redis_conf_t  *rcf = conn->store->data;

    (void) redisAsyncCommand(conn->ac, ngx_http_nb_maint_redis_message,
                             conn, "SUBSCRIBE %s", rcf->channel.data);
}


/* the owner's periodic read: MGET version state secret */

/* the audit events we hold, copied out of the ring (oldest first) into
 * argv from *argc on; the copy is malloc'ed (NULL: out of memory) */

static u_char *
ngx_http_nb_maint_redis_ring_args(const char **argv, size_t *argvlen,
    ngx_uint_t *argc)
{
    u_char      *buf, *p;
    size_t       evlen;
    ngx_str_t   *ev;
    ngx_uint_t   k, n, from;

    /* copied out of the zone first: nothing shared is held here */

    if (ngx_http_nb_maint_events_copy(&ev, &n, NULL, ngx_cycle->log)
        != NGX_OK)
    {
        return NULL;
    }

    from = (n > NB_EVENTS_MAX - 1) ? n - (NB_EVENTS_MAX - 1) : 0;

    for (evlen = 0, k = from; k < n; k++) {
        evlen += ev[k].len;
    }

    buf = ngx_alloc(evlen + 1, ngx_cycle->log);
    p = buf;

    for (k = from; buf && k < n; k++) {
        argv[*argc] = (char *) p;
        argvlen[(*argc)++] = ev[k].len;
        p = ngx_cpymem(p, ev[k].data, ev[k].len);
    }

    ngx_http_nb_maint_events_free(ev);

    return buf;
}


static void
ngx_http_nb_maint_redis_republish(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_state_t *st)
{
    u_char                          *msg, *buf, ver[NGX_INT64_LEN];
    char                            *state;
    size_t                           slen, *argvlen;
    ngx_uint_t                       argc;
    const char                     **argv;
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    state = ngx_http_nb_maint_state_serialize(st, 0);
    if (state == NULL) {
        return;
    }

    slen = ngx_strlen(state);

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

    buf = ngx_http_nb_maint_redis_ring_args(argv, argvlen, &argc);

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


/* the version key: 0 when none, NGX_ERROR when malformed */

static ngx_int_t
ngx_http_nb_maint_redis_version(ngx_http_nb_maint_redis_conf_t *rcf,
    redisReply *ver, ngx_log_t *log)
{
    ngx_int_t  v;

    if (ver->type != REDIS_REPLY_STRING) {
        return 0;
    }

    v = ngx_atoi((u_char *) ver->str, ver->len);

    if (v == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "nb_maint: malformed value in redis key \"%V\": "
                      "\"%V\", keeping ours", &rcf->key_version,
                      ngx_http_nb_maint_redis_log_str(ver->str, ver->len));
        ngx_http_nb_maint_set_store_status(0, "malformed value in redis "
                                           "key \"%V\"", &rcf->key_version);
    }

    return v;
}


/* Redis is ahead of us: take its state, then its audit list */

static ngx_int_t
ngx_http_nb_maint_redis_catch_up(ngx_http_nb_maint_store_t *store,
    ngx_int_t v, redisReply *state, ngx_log_t *log)
{
    ngx_http_nb_maint_state_t  st;

    if (state->type != REDIS_REPLY_STRING
        || ngx_http_nb_maint_redis_parse_state(store, state->str, state->len,
                                               &st, log)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    st.version = v;

    ngx_log_error(NGX_LOG_INFO, log, 0,
                  "nb_maint: redis is at version %i, catching up", v);

    (void) ngx_http_nb_maint_state_apply(store, &st, NULL, log);
    ngx_http_nb_maint_redis_fetch_events(store);
    ngx_http_nb_maint_cache_update(store);

    return NGX_OK;
}


/* an error answer: a missing permission is said as such; down: any other
 * error makes the store unavailable */

static void
ngx_http_nb_maint_redis_refused(ngx_http_nb_maint_redis_conn_t *conn,
    redisReply *reply, ngx_uint_t what, ngx_uint_t down)
{
    ngx_log_error(NGX_LOG_ERR, conn->log, 0, "nb_maint: redis: %V",
                  ngx_http_nb_maint_redis_log_str(reply->str, reply->len));

    if (ngx_http_nb_maint_redis_is_noperm(reply->str, reply->len)) {
        ngx_http_nb_maint_redis_noperm(conn, what, reply->str, reply->len);
        return;
    }

    if (down) {
        ngx_http_nb_maint_redis_store_down(conn, reply->str);
    }
}


/*
 * Redis' version and state against ours: take Redis' (after a failover
 * with min_replicas, or when newer), or put ours back (Redis lost it).
 * NGX_ERROR: nothing settled, the next sync tries again.
 */

static ngx_int_t
ngx_http_nb_maint_redis_reconcile(ngx_http_nb_maint_store_t *store,
    redisReply *ver, redisReply *state, ngx_log_t *log)
{
    ngx_int_t                        v;
    ngx_http_nb_maint_state_t        st, *have;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    v = ngx_http_nb_maint_redis_version(rcf, ver, log);
    if (v == NGX_ERROR) {
        return NGX_ERROR;
    }

    have = ngx_http_nb_maint_snapshot();

    /* min_replicas: the new primary wins over our unconfirmed versions */

    if (rcf->min_replicas && ver->type == REDIS_REPLY_STRING
        && state->type == REDIS_REPLY_STRING
        && ngx_http_nb_maint_redis_resync(store, v, state->str, state->len,
                                          log)
           != NGX_DECLINED)
    {
        return NGX_OK;
    }

    if ((uint64_t) v < have->version) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "nb_maint: redis has version %i, this gateway has "
                      "%uL (redis lost data?): re-publishing ours", v,
                      have->version);
        st = *have;
        ngx_http_nb_maint_redis_republish(store, &st);
        return NGX_OK;
    }

    if ((uint64_t) v > have->version) {
        return ngx_http_nb_maint_redis_catch_up(store, v, state, log);
    }

    return NGX_OK;
}


/* a sync settled: what waited for it, and store.ok */

static void
ngx_http_nb_maint_redis_settled(ngx_http_nb_maint_store_t *store,
    ngx_log_t *log)
{
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    ngx_http_nb_maint_redis_perm_ok(NB_REDIS_PERM_OTHER);

    ngx_http_nb_maint_redis_fetch_stale_events(store);

    /* a failover noted by the owner is recorded only after this read */
    ngx_http_nb_maint_redis_failover_synced(store);

    /* a refused SUBSCRIBE or script keeps saying so in store.error */

    if (!ngx_http_nb_maint_shm()->store_ok
        && !ngx_http_nb_maint_redis_perm_refused())
    {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "nb_maint: redis store %V is available", &rcf->url);
        ngx_http_nb_maint_set_store_status(1, NULL);
    }
}


static void
ngx_http_nb_maint_redis_synced(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    redisReply                 *secret;
    ngx_http_nb_maint_store_t  *store = op->conn->store;
    ngx_log_t                  *log = op->conn->log;

    ngx_http_nb_maint_redis_syncing = 0;

    if (reply == NULL) {
        ngx_http_nb_maint_redis_store_down(op->conn, "no answer");
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_nb_maint_redis_refused(op->conn, reply, NB_REDIS_PERM_OTHER,
                                        1);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        return;
    }

    /* the cookie key: Redis' wins, ours fills an empty Redis */

    secret = reply->element[2];

    if (secret->type == REDIS_REPLY_STRING) {
        ngx_http_nb_maint_redis_take_secret(store, secret, log);

    } else if (secret->type == REDIS_REPLY_NIL
               && ngx_http_nb_maint_shm()->secret_set)
    {
        ngx_http_nb_maint_redis_keep_secret(store);
    }

    if (ngx_http_nb_maint_redis_reconcile(store, reply->element[0],
                                          reply->element[1], log)
        != NGX_OK)
    {
        return;
    }

    ngx_http_nb_maint_redis_settled(store, log);
}


void
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

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_http_nb_maint_redis_refused(op->conn, reply,
                                        NB_REDIS_PERM_SCRIPT, 0);
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return;
    }

    ngx_http_nb_maint_redis_perm_ok(NB_REDIS_PERM_SCRIPT);

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


void
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
