/* chat.c — `kiln chat`: an interactive multi-turn REPL through the model's chat template.
 *
 *   kiln chat --model DIR [--system TEXT] [every generation flag of `kiln run`]
 *
 * The conversation is a list of messages re-rendered through the template each turn (assistant replies
 * go back as their content, without the thinking, as the Qwen3 recipe does). Its KV cache stays between
 * turns: each turn prefills only what follows the re-rendered prompt's common prefix with the ids
 * already cached (kiln_generate_in), so the time to the first token does not grow with the chat (the
 * stats line says how many prompt tokens were reused). On a terminal, libedit
 * gives line editing and history; otherwise lines are read plainly from stdin (scripts, tests) and the
 * answers still stream. Ctrl-C stops the current answer (or drops the line being typed), not the
 * program; Ctrl-D / EOF or /quit ends it. Commands: /reset, /system TEXT, /save FILE, /help, /quit. */
#include <errno.h>
#include <histedit.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include "cli.h"
#include "gen_cli.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct chat {
    gen_cli g;
    json_t *turns; /* user / assistant messages, oldest first (the system prompt is kept apart) */
    kiln_ctx *ctx; /* the conversation's KV cache: one sequence, seq */
    int seq;
    int32_t *cached; /* the ids in seq (kiln_seq_len of them) */
    char *system;
    bool tty;
    EditLine *el;
    History *hist;
} chat;

static const char HELP[] = "  /reset         forget the conversation (the system prompt stays)\n"
                           "  /system TEXT   set the system prompt (/system alone clears it)\n"
                           "  /save FILE     write the conversation as JSON {\"messages\": [...]}\n"
                           "  /help          this list\n"
                           "  /quit          leave (Ctrl-D too); Ctrl-C stops an answer\n";

/* The messages as the template sees them: the system prompt first, then the turns. */
static json_t *messages(const chat *c) {
    json_t *m = json_array();
    if (c->system) json_array_append_new(m, json_pack("{s:s,s:s}", "role", "system", "content", c->system));
    json_array_extend(m, c->turns);
    return m;
}

/* ---- /save: temp file in the same directory + rename, so FILE is whole or untouched ---- */
static int save(const chat *c, const char *path, kiln_err *err) {
    size_t len = strlen(path);
    char *tmp = malloc(len + 16);
    if (!tmp) return kiln_err_set(err, "out of memory");
    snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        kiln_err_set(err, "%s: %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    json_t *root = json_object();
    json_object_set_new(root, "messages", messages(c));
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    int rc = 0;
    FILE *f = fdopen(fd, "w");
    if (!s || !f || fputs(s, f) < 0 || fputc('\n', f) < 0 || fflush(f) || fsync(fd)) {
        rc = kiln_err_set(err, "%s: %s", path, s ? strerror(errno) : "cannot serialise");
    }
    if (f) {
        if (fclose(f) && !rc) rc = kiln_err_set(err, "%s: %s", path, strerror(errno));
    } else {
        close(fd);
    }
    if (!rc && rename(tmp, path)) rc = kiln_err_set(err, "%s: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    free(s);
    free(tmp);
    return rc;
}

/* ---- one turn ---- */
static int on_step(void *user, int index, const kiln_gen_step *st) {
    gen_cli_stream(user, index, st);
    return interrupted; /* non-zero stops the answer now */
}

/* How many leading ids of the new prompt are already in the cache. */
static size_t common_prefix(const chat *c, const int32_t *ids, size_t n) {
    size_t len = (size_t)kiln_seq_len(c->ctx, c->seq), k = 0;
    while (k < len && k < n && c->cached[k] == ids[k]) k++;
    return k;
}

/* After a turn: the cache holds the prompt, then the generated ids but the last. */
static void remember(chat *c, const int32_t *ids, size_t n, const kiln_gen_output *out) {
    size_t len = (size_t)kiln_seq_len(c->ctx, c->seq);
    int32_t *p = realloc(c->cached, (len ? len : 1) * sizeof *p);
    if (!p) cli_fail(1, "out of memory");
    c->cached = p;
    memcpy(p, ids, (len < n ? len : n) * sizeof *p);
    if (len > n) memcpy(p + n, out->ids, (len - n) * sizeof *p);
}

static void answer(chat *c, const char *text) {
    json_t *q = json_pack("{s:s,s:s}", "role", "user", "content", text);
    if (!q) {
        fprintf(stderr, "kiln chat: the line is not valid UTF-8\n");
        return;
    }
    json_array_append_new(c->turns, q);
    json_t *msgs = messages(c);
    int32_t *ids = NULL;
    size_t n = 0;
    kiln_err err = {0};
    int rc = gen_cli_messages(&c->g, msgs, &ids, &n, &err);
    json_decref(msgs);
    if (rc) { /* the question is not kept: it could not be asked */
        json_array_remove(c->turns, json_array_size(c->turns) - 1);
        fprintf(stderr, "kiln chat: %s\n", err.msg);
        return;
    }
    kiln_gen_output out;
    interrupted = 0;
    rc = kiln_generate_in(c->ctx, c->seq, common_prefix(c, ids, n), c->g.tok, &c->g.params, ids, n, on_step, &c->g,
                          &out, &err);
    if (!rc) remember(c, ids, n, &out);
    else kiln_seq_truncate(c->ctx, c->seq, 0, NULL); /* what the cache holds is not known for sure: start afresh */
    free(ids);
    if (rc) {
        json_array_remove(c->turns, json_array_size(c->turns) - 1);
        fprintf(stderr, "kiln chat: %s\n", err.msg);
        return;
    }
    fputc('\n', stdout);
    fflush(stdout);
    if (interrupted) fprintf(stderr, "[stopped]\n");
    interrupted = 0;
    gen_cli_print_stats(&out);
    /* the reply goes back as content only; an interrupted one as far as it got */
    json_array_append_new(c->turns, json_pack("{s:s,s:s}", "role", "assistant", "content", out.text ? out.text : ""));
    kiln_gen_output_free(&out);
}

/* Returns false when the REPL should end. */
static bool command(chat *c, char *line) {
    char *arg = line + strcspn(line, " \t");
    if (*arg) *arg++ = 0;
    arg += strspn(arg, " \t");
    if (!strcmp(line, "/quit") || !strcmp(line, "/exit") || !strcmp(line, "/bye")) return false;
    if (!strcmp(line, "/help")) {
        fputs(HELP, stderr);
    } else if (!strcmp(line, "/reset")) {
        json_array_clear(c->turns);
        fprintf(stderr, "(conversation cleared)\n");
    } else if (!strcmp(line, "/system")) {
        free(c->system);
        c->system = *arg ? strdup(arg) : NULL;
        fprintf(stderr, *arg ? "(system prompt set)\n" : "(system prompt cleared)\n");
    } else if (!strcmp(line, "/save")) {
        kiln_err err = {0};
        if (!*arg) fprintf(stderr, "kiln chat: /save needs a file name\n");
        else if (save(c, arg, &err)) fprintf(stderr, "kiln chat: /save %s\n", err.msg);
        else fprintf(stderr, "(saved %zu messages to %s)\n", json_array_size(c->turns) + !!c->system, arg);
    } else {
        fprintf(stderr, "kiln chat: unknown command %s (/help lists them)\n", line);
    }
    return true;
}

/* ---- input: libedit on a terminal, plain lines otherwise ---- */
static char *prompt_fn(EditLine *el) {
    (void)el;
    return ">>> ";
}

/* libedit's own reader retries a read interrupted by a signal; this one gives up when Ctrl-C was
 * pressed, so el_gets returns and the half-typed line is dropped. UTF-8 is decoded here by hand. */
static int getc_fn(EditLine *el, wchar_t *wc) {
    (void)el;
    unsigned char b[4];
    int need = 1;
    for (int got = 0; got < need;) {
        ssize_t r = read(STDIN_FILENO, &b[got], 1);
        if (r == 0) return 0;
        if (r < 0) {
            if (errno == EINTR && !interrupted) continue;
            return -1;
        }
        if (got == 0)
            need = b[0] < 0x80 ? 1 : (b[0] & 0xE0) == 0xC0 ? 2 : (b[0] & 0xF0) == 0xE0 ? 3 : (b[0] & 0xF8) == 0xF0 ? 4 : 1;
        else if ((b[got] & 0xC0) != 0x80) return -1;
        got++;
    }
    wchar_t v = need == 1 ? b[0] : need == 2 ? b[0] & 0x1F : need == 3 ? b[0] & 0x0F : b[0] & 0x07;
    for (int k = 1; k < need; k++) v = (v << 6) | (b[k] & 0x3F);
    *wc = v;
    return 1;
}

/* Next line without its newline (malloc'd), or NULL at EOF. Ctrl-C at the prompt gives "". */
static char *read_line(chat *c) {
    if (!c->tty) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, stdin)) < 0 && errno == EINTR && interrupted) {
            interrupted = 0; /* Ctrl-C while waiting for a line: not the end of the input */
            clearerr(stdin);
        }
        if (n < 0) {
            free(line);
            return NULL;
        }
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        return line;
    }
    int n = 0;
    interrupted = 0;
    const char *s = el_gets(c->el, &n);
    if (!s && interrupted) {
        interrupted = 0;
        fputs("^C\n", stdout);
        el_reset(c->el);
        return strdup("");
    }
    if (!s) return NULL;
    char *line = strdup(s);
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    if (len) {
        HistEvent ev;
        history(c->hist, &ev, H_ENTER, line);
    }
    return line;
}

int cmd_chat(int argc, char **argv) {
    chat c = {0};
    gen_cli_init(&c.g);
    cli_dist dist = CLI_DIST_DEFAULT;
    cli_flag flags[GEN_CLI_N_FLAGS + 3];
    int n_flags = gen_cli_flags(&c.g, flags);
    const cli_flag dist_flags[] = {CLI_DIST_FLAGS(&dist)};
    for (size_t i = 0; i < sizeof dist_flags / sizeof dist_flags[0]; i++) flags[n_flags++] = dist_flags[i];
    flags[n_flags] = (cli_flag){0};
    char notes[sizeof HELP + 32];
    snprintf(notes, sizeof notes, "commands:\n%s", HELP);
    const cli_spec spec = {.name = "chat", .usage = "--model DIR [flags]",
                           .about = "An interactive multi-turn chat through the model's chat template; the generation flags\n"
                           "are those of kiln run.",
                           .flags = flags, .notes = notes};
    cli_parse(argc, argv, &spec);
    cli_dist_start(&dist, &c.g.mopts); /* --tp / --pp: rank 0 reads stdin and prints, the others follow */
    cli_dist_lead(&dist);
    gen_cli_open(&c.g);
    cli_dist_follow(c.g.model);
    if (!kiln_tokenizer_chat_template(c.g.tok, NULL))
        cli_fail(1, "%s has no chat template: use kiln run --raw to continue text", c.g.model_dir);
    /* a long chat slides: the oldest turns go first (the system prompt stays) */
    if (!c.g.max_input_tokens) {
        int ctx = kiln_model_config(c.g.model)->max_position_embeddings;
        if (ctx > c.g.params.max_new_tokens) c.g.max_input_tokens = ctx - c.g.params.max_new_tokens;
    }
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.n_ctx = kiln_model_config(c.g.model)->max_position_embeddings;
    co.kv_type = c.g.params.kv_type;
    kiln_err err = {0};
    if (!(c.ctx = kiln_ctx_new(c.g.model, &co, &err)) || (c.seq = kiln_seq_new(c.ctx, &err)) < 0)
        cli_fail(1, "%s", err.msg);
    c.system = c.g.system ? strdup(c.g.system) : NULL;
    c.turns = json_array();
    c.tty = isatty(STDIN_FILENO);

    struct sigaction sa = {0};
    sa.sa_handler = on_sigint; /* no SA_RESTART: a blocked read returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    if (c.tty) {
        c.el = el_init(argv[0], stdin, stdout, stderr);
        c.hist = history_init();
        HistEvent ev;
        history(c.hist, &ev, H_SETSIZE, 1000);
        history(c.hist, &ev, H_SETUNIQUE, 1);
        el_set(c.el, EL_PROMPT, prompt_fn);
        el_set(c.el, EL_EDITOR, "emacs");
        el_set(c.el, EL_HIST, history, c.hist);
        el_set(c.el, EL_GETCFN, getc_fn);
        fprintf(stderr, "kiln chat: %s. /help for commands, Ctrl-D to leave.\n", c.g.model_dir);
    }
    for (char *line; (line = read_line(&c));) {
        bool go_on = true;
        if (line[0] == '/') go_on = command(&c, line);
        else if (line[strspn(line, " \t")]) answer(&c, line);
        free(line);
        if (!go_on) break;
    }
    if (c.tty) {
        fputc('\n', stdout);
        el_end(c.el);
        history_end(c.hist);
    }
    json_decref(c.turns);
    free(c.system);
    free(c.cached);
    kiln_ctx_free(c.ctx);
    gen_cli_close(&c.g);
    return 0;
}
