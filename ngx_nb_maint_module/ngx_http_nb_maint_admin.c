/*
 * nb_maint: the admin API (SPEC section 5).
 *
 * Routing, authentication, body reading and the JSON error envelope live
 * here; every write goes through ngx_http_nb_maint_admin_apply(), which
 * checks If-Match, asks the store first and publishes to shared memory only
 * once the store has accepted the change.
 */

#include "ngx_http_nb_maint.h"
#include <openssl/sha.h>
#include <openssl/crypto.h>
#include "ngx_http_nb_maint_dashboard_html.h"


typedef struct ngx_http_nb_maint_change_s  ngx_http_nb_maint_change_t;

/* fills st with the new state; returns NGX_OK, NGX_DECLINED (no change) */
typedef ngx_int_t (*ngx_http_nb_maint_change_pt)(ngx_http_request_t *r,
    ngx_http_nb_maint_change_t *ch, ngx_http_nb_maint_state_t *st);

struct ngx_http_nb_maint_change_s {
    ngx_http_nb_maint_change_pt   apply;
    const char                   *action;
    cJSON                        *body;
    ngx_int_t                     node;        /* node index or -1 */
    ngx_uint_t                    flag;        /* force, drain value */

    /* set by apply on a refusal */
    ngx_uint_t                    status;
    const char                   *code;
    const char                   *message;
};


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


/* a write without If-Match that loses races: built again on the new state */
#define NB_WRITE_TRIES  64


typedef ngx_int_t (*ngx_http_nb_maint_route_pt)(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);

typedef struct {
    ngx_str_t                     name;
    ngx_uint_t                    method;      /* NGX_HTTP_GET or POST */
    ngx_uint_t                    node;        /* "nodes/{id}[/name]" */
    ngx_http_nb_maint_route_pt    handler;
} ngx_http_nb_maint_route_t;


static ngx_int_t ngx_http_nb_maint_admin_handler(ngx_http_request_t *r);
static void ngx_http_nb_maint_admin_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_nb_maint_admin_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *fmt, ...);
static ngx_int_t ngx_http_nb_maint_admin_status(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
static ngx_int_t ngx_http_nb_maint_admin_events(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
static ngx_int_t ngx_http_nb_maint_admin_mode(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
static ngx_int_t ngx_http_nb_maint_admin_restore(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
static ngx_int_t ngx_http_nb_maint_admin_node(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
static ngx_int_t ngx_http_nb_maint_admin_drain(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
static ngx_int_t ngx_http_nb_maint_admin_bypass(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
static ngx_int_t ngx_http_nb_maint_admin_metrics(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
static ngx_int_t ngx_http_nb_maint_admin_dashboard(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body);
static ngx_int_t ngx_http_nb_maint_admin_output(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, ngx_str_t *body);
static ngx_int_t ngx_http_nb_maint_admin_challenge(ngx_http_request_t *r);
static ngx_int_t ngx_http_nb_maint_admin_apply(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, ngx_http_nb_maint_change_t *ch);
static ngx_int_t ngx_http_nb_maint_admin_early(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *fmt, ...);
static ngx_int_t ngx_http_nb_maint_admin_send_status(ngx_http_request_t *r,
    ngx_uint_t status);
static ngx_int_t ngx_http_nb_maint_admin_send_state(ngx_http_request_t *r,
    ngx_uint_t status, ngx_http_nb_maint_state_t *written);


static ngx_http_nb_maint_route_t  ngx_http_nb_maint_routes[] = {
    { ngx_string("status"), NGX_HTTP_GET, 0,
      ngx_http_nb_maint_admin_status },
    { ngx_string("events"), NGX_HTTP_GET, 0,
      ngx_http_nb_maint_admin_events },
    { ngx_string("mode"), NGX_HTTP_POST, 0,
      ngx_http_nb_maint_admin_mode },
    { ngx_string("restore"), NGX_HTTP_POST, 0,
      ngx_http_nb_maint_admin_restore },
    { ngx_string("bypass"), NGX_HTTP_POST, 0,
      ngx_http_nb_maint_admin_bypass },
    { ngx_string("metrics"), NGX_HTTP_GET, 0,
      ngx_http_nb_maint_admin_metrics },
    { ngx_string(""), NGX_HTTP_GET, 0,
      ngx_http_nb_maint_admin_dashboard },
    { ngx_string(""), NGX_HTTP_GET, 1,
      ngx_http_nb_maint_admin_node },
    { ngx_string("drain"), NGX_HTTP_POST, 1,
      ngx_http_nb_maint_admin_drain },
    { ngx_string("undrain"), NGX_HTTP_POST, 1,
      ngx_http_nb_maint_admin_drain },
    { ngx_null_string, 0, 0, NULL }
};


/* configuration */

char *
ngx_http_nb_maint_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_nb_maint_loc_conf_t *nlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (nlcf->admin) {
        return "is duplicate";
    }

    nlcf->admin = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_nb_maint_admin_handler;

    return NGX_CONF_OK;
}


char *
ngx_http_nb_maint_token_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_nb_maint_loc_conf_t *nlcf = conf;

    u_char                     *p, *end, *line, *eol, *colon, *buf;
    ssize_t                     n;
    ngx_fd_t                    fd;
    ngx_str_t                  *value, name, tok;
    ngx_uint_t                  lineno;
    ngx_file_info_t             fi;
    ngx_http_nb_maint_token_t  *t;

    if (nlcf->tokens != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"nb_maint_admin_token_file\": cannot open "
                           "\"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 1024 * 1024)
    {
        ngx_close_file(fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_admin_token_file\": \"%V\" is "
                           "unreadable or too large", &name);
        return NGX_CONF_ERROR;
    }

    buf = ngx_pnalloc(cf->temp_pool, ngx_file_size(&fi) + 1);
    if (buf == NULL) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, buf, ngx_file_size(&fi));
    ngx_close_file(fd);

    if (n < 0) {
        return NGX_CONF_ERROR;
    }

    nlcf->tokens = ngx_array_create(cf->pool, 4,
                                    sizeof(ngx_http_nb_maint_token_t));
    if (nlcf->tokens == NULL) {
        return NGX_CONF_ERROR;
    }

    p = buf;
    end = buf + n;

    for (lineno = 1; p < end; lineno++, p = eol + 1) {
        eol = ngx_strlchr(p, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        line = p;
        while (line < eol && (*line == ' ' || *line == '\t')) {
            line++;
        }

        tok.data = eol;
        while (tok.data > line && (tok.data[-1] == '\r' || tok.data[-1] == ' '
                                   || tok.data[-1] == '\t'))
        {
            tok.data--;
        }

        if (line == tok.data || *line == '#') {
            continue;
        }

        colon = ngx_strlchr(line, tok.data, ':');

        if (colon == NULL || colon == line || colon + 1 == tok.data) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"nb_maint_admin_token_file\": line %ui of "
                               "\"%V\" is not \"name:token\"", lineno, &name);
            return NGX_CONF_ERROR;
        }

        t = ngx_array_push(nlcf->tokens);
        if (t == NULL) {
            return NGX_CONF_ERROR;
        }

        t->name.len = colon - line;
        t->name.data = ngx_pnalloc(cf->pool, t->name.len);
        if (t->name.data == NULL) {
            return NGX_CONF_ERROR;
        }
        ngx_memcpy(t->name.data, line, t->name.len);

        tok.len = tok.data - (colon + 1);
        tok.data = colon + 1;

        if (tok.len < 16) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "\"nb_maint_admin_token_file\": the token of "
                               "\"%V\" is short; use 16 characters or more",
                               &t->name);
        }

        SHA256(tok.data, tok.len, t->digest);
    }

    /* the plain tokens are not kept in memory */
    ngx_explicit_memzero(buf, n);

    if (nlcf->tokens->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_admin_token_file\": no tokens in "
                           "\"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* authentication: every token compared, each in constant time */

static ngx_http_nb_maint_token_t *
ngx_http_nb_maint_admin_auth(ngx_http_request_t *r,
    ngx_http_nb_maint_loc_conf_t *nlcf)
{
    u_char                      digest[SHA256_DIGEST_LENGTH];
    ngx_str_t                   v;
    ngx_uint_t                  i;
    ngx_http_nb_maint_token_t  *t, *found;

    if (nlcf->tokens == NULL || r->headers_in.authorization == NULL) {
        return NULL;
    }

    v = r->headers_in.authorization->value;

    if (v.len <= 7 || ngx_strncasecmp(v.data, (u_char *) "Bearer ", 7) != 0) {
        return NULL;
    }

    v.data += 7;
    v.len -= 7;

    while (v.len && v.data[0] == ' ') {
        v.data++;
        v.len--;
    }

    SHA256(v.data, v.len, digest);

    found = NULL;
    t = nlcf->tokens->elts;

    for (i = 0; i < nlcf->tokens->nelts; i++) {
        if (CRYPTO_memcmp(digest, t[i].digest, SHA256_DIGEST_LENGTH) == 0) {
            found = &t[i];
        }
    }

    return found;
}


static ngx_int_t
ngx_http_nb_maint_admin_if_match(ngx_http_request_t *r, ngx_int_t *version)
{
    u_char           *p, *end;
    ngx_table_elt_t  *h;

    *version = -1;

    h = r->headers_in.if_match;
    if (h == NULL) {
        return NGX_OK;
    }

    p = h->value.data;
    end = p + h->value.len;

    if (h->value.len == 1 && *p == '*') {
        r->headers_in.if_match = NULL;
        return NGX_OK;
    }

    if (end - p >= 2 && *p == '"' && end[-1] == '"') {
        p++;
        end--;
    }

    if (p == end) {
        return NGX_ERROR;
    }

    *version = ngx_atoi(p, end - p);

    /* ours to answer: the not-modified filter must not see it (412) */
    r->headers_in.if_match = NULL;

    return (*version == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_admin_route(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx)
{
    u_char                     *slash, *p;
    ngx_str_t                   name, id;
    ngx_uint_t                  i, node;
    ngx_http_nb_maint_shm_t    *sh;
    ngx_http_nb_maint_route_t  *rt;

    name = ctx->path;
    node = 0;
    ctx->node = -1;

    if (name.len > 6 && ngx_strncmp(name.data, "nodes/", 6) == 0) {
        node = 1;
        sh = ngx_http_nb_maint_shm();

        /* "nodes/{id}" or "nodes/{id}/{action}"; an id may hold slashes
         * ("unix:/run/app.sock"), so a known id is tried whole first */

        id.data = name.data + 6;
        id.len = name.len - 6;
        name.len = 0;

        ctx->node = ngx_http_nb_maint_node_find(sh, id.data, id.len);

        if (ctx->node == NGX_ERROR) {
            slash = NULL;

            for (p = id.data + id.len - 1; p > id.data; p--) {
                if (*p == '/') {
                    slash = p;
                    break;
                }
            }

            if (slash) {
                name.data = slash + 1;
                name.len = id.data + id.len - name.data;

                ctx->node = ngx_http_nb_maint_node_find(sh, id.data,
                                                        slash - id.data);

                /* an unknown id: split only before a known action, so that
                 * "nodes/unix:/no/such.sock" is an unknown node */

                for (rt = ngx_http_nb_maint_routes;
                     ctx->node == NGX_ERROR && rt->handler;
                     rt++)
                {
                    if (rt->node && rt->name.len == name.len
                        && ngx_strncmp(rt->name.data, name.data, name.len)
                           == 0)
                    {
                        break;
                    }
                }

                if (ctx->node != NGX_ERROR || rt->handler) {
                    id.len = slash - id.data;

                } else {
                    name.len = 0;
                }
            }
        }
    }

    for (i = 0, rt = ngx_http_nb_maint_routes; rt->handler; i++, rt++) {
        if (rt->node == node && rt->name.len == name.len
            && ngx_strncmp(rt->name.data, name.data, name.len) == 0)
        {
            ctx->route = i;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static ngx_uint_t
ngx_http_nb_maint_admin_is_root(ngx_http_request_t *r,
    ngx_http_core_loc_conf_t *clcf)
{
    return r->uri.len <= clcf->name.len
           || (r->uri.len == clcf->name.len + 1
               && r->uri.data[r->uri.len - 1] == '/');
}


static ngx_int_t
ngx_http_nb_maint_admin_handler(ngx_http_request_t *r)
{
    u_char                         *p;
    ngx_int_t                       rc;
    ngx_table_elt_t                *allow;
    ngx_http_nb_maint_token_t      *token;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_nb_maint_route_t      *rt;
    ngx_http_nb_maint_loc_conf_t   *nlcf;
    ngx_http_nb_maint_admin_ctx_t  *ctx;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_http_nb_maint_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    /* conditional requests are ours to answer, never nginx's 412/304 */
    r->disable_not_modified = 1;

    token = ngx_http_nb_maint_admin_auth(r, nlcf);

    if (token == NULL) {
        if (ngx_http_nb_maint_admin_is_root(r, clcf)
            && (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)))
        {
            if (ngx_http_discard_request_body(r) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            /* a browser: 401 still, with the page that asks for a token */
            return ngx_http_nb_maint_admin_dashboard(r, NULL, NULL);
        }

        return ngx_http_nb_maint_admin_early(r, NGX_HTTP_UNAUTHORIZED,
                                 "unauthorized",
                                 r->headers_in.authorization
                                 ? "invalid bearer token"
                                 : "missing \"Authorization: Bearer\" header");
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_nb_maint_admin_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->actor.data = ngx_pnalloc(r->pool, token->name.len + 1
                                  + r->connection->addr_text.len);
    if (ctx->actor.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(ctx->actor.data, token->name.data, token->name.len);
    *p++ = '@';
    p = ngx_cpymem(p, r->connection->addr_text.data,
                   r->connection->addr_text.len);
    ctx->actor.len = p - ctx->actor.data;

    /* the path below the admin location */

    ctx->path = r->uri;

    if (clcf->name.len && r->uri.len >= clcf->name.len
        && ngx_strncmp(r->uri.data, clcf->name.data, clcf->name.len) == 0)
    {
        ctx->path.data += clcf->name.len;
        ctx->path.len -= clcf->name.len;
    }

    while (ctx->path.len && ctx->path.data[0] == '/') {
        ctx->path.data++;
        ctx->path.len--;
    }

    ctx->base.node = -1;
    ngx_http_set_ctx(r, ctx, ngx_http_nb_maint_module);

    if (ngx_http_nb_maint_admin_route(r, ctx) != NGX_OK) {
        return ngx_http_nb_maint_admin_early(r, NGX_HTTP_NOT_FOUND,
                                             "not_found", "no such endpoint "
                                             "\"%V\"", &r->uri);
    }

    rt = &ngx_http_nb_maint_routes[ctx->route];

    /* an unknown node is not found, whatever the method */

    if (rt->node && ctx->node < 0) {
        return ngx_http_nb_maint_admin_early(r, NGX_HTTP_NOT_FOUND,
                                             "unknown_node", "no node with "
                                             "this id in any nb_maint "
                                             "upstream");
    }

    if (!(r->method & rt->method)
        && !(rt->method == NGX_HTTP_GET && r->method == NGX_HTTP_HEAD))
    {
        allow = (rt->method == NGX_HTTP_GET)
                ? nb_add_header_lit(r, "Allow", "GET, HEAD")
                : nb_add_header_lit(r, "Allow", "POST");

        if (allow == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_nb_maint_admin_early(r, NGX_HTTP_NOT_ALLOWED,
                                             "method_not_allowed",
                                             "use %V for \"%V\"",
                                             &allow->value, &ctx->path);
    }

    if (ngx_http_nb_maint_admin_if_match(r, &ctx->if_match) != NGX_OK) {
        return ngx_http_nb_maint_admin_early(r, NGX_HTTP_BAD_REQUEST,
                                             "bad_header",
                                             "If-Match must be "
                                             "\"<version>\"");
    }

    if (rt->method == NGX_HTTP_GET) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ctx->if_match >= 0
            && (uint64_t) ctx->if_match
               != ngx_http_nb_maint_snapshot()->version)
        {
            return ngx_http_nb_maint_admin_error(r,
                                        NGX_HTTP_PRECONDITION_FAILED,
                                        "version_conflict",
                                        "the state is at version %uL, "
                                        "not %i",
                                        ngx_http_nb_maint_snapshot()->version,
                                        ctx->if_match);
        }

        return rt->handler(r, ctx, NULL);
    }

    /* a write: headers first, then the body */

    if (r->headers_in.content_length_n > NB_BODY_MAX) {
        r->keepalive = 0;
        return ngx_http_nb_maint_admin_early(r,
                                             NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                             "body_too_large",
                                             "the body is over %d bytes",
                                             NB_BODY_MAX);
    }

    if (r->headers_in.content_length_n > 0 || r->headers_in.chunked) {
        if (r->headers_in.content_type == NULL
            || r->headers_in.content_type->value.len < 16
            || ngx_strncasecmp(r->headers_in.content_type->value.data,
                               (u_char *) "application/json", 16) != 0
            || (r->headers_in.content_type->value.len > 16
                && r->headers_in.content_type->value.data[16] != ';'
                && r->headers_in.content_type->value.data[16] != ' '))
        {
            return ngx_http_nb_maint_admin_early(r,
                                        NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                        "unsupported_media_type",
                                        "the body must be application/json");
        }
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_nb_maint_admin_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* the whole body, from memory buffers or the temp file */

static ngx_int_t
ngx_http_nb_maint_admin_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    off_t         len;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->len = 0;
    body->data = NULL;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len > NB_BODY_MAX) {
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }
            p += n;

        } else if (b->last != b->pos) {
            /* an empty buffer may have no memory at all (pos == NULL) */
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    body->len = p - body->data;
    *p = '\0';

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_utf8_valid(u_char *p, size_t len)
{
    u_char    *end = p + len;
    uint32_t   u;

    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }

        u = ngx_utf8_decode(&p, end - p);

        if (u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}


static void
ngx_http_nb_maint_admin_json_free(void *data)
{
    cJSON_Delete(data);
}


static void
ngx_http_nb_maint_admin_body(ngx_http_request_t *r)
{
    cJSON                          *json;
    ngx_int_t                       rc;
    ngx_str_t                       body;
    const char                     *rest, *err;
    ngx_pool_cleanup_t             *cln;
    ngx_http_nb_maint_route_t      *rt;
    ngx_http_nb_maint_admin_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_nb_maint_module);
    rt = &ngx_http_nb_maint_routes[ctx->route];

    rc = ngx_http_nb_maint_admin_read_body(r, &body);

    if (rc == NGX_DECLINED) {
        r->keepalive = 0;
        rc = ngx_http_nb_maint_admin_error(r,
                                      NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                      "body_too_large",
                                      "the body is over %d bytes",
                                      NB_BODY_MAX);
        goto done;
    }

    if (rc != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    json = NULL;

    if (body.len) {
        if (ngx_strlchr(body.data, body.data + body.len, '\0') != NULL) {
            rc = ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                               "bad_json", "the body has a "
                                               "NUL byte");
            goto done;
        }

        if (!ngx_http_nb_maint_utf8_valid(body.data, body.len)) {
            rc = ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                               "bad_field", "the body is "
                                               "not valid UTF-8");
            goto done;
        }

        err = "not an object";
        json = ngx_http_nb_maint_json_parse((char *) body.data, body.len,
                                            &rest, &err);

        while (json && rest < (const char *) body.data + body.len
               && (*rest == ' ' || *rest == '\t' || *rest == '\r'
                   || *rest == '\n'))
        {
            rest++;
        }

        if (json == NULL || !cJSON_IsObject(json)
            || rest != (const char *) body.data + body.len)
        {
            cJSON_Delete(json);
            rc = ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                               "bad_json", "the body is not "
                                               "a JSON object (%s)", err);
            goto done;
        }
    }

    /* lives as long as the request: a write may be built again on it */
    if (json) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            cJSON_Delete(json);
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        cln->handler = ngx_http_nb_maint_admin_json_free;
        cln->data = json;
    }

    rc = rt->handler(r, ctx, json);

    if (rc == NGX_DONE) {
        /* the store answers later; the body's reference keeps r alive */
        return;
    }

done:

    ngx_http_finalize_request(r, rc);
}


/* responses */

static ngx_int_t
ngx_http_nb_maint_admin_send(ngx_http_request_t *r, ngx_uint_t status,
    cJSON *json)
{
    ngx_str_t  s;

    if (json == NULL
        || ngx_http_nb_maint_json_str(r->pool, json, &s) != NGX_OK)
    {
        cJSON_Delete(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_Delete(json);

    return ngx_http_nb_maint_admin_output(r, status, "application/json", &s);
}


static ngx_int_t
ngx_http_nb_maint_admin_output(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, ngx_str_t *body)
{
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = body->len;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (nb_add_header_lit(r, "Cache-Control", "no-store") == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* 401: "WWW-Authenticate: Bearer" */

static ngx_int_t
ngx_http_nb_maint_admin_challenge(ngx_http_request_t *r)
{
    r->headers_out.www_authenticate = nb_add_header_lit(r,
                                              "WWW-Authenticate",
                                              "Bearer realm=\"nb_maint\"");

    return r->headers_out.www_authenticate ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_nb_maint_admin_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    u_char            msg[512], *p;
    cJSON            *root, *err;
    va_list           args;
    ngx_str_t         uri, text;

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg) - 1, fmt, args);
    va_end(args);
    *p = '\0';

    if (status == NGX_HTTP_UNAUTHORIZED
        && ngx_http_nb_maint_admin_challenge(r) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    root = cJSON_CreateObject();
    err = cJSON_AddObjectToObject(root, "error");

    if (err == NULL) {
        cJSON_Delete(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddStringToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", (char *) msg);

    /* the URI and the message may hold what the client sent: escaped */

    if (ngx_http_nb_maint_escape_log_str(r->pool, r->uri.data, r->uri.len,
                                         &uri)
        == NGX_OK
        && ngx_http_nb_maint_escape_log_str(r->pool, msg, p - msg, &text)
           == NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "nb_maint: admin %V: %ui %s: %V", &uri, status, code,
                      &text);
    }

    return ngx_http_nb_maint_admin_send(r, status, root);
}


/*
 * An error that nginx itself produced in the admin location (a body over
 * client_max_body_size, a client timeout, a 500): the header filter gives
 * it the API's JSON error format instead of nginx's HTML page.
 */

ngx_int_t
ngx_http_nb_maint_admin_error_body(ngx_http_request_t *r, ngx_str_t *out)
{
    cJSON       *root, *err;
    ngx_uint_t   status;
    const char  *code, *msg;

    status = r->headers_out.status;

    switch (status) {
    case NGX_HTTP_BAD_REQUEST:
        code = "bad_request";
        msg = "the request is malformed";
        break;
    case NGX_HTTP_NOT_FOUND:
        code = "not_found";
        msg = "no such endpoint";
        break;
    case NGX_HTTP_NOT_ALLOWED:
        code = "method_not_allowed";
        msg = "method not allowed here";
        break;
    case NGX_HTTP_REQUEST_TIME_OUT:
        code = "request_timeout";
        msg = "the request was not received in time";
        break;
    case NGX_HTTP_LENGTH_REQUIRED:
        code = "length_required";
        msg = "the body needs a length";
        break;
    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        code = "body_too_large";
        msg = "the body is too large";
        break;
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        code = "unavailable";
        msg = "the service is unavailable";
        break;
    default:
        code = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? "internal_error"
                                                          : "http_error";
        msg = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR)
              ? "the gateway could not answer this request; see its "
                "error log"
              : "the request was refused";
    }

    root = cJSON_CreateObject();
    err = cJSON_AddObjectToObject(root, "error");

    if (err == NULL
        || cJSON_AddStringToObject(err, "code", code) == NULL
        || cJSON_AddStringToObject(err, "message", msg) == NULL
        || ngx_http_nb_maint_json_str(r->pool, root, out) != NGX_OK)
    {
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    cJSON_Delete(root);

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = out->len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    if (nb_add_header_lit(r, "Cache-Control", "no-store") == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * An answer before the body is read: the body is discarded first, so that
 * on a keep-alive connection it is never taken for the next request.
 */

static ngx_int_t
ngx_http_nb_maint_admin_early(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    u_char   msg[512], *p;
    va_list  args;

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg) - 1, fmt, args);
    va_end(args);
    *p = '\0';

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    return ngx_http_nb_maint_admin_error(r, status, code, "%s", msg);
}


/* GET status, GET nodes/{id} */

/* "app": {"code":"APP_COMMANDING","command":{"name":"upgrade"},
 *         "since":"...","seconds":80} of a commanding node */

static ngx_int_t
ngx_http_nb_maint_node_app_json(ngx_http_nb_maint_node_t *n, cJSON *obj)
{
    u_char       t[32], *p;
    cJSON       *app, *cmd;
    ngx_msec_t   since, now;

    app = cJSON_AddObjectToObject(obj, "app");
    if (app == NULL) {
        return NGX_ERROR;
    }

    cJSON_AddStringToObject(app, "code",
                            ngx_http_nb_maint_app_code_name(n->app_code));

    if (n->app_command_len) {
        cmd = cJSON_AddObjectToObject(app, "command");
        if (cmd == NULL) {
            return NGX_ERROR;
        }

        cJSON_AddItemToObject(cmd, "name",
                              ngx_http_nb_maint_json_strn(n->app_command,
                                  ngx_min(n->app_command_len,
                                          NB_APP_COMMAND_LEN)));
    }

    since = n->app_since;
    now = ngx_http_nb_maint_now_ms();

    if (since) {
        p = ngx_http_nb_maint_time_rfc3339(t, since / 1000);
        *p = '\0';
        cJSON_AddStringToObject(app, "since", (char *) t);
        cJSON_AddNumberToObject(app, "seconds",
                                (double) (now > since ? (now - since) / 1000
                                                      : 0));
    }

    return NGX_OK;
}


cJSON *
ngx_http_nb_maint_node_json(ngx_http_nb_maint_node_t *n,
    ngx_http_nb_maint_state_t *st, ngx_uint_t i)
{
    u_char       t[32], *p;
    cJSON       *obj;
    const char  *health;

    obj = cJSON_CreateObject();
    if (obj == NULL) {
        return NULL;
    }

    health = ngx_http_nb_maint_health_name(n->health);

    cJSON_AddItemToObject(obj, "id",
                          ngx_http_nb_maint_json_strn(n->id, n->id_len));
    cJSON_AddStringToObject(obj, "health", health);
    if (n->health == NB_HEALTH_COMMANDING
        && ngx_http_nb_maint_node_app_json(n, obj) != NGX_OK)
    {
        cJSON_Delete(obj);
        return NULL;
    }

    cJSON_AddBoolToObject(obj, "drain", nb_drained(st, i));
    cJSON_AddNumberToObject(obj, "active", (double) nb_active(n));
    cJSON_AddNumberToObject(obj, "websockets", (double) n->websockets);
    cJSON_AddNumberToObject(obj, "fails", (double) n->fall_count);

    if (ngx_http_nb_maint_node_stats_json(n, obj) != NGX_OK) {
        cJSON_Delete(obj);
        return NULL;
    }

    if (n->last_check) {
        p = ngx_http_nb_maint_time_rfc3339(t, n->last_check / 1000);
        *p = '\0';
        cJSON_AddStringToObject(obj, "last_check", (char *) t);

    } else {
        cJSON_AddNullToObject(obj, "last_check");
    }

    return obj;
}


/* restore.checked: whether health checks gate a restore at all */

static void
ngx_http_nb_maint_restore_gate_json(ngx_http_nb_maint_main_conf_t *nmcf,
    cJSON *restore)
{
    ngx_uint_t                      i, checked;
    ngx_http_nb_maint_srv_conf_t  **up;

    up = nmcf->upstreams.elts;
    checked = 0;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        if (up[i]->check.set) {
            checked = 1;
        }
    }

    cJSON_AddBoolToObject(restore, "checked", checked);

    if (!checked) {
        cJSON_AddStringToObject(restore, "note",
                                "no upstream has health checks "
                                "(nb_maint_check off): nothing gates a "
                                "restore, it completes at once");
    }
}


/* store.primary, last_failover, sentinels, replication (issue 12) */

static void
ngx_http_nb_maint_store_redis_json(ngx_http_nb_maint_shm_t *sh,
    cJSON *store)
{
    u_char  t[32], *p;

    if (sh->store_primary_len) {
        cJSON_AddItemToObject(store, "primary",
                              ngx_http_nb_maint_json_strn(sh->store_primary,
                                                  sh->store_primary_len));
    } else {
        cJSON_AddNullToObject(store, "primary");
    }

    if (sh->store_last_failover) {
        p = ngx_http_nb_maint_time_rfc3339(t, sh->store_last_failover);
        *p = '\0';
        cJSON_AddStringToObject(store, "last_failover", (char *) t);

    } else {
        cJSON_AddNullToObject(store, "last_failover");
    }

    if (sh->store_sentinel) {
        cJSON_AddBoolToObject(store, "sentinels_ok",
                              sh->store_sentinels_ok != 0);
    }

    cJSON_AddNumberToObject(store, "min_replicas",
                            (double) sh->store_replicas_wanted);

    if (sh->store_replicas_wanted && sh->store_replicas_acked >= 0) {
        cJSON_AddNumberToObject(store, "replicas_acked",
                                (double) sh->store_replicas_acked);
    } else {
        cJSON_AddNullToObject(store, "replicas_acked");
    }
}


/* the status with the given state (a write's answer), or the current one */

static cJSON *
ngx_http_nb_maint_status_json_of(ngx_http_request_t *r,
    ngx_http_nb_maint_state_t *written, uint64_t *version)
{
    cJSON                          *root, *store, *restore, *pending, *ups;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_state_t       st;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    sh = ngx_http_nb_maint_shm();
    nmcf = ngx_http_get_module_main_conf(r, ngx_http_nb_maint_module);

    if (written) {
        st = *written;

    } else {
        ngx_rwlock_rlock(&sh->lock);
        st = sh->state;
        ngx_rwlock_unlock(&sh->lock);
    }

    *version = st.version;

    root = ngx_http_nb_maint_state_to_json(&st);
    if (root == NULL) {
        return NULL;
    }

    store = cJSON_AddObjectToObject(root, "store");
    restore = cJSON_AddObjectToObject(root, "restore");

    if (store == NULL || restore == NULL) {
        cJSON_Delete(root);
        return NULL;
    }

    ngx_rwlock_rlock(&sh->lock);

    cJSON_AddStringToObject(store, "type",
                            (char *) nmcf->store.type.data);
    cJSON_AddBoolToObject(store, "ok", sh->store_ok != 0);

    if (sh->store_error_len) {
        cJSON_AddItemToObject(store, "error",
                              ngx_http_nb_maint_json_strn(sh->store_error,
                                                      sh->store_error_len));
    } else {
        cJSON_AddNullToObject(store, "error");
    }

    if (ngx_strcmp(nmcf->store.type.data, "redis") == 0) {
        ngx_http_nb_maint_store_redis_json(sh, store);
    }

    ngx_rwlock_unlock(&sh->lock);

    pending = ngx_http_nb_maint_pending_json(nmcf, &st);
    ups = ngx_http_nb_maint_upstreams_json(nmcf, &st);

    if (pending == NULL || ups == NULL) {
        cJSON_Delete(pending);
        cJSON_Delete(ups);
        cJSON_Delete(root);
        return NULL;
    }

    cJSON_AddItemToObject(restore, "pending", pending);
    cJSON_AddItemToObject(root, "upstreams", ups);

    ngx_http_nb_maint_restore_gate_json(nmcf, restore);

    return root;
}


/* ETag: "<version>", the state's version (SPEC section 5) */

static ngx_int_t
ngx_http_nb_maint_admin_etag(ngx_http_request_t *r, uint64_t version)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_nb_maint_add_header(r, "ETag", p,
                                     ngx_sprintf(p, "\"%uL\"", version) - p)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* If-None-Match: "*", or a list of (weak) tags one of which is "version" */

static ngx_uint_t
ngx_http_nb_maint_admin_none_match(ngx_http_request_t *r, uint64_t version)
{
    u_char     *p, *end, *q;
    ngx_int_t   n;

    if (r->headers_in.if_none_match == NULL) {
        return 0;
    }

    p = r->headers_in.if_none_match->value.data;
    end = p + r->headers_in.if_none_match->value.len;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        if (p == end) {
            break;
        }

        if (*p == '*') {
            return 1;
        }

        if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
            p += 2;
        }

        if (p == end || *p != '"') {
            return 0;
        }

        q = ngx_strlchr(++p, end, '"');
        if (q == NULL) {
            return 0;
        }

        n = ngx_atoi(p, q - p);

        if (n != NGX_ERROR && (uint64_t) n == version) {
            return 1;
        }

        p = q + 1;
    }

    return 0;
}


static ngx_int_t
ngx_http_nb_maint_admin_send_status(ngx_http_request_t *r, ngx_uint_t status)
{
    return ngx_http_nb_maint_admin_send_state(r, status, NULL);
}


static ngx_int_t
ngx_http_nb_maint_admin_send_state(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_nb_maint_state_t *written)
{
    cJSON     *json;
    uint64_t   version;

    json = ngx_http_nb_maint_status_json_of(r, written, &version);

    if (json == NULL || ngx_http_nb_maint_admin_etag(r, version) != NGX_OK) {
        cJSON_Delete(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_nb_maint_admin_send(r, status, json);
}


static ngx_int_t
ngx_http_nb_maint_admin_status(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    ngx_int_t  rc;
    uint64_t   version;

    version = ngx_http_nb_maint_snapshot()->version;

    if (!ngx_http_nb_maint_admin_none_match(r, version)) {
        return ngx_http_nb_maint_admin_send_status(r, NGX_HTTP_OK);
    }

    /* not modified: headers only, the ETag again */

    if (ngx_http_nb_maint_admin_etag(r, version) != NGX_OK
        || nb_add_header_lit(r, "Cache-Control", "no-store") == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_NOT_MODIFIED;
    r->headers_out.content_length_n = -1;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


static ngx_int_t
ngx_http_nb_maint_admin_node(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    return ngx_http_nb_maint_admin_send(r, NGX_HTTP_OK,
                      ngx_http_nb_maint_node_json(&sh->nodes[ctx->node],
                                                  ngx_http_nb_maint_snapshot(),
                                                  ctx->node));
}


/* GET events?since=N */

static ngx_int_t
ngx_http_nb_maint_admin_events(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    cJSON                    *root, *list, *ev, *item;
    uint64_t                  version;
    ngx_str_t                 arg, *e;
    ngx_int_t                 since;
    const char               *err;
    ngx_uint_t                i, n;
    ngx_http_nb_maint_shm_t  *sh;

    since = 0;

    if (ngx_http_arg(r, (u_char *) "since", 5, &arg) == NGX_OK) {
        since = ngx_atoi(arg.data, arg.len);

        if (since == NGX_ERROR) {
            return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "bad_field", "\"since\" "
                                                 "must be a version number");
        }
    }

    root = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(root, "events");

    if (list == NULL) {
        cJSON_Delete(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sh = ngx_http_nb_maint_shm();

    ngx_rwlock_rlock(&sh->lock);

    n = sh->ev_count;
    i = (sh->ev_next + NB_EVENTS_MAX - n) % NB_EVENTS_MAX;

    for ( /* void */ ; n; n--, i = (i + 1) % NB_EVENTS_MAX) {
        e = &sh->events[i];

        ev = ngx_http_nb_maint_json_parse((char *) e->data, e->len, NULL,
                                          &err);
        item = cJSON_GetObjectItemCaseSensitive(ev, "version");

        if (ngx_http_nb_maint_json_u64(item, NB_VERSION_MAX, &version)
            != NGX_OK
            || version <= (uint64_t) since
            || ngx_http_nb_maint_json_keep_version(ev) != NGX_OK)
        {
            cJSON_Delete(ev);
            continue;
        }

        cJSON_AddItemToArray(list, ev);
    }

    ngx_rwlock_unlock(&sh->lock);

    return ngx_http_nb_maint_admin_send(r, NGX_HTTP_OK, root);
}


/* writes */

static ngx_int_t
ngx_http_nb_maint_admin_result(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_nb_maint_admin_ctx_t  *ctx;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_http_nb_maint_module);

    switch (rc) {

    case NGX_OK:
        /* the state as written: others may have moved it on meanwhile */
        ctx = ngx_http_get_module_ctx(r, ngx_http_nb_maint_module);

        return ngx_http_nb_maint_admin_send_state(r, NGX_HTTP_OK,
                                                  ctx->written);

    case NGX_DECLINED:
        return ngx_http_nb_maint_admin_error(r, NGX_HTTP_CONFLICT,
                                             "version_conflict",
                                             "the state changed meanwhile "
                                             "(now version %uL); read it "
                                             "and retry",
                                             ngx_http_nb_maint_snapshot()
                                             ->version);

    case NGX_ABORT:
        return ngx_http_nb_maint_admin_error(r,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "store_unreplicated",
                                             "the change reached the redis "
                                             "primary but not enough "
                                             "replicas in time: it may or "
                                             "may not survive a failover");

    default:
        return ngx_http_nb_maint_admin_error(r,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "store_unavailable",
                                             "the %V store did not accept "
                                             "the change; nothing changed",
                                             &nmcf->store.type);
    }
}


static void
ngx_http_nb_maint_admin_saved(void *data, ngx_int_t rc)
{
    ngx_http_request_t *r = data;

    ngx_http_nb_maint_admin_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_nb_maint_module);

    /*
     * Another write was first.  Without If-Match the client asked for its
     * change on the latest state, not for a precondition: build it again
     * on the state the store has now (issue 9, defect 16).
     */

    if (rc == NGX_DECLINED && ctx->if_match < 0
        && ++ctx->tries < NB_WRITE_TRIES)
    {
        rc = ngx_http_nb_maint_admin_apply(r, ctx, ctx->change);

        if (rc != NGX_DONE) {
            ngx_http_finalize_request(r, rc);
        }

        return;
    }

    if (rc == NGX_DECLINED && ctx->if_match < 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "nb_maint: %s lost %d races in a row, giving up",
                      ctx->change->action, NB_WRITE_TRIES);
        rc = NGX_ERROR;
    }

    ngx_http_finalize_request(r, ngx_http_nb_maint_admin_result(r, rc));
}


/*
 * Every write: If-Match, the change on a copy of the current state, then
 * the store's compare-and-save.  NGX_DONE: the answer comes from
 * ngx_http_nb_maint_admin_saved() once the store has replied.
 */

static ngx_int_t
ngx_http_nb_maint_admin_apply(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, ngx_http_nb_maint_change_t *ch)
{
    ngx_int_t                       rc;
    ngx_http_nb_maint_state_t       old, st;
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_get_module_main_conf(r, ngx_http_nb_maint_module);

    old = *ngx_http_nb_maint_snapshot();

    if (ctx->if_match >= 0 && (uint64_t) ctx->if_match != old.version) {
        return ngx_http_nb_maint_admin_error(r, NGX_HTTP_CONFLICT,
                                             "version_conflict",
                                             "the state is at version %uL, "
                                             "not %i", old.version,
                                             ctx->if_match);
    }

    st = old;
    rc = ch->apply(r, ch, &st);

    if (rc == NGX_ERROR) {
        return ngx_http_nb_maint_admin_error(r, ch->status, ch->code, "%s",
                                             ch->message);
    }

    if (rc == NGX_DECLINED || ngx_http_nb_maint_state_same(&old, &st)) {
        /* nothing to change: no version, no event */
        return ngx_http_nb_maint_admin_send_status(r, NGX_HTTP_OK);
    }

    /* kept for another try if a concurrent write wins the store */

    if (ctx->change == NULL) {
        ctx->change = ngx_palloc(r->pool, sizeof(ngx_http_nb_maint_change_t));
        ctx->written = ngx_palloc(r->pool, sizeof(ngx_http_nb_maint_state_t));

        if (ctx->change == NULL || ctx->written == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *ctx->change = *ch;
    }

    *ctx->written = st;

    rc = ngx_http_nb_maint_state_save(nmcf, &old, ctx->written, ch->action,
                                      &ctx->actor, ch->node, r->pool,
                                      r->connection->log,
                                      ngx_http_nb_maint_admin_saved, r);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc == NGX_DECLINED && ctx->if_match < 0
        && ++ctx->tries < NB_WRITE_TRIES)
    {
        /* a store that answered at once: the new state is ours to see */
        return ngx_http_nb_maint_admin_apply(r, ctx, ctx->change);
    }

    if (rc == NGX_DECLINED && ctx->if_match < 0) {
        rc = NGX_ERROR;
    }

    return ngx_http_nb_maint_admin_result(r, rc);
}


#define nb_refuse(ch, st, c, m)                                               \
    (ch)->status = st; (ch)->code = c; (ch)->message = m; return NGX_ERROR


static ngx_int_t
ngx_http_nb_maint_restore_apply(ngx_http_request_t *r,
    ngx_http_nb_maint_change_t *ch, ngx_http_nb_maint_state_t *st)
{
    if (st->mode == NB_MODE_NORMAL) {
        nb_refuse(ch, NGX_HTTP_CONFLICT, "invalid_transition",
                  "the cluster is already in normal mode");
    }

    if (st->mode == NB_MODE_RESTORING && !ch->flag) {
        return NGX_DECLINED;
    }

    if (ch->flag || ngx_http_nb_maint_shm()->nnodes == 0) {
        ch->action = ch->flag ? "force_restore" : "restore";
        st->mode = NB_MODE_NORMAL;
        st->restoring_from = NB_MODE_NONE;
        st->node_len = 0;

        /* normal mode has its own (empty) reason and the default */
        st->reason_len = 0;
        st->retry_after = NB_RETRY_AFTER_DEFAULT;

        return NGX_OK;
    }

    ch->action = "restore";
    st->restoring_from = st->mode;
    st->mode = NB_MODE_RESTORING;
    st->restore_started = ngx_http_nb_maint_now_ms();

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_mode_apply(ngx_http_request_t *r,
    ngx_http_nb_maint_change_t *ch, ngx_http_nb_maint_state_t *st)
{
    size_t       len;
    cJSON       *item, *body;
    ngx_int_t    mode, node;
    ngx_uint_t   same, force;
    const char  *s;

    body = ch->body;

    for (item = body->child; item; item = item->next) {
        if (ngx_strcmp(item->string, "mode") != 0
            && ngx_strcmp(item->string, "node") != 0
            && ngx_strcmp(item->string, "reason") != 0
            && ngx_strcmp(item->string, "retry_after") != 0
            && ngx_strcmp(item->string, "force") != 0)
        {
            nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                      "unknown field; allowed: mode, node, reason, "
                      "retry_after, force");
        }
    }

    item = cJSON_GetObjectItemCaseSensitive(body, "force");

    if (item && !cJSON_IsBool(item)) {
        nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                  "\"force\" must be true or false");
    }

    force = cJSON_IsTrue(item);

    item = cJSON_GetObjectItemCaseSensitive(body, "mode");
    mode = NGX_ERROR;

    if (cJSON_IsString(item)) {
        mode = ngx_http_nb_maint_mode_parse((u_char *) item->valuestring,
                                            ngx_strlen(item->valuestring));
    }

    if (mode == NGX_ERROR || mode == NB_MODE_RESTORING) {
        nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                  "\"mode\" must be \"maintenance\", \"upgrade\" or "
                  "\"normal\"");
    }

    /* validate everything before touching st: all or nothing */

    node = -1;
    s = NULL;
    item = cJSON_GetObjectItemCaseSensitive(body, "node");

    if (item && !cJSON_IsNull(item)) {
        if (!cJSON_IsString(item)
            || !ngx_http_nb_maint_node_id_valid((u_char *) item->valuestring,
                                                ngx_strlen(item->valuestring)))
        {
            nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                      "\"node\" must be a node id like \"10.0.0.5:13000\"");
        }

        s = item->valuestring;

        if (mode == NB_MODE_NORMAL) {
            nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                      "\"node\" is not used with mode \"normal\"");
        }

        if (ngx_http_nb_maint_shm()->nnodes) {
            node = ngx_http_nb_maint_node_find(ngx_http_nb_maint_shm(),
                                               (u_char *) s, ngx_strlen(s));
            if (node == NGX_ERROR) {
                nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "unknown_node",
                          "\"node\" is not a server of any nb_maint "
                          "upstream");
            }

            /* everyone would be sent to a node that does not answer */

            if (!force
                && ngx_http_nb_maint_shm()->nodes[node].health
                   == NB_HEALTH_DOWN)
            {
                nb_refuse(ch, NGX_HTTP_CONFLICT, "node_unhealthy",
                          "\"node\" is down: its health checks fail, so "
                          "every request would get the no-node 503 page; "
                          "start it first, or send \"force\": true to "
                          "designate it anyway");
            }
        }
    }

    if (mode == NB_MODE_MAINTENANCE && s == NULL) {
        nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "node_required",
                  "mode \"maintenance\" needs \"node\": the one node that "
                  "keeps serving");
    }

    item = cJSON_GetObjectItemCaseSensitive(body, "reason");

    if (item && !cJSON_IsNull(item)
        && (!cJSON_IsString(item)
            || ngx_strlen(item->valuestring) > NB_REASON_LEN))
    {
        nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                  "\"reason\" must be a string of at most 512 bytes");
    }

    item = cJSON_GetObjectItemCaseSensitive(body, "retry_after");

    if (item && !cJSON_IsNull(item)
        && (!cJSON_IsNumber(item) || item->valuedouble < 0
            || item->valuedouble > NB_RETRY_AFTER_MAX
            || item->valuedouble != (double) (ngx_int_t) item->valuedouble))
    {
        nb_refuse(ch, NGX_HTTP_BAD_REQUEST, "bad_field",
                  "\"retry_after\" must be an integer from 0 to 86400");
    }

    if (mode == NB_MODE_NORMAL) {
        ch->flag = force;
        return ngx_http_nb_maint_restore_apply(r, ch, st);
    }

    /* the change itself: a new mode has its own reason and retry_after */

    same = ((ngx_uint_t) mode == st->mode);

    if (!same) {
        st->reason_len = 0;
        st->retry_after = NB_RETRY_AFTER_DEFAULT;
        st->node_len = 0;
        st->restoring_from = NB_MODE_NONE;
    }

    st->mode = mode;

    if (s) {
        len = ngx_strlen(s);
        st->node_len = len;
        ngx_memcpy(st->node, s, len);

    } else if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(body, "node"))) {
        st->node_len = 0;       /* "node": null clears it (upgrade) */
    }

    ch->node = -1;

    item = cJSON_GetObjectItemCaseSensitive(body, "reason");
    if (cJSON_IsString(item)) {
        st->reason_len = ngx_strlen(item->valuestring);
        ngx_memcpy(st->reason, item->valuestring, st->reason_len);
    }

    item = cJSON_GetObjectItemCaseSensitive(body, "retry_after");
    if (cJSON_IsNumber(item)) {
        st->retry_after = (ngx_uint_t) item->valuedouble;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_admin_mode(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    ngx_int_t                   rc;
    ngx_http_nb_maint_change_t  ch;
    ngx_http_nb_maint_state_t   st, *cur;

    if (body == NULL) {
        return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                             "bad_json", "a JSON body with "
                                             "\"mode\" is required");
    }

    ngx_memzero(&ch, sizeof(ngx_http_nb_maint_change_t));
    ch.apply = ngx_http_nb_maint_mode_apply;
    ch.action = "mode";
    ch.body = body;
    ch.node = -1;

    /* validate against the current state first, without the write lock */

    cur = ngx_http_nb_maint_snapshot();
    st = *cur;
    rc = ngx_http_nb_maint_mode_apply(r, &ch, &st);

    if (rc == NGX_ERROR && ch.status != NGX_HTTP_CONFLICT) {
        return ngx_http_nb_maint_admin_error(r, ch.status, ch.code, "%s",
                                             ch.message);
    }

    ch.action = "mode";

    return ngx_http_nb_maint_admin_apply(r, ctx, &ch);
}


static ngx_int_t
ngx_http_nb_maint_admin_restore(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    cJSON                       *item;
    ngx_http_nb_maint_change_t   ch;

    ngx_memzero(&ch, sizeof(ngx_http_nb_maint_change_t));
    ch.apply = ngx_http_nb_maint_restore_apply;
    ch.action = "restore";
    ch.node = -1;

    if (body) {
        for (item = body->child; item; item = item->next) {
            if (ngx_strcmp(item->string, "force") != 0) {
                return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                                     "bad_field",
                                                     "unknown field; "
                                                     "allowed: force");
            }

            if (!cJSON_IsBool(item)) {
                return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                                     "bad_field",
                                                     "\"force\" must be "
                                                     "true or false");
            }

            ch.flag = cJSON_IsTrue(item);
        }
    }

    return ngx_http_nb_maint_admin_apply(r, ctx, &ch);
}


static ngx_int_t
ngx_http_nb_maint_drain_apply(ngx_http_request_t *r,
    ngx_http_nb_maint_change_t *ch, ngx_http_nb_maint_state_t *st)
{
    if ((nb_drained(st, ch->node) != 0) == (ch->flag != 0)) {
        return NGX_DECLINED;
    }

    if (ch->flag) {
        st->drain[ch->node / 8] |= (u_char) (1 << (ch->node % 8));

    } else {
        st->drain[ch->node / 8] &= (u_char) ~(1 << (ch->node % 8));
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_admin_drain(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    ngx_http_nb_maint_change_t  ch;

    if (body && body->child) {
        return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                             "bad_field", "drain and undrain "
                                             "take no fields");
    }

    ngx_memzero(&ch, sizeof(ngx_http_nb_maint_change_t));
    ch.apply = ngx_http_nb_maint_drain_apply;
    ch.node = ctx->node;
    ch.flag = (ngx_http_nb_maint_routes[ctx->route].name.len == 5);
    ch.action = ch.flag ? "drain" : "undrain";

    return ngx_http_nb_maint_admin_apply(r, ctx, &ch);
}


/* POST bypass {"ttl":3600}: a signed cookie that makes its holder bypass */

#define NB_BYPASS_TTL      3600
#define NB_BYPASS_TTL_MAX  (7 * 86400)

static ngx_int_t
ngx_http_nb_maint_admin_bypass(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    u_char            t[32], *p;
    cJSON            *item, *root;
    time_t            ttl, expires;
    ngx_str_t         cookie;

    ttl = NB_BYPASS_TTL;

    if (body) {
        for (item = body->child; item; item = item->next) {
            if (ngx_strcmp(item->string, "ttl") != 0) {
                return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                                     "bad_field",
                                                     "unknown field; "
                                                     "allowed: ttl");
            }

            if (!cJSON_IsNumber(item) || item->valuedouble < 1
                || item->valuedouble > NB_BYPASS_TTL_MAX
                || item->valuedouble != (double) (time_t) item->valuedouble)
            {
                return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                                     "bad_field",
                                                     "\"ttl\" must be an "
                                                     "integer from 1 to %d "
                                                     "seconds",
                                                     NB_BYPASS_TTL_MAX);
            }

            ttl = (time_t) item->valuedouble;
        }
    }

    expires = ngx_time() + ttl;

    if (ngx_http_nb_maint_cookie_make(r, expires, &cookie) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, cookie.len + NGX_TIME_T_LEN
                             + sizeof("; HttpOnly; SameSite=Lax; Path=/"
                                      "; Max-Age="));
    if (p == NULL
        || ngx_http_nb_maint_add_header(r, "Set-Cookie", p,
                                        ngx_sprintf(p, "%V; HttpOnly; "
                                                    "SameSite=Lax; Path=/; "
                                                    "Max-Age=%T", &cookie, ttl)
                                        - p)
           == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_http_nb_maint_time_rfc3339(t, expires);
    *p = '\0';

    cJSON_AddItemToObject(root, "cookie",
                          ngx_http_nb_maint_json_strn(cookie.data,
                                                      cookie.len));
    cJSON_AddStringToObject(root, "expires", (char *) t);
    cJSON_AddNumberToObject(root, "ttl", (double) ttl);

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "nb_maint: bypass cookie for %T s issued to %V", ttl,
                  &ctx->actor);

    return ngx_http_nb_maint_admin_send(r, NGX_HTTP_OK, root);
}


/* GET metrics */

static ngx_int_t
ngx_http_nb_maint_admin_metrics(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    ngx_str_t  out;

    if (ngx_http_nb_maint_metrics(r, &out) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_nb_maint_admin_output(r, NGX_HTTP_OK,
                                          "text/plain; version=0.0.4", &out);
}


/*
 * GET (the location itself): the dashboard.  It holds no state: it asks for
 * a token and reads everything through the API; without a token the same
 * page comes with 401 and WWW-Authenticate.
 */

static ngx_int_t
ngx_http_nb_maint_admin_dashboard(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    ngx_str_t         page;
    ngx_uint_t        status;

    page.data = (u_char *) ngx_http_nb_maint_dashboard_html;
    page.len = sizeof(ngx_http_nb_maint_dashboard_html) - 1;

    status = NGX_HTTP_OK;

    if (ctx == NULL) {
        status = NGX_HTTP_UNAUTHORIZED;

        if (ngx_http_nb_maint_admin_challenge(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_nb_maint_admin_output(r, status,
                                          "text/html; charset=utf-8", &page);
}
