/*
 * nb_maint: the bypass cookie endpoints of the admin API (SPEC sections 5
 * and 6; OWNERS interface 3).
 *
 * Owns: POST bypass {"ttl":N} (a signed, expiring cookie that makes its
 * holder a bypass request on every gateway sharing the store), GET bypass
 * (whether the cookie this request carries is valid, and until when),
 * DELETE bypass (the cookie cleared in the browser that sends it).  The
 * cookie itself is made and checked by gate.c; nothing here touches the
 * state or the store.
 * May call: http.c (answers), json.c, gate.c (the cookie).  Called by
 * admin.c.
 */

#include "ngx_http_nb_maint_admin.h"


/* POST bypass {"ttl":3600}: a signed cookie that makes its holder bypass */

#define NB_BYPASS_TTL      3600
#define NB_BYPASS_TTL_MAX  (7 * 86400)

ngx_int_t
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


/* GET bypass: {"active":true,"expires":"<RFC 3339>"} or inactive, null */

ngx_int_t
ngx_http_nb_maint_admin_bypass_get(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    u_char   t[32], *p;
    cJSON   *root;
    time_t   expires;

    expires = ngx_http_nb_maint_cookie_expires(r);

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddBoolToObject(root, "active", expires != 0);

    if (expires) {
        p = ngx_http_nb_maint_time_rfc3339(t, expires);
        *p = '\0';
        cJSON_AddStringToObject(root, "expires", (char *) t);

    } else {
        cJSON_AddNullToObject(root, "expires");
    }

    return ngx_http_nb_maint_admin_send(r, NGX_HTTP_OK, root);
}


/* DELETE bypass: the browser that sends it drops its cookie */

ngx_int_t
ngx_http_nb_maint_admin_bypass_delete(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    cJSON  *root;

    if (nb_add_header_lit(r, "Set-Cookie", "nb_maint_bypass=; Max-Age=0; "
                                           "HttpOnly; SameSite=Lax; Path=/")
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddFalseToObject(root, "active");

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "nb_maint: bypass cookie cleared for %V", &ctx->actor);

    return ngx_http_nb_maint_admin_send(r, NGX_HTTP_OK, root);
}
