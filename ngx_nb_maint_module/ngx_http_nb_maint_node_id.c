/*
 * nb_maint: the one grammar of node ids, for every source (server names in
 * the configuration, the admin API, the state file, Redis), and escaping of
 * bytes from the network before they reach a log.
 *
 * A node id is what nginx writes to $upstream_addr for a peer:
 *   a.b.c.d:port, [v6]:port, host:port, unix:/path
 * A valid id never holds a control character, a quote or a backslash, so
 * it can go into a header, a log line, a JSON or Prometheus string as is.
 */

#include "ngx_http_nb_maint.h"


static ngx_uint_t
ngx_http_nb_maint_id_char(u_char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '\\';
}


#define nb_digit(c)  ((c) >= '0' && (c) <= '9')
#define nb_alpha(c)  (ngx_tolower(c) >= 'a' && ngx_tolower(c) <= 'z')
#define nb_xdigit(c) (nb_digit(c)                                             \
                      || (ngx_tolower(c) >= 'a' && ngx_tolower(c) <= 'f'))


ngx_uint_t
ngx_http_nb_maint_node_id_valid(u_char *id, size_t len)
{
    u_char      *p, *end, *colon;
    ngx_int_t    port;

    if (len == 0 || len >= NB_NODE_ID_LEN) {
        return 0;
    }

    end = id + len;

    /* unix:/path, as long as a socket path may be */

    if (len > 6 && ngx_strncmp(id, "unix:/", 6) == 0) {
        for (p = id + 5; p < end; p++) {
            if (!ngx_http_nb_maint_id_char(*p)) {
                return 0;
            }
        }

        return 1;
    }

    /* host:port or [v6]:port */

    for (colon = end - 1; colon > id && *colon != ':'; colon--) {
        /* void */
    }

    if (colon == id || colon == end - 1 || end - colon > 6) {
        return 0;
    }

    port = ngx_atoi(colon + 1, end - colon - 1);

    if (port < 1 || port > 65535) {
        return 0;
    }

    if (*id == '[') {
        if (colon[-1] != ']' || colon - id < 4) {
            return 0;
        }

        for (p = id + 1; p < colon - 1; p++) {
            if (!(nb_xdigit(*p) || *p == ':' || *p == '.')) {
                return 0;
            }
        }

        return 1;
    }

    for (p = id; p < colon; p++) {
        if (!(nb_alpha(*p) || nb_digit(*p) || *p == '.' || *p == '-' || *p == '_')) {
            return 0;
        }
    }

    return 1;
}


/*
 * Bytes from the network for a log line: printable ASCII stays, anything
 * else (control characters, ESC, CR, LF, quotes, backslashes, 8-bit) is
 * written as \xHH.  With dst NULL: the length the escaped form needs.
 */

size_t
ngx_http_nb_maint_escape_log(u_char *dst, u_char *src, size_t len)
{
    size_t         n;
    u_char        *p;
    static u_char  hex[] = "0123456789abcdef";

    if (dst == NULL) {
        n = 0;

        for (p = src; p < src + len; p++) {
            n += ngx_http_nb_maint_id_char(*p) || *p == ' ' ? 1 : 4;
        }

        return n;
    }

    p = dst;

    while (len--) {
        if (ngx_http_nb_maint_id_char(*src) || *src == ' ') {
            *p++ = *src++;
            continue;
        }

        *p++ = '\\';
        *p++ = 'x';
        *p++ = hex[*src >> 4];
        *p++ = hex[*src++ & 0xf];
    }

    return p - dst;
}


/* an escaped copy in pool memory, for "%V" in a log line */

ngx_int_t
ngx_http_nb_maint_escape_log_str(ngx_pool_t *pool, u_char *src, size_t len,
    ngx_str_t *out)
{
    out->len = ngx_http_nb_maint_escape_log(NULL, src, len);
    out->data = ngx_pnalloc(pool, out->len + 1);

    if (out->data == NULL) {
        out->len = 0;
        return NGX_ERROR;
    }

    (void) ngx_http_nb_maint_escape_log(out->data, src, len);

    return NGX_OK;
}
