/*
 * nb_maint: reading the file store at zone creation (SPEC section 4): the
 * state file (a corrupt one renamed to "<file>.corrupt" and reported,
 * never silently overwritten), the last events of "<file>.events" into the
 * ring, and the events file compacted when it has grown.
 *
 * May call: store_file_write.c, state.c, state_events.c, json.c.
 */

#include "ngx_http_nb_maint_store_file.h"


static void ngx_http_nb_maint_file_load_events(
    ngx_http_nb_maint_store_t *store, ngx_http_nb_maint_shm_t *sh,
    ngx_slab_pool_t *shpool, ngx_log_t *log);
static void ngx_http_nb_maint_file_corrupt(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, cJSON *json, const char *msg,
    uint64_t version, ngx_log_t *log);
static void ngx_http_nb_maint_file_compact(ngx_http_nb_maint_store_t *store,
    char *buf, char *end, ngx_log_t *log);


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

    ngx_http_nb_maint_file_corrupt(store, sh, json, msg, version, log);

    cJSON_Delete(json);
    free(buf);
}


/*
 * A state file that does not parse (json: what cJSON made of it, or NULL;
 * msg: why): kept aside as "<file>.corrupt", or, when its version cannot
 * be read, left in place with writes refused, since the next write could
 * reuse a version.
 */

static void
ngx_http_nb_maint_file_corrupt(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, cJSON *json, const char *msg,
    uint64_t version, ngx_log_t *log)
{
    u_char  aside[NGX_MAX_PATH];
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(json, "version");

    if (cJSON_IsObject(json)
        && ngx_http_nb_maint_json_u64(item, NB_VERSION_MAX, &version)
           != NGX_OK)
    {
        /*
         * the version is what must never go back: without it the next
         * write could reuse one, so the file stays and nothing is written
         */

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
