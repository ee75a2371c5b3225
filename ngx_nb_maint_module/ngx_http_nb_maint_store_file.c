/*
 * nb_maint: the file store (SPEC section 4, "nb_maint_store file:").
 *
 * The state is one small JSON file, replaced atomically (temp file, fsync,
 * rename) on every change; events are JSON lines appended to
 * "<file>.events".  A corrupt state file is renamed to "<file>.corrupt"
 * and reported, never silently overwritten.
 */

#include "ngx_http_nb_maint.h"

#include <grp.h>
#include <sys/file.h>
#include <sys/statvfs.h>


#define NB_FILE_MAX  (1024 * 1024)


static ngx_int_t ngx_http_nb_maint_file_save(
    ngx_http_nb_maint_store_t *store, uint64_t expected,
    ngx_http_nb_maint_state_t *st, ngx_str_t *event, ngx_log_t *log,
    ngx_http_nb_maint_store_done_pt done, void *data);
static void ngx_http_nb_maint_file_load_events(
    ngx_http_nb_maint_store_t *store, ngx_http_nb_maint_shm_t *sh,
    ngx_slab_pool_t *shpool, ngx_log_t *log);
static void ngx_http_nb_maint_file_compact(ngx_http_nb_maint_store_t *store,
    char *buf, char *end, ngx_log_t *log);
static ngx_int_t ngx_http_nb_maint_write_all(ngx_fd_t fd, u_char *data,
    size_t len);
static void ngx_http_nb_maint_file_error(ngx_http_nb_maint_shm_t *sh,
    const char *fmt, ngx_str_t *path, const char *detail);
static ngx_int_t ngx_http_nb_maint_file_init_process(
    ngx_http_nb_maint_store_t *store, ngx_cycle_t *cycle);
static void ngx_http_nb_maint_file_tick(ngx_http_nb_maint_store_t *store,
    ngx_uint_t owner, ngx_log_t *log);
static u_char *ngx_http_nb_maint_file_dir(ngx_str_t *path, u_char *buf,
    size_t size);


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


static ngx_int_t
ngx_http_nb_maint_hex_decode(u_char *dst, u_char *src, size_t len)
{
    ngx_int_t  n;

    for ( /* void */ ; len >= 2; len -= 2, src += 2) {
        n = ngx_hextoi(src, 2);
        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        *dst++ = (u_char) n;
    }

    return NGX_OK;
}


/* read a whole (small) file into malloc'ed memory, NUL-terminated */

static char *
ngx_http_nb_maint_read_file(u_char *path, size_t *size, ngx_err_t *err)
{
    char             *buf;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_file_info_t   fi;

    *err = 0;

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        *err = ngx_errno;
        return NULL;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NB_FILE_MAX * 8)
    {
        *err = ngx_errno ? ngx_errno : EFBIG;
        ngx_close_file(fd);
        return NULL;
    }

    buf = malloc(ngx_file_size(&fi) + 1);
    if (buf == NULL) {
        *err = NGX_ENOMEM;
        ngx_close_file(fd);
        return NULL;
    }

    n = read(fd, buf, ngx_file_size(&fi));
    if (n < 0) {
        *err = ngx_errno;
        free(buf);
        ngx_close_file(fd);
        return NULL;
    }

    buf[n] = '\0';
    *size = n;

    ngx_close_file(fd);

    return buf;
}


void
ngx_http_nb_maint_file_load(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, ngx_slab_pool_t *shpool, ngx_log_t *log)
{
    char                      *buf;
    size_t                     size;
    u_char                     aside[NGX_MAX_PATH];
    cJSON                     *json, *item;
    uint64_t                   version;
    ngx_err_t                  err;
    const char                *msg;
    ngx_http_nb_maint_state_t  st;

    /* events first: they also tell the highest version ever given out */
    ngx_http_nb_maint_file_load_events(store, sh, shpool, log);
    version = sh->state.version;

    buf = ngx_http_nb_maint_read_file(store->path.data, &size, &err);

    if (buf == NULL) {
        if (err == NGX_ENOENT) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "nb_maint: no state file \"%V\" yet, "
                          "starting in normal mode", &store->path);
            return;
        }

        ngx_log_error(NGX_LOG_ALERT, log, err,
                      "nb_maint: cannot read state file \"%V\"",
                      &store->path);
        ngx_http_nb_maint_file_error(sh, "cannot read \"%V\": %s",
                                     &store->path, strerror(err));
        return;
    }

    json = ngx_http_nb_maint_json_parse(buf, size, NULL, &msg);

    if (json != NULL
        && ngx_http_nb_maint_state_parse(json, sh, &st, &msg, log) == NGX_OK)
    {
        item = cJSON_GetObjectItemCaseSensitive(json, "secret");
        if (cJSON_IsString(item)
            && ngx_strlen(item->valuestring) == NB_SECRET_LEN * 2
            && ngx_http_nb_maint_hex_decode(sh->secret,
                                            (u_char *) item->valuestring,
                                            NB_SECRET_LEN * 2) == NGX_OK)
        {
            sh->secret_set = 1;
        }

        cJSON_Delete(json);
        free(buf);

        if (st.version < version) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "nb_maint: state file \"%V\" has version %uL, "
                          "events reach %uL; versions continue from there",
                          &store->path, st.version, version);
            st.version = version;
        }

        sh->state = st;

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "nb_maint: state loaded from \"%V\": mode %s, "
                      "version %uL", &store->path,
                      ngx_http_nb_maint_mode_name(st.mode), st.version);
        return;
    }

    item = cJSON_GetObjectItemCaseSensitive(json, "version");

    if (cJSON_IsObject(json)
        && ngx_http_nb_maint_json_u64(item, NB_VERSION_MAX, &version)
           != NGX_OK)
    {
        /*
         * the version is what must never go back: without it the next
         * write could reuse one, so the file stays and nothing is written
         */

        cJSON_Delete(json);
        free(buf);

        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "nb_maint: state file \"%V\" has a bad version; "
                      "writes are refused until it is repaired",
                      &store->path);

        ngx_http_nb_maint_file_error(sh, "state file \"%V\" is corrupt "
                                     "(%s); writes refused until it is "
                                     "repaired", &store->path, msg);
        sh->store_readonly |= NB_STORE_BAD_VERSION;
        return;
    }

    cJSON_Delete(json);
    free(buf);

    /* keep the corrupt file aside for the operator */

    ngx_snprintf(aside, NGX_MAX_PATH, "%V.corrupt%Z", &store->path);

    if (ngx_rename_file(store->path.data, aside) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "nb_maint: cannot move corrupt state file \"%V\" "
                      "aside", &store->path);
    }

    ngx_log_error(NGX_LOG_ALERT, log, 0,
                  "nb_maint: state file \"%V\" is corrupt (%s), kept as "
                  "\"%s\"; starting in normal mode with version %uL",
                  &store->path, msg, aside, version);

    ngx_http_nb_maint_file_error(sh, "state file \"%V\" is corrupt (%s), "
                                 "kept aside as .corrupt", &store->path,
                                 msg);
}


static void
ngx_http_nb_maint_file_error(ngx_http_nb_maint_shm_t *sh, const char *fmt,
    ngx_str_t *path, const char *detail)
{
    u_char  *p;

    p = ngx_snprintf(sh->store_error, NB_STORE_ERROR_LEN, fmt, path, detail);

    sh->store_error_len = p - sh->store_error;
    sh->store_ok = 0;
}


/* the last NB_EVENTS_MAX lines of the events file into the ring */

static void
ngx_http_nb_maint_file_load_events(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, ngx_slab_pool_t *shpool, ngx_log_t *log)
{
    char        *buf, *p, *end, *nl;
    size_t       size;
    cJSON       *json, *item;
    uint64_t     version;
    ngx_err_t    err;
    ngx_uint_t   lines;
    const char  *msg;

    buf = ngx_http_nb_maint_read_file(store->events_path.data, &size, &err);

    if (buf == NULL) {
        if (err != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_ALERT, log, err,
                          "nb_maint: cannot read events file \"%V\"",
                          &store->events_path);
        }
        return;
    }

    end = buf + size;

    /* find where the last NB_EVENTS_MAX lines start */

    lines = 0;
    p = end;

    while (p > buf) {
        p--;
        if (*p == '\n' && p + 1 < end && ++lines > NB_EVENTS_MAX) {
            p++;
            break;
        }
    }

    ngx_shmtx_lock(&shpool->mutex);

    while (p < end) {
        nl = memchr(p, '\n', end - p);
        if (nl == NULL) {
            nl = end;
        }

        json = ngx_http_nb_maint_json_parse(p, nl - p, NULL, &msg);
        item = cJSON_GetObjectItemCaseSensitive(json, "version");

        if (ngx_http_nb_maint_json_u64(item, NB_VERSION_MAX, &version)
            == NGX_OK)
        {
            if (version > sh->state.version) {
                sh->state.version = version;
            }

            (void) ngx_http_nb_maint_events_add(sh, shpool, (u_char *) p,
                                                nl - p);

        } else if (nl > p) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "nb_maint: skipping a bad line in \"%V\"",
                          &store->events_path);
        }

        cJSON_Delete(json);
        p = nl + 1;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    /* the file grows by a line a change: keep it to what the ring holds */

    for (p = buf, lines = 0; p < end; p++) {
        lines += (*p == '\n');
    }

    if (lines > 2 * NB_EVENTS_MAX) {
        ngx_http_nb_maint_file_compact(store, buf, end, log);
    }

    free(buf);
}


static void
ngx_http_nb_maint_file_compact(ngx_http_nb_maint_store_t *store, char *buf,
    char *end, ngx_log_t *log)
{
    char             *p;
    u_char            tmp[NGX_MAX_PATH];
    ngx_fd_t          fd;
    ngx_uint_t        lines;
    ngx_file_info_t   fi;

    for (p = end, lines = 0; p > buf; p--) {
        if (p[-1] == '\n' && p < end && ++lines > NB_EVENTS_MAX) {
            break;
        }
    }

    ngx_snprintf(tmp, NGX_MAX_PATH, "%V.%P.tmp%Z", &store->events_path,
                 ngx_pid);

    if (ngx_file_info(store->events_path.data, &fi) == NGX_FILE_ERROR) {
        return;
    }

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE, 0600);
    if (fd == NGX_INVALID_FILE) {
        return;
    }

    /*
     * the master (root) compacts what the workers append to: the new file
     * keeps the old one's owner and mode, or the workers could not write
     */

    if (fchown(fd, fi.st_uid, fi.st_gid) == -1
        || fchmod(fd, fi.st_mode & 07777) == -1
        || ngx_http_nb_maint_write_all(fd, (u_char *) p, end - p) != NGX_OK
        || ngx_rename_file(tmp, store->events_path.data) == NGX_FILE_ERROR)
    {
        ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                      "nb_maint: cannot compact \"%V\"", &store->events_path);
        ngx_delete_file(tmp);
    }

    ngx_close_file(fd);
}


static ngx_int_t
ngx_http_nb_maint_write_all(ngx_fd_t fd, u_char *data, size_t len)
{
    ssize_t  n;

    while (len) {
        n = write(fd, data, len);

        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                continue;
            }
            return NGX_ERROR;
        }

        data += n;
        len -= n;
    }

    return NGX_OK;
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
static ngx_int_t ngx_http_nb_maint_file_write_text(
    ngx_http_nb_maint_store_t *store, ngx_str_t *text, ngx_str_t *event,
    ngx_uint_t durable, ngx_err_t *err, const char **failed);


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
        || ngx_http_nb_maint_pid_alive(writer))
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


/* the state file's directory, NUL-terminated, into buf */

static u_char *
ngx_http_nb_maint_file_dir(ngx_str_t *path, u_char *buf, size_t size)
{
    u_char  *p;

    p = path->data + path->len;

    while (p > path->data && p[-1] != '/') {
        p--;
    }

    if (p == path->data) {
        return (u_char *) ".";
    }

    if (p - 1 == path->data) {
        return (u_char *) "/";
    }

    if ((size_t) (p - path->data) > size) {
        return NULL;
    }

    *ngx_cpymem(buf, path->data, p - 1 - path->data) = '\0';

    return buf;
}


/*
 * Write the state file (temp file, fsync, rename) and append its audit
 * line, in an order that never leaves a half change: the audit line goes
 * in before the rename and is cut off again if the rename fails.  durable:
 * fsync the state before the rename (the file store; a cache need not).
 */

static ngx_int_t
ngx_http_nb_maint_file_write_text(ngx_http_nb_maint_store_t *store,
    ngx_str_t *text, ngx_str_t *event, ngx_uint_t durable, ngx_err_t *err,
    const char **failed)
{
    u_char           tmp[NGX_MAX_PATH];
    off_t            size;
    ngx_fd_t         fd, efd;
    ngx_file_info_t  fi;

    *err = 0;
    efd = NGX_INVALID_FILE;
    size = 0;

    ngx_snprintf(tmp, NGX_MAX_PATH, "%V.%P.tmp%Z", &store->path, ngx_pid);

    *failed = "create the temporary file";

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE, 0600);
    if (fd == NGX_INVALID_FILE) {
        *err = ngx_errno;
        return NGX_ERROR;
    }

    *failed = "write";

    if (ngx_http_nb_maint_write_all(fd, text->data, text->len) != NGX_OK) {
        goto failed;
    }

    *failed = "fsync";

    if (durable && fsync(fd) == -1) {
        goto failed;
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        fd = NGX_INVALID_FILE;
        *failed = "close";
        goto failed;
    }

    fd = NGX_INVALID_FILE;

    if (event && event->len) {
        *failed = "append to the events file";

        efd = ngx_open_file(store->events_path.data, NGX_FILE_APPEND,
                            NGX_FILE_CREATE_OR_OPEN, 0600);

        if (efd == NGX_INVALID_FILE
            || ngx_fd_info(efd, &fi) == NGX_FILE_ERROR)
        {
            goto failed;
        }

        size = ngx_file_size(&fi);

        if (ngx_http_nb_maint_write_all(efd, event->data, event->len)
            != NGX_OK)
        {
            goto failed;
        }
    }

    *failed = "rename";

    if (ngx_rename_file(tmp, store->path.data) == NGX_FILE_ERROR) {
        goto failed;
    }

    if (efd != NGX_INVALID_FILE) {
        (void) ngx_close_file(efd);
    }

    return NGX_OK;

failed:

    *err = ngx_errno;

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    if (efd != NGX_INVALID_FILE) {
        /* the change did not happen: neither does its audit line */
        if (size && ftruncate(efd, size) == -1) {
            /* nothing more to do */
        }

        (void) ngx_close_file(efd);
    }

    (void) ngx_delete_file(tmp);

    return NGX_ERROR;
}


/* a synchronous write: the master at start, the redis store's cache */

ngx_int_t
ngx_http_nb_maint_file_write(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_state_t *st, ngx_str_t *event, ngx_uint_t durable,
    ngx_log_t *log)
{
    char        *s;
    size_t       len;
    u_char      *line;
    ngx_err_t    err;
    ngx_int_t    rc;
    ngx_str_t    text, ev;
    const char  *failed;

    s = ngx_http_nb_maint_state_serialize(st, 1);
    if (s == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(s);
    ev.len = (event && event->len) ? event->len + 1 : 0;

    line = ngx_alloc(len + 1 + ev.len, log);
    if (line == NULL) {
        cJSON_free(s);
        return NGX_ERROR;
    }

    text.data = line;
    text.len = len + 1;
    *ngx_cpymem(line, s, len) = '\n';
    cJSON_free(s);

    ev.data = line + len + 1;

    if (ev.len) {
        *ngx_cpymem(ev.data, event->data, event->len) = '\n';
    }

    rc = ngx_http_nb_maint_file_write_text(store, &text, &ev, durable, &err,
                                           &failed);
    ngx_free(line);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, err,
                      "nb_maint: cannot write \"%V\" (%s)", &store->path,
                      failed);
    }

    return rc;
}


/*
 * At every (re)configuration, in the master (and for nginx -t): the store
 * must be writable by the worker user, or the configuration fails with the
 * path and the reason; and one gateway only owns a file store, by an
 * flock() on "<file>.lock" that the master takes and keeps (its workers
 * inherit it).  A second gateway on the same file reads the state, says
 * store.ok=false and refuses writes.
 */

static ngx_fd_t    ngx_http_nb_maint_lock_fd = NGX_INVALID_FILE;
static u_char      ngx_http_nb_maint_lock_path[NGX_MAX_PATH];


/* may uid (with gid and its groups) access a file of this info for mask */

static ngx_uint_t
ngx_http_nb_maint_may(ngx_file_info_t *fi, ngx_uid_t uid, ngx_gid_t gid,
    gid_t *groups, int ngroups, mode_t mask)
{
    int  i;

    if (uid == 0) {
        return 1;
    }

    if (fi->st_uid == uid) {
        return (fi->st_mode & (mask << 6)) == (mask << 6);
    }

    if (fi->st_gid == gid) {
        return (fi->st_mode & (mask << 3)) == (mask << 3);
    }

    for (i = 0; i < ngroups; i++) {
        if (fi->st_gid == groups[i]) {
            return (fi->st_mode & (mask << 3)) == (mask << 3);
        }
    }

    return (fi->st_mode & mask) == mask;
}


static ngx_int_t
ngx_http_nb_maint_file_writable(ngx_http_nb_maint_store_t *store,
    ngx_log_t *log)
{
    int               ngroups;
    u_char            dirbuf[NGX_MAX_PATH], *dir;
    gid_t             groups[64];
    ngx_uid_t         uid;
    ngx_gid_t         gid;
    const char       *user;
    struct statvfs    vfs;
    ngx_file_info_t   fi;
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(store->cycle->conf_ctx,
                                           ngx_core_module);

    uid = geteuid();
    gid = getegid();
    user = "this user";
    ngroups = 0;

    if (uid == 0 && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        uid = ccf->user;
        gid = ccf->group;
        user = ccf->username;

        ngroups = 64;
        if (getgrouplist(user, gid, groups, &ngroups) == -1) {
            ngroups = 0;
        }
    }

    dir = ngx_http_nb_maint_file_dir(&store->path, dirbuf, NGX_MAX_PATH);

    if (dir == NULL) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "nb_maint_store \"%V\": path too long", &store->path);
        return NGX_ERROR;
    }

    if (ngx_file_info(dir, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "nb_maint_store \"%V\": cannot use the directory "
                      "\"%s\"", &store->path, dir);
        return NGX_ERROR;
    }

    if (!ngx_is_dir(&fi)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "nb_maint_store \"%V\": \"%s\" is not a directory",
                      &store->path, dir);
        return NGX_ERROR;
    }

    if (!ngx_http_nb_maint_may(&fi, uid, gid, groups, ngroups, 3)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "nb_maint_store \"%V\": the directory \"%s\" is not "
                      "writable by the worker user \"%s\" (owner %d, "
                      "mode %03o); the store could not be written",
                      &store->path, dir, user, (int) fi.st_uid,
                      (int) (fi.st_mode & 0777));
        return NGX_ERROR;
    }

    if (statvfs((char *) dir, &vfs) == 0 && (vfs.f_flag & ST_RDONLY)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "nb_maint_store \"%V\": \"%s\" is on a read-only "
                      "file system", &store->path, dir);
        return NGX_ERROR;
    }

    if (ngx_file_info(store->events_path.data, &fi) != NGX_FILE_ERROR
        && !ngx_http_nb_maint_may(&fi, uid, gid, groups, ngroups, 2))
    {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "nb_maint_store \"%V\": the events file \"%V\" is not "
                      "writable by the worker user \"%s\" (owner %d, mode "
                      "%03o)", &store->path, &store->events_path, user,
                      (int) fi.st_uid, (int) (fi.st_mode & 0777));
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_nb_maint_file_lock(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, ngx_log_t *log)
{
    u_char    path[NGX_MAX_PATH], pid[NGX_INT64_LEN + 2], *p;
    ssize_t   n;
    ngx_fd_t  fd, wfd;

    p = ngx_snprintf(path, NGX_MAX_PATH - 1, "%V.lock", &store->path);
    *p = '\0';

    if (ngx_http_nb_maint_lock_fd != NGX_INVALID_FILE) {

        if (ngx_strcmp(path, ngx_http_nb_maint_lock_path) == 0) {
            return;                     /* a reload: ours already */
        }

        /*
         * another file: the old one's lock stays held, as this reload may
         * still be rolled back (one descriptor per store ever used)
         */
    }

    /* held read-only: it must not keep the file system busy (remount) */
    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_CREATE_OR_OPEN, 0644);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "nb_maint: cannot open the lock file \"%s\"", path);
        ngx_http_nb_maint_file_error(sh, "cannot open the lock file of "
                                     "\"%V\" (%s)", &store->path,
                                     strerror(ngx_errno));
        sh->store_readonly |= NB_STORE_NOT_OURS;
        return;
    }

    if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
        n = pread(fd, pid, NGX_INT64_LEN, 0);
        pid[n > 0 ? n : 0] = '\0';

        (void) ngx_close_file(fd);

        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "nb_maint: the file store \"%V\" belongs to another "
                      "gateway (master pid %s); this one refuses writes: "
                      "use redis:// for several gateways", &store->path,
                      n > 0 ? (char *) pid : "unknown");

        ngx_http_nb_maint_file_error(sh, "\"%V\" is used by another "
                                     "gateway (master pid %s): use redis:// "
                                     "for several gateways", &store->path,
                                     n > 0 ? (char *) pid : "?");
        sh->store_readonly |= NB_STORE_NOT_OURS;
        return;
    }

    /* the owner's pid, for the other gateway's message only */

    p = ngx_sprintf(pid, "%P\n", ngx_pid);
    wfd = ngx_open_file(path, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE, 0644);

    if (wfd != NGX_INVALID_FILE) {
        if (write(wfd, pid, p - pid) == -1) {
            /* only informative */
        }

        (void) ngx_close_file(wfd);
    }

    ngx_http_nb_maint_lock_fd = fd;
    ngx_cpystrn(ngx_http_nb_maint_lock_path, path, NGX_MAX_PATH);
}


ngx_int_t
ngx_http_nb_maint_file_check(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, ngx_log_t *log)
{
    if (store->type.len != 4 || ngx_strncmp(store->type.data, "file", 4))
    {
        return NGX_OK;
    }

    if (ngx_http_nb_maint_file_writable(store, log) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!ngx_test_config) {
        ngx_http_nb_maint_file_lock(store, sh, log);
    }

    return NGX_OK;
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
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    ngx_http_nb_maint_state_lock_write();

    if (st->version <= sh->state.version) {
        ngx_http_nb_maint_state_unlock_write();
        return NGX_DECLINED;
    }

    ngx_http_nb_maint_state_commit(st, event);

    ngx_http_nb_maint_state_unlock_write();

    /* the local cache, after the lock: no lock is ever held across I/O */

    if (store->path.len
        && ngx_http_nb_maint_file_write(store, st, event, 0, log) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "nb_maint: cannot update the local cache \"%V\"",
                      &store->path);
    }

    return NGX_OK;
}
