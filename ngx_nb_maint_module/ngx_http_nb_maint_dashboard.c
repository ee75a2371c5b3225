/*
 * nb_maint: the admin location's dashboard (SPEC section 5, "GET ").
 *
 * Owns: serving the compiled-in page (static/dashboard.html).
 * May call: http.c (answers).  Called by admin.c.
 */

#include "ngx_http_nb_maint_admin.h"
#include "ngx_http_nb_maint_dashboard_html.h"


/*
 * GET (the location itself): the dashboard.  It holds no state: it asks for
 * a token and reads everything through the API; without a token the same
 * page comes with 401 and WWW-Authenticate.
 */

ngx_int_t
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
