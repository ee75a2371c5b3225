/*
 * nb_maint: HTTP answers that the 503 page and the admin API both use.
 *
 * Owns: adding a response header; the admin API's answers (a body sent
 * with Cache-Control: no-store, a JSON document, the JSON error envelope
 * of SPEC section 5 with "WWW-Authenticate: Bearer" on 401); the same
 * envelope for errors nginx itself produces in the admin location (the
 * page's header filter sends it).
 * May call: the JSON helpers (json.c) and nginx.  Nothing above it.
 */

#include "ngx_http_nb_maint.h"


/* one response header; NULL when out of memory */

ngx_table_elt_t *
ngx_http_nb_maint_add_header(ngx_http_request_t *r, const char *key,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = 1;
    ngx_http_nb_maint_header_init(h);
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = value;
    h->value.len = len;

    return h;
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


/* the admin API's answers: a body with Cache-Control: no-store */

ngx_int_t
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


/* a JSON document as the answer; json is freed */

ngx_int_t
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


/* 401: "WWW-Authenticate: Bearer" */

ngx_int_t
ngx_http_nb_maint_admin_challenge(ngx_http_request_t *r)
{
    r->headers_out.www_authenticate = nb_add_header_lit(r,
                                              "WWW-Authenticate",
                                              "Bearer realm=\"nb_maint\"");

    return r->headers_out.www_authenticate ? NGX_OK : NGX_ERROR;
}


/* {"error":{"code":...,"message":...}}, logged at info */

ngx_int_t
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
