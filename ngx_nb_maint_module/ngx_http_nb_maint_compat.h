/*
 * nb_maint: the differences between the nginx versions the module builds
 * against (1.22.1 .. 1.29.x).  Every nginx_version test lives here.
 */

#ifndef _NGX_HTTP_NB_MAINT_COMPAT_H_INCLUDED_
#define _NGX_HTTP_NB_MAINT_COMPAT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * 1.23.0: request headers of one name are a linked list (h->next);
 * headers_in.cookies (an array) became headers_in.cookie (the list head),
 * parsed by ngx_http_parse_cookie_lines() (";" separated) which returns the
 * header found instead of its index.  Response headers need h->next set.
 */

#if (nginx_version >= 1023000)

#define ngx_http_nb_maint_header_init(h)  (h)->next = NULL

/*
 * 1.29.6: ngx_http_parse_multi_header_lines() splits at "," only; cookies
 * have ngx_http_parse_cookie_lines() (";").  1.23 .. 1.29.5 split at both
 * (nginx's CHANGES for 1.29.6: "a comma as separator in the Cookie line").
 */

static ngx_inline ngx_int_t
ngx_http_nb_maint_parse_cookie(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
#if (nginx_version >= 1029006)
    return ngx_http_parse_cookie_lines(r, r->headers_in.cookie, name, value)
           == NULL ? NGX_DECLINED : NGX_OK;
#else
    return ngx_http_parse_multi_header_lines(r, r->headers_in.cookie, name,
                                             value)
           == NULL ? NGX_DECLINED : NGX_OK;
#endif
}

#else

#define ngx_http_nb_maint_header_init(h)

static ngx_inline ngx_int_t
ngx_http_nb_maint_parse_cookie(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    return ngx_http_parse_multi_header_lines(&r->headers_in.cookies, name,
                                             value)
           == NGX_DECLINED ? NGX_DECLINED : NGX_OK;
}

#endif


/*
 * An upstream's "zone", and 1.27.3's "resolver"/"resolver_timeout" in the
 * upstream block (nb_maint_resolve uses them before the http block's).
 */

#if (NGX_HTTP_UPSTREAM_ZONE)
#define ngx_http_nb_maint_upstream_has_zone(us)  ((us)->shm_zone != NULL)
#else
#define ngx_http_nb_maint_upstream_has_zone(us)  0
#endif

#if (NGX_HTTP_UPSTREAM_ZONE && nginx_version >= 1027003)
#define ngx_http_nb_maint_upstream_resolver(us, dflt)                        \
    ((us)->resolver ? (us)->resolver : (dflt))
#define ngx_http_nb_maint_upstream_resolver_timeout(us, dflt)                \
    ((us)->resolver && (us)->resolver_timeout != NGX_CONF_UNSET_MSEC         \
     ? (us)->resolver_timeout : (dflt))
#else
#define ngx_http_nb_maint_upstream_resolver(us, dflt)  (dflt)
#define ngx_http_nb_maint_upstream_resolver_timeout(us, dflt)  (dflt)
#endif


#endif /* _NGX_HTTP_NB_MAINT_COMPAT_H_INCLUDED_ */
