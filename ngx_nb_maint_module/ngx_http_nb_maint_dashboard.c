/*
 * nb_maint: the dashboard's server side (SPEC section 5, "GET ").
 *
 * Owns: serving the compiled-in page (static/dashboard.html) and GET
 * stream, the Server-Sent Events that keep it up to date.
 * May call: http.c (answers), admin_status.c (the status document and the
 * events), state.c.  Called by admin.c.
 */

#include "ngx_http_nb_maint_admin.h"
#include "ngx_http_nb_maint_dashboard_html.h"


/*
 * GET (the location itself): the dashboard.  It holds no state: it asks for
 * a token and reads everything through the API; without a token the same
 * page comes with 401 and WWW-Authenticate.
 */

ngx_int_t
ngx_http_nb_maint_admin_dashboard(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    ngx_str_t         page;
    ngx_uint_t        status;

    page.data = (u_char *) ngx_http_nb_maint_dashboard_html;
    page.len = sizeof(ngx_http_nb_maint_dashboard_html) - 1;

    status = NGX_HTTP_OK;

    if (ctx == NULL) {
        status = NGX_HTTP_UNAUTHORIZED;

        if (ngx_http_nb_maint_admin_challenge(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_nb_maint_admin_output(r, status,
                                          "text/html; charset=utf-8", &page);
}


/*
 * GET stream: Server-Sent Events for the dashboard (OWNERS interface 2).
 *
 * "event: status" with GET status's document on connect and whenever it
 * changes (looked at every NB_STREAM_TICK ms), "event: events" with the
 * audit events added since the last look, ": keepalive" after
 * NB_STREAM_KEEPALIVE ms of silence.  Each stream has its own timer; a
 * stream whose client is slower than send_timeout is closed, and so is
 * every stream when the worker exits (reload, quit), so that an old worker
 * never lingers for them.  At most NB_STREAM_MAX streams per worker.
 *
 * What a stream sends is one buffer at a time: nothing new is built while
 * the previous one is still on its way, so memory stays bounded however
 * long the stream lives (the buffers are malloc'ed, not from r->pool).
 */

#define NB_STREAM_TICK       500
#define NB_STREAM_KEEPALIVE  15000
#define NB_STREAM_MAX        32


typedef struct {
    ngx_http_request_t           *request;
    ngx_event_t                   tick;
    char                         *status;      /* last sent, cJSON's malloc */
    uint64_t                      events;      /* newest event version sent */
    ngx_uint_t                    ev_next;     /* the ring when last seen */
    ngx_uint_t                    ev_count;
    uint64_t                      version;
    u_char                       *out;         /* being sent (ngx_alloc) */
    size_t                        out_size;
    ngx_buf_t                     buf;
    ngx_chain_t                   chain;
    ngx_msec_t                    wrote;       /* last write */
    ngx_msec_t                    blocked;     /* output pending since, 0 */
    unsigned                      started:1;
} ngx_http_nb_maint_stream_t;


static ngx_uint_t  ngx_http_nb_maint_streams;  /* this worker's, open */


static void
ngx_http_nb_maint_stream_cleanup(void *data)
{
    ngx_http_nb_maint_stream_t *st = data;

    if (st->tick.timer_set) {
        ngx_del_timer(&st->tick);
    }

    if (st->tick.posted) {
        ngx_delete_posted_event(&st->tick);
    }

    if (st->status) {
        cJSON_free(st->status);
        st->status = NULL;
    }

    if (st->out) {
        ngx_free(st->out);
        st->out = NULL;
    }

    if (st->started) {
        st->started = 0;
        ngx_http_nb_maint_streams--;
    }
}


/* what is still on its way to the client (nginx's or HTTP/2's buffers) */

static ngx_uint_t
ngx_http_nb_maint_stream_pending(ngx_http_request_t *r)
{
    return r->out != NULL || r->connection->buffered;
}


/* "event: <name>\ndata: <json>\n\n" appended at p */

static u_char *
ngx_http_nb_maint_stream_event(u_char *p, const char *name, char *json)
{
    p = ngx_sprintf(p, "event: %s\ndata: ", name);
    p = ngx_cpymem(p, json, ngx_strlen(json));
    *p++ = '\n';
    *p++ = '\n';

    return p;
}


#define NB_STREAM_EVENT_LEN(name, json)                                       \
    (sizeof("event: " name "\ndata: \n\n") - 1 + ngx_strlen(json))


/* the new status document, or NULL when it is the one sent last */

static char *
ngx_http_nb_maint_stream_status(ngx_http_nb_maint_stream_t *st)
{
    char      *s;
    cJSON     *json;
    uint64_t   version;

    json = ngx_http_nb_maint_status_json_of(st->request, NULL, &version);
    if (json == NULL) {
        return NULL;
    }

    s = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);

    if (s == NULL) {
        return NULL;
    }

    if (st->status && ngx_strcmp(s, st->status) == 0) {
        cJSON_free(s);
        return NULL;
    }

    return s;
}


/* the events added since the last look (a JSON array), or NULL: none */

static char *
ngx_http_nb_maint_stream_events(ngx_http_nb_maint_stream_t *st)
{
    char                     *s;
    cJSON                    *list;
    uint64_t                  last, mark[3];

    /* the ring as it was at the last look: nothing to parse */

    ngx_http_nb_maint_ring_mark(mark);

    if (mark[1] == st->ev_next && mark[2] == st->ev_count
        && mark[0] == st->version)
    {
        return NULL;
    }

    st->ev_next = (ngx_uint_t) mark[1];
    st->ev_count = (ngx_uint_t) mark[2];
    st->version = mark[0];

    list = cJSON_CreateArray();

    if (list == NULL
        || ngx_http_nb_maint_events_json(list, st->events, &last) != NGX_OK
        || cJSON_GetArraySize(list) == 0)
    {
        cJSON_Delete(list);
        return NULL;
    }

    s = cJSON_PrintUnformatted(list);
    cJSON_Delete(list);

    if (s) {
        st->events = last;
    }

    return s;
}


/* a buffer of at least size bytes to build the next write in */

static ngx_int_t
ngx_http_nb_maint_stream_buffer(ngx_http_nb_maint_stream_t *st, size_t size)
{
    if (st->out_size >= size) {
        return NGX_OK;
    }

    if (st->out) {
        ngx_free(st->out);
    }

    st->out = ngx_alloc(size, st->request->connection->log);
    st->out_size = st->out ? size : 0;

    return st->out ? NGX_OK : NGX_ERROR;
}


/* send [st->out, last); NGX_OK (sent or on its way) or NGX_ERROR */

static ngx_int_t
ngx_http_nb_maint_stream_write(ngx_http_nb_maint_stream_t *st, u_char *last)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = st->request;

    ngx_memzero(&st->buf, sizeof(ngx_buf_t));
    st->buf.pos = st->out;
    st->buf.last = last;
    st->buf.memory = 1;
    st->buf.flush = 1;

    st->chain.buf = &st->buf;
    st->chain.next = NULL;

    rc = ngx_http_output_filter(r, &st->chain);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    st->wrote = ngx_current_msec;

    if (ngx_http_nb_maint_stream_pending(r)) {
        st->blocked = ngx_current_msec;

        if (ngx_handle_write_event(r->connection->write, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * One look: the status if it changed, new events, or a keepalive after a
 * silence.  NGX_OK or NGX_ERROR (the stream must close).
 */

static ngx_int_t
ngx_http_nb_maint_stream_update(ngx_http_nb_maint_stream_t *st)
{
    char       *status, *events;
    u_char     *p;
    size_t      size;
    ngx_int_t   rc;

    status = ngx_http_nb_maint_stream_status(st);
    events = ngx_http_nb_maint_stream_events(st);

    size = 0;

    if (status) {
        size += NB_STREAM_EVENT_LEN("status", status);
    }

    if (events) {
        size += NB_STREAM_EVENT_LEN("events", events);
    }

    if (size == 0) {
        if (ngx_current_msec - st->wrote < NB_STREAM_KEEPALIVE) {
            return NGX_OK;
        }

        size = sizeof(": keepalive\n\n") - 1;
    }

    if (ngx_http_nb_maint_stream_buffer(st, size) != NGX_OK) {
        rc = NGX_ERROR;
        goto done;
    }

    p = st->out;

    if (status) {
        p = ngx_http_nb_maint_stream_event(p, "status", status);
    }

    if (events) {
        p = ngx_http_nb_maint_stream_event(p, "events", events);
    }

    if (p == st->out) {
        p = ngx_cpymem(p, ": keepalive\n\n", sizeof(": keepalive\n\n") - 1);
    }

    rc = ngx_http_nb_maint_stream_write(st, p);

done:

    if (status) {
        if (st->status) {
            cJSON_free(st->status);
        }

        st->status = status;
    }

    if (events) {
        cJSON_free(events);
    }

    return rc;
}


/* the end of a stream: cleanly when its worker exits, else on an error */

static void
ngx_http_nb_maint_stream_close(ngx_http_nb_maint_stream_t *st, ngx_int_t rc)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = st->request;
    c = r->connection;

    ngx_http_nb_maint_stream_cleanup(st);

    if (rc == NGX_OK && !ngx_http_nb_maint_stream_pending(r)) {
        rc = ngx_http_send_special(r, NGX_HTTP_LAST);
    }

    ngx_http_finalize_request(r, rc == NGX_OK ? NGX_OK : NGX_ERROR);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_nb_maint_stream_tick(ngx_event_t *ev)
{
    ngx_msec_t                   timeout;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_nb_maint_stream_t  *st;

    st = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        ngx_log_error(NGX_LOG_INFO, st->request->connection->log, 0,
                      "nb_maint: event stream closed: the worker exits");
        ngx_http_nb_maint_stream_close(st, NGX_OK);
        return;
    }

    if (ngx_http_nb_maint_stream_pending(st->request)) {
        clcf = ngx_http_get_module_loc_conf(st->request,
                                            ngx_http_core_module);
        timeout = clcf->send_timeout;

        if (ngx_current_msec - st->blocked >= timeout) {
            ngx_log_error(NGX_LOG_INFO, st->request->connection->log,
                          NGX_ETIMEDOUT, "nb_maint: event stream client "
                          "timed out");
            ngx_http_nb_maint_stream_close(st, NGX_ERROR);
            return;
        }

    } else if (ngx_http_nb_maint_stream_update(st) != NGX_OK) {
        ngx_http_nb_maint_stream_close(st, NGX_ERROR);
        return;
    }

    ngx_add_timer(ev, NB_STREAM_TICK);
}


/* the client's side: only its closing is of interest */

static void
ngx_http_nb_maint_stream_read(ngx_http_request_t *r)
{
    ngx_http_test_reading(r);
}


/* the client took more: send the rest */

static void
ngx_http_nb_maint_stream_send(ngx_http_request_t *r)
{
    ngx_connection_t  *c;

    c = r->connection;

    if (ngx_http_output_filter(r, NULL) == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (ngx_http_nb_maint_stream_pending(r)
        && ngx_handle_write_event(c->write, 0) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


/* headers: 200, text/event-stream, no length, nothing cached */

static ngx_int_t
ngx_http_nb_maint_stream_header(ngx_http_request_t *r)
{
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (nb_add_header_lit(r, "Cache-Control", "no-store") == NULL
        || nb_add_header_lit(r, "X-Accel-Buffering", "no") == NULL)
    {
        return NGX_ERROR;
    }

    /* a stream ends only by a close, never for another request */
    r->keepalive = 0;

    return ngx_http_send_header(r);
}


ngx_int_t
ngx_http_nb_maint_admin_stream(ngx_http_request_t *r,
    ngx_http_nb_maint_admin_ctx_t *ctx, cJSON *body)
{
    uint64_t                     since;
    ngx_int_t                    rc, with_since;
    ngx_pool_cleanup_t          *cln;
    ngx_http_nb_maint_stream_t  *st;

    with_since = ngx_http_nb_maint_admin_since(r, &since);

    if (with_since == NGX_ERROR) {
        return ngx_http_nb_maint_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                             "bad_field", "\"since\" "
                                             "must be a version number");
    }

    if (ngx_http_nb_maint_streams >= NB_STREAM_MAX) {
        return ngx_http_nb_maint_admin_error(r,
                                        NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "too_many_streams",
                                        "this worker has %d event streams "
                                        "open already; use GET status and "
                                        "GET events", NB_STREAM_MAX);
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_nb_maint_stream_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    st = cln->data;
    ngx_memzero(st, sizeof(ngx_http_nb_maint_stream_t));
    cln->handler = ngx_http_nb_maint_stream_cleanup;

    rc = ngx_http_nb_maint_stream_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    st->request = r;
    st->started = 1;
    ngx_http_nb_maint_streams++;

    /* without "since" none of the old events: those after this version */
    st->events = (with_since == NGX_OK) ? since
                           : ngx_http_nb_maint_snapshot()->version;

    st->tick.handler = ngx_http_nb_maint_stream_tick;
    st->tick.data = st;
    st->tick.log = r->connection->log;

    r->read_event_handler = ngx_http_nb_maint_stream_read;
    r->write_event_handler = ngx_http_nb_maint_stream_send;

    st->wrote = ngx_current_msec;

    if (ngx_http_nb_maint_stream_update(st) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_add_timer(&st->tick, NB_STREAM_TICK);

    r->main->count++;

    return NGX_DONE;
}
