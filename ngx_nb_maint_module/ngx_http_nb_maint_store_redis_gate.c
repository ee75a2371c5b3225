/*
 * nb_maint: the cluster-wide restore gate on the redis store (SPEC section
 * 10a, issue 21 item 3; doc/redis-store.md, "The restore gate").
 *
 * Every gateway that checks nodes keeps its word on the restore in Redis:
 * P:checker:<gateway> = "<restore_started> <pending>" (milliseconds, and
 * how many of its nodes are still pending), expiring after NB_GATE_TTL ms,
 * and its name in the set P:checkers.  The end of a restore is a
 * compare-and-set that also checks that every other live checker says
 * "<restore_started> 0" (store_redis_write.c); a gateway whose word
 * expired (stopped, cut off from Redis) is not waited for.
 *
 * Owns: this gateway's name and word, the owner's periodic registration,
 * and what status shows (the gateways still awaited).  May call: the
 * redis connections (store_redis_conn.c) and the shared state.  No call
 * here ever blocks.
 */

#include "ngx_http_nb_maint_store_redis.h"


/* this gateway's word, as the owner's restore code gave it last */
static ngx_uint_t  ngx_http_nb_maint_gate_checking;
static ngx_msec_t  ngx_http_nb_maint_gate_started;
static ngx_uint_t  ngx_http_nb_maint_gate_pending;
static ngx_uint_t  ngx_http_nb_maint_gate_busy;


/*
 * KEYS: the checkers set; ARGV: key prefix of a word, own name ("": this
 * gateway checks no node, it only looks), own word, ttl (ms), the restore
 * under way ("": none).  Answers {live checkers but us, awaited names...}:
 * the live checkers whose word is not "<restore> 0"; expired names leave
 * the set.
 */
static const char  ngx_http_nb_maint_redis_gate_lua[] =
    "if ARGV[2] ~= '' then "
    "  redis.call('SET', ARGV[1] .. ARGV[2], ARGV[3], 'PX', ARGV[4]) "
    "  redis.call('SADD', KEYS[1], ARGV[2]) "
    "end "
    "local r = {0} "
    "for _, gw in ipairs(redis.call('SMEMBERS', KEYS[1])) do "
    "  if gw ~= ARGV[2] then "
    "    local v = redis.call('GET', ARGV[1] .. gw) "
    "    if not v then redis.call('SREM', KEYS[1], gw) "
    "    else "
    "      r[1] = r[1] + 1 "
    "      if ARGV[5] ~= '' and v ~= ARGV[5] .. ' 0' then r[#r + 1] = gw end "
    "    end "
    "  end "
    "end "
    "return r";


/* at worker start: "hostname:master pid", as in the in-flight counts */

ngx_int_t
ngx_http_nb_maint_redis_gate_init(ngx_http_nb_maint_store_t *store,
    ngx_cycle_t *cycle)
{
    u_char                          *p;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    p = ngx_pnalloc(cycle->pool, cycle->hostname.len + NGX_INT64_LEN + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    rcf->gateway.data = p;
    rcf->gateway.len = ngx_sprintf(p, "%V:%P", &cycle->hostname, ngx_parent)
                       - p;

    return NGX_OK;
}


/* the store's verdict hook: the owner's word, sent with the next tick */

void
ngx_http_nb_maint_redis_verdict(ngx_http_nb_maint_store_t *store,
    ngx_uint_t checking, ngx_msec_t restore_started, ngx_uint_t pending)
{
    ngx_http_nb_maint_gate_checking = checking;
    ngx_http_nb_maint_gate_started = restore_started;
    ngx_http_nb_maint_gate_pending = pending;
}


/* what status shows: names[0..n) are awaited; checkers live but us */

void
ngx_http_nb_maint_redis_awaited(redisReply **names, size_t n,
    ngx_int_t checkers)
{
    u_char                   *p, *end;
    size_t                    i;
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    ngx_http_nb_maint_publish_lock();

    p = sh->restore_awaited;
    end = p + NB_STORE_ERROR_LEN;

    for (i = 0; i < n; i++) {
        if (names[i]->type != REDIS_REPLY_STRING
            || (size_t) (end - p) < names[i]->len + 1)
        {
            continue;
        }

        if (p != sh->restore_awaited) {
            *p++ = ' ';
        }

        p = ngx_cpymem(p, names[i]->str, names[i]->len);
    }

    sh->restore_awaited_len = p - sh->restore_awaited;

    if (checkers >= 0) {
        sh->restore_checkers = checkers;
    }

    ngx_http_nb_maint_publish_unlock();
}


static void
ngx_http_nb_maint_redis_gate_seen(ngx_http_nb_maint_redis_op_t *op,
    redisReply *reply)
{
    ngx_http_nb_maint_gate_busy = 0;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_http_nb_maint_redis_ignore(op, reply);
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements < 1
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        return;
    }

    ngx_http_nb_maint_redis_awaited(reply->element + 1, reply->elements - 1,
                                    (ngx_int_t) reply->element[0]->integer);
}


/* the owner, about every second: our word out, the others' in */

void
ngx_http_nb_maint_redis_gate_tick(ngx_http_nb_maint_store_t *store)
{
    u_char                           word[2 * NGX_INT64_LEN + 2],
                                     ttl[NGX_INT_T_LEN],
                                     started[NGX_INT64_LEN];
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_args_t   a;
    ngx_http_nb_maint_redis_conf_t  *rcf = store->data;

    if (ngx_http_nb_maint_gate_busy || !ngx_http_nb_maint_redis_cmd.ready
        || rcf->gateway.len == 0)
    {
        return;
    }

    op = ngx_http_nb_maint_redis_op(&ngx_http_nb_maint_redis_cmd,
                                    ngx_http_nb_maint_redis_gate_seen);
    if (op == NULL) {
        return;
    }

    a.n = 0;
    nb_arg_lit(&a, "EVAL");
    nb_arg_lit(&a, ngx_http_nb_maint_redis_gate_lua);
    nb_arg_lit(&a, "1");
    nb_arg_str(&a, &rcf->key_checkers);
    nb_arg_str(&a, &rcf->key_checker);

    if (ngx_http_nb_maint_gate_checking) {
        nb_arg_str(&a, &rcf->gateway);

    } else {
        nb_arg_lit(&a, "");
    }

    nb_arg(&a, word, ngx_sprintf(word, "%M %ui",
                                 ngx_http_nb_maint_gate_started,
                                 ngx_http_nb_maint_gate_pending) - word);
    nb_arg(&a, ttl, ngx_sprintf(ttl, "%d", NB_GATE_TTL) - ttl);

    if (ngx_http_nb_maint_gate_started) {
        nb_arg(&a, started, ngx_sprintf(started, "%M",
                                        ngx_http_nb_maint_gate_started)
                            - started);
    } else {
        nb_arg_lit(&a, "");
    }

    if (ngx_http_nb_maint_redis_send(op, &a) == NGX_OK) {
        ngx_http_nb_maint_gate_busy = 1;
    }
}
