/*
 * nb_maint: the client frames of a WebSocket the gateway answers itself
 * (RFC 6455 section 5), read in pieces as they arrive: masked, no RSV bit
 * (no extension is agreed), no reserved opcode, a continuation only inside
 * a fragmented message, control frames short and whole, a close with no
 * payload or a valid code.  Data frames are read and dropped; the payload
 * of a control frame is kept for the answer.  No allocation, no I/O.
 *
 * May call: nothing of nb_maint.
 */

#include "ngx_http_nb_maint_ws.h"


/* a complete frame header: the checks of RFC 6455 section 5 */

static ngx_int_t
ngx_http_nb_maint_ws_header(ngx_http_nb_maint_ws_parser_t *ps, uint64_t len)
{
    ngx_uint_t  fin, opcode;

    fin = ps->head[0] & 0x80;
    opcode = ps->head[0] & 0x0f;

    if ((ps->head[0] & 0x70) || !(ps->head[1] & 0x80) || (len >> 63)) {
        return NGX_ERROR;
    }

    if (opcode & 0x8) {
        /* close, ping, pong; the others are reserved */
        if (opcode > 0xa || len > NB_WS_CTL_MAX || !fin) {
            return NGX_ERROR;
        }

    } else {
        /* continuation only inside a message, text/binary only outside */
        if (opcode > 0x2 || (opcode == 0x0) != ps->fragmented) {
            return NGX_ERROR;
        }

        ps->fragmented = !fin;
    }

    ps->opcode = opcode;

    return NGX_OK;
}


/* a close frame's payload: none, or a code a peer may send (section 7.4) */

static ngx_int_t
ngx_http_nb_maint_ws_close_ok(ngx_http_nb_maint_ws_parser_t *ps)
{
    ngx_uint_t  code;

    if (ps->pos == 0) {
        return NGX_OK;
    }

    if (ps->pos == 1) {
        return NGX_ERROR;
    }

    code = (ps->ctl[0] << 8) | ps->ctl[1];

    if (code < 1000 || code >= 5000
        || (code >= 1004 && code <= 1006)
        || (code >= 1015 && code < 3000))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* header bytes; NGX_OK once the header is complete and sane */

static ngx_int_t
ngx_http_nb_maint_ws_head_byte(ngx_http_nb_maint_ws_parser_t *ps, u_char ch)
{
    size_t    need, i;
    uint64_t  len;

    ps->head[ps->head_len++] = ch;

    if (ps->head_len < 2) {
        return NGX_AGAIN;
    }

    len = ps->head[1] & 0x7f;
    need = 2 + (len == 126 ? 2 : (len == 127 ? 8 : 0)) + 4;

    if (ps->head_len < need) {
        return NGX_AGAIN;
    }

    if (len == 126) {
        len = (ps->head[2] << 8) | ps->head[3];

    } else if (len == 127) {
        len = 0;
        for (i = 2; i < 10; i++) {
            len = (len << 8) | ps->head[i];
        }
    }

    if (ngx_http_nb_maint_ws_header(ps, len) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memcpy(ps->mask, &ps->head[need - 4], 4);
    ps->head_len = 0;
    ps->left = len;
    ps->pos = 0;
    ps->payload = 1;

    return NGX_OK;
}


/*
 * Reads from *pos up to end.  NGX_AGAIN: all read; NGX_OK: a control frame
 * is complete (ps->opcode, its payload in ps->ctl, ps->pos bytes), *pos is
 * right behind it; NGX_ERROR: a protocol error (close with 1002).
 */

ngx_int_t
ngx_http_nb_maint_ws_parse(ngx_http_nb_maint_ws_parser_t *ps, u_char **pos,
    u_char *end)
{
    u_char     *p;
    size_t      n, i;
    ngx_int_t   rc;

    p = *pos;

    while (p < end || (ps->payload && ps->left == 0)) {

        if (!ps->payload) {
            rc = ngx_http_nb_maint_ws_head_byte(ps, *p++);

            if (rc == NGX_ERROR) {
                *pos = p;
                return NGX_ERROR;
            }

            continue;
        }

        n = (size_t) ngx_min((uint64_t) (end - p), ps->left);

        if (ps->opcode & 0x8) {
            for (i = 0; i < n; i++) {
                ps->ctl[ps->pos] = p[i] ^ ps->mask[ps->pos % 4];
                ps->pos++;
            }
        }

        p += n;
        ps->left -= n;

        if (ps->left) {
            break;
        }

        ps->payload = 0;

        if (ps->opcode & 0x8) {
            *pos = p;

            if (ps->opcode == 0x8
                && ngx_http_nb_maint_ws_close_ok(ps) != NGX_OK)
            {
                return NGX_ERROR;
            }

            return NGX_OK;
        }
    }

    *pos = p;

    return NGX_AGAIN;
}
