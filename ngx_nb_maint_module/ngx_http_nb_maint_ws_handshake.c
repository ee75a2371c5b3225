/*
 * nb_maint: the handshake of NocoBase's /ws the gateway answers itself
 * (SPEC sections 7 and 10a).
 *
 * The gate (rewrite phase) marks a handshake the gateway answers: the rest
 * of the rewrite phase is skipped (as for the 503 page, "return" or
 * "rewrite" cannot slip past it) and the socket is answered in the content
 * phase, so that the access phase of the location (allow/deny, auth_basic,
 * limit_conn, limit_req) applies as to any request.  Other requests cost
 * nothing here.  ws.c keeps the socket from then on.
 *
 * May call: ws.c, ws_message.c, bypass.c, state.c.
 */

#include "ngx_http_nb_maint_ws.h"
#include <openssl/sha.h>


#define NB_WS_GUID          "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


static ngx_int_t ngx_http_nb_maint_ws_handler(ngx_http_request_t *r);


/* is this NocoBase's WebSocket handshake on nb_maint_ws_path? */

static ngx_uint_t
ngx_http_nb_maint_ws_request(ngx_http_request_t *r,
    ngx_http_nb_maint_loc_conf_t *nlcf, ngx_str_t *key)
{
    ngx_uint_t        i, upgrade, version;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (r->method != NGX_HTTP_GET || r->http_version != NGX_HTTP_VERSION_11
        || r != r->main
        || r->uri.len != nlcf->ws_path.len
        || ngx_strncmp(r->uri.data, nlcf->ws_path.data, r->uri.len) != 0)
    {
        return 0;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return 0;
    }
#endif

    upgrade = 0;
    version = 0;
    key->len = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

#define nb_hdr(name)  (h[i].key.len == sizeof(name) - 1                       \
                       && ngx_strncasecmp(h[i].key.data, (u_char *) name,    \
                                          sizeof(name) - 1) == 0)

        if (nb_hdr("Upgrade")) {
            upgrade = ngx_strlcasestrn(h[i].value.data,
                                       h[i].value.data + h[i].value.len,
                                       (u_char *) "websocket", 9 - 1)
                      != NULL;

        } else if (nb_hdr("Sec-WebSocket-Version")) {
            version = (h[i].value.len == 2
                       && ngx_strncmp(h[i].value.data, "13", 2) == 0);

        } else if (nb_hdr("Sec-WebSocket-Key")) {
            *key = h[i].value;
        }

#undef nb_hdr
    }

    /* the key is 16 bytes in base64; a handshake has no body */
    return upgrade && version && key->len == 24
           && r->headers_in.content_length_n <= 0 && !r->headers_in.chunked;
}


/* whether the gateway answers this handshake now, as a NocoBase node */

static ngx_uint_t
ngx_http_nb_maint_ws_ours(ngx_http_request_t *r,
    ngx_http_nb_maint_loc_conf_t *nlcf, ngx_uint_t gated)
{
    if (gated) {
        return !ngx_http_nb_maint_passed(r, nlcf)
               && !ngx_http_nb_maint_is_bypass(r);
    }

    return !ngx_http_nb_maint_public_node();
}


/* the phase engine's index of the post-rewrite phase (once per worker) */

static ngx_uint_t
ngx_http_nb_maint_ws_post_rewrite(void)
{
    ngx_uint_t                  i;
    ngx_http_phase_handler_t   *ph;
    ngx_http_core_main_conf_t  *cmcf;

    static ngx_uint_t           index;
    static ngx_cycle_t         *cycle;

    if (cycle == ngx_cycle) {
        return index;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_core_module);
    ph = cmcf->phase_engine.handlers;

    for (i = 0; ph[i].checker; i++) {
        if (ph[i].checker == ngx_http_core_post_rewrite_phase) {
            break;
        }
    }

    index = i;
    cycle = (ngx_cycle_t *) ngx_cycle;

    return index;
}


/*
 * From the gate (rewrite phase): NocoBase's /ws that the gateway answers
 * gets its content handler, so the access phase runs first.  NGX_DECLINED:
 * not ours, the request goes on as it is.
 */

ngx_int_t
ngx_http_nb_maint_ws_gate(ngx_http_request_t *r,
    ngx_http_nb_maint_loc_conf_t *nlcf, ngx_uint_t gated)
{
    ngx_str_t  key;

    if (!ngx_http_nb_maint_ws_request(r, nlcf, &key)
        || !ngx_http_nb_maint_ws_ours(r, nlcf, gated))
    {
        return NGX_DECLINED;
    }

    /*
     * The rest of the rewrite phase is skipped, as for the 503 page: a
     * "return" or "rewrite" in the location cannot slip past the gate.
     * The phase engine goes on with the post-rewrite phase, then
     * preaccess and access.
     */
    r->phase_handler = ngx_http_nb_maint_ws_post_rewrite() - 1;
    r->content_handler = ngx_http_nb_maint_ws_handler;

    return NGX_OK;
}


/*
 * The content phase: the handshake answered, unless the state changed
 * meanwhile (limit_req may have delayed it): then the location's own
 * handler (proxy_pass) or the content phase's handlers take it.
 */

static ngx_int_t
ngx_http_nb_maint_ws_handler(ngx_http_request_t *r)
{
    u_char                         sha[SHA_DIGEST_LENGTH];
    u_char                         buf[24 + sizeof(NB_WS_GUID)], accept[32];
    ngx_str_t                      key, src, dst;
    ngx_uint_t                     gated;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_nb_maint_state_t     *st;
    ngx_http_nb_maint_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_http_nb_maint_module);
    st = ngx_http_nb_maint_snapshot();

    gated = st->mode == NB_MODE_UPGRADE
            || (st->mode == NB_MODE_RESTORING
                && st->restoring_from == NB_MODE_UPGRADE);

    if (!ngx_http_nb_maint_ws_request(r, nlcf, &key)
        || !ngx_http_nb_maint_ws_ours(r, nlcf, gated))
    {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
        r->content_handler = clcf->handler;

        return clcf->handler ? clcf->handler(r) : NGX_DECLINED;
    }

    ngx_memcpy(buf, key.data, 24);
    ngx_memcpy(buf + 24, NB_WS_GUID, sizeof(NB_WS_GUID) - 1);

    SHA1(buf, 24 + sizeof(NB_WS_GUID) - 1, sha);

    src.data = sha;
    src.len = SHA_DIGEST_LENGTH;
    dst.data = accept;

    ngx_encode_base64(&dst, &src);
    accept[dst.len] = '\0';

    nb_count(ngx_http_nb_maint_shm(),
             gated ? NB_OUT_GATED : NB_OUT_NO_NODE);

    if (ngx_http_nb_maint_ws_open(r, accept) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the request lives on as the socket: ours until it is closed */
    r->main->count++;

    return NGX_DONE;
}
