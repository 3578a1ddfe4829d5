/* test_serve_life.c — the server's life cycle over real HTTP, as a load balancer sees it: /health is 503
 * "loading" while the weights load (the port already answers), 200 "ok" once requests are served, 503
 * "draining" after shutdown starts, when new work is refused with 503 while an in-flight answer still
 * arrives whole. The HAProxy setup that relies on this is tested by tests/cli/replicas.sh. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "serve/serve.h"

/* tiny-qwen3: its 152K-token vocabulary makes a greedy token take about 2 ms (stories260K's are too quick
 * to keep an answer in flight while the test probes the drain). */
static char *model_dir(void) {
    static char p[512];
    const char *s = getenv("SHARED");
    snprintf(p, sizeof p, "%s/models/tiny-qwen3", s ? s : "../shared");
    return p;
}

/* A loopback port free just now (bound to 0, read back, closed). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &len)
                   ? ntohs(a.sin_port)
                   : -1;
    if (fd >= 0) close(fd);
    return port;
}

/* Sends one request (Connection: close); returns the socket to read the answer from, or -1. */
static int http_send(int port, const char *method, const char *path, const char *body) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, body ? strlen(body) : 0, body ? body : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads the answer on fd to the end and closes it: the status (-1: none) and the body into body[size]. */
static int http_read(int fd, char *body, size_t size) {
    static char buf[1 << 16];
    size_t got = 0;
    for (ssize_t r; got < sizeof buf - 1 && (r = read(fd, buf + got, sizeof buf - 1 - got)) > 0;) got += (size_t)r;
    close(fd);
    buf[got] = 0;
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) status = -1;
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, size, "%s", b ? b + 4 : "");
    return status;
}

static int http(int port, const char *method, const char *path, const char *req_body, char *body, size_t size) {
    int fd = http_send(port, method, path, req_body);
    return fd < 0 ? -1 : http_read(fd, body, size);
}

/* ---- a load held open: the weight conversion's progress callback waits for the test ---- */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool reached, open;
} gate;

static void hold_load(void *ud, size_t done, size_t total) {
    (void)done, (void)total;
    gate *g = ud;
    pthread_mutex_lock(&g->mu);
    g->reached = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

typedef struct starter {
    kiln_server_opts o;
    kiln_server *s;
    kiln_err err;
} starter;

static void *start_main(void *arg) {
    starter *st = arg;
    st->s = kiln_server_start(&st->o, &st->err);
    return NULL;
}

static void *shutdown_main(void *arg) {
    kiln_server_shutdown(arg, 60);
    return NULL;
}

/* Waits (up to 30 s) until flag, read under mu, is set. */
static bool wait_flag(pthread_mutex_t *mu, const bool *flag) {
    for (int i = 0; i < 3000; i++) {
        pthread_mutex_lock(mu);
        bool v = *flag;
        pthread_mutex_unlock(mu);
        if (v) return true;
        usleep(10 * 1000);
    }
    return false;
}

static bool wait_active(kiln_server *s) {
    for (int i = 0; i < 3000; i++) {
        pthread_mutex_lock(&s->mu);
        int a = s->active;
        pthread_mutex_unlock(&s->mu);
        if (a > 0) return true;
        usleep(10 * 1000);
    }
    return false;
}

/* about 2 s of greedy decoding in the release build (longer under ASan), well inside the drain's grace */
static const char *COMPLETION = "{\"prompt\":[1,403,407],\"max_tokens\":1000,\"ignore_eos\":true,\"temperature\":0}";

TEST(health_reports_loading_ready_draining) {
    gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.dtype = KILN_DT_F16; /* a conversion, so the progress callback runs during the load */
    mo.weight_cache = false;
    mo.quiet = false;
    mo.progress = hold_load;
    mo.cb_ud = &g;
    starter st = {.err = {{0}}};
    kiln_server_opts_default(&st.o);
    st.o.model_dir = model_dir();
    st.o.n_ctx = 2048;
    st.o.model_opts = &mo;
    st.o.threads = 1;
    st.o.port = free_port();
    REQUIRE(st.o.port > 0, "no free port");
    pthread_t t;
    REQUIRE(!pthread_create(&t, NULL, start_main, &st), "thread");
    CHECK(wait_flag(&g.mu, &g.reached), "the load never reached the weight conversion");

    static char body[1 << 16]; /* the in-flight answer holds 1000 tokens of text */
    int code = http(st.o.port, "GET", "/health", NULL, body, sizeof body);
    CHECK(code == 503 && strstr(body, "\"status\":\"loading\""), "while loading: /health %d %s", code, body);
    code = http(st.o.port, "POST", "/v1/completions", COMPLETION, body, sizeof body);
    CHECK(code == 503 && strstr(body, "loading"), "while loading: a completion %d %s", code, body);
    code = http(st.o.port, "GET", "/metrics", NULL, body, sizeof body);
    CHECK(code == 200 && strstr(body, "kiln_requests_total{endpoint=\"/health\",status=\"503\"} 1"),
          "while loading: /metrics %d", code);

    pthread_mutex_lock(&g.mu);
    g.open = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(t, NULL);
    kiln_server *s = st.s;
    REQUIRE(s, "start: %s", st.err.msg);
    code = http(st.o.port, "GET", "/health", NULL, body, sizeof body);
    CHECK(code == 200 && strstr(body, "\"status\":\"ok\""), "loaded: /health %d %s", code, body);

    /* an answer in flight when the drain starts still arrives whole; new work meanwhile is a 503 */
    int fd = http_send(st.o.port, "POST", "/v1/completions", COMPLETION);
    CHECK(fd >= 0 && wait_active(s), "the in-flight request never started");
    pthread_t d;
    REQUIRE(!pthread_create(&d, NULL, shutdown_main, s), "thread");
    CHECK(wait_flag(&s->mu, &s->draining), "never draining");
    code = http(st.o.port, "GET", "/health", NULL, body, sizeof body);
    CHECK(code == 503 && strstr(body, "\"status\":\"draining\""), "draining: /health %d %s", code, body);
    code = http(st.o.port, "POST", "/v1/completions", COMPLETION, body, sizeof body);
    CHECK(code == 503 && strstr(body, "shutting down"), "draining: a new completion %d %s", code, body);
    code = fd >= 0 ? http_read(fd, body, sizeof body) : -1;
    CHECK(code == 200 && strstr(body, "\"completion_tokens\":1000"), "the in-flight answer: %d %.300s", code, body);
    pthread_join(d, NULL);
    CHECK(http(st.o.port, "GET", "/health", NULL, body, sizeof body) == -1, "still listening after the drain");
    kiln_server_free(s);
}

int main(void) {
    RUN(health_reports_loading_ready_draining);
    return check_done();
}
