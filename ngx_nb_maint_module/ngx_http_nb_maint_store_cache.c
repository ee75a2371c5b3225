/*
 * nb_maint: the redis store's local cache file (SPEC section 8: "also
 * after an nginx restart, from a local cache file").
 *
 * The cache is a file store's state file and events file, read at zone
 * creation (in the master), so that a gateway restarted while Redis is
 * down still serves the last state it knew.
 *
 * Written off the event loop, in order: only the owner worker writes it,
 * one write at a time, each a snapshot of the shared state and its audit
 * ring (temporary files, then rename) done by a thread of nginx's
 * "default" thread pool.  A change that comes while a write is in flight
 * marks the cache stale; the next write starts when the last one is back,
 * with whatever the state is by then.  A write stuck on a slow disk holds
 * one thread, never the event loop.
 *
 * Owns the cache's path, its loading and its writes.  May call: the file
 * store (store_file.c) and the shared state; below the redis files, knows
 * nothing of Redis.
 */

#include "ngx_http_nb_maint_store_redis.h"


typedef struct {
    ngx_http_nb_maint_store_t  *store;
    ngx_uint_t                  busy;       /* a write is in flight */
    ngx_uint_t                  stale;      /* changed while in flight */
    uint64_t                    mark[3];    /* what the file holds */
    uint64_t                    writing[3]; /* ... what is being written */
    ngx_str_t                   state;      /* malloc'ed, with events */
    ngx_str_t                   events;
    ngx_int_t                   rc;
    ngx_err_t                   err;
    const char                 *failed;
    ngx_uint_t                  logged;     /* said the last failure */
#if (NGX_THREADS)
    ngx_thread_task_t          *task;
#endif
} ngx_http_nb_maint_cache_t;


static ngx_http_nb_maint_cache_t  *ngx_http_nb_maint_cache;
#if (NGX_THREADS)
static ngx_thread_pool_t          *ngx_http_nb_maint_cache_tp;
#endif


static void ngx_http_nb_maint_cache_thread(void *data, ngx_log_t *log);
static void ngx_http_nb_maint_cache_written(ngx_event_t *ev);


char *
ngx_http_nb_maint_cache_init(ngx_conf_t *cf, ngx_http_nb_maint_store_t *store,
    ngx_str_t *path)
{
    if (ngx_conf_full_name(cf->cycle, path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* also adds nginx's "default" thread pool */
    return ngx_http_nb_maint_store_file_init(cf, store, path);
}


void
ngx_http_nb_maint_cache_load(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, ngx_slab_pool_t *shpool, ngx_log_t *log)
{
    ngx_http_nb_maint_file_load(store, sh, shpool, log);
}


/* what the cache would hold now: the version and where the ring stands */

static void
ngx_http_nb_maint_cache_mark(uint64_t *mark)
{
    ngx_http_nb_maint_ring_mark(mark);
}


ngx_int_t
ngx_http_nb_maint_cache_init_process(ngx_http_nb_maint_store_t *store,
    ngx_cycle_t *cycle)
{
    ngx_http_nb_maint_cache_t  *cache;
#if (NGX_THREADS)
    ngx_str_t                   name = ngx_string("default");
    ngx_thread_task_t          *task;
#endif

    ngx_http_nb_maint_cache = NULL;
    cache = NULL;

#if (NGX_THREADS)
    ngx_http_nb_maint_cache_tp = ngx_thread_pool_get(cycle, &name);

    if (ngx_http_nb_maint_cache_tp) {
        task = ngx_thread_task_alloc(cycle->pool,
                                     sizeof(ngx_http_nb_maint_cache_t));
        if (task == NULL) {
            return NGX_ERROR;
        }

        cache = task->ctx;
        cache->task = task;
        task->handler = ngx_http_nb_maint_cache_thread;
        task->event.handler = ngx_http_nb_maint_cache_written;
        task->event.data = cache;
        task->event.log = cycle->log;
    }
#endif

    if (cache == NULL) {
        cache = ngx_pcalloc(cycle->pool, sizeof(ngx_http_nb_maint_cache_t));
        if (cache == NULL) {
            return NGX_ERROR;
        }
    }

    cache->store = store;

    /* the master loaded the file into the zone: nothing new to write yet */
    ngx_http_nb_maint_cache_mark(cache->mark);

    ngx_http_nb_maint_cache = cache;

    return NGX_OK;
}


/* the state and the audit ring (oldest first), one JSON line each */

static ngx_int_t
ngx_http_nb_maint_cache_snapshot(ngx_http_nb_maint_cache_t *cache)
{
    char                      *s;
    u_char                    *p;
    size_t                     len, evlen;
    ngx_str_t                 *ev;
    ngx_uint_t                 k, n;
    ngx_http_nb_maint_shm_t   *sh;
    ngx_http_nb_maint_state_t  st;

    sh = ngx_http_nb_maint_shm();

    ngx_http_nb_maint_shm_read(&st, &sh->state, sizeof(st));

    s = ngx_http_nb_maint_state_serialize(&st, 1);
    if (s == NULL) {
        return NGX_ERROR;
    }

    /* the ring copied out: the allocation below holds nothing shared */

    if (ngx_http_nb_maint_events_copy(&ev, &n, NULL, ngx_cycle->log)
        != NGX_OK)
    {
        cJSON_free(s);
        return NGX_ERROR;
    }

    len = ngx_strlen(s);

    for (evlen = 0, k = 0; k < n; k++) {
        evlen += ev[k].len + 1;
    }

    p = ngx_alloc(len + 1 + evlen, ngx_cycle->log);

    if (p) {
        cache->state.data = p;
        cache->state.len = len + 1;
        p = ngx_cpymem(p, s, len);
        *p++ = '\n';

        cache->events.data = p;

        for (k = 0; k < n; k++) {
            p = ngx_cpymem(p, ev[k].data, ev[k].len);
            *p++ = '\n';
        }

        cache->events.len = p - cache->events.data;
    }

    ngx_http_nb_maint_events_free(ev);
    cJSON_free(s);

    return cache->state.data ? NGX_OK : NGX_ERROR;
}


/*
 * After every change the owner applies or learns of, and on its tick:
 * start a write if the cache is behind the shared state.
 */

void
ngx_http_nb_maint_cache_update(ngx_http_nb_maint_store_t *store)
{
    uint64_t                    mark[3];
    ngx_http_nb_maint_cache_t  *cache = ngx_http_nb_maint_cache;

    if (cache == NULL || store->path.len == 0
        || !ngx_http_nb_maint_is_owner())
    {
        return;
    }

    if (cache->busy) {
        cache->stale = 1;
        return;
    }

    ngx_http_nb_maint_cache_mark(mark);

    if (ngx_memcmp(mark, cache->mark, sizeof(mark)) == 0) {
        return;
    }

    ngx_memcpy(cache->writing, mark, sizeof(mark));
    cache->state.data = NULL;

    if (ngx_http_nb_maint_cache_snapshot(cache) != NGX_OK) {
        return;
    }

    cache->busy = 1;
    cache->stale = 0;

#if (NGX_THREADS)
    if (cache->task) {
        if (ngx_thread_task_post(ngx_http_nb_maint_cache_tp, cache->task)
            == NGX_OK)
        {
            return;
        }

        cache->rc = NGX_ERROR;
        cache->err = 0;
        cache->failed = "queue the write";
        ngx_http_nb_maint_cache_written(&cache->task->event);
        return;
    }
#endif

    /* without threads: here, still without any lock held */
    ngx_http_nb_maint_cache_thread(cache, ngx_cycle->log);

    {
        ngx_event_t  ev;

        ev.data = cache;
        ngx_http_nb_maint_cache_written(&ev);
    }
}


/* "<path>.<pid>.tmp", then renamed over path */

static ngx_int_t
ngx_http_nb_maint_cache_replace(u_char *path, size_t plen, ngx_str_t *text,
    ngx_http_nb_maint_cache_t *cache)
{
    u_char    tmp[NGX_MAX_PATH], *p;
    size_t    left;
    ssize_t   n;
    ngx_fd_t  fd;

    if (plen + NGX_INT64_LEN + sizeof("..tmp") > NGX_MAX_PATH) {
        cache->failed = "path too long";
        return NGX_ERROR;
    }

    ngx_snprintf(tmp, NGX_MAX_PATH, "%*s.%P.tmp%Z", plen, path, ngx_pid);

    cache->failed = "create the temporary file";

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE, 0600);
    if (fd == NGX_INVALID_FILE) {
        cache->err = ngx_errno;
        return NGX_ERROR;
    }

    cache->failed = "write";

    for (p = text->data, left = text->len; left; p += n, left -= n) {
        n = write(fd, p, left);

        if (n == -1 && ngx_errno == NGX_EINTR) {
            n = 0;
            continue;
        }

        if (n <= 0) {
            cache->err = (n == -1) ? ngx_errno : NGX_ENOSPC;
            (void) ngx_close_file(fd);
            (void) ngx_delete_file(tmp);
            return NGX_ERROR;
        }
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        cache->err = ngx_errno;
        cache->failed = "close";
        (void) ngx_delete_file(tmp);
        return NGX_ERROR;
    }

    if (ngx_rename_file(tmp, path) == NGX_FILE_ERROR) {
        cache->err = ngx_errno;
        cache->failed = "rename";
        (void) ngx_delete_file(tmp);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* in a thread: file I/O only, no shared memory, no logging.  The state
 * first: a crash in between leaves the events behind it, never ahead */

static void
ngx_http_nb_maint_cache_thread(void *data, ngx_log_t *log)
{
    ngx_http_nb_maint_cache_t *cache = data;

    ngx_http_nb_maint_store_t  *store = cache->store;

    cache->err = 0;

    cache->rc = ngx_http_nb_maint_cache_replace(store->path.data,
                                                store->path.len,
                                                &cache->state, cache);

    if (cache->rc == NGX_OK) {
        cache->rc = ngx_http_nb_maint_cache_replace(store->events_path.data,
                                                    store->events_path.len,
                                                    &cache->events, cache);
    }
}


/* back on the event loop */

static void
ngx_http_nb_maint_cache_written(ngx_event_t *ev)
{
    ngx_http_nb_maint_cache_t *cache = ev->data;

    ngx_free(cache->state.data);
    cache->state.data = NULL;
    cache->busy = 0;

    if (cache->rc == NGX_OK) {
        ngx_memcpy(cache->mark, cache->writing, sizeof(cache->mark));

        if (cache->logged) {
            cache->logged = 0;
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "nb_maint: the local cache \"%V\" is written "
                          "again", &cache->store->path);
        }

    } else if (!cache->logged) {
        cache->logged = 1;
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, cache->err,
                      "nb_maint: cannot update the local cache \"%V\" (%s)",
                      &cache->store->path, cache->failed);
    }

    if (cache->stale) {
        ngx_http_nb_maint_cache_update(cache->store);
    }
}
