/*
 * nb_maint: what the gateway says on a WebSocket it answers (SPEC section
 * 7): the state as gated sockets see it (a key: version and kind), and
 * NocoBase's "maintaining" message for it as ready-made frames (kept per
 * worker for the current key, so that a state change costs one message
 * however many sockets hear it); server frames; and whether a public
 * request would find a node now.
 *
 * May call: state.c, json.c.
 */

#include "ngx_http_nb_maint_ws.h"


static ngx_str_t          ngx_http_nb_maint_ws_msg;   /* frames for a key */
static uint64_t           ngx_http_nb_maint_ws_msg_key;


/* whether a public request would find a node now (SPEC section 3) */

ngx_uint_t
ngx_http_nb_maint_public_node(void)
{
    ngx_int_t                       want;
    ngx_uint_t                      i, j, n, mode;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_state_t      *st;
    ngx_http_nb_maint_srv_conf_t  **up;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_nb_maint_module);
    sh = ngx_http_nb_maint_shm();
    st = ngx_http_nb_maint_snapshot();

    mode = (st->mode == NB_MODE_RESTORING) ? st->restoring_from : st->mode;

    if (mode == NB_MODE_UPGRADE) {
        return 0;
    }

    /* no nb_maint upstream: nothing to judge, /ws goes where it is sent */
    if (nmcf->upstreams.nelts == 0) {
        return 1;
    }

    want = -1;

    if (mode == NB_MODE_MAINTENANCE) {
        want = ngx_http_nb_maint_designated();    /* kept with the state */
        if (want < 0) {
            return 0;
        }
    }

    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        for (j = 0; j < up[i]->nnodes; j++) {
            n = up[i]->nodes[j];

            if (up[i]->down[j] || nb_drained(st, n)
                || (want >= 0 && (ngx_int_t) n != want)
                || sh->node_down[n] == NB_NODE_DOWN
                || (sh->node_down[n] == NB_NODE_BUSY && want < 0))
            {
                continue;
            }

            return 1;
        }
    }

    return 0;
}


/* the state as gated sockets see it: version and kind */

uint64_t
ngx_http_nb_maint_ws_key(void)
{
    ngx_uint_t                  kind;
    ngx_http_nb_maint_state_t  *st;

    st = ngx_http_nb_maint_snapshot();

    if (st->mode == NB_MODE_UPGRADE
        || (st->mode == NB_MODE_RESTORING
            && st->restoring_from == NB_MODE_UPGRADE))
    {
        kind = NB_WS_UPGRADE;

    } else if (!ngx_http_nb_maint_public_node()) {
        kind = NB_WS_STOPPED;

    } else {
        kind = NB_WS_ALLOWED;
    }

    return (st->version << 2) | kind;
}


/* a server frame: FIN + opcode, unmasked */

u_char *
ngx_http_nb_maint_ws_frame(u_char *p, ngx_uint_t opcode, u_char *data,
    size_t len)
{
    *p++ = (u_char) (0x80 | opcode);

    if (len < 126) {
        *p++ = (u_char) len;

    } else {
        *p++ = 126;
        *p++ = (u_char) (len >> 8);
        *p++ = (u_char) len;
    }

    return ngx_cpymem(p, data, len);
}


/*
 * NocoBase's messages, rendered once per state key:
 *   {"type":"maintaining","payload":{"code":"APP_COMMANDING",
 *    "message":"...","command":{"name":"upgrade"}}}
 *   {"type":"maintaining","payload":{"code":"APP_STOPPED",...}}
 *   {"type":"maintaining","payload":{"code":"APP_RUNNING",...,
 *    "refresh":true}} and a close frame (1000)
 */

ngx_str_t *
ngx_http_nb_maint_ws_message(uint64_t key)
{
    char                       *s;
    u_char                     *p;
    size_t                      len;
    cJSON                      *root, *pl, *cmd;
    ngx_uint_t                  kind;
    ngx_http_nb_maint_state_t  *st;

    static u_char               close_1000[] = { 0x03, 0xe8 };

    if (ngx_http_nb_maint_ws_msg.data && ngx_http_nb_maint_ws_msg_key == key)
    {
        return &ngx_http_nb_maint_ws_msg;
    }

    kind = key & 3;
    st = ngx_http_nb_maint_snapshot();

    root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "type", "maintaining");
    pl = cJSON_AddObjectToObject(root, "payload");

    if (pl == NULL) {
        cJSON_Delete(root);
        return NULL;
    }

    switch (kind) {

    case NB_WS_UPGRADE:
        cJSON_AddStringToObject(pl, "code", "APP_COMMANDING");

        if (st->reason_len) {
            cJSON_AddItemToObject(pl, "message",
                      ngx_http_nb_maint_json_strn(st->reason, st->reason_len));
        } else {
            cJSON_AddStringToObject(pl, "message",
                                    "The application is being upgraded to "
                                    "a new version. It will be back "
                                    "shortly.");
        }

        cmd = cJSON_AddObjectToObject(pl, "command");
        cJSON_AddStringToObject(cmd, "name", "upgrade");
        break;

    case NB_WS_STOPPED:
        cJSON_AddStringToObject(pl, "code", "APP_STOPPED");
        cJSON_AddStringToObject(pl, "message", "application main is stopped");
        break;

    default:
        cJSON_AddStringToObject(pl, "code", "APP_RUNNING");
        cJSON_AddStringToObject(pl, "message", "application main is running");
        cJSON_AddTrueToObject(pl, "refresh");
    }

    s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);

    if (s == NULL) {
        return NULL;
    }

    len = ngx_strlen(s);

    if (len > 65535) {
        ngx_free(s);
        return NULL;
    }

    if (ngx_http_nb_maint_ws_msg.data) {
        ngx_free(ngx_http_nb_maint_ws_msg.data);
        ngx_http_nb_maint_ws_msg.data = NULL;
    }

    p = ngx_alloc(4 + len + 4, ngx_cycle->log);
    if (p == NULL) {
        ngx_free(s);
        return NULL;
    }

    ngx_http_nb_maint_ws_msg.data = p;

    p = ngx_http_nb_maint_ws_frame(p, 0x1, (u_char *) s, len);

    if (kind == NB_WS_ALLOWED) {
        p = ngx_http_nb_maint_ws_frame(p, 0x8, close_1000, 2);
    }

    ngx_free(s);

    ngx_http_nb_maint_ws_msg.len = p - ngx_http_nb_maint_ws_msg.data;
    ngx_http_nb_maint_ws_msg_key = key;

    return &ngx_http_nb_maint_ws_msg;
}
