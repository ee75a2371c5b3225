/*
 * nb_maint: the 503 response (SPEC section 7).
 *
 * Pages are rendered from the template once per state version, language and
 * kind, and kept per worker; a request only picks one and copies it out.
 * HTML is localized by Accept-Language; API and JSON clients get NocoBase's
 * own maintenance envelope.
 */

#include "ngx_http_nb_maint.h"
#include "ngx_http_nb_maint_page_html.h"


#define NB_LANGS          5
#define NB_KINDS          4        /* maintenance, upgrade, restoring, none */
#define NB_CACHE_SIZE     32
#define NB_PAGE_VARS      13
#define NB_RESTORING_REFRESH  10    /* seconds: restoring ends any moment */


typedef struct {
    const char   *tag;
    const char   *prefix;            /* Accept-Language primary tag */
    const char   *heading[NB_KINDS];
    const char   *message[NB_KINDS];
    const char   *reason_label;
    const char   *since_label;
    const char   *retry_label;
    const char   *seconds;
    const char   *no_reason;
} ngx_http_nb_maint_lang_t;


typedef struct {
    u_char       *tpl;               /* template identity */
    uint64_t      version;
    ngx_uint_t    lang;              /* NB_LANGS: JSON */
    ngx_uint_t    kind;
    ngx_uint_t    used;              /* for replacement */
    ngx_str_t     body;              /* malloc'ed */
} ngx_http_nb_maint_page_cache_t;


static ngx_http_nb_maint_lang_t  ngx_http_nb_maint_langs[NB_LANGS] = {

    { "en", "en",
      { "Maintenance in progress", "Upgrade in progress",
        "Almost back", "Service temporarily unavailable" },
      { "The application is undergoing maintenance. It will be back "
        "shortly.",
        "The application is being upgraded to a new version. It will be "
        "back shortly.",
        "The application is starting again after maintenance. It will be "
        "back in a moment.",
        "No application server is available right now. Please try again "
        "shortly." },
      "Reason", "Since", "Try again in", "seconds",
      "Scheduled maintenance" },

    { "zh-CN", "zh",
      { "\xe7\xb3\xbb\xe7\xbb\x9f\xe7\xbb\xb4\xe6\x8a\xa4\xe4\xb8\xad",
        "\xe7\xb3\xbb\xe7\xbb\x9f\xe5\x8d\x87\xe7\xba\xa7\xe4\xb8\xad",
        "\xe5\x8d\xb3\xe5\xb0\x86\xe6\x81\xa2\xe5\xa4\x8d",
        "\xe6\x9c\x8d\xe5\x8a\xa1\xe6\x9a\x82\xe6\x97\xb6\xe4\xb8\x8d"
        "\xe5\x8f\xaf\xe7\x94\xa8" },
      { "\xe5\xba\x94\xe7\x94\xa8\xe6\xad\xa3\xe5\x9c\xa8\xe7\xbb\xb4"
        "\xe6\x8a\xa4\xef\xbc\x8c\xe8\xaf\xb7\xe7\xa8\x8d\xe5\x90\x8e"
        "\xe5\x86\x8d\xe8\xaf\x95\xe3\x80\x82",
        "\xe5\xba\x94\xe7\x94\xa8\xe6\xad\xa3\xe5\x9c\xa8\xe5\x8d\x87"
        "\xe7\xba\xa7\xe5\x88\xb0\xe6\x96\xb0\xe7\x89\x88\xe6\x9c\xac"
        "\xef\xbc\x8c\xe8\xaf\xb7\xe7\xa8\x8d\xe5\x90\x8e\xe5\x86\x8d"
        "\xe8\xaf\x95\xe3\x80\x82",
        "\xe5\xba\x94\xe7\x94\xa8\xe6\xad\xa3\xe5\x9c\xa8\xe9\x87\x8d"
        "\xe6\x96\xb0\xe5\x90\xaf\xe5\x8a\xa8\xef\xbc\x8c\xe9\xa9\xac"
        "\xe4\xb8\x8a\xe5\xb0\xb1\xe5\xa5\xbd\xe3\x80\x82",
        "\xe6\x9a\x82\xe6\x97\xa0\xe5\x8f\xaf\xe7\x94\xa8\xe7\x9a\x84"
        "\xe5\xba\x94\xe7\x94\xa8\xe6\x9c\x8d\xe5\x8a\xa1\xe5\x99\xa8"
        "\xef\xbc\x8c\xe8\xaf\xb7\xe7\xa8\x8d\xe5\x90\x8e\xe5\x86\x8d"
        "\xe8\xaf\x95\xe3\x80\x82" },
      "\xe5\x8e\x9f\xe5\x9b\xa0",
      "\xe5\xbc\x80\xe5\xa7\x8b\xe6\x97\xb6\xe9\x97\xb4",
      "\xe9\x87\x8d\xe8\xaf\x95\xe9\x97\xb4\xe9\x9a\x94",
      "\xe7\xa7\x92",
      "\xe8\xae\xa1\xe5\x88\x92\xe5\x86\x85\xe7\xbb\xb4\xe6\x8a\xa4" },

    { "de", "de",
      { "Wartungsarbeiten", "Update wird installiert",
        "Gleich wieder da", "Dienst vor\xc3\xbc" "bergehend nicht verf\xc3\xbc"
        "gbar" },
      { "Die Anwendung wird gerade gewartet und ist in K\xc3\xbcrze wieder "
        "erreichbar.",
        "Die Anwendung wird auf eine neue Version aktualisiert und ist in "
        "K\xc3\xbcrze wieder erreichbar.",
        "Die Anwendung startet nach der Wartung neu und ist gleich wieder "
        "erreichbar.",
        "Zurzeit ist kein Anwendungsserver erreichbar. Bitte versuchen Sie "
        "es gleich noch einmal." },
      "Grund", "Seit", "Erneut versuchen in", "Sekunden",
      "Geplante Wartung" },

    { "sv", "sv",
      { "Underh\xc3\xa5ll p\xc3\xa5g\xc3\xa5r", "Uppgradering p\xc3\xa5g\xc3\xa5r",
        "Snart tillbaka", "Tj\xc3\xa4nsten \xc3\xa4r tillf\xc3\xa4lligt "
        "otillg\xc3\xa4nglig" },
      { "Applikationen underh\xc3\xa5lls just nu och \xc3\xa4r snart "
        "tillbaka.",
        "Applikationen uppgraderas till en ny version och \xc3\xa4r snart "
        "tillbaka.",
        "Applikationen startar om efter underh\xc3\xa5llet och \xc3\xa4r "
        "strax tillbaka.",
        "Ingen applikationsserver \xc3\xa4r tillg\xc3\xa4nglig just nu. "
        "F\xc3\xb6rs\xc3\xb6k igen om en stund." },
      "Orsak", "Sedan", "F\xc3\xb6rs\xc3\xb6k igen om", "sekunder",
      "Planerat underh\xc3\xa5ll" },

    { "ru", "ru",
      { "\xd0\x98\xd0\xb4\xd1\x83\xd1\x82 \xd1\x82\xd0\xb5\xd1\x85\xd0\xbd"
        "\xd0\xb8\xd1\x87\xd0\xb5\xd1\x81\xd0\xba\xd0\xb8\xd0\xb5 \xd1\x80"
        "\xd0\xb0\xd0\xb1\xd0\xbe\xd1\x82\xd1\x8b",
        "\xd0\x98\xd0\xb4\xd0\xb5\xd1\x82 \xd0\xbe\xd0\xb1\xd0\xbd\xd0\xbe"
        "\xd0\xb2\xd0\xbb\xd0\xb5\xd0\xbd\xd0\xb8\xd0\xb5",
        "\xd0\xa1\xd0\xba\xd0\xbe\xd1\x80\xd0\xbe \xd0\xb2\xd0\xb5\xd1\x80"
        "\xd0\xbd\xd0\xb5\xd0\xbc\xd1\x81\xd1\x8f",
        "\xd0\xa1\xd0\xb5\xd1\x80\xd0\xb2\xd0\xb8\xd1\x81 \xd0\xb2\xd1\x80"
        "\xd0\xb5\xd0\xbc\xd0\xb5\xd0\xbd\xd0\xbd\xd0\xbe \xd0\xbd\xd0\xb5"
        "\xd0\xb4\xd0\xbe\xd1\x81\xd1\x82\xd1\x83\xd0\xbf\xd0\xb5\xd0\xbd" },
      { "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xbb\xd0\xbe\xd0\xb6\xd0\xb5\xd0\xbd"
        "\xd0\xb8\xd0\xb5 \xd0\xbd\xd0\xb0 \xd0\xbe\xd0\xb1\xd1\x81\xd0\xbb"
        "\xd1\x83\xd0\xb6\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd\xd0\xb8\xd0\xb8. "
        "\xd0\x9f\xd0\xbe\xd0\xbf\xd1\x80\xd0\xbe\xd0\xb1\xd1\x83\xd0\xb9"
        "\xd1\x82\xd0\xb5 \xd0\xbf\xd0\xbe\xd0\xb7\xd0\xb6\xd0\xb5.",
        "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xbb\xd0\xbe\xd0\xb6\xd0\xb5\xd0\xbd"
        "\xd0\xb8\xd0\xb5 \xd0\xbe\xd0\xb1\xd0\xbd\xd0\xbe\xd0\xb2\xd0\xbb"
        "\xd1\x8f\xd0\xb5\xd1\x82\xd1\x81\xd1\x8f \xd0\xb4\xd0\xbe \xd0\xbd"
        "\xd0\xbe\xd0\xb2\xd0\xbe\xd0\xb9 \xd0\xb2\xd0\xb5\xd1\x80\xd1\x81"
        "\xd0\xb8\xd0\xb8. \xd0\x9f\xd0\xbe\xd0\xbf\xd1\x80\xd0\xbe\xd0\xb1"
        "\xd1\x83\xd0\xb9\xd1\x82\xd0\xb5 \xd0\xbf\xd0\xbe\xd0\xb7\xd0\xb6"
        "\xd0\xb5.",
        "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xbb\xd0\xbe\xd0\xb6\xd0\xb5\xd0\xbd"
        "\xd0\xb8\xd0\xb5 \xd0\xb7\xd0\xb0\xd0\xbf\xd1\x83\xd1\x81\xd0\xba"
        "\xd0\xb0\xd0\xb5\xd1\x82\xd1\x81\xd1\x8f \xd1\x81\xd0\xbd\xd0\xbe"
        "\xd0\xb2\xd0\xb0.",
        "\xd0\x9d\xd0\xb5\xd1\x82 \xd0\xb4\xd0\xbe\xd1\x81\xd1\x82\xd1\x83"
        "\xd0\xbf\xd0\xbd\xd1\x8b\xd1\x85 \xd1\x81\xd0\xb5\xd1\x80\xd0\xb2"
        "\xd0\xb5\xd1\x80\xd0\xbe\xd0\xb2. \xd0\x9f\xd0\xbe\xd0\xbf\xd1\x80"
        "\xd0\xbe\xd0\xb1\xd1\x83\xd0\xb9\xd1\x82\xd0\xb5 \xd0\xbf\xd0\xbe"
        "\xd0\xb7\xd0\xb6\xd0\xb5." },
      "\xd0\x9f\xd1\x80\xd0\xb8\xd1\x87\xd0\xb8\xd0\xbd\xd0\xb0",
      "\xd0\xa1",
      "\xd0\x9f\xd0\xbe\xd0\xb2\xd1\x82\xd0\xbe\xd1\x80 \xd1\x87\xd0\xb5"
      "\xd1\x80\xd0\xb5\xd0\xb7",
      "\xd1\x81\xd0\xb5\xd0\xba.",
      "\xd0\x9f\xd0\xbb\xd0\xb0\xd0\xbd\xd0\xbe\xd0\xb2\xd0\xbe\xd0\xb5 "
      "\xd0\xbe\xd0\xb1\xd1\x81\xd0\xbb\xd1\x83\xd0\xb6\xd0\xb8\xd0\xb2"
      "\xd0\xb0\xd0\xbd\xd0\xb8\xd0\xb5" }
};


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


static const char *
ngx_http_nb_maint_kind_name(ngx_uint_t kind)
{
    static const char  *names[NB_KINDS] = {
        "maintenance", "upgrade", "restoring", "no_healthy_node"
    };

    return names[kind];
}


static ngx_table_elt_t *
ngx_http_nb_maint_find_header(ngx_http_request_t *r, const char *name,
    size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/*
 * Walks a list like "de-AT;q=0.8, en".  For each item calls back with the
 * item's name and its q-value in thousandths.
 */

typedef void (*ngx_http_nb_maint_item_pt)(u_char *name, size_t len,
    ngx_uint_t q, ngx_uint_t pos, void *data);

static void
ngx_http_nb_maint_parse_qlist(ngx_str_t *v, ngx_http_nb_maint_item_pt cb,
    void *data)
{
    u_char      *p, *end, *name, *name_end, *q;
    ngx_uint_t   qv, pos, scale;

    p = v->data;
    end = v->data + v->len;

    for (pos = 0; p < end; pos++) {

        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        name = p;

        while (p < end && *p != ';' && *p != ',' && *p != ' ') {
            p++;
        }

        name_end = p;
        qv = 1000;

        while (p < end && *p != ',') {
            if (*p == ';') {
                q = p + 1;
                while (q < end && *q == ' ') {
                    q++;
                }

                if (end - q >= 2 && (q[0] == 'q' || q[0] == 'Q')
                    && q[1] == '=')
                {
                    q += 2;
                    qv = 0;

                    if (q < end && *q == '1') {
                        qv = 1000;

                    } else if (q < end && *q == '0') {
                        q++;
                        if (q < end && *q == '.') {
                            q++;
                            for (scale = 100;
                                 scale && q < end && *q >= '0' && *q <= '9';
                                 scale /= 10, q++)
                            {
                                qv += (*q - '0') * scale;
                            }
                        }
                    }
                }
            }

            p++;
        }

        if (name_end > name) {
            cb(name, name_end - name, qv, pos, data);
        }
    }
}


typedef struct {
    ngx_uint_t   best;
    ngx_uint_t   best_q;
} ngx_http_nb_maint_lang_pick_t;


static void
ngx_http_nb_maint_lang_item(u_char *name, size_t len, ngx_uint_t q,
    ngx_uint_t pos, void *data)
{
    ngx_http_nb_maint_lang_pick_t *pick = data;

    size_t      plen;
    ngx_uint_t  i;

    if (q == 0 || q <= pick->best_q) {
        return;
    }

    for (i = 0; i < NB_LANGS; i++) {
        plen = ngx_strlen(ngx_http_nb_maint_langs[i].prefix);

        if (len >= plen
            && ngx_strncasecmp(name, (u_char *) ngx_http_nb_maint_langs[i].prefix,
                               plen) == 0
            && (len == plen || name[plen] == '-' || name[plen] == '_'))
        {
            pick->best = i;
            pick->best_q = q;
            return;
        }
    }

    if (len == 1 && name[0] == '*') {
        pick->best = 0;
        pick->best_q = q;
    }
}


static ngx_uint_t
ngx_http_nb_maint_page_lang(ngx_http_request_t *r)
{
    ngx_table_elt_t                *h;
    ngx_http_nb_maint_lang_pick_t   pick;

    h = ngx_http_nb_maint_find_header(r, "Accept-Language",
                                      sizeof("Accept-Language") - 1);
    if (h == NULL) {
        return 0;
    }

    pick.best = 0;
    pick.best_q = 0;

    ngx_http_nb_maint_parse_qlist(&h->value, ngx_http_nb_maint_lang_item,
                                  &pick);

    return pick.best;
}


typedef struct {
    ngx_int_t    json_q;
    ngx_int_t    json_pos;
    ngx_int_t    html_q;       /* explicit text/html */
    ngx_int_t    html_pos;
    ngx_int_t    wild_q;       /* a text or any-type wildcard */
} ngx_http_nb_maint_accept_t;


static void
ngx_http_nb_maint_accept_item(u_char *name, size_t len, ngx_uint_t q,
    ngx_uint_t pos, void *data)
{
    ngx_http_nb_maint_accept_t *a = data;

#define nb_is(s)  (len == sizeof(s) - 1 && ngx_strncasecmp(name,             \
                                               (u_char *) s, len) == 0)

    if (nb_is("application/json")) {
        a->json_q = q;
        a->json_pos = pos;

    } else if (nb_is("text/html") || nb_is("application/xhtml+xml")) {
        if ((ngx_int_t) q > a->html_q) {
            a->html_q = q;
            a->html_pos = pos;
        }

    } else if (nb_is("text/*") || nb_is("*/*")) {
        if ((ngx_int_t) q > a->wild_q) {
            a->wild_q = q;
        }
    }

#undef nb_is
}


static ngx_uint_t
ngx_http_nb_maint_wants_json(ngx_http_request_t *r,
    ngx_http_nb_maint_loc_conf_t *nlcf)
{
    ngx_table_elt_t             *h;
    ngx_http_nb_maint_accept_t   a;

    /* NocoBase's API_BASE_PATH (nb_maint_api_prefix) */
    if (r->uri.len >= nlcf->api_prefix.len
        && ngx_strncmp(r->uri.data, nlcf->api_prefix.data,
                       nlcf->api_prefix.len) == 0)
    {
        return 1;
    }

    h = ngx_http_nb_maint_find_header(r, "Accept", sizeof("Accept") - 1);
    if (h == NULL) {
        return 0;
    }

    a.json_q = -1;
    a.json_pos = 0;
    a.html_q = -1;
    a.html_pos = 0;
    a.wild_q = -1;

    ngx_http_nb_maint_parse_qlist(&h->value, ngx_http_nb_maint_accept_item,
                                  &a);

    if (a.json_q <= 0) {
        return 0;
    }

    if (a.html_q >= 0) {
        return a.json_q > a.html_q
               || (a.json_q == a.html_q && a.json_pos < a.html_pos);
    }

    /* "application/json, text/plain, * / *" (axios) prefers JSON */
    return a.json_q >= a.wild_q;
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


static ngx_int_t
ngx_http_nb_maint_render_html(ngx_str_t *tpl, ngx_uint_t lang,
    ngx_uint_t kind, ngx_http_nb_maint_state_t *st, ngx_str_t *out)
{
    size_t                     len, vlen, n;
    u_char                    *p, *end, *name, *dst, *val;
    u_char                     since[32], num[NGX_INT_T_LEN], refresh[NGX_INT_T_LEN];
    ngx_uint_t                 i;
    ngx_http_nb_maint_lang_t  *l;

    struct {
        const char  *name;
        u_char      *value;
        size_t       len;
    } vars[NB_PAGE_VARS];

    l = &ngx_http_nb_maint_langs[lang];

#define nb_var(i, n, v, vl)                                                   \
    vars[i].name = n; vars[i].value = (u_char *) (v); vars[i].len = vl

#define nb_cvar(i, n, v)  nb_var(i, n, v, ngx_strlen(v))

    nb_cvar(0, "lang", l->tag);
    nb_cvar(1, "title", l->heading[kind]);
    nb_cvar(2, "heading", l->heading[kind]);
    nb_cvar(3, "message", l->message[kind]);
    nb_cvar(4, "reason_label", l->reason_label);
    nb_cvar(5, "since_label", l->since_label);
    nb_cvar(6, "retry_label", l->retry_label);
    nb_cvar(7, "seconds", l->seconds);

    if (st->reason_len) {
        nb_var(8, "reason", st->reason, st->reason_len);
    } else {
        nb_cvar(8, "reason", l->no_reason);
    }

    nb_var(9, "since", since,
           ngx_http_nb_maint_time_rfc3339(since, st->since) - since);
    nb_var(10, "retry_after", num,
           ngx_sprintf(num, "%ui", st->retry_after) - num);
    nb_var(11, "refresh", refresh,
           ngx_sprintf(refresh, "%ui",
                       kind == 2 ? NB_RESTORING_REFRESH
                                 : ngx_max(st->retry_after, 5))
           - refresh);
    nb_cvar(12, "mode", ngx_http_nb_maint_kind_name(kind));

#undef nb_var
#undef nb_cvar

    /* two passes over the template: measure, then write */

    out->data = NULL;
    len = 0;

    for ( ;; ) {
        p = tpl->data;
        end = tpl->data + tpl->len;
        dst = out->data;

        while (p < end) {
            val = NULL;
            vlen = 0;

            if (end - p > 4 && p[0] == '{' && p[1] == '{') {
                name = p + 2;

                for (i = 0; i < NB_PAGE_VARS; i++) {
                    n = ngx_strlen(vars[i].name);

                    if ((size_t) (end - name) >= n + 2
                        && ngx_strncmp(name, vars[i].name, n) == 0
                        && name[n] == '}' && name[n + 1] == '}')
                    {
                        val = vars[i].value;
                        vlen = vars[i].len;
                        p = name + n + 2;
                        break;
                    }
                }
            }

            if (val == NULL) {
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
                dst = ngx_http_nb_maint_escape_html(dst, val, vlen);
            } else {
                len += vlen * 6;
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
                                ngx_http_nb_maint_langs[0].message[kind]);
    }

    cJSON_AddStringToObject(err, "nb_maint",
                            ngx_http_nb_maint_kind_name(kind));
    cJSON_AddNumberToObject(err, "retry_after", (double) st->retry_after);

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
    ngx_http_nb_maint_state_t *st)
{
    ngx_int_t                        rc;
    ngx_uint_t                       i;
    ngx_http_nb_maint_page_cache_t  *c, *victim;

    victim = &ngx_http_nb_maint_page_cache[0];
    ngx_http_nb_maint_page_tick++;

    for (i = 0; i < NB_CACHE_SIZE; i++) {
        c = &ngx_http_nb_maint_page_cache[i];

        if (c->body.data && c->tpl == tpl->data && c->lang == lang
            && c->kind == kind && c->version == st->version)
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
        rc = ngx_http_nb_maint_render_html(tpl, lang, kind, st,
                                           &victim->body);
    }

    if (rc != NGX_OK) {
        victim->body.data = NULL;
        return NULL;
    }

    victim->tpl = tpl->data;
    victim->lang = lang;
    victim->kind = kind;
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
    ngx_uint_t                     kind, lang, json;
    const char                    *name;
    ngx_http_nb_maint_state_t     *st;
    ngx_http_nb_maint_loc_conf_t  *nlcf;

    nlcf = ngx_http_get_module_loc_conf(r, ngx_http_nb_maint_module);
    st = ngx_http_nb_maint_snapshot();

    kind = ngx_http_nb_maint_kind(mode);
    json = ngx_http_nb_maint_wants_json(r, nlcf);
    lang = json ? NB_LANGS : ngx_http_nb_maint_page_lang(r);

    if (nlcf->page.len) {
        tpl = &nlcf->page;

    } else {
        builtin.data = (u_char *) ngx_http_nb_maint_page_html;
        builtin.len = sizeof(ngx_http_nb_maint_page_html) - 1;
        tpl = &builtin;
    }

    *body = ngx_http_nb_maint_page_get(tpl, lang, kind, st);
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
                                     ngx_sprintf(p, "%ui", st->retry_after)
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
