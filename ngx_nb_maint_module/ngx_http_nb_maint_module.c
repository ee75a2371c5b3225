/*
 * nb_maint: the module definition (SPEC section 4): the directive table,
 * configuration create/merge, the zone's set-up at each configuration
 * load, and the process hooks.  Directives of one concern are parsed in
 * that concern's file (nb_maint_bypass_allow and nb_maint_pass: bypass.c;
 * nb_maint_page: page.c; nb_maint and
 * nb_maint_check: upstream.c; nb_maint_admin and the tokens: admin*.c);
 * nb_maint_zone, nb_maint_store and nb_maint_secret are here.
 *
 * May call: every file (it is the top).
 */

#include "ngx_http_nb_maint.h"
#include <openssl/sha.h>


static ngx_int_t ngx_http_nb_maint_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_nb_maint_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_nb_maint_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_nb_maint_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_nb_maint_create_srv_conf(ngx_conf_t *cf);
static void *ngx_http_nb_maint_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_nb_maint_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_nb_maint_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_nb_maint_store(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_nb_maint_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_nb_maint_path_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_nb_maint_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_nb_maint_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_nb_maint_init_process(ngx_cycle_t *cycle);
static void ngx_http_nb_maint_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_nb_maint_commands[] = {

    { ngx_string("nb_maint_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_nb_maint_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nb_maint_store"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_nb_maint_store,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nb_maint_secret"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_nb_maint_secret,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nb_maint"),
      NGX_HTTP_UPS_CONF|NGX_CONF_NOARGS,
      ngx_http_nb_maint_upstream,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nb_maint_check"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_nb_maint_check,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nb_maint_resolve"),
      NGX_HTTP_UPS_CONF|NGX_CONF_1MORE,
      ngx_http_nb_maint_resolve,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nb_maint_gate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_nb_maint_loc_conf_t, gate),
      NULL },

    { ngx_string("nb_maint_page"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_nb_maint_page,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nb_maint_bypass_allow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_nb_maint_bypass_allow,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nb_maint_pass"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_nb_maint_pass,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nb_maint_ws_path"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_nb_maint_path_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_nb_maint_loc_conf_t, ws_path),
      NULL },

    { ngx_string("nb_maint_api_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_nb_maint_path_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_nb_maint_loc_conf_t, api_prefix),
      NULL },

    { ngx_string("nb_maint_ws_send_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_nb_maint_loc_conf_t, ws_send_timeout),
      NULL },

    { ngx_string("nb_maint_ws_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_nb_maint_loc_conf_t, ws_idle_timeout),
      NULL },

    { ngx_string("nb_maint_ws_ping_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_nb_maint_loc_conf_t, ws_ping_interval),
      NULL },

    { ngx_string("nb_maint_ws_drain_grace"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_nb_maint_main_conf_t, ws_drain_grace),
      NULL },

    { ngx_string("nb_maint_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_nb_maint_admin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("nb_maint_admin_token_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_nb_maint_token_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_nb_maint_module_ctx = {
    ngx_http_nb_maint_preconfiguration,    /* preconfiguration */
    ngx_http_nb_maint_postconfiguration,   /* postconfiguration */

    ngx_http_nb_maint_create_main_conf,    /* create main configuration */
    ngx_http_nb_maint_init_main_conf,      /* init main configuration */

    ngx_http_nb_maint_create_srv_conf,     /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_nb_maint_create_loc_conf,     /* create location configuration */
    ngx_http_nb_maint_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_nb_maint_module = {
    NGX_MODULE_V1,
    &ngx_http_nb_maint_module_ctx,         /* module context */
    ngx_http_nb_maint_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_nb_maint_init_module,         /* init module */
    ngx_http_nb_maint_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_nb_maint_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_nb_maint_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_nb_maint_add_variables(cf);
}


static ngx_int_t
ngx_http_nb_maint_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_nb_maint_module);

    if (ngx_http_nb_maint_upstreams_verify(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (nmcf->shm_zone == NULL) {
        return NGX_OK;
    }

    if (ngx_http_nb_maint_gate_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_nb_maint_ws_filter_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_nb_maint_page_filter_init(cf);
}


static void *
ngx_http_nb_maint_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_nb_maint_main_conf_t));
    if (nmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&nmcf->upstreams, cf->pool, 4,
                       sizeof(ngx_http_nb_maint_srv_conf_t *))
        != NGX_OK)
    {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     nmcf->shm_zone = NULL;
     *     nmcf->store = { 0 };
     *     nmcf->secret_set = 0;
     */

    nmcf->ws_drain_grace = NGX_CONF_UNSET_MSEC;

    return nmcf;
}


static char *
ngx_http_nb_maint_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_nb_maint_main_conf_t *nmcf = conf;

    ngx_str_t  path = ngx_string("nb_maint_state.json");

    ngx_conf_init_msec_value(nmcf->ws_drain_grace, NB_WS_DRAIN_GRACE);

    if (nmcf->store.type.len == 0) {
        if (ngx_conf_full_name(cf->cycle, &path, 0) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        return ngx_http_nb_maint_store_file_init(cf, &nmcf->store, &path);
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_nb_maint_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_nb_maint_srv_conf_t  *nscf;

    nscf = ngx_pcalloc(cf->pool, sizeof(ngx_http_nb_maint_srv_conf_t));
    if (nscf == NULL) {
        return NULL;
    }

    nscf->check.interval = NGX_CONF_UNSET_MSEC;
    nscf->check.timeout = NGX_CONF_UNSET_MSEC;
    nscf->check.rise = NGX_CONF_UNSET_UINT;
    nscf->check.fall = NGX_CONF_UNSET_UINT;
    nscf->check.status = NGX_CONF_UNSET_UINT;

    return nscf;
}


static void *
ngx_http_nb_maint_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_nb_maint_loc_conf_t  *nlcf;

    nlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_nb_maint_loc_conf_t));
    if (nlcf == NULL) {
        return NULL;
    }

    nlcf->gate = NGX_CONF_UNSET;
    nlcf->bypass_allow = NGX_CONF_UNSET_PTR;
    nlcf->pass = NGX_CONF_UNSET_PTR;
    nlcf->tokens = NGX_CONF_UNSET_PTR;
    nlcf->ws_send_timeout = NGX_CONF_UNSET_MSEC;
    nlcf->ws_idle_timeout = NGX_CONF_UNSET_MSEC;
    nlcf->ws_ping_interval = NGX_CONF_UNSET_MSEC;

    return nlcf;
}


static char *
ngx_http_nb_maint_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_nb_maint_loc_conf_t *prev = parent;
    ngx_http_nb_maint_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->gate, prev->gate, 0);
    ngx_conf_merge_ptr_value(conf->bypass_allow, prev->bypass_allow, NULL);
    if (conf->pass == NGX_CONF_UNSET_PTR && prev->pass_off) {
        conf->pass_off = 1;
    }

    ngx_conf_merge_ptr_value(conf->pass, prev->pass, NULL);
    ngx_conf_merge_ptr_value(conf->tokens, prev->tokens, NULL);
    ngx_conf_merge_str_value(conf->page, prev->page, "");
    ngx_conf_merge_str_value(conf->ws_path, prev->ws_path, "/ws");
    ngx_conf_merge_str_value(conf->api_prefix, prev->api_prefix, "/api/");
    ngx_conf_merge_msec_value(conf->ws_send_timeout, prev->ws_send_timeout,
                              NB_WS_SEND_TIMEOUT);
    ngx_conf_merge_msec_value(conf->ws_idle_timeout, prev->ws_idle_timeout,
                              NB_WS_IDLE_TIMEOUT);
    ngx_conf_merge_msec_value(conf->ws_ping_interval, prev->ws_ping_interval,
                              NB_WS_PING_INTERVAL);

    /* NocoBase's static paths pass unless nb_maint_pass says otherwise */
    if (conf->pass == NULL && !conf->pass_off) {
        if (ngx_http_nb_maint_default_pass(cf, conf) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->admin && conf->tokens == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_admin\" requires "
                           "\"nb_maint_admin_token_file\"");
        return NGX_CONF_ERROR;
    }

    if (conf->gate || conf->admin) {
        ngx_http_nb_maint_main_conf_t  *nmcf;

        nmcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_nb_maint_module);
        if (nmcf->shm_zone == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%s\" requires \"nb_maint_zone\" "
                               "in the http block",
                               conf->admin ? "nb_maint_admin"
                                           : "nb_maint_gate");
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_nb_maint_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_nb_maint_main_conf_t *nmcf = conf;

    ssize_t     size;
    ngx_str_t  *value, name;

    if (nmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (name.len == 0 || ngx_strchr(name.data, '=') != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_zone\": invalid zone name \"%V\"",
                           &name);
        return NGX_CONF_ERROR;
    }

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_zone\": invalid zone size \"%V\"",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    /* the node table and the last NB_EVENTS_MIN events must fit */
    if (size < (ssize_t) ngx_http_nb_maint_zone_min_size()) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_zone\": zone \"%V\" is too small "
                           "for %d nodes and %d events, the minimum size "
                           "is %uzk", &name, NB_MAX_NODES, NB_EVENTS_MIN,
                           ngx_http_nb_maint_zone_min_size() / 1024);
        return NGX_CONF_ERROR;
    }

    nmcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                           &ngx_http_nb_maint_module);
    if (nmcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    nmcf->shm_zone->init = ngx_http_nb_maint_init_zone;
    nmcf->shm_zone->data = nmcf;

    return NGX_CONF_OK;
}


static char *
ngx_http_nb_maint_store(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_nb_maint_main_conf_t *nmcf = conf;

    ngx_str_t  *value, path;

    if (nmcf->store.type.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len > 5 && ngx_strncmp(value[1].data, "file:", 5) == 0) {
        path.data = value[1].data + 5;
        path.len = value[1].len - 5;

        if (ngx_conf_full_name(cf->cycle, &path, 0) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        return ngx_http_nb_maint_store_file_init(cf, &nmcf->store, &path);
    }

    if ((value[1].len > 8 && ngx_strncmp(value[1].data, "redis://", 8) == 0)
        || (value[1].len > 17
            && ngx_strncmp(value[1].data, "redis-sentinel://", 17) == 0))
    {
        return ngx_http_nb_maint_store_redis_init(cf, &nmcf->store, &value[1]);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"nb_maint_store\": invalid store \"%V\", "
                       "expected file:/path, redis://host:port or "
                       "redis-sentinel://host:port,.../master",
                       &value[1]);
    return NGX_CONF_ERROR;
}


/* nb_maint_ws_path, nb_maint_api_prefix: an absolute path, no spaces */

static char *
ngx_http_nb_maint_path_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t   *value, *field;
    ngx_uint_t   i;

    field = (ngx_str_t *) ((char *) conf + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].data[0] != '/') {
        goto invalid;
    }

    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] <= ' ' || value[1].data[i] >= 0x7f
            || value[1].data[i] == '?' || value[1].data[i] == '#')
        {
            goto invalid;
        }
    }

    *field = value[1];

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\": invalid path \"%V\", expected an absolute "
                       "path such as \"/api/\"", &cmd->name, &value[1]);
    return NGX_CONF_ERROR;
}


/*
 * The zone of a configuration being loaded (master): on a reload the state
 * lives on in the old zone, and entries for new nodes are only added,
 * under the next generation's mark; a new zone gets the state's defaults,
 * the node table, the store's state and the cookie key.  Nothing here may
 * change what the running generation sees (see state.c).
 */

static ngx_int_t
ngx_http_nb_maint_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_nb_maint_main_conf_t *nmcf = shm_zone->data;

    ngx_log_t                *log;
    ngx_slab_pool_t          *shpool, *old_pool;
    ngx_http_nb_maint_shm_t  *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    log = shm_zone->shm.log;

    if (shm_zone->shm.exists || data) {
        sh = shpool->data;

        /* a reload fails on a file store the workers cannot write */
        if (ngx_http_nb_maint_file_check(&nmcf->store, sh, log) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_http_nb_maint_dns_claim(nmcf, sh, sh->generation + 1, log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_nb_maint_nodes_init(nmcf, sh, sh->generation + 1,
                                            log);
    }

    sh = ngx_http_nb_maint_state_zone_create(shm_zone);
    if (sh == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_nb_maint_dns_claim(nmcf, sh, 1, log) != NGX_OK
        || ngx_http_nb_maint_nodes_init(nmcf, sh, 1, log) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* so do nginx -t and a start; and the file becomes ours, or not */
    if (ngx_http_nb_maint_file_check(&nmcf->store, sh, log) != NGX_OK) {
        return NGX_ERROR;
    }

    old_pool = ngx_http_nb_maint_state_use(shpool);

    nmcf->store.load(&nmcf->store, sh, shpool, log);
    ngx_http_nb_maint_secret_init(nmcf, sh, log);

    sh->seq = (ngx_atomic_uint_t) sh->state.version;

    (void) ngx_http_nb_maint_state_use(old_pool);

    return NGX_OK;
}


/* called once the cycle is committed: only now may the zone be used */

static ngx_int_t
ngx_http_nb_maint_init_module(ngx_cycle_t *cycle)
{
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_nb_maint_module);

    if (nmcf == NULL || nmcf->shm_zone == NULL) {
        return NGX_OK;
    }

    if (ngx_http_nb_maint_state_init_module(cycle, nmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the master's children at this commit (state_workers.c) */
    ngx_http_nb_maint_commit_pids(ngx_http_nb_maint_shm());

    return NGX_OK;
}


static ngx_int_t
ngx_http_nb_maint_init_process(ngx_cycle_t *cycle)
{
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_nb_maint_module);

    if (nmcf == NULL || nmcf->shm_zone == NULL
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE))
    {
        return NGX_OK;
    }

    if (ngx_http_nb_maint_health_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_nb_maint_ws_init_process(cycle);

    return NGX_OK;
}


static void
ngx_http_nb_maint_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_nb_maint_main_conf_t  *nmcf;

    nmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_nb_maint_module);

    if (nmcf && nmcf->shm_zone) {
        ngx_http_nb_maint_health_exit_process(cycle);
    }
}


/* nb_maint_secret file: the key of bypass cookies, shared by gateways */

static char *
ngx_http_nb_maint_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_nb_maint_main_conf_t *nmcf = conf;

    ngx_str_t  *value, key;

    if (nmcf->secret_set) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* the page loader reads any small file; reuse it for the key */
    if (ngx_http_nb_maint_page_load(cf, &value[1], &key) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    while (key.len && (key.data[key.len - 1] == '\n'
                       || key.data[key.len - 1] == '\r'))
    {
        key.len--;
    }

    if (key.len < 16) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_secret\": the key must be at least "
                           "16 bytes");
        return NGX_CONF_ERROR;
    }

    SHA256(key.data, key.len, nmcf->secret);
    ngx_explicit_memzero(key.data, key.len);

    nmcf->secret_set = 1;

    return NGX_CONF_OK;
}
