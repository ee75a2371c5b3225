/*
 * nb_maint: what the admin API's own files share (SPEC section 5).
 *
 * Included only by admin_token.c, admin_status.c, admin_write.c,
 * admin_bypass.c, dashboard.c and admin.c.  Their order, bottom up:
 * admin_token.c (tokens, Bearer authentication), admin_status.c (reads:
 * status, node, events, metrics), admin_write.c (changes: mode, restore,
 * drain), admin_bypass.c (the bypass cookie: POST, GET, DELETE),
 * dashboard.c (the page and the event stream), admin.c (routing, on top).
 * Answers and errors come from http.c, below them all.
 */

#ifndef _NGX_HTTP_NB_MAINT_ADMIN_H_INCLUDED_
#define _NGX_HTTP_NB_MAINT_ADMIN_H_INCLUDED_


#include "ngx_http_nb_maint.h"


typedef struct ngx_http_nb_maint_change_s  ngx_http_nb_maint_change_t;


typedef struct {
    ngx_http_nb_maint_ctx_t       base;        /* the module's request ctx */
    ngx_str_t                     actor;       /* "name@address" */
    ngx_int_t                     if_match;    /* -1: none */
    ngx_str_t                     path;        /* after the location */
    ngx_uint_t                    route;
    ngx_int_t                     node;
    ngx_http_nb_maint_change_t   *change;      /* a write in the store */
    ngx_http_nb_maint_state_t    *written;     /* ... and its state */
    ngx_uint_t                    tries;
} ngx_http_nb_maint_admin_ctx_t;


/* a route's handler: body is NULL for reads and for writes without one */
typedef ngx_int_t (*ngx_http_nb_maint_route_pt)(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);


/* admin_token.c */
ngx_http_nb_maint_token_t *ngx_http_nb_maint_admin_auth(
    ngx_http_request_t *r, ngx_http_nb_maint_loc_conf_t *nlcf);

/* admin_status.c */
cJSON *ngx_http_nb_maint_status_json_of(ngx_http_request_t *r,
    ngx_http_nb_maint_state_t *written, uint64_t *version);
ngx_int_t ngx_http_nb_maint_admin_send_state(ngx_http_request_t *r,
    ngx_uint_t status, ngx_http_nb_maint_state_t *written);
ngx_int_t ngx_http_nb_maint_admin_status(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
ngx_int_t ngx_http_nb_maint_admin_node(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
ngx_int_t ngx_http_nb_maint_admin_since(ngx_http_request_t *r,
    uint64_t *since);
ngx_int_t ngx_http_nb_maint_events_json(cJSON *list, uint64_t since,
    uint64_t *last);
ngx_int_t ngx_http_nb_maint_admin_events(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
ngx_int_t ngx_http_nb_maint_admin_metrics(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);

/* admin_write.c */
ngx_int_t ngx_http_nb_maint_admin_mode(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
ngx_int_t ngx_http_nb_maint_admin_restore(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
ngx_int_t ngx_http_nb_maint_admin_drain(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
ngx_int_t ngx_http_nb_maint_admin_undrain(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);

/* admin_bypass.c */
ngx_int_t ngx_http_nb_maint_admin_bypass(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
ngx_int_t ngx_http_nb_maint_admin_bypass_get(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
ngx_int_t ngx_http_nb_maint_admin_bypass_delete(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);

/* dashboard.c */
ngx_int_t ngx_http_nb_maint_admin_dashboard(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
ngx_int_t ngx_http_nb_maint_admin_stream(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);


#endif /* _NGX_HTTP_NB_MAINT_ADMIN_H_INCLUDED_ */
