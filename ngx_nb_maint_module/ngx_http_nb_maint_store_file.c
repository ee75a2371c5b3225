/*
 * nb_maint: the file store (SPEC section 4, "nb_maint_store file:"): its
 * set-up and its compare-and-save.
 *
 * A change is written by a thread of nginx's "default" thread pool
 * (store_file_write.c does the I/O), published to shared memory back on the
 * event loop, and only then acknowledged.  Reading the file at start is
 * store_file_load.c's; whether this gateway may use it, store_file_check.c's.
 *
 * May call: store_file_write.c, store_file_load.c, store_file_check.c,
 * state.c, json.c.
 */

#include "ngx_http_nb_maint_store_file.h"

#include <sys/statvfs.h>


static ngx_int_t ngx_http_nb_maint_file_save(
    ngx_http_nb_maint_store_t *store, uint64_t expected,
    ngx_http_nb_maint_state_t *st, ngx_str_t *event, ngx_log_t *log,
    ngx_http_nb_maint_store_done_pt done, void *data);
static ngx_int_t ngx_http_nb_maint_file_init_process(
    ngx_http_nb_maint_store_t *store, ngx_cycle_t *cycle);
static void ngx_http_nb_maint_file_tick(ngx_http_nb_maint_store_t *store,
    ngx_uint_t owner, ngx_log_t *log);


char *
ngx_http_nb_maint_store_file_init(ngx_conf_t *cf,
    ngx_http_nb_maint_store_t *store, ngx_str_t *path)
{
    u_char  *p;

    ngx_str_set(&store->type, "file");
    store->cycle = cf->cycle;

    /* keep NUL-terminated copies: they are used with open() and rename() */

    store->path.len = path->len;
    store->path.data = ngx_pnalloc(cf->pool, path->len + 1);
    store->events_path.len = path->len + sizeof(".events") - 1;
    store->events_path.data = ngx_pnalloc(cf->pool,
                                          store->events_path.len + 1);

    if (store->path.data == NULL || store->events_path.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(store->path.data, path->data, path->len);
    *p = '\0';

    p = ngx_cpymem(store->events_path.data, path->data, path->len);
    p = ngx_cpymem(p, ".events", sizeof(".events") - 1);
    *p = '\0';

    store->load = ngx_http_nb_maint_file_load;
    store->save = ngx_http_nb_maint_file_save;
    store->init_process = ngx_http_nb_maint_file_init_process;
    store->tick = ngx_http_nb_maint_file_tick;

#if (NGX_THREADS)
    /* file writes go to nginx's "default" thread pool */
    if (ngx_thread_pool_add(cf, NULL) == NULL) {
        return NGX_CONF_ERROR;
    }
#endif

    return NGX_CONF_OK;
}


/*
 * The file store's compare-and-save.
 *
 * No lock is held across I/O: under the shm write mutex (held only for a
 * few memory accesses) a worker checks the version and claims the one
 * write slot (its pid and the version it writes); the file is then
 * written by a thread of nginx's "default" thread pool, so the event loop
 * never waits on the disk.  Back on the event loop the state is published
 * to shared memory, and only then is the change acknowledged: a write
 * that failed leaves the state unchanged.  Another write that comes
 * meanwhile waits on a timer for the slot; a slot whose holder died (kill
 * -9 in the middle of a write) is taken back, and the version that holder
 * may have written is never given out again.
 */

#define NB_FILE_RETRY       10          /* ms between looks at the slot */
#define NB_FILE_WAIT_MAX    10000       /* then 503: the disk is stuck */


typedef struct {
    ngx_http_nb_maint_store_t        *store;
    ngx_http_nb_maint_state_t         st;
    uint64_t                          expected;
    ngx_http_nb_maint_store_done_pt   done;
    void                             *data;
    ngx_log_t                        *log;
    ngx_event_t                       retry;
    ngx_msec_t                        deadline;
    ngx_str_t                         text;       /* the state file */
    ngx_str_t                         event;      /* its audit line */
    ngx_int_t                         rc;
    ngx_err_t                         err;
    const char                       *failed;     /* the step that did */
#if (NGX_THREADS)
    ngx_thread_task_t                 task;
#endif
} ngx_http_nb_maint_file_op_t;


static ngx_int_t ngx_http_nb_maint_file_claim(
    ngx_http_nb_maint_file_op_t *op);
static void ngx_http_nb_maint_file_retry(ngx_event_t *ev);
static void ngx_http_nb_maint_file_start(ngx_http_nb_maint_file_op_t *op);
static void ngx_http_nb_maint_file_thread(void *data, ngx_log_t *log);
static void ngx_http_nb_maint_file_written(ngx_event_t *ev);
static void ngx_http_nb_maint_file_finish(ngx_http_nb_maint_file_op_t *op);


#if (NGX_THREADS)
static ngx_thread_pool_t  *ngx_http_nb_maint_file_tp;
#endif


static ngx_int_t
ngx_http_nb_maint_file_init_process(ngx_http_nb_maint_store_t *store,
    ngx_cycle_t *cycle)
{
#if (NGX_THREADS)
    ngx_str_t  name = ngx_string("default");

    ngx_http_nb_maint_file_tp = ngx_thread_pool_get(cycle, &name);
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_file_save(ngx_http_nb_maint_store_t *store,
    uint64_t expected, ngx_http_nb_maint_state_t *st, ngx_str_t *event,
    ngx_log_t *log, ngx_http_nb_maint_store_done_pt done, void *data)
{
    char                         *s;
    size_t                        len, elen;
    ngx_int_t                     rc;
    ngx_http_nb_maint_file_op_t  *op;

    if (ngx_http_nb_maint_shm()->store_readonly) {
        return NGX_ERROR;
    }

    s = ngx_http_nb_maint_state_serialize(st, 1);
    if (s == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(s);
    elen = event ? event->len : 0;

    op = ngx_alloc(sizeof(ngx_http_nb_maint_file_op_t) + len + 1 + elen + 1,
                   log);
    if (op == NULL) {
        cJSON_free(s);
        return NGX_ERROR;
    }

    ngx_memzero(op, sizeof(ngx_http_nb_maint_file_op_t));

    op->store = store;
    op->st = *st;
    op->expected = expected;
    op->done = done;
    op->data = data;
    op->log = log;

    op->text.data = (u_char *) (op + 1);
    op->text.len = len + 1;
    *ngx_cpymem(op->text.data, s, len) = '\n';
    cJSON_free(s);

    op->event.data = op->text.data + len + 1;
    op->event.len = elen ? elen + 1 : 0;

    if (elen) {
        *ngx_cpymem(op->event.data, event->data, elen) = '\n';
    }

    rc = ngx_http_nb_maint_file_claim(op);

    if (rc == NGX_BUSY) {
        op->retry.handler = ngx_http_nb_maint_file_retry;
        op->retry.data = op;
        op->retry.log = log;
        op->deadline = ngx_current_msec + NB_FILE_WAIT_MAX;
        ngx_add_timer(&op->retry, NB_FILE_RETRY);
        return NGX_AGAIN;
    }

    if (rc != NGX_OK) {
        ngx_free(op);
        return rc;
    }

    ngx_http_nb_maint_file_start(op);

    return NGX_AGAIN;
}


/*
 * A write slot whose holder died (kill -9 in the middle of a write) is
 * taken back, by the next writer or by any worker's tick.  The version it
 * was writing may be on disk already: it is skipped, never given out again.
 */

static void
ngx_http_nb_maint_file_recover(ngx_http_nb_maint_store_t *store,
    ngx_log_t *log)
{
    uint64_t                   writing;
    ngx_pid_t                  writer;
    ngx_http_nb_maint_shm_t   *sh;
    ngx_http_nb_maint_state_t  st;

    sh = ngx_http_nb_maint_shm();

    writer = (ngx_pid_t) sh->writer;

    if (writer == 0 || writer == ngx_pid
        || ngx_http_nb_maint_holder_alive(writer))
    {
        return;
    }

    ngx_http_nb_maint_state_lock_write();

    if ((ngx_pid_t) sh->writer != writer) {
        ngx_http_nb_maint_state_unlock_write();
        return;
    }

    writing = sh->writing;

    if (writing > sh->state.version) {
        st = sh->state;
        st.version = writing;
        ngx_http_nb_maint_state_commit(&st, NULL);
    }

    sh->writer = 0;

    ngx_http_nb_maint_state_unlock_write();

    ngx_log_error(NGX_LOG_ALERT, log, 0,
                  "nb_maint: process %P died while writing version %uL of "
                  "\"%V\"; took its write slot back, versions continue "
                  "after it", writer, writing, &store->path);
}


/* NGX_OK: the write slot is ours; NGX_BUSY: another write is in flight;
 * NGX_DECLINED: the version moved */

static ngx_int_t
ngx_http_nb_maint_file_claim(ngx_http_nb_maint_file_op_t *op)
{
    ngx_int_t                 rc;
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    ngx_http_nb_maint_file_recover(op->store, op->log);

    ngx_http_nb_maint_state_lock_write();

    if (sh->state.version != op->expected) {
        rc = NGX_DECLINED;

    } else if (sh->writer) {
        rc = NGX_BUSY;

    } else {
        sh->writer = ngx_pid;
        sh->writing = op->st.version;
        rc = NGX_OK;
    }

    ngx_http_nb_maint_state_unlock_write();

    return rc;
}


/*
 * The owner worker looks now and then whether the store could still be
 * written (directory writable, events file writable, space left), in a
 * thread, so that status never says ok for a store it cannot write.
 */

typedef struct {
    ngx_http_nb_maint_store_t  *store;
    ngx_err_t                   err;
    const char                 *what;
    ngx_uint_t                  busy;
} ngx_http_nb_maint_probe_t;


static ngx_http_nb_maint_probe_t  *ngx_http_nb_maint_probe;
#if (NGX_THREADS)
static ngx_thread_task_t          *ngx_http_nb_maint_probe_task;
#endif


static void
ngx_http_nb_maint_probe_thread(void *data, ngx_log_t *log)
{
    ngx_http_nb_maint_probe_t *pr = data;

    u_char          dirbuf[NGX_MAX_PATH], *dir;
    struct statvfs  vfs;

    pr->err = 0;
    pr->what = NULL;

    dir = ngx_http_nb_maint_file_dir(&pr->store->path, dirbuf, NGX_MAX_PATH);

    if (dir == NULL) {
        return;
    }

    if (access((char *) dir, W_OK | X_OK) == -1) {
        pr->err = ngx_errno;
        pr->what = "the directory";
        return;
    }

    if (access((char *) pr->store->events_path.data, W_OK) == -1
        && ngx_errno != NGX_ENOENT)
    {
        pr->err = ngx_errno;
        pr->what = "the events file";
        return;
    }

    if (statvfs((char *) dir, &vfs) == 0 && vfs.f_bavail == 0) {
        pr->err = NGX_ENOSPC;
        pr->what = "the file system";
    }
}


static void
ngx_http_nb_maint_probe_done(ngx_event_t *ev)
{
    ngx_http_nb_maint_probe_t *pr = ev->data;

    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();
    pr->busy = 0;

    if (pr->what) {
        if (sh->store_ok || sh->store_probe) {
            ngx_http_nb_maint_set_store_status(0, "cannot write \"%V\": %s: "
                                               "%s", &pr->store->path,
                                               pr->what, strerror(pr->err));
            sh->store_probe = 1;
        }

        return;
    }

    if (sh->store_probe && !sh->store_readonly) {
        sh->store_probe = 0;
        ngx_http_nb_maint_set_store_status(1, NULL);
    }
}


static void
ngx_http_nb_maint_file_probe(ngx_http_nb_maint_store_t *store, ngx_log_t *log)
{
    ngx_http_nb_maint_probe_t  *pr;

    if (ngx_http_nb_maint_probe == NULL) {
#if (NGX_THREADS)
        ngx_http_nb_maint_probe_task = ngx_thread_task_alloc(
                                   ngx_cycle->pool,
                                   sizeof(ngx_http_nb_maint_probe_t));
        if (ngx_http_nb_maint_probe_task == NULL) {
            return;
        }

        ngx_http_nb_maint_probe = ngx_http_nb_maint_probe_task->ctx;
        ngx_http_nb_maint_probe_task->handler = ngx_http_nb_maint_probe_thread;
        ngx_http_nb_maint_probe_task->event.handler =
                                                ngx_http_nb_maint_probe_done;
        ngx_http_nb_maint_probe_task->event.data = ngx_http_nb_maint_probe;
        ngx_http_nb_maint_probe_task->event.log = ngx_cycle->log;
#else
        ngx_http_nb_maint_probe = ngx_pcalloc(ngx_cycle->pool,
                                          sizeof(ngx_http_nb_maint_probe_t));
        if (ngx_http_nb_maint_probe == NULL) {
            return;
        }
#endif
    }

    pr = ngx_http_nb_maint_probe;

    if (pr->busy || ngx_http_nb_maint_shm()->store_readonly) {
        return;
    }

    pr->store = store;

#if (NGX_THREADS)
    if (ngx_http_nb_maint_file_tp) {
        pr->busy = 1;

        if (ngx_thread_task_post(ngx_http_nb_maint_file_tp,
                                 ngx_http_nb_maint_probe_task)
            != NGX_OK)
        {
            pr->busy = 0;
        }

        return;
    }
#endif

    {
        ngx_event_t  ev;

        ngx_http_nb_maint_probe_thread(pr, log);
        ev.data = pr;
        ngx_http_nb_maint_probe_done(&ev);
    }
}


static void
ngx_http_nb_maint_file_tick(ngx_http_nb_maint_store_t *store,
    ngx_uint_t owner, ngx_log_t *log)
{
    ngx_http_nb_maint_file_recover(store, log);

    if (owner) {
        ngx_http_nb_maint_file_probe(store, log);
    }
}


static void
ngx_http_nb_maint_file_retry(ngx_event_t *ev)
{
    ngx_int_t                     rc;
    ngx_http_nb_maint_file_op_t  *op = ev->data;

    rc = ngx_http_nb_maint_file_claim(op);

    if (rc == NGX_OK) {
        ngx_http_nb_maint_file_start(op);
        return;
    }

    if (rc == NGX_BUSY && (ngx_msec_int_t) (op->deadline - ngx_current_msec)
                          > 0)
    {
        ngx_add_timer(&op->retry, NB_FILE_RETRY);
        return;
    }

    if (rc == NGX_BUSY) {
        ngx_log_error(NGX_LOG_ERR, op->log, 0,
                      "nb_maint: another write of \"%V\" is in progress "
                      "for %d ms; giving up", &op->store->path,
                      NB_FILE_WAIT_MAX);
        rc = NGX_ERROR;
    }

    op->done(op->data, rc);
    ngx_free(op);
}


/* the slot is ours: the write goes to a thread (or, without threads,
 * happens here, still without any lock held) */

static void
ngx_http_nb_maint_file_start(ngx_http_nb_maint_file_op_t *op)
{
#if (NGX_THREADS)
    ngx_thread_task_t  *task;

    if (ngx_http_nb_maint_file_tp) {
        task = &op->task;
        task->ctx = op;
        task->handler = ngx_http_nb_maint_file_thread;
        task->event.handler = ngx_http_nb_maint_file_written;
        task->event.data = op;
        task->event.log = op->log;

        if (ngx_thread_task_post(ngx_http_nb_maint_file_tp, task) == NGX_OK) {
            return;
        }

        op->rc = NGX_ERROR;
        op->err = 0;
        op->failed = "queue";
        ngx_http_nb_maint_file_finish(op);
        return;
    }
#endif

    ngx_http_nb_maint_file_thread(op, op->log);
    ngx_http_nb_maint_file_finish(op);
}


/* in a thread: file I/O only, no shared memory, no logging */

static void
ngx_http_nb_maint_file_thread(void *data, ngx_log_t *log)
{
    ngx_http_nb_maint_file_op_t  *op = data;

    op->rc = ngx_http_nb_maint_file_write_text(op->store, &op->text,
                                               &op->event, 1, &op->err,
                                               &op->failed);
}


static void
ngx_http_nb_maint_file_written(ngx_event_t *ev)
{
    ngx_http_nb_maint_file_finish(ev->data);
}


static void
ngx_http_nb_maint_file_finish(ngx_http_nb_maint_file_op_t *op)
{
    ngx_str_t                 event;
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    event.data = op->event.data;
    event.len = op->event.len ? op->event.len - 1 : 0;

    ngx_http_nb_maint_state_lock_write();

    if (op->rc == NGX_OK) {
        ngx_http_nb_maint_state_commit(&op->st, &event);
    }

    if ((ngx_pid_t) sh->writer == ngx_pid) {
        sh->writer = 0;
    }

    ngx_http_nb_maint_state_unlock_write();

    if (op->rc == NGX_OK) {
        if (!sh->store_ok && !sh->store_readonly) {
            sh->store_probe = 0;
            ngx_http_nb_maint_set_store_status(1, NULL);
        }

    } else {
        sh->store_probe = 0;

        ngx_log_error(NGX_LOG_ALERT, op->log, op->err,
                      "nb_maint: cannot store version %uL in \"%V\" (%s)",
                      op->st.version, &op->store->path, op->failed);

        ngx_http_nb_maint_set_store_status(0, "cannot write \"%V\" (%s: %s)",
                                           &op->store->path, op->failed,
                                           op->err ? strerror(op->err)
                                                   : "failed");
    }

    op->done(op->data, op->rc);
    ngx_free(op);
}
