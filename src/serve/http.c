/* http.c — the HTTP layer on libmicrohttpd: routing, limits, authentication, CORS, the access log, and
 * the two ways a generation reaches the client (one JSON body, or server-sent events as tokens arrive).
 *
 * MHD runs one thread per connection, so a handler may block: it waits on its request's condition
 * variable (with a short timeout, to notice a client whose socket broke) and the engine thread never
 * waits for a slow client.
 *
 * Slow clients: MHD's own timeout is an idle timeout (every byte resets it), so a client trickling a
 * byte every few seconds would hold its connection (and thread) forever. Each connection therefore has
 * an absolute read deadline — from its start, or from the previous answer on a kept-alive connection —
 * by which the whole request (headers and body) must have arrived; a watchdog thread shuts down the
 * sockets that miss it. Connections per client address are capped too, so one address cannot take every
 * connection while the deadline runs. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve.h"

#define KEEPALIVE_IDLE_S 5.0 /* a kept-alive connection's extra time before its next request starts */

/* ---- the route table: the only metric labels there are ---- */

typedef enum {
    RT_HEALTH, RT_METRICS, RT_MODELS, RT_MODEL, RT_CHAT, RT_COMPLETIONS, RT_EMBEDDINGS, RT_RESPONSES, RT_TOKENIZE, RT_DETOKENIZE, RT_OTHER
} route_id;
static const struct route {
    const char *path;  /* exact, or a prefix when it ends in '/' */
    const char *label; /* the metric label and log name */
    bool post;
} ROUTES[] = {
    [RT_HEALTH] = {"/health", "/health", false},
    [RT_METRICS] = {"/metrics", "/metrics", false},
    [RT_MODELS] = {"/v1/models", "/v1/models", false},
    [RT_MODEL] = {"/v1/models/", "/v1/models/{id}", false},
    [RT_CHAT] = {"/v1/chat/completions", "/v1/chat/completions", true},
    [RT_COMPLETIONS] = {"/v1/completions", "/v1/completions", true},
    [RT_EMBEDDINGS] = {"/v1/embeddings", "/v1/embeddings", true},
    [RT_RESPONSES] = {"/v1/responses", "/v1/responses", true},
    [RT_TOKENIZE] = {"/tokenize", "/tokenize", true},
    [RT_DETOKENIZE] = {"/detokenize", "/detokenize", true},
    [RT_OTHER] = {NULL, "other", false},
};

static route_id find_route(const char *url) {
    for (int i = 0; i < RT_OTHER; i++) {
        size_t n = strlen(ROUTES[i].path);
        bool prefix = ROUTES[i].path[n - 1] == '/';
        if (prefix ? !strncmp(url, ROUTES[i].path, n) && url[n] && !strchr(url + n, '/') : !strcmp(url, ROUTES[i].path))
            return (route_id)i;
    }
    return RT_OTHER;
}

/* ---- per connection: the read deadline ---- */

struct conn_watch {
    conn_watch *prev, *next;
    int fd;
    double deadline; /* 0: not reading a request (answering one) */
    bool cut;        /* the watchdog shut the socket down */
};

static void watch_set(kiln_server *s, struct MHD_Connection *c, double deadline) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_watch *w = ci ? ci->socket_context : NULL;
    if (!w) return;
    pthread_mutex_lock(&s->watch_mu);
    w->deadline = deadline;
    pthread_mutex_unlock(&s->watch_mu);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    kiln_server *s = cls;
    conn_watch *w = *socket_context;
    pthread_mutex_lock(&s->watch_mu);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci && (w = calloc(1, sizeof *w))) { /* without one the connection has MHD's idle timeout only */
            *w = (conn_watch){.fd = ci->connect_fd, .deadline = kiln_now() + s->o.read_timeout_s, .next = s->watches};
            if (s->watches) s->watches->prev = w;
            s->watches = w;
            *socket_context = w;
        }
    } else if (w) { /* closed: MHD closes the fd after this returns, so the watchdog never sees it reused */
        if (w->prev) w->prev->next = w->next;
        else s->watches = w->next;
        if (w->next) w->next->prev = w->prev;
        free(w);
        *socket_context = NULL;
    }
    pthread_mutex_unlock(&s->watch_mu);
}

static void *watchdog_main(void *arg) {
    kiln_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->watch_mu);
        bool stop = s->watchdog_stop;
        double now = kiln_now();
        for (conn_watch *w = s->watches; w && !stop; w = w->next)
            if (w->deadline > 0 && now > w->deadline && !w->cut) {
                shutdown(w->fd, SHUT_RDWR); /* MHD's thread sees the socket end and closes it */
                w->cut = true;
            }
        pthread_mutex_unlock(&s->watch_mu);
        if (stop) return NULL;
        usleep(100 * 1000);
    }
}

/* ---- per request ---- */

typedef struct conn_state {
    kiln_server *s;
    struct MHD_Connection *c;
    route_id rt;
    char method[16];
    char path[201];
    char client[64];
    double t_start;
    strbuf body;
    bool too_big;
    int status;          /* of the response queued */
    char err[512];       /* its error message */
    serve_req *r;        /* a generation request (a reference), for the log */
    const char *origin;  /* the CORS origin to allow in responses, NULL: none */
    atomic_int refs;     /* MHD's (until on_completed) + a stream's (until its response is freed) */
    bool answering;      /* a generation's one-body answer is queued: on_completed ends its s->active */
} conn_state;

static void log_request(conn_state *cs);

/* The last of MHD and the stream to let go writes the access log line (the status is final then). */
static void conn_release(conn_state *cs) {
    if (atomic_fetch_sub(&cs->refs, 1) != 1) return;
    metrics_request(cs->s->metrics, ROUTES[cs->rt].label, cs->status);
    log_request(cs);
    serve_req_unref(cs->r);
    strbuf_free(&cs->body);
    free(cs);
}

/* ---- responses ---- */

static enum MHD_Result respond(conn_state *cs, int status, const char *type, char *body) {
    const char *b = body ? body : "{}";
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(b), (void *)b, MHD_RESPMEM_MUST_COPY);
    free(body);
    if (!resp) return MHD_NO;
    cs->status = status;
    if (type) MHD_add_response_header(resp, "Content-Type", type);
    if (cs->origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", cs->origin);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (status == 405) MHD_add_response_header(resp, "Allow", ROUTES[cs->rt].post ? "POST, OPTIONS" : "GET, OPTIONS");
    char retry[32];
    if (status == 429 || status == 503) {
        snprintf(retry, sizeof retry, "%d", status == 429 ? (int)(sched_retry_after(cs->s->sched) + 0.999) : 5);
        MHD_add_response_header(resp, "Retry-After", retry);
    }
    if (status == 204) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        const char *h = MHD_lookup_connection_value(cs->c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", h ? h : "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    enum MHD_Result ret = MHD_queue_response(cs->c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_json(conn_state *cs, int status, char *json) {
    if (!json) return respond(cs, 500, "application/json", openai_error_json(500, "out of memory", NULL));
    return respond(cs, status, "application/json", json);
}

static enum MHD_Result send_error(conn_state *cs, int status, const char *msg, const char *param) {
    snprintf(cs->err, sizeof cs->err, "%s", msg);
    return respond(cs, status, "application/json", openai_error_json(status, msg, param));
}

/* ---- waiting for the engine ---- */

/* A client whose socket broke (reset, error). A FIN alone is not it: a client may half-close after
 * sending its request and still read the answer; a client that closed fully is noticed when its
 * stream is written (non-streaming requests run to their bounded end). */
static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR));
}

/* Waits (r->mu held) until pred changes or 50 ms pass. */
static void wait_a_little(serve_req *r) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

/* Choice i of a request (0: r itself; n / best_of add the others). */
static serve_req *choice_at(serve_req *r, int i) { return i ? r->more[i - 1] : r; }

/* Marks every choice of r cancelled (caller holds none of their locks). */
static void cancel_choices(serve_req *r) {
    for (int i = 0; i <= r->n_more; i++) {
        serve_req *c = choice_at(r, i);
        pthread_mutex_lock(&c->mu);
        c->cancelled = true;
        pthread_mutex_unlock(&c->mu);
    }
}

static void cancel(kiln_server *s, serve_req *r) {
    cancel_choices(r);
    sched_poke(s->sched);
}

/* Waits until choices 1.. are done too (choice 0 is; none of their locks held). false: the client went
 * away meanwhile (then all are cancelled). */
static bool wait_other_choices(conn_state *cs, serve_req *r) {
    for (int i = 1; i <= r->n_more; i++) {
        serve_req *c = choice_at(r, i);
        pthread_mutex_lock(&c->mu);
        while (!c->done) {
            wait_a_little(c);
            if (!c->cancelled && client_gone(cs->c)) {
                pthread_mutex_unlock(&c->mu);
                cancel(cs->s, r);
                return false;
            }
        }
        pthread_mutex_unlock(&c->mu);
    }
    return true;
}

/* The first choice that did not complete (FIN_ERROR / FIN_CANCELLED), or NULL; locks each in turn. */
static serve_req *unfinished_choice(serve_req *r) {
    for (int i = 0; i <= r->n_more; i++) {
        serve_req *c = choice_at(r, i);
        pthread_mutex_lock(&c->mu);
        bool bad = c->finish == FIN_ERROR || c->finish == FIN_CANCELLED;
        pthread_mutex_unlock(&c->mu);
        if (bad) return c;
    }
    return NULL;
}

static void request_done(kiln_server *s) {
    pthread_mutex_lock(&s->mu);
    if (--s->active == 0) pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
}

/* The message a request the engine did not complete ends with (r->mu held). */
static const char *unfinished_message(const serve_req *r, int *status) {
    *status = r->finish == FIN_ERROR ? (r->err_status ? r->err_status : 500) : 503;
    return r->finish == FIN_ERROR ? r->err_msg : "the server shut down before the answer was complete";
}

static enum MHD_Result finish_blocking(conn_state *cs, serve_req *r) {
    kiln_server *s = cs->s;
    pthread_mutex_lock(&r->mu);
    bool gone = false;
    while (!r->done) {
        wait_a_little(r);
        if (!gone && !r->cancelled && client_gone(cs->c)) {
            gone = true;
            pthread_mutex_unlock(&r->mu);
            cancel(s, r);
            pthread_mutex_lock(&r->mu);
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (!gone) gone = !wait_other_choices(cs, r);
    serve_req *bad = gone ? NULL : unfinished_choice(r);
    pthread_mutex_lock(&r->mu);
    enum MHD_Result ret;
    if (gone) {
        pthread_mutex_unlock(&r->mu);
        cs->status = 499;
        ret = MHD_NO; /* nobody to answer */
    } else if (bad) {
        int st;
        char msg[256];
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_lock(&bad->mu);
        snprintf(msg, sizeof msg, "%s", unfinished_message(bad, &st));
        pthread_mutex_unlock(&bad->mu);
        ret = send_error(cs, st, msg, NULL);
    } else {
        pthread_mutex_unlock(&r->mu);
        char *json = NULL;
        if (r->kind == REQ_EMBED) json = openai_embeddings_json(&s->mi, r);
        else {
            pthread_mutex_lock(&r->mu);
            json = openai_response_json(&s->mi, r);
            pthread_mutex_unlock(&r->mu);
        }
        ret = send_json(cs, 200, json);
    }
    cs->answering = true; /* stays in s->active until on_completed: a drain waits for the last byte */
    return ret;
}

/* ---- streaming: MHD pulls bytes from stream_read as the client can take them ---- */

typedef struct stream_state {
    conn_state *cs;
    serve_req *r;
    serve_cursor cur[SERVE_MAX_CHOICES]; /* one per choice */
    strbuf pending;
    size_t sent;
    bool ended; /* [DONE] queued */
} stream_state;

/* After the last chunk: the error event of a request that did not complete, usage, [DONE]. */
static void stream_epilogue(stream_state *st) {
    serve_req *r = st->r, *bad = unfinished_choice(r);
    if (bad) {
        int status;
        pthread_mutex_lock(&bad->mu);
        const char *msg = unfinished_message(bad, &status);
        char *e = openai_error_json(status, msg, NULL);
        snprintf(st->cs->err, sizeof st->cs->err, "%s", msg);
        pthread_mutex_unlock(&bad->mu);
        strbuf_puts(&st->pending, "data: ");
        strbuf_puts(&st->pending, e ? e : "{}");
        strbuf_puts(&st->pending, "\n\n");
        free(e);
    }
    if (r->include_usage) {
        pthread_mutex_lock(&r->mu);
        char *u = openai_usage_chunk(&st->cs->s->mi, r);
        pthread_mutex_unlock(&r->mu);
        if (u) strbuf_puts(&st->pending, u);
        free(u);
    }
    strbuf_puts(&st->pending, "data: [DONE]\n\n");
    st->ended = true;
}

/* Appends what is new in every choice (each chunk names its index). Returns the first choice still
 * running, or NULL when all are done and their last chunk is out. */
static serve_req *stream_collect(stream_state *st) {
    serve_req *r = st->r, *running = NULL;
    for (int i = 0; i <= r->n_more; i++) {
        serve_req *c = choice_at(r, i);
        pthread_mutex_lock(&c->mu);
        char *chunk = openai_stream_chunk(&st->cs->s->mi, c, &st->cur[i]);
        if (chunk) strbuf_puts(&st->pending, chunk);
        free(chunk);
        if (!running && !(c->done && st->cur[i].sent_finish)) running = c;
        pthread_mutex_unlock(&c->mu);
    }
    return running;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_state *st = cls;
    while (st->sent == st->pending.len) {
        if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        st->pending.len = st->sent = 0;
        serve_req *w = stream_collect(st);
        while (w && !st->pending.len) { /* nothing new: wait on a choice still running */
            pthread_mutex_lock(&w->mu);
            if (!w->done) wait_a_little(w);
            pthread_mutex_unlock(&w->mu);
            if (client_gone(st->cs->c)) return MHD_CONTENT_READER_END_WITH_ERROR;
            w = stream_collect(st);
        }
        if (!w) stream_epilogue(st);
    }
    size_t n = st->pending.len - st->sent;
    if (n > max) n = max;
    memcpy(buf, st->pending.p + st->sent, n);
    st->sent += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_state *st = cls;
    bool unfinished = false;
    for (int i = 0; i <= st->r->n_more; i++) {
        serve_req *c = choice_at(st->r, i);
        pthread_mutex_lock(&c->mu);
        unfinished |= !c->done;
        pthread_mutex_unlock(&c->mu);
    }
    if (unfinished || !st->ended) st->cs->status = 499;
    if (unfinished) cancel(st->cs->s, st->r); /* the client went away mid-stream: free its KV now */
    strbuf_free(&st->pending);
    request_done(st->cs->s);
    conn_release(st->cs);
    free(st);
}

static enum MHD_Result start_stream(conn_state *cs, serve_req *r) {
    stream_state *st = calloc(1, sizeof *st);
    if (!st) {
        cancel(cs->s, r);
        request_done(cs->s);
        return send_error(cs, 500, "out of memory", NULL);
    }
    st->cs = cs, st->r = r;
    atomic_fetch_add(&cs->refs, 1);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    if (cs->origin) MHD_add_response_header(resp, "Access-Control-Allow-Origin", cs->origin);
    cs->status = 200;
    enum MHD_Result ret = MHD_queue_response(cs->c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- endpoints ---- */

/* n / best_of: choices 1.. are the same request parsed again (each owns its prompt, stop strings and
 * grammar), numbered, on the seed stream seed+1, seed+2, ... and forking choice 0's prefill. 0 or an
 * HTTP status with msg. */
static int add_choices(kiln_server *s, conn_state *cs, serve_req *r, serve_kind kind, char *msg, size_t msg_size) {
    if (r->best_of <= 1) return 0;
    if (!(r->more = calloc((size_t)r->best_of - 1, sizeof *r->more))) return snprintf(msg, msg_size, "out of memory"), 500;
    r->rank = r->best_of > r->n_choices;
    for (int i = 1; i < r->best_of; i++) {
        serve_req *c = serve_req_new();
        char param[64];
        int st = c ? openai_parse(&s->mi, kind, cs->body.p, cs->body.len, c, msg, msg_size, param, sizeof param) : 500;
        if (st) {
            if (!c) snprintf(msg, msg_size, "out of memory");
            serve_req_unref(c);
            return st;
        }
        c->index = i;
        c->gen.seed = r->gen.seed + (uint64_t)i;
        c->fork_from = r;
        c->rank = r->rank;
        c->created = r->created, c->timeout_s = r->timeout_s;
        memcpy(c->id, r->id, sizeof c->id);
        r->more[r->n_more++] = c;
    }
    return 0;
}

/* Where the server is in its life: what /health reports and whether new work is taken. */
typedef enum { LIFE_LOADING, LIFE_READY, LIFE_DRAINING } life_state;
static const char *const LIFE_HEALTH[] = {"{\"status\":\"loading\"}", "{\"status\":\"ok\"}", "{\"status\":\"draining\"}"};
static const char *const LIFE_REFUSAL[] = {"the model is still loading", NULL, "the server is shutting down"};

/* Read under s->mu: a request that sees LIFE_READY also sees everything the loader wrote before it.
 * Loading wins over draining: a server whose load failed shuts down with no engine to ask. */
static life_state life(kiln_server *s) {
    pthread_mutex_lock(&s->mu);
    life_state l = s->loading ? LIFE_LOADING : s->draining ? LIFE_DRAINING : LIFE_READY;
    pthread_mutex_unlock(&s->mu);
    return l;
}

static enum MHD_Result generate(conn_state *cs, serve_kind kind) {
    kiln_server *s = cs->s;
    pthread_mutex_lock(&s->mu);
    bool draining = s->draining;
    if (!draining) s->active++;
    pthread_mutex_unlock(&s->mu);
    if (draining) return send_error(cs, 503, LIFE_REFUSAL[LIFE_DRAINING], NULL);
    serve_req *r = serve_req_new();
    if (!r) {
        request_done(s);
        return send_error(cs, 500, "out of memory", NULL);
    }
    cs->r = r; /* conn_state's reference: freed after the log line */
    char msg[512], param[64];
    const char *body = cs->body.p ? cs->body.p : "";
    int st = kind == REQ_EMBED ? openai_embeddings_parse(&s->mi, body, cs->body.len, r, msg, sizeof msg, param, sizeof param)
             : cs->rt == RT_RESPONSES ? openai_responses_parse(&s->mi, body, cs->body.len, r, msg, sizeof msg, param, sizeof param)
                                      : openai_parse(&s->mi, kind, body, cs->body.len, r, msg, sizeof msg, param, sizeof param);
    if (st) {
        request_done(s);
        return send_error(cs, st, msg, param);
    }
    static atomic_ulong counter;
    snprintf(r->id, sizeof r->id, "%s-%lx%06lx", cs->rt == RT_RESPONSES ? "resp" : kind == REQ_CHAT ? "chatcmpl" : kind == REQ_EMBED ? "embd" : "cmpl", (unsigned long)time(NULL),
             atomic_fetch_add(&counter, 1) & 0xffffff);
    r->created = (long)time(NULL);
    r->timeout_s = s->o.request_timeout_s > 0 ? s->o.request_timeout_s : 600;
    if ((st = add_choices(s, cs, r, kind, msg, sizeof msg))) {
        request_done(s);
        return send_error(cs, st, msg, NULL);
    }
    serve_req *all[SERVE_MAX_INPUTS];
    all[0] = r;
    for (int i = 1; i <= r->n_more; i++) (all[i] = choice_at(r, i))->timeout_s = r->timeout_s;
    if (sched_submit_all(s->sched, all, 1 + r->n_more)) {
        request_done(s);
        return send_error(cs, 429, "too many requests are waiting: retry later", NULL);
    }
    return r->stream ? start_stream(cs, r) : finish_blocking(cs, r);
}

typedef int (*body_handler)(const serve_model_info *mi, const char *body, size_t len, char **out, char *msg,
                            size_t msg_size, char *param, size_t param_size);

static enum MHD_Result answer_body(conn_state *cs, body_handler fn) {
    char msg[512], param[64], *out = NULL;
    int st = fn(&cs->s->mi, cs->body.p ? cs->body.p : "", cs->body.len, &out, msg, sizeof msg, param, sizeof param);
    return st ? send_error(cs, st, msg, param) : send_json(cs, 200, out);
}

static enum MHD_Result model_card(conn_state *cs, const char *url) {
    const char *id = url + strlen(ROUTES[RT_MODEL].path);
    char *json = openai_model_json(&cs->s->mi, id, cs->s->started);
    if (json) return send_json(cs, 200, json);
    char m[300];
    snprintf(m, sizeof m, "The model `%.200s` does not exist.", id);
    return send_error(cs, 404, m, "model");
}

/* ---- authentication and CORS ---- */

/* Compares in time that depends on the presented key's length only, never on where it differs. */
static bool same_secret(const char *given, const char *key) {
    size_t gn = strlen(given), kn = strlen(key);
    unsigned char diff = gn != kn;
    for (size_t i = 0; i < gn; i++) diff |= (unsigned char)given[i] ^ (unsigned char)key[kn ? i % kn : 0];
    return kn && !diff;
}

static bool authorised(conn_state *cs) {
    const char *key = cs->s->o.api_key;
    if (!key || !*key) return true;
    if (cs->rt == RT_HEALTH && cs->s->o.health_public) return true;
    const char *h = MHD_lookup_connection_value(cs->c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer", 6) || (h[6] != ' ' && h[6] != '\t')) return false; /* RFC 7235: any case */
    h += 6;
    while (*h == ' ' || *h == '\t') h++;
    return same_secret(h, key);
}

/* The Origin header when --allowed-origins admits it ("*" admits any, answered as "*"). */
static const char *allowed_origin(kiln_server *s, struct MHD_Connection *c) {
    const char *o = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!o) return NULL;
    for (int i = 0; i < s->n_origins; i++) {
        if (!strcmp(s->origins[i], "*")) return "*";
        if (!strcmp(s->origins[i], o)) return o;
    }
    return NULL;
}

/* ---- routing ---- */

static enum MHD_Result route(conn_state *cs, const char *url) {
    kiln_server *s = cs->s;
    if (cs->rt == RT_OTHER) {
        char m[300];
        snprintf(m, sizeof m, "no route for %s %s", cs->method, cs->path);
        return send_error(cs, 404, m, NULL);
    }
    if (!strcmp(cs->method, "OPTIONS")) { /* CORS preflight: browsers send it without credentials */
        if (MHD_lookup_connection_value(cs->c, MHD_HEADER_KIND, "Origin") && !cs->origin)
            return send_error(cs, 403, "this origin is not allowed (kiln serve --allowed-origins)", NULL);
        return respond(cs, 204, NULL, strdup(""));
    }
    if (!authorised(cs)) return send_error(cs, 401, "invalid or missing API key", NULL);
    if (strcmp(cs->method, ROUTES[cs->rt].post ? "POST" : "GET")) {
        char m[96];
        snprintf(m, sizeof m, "use %s %s", ROUTES[cs->rt].post ? "POST" : "GET", ROUTES[cs->rt].label);
        return send_error(cs, 405, m, NULL);
    }
    life_state l = life(s);
    char why[512];
    bool broken = l != LIFE_LOADING && sched_broken(s->sched, why, sizeof why); /* no engine while loading */
    switch (cs->rt) {
    case RT_HEALTH:
        if (broken) return send_error(cs, 503, why, NULL);
        return send_json(cs, l == LIFE_READY ? 200 : 503, strdup(LIFE_HEALTH[l]));
    case RT_METRICS: return respond(cs, 200, "text/plain; version=0.0.4", metrics_render(s->metrics));
    default: break;
    }
    if (l != LIFE_READY) return send_error(cs, 503, LIFE_REFUSAL[l], NULL);
    if (broken && (cs->rt == RT_CHAT || cs->rt == RT_COMPLETIONS || cs->rt == RT_EMBEDDINGS || cs->rt == RT_RESPONSES)) return send_error(cs, 503, why, NULL);
    switch (cs->rt) {
    case RT_MODELS: return send_json(cs, 200, openai_models_json(&s->mi, s->started));
    case RT_MODEL: return model_card(cs, url);
    case RT_CHAT: return generate(cs, REQ_CHAT);
    case RT_COMPLETIONS: return generate(cs, REQ_COMPLETION);
    case RT_EMBEDDINGS: return generate(cs, REQ_EMBED);
    case RT_RESPONSES: return generate(cs, REQ_CHAT);
    case RT_TOKENIZE: return answer_body(cs, openai_tokenize);
    case RT_DETOKENIZE: return answer_body(cs, openai_detokenize);
    default: return send_error(cs, 404, "no route", NULL);
    }
}

/* The start of a request (headers read): its state, route and log fields. */
static conn_state *request_start(kiln_server *s, struct MHD_Connection *c, const char *url, const char *method) {
    conn_state *cs = calloc(1, sizeof *cs);
    if (!cs) return NULL;
    *cs = (conn_state){.s = s, .c = c, .rt = find_route(url), .t_start = kiln_now()};
    snprintf(cs->method, sizeof cs->method, "%s", method);
    atomic_init(&cs->refs, 1);
    size_t i = 0;
    for (; url[i] && i < sizeof cs->path - 1; i++) cs->path[i] = (unsigned char)url[i] < 0x20 || url[i] == 0x7f ? '?' : url[i];
    cs->path[i] = 0;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr_in *sa = ci ? (const struct sockaddr_in *)ci->client_addr : NULL;
    if (!sa || !inet_ntop(AF_INET, &sa->sin_addr, cs->client, sizeof cs->client)) snprintf(cs->client, sizeof cs->client, "?");
    cs->origin = allowed_origin(s, c);
    return cs;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    kiln_server *s = cls;
    size_t limit = (size_t)(s->o.max_body_kb > 0 ? s->o.max_body_kb : 1024) * 1024;
    conn_state *cs = *con_cls;
    if (!cs) { /* first call: headers only */
        if (!(cs = *con_cls = request_start(s, c, url, method))) return MHD_NO;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > limit) cs->too_big = true;
        if (!cs->too_big) return MHD_YES;
    } else if (*upload_size) { /* a piece of the body */
        if (!cs->too_big && cs->body.len + *upload_size > limit) cs->too_big = true;
        if (!cs->too_big && strbuf_put(&cs->body, upload, *upload_size)) cs->too_big = true;
        *upload_size = 0;
        return MHD_YES;
    }
    watch_set(s, c, 0); /* the request is in: no read deadline while it is answered */
    if (cs->too_big) { /* answered before the body (no "100 Continue" for a body we would refuse) */
        char m[96];
        snprintf(m, sizeof m, "request body larger than %zu KiB", limit / 1024);
        return send_error(cs, 413, m, NULL);
    }
    return route(cs, url);
}

static void log_request(conn_state *cs) {
    kiln_server *s = cs->s;
    kiln_server_request_log e = {.id = "", .method = cs->method, .path = cs->path, .client = cs->client,
                                 .status = cs->status, .ttft_ms = -1, .total_ms = (kiln_now() - cs->t_start) * 1e3,
                                 .error = cs->status >= 400 && cs->err[0] ? cs->err : NULL};
    serve_req *r = cs->r;
    if (r) {
        pthread_mutex_lock(&r->mu);
        e.id = r->id;
        e.prompt_tokens = r->n_prompt, e.completion_tokens = r->n_gen, e.cached_tokens = r->n_cached;
        if (r->n_gen > 0) e.ttft_ms = (r->t_first - cs->t_start) * 1e3;
        pthread_mutex_unlock(&r->mu);
    }
    if (s->o.log) s->o.log(s->o.log_user, &e);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    kiln_server *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && (cs->status == 0 || cs->status == 200)) cs->status = 499;
    watch_set(s, c, kiln_now() + s->o.read_timeout_s + KEEPALIVE_IDLE_S); /* for the next request */
    if (cs->answering) request_done(s); /* its answer is out (or the connection ended) */
    *con_cls = NULL;
    conn_release(cs);
}

int http_start(kiln_server *s, kiln_err *err) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->o.port)};
    const char *host = s->o.host && strcmp(s->o.host, "localhost") ? s->o.host : "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return kiln_err_set(err, "--host: '%s' is not an IPv4 address", host);
    if (!(s->o.read_timeout_s > 0)) s->o.read_timeout_s = 30;
    /* MHD's idle timeout stays above the read deadline: it also runs while an answer is written */
    unsigned idle = (unsigned)(s->o.read_timeout_s + KEEPALIVE_IDLE_S) + 120;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_POLL;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(s->o.max_connections > 0 ? s->o.max_connections : 256), MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)(s->o.max_connections_per_ip > 0 ? s->o.max_connections_per_ip : 128), MHD_OPTION_CONNECTION_TIMEOUT,
        idle, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    if (!s->daemon) return kiln_err_set(err, "cannot listen on %s:%d (address in use or not allowed?)", host, s->o.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->o.port;
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s)) {
        http_stop(s);
        return kiln_err_set(err, "cannot start the connection watchdog thread");
    }
    s->watchdog_started = true;
    return 0;
}

void http_stop(kiln_server *s) {
    if (s->watchdog_started) {
        pthread_mutex_lock(&s->watch_mu);
        s->watchdog_stop = true;
        pthread_mutex_unlock(&s->watch_mu);
        pthread_join(s->watchdog, NULL);
        s->watchdog_started = false;
    }
    if (s->daemon) MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}
