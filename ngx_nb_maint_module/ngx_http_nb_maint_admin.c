/*
 * nb_maint: the admin API's front door (SPEC section 5).
 *
 * Owns: the nb_maint_admin directive, routing (the route table below: a
 * path, a method, a handler), the order of checks every request passes
 * (Bearer token, endpoint, node, method with 405 and Allow, If-Match,
 * Content-Type, body size), reading the body and parsing it as one JSON
 * object.  The handlers live by concern: admin_status.c (reads),
 * admin_write.c (changes), admin_bypass.c (the bypass cookie),
 * dashboard.c (the page and the event stream).
 * May call: admin_token.c, admin_status.c, admin_write.c, admin_bypass.c,
 * dashboard.c, http.c (answers), json.c, node_id.c.  Nothing calls it but
 * nginx (and module.c for the directive).
 */

#include "ngx_http_nb_maint_admin.h"


typedef struct {
    ngx_str_t                     name;
    ngx_uint_t                    method;      /* NGX_HTTP_GET, POST, ... */
    ngx_uint_t                    node;        /* "nodes/{id}[/name]" */
    ngx_http_nb_maint_route_pt    handler;
} ngx_http_nb_maint_route_t;


static ngx_int_t ngx_http_nb_maint_admin_handler(ngx_http_request_t *r);
static void ngx_http_nb_maint_admin_body(ngx_http_request_t *r);


/* GET also answers HEAD; a path with several methods has several rows */

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
    { ngx_string("bypass"), NGX_HTTP_GET, 0,
      ngx_http_nb_maint_admin_bypass_get },
    { ngx_string("bypass"), NGX_HTTP_DELETE, 0,
      ngx_http_nb_maint_admin_bypass_delete },
    { ngx_string("metrics"), NGX_HTTP_GET, 0,
      ngx_http_nb_maint_admin_metrics },
    { ngx_string("stream"), NGX_HTTP_GET, 0,
      ngx_http_nb_maint_admin_stream },
    { ngx_string(""), NGX_HTTP_GET, 0,
      ngx_http_nb_maint_admin_dashboard },
    { ngx_string(""), NGX_HTTP_GET, 1,
      ngx_http_nb_maint_admin_node },
    { ngx_string("drain"), NGX_HTTP_POST, 1,
      ngx_http_nb_maint_admin_drain },
    { ngx_string("undrain"), NGX_HTTP_POST, 1,
      ngx_http_nb_maint_admin_undrain },
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


/* If-Match: "<version>" (or "*": no precondition) */

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



/*
 * "nodes/{id}" or "nodes/{id}/{action}": ctx->node and the action's name.
 * An id may hold slashes ("unix:/run/app.sock"), so a known id is tried
 * whole first; an unknown id is split only before a known action, so that
 * "nodes/unix:/no/such.sock" is an unknown node.
 */

static void
ngx_http_nb_maint_admin_node_path(ngx_http_nb_maint_admin_ctx_t *ctx,
    ngx_str_t *name)
{
    u_char                     *slash, *p;
    ngx_str_t                   id;
    ngx_http_nb_maint_shm_t    *sh;
    ngx_http_nb_maint_route_t  *rt;

    sh = ngx_http_nb_maint_shm();

    id.data = name->data + 6;
    id.len = name->len - 6;
    name->len = 0;

    ctx->node = ngx_http_nb_maint_node_find(sh, id.data, id.len);

    if (ctx->node != NGX_ERROR) {
        return;
    }

    slash = NULL;

    for (p = id.data + id.len - 1; p > id.data; p--) {
        if (*p == '/') {
            slash = p;
            break;
        }
    }

    if (slash == NULL) {
        return;
    }

    name->data = slash + 1;
    name->len = id.data + id.len - name->data;

    ctx->node = ngx_http_nb_maint_node_find(sh, id.data, slash - id.data);

    if (ctx->node != NGX_ERROR) {
        return;
    }

    for (rt = ngx_http_nb_maint_routes; rt->handler; rt++) {
        if (rt->node && rt->name.len == name->len
            && ngx_strncmp(rt->name.data, name->data, name->len) == 0)
        {
            return;
        }
    }

    name->len = 0;
}


static ngx_uint_t
ngx_http_nb_maint_admin_method_ok(ngx_http_request_t *r, ngx_uint_t method)
{
    return (r->method & method)
           || (method == NGX_HTTP_GET && r->method == NGX_HTTP_HEAD);
}


/*
 * The route of ctx->path: NGX_OK (ctx->route set), NGX_DECLINED (no such
 * endpoint) or NGX_BUSY (the path exists, not with this method: *allowed
 * holds the methods it has).
 */

static ngx_int_t
ngx_http_nb_maint_admin_route(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, ngx_uint_t *allowed)
{
    ngx_str_t                   name;
    ngx_uint_t                  i, node;
    ngx_http_nb_maint_route_t  *rt;

    name = ctx->path;
    node = 0;
    ctx->node = -1;
    *allowed = 0;

    if (name.len > 6 && ngx_strncmp(name.data, "nodes/", 6) == 0) {
        node = 1;
        ngx_http_nb_maint_admin_node_path(ctx, &name);
    }

    for (i = 0, rt = ngx_http_nb_maint_routes; rt->handler; i++, rt++) {
        if (rt->node != node || rt->name.len != name.len
            || ngx_strncmp(rt->name.data, name.data, name.len) != 0)
        {
            continue;
        }

        if (ngx_http_nb_maint_admin_method_ok(r, rt->method)) {
            ctx->route = i;
            return NGX_OK;
        }

        ctx->route = i;
        *allowed |= rt->method;
    }

    return *allowed ? NGX_BUSY : NGX_DECLINED;
}


/* 405 with "Allow: GET, HEAD, POST, DELETE" (those the path has) */

static ngx_int_t
ngx_http_nb_maint_admin_not_allowed(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, ngx_uint_t allowed)
{
    u_char  *p, *start;

    start = ngx_pnalloc(r->pool, sizeof("GET, HEAD, POST, DELETE"));
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = start;

    if (allowed & NGX_HTTP_GET) {
        p = ngx_cpymem(p, "GET, HEAD, ", sizeof("GET, HEAD, ") - 1);
    }

    if (allowed & NGX_HTTP_POST) {
        p = ngx_cpymem(p, "POST, ", sizeof("POST, ") - 1);
    }

    if (allowed & NGX_HTTP_DELETE) {
        p = ngx_cpymem(p, "DELETE, ", sizeof("DELETE, ") - 1);
    }

    p -= 2;     /* the last ", " */

    if (ngx_http_nb_maint_add_header(r, "Allow", start, p - start) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_nb_maint_admin_early(r, NGX_HTTP_NOT_ALLOWED,
                                         "method_not_allowed",
                                         "use %*s for \"%V\"",
                                         (size_t) (p - start), start,
                                         &ctx->path);
}


static ngx_uint_t
ngx_http_nb_maint_admin_is_root(ngx_http_request_t *r,
    ngx_http_core_loc_conf_t *clcf)
{
    return r->uri.len <= clcf->name.len
           || (r->uri.len == clcf->name.len + 1
               && r->uri.data[r->uri.len - 1] == '/');
}


/* no valid token: a browser at the root gets the page (401 still) */

static ngx_int_t
ngx_http_nb_maint_admin_unauthorized(ngx_http_request_t *r)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

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


/* the request's ctx: who asks ("name@address") and the path asked for */

static ngx_http_nb_maint_admin_ctx_t *
ngx_http_nb_maint_admin_ctx(ngx_http_request_t *r,
    ngx_http_nb_maint_token_t *token)
{
    u_char                         *p;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_nb_maint_admin_ctx_t  *ctx;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_nb_maint_admin_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->actor.data = ngx_pnalloc(r->pool, token->name.len + 1
                                  + r->connection->addr_text.len);
    if (ctx->actor.data == NULL) {
        return NULL;
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

    return ctx;
}


/* a request without a JSON body (GET, HEAD, DELETE): answered at once */

static ngx_int_t
ngx_http_nb_maint_admin_read(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, ngx_http_nb_maint_route_t *rt)
{
    uint64_t  version;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    version = ngx_http_nb_maint_snapshot()->version;

    if (ctx->if_match >= 0 && (uint64_t) ctx->if_match != version) {
        return ngx_http_nb_maint_admin_error(r, NGX_HTTP_PRECONDITION_FAILED,
                                             "version_conflict",
                                             "the state is at version %uL, "
                                             "not %i", version,
                                             ctx->if_match);
    }

    return rt->handler(r, ctx, NULL);
}


/* a write: headers first, then the body (ngx_http_nb_maint_admin_body) */

static ngx_int_t
ngx_http_nb_maint_admin_write(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *type;

    if (r->headers_in.content_length_n > NB_BODY_MAX) {
        r->keepalive = 0;
        return ngx_http_nb_maint_admin_early(r,
                                             NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                             "body_too_large",
                                             "the body is over %d bytes",
                                             NB_BODY_MAX);
    }

    type = r->headers_in.content_type;

    if ((r->headers_in.content_length_n > 0 || r->headers_in.chunked)
        && (type == NULL
            || type->value.len < 16
            || ngx_strncasecmp(type->value.data,
                               (u_char *) "application/json", 16) != 0
            || (type->value.len > 16
                && type->value.data[16] != ';'
                && type->value.data[16] != ' ')))
    {
        return ngx_http_nb_maint_admin_early(r,
                                        NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                        "unsupported_media_type",
                                        "the body must be application/json");
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_nb_maint_admin_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static ngx_int_t
ngx_http_nb_maint_admin_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_uint_t                      allowed;
    ngx_http_nb_maint_token_t      *token;
    ngx_http_nb_maint_route_t      *rt;
    ngx_http_nb_maint_loc_conf_t   *nlcf;
    ngx_http_nb_maint_admin_ctx_t  *ctx;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_http_nb_maint_module);

    /* conditional requests are ours to answer, never nginx's 412/304 */
    r->disable_not_modified = 1;

    token = ngx_http_nb_maint_admin_auth(r, nlcf);

    if (token == NULL) {
        return ngx_http_nb_maint_admin_unauthorized(r);
    }

    ctx = ngx_http_nb_maint_admin_ctx(r, token);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_nb_maint_admin_route(r, ctx, &allowed);

    if (rc == NGX_DECLINED) {
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

    if (rc == NGX_BUSY) {
        return ngx_http_nb_maint_admin_not_allowed(r, ctx, allowed);
    }

    if (ngx_http_nb_maint_admin_if_match(r, &ctx->if_match) != NGX_OK) {
        return ngx_http_nb_maint_admin_early(r, NGX_HTTP_BAD_REQUEST,
                                             "bad_header",
                                             "If-Match must be "
                                             "\"<version>\"");
    }

    if (rt->method != NGX_HTTP_POST) {
        return ngx_http_nb_maint_admin_read(r, ctx, rt);
    }

    return ngx_http_nb_maint_admin_write(r);
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


/*
 * The body as one JSON object (*json NULL for an empty body): NGX_OK, or
 * NGX_DECLINED for a body that is not one, with *rc the answer sent.
 */

static ngx_int_t
ngx_http_nb_maint_admin_parse(ngx_http_request_t *r, ngx_str_t *body,
    cJSON **json, ngx_int_t *rc)
{
    const char  *rest, *err;

    *json = NULL;

    if (body->len == 0) {
        return NGX_OK;
    }

    if (ngx_strlchr(body->data, body->data + body->len, '\0') != NULL) {
        *rc = ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                            "bad_json", "the body has a "
                                            "NUL byte");
        return NGX_DECLINED;
    }

    if (!ngx_http_nb_maint_utf8_valid(body->data, body->len)) {
        *rc = ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                            "bad_field", "the body is "
                                            "not valid UTF-8");
        return NGX_DECLINED;
    }

    err = "not an object";
    *json = ngx_http_nb_maint_json_parse((char *) body->data, body->len,
                                         &rest, &err);

    while (*json && rest < (const char *) body->data + body->len
           && (*rest == ' ' || *rest == '\t' || *rest == '\r'
               || *rest == '\n'))
    {
        rest++;
    }

    if (*json == NULL || !cJSON_IsObject(*json)
        || rest != (const char *) body->data + body->len)
    {
        cJSON_Delete(*json);
        *json = NULL;

        *rc = ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                            "bad_json", "the body is not "
                                            "a JSON object (%s)", err);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_nb_maint_admin_body(ngx_http_request_t *r)
{
    cJSON                          *json;
    ngx_int_t                       rc;
    ngx_str_t                       body;
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

    if (ngx_http_nb_maint_admin_parse(r, &body, &json, &rc) != NGX_OK) {
        goto done;
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
