/*
 * nb_maint: writing the file store's files (SPEC section 4): the state
 * file replaced atomically (temporary file, fsync, rename), the audit
 * line appended to "<file>.events"; the synchronous write of the master at
 * start and of the Redis store's cache; a state the store already holds
 * applied to the zone and kept in that cache.  Also the store's error
 * status.  Plain file I/O: the caller decides on which thread it runs.
 *
 * May call: state.c, json.c.
 */

#include "ngx_http_nb_maint_store_file.h"


void
ngx_http_nb_maint_file_error(ngx_http_nb_maint_shm_t *sh, const char *fmt,
    ngx_str_t *path, const char *detail)
{
    u_char  *p;

    p = ngx_snprintf(sh->store_error, NB_STORE_ERROR_LEN, fmt, path, detail);

    sh->store_error_len = p - sh->store_error;
    sh->store_ok = 0;
}


ngx_int_t
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


/* the state file's directory, NUL-terminated, into buf */

u_char *
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
 * fsync, where the file can be: a FIFO or a file system without it
 * (EINVAL) has nothing to make durable.
 */

static ngx_int_t
ngx_http_nb_maint_fsync(ngx_fd_t fd)
{
    if (fsync(fd) == -1 && ngx_errno != NGX_EINVAL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the audit line appended; *size: the events file's size before it */

static ngx_int_t
ngx_http_nb_maint_file_append(ngx_http_nb_maint_store_t *store,
    ngx_str_t *event, ngx_uint_t durable, ngx_fd_t *efd, off_t *size)
{
    ngx_file_info_t  fi;

    *efd = ngx_open_file(store->events_path.data, NGX_FILE_APPEND,
                         NGX_FILE_CREATE_OR_OPEN, 0600);

    if (*efd == NGX_INVALID_FILE || ngx_fd_info(*efd, &fi) == NGX_FILE_ERROR) {
        return NGX_ERROR;
    }

    *size = ngx_file_size(&fi);

    if (ngx_http_nb_maint_write_all(*efd, event->data, event->len) != NGX_OK) {
        return NGX_ERROR;
    }

    return durable ? ngx_http_nb_maint_fsync(*efd) : NGX_OK;
}


/*
 * A rename is durable once its directory is: fsync the directory (issue 21,
 * item 12).  Runs where the write runs: a thread, never the event loop.
 */

static ngx_int_t
ngx_http_nb_maint_file_sync_dir(ngx_str_t *path)
{
    int       fd, rc;
    u_char    buf[NGX_MAX_PATH], *dir;

    dir = ngx_http_nb_maint_file_dir(path, buf, NGX_MAX_PATH);
    if (dir == NULL) {
        ngx_set_errno(NGX_ENAMETOOLONG);
        return NGX_ERROR;
    }

    fd = open((char *) dir, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
    if (fd == -1) {
        return NGX_ERROR;
    }

    rc = ngx_http_nb_maint_fsync(fd);

    if (rc != NGX_OK) {
        rc = ngx_errno;
        (void) close(fd);
        ngx_set_errno(rc);
        return NGX_ERROR;
    }

    (void) close(fd);

    return NGX_OK;
}


/*
 * Write the state file (temp file, fsync, rename) and append its audit
 * line, in an order that never leaves a half change: the audit line goes
 * in before the rename and is cut off again if the rename fails (also when
 * the events file was empty before).  durable: fsync the state and the
 * audit line before the rename and the directory after it (the file
 * store; a cache need not).  A failed directory fsync is a failed write:
 * the change is not acknowledged, though the file may already hold it
 * (as a write whose answer got lost would).
 */

ngx_int_t
ngx_http_nb_maint_file_write_text(ngx_http_nb_maint_store_t *store,
    ngx_str_t *text, ngx_str_t *event, ngx_uint_t durable, ngx_err_t *err,
    const char **failed)
{
    u_char           tmp[NGX_MAX_PATH];
    off_t            size;
    ngx_fd_t         fd, efd;

    *err = 0;
    efd = NGX_INVALID_FILE;
    size = -1;          /* the events file's size before, once known */

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

    if (durable && ngx_http_nb_maint_fsync(fd) != NGX_OK) {
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

        if (ngx_http_nb_maint_file_append(store, event, durable, &efd, &size)
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

    if (durable && ngx_http_nb_maint_file_sync_dir(&store->path) != NGX_OK) {
        *err = ngx_errno;
        *failed = "fsync the directory";
        return NGX_ERROR;
    }

    return NGX_OK;

failed:

    *err = ngx_errno;

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    if (efd != NGX_INVALID_FILE) {
        /* the change did not happen: neither does its audit line */
        if (size >= 0 && ftruncate(efd, size) == -1) {
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
 * A state that the store already holds (from another gateway, or our own
 * write coming back): applied when newer than ours; the Redis store's
 * local cache file follows off the event loop.  NGX_DECLINED when not newer.
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

    /* the store's local cache follows off the event loop (store_cache.c) */

    return NGX_OK;
}
