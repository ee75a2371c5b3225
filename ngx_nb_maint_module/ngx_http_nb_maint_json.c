/*
 * nb_maint: JSON (cJSON) at the bottom of the module: the state as a JSON
 * object and back, the words and times it is written in (mode names,
 * RFC 3339), exact 64-bit numbers, strings with NULs refused, and the
 * drained ids of unknown nodes.  Shared by the state, the stores and the API.
 *
 * May call: node_id.c only (no shared memory, no state, no store).
 */

#include "ngx_http_nb_maint.h"


static const char  *ngx_http_nb_maint_modes[] = {
    "normal", "maintenance", "upgrade", "restoring"
};


static u_char *ngx_http_nb_maint_time_rfc3339_ms(u_char *buf, ngx_msec_t ms);
static ngx_int_t ngx_http_nb_maint_modes_from_json(cJSON *obj,
    ngx_http_nb_maint_state_t *st, const char **err);
static ngx_int_t ngx_http_nb_maint_times_from_json(cJSON *obj,
    ngx_http_nb_maint_state_t *st, const char **err);

cJSON *
ngx_http_nb_maint_json_strn(u_char *s, size_t len)
{
    char   buf[NB_REASON_LEN + 1];
    char  *p;
    cJSON *item;

    if (len <= NB_REASON_LEN) {
        ngx_memcpy(buf, s, len);
        buf[len] = '\0';
        return cJSON_CreateString(buf);
    }

    p = malloc(len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s, len);
    p[len] = '\0';

    item = cJSON_CreateString(p);
    free(p);

    return item;
}


cJSON *
ngx_http_nb_maint_state_to_json(ngx_http_nb_maint_state_t *st)
{
    u_char   since[32], *p;
    cJSON   *obj;

    obj = cJSON_CreateObject();
    if (obj == NULL) {
        return NULL;
    }

    cJSON_AddStringToObject(obj, "mode",
                            ngx_http_nb_maint_mode_name(st->mode));

    if (st->node_len) {
        cJSON_AddItemToObject(obj, "node",
                          ngx_http_nb_maint_json_strn(st->node, st->node_len));
    } else {
        cJSON_AddNullToObject(obj, "node");
    }

    if (st->mode == NB_MODE_RESTORING) {
        cJSON_AddStringToObject(obj, "restoring_from",
                            ngx_http_nb_maint_mode_name(st->restoring_from));
    } else {
        cJSON_AddNullToObject(obj, "restoring_from");
    }

    cJSON_AddItemToObject(obj, "version",
                          ngx_http_nb_maint_json_version(st->version));

    p = ngx_http_nb_maint_time_rfc3339(since, st->since);
    *p = '\0';
    cJSON_AddStringToObject(obj, "since", (char *) since);

    cJSON_AddItemToObject(obj, "reason",
                      ngx_http_nb_maint_json_strn(st->reason, st->reason_len));
    cJSON_AddNumberToObject(obj, "retry_after", (double) st->retry_after);

    /* every gateway gates the restore on the same instant (issue 9, 4) */
    if (st->mode == NB_MODE_RESTORING) {
        p = ngx_http_nb_maint_time_rfc3339_ms(since, st->restore_started);
        *p = '\0';
        cJSON_AddStringToObject(obj, "restore_started", (char *) since);

        if (st->restore_expect) {
            cJSON_AddNumberToObject(obj, "restore_expect",
                                    (double) st->restore_expect);
        }

    } else {
        cJSON_AddNullToObject(obj, "restore_started");
    }

    return obj;
}


/* "2026-11-27T06:00:00.123Z"; buf needs 25 bytes, returns the end */

static u_char *
ngx_http_nb_maint_time_rfc3339_ms(u_char *buf, ngx_msec_t ms)
{
    u_char  *p;

    p = ngx_http_nb_maint_time_rfc3339(buf, (time_t) (ms / 1000));

    /* replace the "Z" */
    return ngx_sprintf(p - 1, ".%03uiZ", (ngx_uint_t) (ms % 1000));
}


static time_t
ngx_http_nb_maint_parse_rfc3339(const char *s, ngx_uint_t *ms)
{
    int       n;
    ngx_tm_t  tm;

    ngx_memzero(&tm, sizeof(ngx_tm_t));
    n = 0;

    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.ngx_tm_year,
               &tm.ngx_tm_mon, &tm.ngx_tm_mday, &tm.ngx_tm_hour,
               &tm.ngx_tm_min, &tm.ngx_tm_sec, &n)
        != 6 || n == 0)
    {
        return NGX_ERROR;
    }

    s += n;
    *ms = 0;

    /* optional milliseconds */
    if (s[0] == '.') {
        if (!isdigit((u_char) s[1]) || !isdigit((u_char) s[2])
            || !isdigit((u_char) s[3]))
        {
            return NGX_ERROR;
        }

        *ms = (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
        s += 4;
    }

    if (s[0] != 'Z' || s[1] != '\0') {
        return NGX_ERROR;
    }

    tm.ngx_tm_year -= 1900;
    tm.ngx_tm_mon -= 1;

    return timegm(&tm);
}


/* "mode" and "restoring_from" into st */

static ngx_int_t
ngx_http_nb_maint_modes_from_json(cJSON *obj, ngx_http_nb_maint_state_t *st,
    const char **err)
{
    cJSON      *item;
    ngx_int_t   mode;

    item = cJSON_GetObjectItemCaseSensitive(obj, "mode");
    mode = NGX_ERROR;
    if (cJSON_IsString(item)) {
        mode = ngx_http_nb_maint_mode_parse((u_char *) item->valuestring,
                                            ngx_strlen(item->valuestring));
    }
    if (mode == NGX_ERROR) {
        *err = "bad \"mode\"";
        return NGX_ERROR;
    }
    st->mode = mode;

    st->restoring_from = NB_MODE_NONE;
    item = cJSON_GetObjectItemCaseSensitive(obj, "restoring_from");
    if (st->mode == NB_MODE_RESTORING) {
        mode = NGX_ERROR;
        if (cJSON_IsString(item)) {
            mode = ngx_http_nb_maint_mode_parse(
                                          (u_char *) item->valuestring,
                                          ngx_strlen(item->valuestring));
        }
        if (mode != NB_MODE_MAINTENANCE && mode != NB_MODE_UPGRADE) {
            *err = "bad \"restoring_from\"";
            return NGX_ERROR;
        }
        st->restoring_from = mode;
    }

    return NGX_OK;
}


/* "since" and, while restoring, "restore_started" into st */

static ngx_int_t
ngx_http_nb_maint_times_from_json(cJSON *obj, ngx_http_nb_maint_state_t *st,
    const char **err)
{
    cJSON       *item;
    time_t       t;
    ngx_uint_t   ms;

    st->since = ngx_time();
    item = cJSON_GetObjectItemCaseSensitive(obj, "since");
    if (cJSON_IsString(item)) {
        st->since = ngx_http_nb_maint_parse_rfc3339(item->valuestring, &ms);
        if (st->since == NGX_ERROR) {
            *err = "bad \"since\"";
            return NGX_ERROR;
        }
    }

    /* the restore's start; a state written before it was stored: "since" */
    if (st->mode == NB_MODE_RESTORING) {
        st->restore_started = (ngx_msec_t) st->since * 1000;

        item = cJSON_GetObjectItemCaseSensitive(obj, "restore_started");
        if (cJSON_IsString(item)) {
            t = ngx_http_nb_maint_parse_rfc3339(item->valuestring, &ms);
            if (t == NGX_ERROR) {
                *err = "bad \"restore_started\"";
                return NGX_ERROR;
            }

            st->restore_started = (ngx_msec_t) t * 1000 + ms;

        } else if (item && !cJSON_IsNull(item)) {
            *err = "bad \"restore_started\"";
            return NGX_ERROR;
        }

        item = cJSON_GetObjectItemCaseSensitive(obj, "restore_expect");
        if (item) {
            if (!cJSON_IsNumber(item) || item->valuedouble < 0
                || item->valuedouble > NB_DNS_SLOTS)
            {
                *err = "bad \"restore_expect\"";
                return NGX_ERROR;
            }

            st->restore_expect = (ngx_uint_t) item->valuedouble;
        }
    }

    return NGX_OK;
}


/* the persisted form back into a state; all-or-nothing */

ngx_int_t
ngx_http_nb_maint_state_from_json(cJSON *obj, ngx_http_nb_maint_state_t *st,
    const char **err)
{
    size_t                     len;
    cJSON                     *item;
    ngx_http_nb_maint_state_t  s;

    ngx_memzero(&s, sizeof(ngx_http_nb_maint_state_t));

    if (!cJSON_IsObject(obj)) {
        *err = "not a JSON object";
        return NGX_ERROR;
    }

    /* exact 64-bit text: out of range is corrupt, never rounded or reset */

    item = cJSON_GetObjectItemCaseSensitive(obj, "version");
    if (ngx_http_nb_maint_json_u64(item, NB_VERSION_MAX, &s.version)
        != NGX_OK)
    {
        *err = "bad \"version\" (not an integer from 0 to 2^63-1)";
        return NGX_ERROR;
    }

    if (ngx_http_nb_maint_modes_from_json(obj, &s, err) != NGX_OK) {
        return NGX_ERROR;
    }

    item = cJSON_GetObjectItemCaseSensitive(obj, "node");
    if (cJSON_IsString(item)) {
        len = ngx_strlen(item->valuestring);
        if (!ngx_http_nb_maint_node_id_valid((u_char *) item->valuestring,
                                             len))
        {
            *err = "bad \"node\"";
            return NGX_ERROR;
        }
        s.node_len = len;
        ngx_memcpy(s.node, item->valuestring, len);

    } else if (item && !cJSON_IsNull(item)) {
        *err = "bad \"node\"";
        return NGX_ERROR;
    }

    item = cJSON_GetObjectItemCaseSensitive(obj, "reason");
    if (cJSON_IsString(item)) {
        len = ngx_strlen(item->valuestring);
        if (len > NB_REASON_LEN) {
            *err = "bad \"reason\"";
            return NGX_ERROR;
        }
        s.reason_len = len;
        ngx_memcpy(s.reason, item->valuestring, len);
    }

    s.retry_after = NB_RETRY_AFTER_DEFAULT;
    item = cJSON_GetObjectItemCaseSensitive(obj, "retry_after");
    if (cJSON_IsNumber(item)) {
        if (item->valuedouble < 0 || item->valuedouble > NB_RETRY_AFTER_MAX) {
            *err = "bad \"retry_after\"";
            return NGX_ERROR;
        }
        s.retry_after = (ngx_uint_t) item->valuedouble;
    }

    if (ngx_http_nb_maint_times_from_json(obj, &s, err) != NGX_OK) {
        return NGX_ERROR;
    }

    *st = s;

    return NGX_OK;
}


/* print a cJSON tree into pool memory (unformatted) */

ngx_int_t
ngx_http_nb_maint_json_str(ngx_pool_t *pool, cJSON *json, ngx_str_t *out)
{
    char  *s;

    s = cJSON_PrintUnformatted(json);
    if (s == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_strlen(s);
    out->data = ngx_pnalloc(pool, out->len);

    if (out->data == NULL) {
        cJSON_free(s);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, s, out->len);
    cJSON_free(s);

    return NGX_OK;
}


/*
 * cJSON keeps numbers as doubles only, and cuts a string at "\u0000".
 * Every JSON text the module reads (admin bodies, the state file, events,
 * Redis) goes through this: after cJSON's parse the text is walked once
 * more; a "\u0000" escape rejects the whole text, and the exact text of
 * each number is kept in its item's valuestring (cJSON_Delete() frees it)
 * for ngx_http_nb_maint_json_u64().
 */

static const char *
ngx_http_nb_maint_json_next_number(const char *p, const char *end,
    size_t *len)
{
    const char  *q;

    while (p < end) {

        if (*p == '"') {
            for (p++; p < end && *p != '"'; p++) {
                if (*p == '\\') {
                    p++;
                }
            }

            p++;
            continue;
        }

        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            for (q = p; q < end; q++) {
                if (!((*q >= '0' && *q <= '9') || *q == '-' || *q == '+'
                      || *q == '.' || *q == 'e' || *q == 'E'))
                {
                    break;
                }
            }

            *len = q - p;
            return p;
        }

        p++;
    }

    return NULL;
}


static ngx_int_t
ngx_http_nb_maint_json_numbers(cJSON *item, const char **p, const char *end)
{
    char        *s;
    size_t       len;
    const char  *n;

    for ( /* void */ ; item; item = item->next) {

        if (cJSON_IsNumber(item)) {
            n = ngx_http_nb_maint_json_next_number(*p, end, &len);
            if (n == NULL) {
                return NGX_ERROR;
            }

            s = cJSON_malloc(len + 1);
            if (s == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(s, n, len);
            s[len] = '\0';

            item->valuestring = s;
            *p = n + len;
        }

        if (item->child
            && ngx_http_nb_maint_json_numbers(item->child, p, end) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the drained ids of nodes unknown here, kept as they are */

ngx_int_t
ngx_http_nb_maint_drain_other_add(ngx_http_nb_maint_state_t *st, u_char *id,
    size_t len)
{
    u_char  *p, *end, *nl;
    size_t   i;

    if (len == 0) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        if (id[i] < 0x21 || id[i] == 0x7f) {
            return NGX_ERROR;
        }
    }

    /* once */

    p = st->drain_other;
    end = st->drain_other + st->drain_other_len;

    while (p < end) {
        nl = ngx_strlchr(p, end, '\n');
        if (nl == NULL) {
            nl = end;
        }

        if ((size_t) (nl - p) == len && ngx_memcmp(p, id, len) == 0) {
            return NGX_OK;
        }

        p = nl + 1;
    }

    if (st->drain_other_len + (st->drain_other_len ? 1 : 0) + len
        > NB_DRAIN_OTHER_LEN)
    {
        return NGX_ERROR;
    }

    p = st->drain_other + st->drain_other_len;

    if (st->drain_other_len) {
        *p++ = '\n';
    }

    st->drain_other_len = ngx_cpymem(p, id, len) - st->drain_other;

    return NGX_OK;
}


cJSON *
ngx_http_nb_maint_json_parse(const char *s, size_t len, const char **rest,
    const char **err)
{
    cJSON       *json;
    const char  *p, *end;

    json = cJSON_ParseWithLengthOpts(s, len, &end, 0);

    if (rest) {
        *rest = end;
    }

    if (json == NULL) {
        *err = "invalid JSON";
        return NULL;
    }

    /* backslashes are only valid inside strings: each starts an escape */

    for (p = s; p < end; p++) {
        if (*p != '\\') {
            continue;
        }

        if (end - p >= 6 && ngx_strncmp(p + 1, "u0000", 5) == 0) {
            cJSON_Delete(json);
            *err = "a string holds a NUL character (\\u0000)";
            return NULL;
        }

        p++;
    }

    p = s;

    if (ngx_http_nb_maint_json_numbers(json, &p, end) != NGX_OK) {
        cJSON_Delete(json);
        *err = "cannot keep the numbers' text";
        return NULL;
    }

    return json;
}


/* an unsigned integer up to max, exactly as written (no sign, fraction,
 * exponent); items from ngx_http_nb_maint_json_parse() only */

ngx_int_t
ngx_http_nb_maint_json_u64(cJSON *item, uint64_t max, uint64_t *out)
{
    u_char    *p;
    uint64_t   v, d;

    if (!cJSON_IsNumber(item) || item->valuestring == NULL) {
        return NGX_ERROR;
    }

    p = (u_char *) item->valuestring;

    if (*p == '\0' || (*p == '0' && p[1] != '\0')) {
        return NGX_ERROR;
    }

    for (v = 0; *p; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        d = *p - '0';

        if (v > (max - d) / 10) {
            return NGX_ERROR;
        }

        v = v * 10 + d;
    }

    *out = v;

    return NGX_OK;
}


/* a version as a JSON number written as integer text, never as a double */

cJSON *
ngx_http_nb_maint_json_version(uint64_t version)
{
    u_char  buf[NGX_INT64_LEN + 1];

    *ngx_sprintf(buf, "%uL", version) = '\0';

    return cJSON_CreateRaw((char *) buf);
}


/* an object's integer member re-made from its exact text (for printing) */

ngx_int_t
ngx_http_nb_maint_json_keep_version(cJSON *obj)
{
    cJSON     *item;
    uint64_t   v;

    item = cJSON_GetObjectItemCaseSensitive(obj, "version");

    if (ngx_http_nb_maint_json_u64(item, NB_VERSION_MAX, &v) != NGX_OK) {
        return NGX_ERROR;
    }

    item = ngx_http_nb_maint_json_version(v);
    if (item == NULL) {
        return NGX_ERROR;
    }

    if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, "version", item)) {
        cJSON_Delete(item);
        return NGX_ERROR;
    }

    return NGX_OK;
}


const char *
ngx_http_nb_maint_mode_name(ngx_uint_t mode)
{
    if (mode > NB_MODE_RESTORING) {
        return NULL;
    }

    return ngx_http_nb_maint_modes[mode];
}


ngx_int_t
ngx_http_nb_maint_mode_parse(u_char *s, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i <= NB_MODE_RESTORING; i++) {
        if (ngx_strlen(ngx_http_nb_maint_modes[i]) == len
            && ngx_strncmp(ngx_http_nb_maint_modes[i], s, len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


/* "2026-11-27T06:00:00Z"; buf needs 21 bytes, returns the end */

u_char *
ngx_http_nb_maint_time_rfc3339(u_char *buf, time_t t)
{
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    return ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
}
