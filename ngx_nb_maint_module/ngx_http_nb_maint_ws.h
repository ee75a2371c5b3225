/*
 * nb_maint: what the WebSocket files offer each other (ws.c: the sockets
 * the gateway answers itself; ws_proxied.c: proxied ones and the tick).
 */

#ifndef _NGX_HTTP_NB_MAINT_WS_H_INCLUDED_
#define _NGX_HTTP_NB_MAINT_WS_H_INCLUDED_


#include "ngx_http_nb_maint.h"


#define NB_WS_TICK          200         /* ms between looks at the state */
#define NB_WS_CTL_MAX       125         /* a control frame's payload */

#define NB_WS_ALLOWED       0           /* kinds of gated sockets' state */
#define NB_WS_UPGRADE       1
#define NB_WS_STOPPED       2


typedef struct ngx_http_nb_maint_ws_s  ngx_http_nb_maint_ws_t;


/* a client's frames being read (ws_frame.c) */
typedef struct {
    u_char                   head[14];
    size_t                   head_len;
    uint64_t                 left;        /* payload bytes still to read */
    u_char                   mask[4];
    size_t                   pos;         /* control payload bytes read */
    ngx_uint_t               opcode;
    unsigned                 payload:1;   /* reading the payload */
    unsigned                 fragmented:1;   /* in a fragmented message */
    u_char                   ctl[NB_WS_CTL_MAX];
} ngx_http_nb_maint_ws_parser_t;


/* the connection under a gated socket (ws_conn.c) */
ngx_int_t ngx_http_nb_maint_ws_conn_adopt(ngx_http_request_t *r);
ngx_pool_cleanup_t *ngx_http_nb_maint_ws_conn_idle(ngx_http_request_t *r,
    ngx_pool_cleanup_pt handler, void *data);
void ngx_http_nb_maint_ws_conn_free(ngx_http_request_t *r);

ngx_int_t ngx_http_nb_maint_ws_parse(ngx_http_nb_maint_ws_parser_t *ps,
    u_char **pos, u_char *end);


uint64_t ngx_http_nb_maint_ws_key(void);
ngx_str_t *ngx_http_nb_maint_ws_message(uint64_t key);
u_char *ngx_http_nb_maint_ws_frame(u_char *p, ngx_uint_t opcode, u_char *data,
    size_t len);

void ngx_http_nb_maint_ws_gated_init(ngx_cycle_t *cycle,
    ngx_event_handler_pt tick);
void ngx_http_nb_maint_ws_arm(void);
ngx_uint_t ngx_http_nb_maint_ws_gated_empty(void);
uint64_t ngx_http_nb_maint_ws_gated_key(void);
void ngx_http_nb_maint_ws_update(void);
ngx_http_nb_maint_ws_t *ngx_http_nb_maint_ws_adopt(ngx_http_request_t *r);
ngx_int_t ngx_http_nb_maint_ws_open(ngx_http_request_t *r, u_char *accept);
void ngx_http_nb_maint_ws_sync(ngx_http_nb_maint_ws_t *ws);

ngx_int_t ngx_http_nb_maint_ws_greet(ngx_http_request_t *r,
    ngx_http_nb_maint_ctx_t *ctx);


#endif /* _NGX_HTTP_NB_MAINT_WS_H_INCLUDED_ */
