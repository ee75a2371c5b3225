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
static ngx_int_t                  ngx_http_nb_maint_local_node;
static ngx_uint_t                 ngx_http_nb_maint_local_valid;
static ngx_uint_t                 ngx_http_nb_maint_gen;
static ngx_http_nb_maint_worker_t *ngx_http_nb_maint_slot;


static void ngx_http_nb_maint_events_drop_oldest(ngx_http_nb_maint_shm_t *sh,
    ngx_slab_pool_t *shpool);
static void ngx_http_nb_maint_commit_pids(ngx_http_nb_maint_shm_t *sh);
static ngx_uint_t ngx_http_nb_maint_forked_before_commit(
    ngx_http_nb_maint_shm_t *sh, ngx_pid_t pid);


static uint64_t ngx_http_nb_maint_event_version(ngx_str_t *ev);


static const char  *ngx_http_nb_maint_modes[] = {
    "normal", "maintenance", "upgrade", "restoring"
};


/*
 * The zone of a configuration being loaded.  Nothing here may change what
 * the running generation sees: nginx may still roll this cycle back (a
 * "listen" that fails after the zones were made) and unmap a new zone.
 * Module statics and the generation change in init_module only, once the
 * cycle is committed.
 */

ngx_int_t
ngx_http_nb_maint_state_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_nb_maint_main_conf_t *nmcf = shm_zone->data;

    size_t                    size;
    ngx_slab_pool_t          *shpool, *old_pool;
    ngx_http_nb_maint_shm_t  *sh, *old_sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists || data) {
        /* reload (or Windows): the state lives on in the old zone; entries
         * for new nodes are only added, under the next generation's mark */
        sh = shpool->data;

        /* a reload fails on a file store the workers cannot write */
        if (ngx_http_nb_maint_file_check(&nmcf->store, sh, shm_zone->shm.log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_nb_maint_nodes_init(nmcf, sh, sh->generation + 1,
                                            shm_zone->shm.log);
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
    sh->designated = -1;

    shpool->log_nomem = 0;

    /* the mutex lives in the zone: a semaphore must be shared to wake up
     * a waiter in another process */
    if (ngx_shmtx_create(&sh->write_lock, &sh->write_mtx, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_nb_maint_nodes_init(nmcf, sh, 1, shm_zone->shm.log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* so do nginx -t and a start; and the file becomes ours, or not */
    if (ngx_http_nb_maint_file_check(&nmcf->store, sh, shm_zone->shm.log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * The store and the cookie key go through the module's accessors:
     * point them at the new zone for the while, and back, so that a cycle
     * rolled back leaves the running one's pointers as they were.
     */
    old_sh = ngx_http_nb_maint_sh;
    old_pool = ngx_http_nb_maint_shpool;

    ngx_http_nb_maint_sh = sh;
    ngx_http_nb_maint_shpool = shpool;

    nmcf->store.load(&nmcf->store, sh, shpool, shm_zone->shm.log);
    ngx_http_nb_maint_secret_init(nmcf, sh, shm_zone->shm.log);

    sh->seq = (ngx_atomic_uint_t) sh->state.version;

    ngx_http_nb_maint_sh = old_sh;
    ngx_http_nb_maint_shpool = old_pool;

    return NGX_OK;
}


/*
 * The cycle is committed (master, or a single process): from now on this
 * process and the workers it forks use this cycle's zone.
 */

ngx_int_t
ngx_http_nb_maint_state_init_module(ngx_cycle_t *cycle,
    ngx_http_nb_maint_main_conf_t *nmcf)
{
    ngx_slab_pool_t          *shpool;
    ngx_http_nb_maint_shm_t  *sh;

    shpool = (ngx_slab_pool_t *) nmcf->shm_zone->shm.addr;
    sh = shpool->data;

    ngx_http_nb_maint_sh = sh;
    ngx_http_nb_maint_shpool = shpool;
    ngx_http_nb_maint_local_valid = 0;

    sh->generation++;
    ngx_http_nb_maint_gen = sh->generation;

    ngx_http_nb_maint_commit_pids(sh);

    /* the designated node may have got its entry with this configuration,
     * and so may drained nodes kept as unknown ids */
    ngx_rwlock_wlock(&sh->lock);
    sh->designated = ngx_http_nb_maint_node_find(sh, sh->state.node,
                                                 sh->state.node_len);
    ngx_http_nb_maint_drain_resolve(sh, &sh->state);
    ngx_rwlock_unlock(&sh->lock);

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
    ngx_http_nb_maint_local_node = sh->designated;
    ngx_rwlock_unlock(&sh->lock);

    ngx_http_nb_maint_local_valid = 1;

    return &ngx_http_nb_maint_local;
}


/* the node index of the last snapshot's designated node, -1: none */

ngx_int_t
ngx_http_nb_maint_designated(void)
{
    return ngx_http_nb_maint_local_node;
}


/*
 * The write mutex guards a few memory accesses only, never I/O.  A holder
 * that died with it (kill -9) cannot wedge the others: its pid is the
 * lock's value, and a dead pid's lock is taken back.
 */

void
ngx_http_nb_maint_state_lock_write(void)
{
    ngx_pid_t     pid;
    ngx_uint_t    n;
    ngx_shmtx_t  *mtx;

    mtx = &ngx_http_nb_maint_sh->write_lock;

    for (n = 1; /* void */ ; n++) {

        if (ngx_shmtx_trylock(mtx)) {
            return;
        }

        pid = (ngx_pid_t) *mtx->lock;

        if (pid && pid != ngx_pid && !ngx_http_nb_maint_pid_alive(pid)
            && ngx_shmtx_force_unlock(mtx, pid))
        {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "nb_maint: took back the write lock of process "
                          "%P, which died holding it", pid);
            continue;
        }

        if (n % 64 == 0) {
            ngx_sched_yield();

        } else {
            ngx_cpu_pause();
        }
    }
}


ngx_uint_t
ngx_http_nb_maint_pid_alive(ngx_pid_t pid)
{
    return kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH;
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
    uint64_t                  v;
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_sh;

    ngx_rwlock_wlock(&sh->lock);

    ngx_memcpy(&sh->state, st, sizeof(ngx_http_nb_maint_state_t));
    sh->designated = ngx_http_nb_maint_node_find(sh, st->node, st->node_len);

    /* once: the store's event list may have brought this line already */
    v = (event && event->len) ? ngx_http_nb_maint_event_version(event) : 0;

    if (event && event->len
        && (v == 0 || sh->ev_count == 0
            || ngx_http_nb_maint_event_version(&sh->events[(sh->ev_next
                                       + NB_EVENTS_MAX - 1) % NB_EVENTS_MAX])
               < v))
    {
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

    cJSON_AddItemToObject(ev, "version",
                          ngx_http_nb_maint_json_version(st->version));
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

    if (old->version >= NB_VERSION_MAX) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "nb_maint: version %uL is the last one", old->version);
        return NGX_ERROR;
    }

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

    ngx_http_nb_maint_state_commit(st, event);

    ngx_http_nb_maint_state_unlock_write();

    /* the store's local cache follows off the event loop (store_cache.c) */

    return NGX_OK;
}


/* the version an audit line records, 0 if none */

static uint64_t
ngx_http_nb_maint_event_version(ngx_str_t *ev)
{
    u_char  *p, *end, *q;
    off_t    v;

    end = ev->data + ev->len;
    p = ngx_strnstr(ev->data, (char *) "\"version\":", ev->len);

    if (p == NULL) {
        return 0;
    }

    p += sizeof("\"version\":") - 1;

    for (q = p; q < end && *q >= '0' && *q <= '9'; q++) { /* void */ }

    v = ngx_atoof(p, q - p);

    return (v == NGX_ERROR) ? 0 : (uint64_t) v;
}


/*
 * The event ring from the store's list (oldest first).  Lines this gateway
 * already holds beyond the list's last version (written after the store
 * answered the list) stay after it.
 */

void
ngx_http_nb_maint_events_replace(ngx_str_t *events, ngx_uint_t n)
{
    uint64_t                  last;
    ngx_str_t                *keep, *e;
    ngx_uint_t                i, j, k, from;
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_sh;

    last = n ? ngx_http_nb_maint_event_version(&events[n - 1]) : 0;

    keep = ngx_alloc(sizeof(ngx_str_t) * NB_EVENTS_MAX, ngx_cycle->log);

    ngx_rwlock_wlock(&sh->lock);
    ngx_shmtx_lock(&ngx_http_nb_maint_shpool->mutex);

    k = 0;
    j = (sh->ev_next + NB_EVENTS_MAX - sh->ev_count) % NB_EVENTS_MAX;

    for (i = 0; i < sh->ev_count; i++, j = (j + 1) % NB_EVENTS_MAX) {
        e = &sh->events[j];

        if (keep && e->data && ngx_http_nb_maint_event_version(e) > last) {
            keep[k++] = *e;

        } else if (e->data) {
            ngx_slab_free_locked(ngx_http_nb_maint_shpool, e->data);
        }
    }

    for (i = 0; i < NB_EVENTS_MAX; i++) {
        sh->events[i].data = NULL;
        sh->events[i].len = 0;
    }

    sh->ev_next = 0;
    sh->ev_count = 0;

    from = (n + k > NB_EVENTS_MAX) ? n + k - NB_EVENTS_MAX : 0;

    for (i = ngx_min(from, n); i < n; i++) {
        (void) ngx_http_nb_maint_events_add(sh, ngx_http_nb_maint_shpool,
                                            events[i].data, events[i].len);
    }

    for (i = 0; i < k; i++) {
        sh->events[sh->ev_next] = keep[i];
        sh->ev_next = (sh->ev_next + 1) % NB_EVENTS_MAX;
        sh->ev_count++;
    }

    ngx_shmtx_unlock(&ngx_http_nb_maint_shpool->mutex);
    ngx_rwlock_unlock(&sh->lock);

    if (keep) {
        ngx_free(keep);
    }
}


/*
 * Append one event line to the ring; caller holds the slab mutex.  When
 * the ring or the zone is full, the oldest events make room: the newest
 * is never the one dropped.
 */

ngx_int_t
ngx_http_nb_maint_events_add(ngx_http_nb_maint_shm_t *sh,
    ngx_slab_pool_t *shpool, u_char *data, size_t len)
{
    u_char     *p;
    ngx_str_t  *ev;

    if (sh->ev_count == NB_EVENTS_MAX) {
        ngx_http_nb_maint_events_drop_oldest(sh, shpool);
    }

    for ( ;; ) {
        p = ngx_slab_alloc_locked(shpool, len);
        if (p != NULL) {
            break;
        }

        if (sh->ev_count == 0) {
            return NGX_ERROR;
        }

        ngx_http_nb_maint_events_drop_oldest(sh, shpool);
    }

    ngx_memcpy(p, data, len);

    ev = &sh->events[sh->ev_next];
    ev->data = p;
    ev->len = len;

    sh->ev_next = (sh->ev_next + 1) % NB_EVENTS_MAX;
    sh->ev_count++;

    return NGX_OK;
}


static void
ngx_http_nb_maint_events_drop_oldest(ngx_http_nb_maint_shm_t *sh,
    ngx_slab_pool_t *shpool)
{
    ngx_str_t  *ev;

    ev = &sh->events[(sh->ev_next + NB_EVENTS_MAX - sh->ev_count)
                     % NB_EVENTS_MAX];

    if (ev->data) {
        ngx_slab_free_locked(shpool, ev->data);
    }

    ev->data = NULL;
    ev->len = 0;
    sh->ev_count--;
}


/*
 * The smallest zone that holds the shared header, the whole node table
 * and NB_EVENTS_MIN events of up to NB_EVENT_RESERVE bytes: in slab pages,
 * each with its page descriptor, plus the pool header and alignment.
 */

size_t
ngx_http_nb_maint_zone_min_size(void)
{
    size_t  size, pages;

    size = sizeof(ngx_http_nb_maint_shm_t)
           + NB_MAX_NODES * sizeof(ngx_http_nb_maint_node_t);

    pages = (size + ngx_pagesize - 1) / ngx_pagesize
            + NB_EVENTS_MIN / (ngx_pagesize / NB_EVENT_RESERVE) + 1
            + 8;    /* small allocations of other sizes, rounding */

    size = pages * (ngx_pagesize + sizeof(ngx_slab_page_t))
           + sizeof(ngx_slab_pool_t) + 2 * ngx_pagesize;

    return ngx_align(size, 1024);
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


/*
 * The cookie key from the store: validated by the caller, published whole
 * under the state lock, so that no reader ever sees half a key.
 */

void
ngx_http_nb_maint_secret_publish(u_char *key)
{
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_sh;

    ngx_rwlock_wlock(&sh->lock);

    ngx_memcpy(sh->secret, key, NB_SECRET_LEN);
    sh->secret_set = 1;

    ngx_rwlock_unlock(&sh->lock);
}


void
ngx_http_nb_maint_secret_copy(u_char *out)
{
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_sh;

    ngx_rwlock_rlock(&sh->lock);
    ngx_memcpy(out, sh->secret, NB_SECRET_LEN);
    ngx_rwlock_unlock(&sh->lock);
}


/* whether a change would change nothing that is stored */

ngx_uint_t
ngx_http_nb_maint_state_same(ngx_http_nb_maint_state_t *a,
    ngx_http_nb_maint_state_t *b)
{
    return a->mode == b->mode
           && a->restoring_from == b->restoring_from
           && a->retry_after == b->retry_after
           && a->node_len == b->node_len
           && ngx_memcmp(a->node, b->node, a->node_len) == 0
           && a->reason_len == b->reason_len
           && ngx_memcmp(a->reason, b->reason, a->reason_len) == 0
           && (a->mode != NB_MODE_RESTORING
               || a->restore_started == b->restore_started)
           && ngx_memcmp(a->drain, b->drain, sizeof(a->drain)) == 0
           && a->drain_other_len == b->drain_other_len
           && ngx_memcmp(a->drain_other, b->drain_other,
                         a->drain_other_len) == 0;
}


ngx_int_t
ngx_http_nb_maint_node_find(ngx_http_nb_maint_shm_t *sh, u_char *id,
    size_t len)
{
    ngx_uint_t  i;

    if (len == 0) {
        return NGX_ERROR;
    }

    for (i = 0; i < sh->nnodes; i++) {
        if (sh->nodes[i].id_len == len
            && ngx_memcmp(sh->nodes[i].id, id, len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


/*
 * The start time of a process (field 22 of /proc/<pid>/stat, in clock
 * ticks since boot): a pid that was reused has another.  0: no such
 * process; 1: it exists, its start time is unknown (no procfs).
 */

uint64_t
ngx_http_nb_maint_proc_start(ngx_pid_t pid)
{
    u_char    buf[512], name[64], *p, *last;
    ssize_t   n;
    uint64_t  start;
    ngx_fd_t  fd;
    ngx_uint_t  field;

    if (pid <= 0) {
        return 0;
    }

    ngx_sprintf(name, "/proc/%P/stat%Z", pid);

    fd = ngx_open_file(name, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        if (kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH) {
            return 0;
        }

        return 1;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    (void) ngx_close_file(fd);

    if (n <= 0) {
        return 0;
    }

    last = buf + n;

    /* the command may hold spaces and ')': fields start after the last ')' */
    for (p = last - 1; p > buf && *p != ')'; p--) { /* void */ }

    if (p == buf) {
        return 1;
    }

    p++;

    /* p is at " S ppid ...": field 3 is the state; 22 the start time */
    for (field = 2; p < last && field < 22; p++) {
        if (*p == ' ') {
            field++;
        }

        if (field == 3 && (*p == 'Z' || *p == 'X')) {
            return 0;       /* exited, not yet reaped */
        }
    }

    start = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        start = start * 10 + (*p++ - '0');
    }

    return start ? start + 1 : 1;
}


ngx_uint_t
ngx_http_nb_maint_worker_alive(ngx_http_nb_maint_worker_t *w)
{
    ngx_pid_t  pid;
    uint64_t   start;

    pid = (ngx_pid_t) w->pid;

    if (pid == 0) {
        return 0;
    }

    start = ngx_http_nb_maint_proc_start(pid);

    return start != 0 && (start == 1 || w->start <= 1 || start == w->start);
}


/*
 * Every worker holds a slot (pid, start time, generation) while it runs,
 * so that the master knows which generations may still use node entries.
 * A killed worker's slot is recognized by its pid being gone or reused.
 */

ngx_int_t
ngx_http_nb_maint_worker_register(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    ngx_atomic_uint_t            pid;
    ngx_http_nb_maint_shm_t     *sh;
    ngx_http_nb_maint_worker_t  *w;

    sh = ngx_http_nb_maint_sh;

    for (i = 0; i < NB_WORKER_SLOTS; i++) {
        w = &sh->workers[i];
        pid = w->pid;

        if (pid != 0 && ngx_http_nb_maint_worker_alive(w)) {
            continue;
        }

        if (!ngx_atomic_cmp_set(&w->pid, pid, (ngx_atomic_uint_t) ngx_pid)) {
            continue;
        }

        /* the master trusts gen only once start matches: gen first */
        w->start = 0;
        w->gen = ngx_http_nb_maint_gen;
        ngx_memory_barrier();
        w->start = ngx_http_nb_maint_proc_start(ngx_pid);
        ngx_http_nb_maint_slot = w;

        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                  "nb_maint: more than %d workers, node entries of old "
                  "configurations are kept", NB_WORKER_SLOTS);

    return NGX_OK;
}


void
ngx_http_nb_maint_worker_unregister(void)
{
    ngx_http_nb_maint_worker_t  *w;

    w = ngx_http_nb_maint_slot;

    if (w) {
        (void) ngx_atomic_cmp_set(&w->pid, (ngx_atomic_uint_t) ngx_pid, 0);
        ngx_http_nb_maint_slot = NULL;
    }
}


/*
 * The master's live worker children at the commit of a generation (master
 * only, no fork runs meanwhile).  Workers are forked from the committed
 * cycle only, so a child not in this list belongs to that generation.
 */

static void
ngx_http_nb_maint_commit_pids(ngx_http_nb_maint_shm_t *sh)
{
    ngx_int_t   p;
    ngx_uint_t  n;

    n = 0;

    for (p = 0; p < ngx_last_process && n < NB_WORKER_SLOTS; p++) {
        if (ngx_processes[p].pid == -1 || ngx_processes[p].pid == 0
            || ngx_processes[p].exited)
        {
            continue;
        }

        sh->commit_pids[n++] = ngx_processes[p].pid;
    }

    sh->ncommit_pids = n;
}


static ngx_uint_t
ngx_http_nb_maint_forked_before_commit(ngx_http_nb_maint_shm_t *sh,
    ngx_pid_t pid)
{
    ngx_uint_t  i;

    for (i = 0; i < sh->ncommit_pids; i++) {
        if (sh->commit_pids[i] == pid) {
            return 1;
        }
    }

    return 0;
}


/*
 * The generations whose workers may still run, seen from the master: each
 * live worker child with its slot's generation, and "newest", the one
 * being loaded.  A child without a slot yet that was forked after the last
 * commit runs the committed generation; one forked before it, without a
 * slot, could run any generation: NGX_ERROR, nothing is freed.
 */

ngx_int_t
ngx_http_nb_maint_live_gens(ngx_http_nb_maint_shm_t *sh, ngx_uint_t newest,
    ngx_uint_t *gens, ngx_uint_t max)
{
    uint64_t                     start;
    ngx_int_t                    p;
    ngx_uint_t                   i, k, n, gen;
    ngx_http_nb_maint_worker_t  *w;

    gens[0] = newest;
    n = 1;

    for (p = 0; p < ngx_last_process; p++) {

        if (ngx_processes[p].pid == -1 || ngx_processes[p].pid == 0
            || ngx_processes[p].exited
            || ngx_processes[p].name == NULL
            || ngx_strcmp(ngx_processes[p].name, "worker process") != 0)
        {
            continue;
        }

        start = ngx_http_nb_maint_proc_start(ngx_processes[p].pid);
        if (start == 0) {
            continue;
        }

        gen = 0;

        for (i = 0; i < NB_WORKER_SLOTS; i++) {
            w = &sh->workers[i];

            if ((ngx_pid_t) w->pid == ngx_processes[p].pid
                && (w->start == start || start == 1))
            {
                ngx_memory_barrier();
                gen = w->gen;
                break;
            }
        }

        if (gen == 0) {
            if (ngx_http_nb_maint_forked_before_commit(sh,
                                                       ngx_processes[p].pid))
            {
                return NGX_ERROR;
            }

            gen = sh->generation;
        }

        for (k = 0; k < n && gens[k] != gen; k++) { /* void */ }

        if (k == n) {
            if (n == max) {
                return NGX_ERROR;
            }

            gens[n++] = gen;
        }
    }

    return n;
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
