/* http.c — the HTTP layer on libmicrohttpd: routing, limits, authentication, and the two ways a
 * generation reaches the client (one JSON body, or server-sent events as tokens arrive).
 *
 * MHD runs one thread per connection, so a handler may block: it waits on its request's condition
 * variable (with a short timeout, to notice a client that hung up: poll() on the socket for
 * POLLRDHUP) and the engine thread never waits for a slow client. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/serve.h"

typedef struct conn_state {
    sbuf body;
    bool too_big;
} conn_state;

/* ---- responses ---- */

static enum MHD_Result send_body(struct MHD_Connection *c, int status, const char *type, char *body,
                                 const char *retry_after) {
    const char *b = body ? body : "{}";
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(b), (void *)b, MHD_RESPMEM_MUST_COPY);
    free(body);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    if (retry_after) MHD_add_response_header(resp, "Retry-After", retry_after);
    if (status == 405) MHD_add_response_header(resp, "Allow", "GET, POST");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_json(kiln_server *s, struct MHD_Connection *c, const char *ep, int status, char *json) {
    metrics_request(s->metrics, ep, status);
    return send_body(c, status, "application/json", json, NULL);
}

static enum MHD_Result send_error(kiln_server *s, struct MHD_Connection *c, const char *ep, int status,
                                  const char *msg, const char *param) {
    metrics_request(s->metrics, ep, status);
    char retry[32];
    if (status == 429) snprintf(retry, sizeof retry, "%d", (int)(sched_retry_after(s->sched) + 0.999));
    return send_body(c, status, "application/json", openai_error_json(status, msg, param),
                     status == 429 ? retry : NULL);
}

/* ---- waiting for the engine ---- */

static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Waits (r->mu held) until pred changes or 50 ms pass. */
static void wait_a_little(serve_req *r) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

static void cancel(kiln_server *s, serve_req *r) {
    pthread_mutex_lock(&r->mu);
    r->cancelled = true;
    pthread_mutex_unlock(&r->mu);
    sched_poke(s->sched);
}

static void request_done(kiln_server *s) {
    pthread_mutex_lock(&s->mu);
    if (--s->active == 0) pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result finish_blocking(kiln_server *s, struct MHD_Connection *c, const char *ep, serve_req *r) {
    pthread_mutex_lock(&r->mu);
    bool gone = false;
    while (!r->done) {
        wait_a_little(r);
        if (!gone && !r->cancelled && client_gone(c)) {
            gone = true;
            r->cancelled = true;
            pthread_mutex_unlock(&r->mu);
            sched_poke(s->sched);
            pthread_mutex_lock(&r->mu);
        }
    }
    enum MHD_Result ret;
    if (gone) {
        pthread_mutex_unlock(&r->mu);
        metrics_request(s->metrics, ep, 499);
        ret = MHD_NO; /* nobody to answer */
    } else if (r->finish == FIN_ERROR || r->finish == FIN_CANCELLED) {
        int st = r->finish == FIN_ERROR ? (r->err_status ? r->err_status : 500) : 503;
        char msg[256];
        snprintf(msg, sizeof msg, "%s", r->finish == FIN_ERROR ? r->err_msg : "the server is shutting down");
        pthread_mutex_unlock(&r->mu);
        ret = send_error(s, c, ep, st, msg, NULL);
    } else {
        char *json = openai_response_json(&s->mi, r);
        pthread_mutex_unlock(&r->mu);
        ret = send_json(s, c, ep, 200, json);
    }
    serve_req_unref(r);
    request_done(s);
    return ret;
}

/* ---- streaming: MHD pulls bytes from stream_read as the client can take them ---- */

typedef struct stream_state {
    kiln_server *s;
    serve_req *r;
    struct MHD_Connection *c;
    serve_cursor cur;
    sbuf pending;
    size_t sent;
    bool ended; /* [DONE] queued */
} stream_state;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_state *st = cls;
    serve_req *r = st->r;
    while (st->sent == st->pending.len) {
        if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        st->pending.len = st->sent = 0;
        pthread_mutex_lock(&r->mu);
        char *chunk = openai_stream_chunk(&st->s->mi, r, &st->cur);
        while (!chunk && !r->done) {
            wait_a_little(r);
            if (client_gone(st->c)) {
                pthread_mutex_unlock(&r->mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            chunk = openai_stream_chunk(&st->s->mi, r, &st->cur);
        }
        if (chunk) sbuf_puts(&st->pending, chunk);
        free(chunk);
        if (r->done && st->cur.sent_finish) {
            if (r->finish == FIN_ERROR) {
                char *e = openai_error_json(r->err_status ? r->err_status : 500, r->err_msg, NULL);
                sbuf_puts(&st->pending, "data: ");
                sbuf_puts(&st->pending, e ? e : "{}");
                sbuf_puts(&st->pending, "\n\n");
                free(e);
            }
            if (r->include_usage) {
                char *u = openai_usage_chunk(&st->s->mi, r);
                if (u) sbuf_puts(&st->pending, u);
                free(u);
            }
            sbuf_puts(&st->pending, "data: [DONE]\n\n");
            st->ended = true;
        }
        pthread_mutex_unlock(&r->mu);
    }
    size_t n = st->pending.len - st->sent;
    if (n > max) n = max;
    memcpy(buf, st->pending.p + st->sent, n);
    st->sent += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_state *st = cls;
    pthread_mutex_lock(&st->r->mu);
    bool unfinished = !st->r->done;
    pthread_mutex_unlock(&st->r->mu);
    if (unfinished) cancel(st->s, st->r); /* the client went away mid-stream: free its KV now */
    metrics_request(st->s->metrics, st->r->kind == REQ_CHAT ? "/v1/chat/completions" : "/v1/completions",
                    unfinished ? 499 : 200);
    serve_req_unref(st->r);
    sbuf_free(&st->pending);
    request_done(st->s);
    free(st);
}

static enum MHD_Result start_stream(kiln_server *s, struct MHD_Connection *c, serve_req *r) {
    stream_state *st = calloc(1, sizeof *st);
    if (!st) {
        cancel(s, r);
        serve_req_unref(r);
        request_done(s);
        return MHD_NO;
    }
    *st = (stream_state){.s = s, .r = r, .c = c};
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- generation endpoints ---- */

static enum MHD_Result generate(kiln_server *s, struct MHD_Connection *c, const char *ep, serve_kind kind,
                                const sbuf *body) {
    pthread_mutex_lock(&s->mu);
    bool draining = s->draining;
    if (!draining) s->active++;
    pthread_mutex_unlock(&s->mu);
    if (draining) return send_error(s, c, ep, 503, "the server is shutting down", NULL);
    serve_req *r = serve_req_new();
    if (!r) {
        request_done(s);
        return send_error(s, c, ep, 500, "out of memory", NULL);
    }
    char msg[512], param[64];
    int st = openai_parse(&s->mi, kind, body->p ? body->p : "", body->len, r, msg, sizeof msg, param, sizeof param);
    if (st) {
        serve_req_unref(r);
        request_done(s);
        return send_error(s, c, ep, st, msg, param);
    }
    static atomic_ulong counter;
    snprintf(r->id, sizeof r->id, "%s-%lx%06lx", kind == REQ_CHAT ? "chatcmpl" : "cmpl", (unsigned long)time(NULL),
             atomic_fetch_add(&counter, 1) & 0xffffff);
    r->created = (long)time(NULL);
    r->timeout_s = s->o.request_timeout_s > 0 ? s->o.request_timeout_s : 600;
    if (sched_submit(s->sched, r)) {
        serve_req_unref(r);
        request_done(s);
        return send_error(s, c, ep, 429, "too many requests are waiting: retry later", NULL);
    }
    return r->stream ? start_stream(s, c, r) : finish_blocking(s, c, ep, r);
}

/* ---- routing ---- */

static bool authorised(kiln_server *s, struct MHD_Connection *c) {
    if (!s->o.api_key || !*s->o.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    return h && !strncmp(h, "Bearer ", 7) && !strcmp(h + 7, s->o.api_key);
}

static enum MHD_Result route(kiln_server *s, struct MHD_Connection *c, const char *url, const char *method,
                             const sbuf *body) {
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/health")) {
        if (!get) return send_error(s, c, url, 405, "use GET /health", NULL);
        pthread_mutex_lock(&s->mu);
        bool draining = s->draining;
        pthread_mutex_unlock(&s->mu);
        return send_json(s, c, url, draining ? 503 : 200,
                         strdup(draining ? "{\"status\":\"draining\"}" : "{\"status\":\"ok\"}"));
    }
    if (!strcmp(url, "/metrics")) {
        if (!get) return send_error(s, c, url, 405, "use GET /metrics", NULL);
        metrics_request(s->metrics, url, 200);
        return send_body(c, 200, "text/plain; version=0.0.4", metrics_render(s->metrics), NULL);
    }
    static const struct {
        const char *path;
        bool post;
    } api[] = {{"/v1/models", false}, {"/v1/chat/completions", true}, {"/v1/completions", true}};
    for (size_t i = 0; i < sizeof api / sizeof *api; i++) {
        if (strcmp(url, api[i].path)) continue;
        if (!authorised(s, c)) return send_error(s, c, url, 401, "invalid or missing API key", NULL);
        if (api[i].post ? !post : !get) {
            char m[96];
            snprintf(m, sizeof m, "use %s %s", api[i].post ? "POST" : "GET", url);
            return send_error(s, c, url, 405, m, NULL);
        }
        if (i == 0) return send_json(s, c, url, 200, openai_models_json(&s->mi, s->started));
        return generate(s, c, url, i == 1 ? REQ_CHAT : REQ_COMPLETION, body);
    }
    char m[160];
    snprintf(m, sizeof m, "no route for %s %.100s", method, url);
    return send_error(s, c, "other", 404, m, NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    kiln_server *s = cls;
    size_t limit = (size_t)(s->o.max_body_kb > 0 ? s->o.max_body_kb : 1024) * 1024;
    conn_state *cs = *con_cls;
    if (!cs) { /* first call: headers only */
        if (!(cs = calloc(1, sizeof *cs))) return MHD_NO;
        *con_cls = cs;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > limit) cs->too_big = true;
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        if (!cs->too_big && cs->body.len + *upload_size > limit) cs->too_big = true;
        if (!cs->too_big && sbuf_put(&cs->body, upload, *upload_size)) cs->too_big = true;
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->too_big) {
        char m[96];
        snprintf(m, sizeof m, "request body larger than %zu KiB", limit / 1024);
        return send_error(s, c, url, 413, m, NULL);
    }
    return route(s, c, url, method, &cs->body);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn_state *cs = *con_cls;
    if (!cs) return;
    sbuf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

int http_start(kiln_server *s, kiln_err *err) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->o.port)};
    const char *host = s->o.host && strcmp(s->o.host, "localhost") ? s->o.host : "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return kiln_err_set(err, "--host: '%s' is not an IPv4 address", host);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_POLL;
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &addr,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
                                 (unsigned)(s->o.max_connections > 0 ? s->o.max_connections : 256),
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_LISTENING_ADDRESS_REUSE,
                                 (unsigned)1, MHD_OPTION_END);
    if (!s->daemon) return kiln_err_set(err, "cannot listen on %s:%d (address in use or not allowed?)", host, s->o.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->o.port;
    return 0;
}

void http_quiesce(kiln_server *s) {
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void http_stop(kiln_server *s) {
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}
