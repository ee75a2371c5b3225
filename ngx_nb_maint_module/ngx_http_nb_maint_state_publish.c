/*
 * nb_maint: how processes share the zone without waiting on a dead one
 * (issue 21, items 4 and 13): the write mutex that serializes writers and
 * is taken back from a dead holder, the sequence count under which writers
 * publish and readers copy (no reader ever holds anything), the copy of
 * the event ring that readers parse outside, and whether the process
 * behind a pid is still the one that took something (pid and start time).
 *
 * The lowest file of the state layer: calls nothing else of the module.
 * state.c points it at the zone in use (ngx_http_nb_maint_publish_use).
 */

#include "ngx_http_nb_maint.h"


static ngx_http_nb_maint_shm_t  *ngx_http_nb_maint_pub_sh;
static ngx_slab_pool_t          *ngx_http_nb_maint_pub_pool;


void
ngx_http_nb_maint_publish_use(ngx_slab_pool_t *shpool)
{
    ngx_http_nb_maint_pub_pool = shpool;
    ngx_http_nb_maint_pub_sh = shpool ? shpool->data : NULL;
}


static size_t ngx_http_nb_maint_ring_size(ngx_uint_t *count,
    ngx_uint_t *first, uint64_t *mark);
static void ngx_http_nb_maint_publish_repair(void);


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



/*
 * Readers never lock (issue 21, item 4).  What the zone publishes (the
 * state and its designated node, the store status, the cookie key, the
 * event ring) changes under a sequence count: a writer holds the write
 * mutex, makes the count odd, writes (memory only), makes it even; a
 * reader copies and copies again while the count was odd or moved.  A
 * count left odd by a writer that died publishing is put right by whoever
 * takes the write mutex next (it is taken back from a dead holder); a
 * reader that sees the count odd for long takes the mutex for that.  So
 * no process waits on a dead one, and a reader never holds anything.
 */

#define NB_READ_TRIES  1024


static void
ngx_http_nb_maint_publish_repair(void)
{
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_pub_sh;

    if (sh->pub & 1) {
        sh->pub++;
        ngx_memory_barrier();

        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "nb_maint: a process died while publishing a change "
                      "to shared memory; what it wrote may be partial until "
                      "the next change");
    }
}


void
ngx_http_nb_maint_publish_begin(ngx_http_nb_maint_shm_t *sh)
{
    sh->pub++;
    ngx_memory_barrier();
}


void
ngx_http_nb_maint_publish_end(ngx_http_nb_maint_shm_t *sh)
{
    ngx_memory_barrier();
    sh->pub++;
}


/* a writer that does not hold the write mutex yet */

void
ngx_http_nb_maint_publish_lock(void)
{
    ngx_http_nb_maint_state_lock_write();
    ngx_http_nb_maint_publish_begin(ngx_http_nb_maint_pub_sh);
}


void
ngx_http_nb_maint_publish_unlock(void)
{
    ngx_http_nb_maint_publish_end(ngx_http_nb_maint_pub_sh);
    ngx_http_nb_maint_state_unlock_write();
}


/* the count once even; do { v = read_begin(); copy } while (retry(v)) */

ngx_atomic_uint_t
ngx_http_nb_maint_read_begin(void)
{
    ngx_uint_t                n;
    ngx_atomic_uint_t         v;
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_pub_sh;

    for (n = 1; /* void */ ; n++) {
        v = sh->pub;
        ngx_memory_barrier();

        if (!(v & 1)) {
            return v;
        }

        if (n % NB_READ_TRIES == 0) {
            /* a writer holds the mutex for memory copies only; a dead one
             * loses it here, and its odd count is put right */
            ngx_http_nb_maint_state_lock_write();
            ngx_http_nb_maint_state_unlock_write();

        } else if (n % 64 == 0) {
            ngx_sched_yield();

        } else {
            ngx_cpu_pause();
        }
    }
}


ngx_uint_t
ngx_http_nb_maint_read_retry(ngx_atomic_uint_t v)
{
    ngx_memory_barrier();

    return ngx_http_nb_maint_pub_sh->pub != v;
}


/* a consistent copy of len bytes of the zone at src */

void
ngx_http_nb_maint_shm_read(void *dst, void *src, size_t len)
{
    ngx_atomic_uint_t  v;

    do {
        v = ngx_http_nb_maint_read_begin();
        ngx_memcpy(dst, src, len);
    } while (ngx_http_nb_maint_read_retry(v));
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

    mtx = &ngx_http_nb_maint_pub_sh->write_lock;

    for (n = 1; /* void */ ; n++) {

        if (ngx_shmtx_trylock(mtx)) {
            ngx_http_nb_maint_publish_repair();
            return;
        }

        pid = (ngx_pid_t) *mtx->lock;

        /* our own pid: a process before us with this pid died holding it
         * (this one never asks for the lock while holding it) */

        if (pid && (pid == ngx_pid || !ngx_http_nb_maint_holder_alive(pid))
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


/*
 * Whether the process that took something under this pid still runs: a
 * worker's pid that was reused by another process has another start time
 * than the one in the worker registry (issue 21, item 13).  A pid that is
 * no worker's (the master's) is alive while the pid exists.
 */

ngx_uint_t
ngx_http_nb_maint_holder_alive(ngx_pid_t pid)
{
    uint64_t                     start;
    ngx_uint_t                   i, known;
    ngx_http_nb_maint_worker_t  *w;

    start = ngx_http_nb_maint_proc_start(pid);

    if (start <= 1) {
        return start;           /* gone; or there, start time unknown */
    }

    known = 0;

    for (i = 0; i < NB_WORKER_SLOTS; i++) {
        w = &ngx_http_nb_maint_pub_sh->workers[i];

        if ((ngx_pid_t) w->pid != pid || w->start <= 1) {
            continue;
        }

        if (w->start == start) {
            return 1;
        }

        known = 1;
    }

    return !known;
}


void
ngx_http_nb_maint_state_unlock_write(void)
{
    ngx_shmtx_unlock(&ngx_http_nb_maint_pub_sh->write_lock);
}


/*
 * The event ring copied out (oldest first) into one malloc'ed block, to be
 * parsed with nothing held; mark (when not NULL): the state's version and
 * the ring's position and count as copied.  An entry whose pointer a
 * concurrent writer left outside the zone is never followed: the count
 * has moved, and the copy is made again.  Free with events_free().
 */

ngx_int_t
ngx_http_nb_maint_events_copy(ngx_str_t **events, ngx_uint_t *n,
    uint64_t *mark, ngx_log_t *log)
{
    u_char             *buf, *p, *start, *end;
    size_t              size, need;
    ngx_str_t          *ev;
    ngx_uint_t          i, k, count;
    ngx_atomic_uint_t   v;

    ev = ngx_alloc((NB_EVENTS_MAX + 1) * sizeof(ngx_str_t), log);
    if (ev == NULL) {
        return NGX_ERROR;
    }

    start = ngx_http_nb_maint_pub_pool->start;
    end = ngx_http_nb_maint_pub_pool->end;
    buf = NULL;
    size = 0;

    for ( ;; ) {
        v = ngx_http_nb_maint_read_begin();

        need = ngx_http_nb_maint_ring_size(&count, &i, mark);

        if (need > size) {
            if (ngx_http_nb_maint_read_retry(v) || need > (size_t) (end - start)) {
                continue;
            }

            ngx_free(buf);
            size = need;
            buf = ngx_alloc(size, log);

            if (buf == NULL) {
                ngx_free(ev);
                return NGX_ERROR;
            }

            continue;
        }

        p = buf;

        for (k = 0; k < count; k++, i = (i + 1) % NB_EVENTS_MAX) {
            ev[k] = ngx_http_nb_maint_pub_sh->events[i];

            if (ev[k].data < start || ev[k].data > end
                || ev[k].len > (size_t) (end - ev[k].data)
                || ev[k].len > size - (p - buf))
            {
                ev[k].len = 0;      /* torn: the count has moved */
            }

            ev[k].data = ngx_cpymem(p, ev[k].data, ev[k].len) - ev[k].len;
            p += ev[k].len;
        }

        if (!ngx_http_nb_maint_read_retry(v)) {
            break;
        }
    }

    ev[NB_EVENTS_MAX].data = buf;
    *events = ev;
    *n = count;

    return NGX_OK;
}


/* under read_begin(): the ring's count, first index, and bytes */

static size_t
ngx_http_nb_maint_ring_size(ngx_uint_t *count, ngx_uint_t *first,
    uint64_t *mark)
{
    size_t                    need;
    ngx_uint_t                k, n, i;
    ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_pub_sh;

    n = ngx_min(sh->ev_count, NB_EVENTS_MAX);
    i = (sh->ev_next % NB_EVENTS_MAX + NB_EVENTS_MAX - n) % NB_EVENTS_MAX;

    if (mark) {
        mark[0] = sh->state.version;
        mark[1] = sh->ev_next;
        mark[2] = sh->ev_count;
    }

    for (need = 0, k = 0; k < n; k++) {
        need += sh->events[(i + k) % NB_EVENTS_MAX].len;
    }

    *count = n;
    *first = i;

    return need;
}


void
ngx_http_nb_maint_events_free(ngx_str_t *events)
{
    if (events) {
        ngx_free(events[NB_EVENTS_MAX].data);
        ngx_free(events);
    }
}


/* the state's version and the ring's position and count, consistent */

void
ngx_http_nb_maint_ring_mark(uint64_t *mark)
{
    ngx_uint_t         count, first;
    ngx_atomic_uint_t  v;

    do {
        v = ngx_http_nb_maint_read_begin();
        (void) ngx_http_nb_maint_ring_size(&count, &first, mark);
    } while (ngx_http_nb_maint_read_retry(v));
}
