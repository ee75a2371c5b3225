/*
 * nb_maint: upstream nodes (SPEC section 3): the node table in shared
 * memory, "nb_maint;" in an upstream block, and nodes as JSON.
 *
 * Node entries are keyed by id and only ever appended, so that workers of
 * an older configuration keep valid indexes across a reload.
 */

#include "ngx_http_nb_maint.h"


/* match every configured peer to a node entry, adding new ids */

ngx_int_t
ngx_http_nb_maint_nodes_init(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_shm_t *sh, ngx_log_t *log)
{
    ngx_int_t                       idx;
    ngx_uint_t                      i, j;
    ngx_http_upstream_rr_peer_t    *peer;
    ngx_http_upstream_rr_peers_t   *peers;
    ngx_http_nb_maint_node_t       *node;
    ngx_http_nb_maint_srv_conf_t  **up;

    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        peers = up[i]->uscf->peer.data;

        for (j = 0, peer = peers->peer; peer; j++, peer = peer->next) {

            if (peer->name.len >= NB_NODE_ID_LEN) {
                ngx_log_error(NGX_LOG_EMERG, log, 0,
                              "nb_maint: server name \"%V\" is too long",
                              &peer->name);
                return NGX_ERROR;
            }

            idx = ngx_http_nb_maint_node_find(sh, peer->name.data,
                                              peer->name.len);

            if (idx == NGX_ERROR) {
                if (sh->nnodes == NB_MAX_NODES) {
                    ngx_log_error(NGX_LOG_EMERG, log, 0,
                                  "nb_maint: more than %d nodes",
                                  NB_MAX_NODES);
                    return NGX_ERROR;
                }

                idx = sh->nnodes;
                node = &sh->nodes[idx];
                ngx_memzero(node, sizeof(ngx_http_nb_maint_node_t));
                node->id_len = peer->name.len;
                ngx_memcpy(node->id, peer->name.data, peer->name.len);
                node->health = NB_HEALTH_UNKNOWN;

                ngx_memory_barrier();
                sh->nnodes++;
            }

            up[i]->nodes[j] = idx;
            up[i]->down[j] = peer->down;
        }
    }

    return NGX_OK;
}


cJSON *
ngx_http_nb_maint_upstreams_json(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_state_t *st)
{
    cJSON                          *list, *obj, *nodes, *n;
    ngx_uint_t                      i, j;
    ngx_http_nb_maint_shm_t        *sh;
    ngx_http_nb_maint_srv_conf_t  **up;

    sh = ngx_http_nb_maint_shm();

    list = cJSON_CreateArray();
    if (list == NULL) {
        return NULL;
    }

    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        obj = cJSON_CreateObject();
        cJSON_AddItemToArray(list, obj);

        cJSON_AddItemToObject(obj, "name",
                              ngx_http_nb_maint_json_strn(
                                                  up[i]->uscf->host.data,
                                                  up[i]->uscf->host.len));
        nodes = cJSON_AddArrayToObject(obj, "nodes");
        if (nodes == NULL) {
            cJSON_Delete(list);
            return NULL;
        }

        for (j = 0; j < up[i]->nnodes; j++) {
            n = ngx_http_nb_maint_node_json(&sh->nodes[up[i]->nodes[j]], st,
                                            up[i]->nodes[j]);
            if (n == NULL) {
                cJSON_Delete(list);
                return NULL;
            }

            if (up[i]->down[j]) {
                cJSON_AddBoolToObject(n, "config_down", 1);
            }

            cJSON_AddItemToArray(nodes, n);
        }
    }

    return list;
}


cJSON *
ngx_http_nb_maint_pending_json(ngx_http_nb_maint_state_t *st)
{
    return cJSON_CreateArray();
}
