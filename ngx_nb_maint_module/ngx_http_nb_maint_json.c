/*
 * nb_maint: the state as JSON (cJSON), shared by the stores and the API.
 */

#include "ngx_http_nb_maint.h"


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

    cJSON_AddNumberToObject(obj, "version", (double) st->version);

    p = ngx_http_nb_maint_time_rfc3339(since, st->since);
    *p = '\0';
    cJSON_AddStringToObject(obj, "since", (char *) since);

    cJSON_AddItemToObject(obj, "reason",
                      ngx_http_nb_maint_json_strn(st->reason, st->reason_len));
    cJSON_AddNumberToObject(obj, "retry_after", (double) st->retry_after);

    return obj;
}


static time_t
ngx_http_nb_maint_parse_rfc3339(const char *s)
{
    ngx_tm_t  tm;

    ngx_memzero(&tm, sizeof(ngx_tm_t));

    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.ngx_tm_year, &tm.ngx_tm_mon,
               &tm.ngx_tm_mday, &tm.ngx_tm_hour, &tm.ngx_tm_min,
               &tm.ngx_tm_sec)
        != 6)
    {
        return NGX_ERROR;
    }

    tm.ngx_tm_year -= 1900;
    tm.ngx_tm_mon -= 1;

    return timegm(&tm);
}


/* the persisted form back into a state; all-or-nothing */

ngx_int_t
ngx_http_nb_maint_state_from_json(cJSON *obj, ngx_http_nb_maint_state_t *st,
    const char **err)
{
    size_t                     len;
    cJSON                     *item;
    ngx_int_t                  mode;
    ngx_http_nb_maint_state_t  s;

    ngx_memzero(&s, sizeof(ngx_http_nb_maint_state_t));

    if (!cJSON_IsObject(obj)) {
        *err = "not a JSON object";
        return NGX_ERROR;
    }

    item = cJSON_GetObjectItemCaseSensitive(obj, "version");
    if (!cJSON_IsNumber(item) || item->valuedouble < 0) {
        *err = "bad \"version\"";
        return NGX_ERROR;
    }
    s.version = (uint64_t) item->valuedouble;

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
    s.mode = mode;

    s.restoring_from = NB_MODE_NONE;
    item = cJSON_GetObjectItemCaseSensitive(obj, "restoring_from");
    if (s.mode == NB_MODE_RESTORING) {
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
        s.restoring_from = mode;
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

    s.since = ngx_time();
    item = cJSON_GetObjectItemCaseSensitive(obj, "since");
    if (cJSON_IsString(item)) {
        s.since = ngx_http_nb_maint_parse_rfc3339(item->valuestring);
        if (s.since == NGX_ERROR) {
            *err = "bad \"since\"";
            return NGX_ERROR;
        }
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


/* the stored form: the state, the drained node ids, maybe the cookie key */

char *
ngx_http_nb_maint_state_serialize(ngx_http_nb_maint_state_t *st,
    ngx_uint_t with_secret)
{
    char                     *s;
    u_char                    hex[NB_SECRET_LEN * 2 + 1];
    cJSON                    *json, *drain;
    ngx_uint_t                i;
    ngx_http_nb_maint_shm_t  *sh;

    json = ngx_http_nb_maint_state_to_json(st);
    if (json == NULL) {
        return NULL;
    }

    sh = ngx_http_nb_maint_shm();

    if (with_secret && sh->secret_set) {
        *ngx_hex_dump(hex, sh->secret, NB_SECRET_LEN) = '\0';
        cJSON_AddStringToObject(json, "secret", (char *) hex);
    }

    drain = cJSON_AddArrayToObject(json, "drain");

    for (i = 0; drain && i < sh->nnodes; i++) {
        if (nb_drained(st, i)) {
            cJSON_AddItemToArray(drain,
                                 ngx_http_nb_maint_json_strn(sh->nodes[i].id,
                                                     sh->nodes[i].id_len));
        }
    }

    s = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);

    return s;
}


ngx_int_t
ngx_http_nb_maint_state_parse(cJSON *json, ngx_http_nb_maint_shm_t *sh,
    ngx_http_nb_maint_state_t *st, const char **err, ngx_log_t *log)
{
    cJSON      *item;
    ngx_int_t   i;

    if (ngx_http_nb_maint_state_from_json(json, st, err) != NGX_OK) {
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(json, "drain")) {
        if (!cJSON_IsString(item)
            || !ngx_http_nb_maint_node_id_valid((u_char *) item->valuestring,
                                                ngx_strlen(item->valuestring)))
        {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "nb_maint: an invalid node id in \"drain\" is "
                          "ignored");
            continue;
        }

        i = ngx_http_nb_maint_node_find(sh, (u_char *) item->valuestring,
                                        ngx_strlen(item->valuestring));
        if (i == NGX_ERROR) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "nb_maint: drained node \"%s\" is in no "
                          "upstream any more", item->valuestring);
            continue;
        }

        st->drain[i / 8] |= (u_char) (1 << (i % 8));
    }

    return NGX_OK;
}
