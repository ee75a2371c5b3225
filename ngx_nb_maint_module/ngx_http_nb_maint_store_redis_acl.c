/*
 * nb_maint: the redis store's ACL permissions (issue 12): a NOPERM answer
 * becomes a clear store.error (and so the message of a refused write),
 * naming the Redis user, the refused command and what to grant.
 *
 * Owns the shared-memory bits of refused kinds of commands.  May call: the
 * shared state only (store status); called by the redis connections and
 * commands.  No call here ever blocks.
 */

#include "ngx_http_nb_maint_store_redis.h"


/*
 * A permission the ACL user lacks (a NOPERM answer): said in store.error,
 * naming the user, what was refused and what to grant.  The kind of
 * command refused (NB_REDIS_PERM_*) is kept in shared memory until one
 * like it works again, so that the owner's re-read does not say store.ok
 * meanwhile.
 */

ngx_uint_t
ngx_http_nb_maint_redis_is_noperm(const char *s, size_t len)
{
    return (len >= 6 && ngx_strncmp(s, "NOPERM", 6) == 0)
           || ngx_strlcasestrn((u_char *) s, (u_char *) s + len,
                               (u_char *) "no permissions", 14 - 1)
              != NULL;
}


static const char *
ngx_http_nb_maint_redis_grant(const char *s, size_t len)
{
    u_char  *p, *end;

    p = (u_char *) s;
    end = p + len;

    if (ngx_strlcasestrn(p, end, (u_char *) "subscribe", 9 - 1)
        || ngx_strlcasestrn(p, end, (u_char *) "publish", 7 - 1)
        || ngx_strlcasestrn(p, end, (u_char *) "channel", 7 - 1))
    {
        return "+@pubsub and the change channel (&* or allchannels)";
    }

    if (ngx_strlcasestrn(p, end, (u_char *) "eval", 4 - 1)) {
        return "+eval and +evalsha (Lua scripts)";
    }

    return "the commands and keys README's ACL example lists";
}


void
ngx_http_nb_maint_redis_noperm(ngx_http_nb_maint_redis_conn_t *conn,
    ngx_uint_t what, const char *s, size_t len)
{
    u_char                           said[100 * 4];
    size_t                           n;
    const char                      *grant;
    ngx_uint_t                       had;
    ngx_http_nb_maint_shm_t         *sh;
    ngx_http_nb_maint_redis_conf_t  *rcf = conn->store->data;

    grant = ngx_http_nb_maint_redis_grant(s, len);

    /* it comes from the network: escaped, and at most 100 bytes of it */
    n = ngx_http_nb_maint_escape_log(said, (u_char *) s, ngx_min(len, 100));

    sh = ngx_http_nb_maint_shm();

    ngx_http_nb_maint_publish_lock();
    had = sh->store_perm & what;
    sh->store_perm |= what;
    ngx_http_nb_maint_publish_unlock();

    if (!had) {
        ngx_log_error(NGX_LOG_ERR, conn->log, 0,
                      "nb_maint: redis user \"%V\" lacks a permission "
                      "(%*s): grant it %s", &rcf->user, n, said, grant);
    }

    ngx_http_nb_maint_set_store_status(0, "%V: permission denied for redis "
                                       "user \"%V\" (%*s): grant it %s",
                                       &rcf->url, &rcf->user, n, said,
                                       grant);
}


void
ngx_http_nb_maint_redis_perm_ok(ngx_uint_t what)
{
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    if (sh->store_perm & what) {
        ngx_http_nb_maint_publish_lock();
        sh->store_perm &= ~what;
        ngx_http_nb_maint_publish_unlock();
    }
}


ngx_uint_t
ngx_http_nb_maint_redis_perm_refused(void)
{
    return ngx_http_nb_maint_shm()->store_perm;
}
