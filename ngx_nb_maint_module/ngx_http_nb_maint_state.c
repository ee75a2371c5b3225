/*
 * nb_maint: the cluster state in shared memory (SPEC section 3).
 *
 * One zone holds the versioned state, the store status, the ring of recent
 * events (slab-allocated JSON lines) and the node table.  Readers copy the
 * state into a per-worker snapshot only when the version moved; writers
 * serialize on a shm mutex and publish under the rwlock, never doing I/O
 * while the rwlock is held.
 */

#include "ngx_http_nb_maint.h"


static ngx_http_nb_maint_shm_t  *ngx_http_nb_maint_sh;
static ngx_slab_pool_t          *ngx_http_nb_maint_shpool;

/* per worker copy of the state, refreshed when the version moves */
static ngx_http_nb_maint_state_t  ngx_http_nb_maint_local;
static ngx_uint_t                 ngx_http_nb_maint_local_valid;
static ngx_uint_t                 ngx_http_nb_maint_gen;


static const char  *ngx_http_nb_maint_modes[] = {
    "normal", "maintenance", "upgrade", "restoring"
};


ngx_int_t
ngx_http_nb_maint_state_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_nb_maint_main_conf_t *nmcf = shm_zone->data;

    size_t                    size;
    ngx_slab_pool_t          *shpool;
    ngx_http_nb_maint_shm_t  *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists || data) {
        /* reload (or Windows): the state lives on in the old zone */
        sh = shpool->data;

        if (ngx_http_nb_maint_nodes_init(nmcf, sh, shm_zone->shm.log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        goto done;
    }

    size = sizeof(ngx_http_nb_maint_shm_t)
           + NB_MAX_NODES * sizeof(ngx_http_nb_maint_node_t);

    sh = ngx_slab_calloc(shpool, size);
    if (sh == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "nb_maint: zone \"%V\" is too small",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    shpool->data = sh;

    sh->state.mode = NB_MODE_NORMAL;
    sh->state.restoring_from = NB_MODE_NONE;
    sh->state.retry_after = NB_RETRY_AFTER_DEFAULT;
    sh->state.since = ngx_time();
    sh->store_ok = 1;

    shpool->log_nomem = 0;

    /* the mutex lives in the zone: a semaphore must be shared to wake up
     * a waiter in another process */
    if (ngx_shmtx_create(&sh->write_lock, &sh->write_mtx, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_nb_maint_nodes_init(nmcf, sh, shm_zone->shm.log) != NGX_OK) {
        return NGX_ERROR;
    }

    nmcf->store.load(&nmcf->store, sh, shpool, shm_zone->shm.log);

    ngx_http_nb_maint_sh = sh;
    ngx_http_nb_maint_shpool = shpool;
    ngx_http_nb_maint_secret_init(nmcf, sh, shm_zone->shm.log);

    sh->seq = (ngx_atomic_uint_t) sh->state.version;

done:

    sh->generation++;
    ngx_http_nb_maint_gen = sh->generation;

    ngx_http_nb_maint_sh = sh;
    ngx_http_nb_maint_shpool = shpool;
    ngx_http_nb_maint_local_valid = 0;

    return NGX_OK;
}


ngx_uint_t
ngx_http_nb_maint_generation(void)
{
    return ngx_http_nb_maint_gen;
}


ngx_http_nb_maint_shm_t *
ngx_http_nb_maint_shm(void)
{
    return ngx_http_nb_maint_sh;
}


/* the state as this worker sees it; no lock unless the version moved */

ngx_http_nb_maint_state_t *
ngx_http_nb_maint_snapshot(void)
{
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_sh;

    if (ngx_http_nb_maint_local_valid
        && (uint64_t) sh->seq == ngx_http_nb_maint_local.version)
    {
        return &ngx_http_nb_maint_local;
    }

    ngx_rwlock_rlock(&sh->lock);
    ngx_memcpy(&ngx_http_nb_maint_local, &sh->state,
               sizeof(ngx_http_nb_maint_state_t));
    ngx_rwlock_unlock(&sh->lock);

    ngx_http_nb_maint_local_valid = 1;

    return &ngx_http_nb_maint_local;
}


void
ngx_http_nb_maint_state_lock_write(void)
{
    ngx_shmtx_lock(&ngx_http_nb_maint_sh->write_lock);
}


void
ngx_http_nb_maint_state_unlock_write(void)
{
    ngx_shmtx_unlock(&ngx_http_nb_maint_sh->write_lock);
}


/* publish a state that the store has accepted; caller holds write mutex */

void
ngx_http_nb_maint_state_commit(ngx_http_nb_maint_state_t *st,
    ngx_str_t *event)
{
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_sh;

    ngx_rwlock_wlock(&sh->lock);

    ngx_memcpy(&sh->state, st, sizeof(ngx_http_nb_maint_state_t));

    if (event && event->len) {
        ngx_shmtx_lock(&ngx_http_nb_maint_shpool->mutex);
        (void) ngx_http_nb_maint_events_add(sh, ngx_http_nb_maint_shpool,
                                            event->data, event->len);
        ngx_shmtx_unlock(&ngx_http_nb_maint_shpool->mutex);
    }

    sh->seq = (ngx_atomic_uint_t) st->version;

    ngx_rwlock_unlock(&sh->lock);
}


/* the audit line of one change */

static ngx_int_t
ngx_http_nb_maint_event(ngx_http_nb_maint_state_t *old,
    ngx_http_nb_maint_state_t *st, const char *action, ngx_str_t *actor,
    ngx_int_t node, ngx_pool_t *pool, ngx_str_t *out)
{
    u_char                    t[32], *p;
    cJSON                    *ev;
    ngx_int_t                 rc;
    ngx_http_nb_maint_node_t *n;

    ev = cJSON_CreateObject();
    if (ev == NULL) {
        return NGX_ERROR;
    }

    p = ngx_http_nb_maint_time_rfc3339(t, ngx_time());
    *p = '\0';

    cJSON_AddNumberToObject(ev, "version", (double) st->version);
    cJSON_AddStringToObject(ev, "time", (char *) t);
    cJSON_AddItemToObject(ev, "actor",
                          ngx_http_nb_maint_json_strn(actor->data,
                                                      actor->len));
    cJSON_AddStringToObject(ev, "action", action);
    cJSON_AddStringToObject(ev, "from",
                            ngx_http_nb_maint_mode_name(old->mode));
    cJSON_AddStringToObject(ev, "to", ngx_http_nb_maint_mode_name(st->mode));

    if (node >= 0) {
        n = &ngx_http_nb_maint_sh->nodes[node];
        cJSON_AddItemToObject(ev, "node",
                              ngx_http_nb_maint_json_strn(n->id, n->id_len));

    } else if (st->node_len) {
        cJSON_AddItemToObject(ev, "node",
                              ngx_http_nb_maint_json_strn(st->node,
                                                          st->node_len));
    } else {
        cJSON_AddNullToObject(ev, "node");
    }

    /* a drain is no mode change: the mode's reason is not its own */

    if (node >= 0) {
        cJSON_AddNullToObject(ev, "reason");

    } else {
        cJSON_AddItemToObject(ev, "reason",
                              ngx_http_nb_maint_json_strn(st->reason,
                                                          st->reason_len));
    }

    rc = ngx_http_nb_maint_json_str(pool, ev, out);
    cJSON_Delete(ev);

    return rc;
}


typedef struct {
    ngx_http_nb_maint_store_done_pt   done;
    void                             *data;
    ngx_log_t                        *log;
    const char                       *action;
    ngx_str_t                         actor;
    ngx_uint_t                        from;
    ngx_uint_t                        to;
    uint64_t                          version;
} ngx_http_nb_maint_save_t;


static void
ngx_http_nb_maint_state_saved(void *data, ngx_int_t rc)
{
    ngx_http_nb_maint_save_t *sv = data;

    if (rc == NGX_OK) {
        ngx_log_error(NGX_LOG_NOTICE, sv->log, 0,
                      "nb_maint: %s by %V: %s -> %s, version %uL",
                      sv->action, &sv->actor,
                      ngx_http_nb_maint_mode_name(sv->from),
                      ngx_http_nb_maint_mode_name(sv->to), sv->version);

    } else if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, sv->log, 0,
                      "nb_maint: %s by %V not stored: the store is "
                      "unavailable", sv->action, &sv->actor);
    }

    if (sv->done) {
        sv->done(sv->data, rc);
    }
}


/*
 * A change old -> st, through the store (compare-and-save on old's
 * version).  Returns NGX_OK, NGX_DECLINED (conflict), NGX_ERROR (store
 * unavailable), or NGX_AGAIN and calls done(data, rc) later; pool must live
 * until then.
 */

ngx_int_t
ngx_http_nb_maint_state_save(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_state_t *old, ngx_http_nb_maint_state_t *st,
    const char *action, ngx_str_t *actor, ngx_int_t node, ngx_pool_t *pool,
    ngx_log_t *log, ngx_http_nb_maint_store_done_pt done, void *data)
{
    ngx_int_t                  rc;
    ngx_str_t                  event;
    ngx_http_nb_maint_save_t  *sv;

    st->version = old->version + 1;

    if (st->mode != old->mode) {
        st->since = ngx_time();
    }

    if (ngx_http_nb_maint_event(old, st, action, actor, node, pool, &event)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    sv = ngx_palloc(pool, sizeof(ngx_http_nb_maint_save_t));
    if (sv == NULL) {
        return NGX_ERROR;
    }

    sv->done = done;
    sv->data = data;
    sv->log = log;
    sv->action = action;
    sv->actor = *actor;
    sv->from = old->mode;
    sv->to = st->mode;
    sv->version = st->version;

    rc = nmcf->store.save(&nmcf->store, old->version, st, &event, log,
                          ngx_http_nb_maint_state_saved, sv);

    if (rc != NGX_AGAIN) {
        sv->done = NULL;
        ngx_http_nb_maint_state_saved(sv, rc);
    }

    return rc;
}


/*
 * A state that the store already holds (from another gateway, or our own
 * write coming back): applied when newer than ours, kept in the local
 * cache file.  NGX_DECLINED when not newer.
 */

ngx_int_t
ngx_http_nb_maint_state_apply(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_state_t *st, ngx_str_t *event, ngx_log_t *log)
{
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_sh;

    ngx_http_nb_maint_state_lock_write();

    if (st->version <= sh->state.version) {
        ngx_http_nb_maint_state_unlock_write();
        return NGX_DECLINED;
    }

    if (store->path.len
        && ngx_http_nb_maint_file_write(store, st, event, 0, log) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "nb_maint: cannot update the local cache \"%V\"",
                      &store->path);
    }

    ngx_http_nb_maint_state_commit(st, event);

    ngx_http_nb_maint_state_unlock_write();

    return NGX_OK;
}


/* the event ring from the store's list (oldest first) */

void
ngx_http_nb_maint_events_replace(ngx_str_t *events, ngx_uint_t n)
{
    ngx_uint_t                i;
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_sh;

    ngx_rwlock_wlock(&sh->lock);
    ngx_shmtx_lock(&ngx_http_nb_maint_shpool->mutex);

    for (i = 0; i < NB_EVENTS_MAX; i++) {
        if (sh->events[i].data) {
            ngx_slab_free_locked(ngx_http_nb_maint_shpool,
                                 sh->events[i].data);
            sh->events[i].data = NULL;
            sh->events[i].len = 0;
        }
    }

    sh->ev_next = 0;
    sh->ev_count = 0;

    for (i = (n > NB_EVENTS_MAX) ? n - NB_EVENTS_MAX : 0; i < n; i++) {
        (void) ngx_http_nb_maint_events_add(sh, ngx_http_nb_maint_shpool,
                                            events[i].data, events[i].len);
    }

    ngx_shmtx_unlock(&ngx_http_nb_maint_shpool->mutex);
    ngx_rwlock_unlock(&sh->lock);
}


/* append one event line to the ring; caller holds the slab mutex */

ngx_int_t
ngx_http_nb_maint_events_add(ngx_http_nb_maint_shm_t *sh,
    ngx_slab_pool_t *shpool, u_char *data, size_t len)
{
    u_char     *p;
    ngx_str_t  *ev;

    ev = &sh->events[sh->ev_next];

    if (ev->data) {
        ngx_slab_free_locked(shpool, ev->data);
        ev->data = NULL;
        ev->len = 0;
        sh->ev_count--;
    }

    p = ngx_slab_alloc_locked(shpool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, data, len);

    ev->data = p;
    ev->len = len;

    sh->ev_next = (sh->ev_next + 1) % NB_EVENTS_MAX;
    sh->ev_count++;

    return NGX_OK;
}


void
ngx_http_nb_maint_set_store_status(ngx_uint_t ok, const char *fmt, ...)
{
    u_char                   *p;
    va_list                   args;
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_sh;

    ngx_rwlock_wlock(&sh->lock);

    sh->store_ok = ok;
    sh->store_error_len = 0;

    if (fmt) {
        va_start(args, fmt);
        p = ngx_vslprintf(sh->store_error,
                          sh->store_error + NB_STORE_ERROR_LEN, fmt, args);
        va_end(args);
        sh->store_error_len = p - sh->store_error;
    }

    ngx_rwlock_unlock(&sh->lock);
}


ngx_int_t
ngx_http_nb_maint_node_find(ngx_http_nb_maint_shm_t *sh, u_char *id,
    size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i < sh->nnodes; i++) {
        if (sh->nodes[i].id_len == len
            && ngx_memcmp(sh->nodes[i].id, id, len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


ngx_msec_t
ngx_http_nb_maint_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (ngx_msec_t) tp->sec * 1000 + tp->msec;
}


const char *
ngx_http_nb_maint_mode_name(ngx_uint_t mode)
{
    if (mode > NB_MODE_RESTORING) {
        return NULL;
    }

    return ngx_http_nb_maint_modes[mode];
}


ngx_int_t
ngx_http_nb_maint_mode_parse(u_char *s, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i <= NB_MODE_RESTORING; i++) {
        if (ngx_strlen(ngx_http_nb_maint_modes[i]) == len
            && ngx_strncmp(ngx_http_nb_maint_modes[i], s, len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


/* "2026-11-27T06:00:00Z"; buf needs 21 bytes, returns the end */

u_char *
ngx_http_nb_maint_time_rfc3339(u_char *buf, time_t t)
{
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    return ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
}


/* shared memory in use, for metrics and the benchmark */

void
ngx_http_nb_maint_zone_usage(size_t *used, size_t *total)
{
    ngx_slab_pool_t  *shpool = ngx_http_nb_maint_shpool;

    *total = shpool->end - shpool->start;
    *used = *total - shpool->pfree * ngx_pagesize;
}
