/*
 * nb_maint: what the 503 answer's files offer each other (page.c: rendering
 * and sending; page_lang.c: languages and what a client wants).
 */

#ifndef _NGX_HTTP_NB_MAINT_PAGE_H_INCLUDED_
#define _NGX_HTTP_NB_MAINT_PAGE_H_INCLUDED_


#include "ngx_http_nb_maint.h"


#define NB_LANGS          5
#define NB_KINDS          4        /* maintenance, upgrade, restoring, none */


typedef struct {
    const char   *tag;
    const char   *prefix;            /* Accept-Language primary tag */
    const char   *heading[NB_KINDS];
    const char   *message[NB_KINDS];
    const char   *reason_label;
    const char   *since_label;
    const char   *retry_label;
    const char   *seconds;
    const char   *no_reason;
    const char   *no_node;           /* the reason when no node is up */
} ngx_http_nb_maint_lang_t;


ngx_http_nb_maint_lang_t *ngx_http_nb_maint_page_lang_get(ngx_uint_t lang);
ngx_uint_t ngx_http_nb_maint_page_lang(ngx_http_request_t *r);
ngx_uint_t ngx_http_nb_maint_wants_json(ngx_http_request_t *r,
    ngx_http_nb_maint_loc_conf_t *nlcf);


#endif /* _NGX_HTTP_NB_MAINT_PAGE_H_INCLUDED_ */
