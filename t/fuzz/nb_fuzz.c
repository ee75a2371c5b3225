/*
 * nb_maint fuzzing: the module's own parsers, run without a running nginx.
 *
 * This file is compiled once with every module source file included (a
 * "unity" build, so that the module's static functions are reachable
 * without changing them) and linked with the objects of an nginx built by
 * mk/asan.mk, minus nginx's main().  A few nginx functions that would need
 * a live connection are replaced at link time (-Wl,--wrap=...): they
 * capture the response instead, and check it:
 *
 *   - a response header value never holds CR, LF or NUL;
 *   - a JSON response (admin API, JSON 503) is valid JSON;
 *   - the agent answers exactly one of its four lines;
 *   - a log line never holds a control character from the network.
 *
 * Each target is one nb_fuzz_<name>() function; t/fuzz/nb_fuzz_main.c
 * turns one of them into a libFuzzer binary (mk/fuzz.mk).
 */

#include "nb_fuzz_srcs.h"         /* generated: #include of every .c */

#include <sys/mman.h>
#include <hiredis/read.h>

#include "nb_fuzz.h"


#if (NGX_THREADS)
extern ngx_module_t  ngx_thread_pool_module;
#endif

#define NB_FUZZ_ZONE_SIZE   (4 * 1024 * 1024)
#define NB_FUZZ_TOKEN       "test-token-123"
#define NB_FUZZ_ADMIN       "/_nb_maint/"


typedef struct {
    ngx_uint_t                      status;
    ngx_int_t                       finalized;
    ngx_uint_t                      json;
    ngx_uint_t                      sent;
    u_char                          body[256 * 1024];
    size_t                          body_len;
    ngx_str_t                       request_body;
} nb_fuzz_out_t;


static ngx_log_t                       nb_log;
static ngx_open_file_t                 nb_log_file;
static ngx_cycle_t                     nb_cycle;
static ngx_pool_t                     *nb_pool;
static ngx_shm_zone_t                  nb_zone;
static ngx_http_nb_maint_main_conf_t   nb_nmcf;
static ngx_http_nb_maint_loc_conf_t    nb_nlcf;
static ngx_http_core_loc_conf_t        nb_clcf;
static ngx_http_upstream_srv_conf_t    nb_uscf;
static ngx_http_nb_maint_srv_conf_t    nb_up;
static void                           *nb_main_conf[2];
static void                           *nb_srv_conf[2];
static void                           *nb_loc_conf[2];
static ngx_http_conf_ctx_t             nb_http_ctx;
static ngx_http_nb_maint_state_t       nb_base;
static ngx_http_nb_maint_store_t       nb_redis_store;
static ngx_stream_nb_maint_srv_conf_t  nb_nscf;
static void                           *nb_stream_srv_conf[1];
static nb_fuzz_out_t                   nb_out;
static ngx_http_conf_ctx_t             nb_redis_ctx;
static void                           *nb_redis_loc_conf[256];
static ngx_http_core_loc_conf_t        nb_redis_clcf;
static char                            nb_dir[] = "/tmp/nb_fuzz.XXXXXX";
static ngx_uint_t                      nb_checking_log;
static ngx_conf_file_t                 nb_conf_file;

static const char  *nb_nodes[] = {
    "127.0.0.1:13001", "127.0.0.1:13002", "[::1]:13003",
    "unix:/run/nocobase/app.sock"
};
#define NB_FUZZ_NODES  (sizeof(nb_nodes) / sizeof(nb_nodes[0]))


/* the response, as nginx would send it ------------------------------------ */

static void
nb_check_value(ngx_str_t *key, ngx_str_t *value)
{
    size_t  i;

    for (i = 0; i < value->len; i++) {
        if (value->data[i] == '\r' || value->data[i] == '\n'
            || value->data[i] == '\0')
        {
            fprintf(stderr, "nb_fuzz: response header \"%.*s\" holds a "
                    "control character: \"%.*s\"\n", (int) key->len,
                    key->data, (int) value->len, value->data);
            abort();
        }
    }
}


ngx_int_t __wrap_ngx_http_send_header(ngx_http_request_t *r);
ngx_int_t __wrap_ngx_http_output_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
void __wrap_ngx_http_finalize_request(ngx_http_request_t *r, ngx_int_t rc);
ngx_int_t __wrap_ngx_http_discard_request_body(ngx_http_request_t *r);
ngx_int_t __wrap_ngx_http_read_client_request_body(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt post_handler);


ngx_int_t
__wrap_ngx_http_send_header(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (r->header_sent) {
        fprintf(stderr, "nb_fuzz: header sent twice\n");
        abort();
    }

    r->header_sent = 1;
    nb_out.status = r->headers_out.status;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash) {
            nb_check_value(&h[i].key, &h[i].value);
        }
    }

    nb_out.json = (r->headers_out.content_type.len >= 16
                   && ngx_strncmp(r->headers_out.content_type.data,
                                  "application/json", 16) == 0);

    return NGX_OK;
}


ngx_int_t
__wrap_ngx_http_output_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t        n;
    cJSON        *json;
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            continue;
        }

        n = cl->buf->last - cl->buf->pos;

        if (nb_out.body_len + n > sizeof(nb_out.body)) {
            fprintf(stderr, "nb_fuzz: response over %d bytes\n",
                    (int) sizeof(nb_out.body));
            abort();
        }

        if (n) {
            ngx_memcpy(nb_out.body + nb_out.body_len, cl->buf->pos, n);
            nb_out.body_len += n;
        }

        if (!cl->buf->last_buf) {
            continue;
        }

        nb_out.sent = 1;

        if (nb_out.json) {
            json = cJSON_ParseWithLength((char *) nb_out.body,
                                         nb_out.body_len);
            if (json == NULL) {
                fprintf(stderr, "nb_fuzz: %d response is not JSON: %.*s\n",
                        (int) nb_out.status, (int) nb_out.body_len,
                        nb_out.body);
                abort();
            }

            cJSON_Delete(json);
        }
    }

    return NGX_OK;
}


void
__wrap_ngx_http_finalize_request(ngx_http_request_t *r, ngx_int_t rc)
{
    nb_out.finalized = rc;
}


ngx_int_t
__wrap_ngx_http_discard_request_body(ngx_http_request_t *r)
{
    r->discard_body = 1;
    return NGX_OK;
}


ngx_int_t
__wrap_ngx_http_read_client_request_body(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt post_handler)
{
    ngx_buf_t                 *b;
    ngx_chain_t               *cl;
    ngx_http_request_body_t   *rb;

    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    if (rb == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->request_body = rb;

    if (nb_out.request_body.len) {
        b = ngx_calloc_buf(r->pool);
        cl = ngx_alloc_chain_link(r->pool);
        if (b == NULL || cl == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* a copy of its own size: reading past it is an ASan report */
        b->start = ngx_pnalloc(r->pool, nb_out.request_body.len);
        if (b->start == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(b->start, nb_out.request_body.data,
                   nb_out.request_body.len);
        b->pos = b->start;
        b->last = b->start + nb_out.request_body.len;
        b->end = b->last;
        b->memory = 1;
        b->last_buf = 1;

        cl->buf = b;
        cl->next = NULL;
        rb->bufs = cl;
    }

    r->main->count++;
    post_handler(r);

    return NGX_OK;
}


/*
 * the agent's session ends here: no stream core is linked (the stream
 * module's nginx -t check of nb_maint_agent names ngx_stream_module too)
 */

ngx_module_t  ngx_stream_module;
ngx_module_t  ngx_stream_core_module;

void
ngx_stream_finalize_session(ngx_stream_session_t *s, ngx_uint_t rc)
{
    nb_out.finalized = rc;
}


/* log lines are formatted (the format is checked) but never written */

static void
nb_log_writer(ngx_log_t *log, ngx_uint_t level, u_char *buf, size_t len)
{
    size_t  i;

    if (!nb_checking_log) {
        return;
    }

    if (len && buf[len - 1] == '\n') {
        len--;                  /* nginx's own line end */
    }

    for (i = 0; i < len; i++) {
        if (buf[i] < 0x20 || buf[i] == 0x7f) {
            fprintf(stderr, "nb_fuzz: a log line holds byte 0x%02x: "
                    "%.*s\n", buf[i], (int) len, buf);
            abort();
        }
    }
}


/* one-time setup: an nginx-like process with the module's zone ---------- */

static ngx_slab_pool_t *
nb_zone_pool(void)
{
    u_char           *addr;
    ngx_slab_pool_t  *sp;

    addr = mmap(NULL, NB_FUZZ_ZONE_SIZE, PROT_READ|PROT_WRITE,
                MAP_ANON|MAP_SHARED, -1, 0);
    if (addr == MAP_FAILED) {
        abort();
    }

    sp = (ngx_slab_pool_t *) addr;
    sp->end = addr + NB_FUZZ_ZONE_SIZE;
    sp->min_shift = 3;
    sp->addr = addr;

    if (ngx_shmtx_create(&sp->mutex, &sp->lock, NULL) != NGX_OK) {
        abort();
    }

    ngx_slab_init(sp);

    return sp;
}


static void
nb_store_load(ngx_http_nb_maint_store_t *store, ngx_http_nb_maint_shm_t *sh,
    ngx_slab_pool_t *shpool, ngx_log_t *log)
{
    return;
}


static ngx_int_t
nb_store_save(ngx_http_nb_maint_store_t *store, uint64_t expected,
    ngx_http_nb_maint_state_t *st, ngx_str_t *event, ngx_log_t *log,
    ngx_http_nb_maint_store_done_pt done, void *data)
{
    if (ngx_http_nb_maint_shm()->state.version != expected) {
        return NGX_DECLINED;
    }

    ngx_http_nb_maint_state_commit(st, event);

    return NGX_OK;
}


static void
nb_setup_upstream(void)
{
    ngx_uint_t                     i;
    ngx_http_upstream_rr_peer_t   *peer, **next;
    ngx_http_upstream_rr_peers_t  *peers;
    ngx_http_nb_maint_srv_conf_t **upp;

    peers = ngx_pcalloc(nb_pool, sizeof(ngx_http_upstream_rr_peers_t));
    next = &peers->peer;

    for (i = 0; i < NB_FUZZ_NODES; i++) {
        peer = ngx_pcalloc(nb_pool, sizeof(ngx_http_upstream_rr_peer_t));
        peer->name.data = (u_char *) nb_nodes[i];
        peer->name.len = ngx_strlen(nb_nodes[i]);
        peer->weight = 1;
        peer->effective_weight = 1;
        *next = peer;
        next = &peer->next;
    }

    peers->number = NB_FUZZ_NODES;
    peers->name = &nb_uscf.host;

    ngx_str_set(&nb_uscf.host, "app");
    nb_uscf.peer.data = peers;

    nb_up.enabled = 1;
    nb_up.initialized = 1;
    nb_up.uscf = &nb_uscf;
    nb_up.check.set = 1;
    nb_up.check.rise = 2;
    nb_up.check.fall = 2;
    nb_up.check.interval = 2000;
    nb_up.check.timeout = 1000;
    nb_up.nnodes = NB_FUZZ_NODES;
    nb_up.nodes = ngx_pcalloc(nb_pool, NB_FUZZ_NODES * sizeof(ngx_uint_t));
    nb_up.down = ngx_pcalloc(nb_pool, NB_FUZZ_NODES * sizeof(ngx_uint_t));

    ngx_array_init(&nb_nmcf.upstreams, nb_pool, 1, sizeof(void *));
    upp = ngx_array_push(&nb_nmcf.upstreams);
    *upp = &nb_up;
}


static void
nb_setup_tokens(void)
{
    ngx_http_nb_maint_token_t  *t;

    nb_nlcf.tokens = ngx_array_create(nb_pool, 1,
                                      sizeof(ngx_http_nb_maint_token_t));
    t = ngx_array_push(nb_nlcf.tokens);
    ngx_str_set(&t->name, "ops");
    SHA256((u_char *) NB_FUZZ_TOKEN, sizeof(NB_FUZZ_TOKEN) - 1, t->digest);
}


static void
nb_setup_redis(void)
{
    char         *rv;
    ngx_str_t     url;
    ngx_conf_t    cf;

    ngx_memzero(&cf, sizeof(ngx_conf_t));
    cf.pool = nb_pool;
    cf.temp_pool = nb_pool;
    cf.log = &nb_log;
    cf.cycle = &nb_cycle;
    cf.conf_file = &nb_conf_file;

    /* the store takes the level's core loc conf (its "resolver") */
    nb_redis_loc_conf[ngx_http_core_module.ctx_index] = &nb_redis_clcf;
    nb_redis_ctx.loc_conf = nb_redis_loc_conf;
    cf.ctx = &nb_redis_ctx;

    url.data = ngx_pnalloc(nb_pool, 256);
    url.len = ngx_sprintf(url.data, "redis://127.0.0.1:6379/0?cache=%s/"
                          "redis_cache.json", nb_dir) - url.data;

    rv = ngx_http_nb_maint_store_redis_init(&cf, &nb_redis_store, &url);
    if (rv != NGX_CONF_OK) {
        fprintf(stderr, "nb_fuzz: redis store setup failed\n");
        abort();
    }

    ngx_http_nb_maint_redis_cmd.store = &nb_redis_store;
    ngx_http_nb_maint_redis_cmd.log = &nb_log;
    ngx_http_nb_maint_redis_cmd.name = "command";
    ngx_http_nb_maint_redis_sub.store = &nb_redis_store;
    ngx_http_nb_maint_redis_sub.log = &nb_log;
    ngx_http_nb_maint_redis_sub.name = "subscriber";
}


static void
nb_setup(void)
{
    ngx_str_t         path;
    ngx_uint_t        n;
    static ngx_uint_t done;

    if (done) {
        return;
    }

    done = 1;

    if (mkdtemp(nb_dir) == NULL) {
        abort();
    }

    ngx_pid = getpid();
    ngx_pagesize = getpagesize();
    for (n = ngx_pagesize; n >>= 1; ngx_pagesize_shift++) { /* void */ }
    ngx_cacheline_size = NGX_CPU_CACHE_LINE;
    ngx_ncpu = 1;

    ngx_time_init();
    ngx_slab_sizes_init();

    /* the timers a request may start (GET stream's), as a worker has them */
    if (ngx_event_timer_init(&nb_log) != NGX_OK) {
        abort();
    }

    if (ngx_preinit_modules() != NGX_OK) {
        abort();
    }

    ngx_str_set(&nb_conf_file.file.name, "nb_fuzz.conf");
    nb_log_file.fd = ngx_stderr;
    nb_log.file = &nb_log_file;
    nb_log.log_level = NGX_LOG_INFO;
    nb_log.writer = nb_log_writer;

    nb_pool = ngx_create_pool(16384, &nb_log);

    nb_cycle.log = &nb_log;
    nb_cycle.pool = nb_pool;
    ngx_str_set(&nb_cycle.prefix, "/tmp/");
    ngx_str_set(&nb_cycle.conf_prefix, "/tmp/");
    nb_cycle.conf_ctx = ngx_pcalloc(nb_pool, ngx_max_module * sizeof(void *));
    ngx_cycle = &nb_cycle;

    /* the core module's configuration (the file store reads "user") */
    {
        ngx_core_conf_t    *ccf;
        ngx_core_module_t  *cm = ngx_core_module.ctx;

        ccf = cm->create_conf(&nb_cycle);     /* "user" unset */
        nb_cycle.conf_ctx[ngx_core_module.index] = (void ***) ccf;
    }

#if (NGX_THREADS)
    /* the file store asks for nginx's "default" thread pool */
    {
        ngx_core_module_t  *tp = ngx_thread_pool_module.ctx;

        nb_cycle.conf_ctx[ngx_thread_pool_module.index] =
                                                  tp->create_conf(&nb_cycle);
    }
#endif

    /* the module's indices, as ngx_cycle_modules() would set them */
    ngx_http_core_module.ctx_index = 0;
    ngx_http_nb_maint_module.ctx_index = 1;
    ngx_http_nb_maint_module.index = ngx_max_module - 1;
    ngx_http_max_module = 2;
    ngx_stream_nb_maint_module.ctx_index = 0;

    nb_main_conf[1] = &nb_nmcf;
    nb_loc_conf[0] = &nb_clcf;
    nb_loc_conf[1] = &nb_nlcf;
    nb_http_ctx.main_conf = nb_main_conf;
    nb_http_ctx.srv_conf = nb_srv_conf;
    nb_http_ctx.loc_conf = nb_loc_conf;
    nb_cycle.conf_ctx[ngx_http_module.index] = (void ***) &nb_http_ctx;

    ngx_str_set(&nb_clcf.name, NB_FUZZ_ADMIN);

    nb_nlcf.gate = 1;
    nb_nlcf.admin = 1;
    ngx_str_set(&nb_nlcf.api_prefix, "/api/");
    ngx_str_set(&nb_nlcf.ws_path, "/ws");
    nb_setup_tokens();

    nb_nmcf.shm_zone = &nb_zone;
    nb_setup_upstream();

    path.data = ngx_pnalloc(nb_pool, 256);
    path.len = ngx_sprintf(path.data, "%s/state.json", nb_dir) - path.data;
    {
        ngx_conf_t  cf;

        ngx_memzero(&cf, sizeof(ngx_conf_t));
        cf.pool = nb_pool;
        cf.log = &nb_log;
        cf.cycle = &nb_cycle;
        cf.conf_file = &nb_conf_file;
    cf.conf_file = &nb_conf_file;

        if (ngx_http_nb_maint_store_file_init(&cf, &nb_nmcf.store, &path)
            != NGX_CONF_OK)
        {
            abort();
        }
    }

    nb_nmcf.store.load = nb_store_load;
    nb_nmcf.store.save = nb_store_save;

    ngx_str_set(&nb_zone.shm.name, "nb_maint");
    nb_zone.shm.addr = (u_char *) nb_zone_pool();
    nb_zone.shm.size = NB_FUZZ_ZONE_SIZE;
    nb_zone.shm.log = &nb_log;
    nb_zone.data = &nb_nmcf;

    if (ngx_http_nb_maint_init_zone(&nb_zone, NULL) != NGX_OK) {
        fprintf(stderr, "nb_fuzz: init_zone failed\n");
        abort();
    }

    /* the cycle is committed */
    if (ngx_http_nb_maint_state_init_module(&nb_cycle, &nb_nmcf) != NGX_OK) {
        abort();
    }

    nb_base = ngx_http_nb_maint_shm()->state;

    nb_setup_redis();

    ngx_str_set(&nb_nscf.upstream, "app");
    nb_stream_srv_conf[0] = &nb_nscf;
}


/* every input starts from the same state */

static void
nb_reset(void)
{
    ngx_uint_t                i;
    ngx_http_nb_maint_shm_t  *sh;

    sh = ngx_http_nb_maint_shm();

    sh->state = nb_base;
    sh->seq = nb_base.version;
    sh->store_ok = 1;

    for (i = 0; i < sh->nnodes; i++) {
        sh->nodes[i].health = NB_HEALTH_UP;
        sh->nodes[i].active = 0;
        sh->nodes[i].active_remote = 0;
        sh->node_down[i] = 0;
    }

    ngx_memzero(&nb_out, offsetof(nb_fuzz_out_t, body));
    nb_out.body_len = 0;
    nb_checking_log = 1;
}


/* a request without a connection behind it -------------------------------- */

static ngx_http_request_t *
nb_request(ngx_pool_t *pool, ngx_uint_t method, u_char *uri, size_t len)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    struct sockaddr_in  *sin;

    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    c = ngx_pcalloc(pool, sizeof(ngx_connection_t));
    sin = ngx_pcalloc(pool, sizeof(struct sockaddr_in));
    if (r == NULL || c == NULL || sin == NULL) {
        abort();
    }

    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->sockaddr = (struct sockaddr *) sin;
    c->socklen = sizeof(struct sockaddr_in);
    ngx_str_set(&c->addr_text, "127.0.0.1");
    c->log = &nb_log;
    c->pool = pool;

    r->connection = c;
    r->pool = pool;
    r->main = r;
    r->count = 1;
    r->method = method;
    r->http_version = NGX_HTTP_VERSION_11;
    r->ctx = ngx_pcalloc(pool, sizeof(void *) * ngx_http_max_module);
    r->main_conf = nb_main_conf;
    r->srv_conf = nb_srv_conf;
    r->loc_conf = nb_loc_conf;

    /* the URI in memory of its own size */
    r->uri.data = ngx_pnalloc(pool, len ? len : 1);
    ngx_memcpy(r->uri.data, uri, len);
    r->uri.len = len;
    r->unparsed_uri = r->uri;

    if (ngx_list_init(&r->headers_in.headers, pool, 4,
                      sizeof(ngx_table_elt_t)) != NGX_OK
        || ngx_list_init(&r->headers_out.headers, pool, 4,
                         sizeof(ngx_table_elt_t)) != NGX_OK)
    {
        abort();
    }

#if (nginx_version < 1023000)
    if (ngx_array_init(&r->headers_in.cookies, pool, 2,
                       sizeof(ngx_table_elt_t *)) != NGX_OK)
    {
        abort();
    }
#endif

    r->headers_in.content_length_n = -1;
    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;

    return r;
}


static void
nb_header(ngx_http_request_t *r, u_char *name, size_t nlen, u_char *value,
    size_t vlen)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_in.headers);
    if (h == NULL) {
        abort();
    }

    /* copies of their own size, NUL-terminated as nginx's parser leaves
     * them */
    h->key.data = ngx_pnalloc(r->pool, nlen + 1);
    h->value.data = ngx_pnalloc(r->pool, vlen + 1);
    h->lowcase_key = ngx_pnalloc(r->pool, nlen + 1);
    if (h->key.data == NULL || h->value.data == NULL
        || h->lowcase_key == NULL)
    {
        abort();
    }

    ngx_memcpy(h->key.data, name, nlen);
    h->key.data[nlen] = '\0';
    h->key.len = nlen;
    ngx_memcpy(h->value.data, value, vlen);
    h->value.data[vlen] = '\0';
    h->value.len = vlen;
    ngx_strlow(h->lowcase_key, h->key.data, nlen);
    h->hash = ngx_hash_key(h->lowcase_key, nlen);
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

#define nb_is(s)  (nlen == sizeof(s) - 1                                    \
                   && ngx_strncasecmp(name, (u_char *) s, nlen) == 0)

    if (nb_is("Authorization")) {
        r->headers_in.authorization = h;

    } else if (nb_is("If-Match")) {
        r->headers_in.if_match = h;

    } else if (nb_is("If-None-Match")) {
        r->headers_in.if_none_match = h;

    } else if (nb_is("Content-Type")) {
        r->headers_in.content_type = h;

    } else if (nb_is("Cookie")) {
#if (nginx_version < 1023000)
        {
            ngx_table_elt_t  **cookie;

            cookie = ngx_array_push(&r->headers_in.cookies);
            if (cookie == NULL) {
                abort();
            }

            *cookie = h;
        }
#else
        {
            ngx_table_elt_t  **ph;

            for (ph = &r->headers_in.cookie; *ph; ph = &(*ph)->next) {
                /* void */
            }

            *ph = h;
        }
#endif
    }

#undef nb_is
}


static ngx_uint_t
nb_method(u_char *m, size_t len)
{
    if (len == 3 && ngx_strncmp(m, "GET", 3) == 0) {
        return NGX_HTTP_GET;
    }

    if (len == 4 && ngx_strncmp(m, "HEAD", 4) == 0) {
        return NGX_HTTP_HEAD;
    }

    if (len == 4 && ngx_strncmp(m, "POST", 4) == 0) {
        return NGX_HTTP_POST;
    }

    if (len == 3 && ngx_strncmp(m, "PUT", 3) == 0) {
        return NGX_HTTP_PUT;
    }

    if (len == 6 && ngx_strncmp(m, "DELETE", 6) == 0) {
        return NGX_HTTP_DELETE;
    }

    return NGX_HTTP_UNKNOWN;
}


/*
 * One admin request:
 *
 *     METHOD path-below-the-location\n
 *     Header: value\n
 *     ...
 *     \n
 *     body
 *
 * Without an Authorization header the valid token is sent.
 */

static void
nb_admin_request(u_char *p, size_t len)
{
    u_char              *end, *line, *eol, *sp, *colon, *v, *uri;
    size_t               ulen;
    ngx_int_t            rc;
    ngx_uint_t           auth, method;
    ngx_pool_t          *pool;
    ngx_http_request_t  *r;

    end = p + len;

    eol = ngx_strlchr(p, end, '\n');
    if (eol == NULL) {
        eol = end;
    }

    sp = ngx_strlchr(p, eol, ' ');
    if (sp == NULL) {
        sp = p;
        method = NGX_HTTP_GET;

    } else {
        method = nb_method(p, sp - p);
        sp++;
    }

    pool = ngx_create_pool(4096, &nb_log);
    if (pool == NULL) {
        abort();
    }

    ulen = sizeof(NB_FUZZ_ADMIN) - 1 + (eol - sp);
    uri = ngx_pnalloc(pool, ulen);
    ngx_memcpy(ngx_cpymem(uri, NB_FUZZ_ADMIN, sizeof(NB_FUZZ_ADMIN) - 1),
               sp, eol - sp);

    r = nb_request(pool, method, uri, ulen);
    auth = 0;

    v = ngx_strlchr(r->uri.data, r->uri.data + r->uri.len, '?');
    if (v) {
        r->args.data = v + 1;
        r->args.len = r->uri.data + r->uri.len - (v + 1);
        r->uri.len = v - r->uri.data;
    }

    for (line = eol + 1; line < end; line = eol + 1) {
        eol = ngx_strlchr(line, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        if (eol == line) {
            line++;
            break;
        }

        colon = ngx_strlchr(line, eol, ':');
        if (colon == NULL) {
            continue;
        }

        for (v = colon + 1; v < eol && *v == ' '; v++) { /* void */ }

        nb_header(r, line, colon - line, v, eol - v);

        if (colon - line == 13
            && ngx_strncasecmp(line, (u_char *) "Authorization", 13) == 0)
        {
            auth = 1;
        }
    }

    if (!auth) {
        nb_header(r, (u_char *) "Authorization", 13,
                  (u_char *) "Bearer " NB_FUZZ_TOKEN,
                  sizeof("Bearer " NB_FUZZ_TOKEN) - 1);
    }

    nb_out.request_body.data = line;
    nb_out.request_body.len = (line < end) ? (size_t) (end - line) : 0;
    r->headers_in.content_length_n = nb_out.request_body.len;

    nb_out.status = 0;
    nb_out.sent = 0;
    nb_out.body_len = 0;
    nb_out.finalized = NGX_DECLINED;

    rc = ngx_http_nb_maint_admin_handler(r);

    if (rc == NGX_DONE) {
        rc = nb_out.finalized;
    }

    /* what the handler returns for nginx to send is fine too; a response
     * it sent itself was checked above */
    (void) rc;

    ngx_destroy_pool(pool);
}


/* requests separated by a line "%%" */

int
nb_fuzz_admin(const uint8_t *data, size_t size)
{
    u_char  *p, *end, *sep, *copy;

    nb_setup();
    nb_reset();

    copy = malloc(size ? size : 1);
    ngx_memcpy(copy, data, size);

    p = copy;
    end = copy + size;

    while (p <= end) {
        sep = ngx_strlcasestrn(p, end, (u_char *) "\n%%\n", 4 - 1);

        nb_admin_request(p, (sep ? sep : end) - p);

        if (sep == NULL) {
            break;
        }

        p = sep + 4;
    }

    free(copy);

    return 0;
}


/* a JSON body for one write route, chosen by the first byte */

int
nb_fuzz_admin_body(const uint8_t *data, size_t size)
{
    static const char  *routes[] = {
        "POST mode", "POST restore", "POST bypass",
        "POST nodes/127.0.0.1:13001/drain",
        "POST nodes/unix:/run/nocobase/app.sock/undrain"
    };

    u_char      *buf, *p;
    const char  *route;

    if (size < 1) {
        return 0;
    }

    nb_setup();
    nb_reset();

    route = routes[data[0] % (sizeof(routes) / sizeof(routes[0]))];

    buf = malloc(size + 128);
    p = ngx_cpymem(buf, route, ngx_strlen(route));
    p = ngx_cpymem(p, "\nContent-Type: application/json\n\n",
                   sizeof("\nContent-Type: application/json\n\n") - 1);
    p = ngx_cpymem(p, data + 1, size - 1);

    nb_admin_request(buf, p - buf);
    free(buf);

    return 0;
}


/* a node id from every place one comes in: paths and the "node" field */

int
nb_fuzz_node_id(const uint8_t *data, size_t size)
{
    u_char  *buf, *p;
    char    *js;
    cJSON   *s;

    nb_setup();
    nb_reset();

    buf = malloc(2 * size + 128);

    p = ngx_sprintf(buf, "GET nodes/%*s\n", size, data);
    nb_admin_request(buf, p - buf);

    nb_reset();
    p = ngx_sprintf(buf, "POST nodes/%*s/drain\n", size, data);
    nb_admin_request(buf, p - buf);

    /* the same bytes as a JSON string (escaped by cJSON) */
    js = malloc(size + 1);
    ngx_memcpy(js, data, size);
    js[size] = '\0';
    s = cJSON_CreateString(js);
    free(js);

    if (s) {
        js = cJSON_PrintUnformatted(s);
        cJSON_Delete(s);

        if (js) {
            free(buf);
            buf = malloc(ngx_strlen(js) + 128);

            nb_reset();
            p = ngx_sprintf(buf, "POST mode\nContent-Type: application/json"
                            "\n\n{\"mode\":\"maintenance\",\"node\":%s}", js);
            nb_admin_request(buf, p - buf);

            nb_reset();
            p = ngx_sprintf(buf, "POST mode\nContent-Type: application/json"
                            "\n\n{\"mode\":\"upgrade\",\"node\":%s}", js);
            nb_admin_request(buf, p - buf);

            nb_out.status = 0;
            nb_admin_request((u_char *) "GET status", 10);

            cJSON_free(js);
        }
    }

    free(buf);

    return 0;
}


/* Accept-Language and Accept: the 503 page (HTML or JSON) -----------------
 *
 *     <mode digit><Accept-Language>\n<Accept>\n<uri>
 */

int
nb_fuzz_accept(const uint8_t *data, size_t size)
{
    u_char              *p, *end, *eol, *copy;
    ngx_uint_t           mode;
    ngx_pool_t          *pool;
    ngx_http_request_t  *r;
    static const char   *names[] = { "Accept-Language", "Accept" };
    ngx_uint_t           i;

    if (size < 1) {
        return 0;
    }

    nb_setup();
    nb_reset();

    copy = malloc(size);
    ngx_memcpy(copy, data, size);

    mode = copy[0] % 5;
    p = copy + 1;
    end = copy + size;

    pool = ngx_create_pool(4096, &nb_log);

    /* the uri is the last line */
    eol = p;
    for (i = 0; i < 2 && eol; i++) {
        eol = ngx_strlchr(eol, end, '\n');
        if (eol) {
            eol++;
        }
    }

    if (eol && eol < end) {
        r = nb_request(pool, NGX_HTTP_GET, eol, end - eol);

    } else {
        r = nb_request(pool, NGX_HTTP_GET, (u_char *) "/", 1);
    }

    for (i = 0; i < 2 && p < end; i++) {
        eol = ngx_strlchr(p, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        nb_header(r, (u_char *) names[i], ngx_strlen(names[i]), p, eol - p);
        p = eol + 1;
    }

    (void) ngx_http_nb_maint_page_lang(r);
    (void) ngx_http_nb_maint_wants_json(r, &nb_nlcf);

    /* the whole page, in the mode the first byte says, with a reason that
     * needs escaping */
    {
        ngx_http_nb_maint_shm_t  *sh = ngx_http_nb_maint_shm();
        static const u_char       reason[] = "<b>\"v1.5\" & 'tests'</b>";

        sh->state.mode = (mode == 4) ? NB_MODE_UPGRADE : mode;
        sh->state.restoring_from = (mode == NB_MODE_RESTORING)
                                   ? NB_MODE_UPGRADE : NB_MODE_NONE;
        ngx_memcpy(sh->state.reason, reason, sizeof(reason) - 1);
        sh->state.reason_len = sizeof(reason) - 1;
        sh->state.version++;
        sh->seq = sh->state.version;

        (void) ngx_http_nb_maint_page_send(r, (mode == 4) ? NB_PAGE_NO_NODE
                                                          : sh->state.mode);
    }

    ngx_destroy_pool(pool);
    free(copy);

    return 0;
}


/* the bypass cookie: the Cookie header's value --------------------------- */

int
nb_fuzz_cookie(const uint8_t *data, size_t size)
{
    ngx_pool_t          *pool;
    ngx_http_request_t  *r;

    nb_setup();
    nb_reset();

    pool = ngx_create_pool(4096, &nb_log);
    r = nb_request(pool, NGX_HTTP_GET, (u_char *) "/", 1);

    nb_header(r, (u_char *) "Cookie", 6, (u_char *) data, size);

    (void) ngx_http_nb_maint_cookie_valid(r);

    ngx_destroy_pool(pool);

    return 0;
}


/* the state read back: from the state file, and from Redis --------------- */

static void
nb_check_state(ngx_http_nb_maint_state_t *st)
{
    if (st->mode > NB_MODE_RESTORING
        || (st->mode == NB_MODE_RESTORING
            && st->restoring_from != NB_MODE_MAINTENANCE
            && st->restoring_from != NB_MODE_UPGRADE)
        || st->node_len >= NB_NODE_ID_LEN
        || st->reason_len > NB_REASON_LEN
        || st->retry_after > NB_RETRY_AFTER_MAX)
    {
        fprintf(stderr, "nb_fuzz: an impossible state was accepted\n");
        abort();
    }
}


int
nb_fuzz_state(const uint8_t *data, size_t size)
{
    int                        fd;
    cJSON                     *json;
    const char                *err;
    ngx_http_nb_maint_shm_t   *sh;
    ngx_http_nb_maint_state_t  st;

    nb_setup();
    nb_reset();
    nb_checking_log = 0;     /* the loader quotes the file: not from the
                              * network */

    sh = ngx_http_nb_maint_shm();

    /* the file store's loader, on the file as it is on disk */

    fd = open((char *) nb_nmcf.store.path.data,
              O_WRONLY|O_CREAT|O_TRUNC, 0600);
    if (fd == -1 || write(fd, data, size) != (ssize_t) size) {
        abort();
    }

    close(fd);

    ngx_http_nb_maint_file_load(&nb_nmcf.store, sh,
                                (ngx_slab_pool_t *) nb_zone.shm.addr,
                                &nb_log);
    nb_check_state(&sh->state);

    /* what Redis returns for the state key, and a published change */

    nb_reset();

    if (ngx_http_nb_maint_redis_parse_state(&nb_redis_store,
                                            (const char *) data, size, &st,
                                            &nb_log)
        == NGX_OK)
    {
        nb_check_state(&st);
    }

    ngx_http_nb_maint_redis_apply_message(&nb_redis_store,
                                          (const char *) data, size,
                                          &nb_log);
    nb_check_state(&sh->state);

    /* and the parser alone, on a tree */

    json = cJSON_ParseWithLength((const char *) data, size);
    if (json) {
        if (ngx_http_nb_maint_state_parse(json, sh, &st, &err, &nb_log)
            == NGX_OK)
        {
            nb_check_state(&st);
        }

        cJSON_Delete(json);
    }

    return 0;
}


/* Redis replies: RESP bytes to hiredis' reader, the reply to a handler ---- */

static void
nb_redis_done(void *data, ngx_int_t rc)
{
    return;
}


int
nb_fuzz_redis(const uint8_t *data, size_t size)
{
    void                            *reply;
    ngx_uint_t                       which;
    redisReader                     *rd;
    ngx_http_nb_maint_redis_op_t    *op;
    ngx_http_nb_maint_redis_conn_t  *conn;

    if (size < 1) {
        return 0;
    }

    nb_setup();
    nb_reset();

    which = data[0] % 7;

    rd = redisReaderCreate();
    if (rd == NULL) {
        abort();
    }

    ngx_http_nb_maint_redis_reader_limit(rd);

    if (redisReaderFeed(rd, (const char *) data + 1, size - 1) != REDIS_OK) {
        redisReaderFree(rd);
        return 0;
    }

    conn = &ngx_http_nb_maint_redis_cmd;
    conn->ac = NULL;            /* nothing is sent: commands fail at once */
    conn->subscriber = 0;
    ngx_http_nb_maint_redis_syncing = 0;

    while (redisReaderGetReply(rd, &reply) == REDIS_OK && reply) {
        op = ngx_calloc(sizeof(ngx_http_nb_maint_redis_op_t), &nb_log);
        op->conn = conn;
        op->done = nb_redis_done;
        op->st = nb_base;
        op->st.version = nb_base.version + 1;

        switch (which) {
        case 0:
            ngx_http_nb_maint_redis_ready(op, reply);
            break;
        case 1:
            ngx_http_nb_maint_redis_synced(op, reply);
            break;
        case 2:
            ngx_http_nb_maint_redis_events(op, reply);
            break;
        case 3:
            ngx_http_nb_maint_redis_active_sums(op, reply);
            break;
        case 4:
            ngx_http_nb_maint_redis_saved(op, reply);
            break;
        case 5:
            ngx_http_nb_maint_redis_message(NULL, reply,
                                            &ngx_http_nb_maint_redis_sub);
            break;
        default:
            ngx_http_nb_maint_redis_ignore(op, reply);
            break;
        }

        nb_check_state(&ngx_http_nb_maint_shm()->state);

        ngx_free(op);
        freeReplyObject(reply);
    }

    redisReaderFree(rd);

    return 0;
}


/* the agent-check line: what HAProxy's agent-send delivers ----------------
 *
 *     <health byte><chunk sizes byte><bytes ...>
 */

typedef struct {
    const u_char   *p;
    const u_char   *end;
    size_t          chunk;
} nb_agent_in_t;

static nb_agent_in_t  nb_agent_in;
static u_char         nb_agent_answer[256];
static size_t         nb_agent_answer_len;


static ssize_t
nb_agent_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    size_t  n;

    n = nb_agent_in.end - nb_agent_in.p;
    n = ngx_min(n, size);
    n = ngx_min(n, nb_agent_in.chunk);

    ngx_memcpy(buf, nb_agent_in.p, n);
    nb_agent_in.p += n;

    return n;
}


static ssize_t
nb_agent_send(ngx_connection_t *c, u_char *buf, size_t size)
{
    if (nb_agent_answer_len + size > sizeof(nb_agent_answer)) {
        abort();
    }

    ngx_memcpy(nb_agent_answer + nb_agent_answer_len, buf, size);
    nb_agent_answer_len += size;

    return size;
}


int
nb_fuzz_agent(const uint8_t *data, size_t size)
{
    ngx_uint_t             i;
    ngx_pool_t            *pool;
    ngx_event_t           *rev;
    ngx_connection_t      *c;
    ngx_stream_session_t  *s;
    ngx_http_nb_maint_shm_t *sh;

    if (size < 2) {
        return 0;
    }

    nb_setup();
    nb_reset();

    /* the cluster as the first byte says */
    sh = ngx_http_nb_maint_shm();
    sh->state.mode = data[0] % 4;
    sh->state.restoring_from = (sh->state.mode == NB_MODE_RESTORING)
                               ? NB_MODE_MAINTENANCE : NB_MODE_NONE;
    sh->state.node_len = ngx_strlen(nb_nodes[data[0] % NB_FUZZ_NODES]);
    ngx_memcpy(sh->state.node, nb_nodes[data[0] % NB_FUZZ_NODES],
               sh->state.node_len);
    sh->state.drain[0] = data[0] >> 4;
    sh->state.version++;
    sh->seq = sh->state.version;

    for (i = 0; i < sh->nnodes; i++) {
        sh->nodes[i].health = (data[1] >> i) & 1 ? NB_HEALTH_DOWN
                                                 : NB_HEALTH_UP;
    }

    nb_agent_in.p = data + 2;
    nb_agent_in.end = data + size;
    nb_agent_in.chunk = (data[1] >> 4) + 1;
    nb_agent_answer_len = 0;

    pool = ngx_create_pool(1024, &nb_log);
    s = ngx_pcalloc(pool, sizeof(ngx_stream_session_t));
    c = ngx_pcalloc(pool, sizeof(ngx_connection_t));
    rev = ngx_pcalloc(pool, sizeof(ngx_event_t));

    c->pool = pool;
    c->log = &nb_log;
    c->recv = nb_agent_recv;
    c->send = nb_agent_send;
    c->read = rev;
    c->data = s;
    rev->data = c;
    rev->log = &nb_log;

    s->connection = c;
    s->srv_conf = nb_stream_srv_conf;
    s->ctx = ngx_pcalloc(pool, sizeof(void *));

    ngx_stream_nb_maint_handler(s);

#define nb_is(a)  (nb_agent_answer_len == sizeof(a) - 1                      \
                   && ngx_strncmp(nb_agent_answer, a, sizeof(a) - 1) == 0)

    if (!(nb_is("up ready\n") || nb_is("up drain\n") || nb_is("maint\n")
          || nb_is("down\n")))
    {
        fprintf(stderr, "nb_fuzz: agent answered \"%.*s\"\n",
                (int) nb_agent_answer_len, nb_agent_answer);
        abort();
    }

#undef nb_is

    ngx_destroy_pool(pool);

    return 0;
}


/*
 * A client's WebSocket frames (ws_frame.c), read in the pieces a socket
 * may deliver them in:
 *
 *     <piece size byte><bytes...>
 *
 * (piece size 0: everything at once).  Every control frame reported must
 * be one (ping, pong, close) with at most 125 payload bytes; nothing is
 * read past the input.  A close frame's payload is answered as the gateway
 * does (the frame builder of ws_message.c).
 */

int
nb_fuzz_ws(const uint8_t *data, size_t size)
{
    u_char                         *copy, *p, *end, *stop;
    u_char                          frame[4 + NB_WS_CTL_MAX], *f;
    size_t                          piece;
    ngx_int_t                       rc;
    ngx_http_nb_maint_ws_parser_t   ps;

    if (size < 1) {
        return 0;
    }

    piece = data[0];

    copy = malloc(size - 1 ? size - 1 : 1);
    ngx_memcpy(copy, data + 1, size - 1);

    ngx_memzero(&ps, sizeof(ngx_http_nb_maint_ws_parser_t));

    p = copy;
    end = copy + size - 1;
    rc = NGX_AGAIN;

    while (p < end) {
        stop = (piece && (size_t) (end - p) > piece) ? p + piece : end;

        do {
            rc = ngx_http_nb_maint_ws_parse(&ps, &p, stop);

            if (rc == NGX_OK) {
                if ((ps.opcode != 0x8 && ps.opcode != 0x9 && ps.opcode != 0xa)
                    || ps.pos > NB_WS_CTL_MAX)
                {
                    abort();
                }

                f = ngx_http_nb_maint_ws_frame(frame, ps.opcode == 0x9
                                                      ? 0xa : ps.opcode,
                                               ps.ctl, ps.pos);
                if ((size_t) (f - frame) > sizeof(frame)) {
                    abort();
                }
            }

        } while (rc == NGX_OK && p < stop);

        if (p > stop) {
            abort();
        }

        if (rc == NGX_ERROR) {
            break;
        }
    }

    free(copy);

    return 0;
}
