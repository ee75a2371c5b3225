/*
 * nb_maint: what a health check's answer says (SPEC section 3, "Node
 * health"): NocoBase's JSON envelope of a busy node that a check may get
 * with a 503 (the codes that make a node "commanding" and the command name
 * kept with it), and a failed check's socket error in words.
 * Calls json.c only; health.c calls it.
 */

#include "ngx_http_nb_maint.h"


/*
 * A node that answers NocoBase's envelope {"error":{"code":...,
 * "command":{"name":...}}} with a busy code is alive and working: it is
 * "commanding", not down.  APP_ERROR, APP_STOPPED and anything else fail.
 */

ngx_uint_t
ngx_http_nb_maint_health_envelope(ngx_str_t *body, ngx_uint_t *app_code,
    u_char *command, size_t *command_len)
{
    size_t       len, n;
    cJSON       *root, *err, *code, *cmd, *name;
    ngx_uint_t   app;
    const char  *msg;

    /* no NUL inside its strings either: such a body is garbage */
    root = ngx_http_nb_maint_json_parse((char *) body->data, body->len, NULL,
                                        &msg);
    if (root == NULL) {
        return 0;
    }

    err = cJSON_GetObjectItemCaseSensitive(root, "error");
    code = cJSON_GetObjectItemCaseSensitive(err, "code");

    app = 0;

    if (cJSON_IsString(code)) {
        if (ngx_strcmp(code->valuestring, "APP_COMMANDING") == 0) {
            app = NB_APP_COMMANDING;

        } else if (ngx_strcmp(code->valuestring, "APP_PREPARING") == 0) {
            app = NB_APP_PREPARING;

        } else if (ngx_strcmp(code->valuestring, "APP_INITIALIZING") == 0) {
            app = NB_APP_INITIALIZING;
        }
    }

    *app_code = app;
    *command_len = 0;

    cmd = cJSON_GetObjectItemCaseSensitive(err, "command");
    name = cJSON_GetObjectItemCaseSensitive(cmd, "name");

    if (app && cJSON_IsString(name)) {
        len = ngx_strlen(name->valuestring);
        len = ngx_min(len, NB_APP_COMMAND_LEN);

        /* printable ASCII only: it reaches logs, JSON and the CLI */
        for (n = 0;
             n < len
             && (u_char) name->valuestring[n] > ' '
             && (u_char) name->valuestring[n] < 0x7f;
             n++)
        {
            command[n] = (u_char) name->valuestring[n];
        }

        *command_len = n;
    }

    cJSON_Delete(root);

    return app != 0;
}


/*
 * Why a socket call of a check failed, in the words an operator looks for
 * ("connection refused", not "recv failed"); "what" when errno says
 * nothing more specific.
 */

const char *
ngx_http_nb_maint_health_why(ngx_err_t err, const char *what)
{
    switch (err) {

    case NGX_ECONNREFUSED:
        return "connection refused";

    case NGX_ECONNRESET:
    case NGX_EPIPE:
        return "connection reset";

    case NGX_ETIMEDOUT:
        return "timed out";

    case NGX_EHOSTUNREACH:
        return "host unreachable";

    case NGX_ENETUNREACH:
        return "network unreachable";

    case NGX_EHOSTDOWN:
        return "host down";

    case NGX_ENETDOWN:
        return "network down";

    default:
        return what;
    }
}
