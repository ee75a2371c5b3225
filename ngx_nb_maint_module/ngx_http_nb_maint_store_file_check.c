/*
 * nb_maint: whether this gateway may use its state file (SPEC section 4):
 * at nginx -t, start and reload the file's directory must be writable by
 * the worker user and have room, and the master takes and keeps an
 * flock() on "<file>.lock" so that one gateway only owns the file; a
 * second one reads the state, reports store.ok=false and refuses writes.
 *
 * May call: store_file_write.c, state.c.
 */

#include "ngx_http_nb_maint_store_file.h"

#include <grp.h>
#include <sys/file.h>
#include <sys/statvfs.h>


/* the lock the master holds, kept across reloads */
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


/*
 * A file's permission bits as "0755" (ngx_sprintf() has no octal
 * conversion): the setuid, setgid and sticky digit, then three more.
 */

static u_char *
ngx_http_nb_maint_mode_octal(u_char *buf, mode_t mode)
{
    ngx_uint_t  i;

    for (i = 0; i < 4; i++) {
        buf[i] = (u_char) ('0' + ((mode >> (3 * (3 - i))) & 7));
    }

    buf[4] = '\0';

    return buf;
}


static ngx_int_t
ngx_http_nb_maint_file_writable(ngx_http_nb_maint_store_t *store,
    ngx_log_t *log)
{
    int               ngroups;
    u_char            dirbuf[NGX_MAX_PATH], *dir, octal[5];
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
                      "mode %s); the store could not be written",
                      &store->path, dir, user, (int) fi.st_uid,
                      ngx_http_nb_maint_mode_octal(octal, fi.st_mode));
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
                      "%s)", &store->path, &store->events_path, user,
                      (int) fi.st_uid,
                      ngx_http_nb_maint_mode_octal(octal, fi.st_mode));
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
