/*
 * nb_maint: the file store (SPEC section 4, "nb_maint_store file:").
 *
 * The state is one small JSON file, replaced atomically (temp file, fsync,
 * rename) on every change; events are JSON lines appended to
 * "<file>.events".  A corrupt state file is renamed to "<file>.corrupt"
 * and reported, never silently overwritten.
 */

#include "ngx_http_nb_maint.h"


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


char *
ngx_http_nb_maint_store_file_init(ngx_conf_t *cf,
    ngx_http_nb_maint_store_t *store, ngx_str_t *path)
{
    u_char  *p;

    ngx_str_set(&store->type, "file");

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
        sh->store_readonly = 1;
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
    char        *p;
    u_char       tmp[NGX_MAX_PATH];
    ngx_fd_t     fd;
    ngx_uint_t   lines;

    for (p = end, lines = 0; p > buf; p--) {
        if (p[-1] == '\n' && p < end && ++lines > NB_EVENTS_MAX) {
            break;
        }
    }

    ngx_snprintf(tmp, NGX_MAX_PATH, "%V.%P.tmp%Z", &store->events_path,
                 ngx_pid);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE, 0600);
    if (fd == NGX_INVALID_FILE) {
        return;
    }

    if (ngx_http_nb_maint_write_all(fd, (u_char *) p, end - p) != NGX_OK
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


/* the file store's compare-and-save: serialized by the shm write mutex */

static ngx_int_t
ngx_http_nb_maint_file_save(ngx_http_nb_maint_store_t *store,
    uint64_t expected, ngx_http_nb_maint_state_t *st, ngx_str_t *event,
    ngx_log_t *log, ngx_http_nb_maint_store_done_pt done, void *data)
{
    ngx_int_t                 rc;
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    ngx_http_nb_maint_state_lock_write();

    if (sh->store_readonly) {
        ngx_http_nb_maint_state_unlock_write();
        return NGX_ERROR;
    }

    if (sh->state.version != expected) {
        ngx_http_nb_maint_state_unlock_write();
        return NGX_DECLINED;
    }

    rc = ngx_http_nb_maint_file_write(store, st, event, 1, log);

    if (rc == NGX_OK) {
        ngx_http_nb_maint_state_commit(st, event);

        if (!sh->store_ok) {
            ngx_http_nb_maint_set_store_status(1, NULL);
        }

    } else {
        ngx_http_nb_maint_set_store_status(0, "cannot write \"%V\" (see "
                                           "error.log)", &store->path);
    }

    ngx_http_nb_maint_state_unlock_write();

    return rc;
}


/* durable: fsync before the rename (the file store); a cache need not */

ngx_int_t
ngx_http_nb_maint_file_write(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_state_t *st, ngx_str_t *event, ngx_uint_t durable,
    ngx_log_t *log)
{
    char       *s;
    u_char      tmp[NGX_MAX_PATH];
    ngx_fd_t    fd;
    ngx_int_t   rc;

    s = ngx_http_nb_maint_state_serialize(st, 1);

    if (s == NULL) {
        return NGX_ERROR;
    }

    ngx_snprintf(tmp, NGX_MAX_PATH, "%V.%P.tmp%Z", &store->path, ngx_pid);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE, 0600);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "nb_maint: cannot create \"%s\"", tmp);
        cJSON_free(s);
        return NGX_ERROR;
    }

    rc = ngx_http_nb_maint_write_all(fd, (u_char *) s, ngx_strlen(s));
    cJSON_free(s);

    if (rc == NGX_OK
        && (write(fd, "\n", 1) != 1 || (durable && fsync(fd) == -1)))
    {
        rc = NGX_ERROR;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "nb_maint: cannot write \"%s\"", tmp);
        ngx_close_file(fd);
        ngx_delete_file(tmp);
        return NGX_ERROR;
    }

    ngx_close_file(fd);

    if (ngx_rename_file(tmp, store->path.data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "nb_maint: cannot rename \"%s\" to \"%V\"",
                      tmp, &store->path);
        ngx_delete_file(tmp);
        return NGX_ERROR;
    }

    if (event == NULL || event->len == 0) {
        return NGX_OK;
    }

    /* the state is stored; a lost audit line is logged, not fatal */

    fd = ngx_open_file(store->events_path.data, NGX_FILE_APPEND,
                       NGX_FILE_CREATE_OR_OPEN, 0600);

    if (fd == NGX_INVALID_FILE
        || ngx_http_nb_maint_write_all(fd, event->data, event->len) != NGX_OK
        || ngx_http_nb_maint_write_all(fd, (u_char *) "\n", 1) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "nb_maint: cannot append to \"%V\"",
                      &store->events_path);
    }

    if (fd != NGX_INVALID_FILE) {
        ngx_close_file(fd);
    }

    return NGX_OK;
}
