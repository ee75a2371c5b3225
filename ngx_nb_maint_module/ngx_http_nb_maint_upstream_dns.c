/*
 * nb_maint: an upstream whose nodes come from a DNS name (SPEC section
 * 10a), "nb_maint_resolve name:port max=N expect=N interval=T;".
 *
 * nginx's round-robin peer list is fixed at configuration time, so the
 * directive makes max= peer slots (down until filled).  The owner worker
 * resolves the name (health_dns.c) and writes the members into a slot
 * table in shared memory; every worker applies a new table version to its
 * own peer list and node list before it next chooses a peer, shows a
 * status or a metric.  Owns the directive, the slot peers, the per-worker
 * view of the table and the JSON of it.  Calls state.c and state_nodes.c.
 */

#include "ngx_http_nb_maint.h"


#define NB_DNS_MAX_DEFAULT      16
#define NB_DNS_INTERVAL         1000


static char *
ngx_http_nb_maint_resolve_param(ngx_conf_t *cf,
    ngx_http_nb_maint_dns_conf_t *dns, ngx_str_t *value)
{
    ngx_int_t  n;
    ngx_str_t  v;

#define nb_param(p)  (value->len > sizeof(p) - 1                              \
                      && ngx_strncmp(value->data, p, sizeof(p) - 1) == 0      \
                      && (v.data = value->data + sizeof(p) - 1,               \
                          v.len = value->len - (sizeof(p) - 1), 1))

    if (nb_param("max=")) {
        n = ngx_atoi(v.data, v.len);
        if (n < 1 || n > NB_DNS_SLOTS) {
            return "";
        }

        dns->max = n;
        return NGX_CONF_OK;
    }

    if (nb_param("expect=")) {
        n = ngx_atoi(v.data, v.len);
        if (n < 0 || n > NB_DNS_SLOTS) {
            return "";
        }

        dns->expect = n;
        return NGX_CONF_OK;
    }

    if (nb_param("interval=")) {
        dns->interval = ngx_parse_time(&v, 0);
        return (dns->interval == (ngx_msec_t) NGX_ERROR
                || dns->interval < 100) ? "" : NGX_CONF_OK;
    }

#undef nb_param

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"nb_maint_resolve\": unknown parameter \"%V\"",
                       value);
    return NGX_CONF_ERROR;
}


/* name:port, a name (an address is a server line) */

static char *
ngx_http_nb_maint_resolve_name(ngx_conf_t *cf,
    ngx_http_nb_maint_dns_conf_t *dns, ngx_str_t *value)
{
    u_char     *p;
    ngx_url_t   u;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = *value;
    u.default_port = 80;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.host.len == 0
        || u.family == AF_UNIX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_resolve\": %s in \"%V\"",
                           u.err ? u.err : "not a name:port", value);
        return NGX_CONF_ERROR;
    }

    if (u.naddrs || u.host.data[0] == '['
        || ngx_inet_addr(u.host.data, u.host.len) != INADDR_NONE)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_resolve\": \"%V\" is an address, "
                           "not a name (use \"server\" lines)", value);
        return NGX_CONF_ERROR;
    }

    if (u.host.len + sizeof(":65535") > NB_NODE_ID_LEN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"nb_maint_resolve\": name too long");
        return NGX_CONF_ERROR;
    }

    dns->host = u.host;
    dns->port = u.port;

    dns->name.data = ngx_pnalloc(cf->pool, u.host.len + sizeof(":65535"));
    if (dns->name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_sprintf(dns->name.data, "%V:%d", &u.host, (int) u.port);
    dns->name.len = p - dns->name.data;

    return NGX_CONF_OK;
}


/* max= placeholder servers: down until the owner fills their slot */

static char *
ngx_http_nb_maint_resolve_slots(ngx_conf_t *cf,
    ngx_http_nb_maint_dns_conf_t *dns, ngx_http_upstream_srv_conf_t *uscf)
{
    u_char                      *p;
    ngx_uint_t                   k;
    ngx_addr_t                  *addr;
    struct sockaddr_in          *sin;
    ngx_http_upstream_server_t  *us;

    dns->addrs = ngx_pcalloc(cf->pool, dns->max * sizeof(ngx_sockaddr_t));
    dns->names = ngx_pnalloc(cf->pool, dns->max * NB_NODE_ID_LEN);
    dns->slot_node = ngx_pcalloc(cf->pool, dns->max * sizeof(ngx_int_t));
    dns->peers = ngx_pcalloc(cf->pool,
                         dns->max * sizeof(ngx_http_upstream_rr_peer_t *));
    addr = ngx_pcalloc(cf->pool, dns->max * sizeof(ngx_addr_t));

    if (dns->addrs == NULL || dns->names == NULL || dns->slot_node == NULL
        || dns->peers == NULL || addr == NULL)
    {
        return NGX_CONF_ERROR;
    }

    for (k = 0; k < dns->max; k++) {
        sin = (struct sockaddr_in *) &dns->addrs[k];
        sin->sin_family = AF_INET;
        sin->sin_port = htons(dns->port);

        addr[k].sockaddr = (struct sockaddr *) sin;
        addr[k].socklen = sizeof(struct sockaddr_in);
        addr[k].name.data = dns->names + k * NB_NODE_ID_LEN;
        p = ngx_sprintf(addr[k].name.data, "%V#%ui", &dns->name, k);
        addr[k].name.len = p - addr[k].name.data;

        us = ngx_array_push(uscf->servers);
        if (us == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(us, sizeof(ngx_http_upstream_server_t));
        us->addrs = &addr[k];
        us->naddrs = 1;
        us->weight = 1;
        us->max_fails = 1;
        us->fail_timeout = 10;

        dns->slot_node[k] = -1;
    }

    return NGX_CONF_OK;
}


/* nb_maint_resolve name:port [max=16] [expect=0] [interval=1s] */

char *
ngx_http_nb_maint_resolve(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_nb_maint_srv_conf_t *nscf = conf;

    char                          *rv;
    ngx_str_t                     *value;
    ngx_uint_t                     i;
    ngx_http_upstream_srv_conf_t  *uscf;
    ngx_http_nb_maint_dns_conf_t  *dns;

    if (nscf->dns) {
        return "is duplicate";
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->servers == NULL || uscf->servers->nelts) {
        return "cannot be combined with \"server\" lines";
    }

    dns = ngx_pcalloc(cf->pool, sizeof(ngx_http_nb_maint_dns_conf_t));
    if (dns == NULL) {
        return NGX_CONF_ERROR;
    }

    dns->max = NB_DNS_MAX_DEFAULT;
    dns->interval = NB_DNS_INTERVAL;
    dns->table = -1;

    value = cf->args->elts;

    if (ngx_http_nb_maint_resolve_name(cf, dns, &value[1]) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {
        rv = ngx_http_nb_maint_resolve_param(cf, dns, &value[i]);

        if (rv == NGX_CONF_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (rv != NGX_CONF_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"nb_maint_resolve\": invalid value \"%V\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (dns->expect > dns->max) {
        return "has expect= above max=";
    }

    if (ngx_http_nb_maint_resolve_slots(cf, dns, uscf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    nscf->dns = dns;

    return NGX_CONF_OK;
}


/* after nginx's round robin init: the slot peers, the resolver */

ngx_int_t
ngx_http_nb_maint_dns_init_upstream(ngx_conf_t *cf,
    ngx_http_nb_maint_srv_conf_t *nscf)
{
    ngx_uint_t                     k;
    ngx_http_upstream_rr_peer_t   *peer;
    ngx_http_upstream_rr_peers_t  *peers;
    ngx_http_upstream_srv_conf_t  *us;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_nb_maint_dns_conf_t  *dns;

    dns = nscf->dns;
    us = nscf->uscf;

    if (us->servers->nelts != dns->max) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"nb_maint_resolve\" in upstream \"%V\" cannot be "
                      "combined with \"server\" lines", &us->host);
        return NGX_ERROR;
    }

    if (ngx_http_nb_maint_upstream_has_zone(us)) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"nb_maint_resolve\" in upstream \"%V\" cannot be "
                      "combined with \"zone\"", &us->host);
        return NGX_ERROR;
    }

    if (nscf->check.off) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"nb_maint_resolve\" in upstream \"%V\" needs health "
                      "checks: a new address gets traffic once its checks "
                      "pass (remove \"nb_maint_check off\")", &us->host);
        return NGX_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    dns->resolver = ngx_http_nb_maint_upstream_resolver(us, clcf->resolver);
    dns->resolver_timeout = ngx_http_nb_maint_upstream_resolver_timeout(us,
                                                     clcf->resolver_timeout);

    if (dns->resolver == NULL || dns->resolver->connections.nelts == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"nb_maint_resolve\" in upstream \"%V\" needs a "
                      "\"resolver\" in the http block", &us->host);
        return NGX_ERROR;
    }

    if (dns->resolver_timeout == NGX_CONF_UNSET_MSEC) {
        dns->resolver_timeout = 30000;
    }

    peers = us->peer.data;
    k = 0;

    for (peer = peers->peer; peer && k < dns->max; peer = peer->next) {
        dns->peers[k++] = peer;
        peer->down = 1;         /* until the owner fills the slot */
    }

    if (k != dns->max || peers->next) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "nb_maint: upstream \"%V\": %ui peers for %ui slots",
                      &us->host, k, dns->max);
        return NGX_ERROR;
    }

    nscf->nnodes = 0;

    return NGX_OK;
}


ngx_http_nb_maint_dns_sh_t *
ngx_http_nb_maint_dns_table(ngx_http_nb_maint_srv_conf_t *up)
{
    if (up->dns == NULL || up->dns->table < 0) {
        return NULL;
    }

    return &ngx_http_nb_maint_shm()->dns[up->dns->table];
}


/* slot k changed hands: peer k takes the member's address, afresh */

static void
ngx_http_nb_maint_dns_peer_set(ngx_http_nb_maint_dns_conf_t *dns,
    ngx_uint_t k, ngx_http_nb_maint_slot_t *slot)
{
    ngx_http_upstream_rr_peer_t  *peer;
    ngx_http_nb_maint_node_t     *node;

    peer = dns->peers[k];
    node = &ngx_http_nb_maint_shm()->nodes[slot->node];

    ngx_memcpy(&dns->addrs[k], &slot->addr, slot->socklen);
    peer->sockaddr = (struct sockaddr *) &dns->addrs[k];
    peer->socklen = slot->socklen;

    peer->name.data = dns->names + k * NB_NODE_ID_LEN;
    peer->name.len = ngx_min(node->id_len, NB_NODE_ID_LEN);
    ngx_memcpy(peer->name.data, node->id, peer->name.len);

    peer->fails = 0;
    peer->accessed = 0;
    peer->checked = 0;
    peer->current_weight = 0;
    peer->effective_weight = peer->weight;

    dns->slot_node[k] = slot->node;
}


/*
 * This worker's view of the table: peer k follows slot k, the node list
 * (status, WebSockets, restore) holds the members in slot order.  A table
 * being written, or one that changed while copied, is applied next time.
 */

void
ngx_http_nb_maint_dns_apply(ngx_http_nb_maint_srv_conf_t *up)
{
    ngx_uint_t                     k, n, max;
    ngx_atomic_uint_t              seq;
    ngx_http_nb_maint_slot_t       slots[NB_DNS_SLOTS], *s;
    ngx_http_nb_maint_dns_sh_t    *t;
    ngx_http_nb_maint_dns_conf_t  *dns;

    dns = up->dns;
    t = ngx_http_nb_maint_dns_table(up);

    if (t == NULL) {
        return;
    }

    seq = t->seq;

    if (seq == dns->seen || (seq & 1)) {
        return;
    }

    max = dns->max;

    ngx_memory_barrier();
    ngx_memcpy(slots, t->slot, max * sizeof(ngx_http_nb_maint_slot_t));
    ngx_memory_barrier();

    if (t->seq != seq) {
        return;
    }

    n = 0;

    for (k = 0; k < max; k++) {
        s = &slots[k];

        if (s->state == NB_SLOT_EMPTY || s->node < 0
            || (ngx_uint_t) s->node >= NB_MAX_NODES)
        {
            dns->peers[k]->down = 1;
            dns->slot_node[k] = -1;
            continue;
        }

        if (dns->slot_node[k] != s->node
            || dns->peers[k]->socklen != s->socklen
            || ngx_memcmp(&dns->addrs[k], &s->addr, s->socklen) != 0)
        {
            ngx_http_nb_maint_dns_peer_set(dns, k, s);
        }

        /* a member that left DNS gets no new request */
        dns->peers[k]->down = (s->state == NB_SLOT_LEAVING);

        up->nodes[n] = s->node;
        up->down[n] = (s->state == NB_SLOT_LEAVING);
        n++;
    }

    up->nnodes = n;
    dns->seen = seq;
}


void
ngx_http_nb_maint_dns_apply_all(ngx_http_nb_maint_main_conf_t *nmcf)
{
    ngx_uint_t                      i;
    ngx_http_nb_maint_srv_conf_t  **up;

    up = nmcf->upstreams.elts;

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        if (up[i]->dns) {
            ngx_http_nb_maint_dns_apply(up[i]);
        }
    }
}


/* the table's slots still name the entries they had (a reload between) */

static void
ngx_http_nb_maint_dns_verify(ngx_http_nb_maint_shm_t *sh,
    ngx_http_nb_maint_dns_sh_t *t, ngx_uint_t mark)
{
    u_char                     id[NB_NODE_ID_LEN];
    size_t                     len;
    ngx_uint_t                 k;
    ngx_http_nb_maint_node_t  *node;
    ngx_http_nb_maint_slot_t  *s;

    t->seq++;
    ngx_memory_barrier();

    for (k = 0; k < NB_DNS_SLOTS; k++) {
        s = &t->slot[k];

        if (s->state == NB_SLOT_EMPTY) {
            continue;
        }

        len = ngx_sock_ntop((struct sockaddr *) &s->addr, s->socklen, id,
                            NB_NODE_ID_LEN, 1);
        node = (s->node >= 0 && (ngx_uint_t) s->node < sh->nnodes)
               ? &sh->nodes[s->node] : NULL;

        if (node == NULL || node->id_len != len
            || ngx_memcmp(node->id, id, len) != 0)
        {
            s->state = NB_SLOT_EMPTY;
            s->node = -1;
            continue;
        }

        if (node->gen_last < mark) {
            node->gen_last = mark;
        }
    }

    ngx_memory_barrier();
    t->seq++;
}


/*
 * Master, at zone init: every nb_maint_resolve upstream gets its table,
 * the one of its name from before a reload (members kept), else a free
 * one, else one that no upstream of this configuration names.
 */

ngx_int_t
ngx_http_nb_maint_dns_claim(ngx_http_nb_maint_main_conf_t *nmcf,
    ngx_http_nb_maint_shm_t *sh, ngx_uint_t mark, ngx_log_t *log)
{
    ngx_str_t                      *host;
    ngx_uint_t                      i, k, j, named;
    ngx_int_t                       free;
    ngx_http_nb_maint_dns_sh_t     *t;
    ngx_http_nb_maint_srv_conf_t  **up;

    up = nmcf->upstreams.elts;

    ngx_http_nb_maint_nodes_lock(sh);

    for (i = 0; i < nmcf->upstreams.nelts; i++) {
        if (up[i]->dns == NULL) {
            continue;
        }

        host = &up[i]->uscf->host;
        free = -1;

        for (k = 0; k < NB_DNS_UPSTREAMS; k++) {
            t = &sh->dns[k];

            if (t->name_len == host->len
                && ngx_memcmp(t->name, host->data, host->len) == 0)
            {
                break;
            }

            named = 0;

            for (j = 0; j < nmcf->upstreams.nelts; j++) {
                if (up[j]->dns && t->name_len == up[j]->uscf->host.len
                    && ngx_memcmp(t->name, up[j]->uscf->host.data,
                                  t->name_len) == 0)
                {
                    named = 1;
                }
            }

            if (free < 0 && (t->name_len == 0 || !named)) {
                free = k;
            }
        }

        if (k == NB_DNS_UPSTREAMS) {
            if (free < 0 || host->len >= NB_NODE_ID_LEN) {
                ngx_http_nb_maint_nodes_unlock(sh);
                ngx_log_error(NGX_LOG_EMERG, log, 0,
                              "nb_maint: more than %d upstreams with "
                              "\"nb_maint_resolve\"", NB_DNS_UPSTREAMS);
                return NGX_ERROR;
            }

            k = free;
            t = &sh->dns[k];

            t->seq++;
            ngx_memory_barrier();
            ngx_memzero(t->slot, sizeof(t->slot));
            for (j = 0; j < NB_DNS_SLOTS; j++) {
                t->slot[j].node = -1;
            }
            t->ok = 0;
            t->last_ok = 0;
            t->last_try = 0;
            t->naddrs = 0;
            t->error_len = 0;
            ngx_memcpy(t->name, host->data, host->len);
            t->name_len = host->len;
            ngx_memory_barrier();
            t->seq++;
        }

        ngx_http_nb_maint_dns_verify(sh, &sh->dns[k], mark);

        sh->dns[k].nslots = up[i]->dns->max;
        up[i]->dns->table = k;
        up[i]->dns->seen = 0;
    }

    ngx_http_nb_maint_nodes_unlock(sh);

    return NGX_OK;
}


/* "resolve" of an upstream in status: the name and the resolver's state */

ngx_int_t
ngx_http_nb_maint_dns_json(ngx_http_nb_maint_srv_conf_t *up, cJSON *obj)
{
    u_char                        buf[32], *p;
    cJSON                        *r;
    ngx_http_nb_maint_dns_sh_t   *t;

    t = ngx_http_nb_maint_dns_table(up);
    if (t == NULL) {
        return NGX_OK;
    }

    r = cJSON_AddObjectToObject(obj, "resolve");
    if (r == NULL) {
        return NGX_ERROR;
    }

    cJSON_AddItemToObject(r, "name",
                          ngx_http_nb_maint_json_strn(up->dns->name.data,
                                                      up->dns->name.len));
    cJSON_AddBoolToObject(r, "ok", t->ok != 0);
    cJSON_AddNumberToObject(r, "addresses", (double) t->naddrs);
    cJSON_AddNumberToObject(r, "max", (double) up->dns->max);
    cJSON_AddNumberToObject(r, "expect", (double) up->dns->expect);
    cJSON_AddNumberToObject(r, "failures", (double) t->failures);
    cJSON_AddNumberToObject(r, "changes", (double) t->changes);

    if (t->overflow) {
        cJSON_AddNumberToObject(r, "over_max", (double) t->overflow);
    }

    if (t->last_ok) {
        p = ngx_http_nb_maint_time_rfc3339(buf, t->last_ok / 1000);
        *p = '\0';
        cJSON_AddStringToObject(r, "last_ok", (char *) buf);

    } else {
        cJSON_AddNullToObject(r, "last_ok");
    }

    if (t->ok || t->error_len == 0) {
        cJSON_AddNullToObject(r, "error");

    } else {
        cJSON_AddItemToObject(r, "error",
                              ngx_http_nb_maint_json_strn(t->error,
                                                          t->error_len));
    }

    return NGX_OK;
}


/* a member's "name" (the DNS name it came from) and "leaving" */

void
ngx_http_nb_maint_dns_node_json(ngx_http_nb_maint_srv_conf_t *up,
    ngx_http_nb_maint_node_t *n, cJSON *obj)
{
    if (up->dns == NULL) {
        return;
    }

    cJSON_AddItemToObject(obj, "name",
                          ngx_http_nb_maint_json_strn(up->dns->name.data,
                                                      up->dns->name.len));
    cJSON_AddBoolToObject(obj, "leaving", n->leaving != 0);
}


/*
 * What a restore waits for in this upstream (SPEC section 10a): expected
 * members (the restore's "expect", else expect=, at least one), those in
 * an answer that came after the restore was asked, and those of them that
 * passed rise checks started after it.
 */

void
ngx_http_nb_maint_dns_restore_count(ngx_http_nb_maint_srv_conf_t *up,
    ngx_http_nb_maint_state_t *st, ngx_uint_t *expected,
    ngx_uint_t *resolved, ngx_uint_t *healthy)
{
    ngx_uint_t                   j;
    ngx_http_nb_maint_node_t    *node;
    ngx_http_nb_maint_dns_sh_t  *t;

    *expected = st->restore_expect ? st->restore_expect : up->dns->expect;
    *expected = ngx_max(*expected, 1);
    *resolved = 0;
    *healthy = 0;

    t = ngx_http_nb_maint_dns_table(up);

    if (t == NULL || st->mode != NB_MODE_RESTORING
        || t->last_ok < st->restore_started)
    {
        return;
    }

    ngx_http_nb_maint_dns_apply(up);

    for (j = 0; j < up->nnodes; j++) {
        if (up->down[j]) {
            continue;           /* leaving */
        }

        (*resolved)++;

        node = &ngx_http_nb_maint_shm()->nodes[up->nodes[j]];

        if (node->restore_mark == st->restore_started
            && node->restore_passes >= up->check.rise)
        {
            (*healthy)++;
        }
    }
}
