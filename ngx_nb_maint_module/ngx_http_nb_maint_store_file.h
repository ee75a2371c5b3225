/*
 * nb_maint: what the file store's files offer each other (not the rest of
 * the module: that is in ngx_http_nb_maint.h).
 */

#ifndef _NGX_HTTP_NB_MAINT_STORE_FILE_H_INCLUDED_
#define _NGX_HTTP_NB_MAINT_STORE_FILE_H_INCLUDED_


#include "ngx_http_nb_maint.h"


#define NB_FILE_MAX  (1024 * 1024)


void ngx_http_nb_maint_file_error(ngx_http_nb_maint_shm_t *sh,
    const char *fmt, ngx_str_t *path, const char *detail);
ngx_int_t ngx_http_nb_maint_write_all(ngx_fd_t fd, u_char *data, size_t len);
u_char *ngx_http_nb_maint_file_dir(ngx_str_t *path, u_char *buf,
    size_t size);
ngx_int_t ngx_http_nb_maint_file_write_text(ngx_http_nb_maint_store_t *store,
    ngx_str_t *text, ngx_str_t *event, ngx_uint_t durable, ngx_err_t *err,
    const char **failed);


#endif /* _NGX_HTTP_NB_MAINT_STORE_FILE_H_INCLUDED_ */
