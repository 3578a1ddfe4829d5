/* gen_cli.c — the generation flags and prompt building shared by `kiln run` and `kiln chat`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen_cli.h"

void gen_cli_init(gen_cli *g) {
    memset(g, 0, sizeof *g);
    g->show_thinking = true;
    kiln_model_opts_default(&g->mopts);
    cli_weight_callbacks(&g->mopts);
    kiln_gen_params_default(&g->flags);
}

static void stop_flag(void *params, const char *flag, const char *v) {
    kiln_gen_params *f = params;
    if (!*v) cli_fail(2, "%s: empty string", flag);
    if (f->n_stop == KILN_GEN_MAX_STOP) cli_fail(2, "%s: at most %d stop strings", flag, KILN_GEN_MAX_STOP);
    f->stop[f->n_stop++] = v;
}

static void think_flag(void *think, const char *flag, const char *v) {
    if (strcmp(v, "on") && strcmp(v, "off")) cli_fail(2, "%s: want on or off, not '%s'", flag, v);
    *(const char **)think = v;
}

static void thinking_flag(void *show, const char *flag, const char *v) {
    if (strcmp(v, "show") && strcmp(v, "hide")) cli_fail(2, "%s: want show or hide, not '%s'", flag, v);
    *(bool *)show = !strcmp(v, "show");
}

int gen_cli_flags(gen_cli *g, cli_flag *rows) {
    kiln_gen_params *f = &g->flags;
    const cli_flag shared[] = {
        CLI_MODEL_FLAG(&g->model_dir),
        {"--system", NULL, "TEXT", "system prompt (through the chat template)", CLI_STR_TO(&g->system)},
        {"--max-new-tokens", "-n", "N", "tokens to generate at most (default: generation_config.json, else 256)",
         CLI_INT_TO(&f->max_new_tokens, 1, 1 << 24), .seen = &g->set.max_new},
        {"--min-new-tokens", NULL, "N", "EOS and stop strings are ignored before this many tokens",
         CLI_INT_TO(&f->min_new_tokens, 0, 1 << 24), .seen = &g->set.min_new},
        {"--do-sample", NULL, NULL, "sample (the model's generation_config.json may already say so)",
         CLI_SWITCH_TO(&g->sample_flag)},
        {"--greedy", NULL, NULL, "always take the most likely token", CLI_SWITCH_TO(&g->greedy_flag)},
        {"--temperature", NULL, "T", "sampling temperature (0: greedy)", CLI_FLOAT_TO(&f->temperature, 0, 100),
         .seen = &g->set.temperature},
        {"--top-k", NULL, "K", "keep the K most likely tokens (0: off)", CLI_INT_TO(&f->top_k, 0, 1 << 30),
         .seen = &g->set.top_k},
        {"--top-p", NULL, "P", "nucleus sampling: keep the smallest set with probability >= P (1: off)",
         CLI_FLOAT_TO(&f->top_p, 0, 1), .seen = &g->set.top_p},
        {"--min-p", NULL, "P", "drop tokens below P x the top probability (0: off)", CLI_FLOAT_TO(&f->min_p, 0, 1),
         .seen = &g->set.min_p},
        {"--repetition-penalty", NULL, "R", "CTRL-style penalty over prompt + generated tokens (1: off)",
         CLI_FLOAT_TO(&f->repetition_penalty, 1e-6, 1e6), .seen = &g->set.repetition},
        {"--presence-penalty", NULL, "P", "OpenAI's presence penalty, -2..2, over the generated tokens",
         CLI_FLOAT_TO(&f->presence_penalty, -2, 2), .seen = &g->set.presence},
        {"--frequency-penalty", NULL, "F", "OpenAI's frequency penalty, -2..2, over the generated tokens",
         CLI_FLOAT_TO(&f->frequency_penalty, -2, 2), .seen = &g->set.frequency},
        {"--seed", "-s", "S", "sampling seed (same seed, same output)", CLI_U64_TO(&f->seed, 0, (double)__LONG_MAX__),
         .seen = &g->set.seed},
        {"--stop", NULL, "STR", "stop before this string (repeatable, up to 16)", CLI_FN_TO(stop_flag, f)},
        {"--think", NULL, "on|off", "enable_thinking for templates that have it", CLI_FN_TO(think_flag, &g->think)},
        {"--thinking", NULL, "show|hide", "show the thinking part (on stderr) or hide it",
         CLI_FN_TO(thinking_flag, &g->show_thinking)},
        {"--max-input-tokens", NULL, "N", "truncate the prompt (drop the oldest turns) to N tokens",
         CLI_INT_TO(&g->max_input_tokens, 1, 1 << 24)},
        CLI_THREADS_FLAG(&g->mopts.threads, 1),
        CLI_WEIGHT_FLAGS(&g->mopts),
        CLI_KV_TYPE_FLAG(&f->kv_type),
    };
    int n = (int)(sizeof shared / sizeof shared[0]);
    _Static_assert(sizeof shared / sizeof shared[0] <= GEN_CLI_N_FLAGS, "GEN_CLI_N_FLAGS too small");
    memcpy(rows, shared, sizeof shared);
    return n;
}

void gen_cli_open(gen_cli *g) {
    kiln_err err = {0};
    if (!g->model_dir) cli_fail(2, "--model DIR is required");
    g->model_dir = cli_model_dir(g->model_dir);
    if (g->greedy_flag && g->sample_flag) cli_fail(2, "--greedy and --do-sample contradict each other");
    if (!(g->model = kiln_model_open(g->model_dir, &g->mopts, &err))) cli_fail(1, "%s", err.msg);
    if (!(g->tok = kiln_tokenizer_open(g->model_dir, &err))) cli_fail(1, "%s", err.msg);
    kiln_gen_params *p = &g->params, *f = &g->flags;
    kiln_gen_params_default(p);
    p->max_new_tokens = 256; /* a CLI default that reads as an answer; generation_config may change it */
    if (kiln_gen_params_load(p, g->model_dir, &err)) cli_fail(1, "%s", err.msg);
    const kiln_special_tokens *sp = kiln_tokenizer_specials(g->tok);
    if (sp && sp->eos_id >= 0) kiln_gen_params_add_eos(p, sp->eos_id);
    if (g->set.max_new) p->max_new_tokens = f->max_new_tokens;
    if (g->set.min_new) p->min_new_tokens = f->min_new_tokens;
    if (g->set.temperature) p->temperature = f->temperature;
    if (g->set.top_k) p->top_k = f->top_k;
    if (g->set.top_p) p->top_p = f->top_p;
    if (g->set.min_p) p->min_p = f->min_p;
    if (g->set.repetition) p->repetition_penalty = f->repetition_penalty;
    if (g->set.presence) p->presence_penalty = f->presence_penalty;
    if (g->set.frequency) p->frequency_penalty = f->frequency_penalty;
    if (g->set.seed) p->seed = f->seed;
    if (g->sample_flag) p->do_sample = true;
    if (g->greedy_flag || ((g->set.temperature) && f->temperature == 0)) p->do_sample = false;
    p->kv_type = f->kv_type; /* the flag's, or the default */
    memcpy(p->stop, f->stop, sizeof p->stop);
    p->n_stop = f->n_stop;
    if (p->min_new_tokens > p->max_new_tokens)
        cli_fail(2, "--min-new-tokens %d is above --max-new-tokens %d", p->min_new_tokens, p->max_new_tokens);
}

void gen_cli_close(gen_cli *g) {
    kiln_tokenizer_free(g->tok);
    kiln_model_free(g->model);
}

static int context_of(gen_cli *g) {
    int ctx = kiln_model_config(g->model)->max_position_embeddings;
    return ctx > 0 ? ctx : 1 << 30;
}

void gen_cli_fit(gen_cli *g, int32_t **ids, size_t *n) {
    int ctx = context_of(g), max_new = g->params.max_new_tokens;
    size_t limit = g->max_input_tokens ? (size_t)g->max_input_tokens : (size_t)-1;
    if (max_new >= ctx) cli_fail(2, "--max-new-tokens %d leaves no room in the model's context of %d", max_new, ctx);
    if (g->max_input_tokens && limit > (size_t)(ctx - max_new)) limit = (size_t)(ctx - max_new);
    if (*n > limit) {
        fprintf(stderr, "kiln: prompt truncated from the left: %zu → %zu tokens\n", *n, limit);
        memmove(*ids, *ids + (*n - limit), limit * sizeof **ids);
        *n = limit;
    }
    if (*n + (size_t)max_new > (size_t)ctx)
        cli_fail(2, "prompt (%zu tokens) + --max-new-tokens %d exceeds the model's context of %d "
                    "(use --max-input-tokens to truncate)", *n, max_new, ctx);
}

static int render_ids(gen_cli *g, json_t *messages, int32_t **ids, size_t *n, kiln_err *err) {
    json_t *vars = json_object();
    json_object_set(vars, "messages", messages);
    json_object_set_new(vars, "add_generation_prompt", json_true());
    if (g->think) json_object_set_new(vars, "enable_thinking", json_boolean(!strcmp(g->think, "on")));
    char *vj = json_dumps(vars, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(vars);
    size_t len;
    char *text = vj ? kiln_chat_render(g->tok, vj, &len, err) : NULL;
    free(vj);
    if (!text) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return kiln_err_set(err, "chat template: %s", why);
    }
    /* the rendered text carries its own special tokens: add none on top (no double BOS) */
    int rc = kiln_encode(g->tok, text, len, false, ids, n, err);
    free(text);
    return rc;
}

static const char *role_of(json_t *msgs, size_t i) {
    const char *r = json_string_value(json_object_get(json_array_get(msgs, i), "role"));
    return r ? r : "";
}

int gen_cli_messages(gen_cli *g, json_t *messages, int32_t **ids, size_t *n, kiln_err *err) {
    int ctx = context_of(g);
    size_t limit = (size_t)(ctx > g->params.max_new_tokens ? ctx - g->params.max_new_tokens : 0);
    if (g->max_input_tokens && (size_t)g->max_input_tokens < limit) limit = (size_t)g->max_input_tokens;
    json_t *msgs = json_deep_copy(messages);
    int dropped = 0, rc;
    for (;;) {
        if ((rc = render_ids(g, msgs, ids, n, err))) break;
        if (*n <= limit || !g->max_input_tokens) break;
        /* drop the oldest turn after the system prompt: a user message and the replies up to the next one */
        size_t first = !strcmp(role_of(msgs, 0), "system") ? 1 : 0, count = json_array_size(msgs), users = 0;
        for (size_t k = first; k < count; k++) users += !strcmp(role_of(msgs, k), "user");
        if (users <= 1) break; /* only the current question is left */
        do {
            json_array_remove(msgs, first);
            dropped++;
        } while (first < json_array_size(msgs) && strcmp(role_of(msgs, first), "user"));
        free(*ids);
    }
    json_decref(msgs);
    if (rc) return rc;
    if (dropped) fprintf(stderr, "kiln: dropped the %d oldest message(s) to fit %zu input tokens\n", dropped, limit);
    if (*n > limit || *n + (size_t)g->params.max_new_tokens > (size_t)ctx) {
        free(*ids);
        *ids = NULL;
        return kiln_err_set(err, "prompt (%zu tokens) + --max-new-tokens %d exceeds %s of %zu tokens%s", *n,
                            g->params.max_new_tokens, g->max_input_tokens ? "the input limit" : "the model's context",
                            g->max_input_tokens ? limit : (size_t)ctx,
                            g->max_input_tokens ? "" : " (use --max-input-tokens to drop old turns)");
    }
    return 0;
}

void gen_cli_prompt(gen_cli *g, const char *text, size_t len, const char *system, int32_t **ids, size_t *n) {
    kiln_err err = {0};
    if (g->raw || !kiln_tokenizer_chat_template(g->tok, NULL)) {
        /* as tokenizer(text): special tokens added where the post-processor says */
        if (kiln_encode(g->tok, text, len, true, ids, n, &err)) cli_fail(1, "%s", err.msg);
        if (*n == 0) cli_fail(2, "the prompt is empty");
        gen_cli_fit(g, ids, n);
        return;
    }
    json_t *msgs = json_array();
    if (system) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
    json_array_append_new(msgs, json_pack("{s:s,s:s%}", "role", "user", "content", text, len));
    int rc = gen_cli_messages(g, msgs, ids, n, &err);
    json_decref(msgs);
    if (rc) cli_fail(1, "%s", err.msg);
}

int gen_cli_stream(void *user, int index, const kiln_gen_step *st) {
    (void)index;
    gen_cli *g = user;
    if (!st->text_len) return 0;
    if (st->thinking) {
        if (!g->show_thinking) return 0;
        bool tty = isatty(STDERR_FILENO);
        fprintf(stderr, "%s%.*s%s", tty ? "\033[2m" : "", (int)st->text_len, st->text, tty ? "\033[0m" : "");
        fflush(stderr);
    } else {
        fwrite(st->text, 1, st->text_len, stdout);
        fflush(stdout);
    }
    return 0;
}

void gen_cli_print_json(const kiln_gen_output *o) {
    json_t *ids = json_array();
    for (size_t i = 0; i < o->n_ids; i++) json_array_append_new(ids, json_integer(o->ids[i]));
    json_t *st = json_pack("{s:i,s:i,s:f,s:f,s:f,s:f}", "prompt_tokens", o->stats.prompt_tokens, "gen_tokens",
                           o->stats.gen_tokens, "ttft_ms", o->stats.ttft_ms, "total_ms", o->stats.total_ms,
                           "decode_tok_s", o->stats.decode_tok_s, "peak_rss_mb", o->stats.peak_rss_mb);
    json_t *obj = json_pack("{s:s,s:s,s:o,s:s,s:o}", "text", o->text ? o->text : "", "thinking",
                            o->thinking ? o->thinking : "", "ids", ids, "finish_reason", kiln_finish_name(o->finish),
                            "stats", st);
    char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
    if (!s) cli_fail(1, "output is not valid UTF-8 JSON");
    puts(s);
    fflush(stdout);
    free(s);
    json_decref(obj);
}

void gen_cli_print_stats(const kiln_gen_output *o) {
    const kiln_gen_stats *s = &o->stats;
    char reused[48] = "";
    if (s->reused_tokens) /* a chat turn: what the KV cache already held, not prefilled again */
        snprintf(reused, sizeof reused, " (%d reused), prefilled %d tok", s->reused_tokens, s->prompt_tokens - s->reused_tokens);
    fprintf(stderr, "[prompt %d tok%s, generated %d tok (%s), ttft %.1f ms, decode %.1f tok/s, total %.1f ms, "
                    "peak RSS %.1f MB]\n", s->prompt_tokens, reused, s->gen_tokens, kiln_finish_name(o->finish), s->ttft_ms,
            s->decode_tok_s, s->total_ms, s->peak_rss_mb);
}
