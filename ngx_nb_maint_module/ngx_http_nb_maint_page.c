/*
 * nb_maint: the 503 response (SPEC section 7).
 *
 * Pages are rendered from the template once per state version, language and
 * kind, and kept per worker; a request only picks one and copies it out.
 * HTML is localized by Accept-Language (page_lang.c); API and JSON clients
 * get NocoBase's own maintenance envelope.  A 502 of a gated request
 * becomes this 503 (the header and body filters); nb_maint_page's file is
 * read here.
 *
 * May call: page_lang.c, http.c, bypass.c, state.c, json.c.
 */

#include "ngx_http_nb_maint_page.h"
#include "ngx_http_nb_maint_page_html.h"


#define NB_CACHE_SIZE     32
#define NB_PAGE_VARS      13
#define NB_RESTORING_REFRESH  10    /* seconds: restoring ends any moment */
#define NB_NO_NODE_RETRY      5     /* seconds: no node is up (the cluster
                                       starting, a node restarting): one
                                       may be up any moment */


typedef struct {
    u_char       *tpl;               /* template identity */
    uint64_t      version;
    ngx_uint_t    lang;              /* NB_LANGS: JSON */
    ngx_uint_t    kind;
    time_t        since;             /* the "no node" kind's own */
    ngx_uint_t    used;              /* for replacement */
    ngx_str_t     body;              /* malloc'ed */
} ngx_http_nb_maint_page_cache_t;


static ngx_http_nb_maint_page_cache_t  ngx_http_nb_maint_page_cache[
                                                                NB_CACHE_SIZE];
static ngx_uint_t                      ngx_http_nb_maint_page_tick;

static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_uint_t
ngx_http_nb_maint_kind(ngx_uint_t mode)
{
    switch (mode) {
    case NB_MODE_MAINTENANCE:
        return 0;
    case NB_MODE_UPGRADE:
        return 1;
    case NB_MODE_RESTORING:
        return 2;
    default:
        return 3;
    }
}


/* seconds to wait before trying again: no node up is soon over */

static ngx_uint_t
ngx_http_nb_maint_retry(ngx_uint_t kind, ngx_http_nb_maint_state_t *st)
{
    return kind == 3 ? NB_NO_NODE_RETRY : st->retry_after;
}


static const char *
ngx_http_nb_maint_kind_name(ngx_uint_t kind)
{
    static const char  *names[NB_KINDS] = {
        "maintenance", "upgrade", "restoring", "no_healthy_node"
    };

    return names[kind];
}


/* rendering */

static u_char *
ngx_http_nb_maint_escape_html(u_char *dst, u_char *src, size_t len)
{
    u_char  *end = src + len;

    for ( /* void */ ; src < end; src++) {
        switch (*src) {
        case '<':
            dst = ngx_cpymem(dst, "&lt;", 4);
            break;
        case '>':
            dst = ngx_cpymem(dst, "&gt;", 4);
            break;
        case '&':
            dst = ngx_cpymem(dst, "&amp;", 5);
            break;
        case '"':
            dst = ngx_cpymem(dst, "&quot;", 6);
            break;
        case '\'':
            dst = ngx_cpymem(dst, "&#39;", 5);
            break;
        default:
            *dst++ = *src;
        }
    }

    return dst;
}


/* a template's {{name}} and its value */
typedef struct {
    const char   *name;
    u_char       *value;
    size_t        len;
} ngx_http_nb_maint_page_var_t;


typedef struct {
    ngx_http_nb_maint_page_var_t  var[NB_PAGE_VARS];
    u_char                        since[32];
    u_char                        num[NGX_INT_T_LEN];
    u_char                        refresh[NGX_INT_T_LEN];
} ngx_http_nb_maint_page_vars_t;


/*
 * The values of the template's placeholders for (lang, kind, state).  No
 * node available (kind 3) is no mode an operator set: its reason says so,
 * "since" is when it began, and the page tries again within seconds.
 */

static void
ngx_http_nb_maint_page_vars(ngx_uint_t lang, ngx_uint_t kind,
    ngx_http_nb_maint_state_t *st, time_t since,
    ngx_http_nb_maint_page_vars_t *v)
{
    ngx_uint_t                 retry;

    ngx_http_nb_maint_lang_t  *l;

    l = ngx_http_nb_maint_page_lang_get(lang);

#define nb_var(i, n, val, vl)                                                     v->var[i].name = n; v->var[i].value = (u_char *) (val); v->var[i].len = vl

#define nb_cvar(i, n, val)  nb_var(i, n, val, ngx_strlen(val))

    nb_cvar(0, "lang", l->tag);
    nb_cvar(1, "title", l->heading[kind]);
    nb_cvar(2, "heading", l->heading[kind]);
    nb_cvar(3, "message", l->message[kind]);
    nb_cvar(4, "reason_label", l->reason_label);
    nb_cvar(5, "since_label", l->since_label);
    nb_cvar(6, "retry_label", l->retry_label);
    nb_cvar(7, "seconds", l->seconds);

    if (kind == 3) {
        nb_cvar(8, "reason", l->no_node);
    } else if (st->reason_len) {
        nb_var(8, "reason", st->reason, st->reason_len);
    } else {
        nb_cvar(8, "reason", l->no_reason);
    }

    retry = ngx_http_nb_maint_retry(kind, st);

    nb_var(9, "since", v->since,
           ngx_http_nb_maint_time_rfc3339(v->since,
                                          kind == 3 ? since : st->since)
           - v->since);
    nb_var(10, "retry_after", v->num,
           ngx_sprintf(v->num, "%ui", retry) - v->num);
    nb_var(11, "refresh", v->refresh,
           ngx_sprintf(v->refresh, "%ui",
                       kind == 2 ? NB_RESTORING_REFRESH
                                 : ngx_max(retry, NB_NO_NODE_RETRY))
           - v->refresh);
    nb_cvar(12, "mode", ngx_http_nb_maint_kind_name(kind));

#undef nb_var
#undef nb_cvar
}


/* the placeholder at p (after "{{"), or NULL; *next: the byte after it */

static ngx_http_nb_maint_page_var_t *
ngx_http_nb_maint_page_var(ngx_http_nb_maint_page_vars_t *v, u_char *name,
    u_char *end, u_char **next)
{
    size_t      n;
    ngx_uint_t  i;

    for (i = 0; i < NB_PAGE_VARS; i++) {
        n = ngx_strlen(v->var[i].name);

        if ((size_t) (end - name) >= n + 2
            && ngx_strncmp(name, v->var[i].name, n) == 0
            && name[n] == '}' && name[n + 1] == '}')
        {
            *next = name + n + 2;
            return &v->var[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_nb_maint_render_html(ngx_str_t *tpl, ngx_uint_t lang,
    ngx_uint_t kind, ngx_http_nb_maint_state_t *st, time_t since,
    ngx_str_t *out)
{
    size_t                         len;
    u_char                        *p, *end, *dst;
    ngx_http_nb_maint_page_var_t  *var;
    ngx_http_nb_maint_page_vars_t  v;

    ngx_http_nb_maint_page_vars(lang, kind, st, since, &v);

    /* two passes over the template: measure, then write */

    out->data = NULL;
    len = 0;

    for ( ;; ) {
        p = tpl->data;
        end = tpl->data + tpl->len;
        dst = out->data;

        while (p < end) {
            var = NULL;

            if (end - p > 4 && p[0] == '{' && p[1] == '{') {
                var = ngx_http_nb_maint_page_var(&v, p + 2, end, &p);
            }

            if (var == NULL) {
                /* a plain byte; an unknown {{...}} stays as it is */
                if (dst) {
                    *dst++ = *p;
                } else {
                    len++;
                }

                p++;
                continue;
            }

            if (dst) {
                dst = ngx_http_nb_maint_escape_html(dst, var->value, var->len);
            } else {
                len += var->len * 6;
            }
        }

        if (out->data) {
            out->len = dst - out->data;
            return NGX_OK;
        }

        out->data = ngx_alloc(len, ngx_cycle->log);
        if (out->data == NULL) {
            return NGX_ERROR;
        }
    }
}


static ngx_int_t
ngx_http_nb_maint_render_json(ngx_uint_t kind, ngx_http_nb_maint_state_t *st,
    ngx_str_t *out)
{
    char   *s;
    cJSON  *root, *err, *cmd;

    root = cJSON_CreateObject();
    err = cJSON_AddObjectToObject(root, "error");

    if (err == NULL) {
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    cJSON_AddNumberToObject(err, "status", 503);
    cJSON_AddTrueToObject(err, "maintaining");

    if (kind == 3) {
        cJSON_AddStringToObject(err, "code", "APP_STOPPED");

    } else {
        /* restoring serves the 503 only after an upgrade: "upgrade" is
         * the name NocoBase's client titles "App upgrading" */
        cJSON_AddStringToObject(err, "code", "APP_COMMANDING");
        cmd = cJSON_AddObjectToObject(err, "command");
        cJSON_AddStringToObject(cmd, "name",
                                kind == 2 ? "upgrade"
                                          : ngx_http_nb_maint_kind_name(kind));
    }

    if (st->reason_len && kind != 3) {
        cJSON_AddItemToObject(err, "message",
                      ngx_http_nb_maint_json_strn(st->reason, st->reason_len));
    } else {
        cJSON_AddStringToObject(err, "message",
                                ngx_http_nb_maint_page_lang_get(0)->message[kind]);
    }

    cJSON_AddStringToObject(err, "nb_maint",
                            ngx_http_nb_maint_kind_name(kind));
    cJSON_AddNumberToObject(err, "retry_after",
                            (double) ngx_http_nb_maint_retry(kind, st));

    s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);

    if (s == NULL) {
        return NGX_ERROR;
    }

    /* cJSON allocates with malloc(): the cache frees it like the HTML */
    out->data = (u_char *) s;
    out->len = ngx_strlen(s);

    return NGX_OK;
}


/* the rendered page for (template, lang, kind) at the current version */

static ngx_str_t *
ngx_http_nb_maint_page_get(ngx_str_t *tpl, ngx_uint_t lang, ngx_uint_t kind,
    ngx_http_nb_maint_state_t *st, time_t since)
{
    ngx_int_t                        rc;
    ngx_uint_t                       i;
    ngx_http_nb_maint_page_cache_t  *c, *victim;

    victim = &ngx_http_nb_maint_page_cache[0];
    ngx_http_nb_maint_page_tick++;

    for (i = 0; i < NB_CACHE_SIZE; i++) {
        c = &ngx_http_nb_maint_page_cache[i];

        if (c->body.data && c->tpl == tpl->data && c->lang == lang
            && c->kind == kind && c->version == st->version
            && c->since == since)
        {
            c->used = ngx_http_nb_maint_page_tick;
            return &c->body;
        }

        if (c->used < victim->used) {
            victim = c;
        }
    }

    if (victim->body.data) {
        ngx_free(victim->body.data);
        victim->body.data = NULL;
    }

    if (lang == NB_LANGS) {
        rc = ngx_http_nb_maint_render_json(kind, st, &victim->body);

    } else {
        rc = ngx_http_nb_maint_render_html(tpl, lang, kind, st, since,
                                           &victim->body);
    }

    if (rc != NGX_OK) {
        victim->body.data = NULL;
        return NULL;
    }

    victim->tpl = tpl->data;
    victim->lang = lang;
    victim->kind = kind;
    victim->since = since;
    victim->version = st->version;
    victim->used = ngx_http_nb_maint_page_tick;

    return &victim->body;
}


/* status line and headers of a 503; *body is the page to send */

static ngx_int_t
ngx_http_nb_maint_page_prepare(ngx_http_request_t *r, ngx_uint_t mode,
    ngx_str_t **body)
{
    u_char                        *p;
    ngx_str_t                      builtin, *tpl;
    time_t                         since;
    ngx_uint_t                     kind, lang, json;
    const char                    *name;
    ngx_http_nb_maint_ctx_t       *ctx;
    ngx_http_nb_maint_state_t     *st;
    ngx_http_nb_maint_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_http_nb_maint_module);
    st = ngx_http_nb_maint_snapshot();

    kind = ngx_http_nb_maint_kind(mode);

    /* no node: since when the balancer has found none, or now when this
     * request's last node just failed; the JSON has no "since" */
    since = 0;

    if (kind == 3) {
        ctx = ngx_http_get_module_ctx(r, ngx_http_nb_maint_module);
        since = (ctx && ctx->outage) ? ctx->outage : ngx_time();
    }

    json = ngx_http_nb_maint_wants_json(r, nlcf);
    lang = json ? NB_LANGS : ngx_http_nb_maint_page_lang(r);

    if (nlcf->page.len) {
        tpl = &nlcf->page;

    } else {
        builtin.data = (u_char *) ngx_http_nb_maint_page_html;
        builtin.len = sizeof(ngx_http_nb_maint_page_html) - 1;
        tpl = &builtin;
    }

    if (json) {
        since = 0;
    }

    *body = ngx_http_nb_maint_page_get(tpl, lang, kind, st, since);
    if (*body == NULL) {
        return NGX_ERROR;
    }

    r->headers_out.status = NGX_HTTP_SERVICE_UNAVAILABLE;
    r->headers_out.content_length_n = (*body)->len;

    if (json) {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    } else {
        ngx_str_set(&r->headers_out.content_type, "text/html; charset=utf-8");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    name = ngx_http_nb_maint_kind_name(kind);

    if (ngx_http_nb_maint_add_header(r, "Retry-After", p,
                                     ngx_sprintf(p, "%ui",
                                         ngx_http_nb_maint_retry(kind, st))
                                     - p)
           == NULL
        || nb_add_header_lit(r, "Cache-Control", "no-store") == NULL
        || ngx_http_nb_maint_add_header(r, "X-NB-Maint", (u_char *) name,
                                        ngx_strlen(name))
           == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_chain_t *
ngx_http_nb_maint_page_chain(ngx_http_request_t *r, ngx_str_t *body)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_create_temp_buf(r->pool, body->len);
    cl = ngx_alloc_chain_link(r->pool);

    if (b == NULL || cl == NULL) {
        return NULL;
    }

    b->last = ngx_cpymem(b->pos, body->data, body->len);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    cl->buf = b;
    cl->next = NULL;

    return cl;
}


ngx_int_t
ngx_http_nb_maint_page_send(ngx_http_request_t *r, ngx_uint_t mode)
{
    ngx_int_t     rc;
    ngx_str_t    *body;
    ngx_chain_t  *out;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);

    if (ngx_http_nb_maint_page_prepare(r, mode, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out = ngx_http_nb_maint_page_chain(r, body);
    if (out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_output_filter(r, out);
}


/*
 * When the balancer finds no allowed node it answers NGX_BUSY and marks the
 * request (so does a failed try that leaves no allowed node untried); the
 * 502 or 504 that nginx then produces is turned into our 503 here.  An
 * error nginx itself produces in the admin location gets the API's JSON
 * error format.
 */

static ngx_int_t
ngx_http_nb_maint_header_filter(ngx_http_request_t *r)
{
    ngx_str_t                     *body, json;
    ngx_http_nb_maint_ctx_t       *ctx;
    ngx_http_nb_maint_loc_conf_t  *nlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_nb_maint_module);

    if (ctx != NULL && ctx->page != NULL) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx != NULL && ctx->no_node
        && (r->headers_out.status == NGX_HTTP_BAD_GATEWAY
            || r->headers_out.status == NGX_HTTP_GATEWAY_TIME_OUT))
    {
        ngx_http_clean_header(r);

        if (ngx_http_nb_maint_page_prepare(r, ctx->page_mode, &body)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ctx->page = ngx_http_nb_maint_page_chain(r, body);
        if (ctx->page == NULL) {
            return NGX_ERROR;
        }

        /* the access log shows what was sent */
        r->err_status = NGX_HTTP_SERVICE_UNAVAILABLE;

        return ngx_http_next_header_filter(r);
    }

    if (r->err_status < NGX_HTTP_BAD_REQUEST || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    nlcf = ngx_http_get_module_loc_conf(r, ngx_http_nb_maint_module);

    if (!nlcf->admin) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_nb_maint_get_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_nb_maint_admin_error_body(r, &json) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->page = ngx_http_nb_maint_page_chain(r, &json);
    if (ctx->page == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_nb_maint_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t              *out;
    ngx_http_nb_maint_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_nb_maint_module);

    if (ctx == NULL || ctx->page == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /* swallow nginx's 502 body, send ours once */

    out = ctx->page;

    if (out == (ngx_chain_t *) -1) {
        return NGX_OK;
    }

    ctx->page = (ngx_chain_t *) -1;

    if (r->header_only) {
        return NGX_OK;
    }

    return ngx_http_next_body_filter(r, out);
}


ngx_int_t
ngx_http_nb_maint_page_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_nb_maint_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_nb_maint_body_filter;

    return NGX_OK;
}


char *
ngx_http_nb_maint_page_load(ngx_conf_t *cf, ngx_str_t *file, ngx_str_t *out)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_str_t        name;
    ngx_file_info_t  fi;

    name = *file;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"nb_maint_page\": cannot open \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) == 0 || ngx_file_size(&fi) > 1024 * 1024)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_page\": \"%V\" is empty, unreadable "
                           "or larger than 1m", &name);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    out->len = ngx_file_size(&fi);
    out->data = ngx_pnalloc(cf->pool, out->len);

    if (out->data == NULL) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, out->data, out->len);
    ngx_close_file(fd);

    if (n != (ssize_t) out->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"nb_maint_page\": cannot read \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_nb_maint_page(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_nb_maint_loc_conf_t *nlcf = conf;

    ngx_str_t  *value;

    if (nlcf->page.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_http_nb_maint_page_load(cf, &value[1], &nlcf->page);
}
