/*
 * nb_maint: the redis store's writes (SPEC section 8): compare-and-set on
 * the version in a Lua script, answered when Redis replies, then WAIT for
 * the replicas when min_replicas asks for it (issue 12).
 *
 * May call: the redis connections (store_redis_conn.c), what is read
 * back from Redis (store_redis_read.c: a state, the audit list), the local
 * cache (store_cache.c) and the shared state.  No call here ever blocks.
 */

#include "ngx_http_nb_maint_store_redis.h"


/* KEYS: version, state, events, failover marker, restore checkers; ARGV:
 * expected, new version, state, event, channel, message, marker value ("":
 * none), restore gate ("": none, else the restore_started every other live
 * checking gateway must have agreed to: store_redis_gate.c), own name,
 * prefix of a checker's word, its ttl.  A conflict answers {0, version,
 * state}: the writer catches up and, without If-Match, tries again (issue
 * 9, defect 16).  With a marker the write happens once: {2} when the
 * marker holds the value already (a failover another gateway recorded).
 * A gate answers {3, "name name..."} while a checking gateway is awaited.
 * An ACL user lacking a command gets NOPERM before anything is written
 * (Redis 7: a refused command in a script does not undo the ones before) */
static const char  ngx_http_nb_maint_redis_cas[] =
    "local gate = ARGV[8] or '' "
    "if redis.acl_check_cmd then "
    "  local need = {{'set', KEYS[1], '0'}, {'set', KEYS[2], '0'}, "
    "                {'rpush', KEYS[3], '0'}, {'ltrim', KEYS[3], '0', '0'}, "
    "                {'publish', ARGV[5], '0'}} "
    "  if ARGV[7] ~= '' then need[#need + 1] = {'set', KEYS[4], '0'} end "
    "  if gate ~= '' then "
    "    need[#need + 1] = {'sadd', KEYS[5], '0'} "
    "    need[#need + 1] = {'srem', KEYS[5], '0'} "
    "    need[#need + 1] = {'set', ARGV[10] .. ARGV[9], '0'} "
    "  end "
    "  for _, c in ipairs(need) do "
    "    if not redis.acl_check_cmd(unpack(c)) then "
    "      return redis.error_reply(\"NOPERM this user has no permissions "
    "to run the '\" .. c[1] .. \"' command on '\" .. c[2] .. \"'\") "
    "    end "
    "  end "
    "end "
    "if ARGV[7] ~= '' and redis.call('GET', KEYS[4]) == ARGV[7] then "
    "  return {2} "
    "end "
    "if gate ~= '' then "
    "  local agreed = gate .. ' 0' "
    "  redis.call('SET', ARGV[10] .. ARGV[9], agreed, 'PX', ARGV[11]) "
    "  redis.call('SADD', KEYS[5], ARGV[9]) "
    "  local w = {} "
    "  for _, gw in ipairs(redis.call('SMEMBERS', KEYS[5])) do "
    "    if gw ~= ARGV[9] then "
    "      local v = redis.call('GET', ARGV[10] .. gw) "
    "      if not v then redis.call('SREM', KEYS[5], gw) "
    "      elseif v ~= agreed then w[#w + 1] = gw end "
    "    end "
    "  end "
    "  if #w > 0 then return {3, table.concat(w, ' ')} end "
    "end "
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
    "if ARGV[7] ~= '' then redis.call('SET', KEYS[4], ARGV[7]) end "
    "redis.call('PUBLISH', ARGV[5], ARGV[6]) "
    "return {1, ARGV[2]}";


/* writes: compare-and-set on the version, answered by Redis */

/* EVAL, the script and its keys */

static void
ngx_http_nb_maint_redis_cas_keys(ngx_http_nb_maint_redis_conf_t *rcf,
    ngx_http_nb_maint_redis_args_t *a)
{
    a->n = 0;
    nb_arg_lit(a, "EVAL");
    nb_arg_lit(a, ngx_http_nb_maint_redis_cas);
    nb_arg_lit(a, "5");
    nb_arg_str(a, &rcf->key_version);
    nb_arg_str(a, &rcf->key_state);
    nb_arg_str(a, &rcf->key_events);
    nb_arg_str(a, &rcf->key_failover);
    nb_arg_str(a, &rcf->key_checkers);
}


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

    /* WAIT holds the connection up to wait_ms: its own timer and those of
     * the commands behind it count that in */
    ngx_http_nb_maint_redis_blocking(op->conn, rcf->wait_ms);

    if (ngx_http_nb_maint_redis_send(w, &a) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the change is in Redis: ours too; NGX_AGAIN while WAIT is asked */

static ngx_int_t
ngx_http_nb_maint_redis_applied(ngx_http_nb_maint_redis_op_t *op)
{
    uint64_t                         have;
    ngx_http_nb_maint_store_t       *store = op->conn->store;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    ngx_http_nb_maint_redis_perm_ok(NB_REDIS_PERM_SCRIPT);

    have = ngx_http_nb_maint_snapshot()->version;

    if (ngx_http_nb_maint_state_apply(store, &op->st, &op->event,
                                      op->conn->log)
        == NGX_OK
        && op->st.version > have + 1)
    {
        /* changes in between reached Redis before us */
        ngx_http_nb_maint_redis_fetch_events(store);
    }

    ngx_http_nb_maint_cache_update(store);

    if (rcf->min_replicas && !op->once
        && ngx_http_nb_maint_redis_wait(op) == NGX_OK)
    {
        return NGX_AGAIN;     /* WAIT answers */
    }

    return NGX_OK;
}


static void
ngx_http_nb_maint_redis_saved(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    ngx_int_t   rc;
    ngx_log_t  *log = op->conn->log;

    rc = NGX_ERROR;

    if (reply == NULL) {
        /* no answer: NGX_ERROR */

    } else if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "nb_maint: redis refused the change: %V",
                      ngx_http_nb_maint_redis_log_str(reply->str, reply->len));

        if (ngx_strncmp(reply->str, "READONLY", 8) == 0 && op->conn->ac) {
            /* a replica now: find the primary again */
            redisAsyncDisconnect(op->conn->ac);

        } else if (ngx_http_nb_maint_redis_is_noperm(reply->str, reply->len)) {
            /* store.error, and so the answer, say which permission */
            ngx_http_nb_maint_redis_noperm(op->conn, NB_REDIS_PERM_SCRIPT,
                                           reply->str, reply->len);
        }

    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1
               && reply->element[0]->type == REDIS_REPLY_INTEGER)
    {
        if (reply->element[0]->integer == 2) {
            rc = NGX_DONE;      /* the marker: written once already */

        } else if (reply->element[0]->integer == 3 && reply->elements == 2) {
            /* the restore gate: other checking gateways still awaited */
            ngx_http_nb_maint_redis_awaited(reply->element + 1, 1, -1);
            rc = NGX_BUSY;

        } else if (reply->elements < 2) {
            /* malformed: NGX_ERROR */

        } else if (reply->element[0]->integer == 1) {
            rc = ngx_http_nb_maint_redis_applied(op);

            if (rc == NGX_AGAIN) {
                return;
            }

        } else {
            rc = ngx_http_nb_maint_redis_conflict(op, reply);
        }
    }

    op->done(op->data, rc);
}


/*
 * The compare-and-set script for st on expected (and marker, if any): the
 * op answers done(data, rc) once Redis replied.
 */

static ngx_int_t
ngx_http_nb_maint_redis_cas_send(ngx_http_nb_maint_store_t *store,
    uint64_t expected, ngx_http_nb_maint_state_t *st, ngx_str_t *event,
    ngx_str_t *marker, ngx_log_t *log, ngx_http_nb_maint_store_done_pt done,
    void *data)
{
    u_char                          *msg, *ev, exp[NGX_INT64_LEN],
                                     ver[NGX_INT64_LEN], gate[NGX_INT64_LEN],
                                     ttl[NGX_INT_T_LEN];
    char                            *state;
    size_t                           slen;
    ngx_int_t                        rc;
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

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
    op->once = (marker != NULL);
    op->st = *st;
    op->event.data = ev;
    op->event.len = ngx_cpymem(ev, event->data, event->len) - ev;

    ngx_http_nb_maint_redis_cas_keys(rcf, &a);

    nb_arg(&a, exp, ngx_sprintf(exp, "%uL", expected) - exp);
    nb_arg(&a, ver, ngx_sprintf(ver, "%uL", st->version) - ver);
    nb_arg(&a, state, slen);
    nb_arg_str(&a, event);
    nb_arg_str(&a, &rcf->channel);
    nb_arg(&a, msg, ngx_sprintf(msg, "{\"state\":%s,\"event\":%V}", state,
                                event) - msg);

    if (marker) {
        nb_arg_str(&a, marker);

    } else {
        nb_arg_lit(&a, "");
    }

    /* the end of a restore: every other checking gateway agreed */

    if (store->gate) {
        nb_arg(&a, gate, ngx_sprintf(gate, "%M", store->gate) - gate);
        nb_arg_str(&a, &rcf->gateway);
        nb_arg_str(&a, &rcf->key_checker);
        nb_arg(&a, ttl, ngx_sprintf(ttl, "%d", NB_GATE_TTL) - ttl);
    }

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


ngx_int_t
ngx_http_nb_maint_redis_save(ngx_http_nb_maint_store_t *store,
    uint64_t expected, ngx_http_nb_maint_state_t *st, ngx_str_t *event,
    ngx_log_t *log, ngx_http_nb_maint_store_done_pt done, void *data)
{
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    if (!ngx_http_nb_maint_redis_cmd.ready) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "nb_maint: redis %V is not connected", &rcf->url);
        return NGX_ERROR;
    }

    return ngx_http_nb_maint_redis_cas_send(store, expected, st, event, NULL,
                                            log, done, data);
}


/*
 * A failover in the audit log (issue 12): the owner that finds the primary
 * moved records "store_failover", a version with the state unchanged.
 * Every gateway's owner sees the same failover; the CAS script's marker
 * (P:failover = the new primary) lets only the first one write it, so it
 * is recorded once cluster-wide.  Recorded as a change so that it has a
 * version, travels with the audit list and reaches every gateway.
 */

#define NB_FAILOVER_TRIES  20

typedef struct {
    ngx_http_nb_maint_store_t  *store;
    ngx_uint_t                  pending;
    ngx_uint_t                  synced;
    ngx_uint_t                  busy;
    ngx_uint_t                  tries;
    ngx_str_t                   to;
    u_char                      from_buf[NGX_SOCKADDR_STRLEN + 8];
    u_char                      to_buf[NGX_SOCKADDR_STRLEN + 8];
    size_t                      from_len;
} ngx_http_nb_maint_failover_t;


static ngx_http_nb_maint_failover_t  ngx_http_nb_maint_failover;


/* {"version","time","actor","action","from","to","node","reason"}: from
 * and to are the mode (unchanged), the reason names both primaries */

static char *
ngx_http_nb_maint_failover_event(ngx_http_nb_maint_failover_t *fo,
    ngx_http_nb_maint_state_t *st)
{
    u_char                          *p, t[32], why[2 * NGX_SOCKADDR_STRLEN
                                                  + 128];
    char                            *s;
    cJSON                           *ev;
    ngx_http_nb_maint_redis_conf_t  *rcf = fo->store->data;

    ev = cJSON_CreateObject();
    if (ev == NULL) {
        return NULL;
    }

    p = ngx_http_nb_maint_time_rfc3339(t, ngx_time());
    *p = '\0';

    p = ngx_snprintf(why, sizeof(why), "redis primary of \"%V\" moved from "
                     "%*s to %V", &rcf->master_name, fo->from_len,
                     fo->from_buf, &fo->to);

    cJSON_AddItemToObject(ev, "version",
                          ngx_http_nb_maint_json_version(st->version));
    cJSON_AddStringToObject(ev, "time", (char *) t);
    cJSON_AddStringToObject(ev, "actor", "nb_maint");
    cJSON_AddStringToObject(ev, "action", "store_failover");
    cJSON_AddStringToObject(ev, "from", ngx_http_nb_maint_mode_name(st->mode));
    cJSON_AddStringToObject(ev, "to", ngx_http_nb_maint_mode_name(st->mode));
    cJSON_AddNullToObject(ev, "node");
    cJSON_AddItemToObject(ev, "reason",
                          ngx_http_nb_maint_json_strn(why, p - why));

    s = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);

    return s;
}


static void ngx_http_nb_maint_failover_done(void *data, ngx_int_t rc);


void
ngx_http_nb_maint_redis_failover_try(ngx_http_nb_maint_store_t *store)
{
    char                          *s;
    ngx_int_t                      rc;
    ngx_str_t                      event;
    ngx_http_nb_maint_state_t      st;
    ngx_http_nb_maint_failover_t  *fo = &ngx_http_nb_maint_failover;

    if (!fo->pending || !fo->synced || fo->busy
        || !ngx_http_nb_maint_redis_cmd.ready)
    {
        return;
    }

    st = *ngx_http_nb_maint_snapshot();

    if (st.version >= NB_VERSION_MAX) {
        fo->pending = 0;
        return;
    }

    st.version++;

    s = ngx_http_nb_maint_failover_event(fo, &st);
    if (s == NULL) {
        return;
    }

    event.data = (u_char *) s;
    event.len = ngx_strlen(s);

    rc = ngx_http_nb_maint_redis_cas_send(store, st.version - 1, &st, &event,
                                          &fo->to, ngx_cycle->log,
                                          ngx_http_nb_maint_failover_done, fo);
    cJSON_free(s);

    if (rc == NGX_AGAIN) {
        fo->busy = 1;
    }
}


static void
ngx_http_nb_maint_failover_done(void *data, ngx_int_t rc)
{
    ngx_http_nb_maint_failover_t *fo = data;

    fo->busy = 0;

    switch (rc) {

    case NGX_OK:
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "nb_maint: store_failover to %V recorded as version %uL",
                      &fo->to, ngx_http_nb_maint_snapshot()->version);
        fo->pending = 0;
        return;

    case NGX_DONE:
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "nb_maint: store_failover to %V was recorded by "
                      "another gateway", &fo->to);
        fo->pending = 0;
        return;

    default:
        if (++fo->tries >= NB_FAILOVER_TRIES) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "nb_maint: store_failover to %V not recorded "
                          "after %d tries", &fo->to, NB_FAILOVER_TRIES);
            fo->pending = 0;
            return;
        }

        if (rc == NGX_DECLINED) {
            /* caught up with another write: at once on the new version */
            ngx_http_nb_maint_redis_failover_try(fo->store);
        }

        /* else on the next tick */
    }
}


/* the owner found the primary moved: from -> to ("host:port") */

void
ngx_http_nb_maint_redis_failover_note(ngx_http_nb_maint_store_t *store,
    u_char *from, size_t from_len, u_char *to, size_t to_len)
{
    ngx_http_nb_maint_failover_t  *fo = &ngx_http_nb_maint_failover;

    if (fo->busy) {
        /* the one in flight names an older primary: it stays as it is */
        return;
    }

    fo->store = store;
    fo->pending = 1;
    fo->synced = 0;
    fo->tries = 0;
    fo->from_len = ngx_min(from_len, sizeof(fo->from_buf));
    ngx_memcpy(fo->from_buf, from, fo->from_len);
    fo->to.len = ngx_min(to_len, sizeof(fo->to_buf));
    fo->to.data = fo->to_buf;
    ngx_memcpy(fo->to_buf, to, fo->to.len);

    /* recorded once this gateway has read the new primary (failover_synced) */
}


/*
 * The first read of the new primary is done: our state is Redis' now, or
 * a resync write taking Redis' state is ahead of ours on the same
 * connection.  Only now may the record, a compare-and-set of our state
 * plus one version, be sent: before, our state may hold changes no
 * replica confirmed, and the record would write them over acknowledged
 * ones (t/172).  A conflict catches up and tries again.
 */

void
ngx_http_nb_maint_redis_failover_synced(ngx_http_nb_maint_store_t *store)
{
    ngx_http_nb_maint_failover_t  *fo = &ngx_http_nb_maint_failover;

    if (!fo->pending || fo->synced) {
        return;
    }

    fo->synced = 1;

    ngx_http_nb_maint_redis_failover_try(store);
}


/*
 * While a script was refused (NOPERM), the owner tries the CAS script now
 * and then on a version that never matches: it writes nothing, and an
 * answer other than NOPERM means the permission is back (store.ok again
 * without waiting for a write).
 */

static void
ngx_http_nb_maint_redis_probed(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        if (ngx_http_nb_maint_redis_is_noperm(reply->str, reply->len)) {
            ngx_http_nb_maint_redis_noperm(op->conn, NB_REDIS_PERM_SCRIPT,
                                           reply->str, reply->len);
        }
        return;
    }

    ngx_http_nb_maint_redis_perm_ok(NB_REDIS_PERM_SCRIPT);
}


void
ngx_http_nb_maint_redis_probe_script(ngx_http_nb_maint_store_t *store)
{
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    if (!(ngx_http_nb_maint_redis_perm_refused() & NB_REDIS_PERM_SCRIPT)
        || !ngx_http_nb_maint_redis_cmd.ready)
    {
        return;
    }

    op = ngx_http_nb_maint_redis_op(&ngx_http_nb_maint_redis_cmd,
                                    ngx_http_nb_maint_redis_probed);
    if (op == NULL) {
        return;
    }

    ngx_http_nb_maint_redis_cas_keys(rcf, &a);
    nb_arg_lit(&a, "-1");         /* no version is "-1": a conflict */
    nb_arg_lit(&a, "0");
    nb_arg_lit(&a, "");
    nb_arg_lit(&a, "");
    nb_arg_str(&a, &rcf->channel);
    nb_arg_lit(&a, "");
    nb_arg_lit(&a, "");           /* no marker */

    (void) ngx_http_nb_maint_redis_send(op, &a);
}


/*
 * After a failover (min_replicas > 0) the new primary is the authority:
 * versions this gateway holds beyond it, or a version it holds with other
 * content, were never confirmed by a replica (they answered 503
 * store_unreplicated) while Redis may hold acknowledged changes with the
 * same numbers.  Take Redis' state and write it again as our version + 1,
 * so that versions only move forward everywhere, then take Redis' audit
 * list (our unconfirmed lines leave the ring).  NGX_DECLINED: nothing to do.
 */

static void
ngx_http_nb_maint_redis_resynced(void *data, ngx_int_t rc)
{
    ngx_http_nb_maint_redis_fetch_events(data);
}


static ngx_int_t
ngx_http_nb_maint_redis_same(ngx_http_nb_maint_state_t *a,
    ngx_http_nb_maint_state_t *b)
{
    char       *sa, *sb;
    ngx_int_t   rc;

    sa = ngx_http_nb_maint_state_serialize(a, 0);
    sb = ngx_http_nb_maint_state_serialize(b, 0);

    /* unknown counts as the same: never write on a failed allocation */
    rc = (sa == NULL || sb == NULL || ngx_strcmp(sa, sb) == 0);

    cJSON_free(sa);
    cJSON_free(sb);

    return rc;
}


ngx_int_t
ngx_http_nb_maint_redis_resync(ngx_http_nb_maint_store_t *store, uint64_t v,
    const char *s, size_t len, ngx_log_t *log)
{
    u_char                     t[32], *p, buf[256];
    uint64_t                   mine;
    ngx_str_t                  ev;
    ngx_http_nb_maint_state_t  st, *have;

    have = ngx_http_nb_maint_snapshot();
    mine = have->version;

    if (v > mine
        || ngx_http_nb_maint_redis_parse_state(store, s, len, &st, log)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    st.version = v;

    if (v == mine && ngx_http_nb_maint_redis_same(&st, have)) {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "nb_maint: redis (after a failover?) holds version %uL "
                  "and this gateway %uL, not confirmed by a replica: "
                  "taking redis' state as version %uL", v, mine, mine + 1);

    p = ngx_http_nb_maint_time_rfc3339(t, ngx_time());
    *p = '\0';

    st.version = mine + 1;

    ev.data = buf;
    ev.len = ngx_snprintf(buf, sizeof(buf),
                          "{\"version\":%uL,\"time\":\"%s\",\"actor\":"
                          "\"nb_maint\",\"action\":\"store_resync\","
                          "\"from\":\"%s\",\"to\":\"%s\",\"node\":null,"
                          "\"reason\":null}", st.version, t,
                          ngx_http_nb_maint_mode_name(st.mode),
                          ngx_http_nb_maint_mode_name(st.mode))
             - buf;

    (void) ngx_http_nb_maint_redis_save(store, v, &st, &ev, log,
                                        ngx_http_nb_maint_redis_resynced,
                                        store);

    return NGX_OK;
}
