/*
 * nb_maint: the redis store's local cache file (SPEC section 8: "also
 * after an nginx restart, from a local cache file").
 *
 * The cache is a file store's state file and events file: read at zone
 * creation (in the master), so that a gateway restarted while Redis is
 * down still serves the last state it knew.  Owns the cache's path and its
 * loading.  May call: the file store (store_file.c) and the shared state;
 * below the redis files, knows nothing of Redis.
 */

#include "ngx_http_nb_maint_store_redis.h"


char *
ngx_http_nb_maint_cache_init(ngx_conf_t *cf, ngx_http_nb_maint_store_t *store,
    ngx_str_t *path)
{
    if (ngx_conf_full_name(cf->cycle, path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_nb_maint_store_file_init(cf, store, path);
}


void
ngx_http_nb_maint_cache_load(ngx_http_nb_maint_store_t *store,
    ngx_http_nb_maint_shm_t *sh, ngx_slab_pool_t *shpool, ngx_log_t *log)
{
    ngx_http_nb_maint_file_load(store, sh, shpool, log);
}
