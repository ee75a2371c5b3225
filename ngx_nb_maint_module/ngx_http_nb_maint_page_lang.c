/*
 * nb_maint: what a client of the 503 answer wants (SPEC section 7): its
 * language by Accept-Language (q-values honoured) among en, zh-CN, de, sv
 * and ru, with each language's words for the page; and whether it prefers
 * JSON (nb_maint_api_prefix, or Accept).
 *
 * May call: the shared header only.
 */

#include "ngx_http_nb_maint_page.h"


static ngx_http_nb_maint_lang_t   ngx_http_nb_maint_langs[NB_LANGS] = {

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
      "Scheduled maintenance",
      "No application node is available" },

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
      "\xe8\xae\xa1\xe5\x88\x92\xe5\x86\x85\xe7\xbb\xb4\xe6\x8a\xa4",
      "\xe6\xb2\xa1\xe6\x9c\x89\xe5\x8f\xaf\xe7\x94\xa8\xe7\x9a\x84\xe5\xba\x94"
      "\xe7\x94\xa8\xe8\x8a\x82\xe7\x82\xb9" },

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
      "Geplante Wartung",
      "Kein Anwendungsknoten ist erreichbar" },

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
      "Planerat underh\xc3\xa5ll",
      "Ingen applikationsnod \xc3\xa4r tillg\xc3\xa4nglig" },

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
      "\xd0\xb0\xd0\xbd\xd0\xb8\xd0\xb5",
      "\xd0\x9d\xd0\xb5\xd1\x82 \xd0\xb4\xd0\xbe\xd1\x81\xd1\x82\xd1\x83"
      "\xd0\xbf\xd0\xbd\xd1\x8b\xd1\x85 \xd1\x83\xd0\xb7\xd0\xbb\xd0\xbe"
      "\xd0\xb2 \xd0\xbf\xd1\x80\xd0\xb8\xd0\xbb\xd0\xbe\xd0\xb6\xd0\xb5"
      "\xd0\xbd\xd0\xb8\xd1\x8f" }
};


ngx_http_nb_maint_lang_t *
ngx_http_nb_maint_page_lang_get(ngx_uint_t lang)
{
    return &ngx_http_nb_maint_langs[lang];
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


ngx_uint_t
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


ngx_uint_t
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
