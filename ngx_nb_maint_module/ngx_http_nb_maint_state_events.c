/*
 * nb_maint: the ring of recent audit events in the zone (SPEC section 5,
 * "GET events"): slab-allocated JSON lines, oldest dropped first when the
 * ring or the zone is full, and the ring rebuilt from a store's list.
 *
 * Every function here is given the zone and its pool and takes no lock but
 * the ones it says; it calls nothing else of the module.  Readers copy the
 * ring out (state.c, ngx_http_nb_maint_events_copy) and parse the copy.
 */

#include "ngx_http_nb_maint.h"


static void ngx_http_nb_maint_events_drop_oldest(ngx_http_nb_maint_shm_t *sh,
    ngx_slab_pool_t *shpool);


/* the version an audit line records, 0 if none */

uint64_t
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
 * answered the list) stay after it, kept in "keep" for the while (room
 * for NB_EVENTS_MAX; NULL: none kept).  The caller publishes (state.c);
 * this takes the pool's mutex.
 */

void
ngx_http_nb_maint_ring_replace(ngx_http_nb_maint_shm_t *sh,
    ngx_slab_pool_t *shpool, ngx_str_t *events, ngx_uint_t n,
    ngx_str_t *keep)
{
    uint64_t                  last;
    ngx_str_t                *e;
    ngx_uint_t                i, j, k, from;

    last = n ? ngx_http_nb_maint_event_version(&events[n - 1]) : 0;

    ngx_shmtx_lock(&shpool->mutex);

    k = 0;
    j = (sh->ev_next + NB_EVENTS_MAX - sh->ev_count) % NB_EVENTS_MAX;

    for (i = 0; i < sh->ev_count; i++, j = (j + 1) % NB_EVENTS_MAX) {
        e = &sh->events[j];

        if (keep && e->data && ngx_http_nb_maint_event_version(e) > last) {
            keep[k++] = *e;

        } else if (e->data) {
            ngx_slab_free_locked(shpool, e->data);
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
        (void) ngx_http_nb_maint_events_add(sh, shpool,
                                            events[i].data, events[i].len);
    }

    for (i = 0; i < k; i++) {
        sh->events[sh->ev_next] = keep[i];
        sh->ev_next = (sh->ev_next + 1) % NB_EVENTS_MAX;
        sh->ev_count++;
    }

    ngx_shmtx_unlock(&shpool->mutex);
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
