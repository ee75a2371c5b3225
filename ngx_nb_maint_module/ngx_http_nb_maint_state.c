/*
 * nb_maint: the cluster state in shared memory (SPEC section 3).
 *
 * One zone holds the versioned state, the store status, the ring of recent
 * events (slab-allocated JSON lines) and the node table.  Readers copy the
 * state into a per-worker snapshot only when the version moved; writers
 * serialize on a shm mutex and publish under a sequence count that
 * readers only look at (state_publish.c): no reader holds anything, and
 * nothing but memory copies happen while the count is odd.  A change goes through the store's save()
 * (state_save); the owner worker's claim is a word in the zone.
 *
 * May call: json.c, state_events.c, state_publish.c, and a store only through its function
 * pointers (never a store, the balancer or a request handler by name).
 */

#include "ngx_http_nb_maint.h"


static ngx_http_nb_maint_shm_t  *ngx_http_nb_maint_sh;
static ngx_slab_pool_t          *ngx_http_nb_maint_shpool;

/* per worker copy of the state, refreshed when the version moves */
static ngx_http_nb_maint_state_t  ngx_http_nb_maint_local;
static ngx_int_t                  ngx_http_nb_maint_local_node;
static ngx_uint_t                 ngx_http_nb_maint_local_valid;
static ngx_atomic_uint_t          ngx_http_nb_maint_local_nodes_seq;
static ngx_uint_t                 ngx_http_nb_maint_gen;


/*
 * A new zone (master, at configuration load): the shared header with the
 * state's defaults and the write mutex.  Nothing here may change what the
 * running generation sees: nginx may still roll this cycle back (a
 * "listen" that fails after the zones were made) and unmap a new zone.
 * Module statics and the generation change in init_module only, once the
 * cycle is committed.  NULL: the zone is too small.
 */

ngx_http_nb_maint_shm_t *
ngx_http_nb_maint_state_zone_create(ngx_shm_zone_t *shm_zone)
{
    size_t                    size;
    ngx_slab_pool_t          *shpool;
    ngx_http_nb_maint_shm_t  *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    size = sizeof(ngx_http_nb_maint_shm_t)
           + NB_MAX_NODES * sizeof(ngx_http_nb_maint_node_t);

    sh = ngx_slab_calloc(shpool, size);
    if (sh == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "nb_maint: zone \"%V\" is too small",
                      &shm_zone->shm.name);
        return NULL;
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
        return NULL;
    }

    return sh;
}


/*
 * The store and the cookie key go through the module's accessors: at zone
 * creation they are pointed at the new zone for the while, and back, so
 * that a cycle rolled back leaves the running one's pointers as they were.
 * Returns the pool in use before (NULL: none).
 */

ngx_slab_pool_t *
ngx_http_nb_maint_state_use(ngx_slab_pool_t *shpool)
{
    ngx_slab_pool_t  *old;

    old = ngx_http_nb_maint_shpool;

    ngx_http_nb_maint_shpool = shpool;
    ngx_http_nb_maint_sh = shpool ? shpool->data : NULL;
    ngx_http_nb_maint_publish_use(shpool);

    return old;
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
    ngx_http_nb_maint_publish_use(shpool);
    ngx_http_nb_maint_local_valid = 0;

    sh->generation++;
    ngx_http_nb_maint_gen = sh->generation;

    /* the designated node may have got its entry with this configuration,
     * and so may drained nodes kept as unknown ids */
    ngx_http_nb_maint_publish_lock();
    sh->designated = ngx_http_nb_maint_node_find(sh, sh->state.node,
                                                 sh->state.node_len);
    ngx_http_nb_maint_drain_resolve(sh, &sh->state);
    ngx_http_nb_maint_publish_unlock();

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
    ngx_atomic_uint_t         v;
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_sh;

    if (ngx_http_nb_maint_local_valid
        && (uint64_t) sh->seq == ngx_http_nb_maint_local.version
        && sh->nodes_seq == ngx_http_nb_maint_local_nodes_seq)
    {
        return &ngx_http_nb_maint_local;
    }

    ngx_http_nb_maint_local_nodes_seq = sh->nodes_seq;

    do {
        v = ngx_http_nb_maint_read_begin();
        ngx_memcpy(&ngx_http_nb_maint_local, &sh->state,
                   sizeof(ngx_http_nb_maint_state_t));
        ngx_http_nb_maint_local_node = sh->designated;
    } while (ngx_http_nb_maint_read_retry(v));

    ngx_http_nb_maint_local_valid = 1;

    return &ngx_http_nb_maint_local;
}


/* the node index of the last snapshot's designated node, -1: none */

ngx_int_t
ngx_http_nb_maint_designated(void)
{
    return ngx_http_nb_maint_local_node;
}


/* publish a state that the store has accepted; caller holds write mutex */

void
ngx_http_nb_maint_state_commit(ngx_http_nb_maint_state_t *st,
    ngx_str_t *event)
{
    uint64_t                  v;
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_sh;

    ngx_http_nb_maint_publish_begin(sh);

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

    ngx_http_nb_maint_publish_end(sh);
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

    ngx_http_nb_maint_publish_lock();

    sh->store_ok = ok;
    sh->store_error_len = 0;

    if (fmt) {
        va_start(args, fmt);
        p = ngx_vslprintf(sh->store_error,
                          sh->store_error + NB_STORE_ERROR_LEN, fmt, args);
        va_end(args);
        sh->store_error_len = p - sh->store_error;
    }

    ngx_http_nb_maint_publish_unlock();
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
               || (a->restore_started == b->restore_started
                   && a->restore_expect == b->restore_expect))
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


ngx_msec_t
ngx_http_nb_maint_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (ngx_msec_t) tp->sec * 1000 + tp->msec;
}


/* the event ring from a store's list (oldest first) */

void
ngx_http_nb_maint_events_replace(ngx_str_t *events, ngx_uint_t n)
{
    ngx_str_t  *keep;

    keep = ngx_alloc(sizeof(ngx_str_t) * NB_EVENTS_MAX, ngx_cycle->log);

    ngx_http_nb_maint_publish_lock();
    ngx_http_nb_maint_ring_replace(ngx_http_nb_maint_sh,
                                   ngx_http_nb_maint_shpool, events, n, keep);
    ngx_http_nb_maint_publish_unlock();

    if (keep) {
        ngx_free(keep);
    }
}


/* shared memory in use, for metrics and the benchmark */

void
ngx_http_nb_maint_zone_usage(size_t *used, size_t *total)
{
    ngx_slab_pool_t  *shpool = ngx_http_nb_maint_shpool;

    *total = shpool->end - shpool->start;
    *used = *total - shpool->pfree * ngx_pagesize;
}


/* after a reload: ids that became nodes here turn into drain flags */

void
ngx_http_nb_maint_drain_resolve(ngx_http_nb_maint_shm_t *sh,
    ngx_http_nb_maint_state_t *st)
{
    u_char     *p, *end, *nl, buf[NB_DRAIN_OTHER_LEN];
    size_t      len;
    ngx_int_t   i;

    len = st->drain_other_len;
    ngx_memcpy(buf, st->drain_other, len);
    st->drain_other_len = 0;

    p = buf;
    end = buf + len;

    while (p < end) {
        nl = ngx_strlchr(p, end, '\n');
        if (nl == NULL) {
            nl = end;
        }

        i = ngx_http_nb_maint_node_find(sh, p, nl - p);

        if (i != NGX_ERROR) {
            st->drain[i / 8] |= (u_char) (1 << (i % 8));

        } else {
            (void) ngx_http_nb_maint_drain_other_add(st, p, nl - p);
        }

        p = nl + 1;
    }
}


/* the stored form: the state, the drained node ids, maybe the cookie key */

char *
ngx_http_nb_maint_state_serialize(ngx_http_nb_maint_state_t *st,
    ngx_uint_t with_secret)
{
    char                     *s;
    u_char                    hex[NB_SECRET_LEN * 2 + 1], *p, *end, *nl;
    cJSON                    *json, *drain;
    ngx_uint_t                i;
    ngx_http_nb_maint_shm_t  *sh;

    json = ngx_http_nb_maint_state_to_json(st);
    if (json == NULL) {
        return NULL;
    }

    sh = ngx_http_nb_maint_shm();

    if (with_secret && sh->secret_set) {
        *ngx_hex_dump(hex, sh->secret, NB_SECRET_LEN) = '\0';
        cJSON_AddStringToObject(json, "secret", (char *) hex);
    }

    drain = cJSON_AddArrayToObject(json, "drain");

    for (i = 0; drain && i < sh->nnodes; i++) {
        if (nb_drained(st, i)) {
            cJSON_AddItemToArray(drain,
                                 ngx_http_nb_maint_json_strn(sh->nodes[i].id,
                                                     sh->nodes[i].id_len));
        }
    }

    /* and those of nodes other gateways know (issue 9, defect 15) */

    p = st->drain_other;
    end = st->drain_other + st->drain_other_len;

    while (drain && p < end) {
        nl = ngx_strlchr(p, end, '\n');
        if (nl == NULL) {
            nl = end;
        }

        cJSON_AddItemToArray(drain, ngx_http_nb_maint_json_strn(p, nl - p));
        p = nl + 1;
    }

    s = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);

    return s;
}


ngx_int_t
ngx_http_nb_maint_state_parse(cJSON *json, ngx_http_nb_maint_shm_t *sh,
    ngx_http_nb_maint_state_t *st, const char **err, ngx_log_t *log)
{
    size_t      len;
    cJSON      *item;
    ngx_int_t   i;

    if (ngx_http_nb_maint_state_from_json(json, st, err) != NGX_OK) {
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(json, "drain")) {
        if (!cJSON_IsString(item)
            || !ngx_http_nb_maint_node_id_valid((u_char *) item->valuestring,
                                                ngx_strlen(item->valuestring)))
        {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "nb_maint: an invalid node id in \"drain\" is "
                          "ignored");
            continue;
        }

        len = ngx_strlen(item->valuestring);
        i = ngx_http_nb_maint_node_find(sh, (u_char *) item->valuestring,
                                        len);

        if (i != NGX_ERROR) {
            st->drain[i / 8] |= (u_char) (1 << (i % 8));
            continue;
        }

        /* a node of another gateway (or of a later configuration): kept */

        if (ngx_http_nb_maint_drain_other_add(st, (u_char *) item->valuestring,
                                              len)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "nb_maint: drained node \"%*s\" unknown here "
                          "cannot be kept (malformed, or over %d bytes of "
                          "such ids)", ngx_min(len, 64), item->valuestring,
                          NB_DRAIN_OTHER_LEN);
        }
    }

    return NGX_OK;
}


ngx_uint_t
ngx_http_nb_maint_is_owner(void)
{
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    return sh != NULL
           && sh->owner == nb_owner_word(ngx_http_nb_maint_generation(),
                                         ngx_pid);
}
