/*
 * nb_maint: $nb_maint_mode, $nb_maint_node, $nb_maint_bypass.
 */

#include "ngx_http_nb_maint.h"


static ngx_int_t ngx_http_nb_maint_variable_mode(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_nb_maint_variable_node(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_nb_maint_variable_bypass(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_nb_maint_vars[] = {

    { ngx_string("nb_maint_mode"), NULL, ngx_http_nb_maint_variable_mode,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("nb_maint_node"), NULL, ngx_http_nb_maint_variable_node,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("nb_maint_bypass"), NULL, ngx_http_nb_maint_variable_bypass,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_nb_maint_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_nb_maint_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_no_zone(ngx_http_variable_value_t *v)
{
    if (ngx_http_nb_maint_shm() != NULL) {
        return 0;
    }

    v->not_found = 1;
    return 1;
}


static ngx_int_t
ngx_http_nb_maint_variable_mode(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char  *name;

    if (ngx_http_nb_maint_no_zone(v)) {
        return NGX_OK;
    }

    name = ngx_http_nb_maint_mode_name(ngx_http_nb_maint_snapshot()->mode);

    v->data = (u_char *) name;
    v->len = ngx_strlen(name);
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_variable_node(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_nb_maint_state_t  *st;

    if (ngx_http_nb_maint_no_zone(v)) {
        return NGX_OK;
    }

    st = ngx_http_nb_maint_snapshot();

    /* a header may hold it: only ids of the one grammar, never raw bytes */

    if (st->node_len
        && !ngx_http_nb_maint_node_id_valid(st->node, st->node_len))
    {
        *v = ngx_http_variable_null_value;
        return NGX_OK;
    }

    v->data = ngx_pnalloc(r->pool, st->node_len + 1);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_cpymem(v->data, st->node, st->node_len) - v->data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_variable_bypass(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    if (ngx_http_nb_maint_no_zone(v)) {
        return NGX_OK;
    }

    if (ngx_http_nb_maint_is_bypass(r)) {
        v->data = (u_char *) "1";
        v->len = 1;

    } else {
        v->data = (u_char *) "";
        v->len = 0;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
