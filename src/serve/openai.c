/* openai.c — the OpenAI API's request and response shapes (jansson), nothing else: no sockets, no engine.
 *
 * Validation follows what api.openai.com and vLLM answer: a wrong type or range is a 400 naming the
 * parameter. Every top-level parameter is looked up in PARAMS below: used, ignored by design (with the
 * reason: the README cites this table), or refused with a 400 naming it (not implemented yet); a key the
 * table does not know is a 400 too, as api.openai.com answers "Unrecognized request argument". */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_get.h"
#include "serve/serve.h"

int perr_set(perr *e, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, e->msg_size, fmt, ap);
    va_end(ap);
    snprintf(e->param, e->param_size, "%s", param ? param : "");
    /* The server ran out of memory (a library call or here): 500, the request itself was fine. */
    kiln_err k;
    snprintf(k.msg, sizeof k.msg, "%s", e->msg);
    return kiln_err_is_nomem(&k) ? 500 : 400;
}

/* ---- typed getters: common/json_get.h's (absent or null leaves *out alone; a wrong type or range is
 * an error), answered as a 400 naming the parameter ---- */

static int as_400(int rc, const char *key, const kiln_err *err, perr *e) {
    return rc < 0 ? perr_set(e, key, "%s", err->msg) : 0;
}

static int get_number(json_t *o, const char *key, double lo, double hi, double *out, perr *e) {
    kiln_err err;
    return as_400(json_get_num(o, key, lo, hi, out, &err), key, &err, e);
}

static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, perr *e) {
    kiln_err err;
    return as_400(json_get_int(o, key, lo, hi, out, &err), key, &err, e);
}

static int get_bool(json_t *o, const char *key, bool *out, perr *e) {
    kiln_err err;
    return as_400(json_get_bool(o, key, out, &err), key, &err, e);
}

/* stop: a string or a list of up to 16 non-empty strings. */
static int get_stop(json_t *o, serve_req *r, perr *e) {
    json_t *v = json_object_get(o, "stop");
    if (!v || json_is_null(v)) return 0;
    size_t n = json_is_string(v) ? 1 : json_is_array(v) ? json_array_size(v) : 0;
    if (!json_is_string(v) && !json_is_array(v)) return perr_set(e, "stop", "'stop' must be a string or a list of strings");
    if (n > 16) return perr_set(e, "stop", "'stop' takes at most 16 strings, got %zu", n);
    r->stop = calloc(n ? n : 1, sizeof *r->stop);
    if (!r->stop) return perr_set(e, "stop", "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_string(v) ? v : json_array_get(v, i);
        if (!json_is_string(s)) return perr_set(e, "stop", "'stop' must be a string or a list of strings");
        if (json_string_length(s) == 0) return perr_set(e, "stop", "'stop' strings must not be empty");
        r->stop[r->n_stop++] = strndup(json_string_value(s), json_string_length(s));
    }
    return 0;
}

/* A seed for requests that give none: differs per request, still a kiln_gen_params seed. */
static uint64_t fresh_seed(serve_req *r) {
    static uint64_t counter;
    uint64_t t = (uint64_t)(kiln_now() * 1e9);
    return t ^ ((uint64_t)(uintptr_t)r << 16) ^ (__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) * 0x9e3779b97f4a7c15ULL);
}

/* ---- the parameter table: what kiln does with each top-level request key ---- */

typedef enum { P_USED, P_IGNORED, P_REFUSED } param_use;
enum { ON_CHAT = 1, ON_COMPLETION = 2, ON_BOTH = 3 };

/* A refused parameter with this value asks for nothing beyond what kiln does (null always does). */
static bool harmless(const char *name, json_t *v) {
    if (json_is_null(v)) return true;
    if (!strcmp(name, "store")) return json_is_false(v);
    return false;
}

static const struct param {
    const char *name;
    int on; /* ON_CHAT / ON_COMPLETION */
    param_use use;
    const char *why; /* ignored / refused: the reason given */
} PARAMS[] = {
    {"model", ON_BOTH, P_USED, NULL},
    {"messages", ON_CHAT, P_USED, NULL},
    {"prompt", ON_COMPLETION, P_USED, NULL},
    {"max_tokens", ON_BOTH, P_USED, NULL},
    {"max_completion_tokens", ON_BOTH, P_USED, NULL},
    {"min_tokens", ON_BOTH, P_USED, NULL},
    {"temperature", ON_BOTH, P_USED, NULL},
    {"top_p", ON_BOTH, P_USED, NULL},
    {"top_k", ON_BOTH, P_USED, NULL},
    {"min_p", ON_BOTH, P_USED, NULL},
    {"repetition_penalty", ON_BOTH, P_USED, NULL},
    {"presence_penalty", ON_BOTH, P_USED, NULL},
    {"frequency_penalty", ON_BOTH, P_USED, NULL},
    {"seed", ON_BOTH, P_USED, NULL},
    {"stream", ON_BOTH, P_USED, NULL},
    {"stream_options", ON_BOTH, P_USED, NULL},
    {"stop", ON_BOTH, P_USED, NULL},
    {"ignore_eos", ON_BOTH, P_USED, NULL},
    {"return_token_ids", ON_BOTH, P_USED, NULL},
    {"n", ON_BOTH, P_USED, NULL},       /* choices forked from one prefill (http.c, scheduler.c) */
    {"best_of", ON_COMPLETION, P_USED, NULL}, /* the n of best_of with the highest cumulative logprob */
    {"logprobs", ON_BOTH, P_USED, NULL},
    {"top_logprobs", ON_CHAT, P_USED, NULL},
    {"tools", ON_CHAT, P_USED, NULL},
    {"chat_template_kwargs", ON_CHAT, P_USED, NULL},
    {"add_generation_prompt", ON_CHAT, P_USED, NULL}, /* vLLM's extension (default true) */
    {"echo", ON_COMPLETION, P_USED, NULL},
    {"suffix", ON_COMPLETION, P_USED, NULL}, /* empty only: checked in parse_completion */
    /* Ignored by design: they ask for nothing that changes the answer. */
    {"user", ON_BOTH, P_IGNORED, "an end-user id for abuse monitoring: kiln keeps no per-user state"},
    {"metadata", ON_BOTH, P_IGNORED, "tags for stored completions: kiln stores nothing"},
    {"service_tier", ON_BOTH, P_IGNORED, "kiln has one tier"},
    /* Constrained decoding (constrain.c): at most one of these per request. response_format json_schema
     * constrains with strict true or false alike. */
    {"response_format", ON_BOTH, P_USED, NULL},
    {"guided_json", ON_BOTH, P_USED, NULL},
    {"guided_regex", ON_BOTH, P_USED, NULL},
    {"guided_choice", ON_BOTH, P_USED, NULL},
    {"guided_grammar", ON_BOTH, P_USED, NULL},
    {"grammar", ON_BOTH, P_USED, NULL},     /* llama.cpp: GBNF */
    {"json_schema", ON_BOTH, P_USED, NULL}, /* llama.cpp: a schema object */
    {"tool_choice", ON_CHAT, P_USED, NULL}, /* required / a named function: a tool-call grammar */
    {"parallel_tool_calls", ON_CHAT, P_USED, NULL}, /* with a forced call: up to 8 calls, else 1 */
    {"logit_bias", ON_BOTH, P_USED, NULL},
    /* Not implemented (yet): refused by name unless the value is harmless (see harmless()). */
    {"store", ON_BOTH, P_REFUSED, "kiln stores no completions (only false)"},
    {"functions", ON_CHAT, P_REFUSED, "the deprecated functions API is not implemented: use tools"},
    {"function_call", ON_CHAT, P_REFUSED, "the deprecated functions API is not implemented: use tool_choice"},
    {"prompt_logprobs", ON_BOTH, P_REFUSED, "prompt logprobs are not implemented"},
    {"reasoning_effort", ON_CHAT, P_REFUSED, "reasoning effort is not implemented: use chat_template_kwargs"},
    {"modalities", ON_CHAT, P_REFUSED, "only text is implemented"},
    {"audio", ON_CHAT, P_REFUSED, "audio output is not implemented"},
    {"prediction", ON_CHAT, P_REFUSED, "predicted outputs are not implemented"},
    {"web_search_options", ON_CHAT, P_REFUSED, "web search is not implemented"},
};

/* Every key of the body against PARAMS: unknown or refused keys are a 400 naming them. */
static int check_params(json_t *o, serve_kind kind, perr *e) {
    int on = kind == REQ_CHAT ? ON_CHAT : ON_COMPLETION;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        const struct param *p = NULL;
        for (size_t i = 0; i < sizeof PARAMS / sizeof *PARAMS && !p; i++)
            if (!strcmp(PARAMS[i].name, key)) p = &PARAMS[i];
        if (!p || !(p->on & on))
            return perr_set(e, key, "Unrecognized request argument supplied: '%s'%s", key,
                       p ? (kind == REQ_CHAT ? " (a /v1/completions parameter)" : " (a /v1/chat/completions parameter)")
                         : "");
        if (p->use == P_REFUSED && !harmless(key, v)) return perr_set(e, key, "'%s' is not supported: %s", key, p->why);
    }
    return 0;
}

/* The model a request names must be one this server answers to (vLLM: 404 naming it). */
static int check_model(const serve_model_info *mi, json_t *o, perr *e) {
    json_t *model = json_object_get(o, "model");
    if (!model || json_is_null(model)) return 0;
    if (!json_is_string(model)) return perr_set(e, "model", "'model' must be a string");
    if (openai_model_known(mi, json_string_value(model))) return 0;
    perr_set(e, "model", "The model `%s` does not exist.", json_string_value(model));
    return 404;
}

bool openai_model_known(const serve_model_info *mi, const char *name) {
    for (int i = 0; i < mi->n_names; i++)
        if (!strcmp(mi->names[i], name)) return true;
    return false;
}

/* The parameters both endpoints share, mapped onto kiln_gen_params (what kiln_gen_seq runs on). A field
 * the request omits keeps the model's default (mi->defaults: generation_config.json as vLLM applies it). */
static int parse_common(const serve_model_info *mi, json_t *o, serve_req *r, perr *e) {
    kiln_gen_params *g = &r->gen;
    *g = mi->defaults;
    long long n = 1, mt = -1, topk = g->top_k, seed = 0, min_tokens = g->min_new_tokens;
    double temp = g->temperature, top_p = g->top_p, min_p = g->min_p, rep = g->repetition_penalty;
    double presence = g->presence_penalty, frequency = g->frequency_penalty;
    bool ignore_eos = false;
    int st;
    long long best_of = -1;
    if ((st = get_int(o, "n", 1, SERVE_MAX_CHOICES, &n, e))) return st;
    if ((st = get_int(o, "best_of", 1, SERVE_MAX_CHOICES, &best_of, e))) return st;
    if (best_of >= 0 && best_of < n) return perr_set(e, "best_of", "'best_of' %lld must be at least 'n' %lld", best_of, n);
    r->n_choices = (int)n;
    r->best_of = (int)(best_of < 0 ? n : best_of);
    if ((st = get_int(o, "max_tokens", 1, 1 << 30, &mt, e))) return st;
    if ((st = get_int(o, "max_completion_tokens", 1, 1 << 30, &mt, e))) return st;
    if ((st = get_int(o, "min_tokens", 0, 1 << 30, &min_tokens, e))) return st;
    if ((st = get_number(o, "temperature", 0, 2, &temp, e))) return st;
    if ((st = get_number(o, "top_p", 0, 1, &top_p, e))) return st;
    if (top_p <= 0) return perr_set(e, "top_p", "'top_p' must be in (0, 1]");
    if ((st = get_int(o, "top_k", -1, 1 << 30, &topk, e))) return st;
    if ((st = get_number(o, "min_p", 0, 1, &min_p, e))) return st;
    if ((st = get_number(o, "repetition_penalty", 0, 100, &rep, e))) return st;
    if (rep <= 0) return perr_set(e, "repetition_penalty", "'repetition_penalty' must be > 0");
    if ((st = get_number(o, "presence_penalty", -2, 2, &presence, e))) return st;
    if ((st = get_number(o, "frequency_penalty", -2, 2, &frequency, e))) return st;
    if (json_object_get(o, "seed") && !json_is_null(json_object_get(o, "seed"))) {
        if ((st = get_int(o, "seed", -(1LL << 62), 1LL << 62, &seed, e))) return st;
        g->seed = (uint64_t)seed;
    } else {
        g->seed = fresh_seed(r);
    }
    if ((st = get_bool(o, "stream", &r->stream, e))) return st;
    if (r->stream && r->best_of > r->n_choices) /* the best are known only at the end */
        return perr_set(e, "best_of", "'best_of' above 'n' is not supported with 'stream'");
    if ((st = get_bool(o, "ignore_eos", &ignore_eos, e))) return st;
    if ((st = get_bool(o, "return_token_ids", &r->return_token_ids, e))) return st;
    json_t *so = json_object_get(o, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return perr_set(e, "stream_options", "'stream_options' must be an object");
        if (!r->stream) return perr_set(e, "stream_options", "'stream_options' is only allowed when 'stream' is true");
        if ((st = get_bool(so, "include_usage", &r->include_usage, e))) return st;
        const char *key;
        json_t *v;
        json_object_foreach(so, key, v) if (strcmp(key, "include_usage")) /* e.g. vLLM's continuous_usage_stats */
            return perr_set(e, "stream_options", "'stream_options.%s' is not supported (only include_usage)", key);
    }
    if ((st = get_stop(o, r, e))) return st;
    if (mt >= 0 && min_tokens > mt) return perr_set(e, "min_tokens", "'min_tokens' %lld is above 'max_tokens' %lld", min_tokens, mt);
    r->max_tokens = (int)mt; /* -1: settled against the context once the prompt is known */
    g->do_sample = temp > 0; /* OpenAI's convention: temperature 0 is greedy */
    g->temperature = (float)temp;
    g->top_p = (float)top_p;
    g->top_k = (int)(topk < 0 ? 0 : topk);
    g->min_p = (float)min_p;
    g->repetition_penalty = (float)rep;
    g->presence_penalty = (float)presence, g->frequency_penalty = (float)frequency;
    g->min_new_tokens = (int)min_tokens;
    if (ignore_eos) g->n_eos = 0;
    for (int i = 0; i < r->n_stop; i++) g->stop[i] = r->stop[i];
    g->n_stop = r->n_stop;
    g->think_end_id = -2; /* no thinking split unless a chat request on a thinking model asks for it */
    return 0;
}

/* ---- /v1/chat/completions ---- */

/* OpenAI allows content as a string, null, or a list of parts; templates want a string. */
static int normalise_content(json_t *msg, size_t i, perr *e) {
    char param[48];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    json_t *c = json_object_get(msg, "content");
    if (!c || json_is_null(c) || json_is_string(c)) return 0;
    if (!json_is_array(c)) return perr_set(e, param, "'%s' must be a string or a list of content parts", param);
    strbuf text = {0};
    for (size_t k = 0; k < json_array_size(c); k++) {
        json_t *part = json_array_get(c, k);
        json_t *type = json_object_get(part, "type"), *t = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") ||
            !json_is_string(t)) {
            strbuf_free(&text);
            return perr_set(e, param, "'%s' parts must be {\"type\":\"text\",\"text\":...} (only text is supported)",
                       param);
        }
        strbuf_put(&text, json_string_value(t), json_string_length(t));
    }
    json_object_set_new(msg, "content", json_stringn(text.p ? text.p : "", text.len));
    strbuf_free(&text);
    return 0;
}

/* An assistant's tool calls as the templates want them: "arguments" given as JSON text (OpenAI's wire
 * form, what kiln returns) become the object (vLLM does the same: templates apply tojson to them). */
static int normalise_tool_calls(json_t *m, const char *param, perr *e) {
    json_t *calls = json_object_get(m, "tool_calls");
    if (!calls || json_is_null(calls)) return 0;
    if (!json_is_array(calls)) return perr_set(e, param, "'%s.tool_calls' must be a list", param);
    for (size_t k = 0; k < json_array_size(calls); k++) {
        json_t *fn = json_object_get(json_array_get(calls, k), "function");
        if (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name")))
            return perr_set(e, param, "'%s.tool_calls[%zu]' must be {\"type\":\"function\",\"function\":{\"name\",\"arguments\"}}",
                       param, k);
        json_t *args = json_object_get(fn, "arguments");
        json_t *obj = json_is_string(args) ? json_loadb(json_string_value(args), json_string_length(args), 0, NULL) : NULL;
        if (json_is_object(obj)) json_object_set(fn, "arguments", obj);
        json_decref(obj);
    }
    return 0;
}

/* For a template that cannot show tool calls (it never mentions tool_calls: ChatML, Mistral), calls and
 * results become text in the Hermes format kiln parses (<tool_call> / <tool_response>) on assistant and
 * user turns, consecutive user turns merged (templates that enforce alternation accept the result). */
static json_t *tools_as_text(json_t *msgs) {
    json_t *out = json_array();
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i), *calls = json_object_get(m, "tool_calls");
        const char *role = json_string_value(json_object_get(m, "role"));
        strbuf text = {0};
        bool tool = !strcmp(role, "tool");
        if (tool) strbuf_puts(&text, "<tool_response>\n");
        strbuf_puts(&text, json_string_value(json_object_get(m, "content")));
        if (tool) strbuf_puts(&text, "\n</tool_response>");
        for (size_t k = 0; k < json_array_size(calls); k++) {
            json_t *fn = json_object_get(json_array_get(calls, k), "function");
            json_t *call = json_pack("{s:O, s:O?}", "name", json_object_get(fn, "name"), "arguments",
                                     json_object_get(fn, "arguments"));
            char *js = call ? json_dumps(call, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
            strbuf_puts(&text, text.len ? "\n<tool_call>\n" : "<tool_call>\n");
            strbuf_puts(&text, js ? js : "{}");
            strbuf_puts(&text, "\n</tool_call>");
            free(js);
            json_decref(call);
        }
        json_t *prev = json_array_size(out) ? json_array_get(out, json_array_size(out) - 1) : NULL;
        const char *as = tool ? "user" : role;
        if (prev && !strcmp(as, "user") && !strcmp(json_string_value(json_object_get(prev, "role")), "user")) {
            strbuf merged = {0};
            strbuf_puts(&merged, json_string_value(json_object_get(prev, "content")));
            strbuf_puts(&merged, "\n");
            strbuf_put(&merged, text.p ? text.p : "", text.len);
            json_object_set_new(prev, "content", json_stringn(merged.p ? merged.p : "", merged.len));
            strbuf_free(&merged);
        } else {
            json_array_append_new(out, json_pack("{s:s, s:s%}", "role", as, "content", text.p ? text.p : "", text.len));
        }
        strbuf_free(&text);
    }
    return out;
}

int openai_chat_messages(json_t *msgs, const char *tmpl, json_t **out, char *msg, size_t msg_size, char *param,
                         size_t param_size) {
    perr e = {msg, msg_size, param, param_size};
    *out = NULL;
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return perr_set(&e, "messages", "'messages' must be a non-empty list");
    static const char *roles[] = {"system", "developer", "user", "assistant", "tool"};
    bool has_tools = false;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        char p[48];
        snprintf(p, sizeof p, "messages[%zu]", i);
        if (!json_is_object(m)) return perr_set(&e, p, "'%s' must be an object", p);
        json_t *role = json_object_get(m, "role");
        bool ok = false;
        for (size_t k = 0; json_is_string(role) && k < sizeof roles / sizeof *roles; k++)
            ok |= !strcmp(json_string_value(role), roles[k]);
        if (!ok) return perr_set(&e, p, "'%s.role' must be one of system, developer, user, assistant, tool", p);
        int st = normalise_content(m, i, &e);
        if (st) return st;
        bool assistant = !strcmp(json_string_value(role), "assistant"), tool = !strcmp(json_string_value(role), "tool");
        json_t *c = json_object_get(m, "content");
        if (!c || json_is_null(c)) {
            if (!assistant) return perr_set(&e, p, "'%s.content' is required", p);
            json_object_set_new(m, "content", json_string("")); /* what transformers users pass: "" */
        }
        json_t *id = json_object_get(m, "tool_call_id");
        if (tool && id && !json_is_null(id) && !json_is_string(id))
            return perr_set(&e, p, "'%s.tool_call_id' must be a string", p);
        if ((st = normalise_tool_calls(m, p, &e))) return st;
        has_tools |= tool || json_array_size(json_object_get(m, "tool_calls")) > 0;
    }
    *out = has_tools && tmpl && !strstr(tmpl, "tool_calls") ? tools_as_text(msgs) : json_incref(msgs);
    return *out ? 0 : perr_set(&e, "messages", "out of memory");
}

static int parse_chat(const serve_model_info *mi, json_t *o, serve_req *r, perr *e) {
    json_t *given = json_object_get(o, "messages"), *msgs;
    if (!given) return perr_set(e, "messages", "'messages' is required");
    json_t *tools = json_object_get(o, "tools");
    if (tools && !json_is_null(tools) && !json_is_array(tools)) return perr_set(e, "tools", "'tools' must be a list");
    size_t n_tools = json_is_array(tools) ? json_array_size(tools) : 0;
    r->tools = calloc(n_tools ? n_tools : 1, sizeof *r->tools);
    if (!r->tools) return perr_set(e, "tools", "out of memory");
    for (size_t i = 0; i < n_tools; i++) {
        json_t *t = json_array_get(tools, i), *name = json_object_get(json_object_get(t, "function"), "name");
        if (!json_is_object(t)) return perr_set(e, "tools", "'tools' entries must be objects");
        if (json_is_string(name)) r->tools[r->n_tools++] = strdup(json_string_value(name));
    }
    bool logprobs = false;
    long long top = 0;
    int st;
    if ((st = get_bool(o, "logprobs", &logprobs, e))) return st;
    if ((st = get_int(o, "top_logprobs", 0, SERVE_MAX_TOP_LOGPROBS, &top, e))) return st;
    if (top > 0 && !logprobs) return perr_set(e, "top_logprobs", "'top_logprobs' requires 'logprobs': true");
    r->logprobs = logprobs;
    r->top_logprobs = (int)top;

    if ((st = openai_chat_messages(given, kiln_tokenizer_chat_template(mi->tok, NULL), &msgs, e->msg, e->msg_size,
                                   e->param, e->param_size)))
        return st;
    /* The template's variables: chat_template_kwargs (vLLM's way to pass e.g. enable_thinking), then
     * messages, tools and add_generation_prompt, which the kwargs cannot replace. */
    json_t *vars = json_object();
    json_t *kw = json_object_get(o, "chat_template_kwargs");
    if (kw && !json_is_null(kw)) {
        if (!json_is_object(kw)) {
            json_decref(vars);
            json_decref(msgs);
            return perr_set(e, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
        }
        json_object_update(vars, kw);
    }
    json_object_set_new(vars, "messages", msgs);
    json_object_del(vars, "tools");
    bool offer = true;
    if ((st = constrain_tools(o, json_is_array(tools) ? tools : NULL, r, &offer, e))) {
        json_decref(vars);
        return st;
    }
    if (offer && json_is_array(tools) && json_array_size(tools)) {
        json_object_set(vars, "tools", tools);
        r->has_tools = true;
    }
    bool gen_prompt = true;
    if ((st = get_bool(o, "add_generation_prompt", &gen_prompt, e))) {
        json_decref(vars);
        return st;
    }
    json_object_set_new(vars, "add_generation_prompt", json_boolean(gen_prompt));
    /* A grammar never allows <think>: the template is told not to think (Qwen3 then writes an empty
     * think block itself). */
    if (r->grammar && mi->thinking) json_object_set_new(vars, "enable_thinking", json_false());
    json_t *think = json_object_get(vars, "enable_thinking");
    r->split_thinking = mi->thinking && !json_is_false(think);
    if (r->split_thinking) r->gen.think_end_id = -1; /* the tokenizer's </think> */
    char *vj = json_dumps(vars, JSON_COMPACT);
    json_decref(vars);
    if (!vj) return perr_set(e, "messages", "out of memory");
    kiln_err err = {{0}};
    size_t len = 0;
    char *text = kiln_chat_render(mi->tok, vj, &len, &err);
    free(vj);
    if (!text) return perr_set(e, "messages", "chat template failed: %s", err.msg);
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = kiln_encode(mi->tok, text, len, false, &ids, &n, &err);
    free(text);
    if (rc) return perr_set(e, "messages", "tokenizing the prompt failed: %s", err.msg);
    r->prompt = ids;
    r->n_prompt = (int)n;
    return 0;
}

/* ---- /v1/completions ---- */

static int parse_completion(const serve_model_info *mi, json_t *o, serve_req *r, perr *e) {
    json_t *p = json_object_get(o, "prompt");
    if (!p) return perr_set(e, "prompt", "'prompt' is required");
    /* ["one string"] is the same as "one string"; a list of prompts is batching we do not offer. */
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0))) p = json_array_get(p, 0);
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_array(json_array_get(p, 0))) p = json_array_get(p, 0);
    size_t vocab = kiln_tokenizer_vocab_size(mi->tok);
    if (json_is_string(p)) {
        kiln_err err = {{0}};
        size_t n = 0;
        if (kiln_encode(mi->tok, json_string_value(p), json_string_length(p), true, &r->prompt, &n, &err))
            return perr_set(e, "prompt", "tokenizing the prompt failed: %s", err.msg);
        r->n_prompt = (int)n;
        /* echo returns the prompt as sent (api.openai.com, vLLM), not a decode that shows "<s>" */
        if (strbuf_put(&r->prompt_text, json_string_value(p), json_string_length(p)))
            return perr_set(e, "prompt", "out of memory");
    } else if (json_is_array(p)) {
        size_t n = json_array_size(p);
        r->prompt = malloc((n ? n : 1) * sizeof *r->prompt);
        if (!r->prompt) return perr_set(e, "prompt", "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(p, i);
            if (json_is_string(v) || json_is_array(v))
                return perr_set(e, "prompt", "'prompt' with several prompts is not supported: send one per request");
            if (!json_is_integer(v) || json_integer_value(v) < 0 || (size_t)json_integer_value(v) >= vocab)
                return perr_set(e, "prompt", "'prompt[%zu]' must be a token id in [0, %zu)", i, vocab);
            r->prompt[i] = (int32_t)json_integer_value(v);
        }
        r->n_prompt = (int)n;
    } else {
        return perr_set(e, "prompt", "'prompt' must be a string or a list of token ids");
    }
    if (r->n_prompt == 0) return perr_set(e, "prompt", "'prompt' must not be empty");
    long long lp = -1;
    int st;
    if ((st = get_int(o, "logprobs", 0, 5, &lp, e))) return st;
    if ((st = get_bool(o, "echo", &r->echo, e))) return st;
    if (json_is_string(json_object_get(o, "suffix")) && json_string_length(json_object_get(o, "suffix")))
        return perr_set(e, "suffix", "'suffix' is not supported");
    if (lp >= 0 && r->echo) /* OpenAI then lists the prompt's tokens and logprobs too */
        return perr_set(e, "echo", "'echo' with 'logprobs' is not supported: prompt logprobs are not implemented");
    if (lp >= 0) r->logprobs = true, r->top_logprobs = (int)lp;
    return 0;
}

int openai_parse(const serve_model_info *mi, serve_kind kind, const char *body, size_t len, serve_req *r,
                 char *msg, size_t msg_size, char *param, size_t param_size) {
    perr e = {msg, msg_size, param, param_size};
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!o) return perr_set(&e, NULL, "malformed JSON body: %s (line %d, column %d)", je.text, je.line, je.column);
    int st = 0;
    if (!json_is_object(o)) st = perr_set(&e, NULL, "the request body must be a JSON object");
    r->kind = kind;
    r->max_tokens = -1;
    if (!st) st = check_params(o, kind, &e);
    if (!st) st = check_model(mi, o, &e);
    if (!st) st = parse_common(mi, o, r, &e);
    if (!st) st = constrain_parse(mi, o, r, &e);
    if (!st) st = kind == REQ_CHAT ? parse_chat(mi, o, r, &e) : parse_completion(mi, o, r, &e);
    json_decref(o);
    if (st) return st;
    if (r->n_prompt >= mi->n_ctx)
        return perr_set(&e, kind == REQ_CHAT ? "messages" : "prompt",
                   "This model's maximum context length is %d tokens. However, your prompt has %d tokens.",
                   mi->n_ctx, r->n_prompt);
    if (r->max_tokens < 0) { /* completions: OpenAI's 16; chat: generation_config's max_new_tokens if any
                              * (vLLM), else the context */
        int left = mi->n_ctx - r->n_prompt, dflt = kind == REQ_COMPLETION ? 16 : mi->defaults.max_new_tokens;
        r->max_tokens = dflt > 0 && dflt < left ? dflt : left;
        if (r->gen.min_new_tokens > r->max_tokens) r->gen.min_new_tokens = r->max_tokens;
    } else if (r->n_prompt + r->max_tokens > mi->n_ctx)
        return perr_set(&e, "max_tokens",
                   "This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the "
                   "prompt, %d for the completion).",
                   mi->n_ctx, r->n_prompt + r->max_tokens, r->n_prompt, r->max_tokens);
    r->gen.max_new_tokens = r->max_tokens;
    return 0;
}

/* ---- responses ---- */

static const char *error_type(int status) {
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 405: return "method_not_allowed";
    case 413: return "request_too_large";
    case 429: return "rate_limit_exceeded";
    case 503: return "service_unavailable";
    case 504: return "timeout";
    default: return "server_error";
    }
}

char *openai_error_json(int status, const char *msg, const char *param) {
    json_t *o = json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", msg, "type", error_type(status), "param",
                          param && *param ? json_string(param) : json_null(), "code",
                          json_integer(status)); /* vLLM's ErrorResponse: the HTTP status, always */
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* Prompt tokens once, completion tokens of every choice generated (best_of's discarded ones too, as
 * api.openai.com bills them). Caller holds r->mu (the other choices are locked here). */
static json_t *usage_json(serve_req *r) {
    int gen = r->n_gen;
    for (int i = 0; i < r->n_more; i++) {
        pthread_mutex_lock(&r->more[i]->mu);
        gen += r->more[i]->n_gen;
        pthread_mutex_unlock(&r->more[i]->mu);
    }
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", r->n_prompt, "completion_tokens", gen,
                     "total_tokens", r->n_prompt + gen, "prompt_tokens_details", "cached_tokens", r->n_cached);
}

static json_t *ids_json(const int32_t *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n && ids; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static json_t *token_bytes(const char *s, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

/* A token's text for logprobs, decoded after the ids before it (the prompt's tail, then the earlier
 * generated tokens) as the streamed text is, so SentencePiece's "▁a" after "upon" reads " a" and the
 * strings add up to the text. Special tokens show as themselves. Bytes of an incomplete UTF-8 sequence
 * become U+FFFD (JSON needs valid text). at: the logprob entry's index. */
static json_t *token_text(const serve_model_info *mi, const serve_req *r, int at, int32_t id, json_t **bytes) {
    strbuf text = {0};
    if (kiln_token_is_special(mi->tok, id)) {
        size_t n = 0;
        char *s = kiln_decode(mi->tok, &id, 1, false, &n);
        if (s) strbuf_put(&text, s, n);
        free(s);
    } else {
        int32_t ctx[8];
        int n = 0;
        for (int i = at - 1; i >= 0 && n < 8; i--) ctx[n++] = r->lp[i].id;
        for (int i = r->n_prompt - 1; i >= 0 && n < 8; i--) ctx[n++] = r->prompt[i];
        for (int i = 0; i < n / 2; i++) {
            int32_t t = ctx[i];
            ctx[i] = ctx[n - 1 - i], ctx[n - 1 - i] = t;
        }
        kiln_detok *d = kiln_detok_new(mi->tok, true);
        if (d) {
            size_t len = 0;
            kiln_detok_prime(d, ctx, (size_t)n);
            const char *s = kiln_detok_push(d, id, &len);
            strbuf_put(&text, s, len);
            s = kiln_detok_flush(d, &len);
            strbuf_put(&text, s, len);
            kiln_detok_free(d);
        }
    }
    json_t *j = json_stringn(text.p ? text.p : "", text.len);
    if (!j) j = json_string("\xef\xbf\xbd");
    if (bytes) *bytes = token_bytes(text.p ? text.p : "", text.len);
    strbuf_free(&text);
    return j;
}

/* Chat logprobs: {"content":[{"token","logprob","bytes","top_logprobs":[...]}]} for entries [from, to). */
static json_t *chat_logprobs(const serve_model_info *mi, serve_req *r, int from, int to) {
    json_t *content = json_array();
    for (int i = from; i < to; i++) {
        serve_logprob *l = &r->lp[i];
        json_t *bytes, *tok = token_text(mi, r, i, l->id, &bytes);
        json_t *top = json_array();
        for (int k = 0; k < l->n_top; k++) {
            json_t *tb, *tt = token_text(mi, r, i, l->top_id[k], &tb);
            json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token", tt, "logprob", (double)l->top_lp[k],
                                                 "bytes", tb));
        }
        json_array_append_new(content, json_pack("{s:o, s:f, s:o, s:o}", "token", tok, "logprob",
                                                 (double)l->logprob, "bytes", bytes, "top_logprobs", top));
    }
    return json_pack("{s:o}", "content", content);
}

/* Completions logprobs: parallel lists tokens / token_logprobs / top_logprobs / text_offset; *offset is
 * where entry `from` starts in the choice's text (echo: after the prompt) and moves past `to`. */
static json_t *completion_logprobs(const serve_model_info *mi, serve_req *r, int from, int to, size_t *offset) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (int i = from; i < to; i++) {
        serve_logprob *l = &r->lp[i];
        json_t *tok = token_text(mi, r, i, l->id, NULL);
        json_array_append_new(offs, json_integer((json_int_t)*offset));
        *offset += json_string_length(tok);
        json_array_append_new(tokens, tok);
        json_array_append_new(lps, json_real(l->logprob));
        json_t *top = json_object();
        for (int k = 0; k < l->n_top; k++) {
            json_t *tt = token_text(mi, r, i, l->top_id[k], NULL);
            json_object_set_new(top, json_string_value(tt), json_real(l->top_lp[k]));
            json_decref(tt);
        }
        json_array_append_new(tops, top);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

static json_t *finish_json(serve_req *r) {
    switch (r->finish) {
    case FIN_STOP: return json_string("stop");
    case FIN_LENGTH: case FIN_TIMEOUT: return json_string("length");
    case FIN_NONE: return json_null();
    default: return json_string("abort");
    }
}

/* Tool calls [from, to) as OpenAI's list; stream: with the index each delta entry carries. */
static json_t *tool_calls_json(serve_req *r, int from, int to, bool stream) {
    json_t *a = json_array();
    for (int i = from; i < to; i++) {
        char id[80];
        if (r->index) snprintf(id, sizeof id, "call_%s_%d_%d", r->id, r->index, i);
        else snprintf(id, sizeof id, "call_%s_%d", r->id, i);
        json_t *c = json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function", "name",
                              r->calls[i].name, "arguments", r->calls[i].arguments);
        if (stream) json_object_set_new(c, "index", json_integer(i));
        json_array_append_new(a, c);
    }
    return a;
}

/* "tool_calls" when the answer ended on its own after calling tools. */
static json_t *chat_finish_json(serve_req *r) {
    return r->n_calls && r->finish == FIN_STOP ? json_string("tool_calls") : finish_json(r);
}

static json_t *envelope(const serve_model_info *mi, serve_req *r, const char *object) {
    return json_pack("{s:s, s:s, s:i, s:s}", "id", r->id, "object", object, "created", (json_int_t)r->created,
                     "model", mi->name);
}

static char *dump(json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* echo: the prompt as sent, or for token ids their decode (special tokens skipped, as the completion's
 * text is), so echo + completion = the decode of prompt + completion ids. */
static void prompt_text(const serve_model_info *mi, serve_req *r, strbuf *out) {
    if (r->prompt_text.p) {
        strbuf_put(out, r->prompt_text.p, r->prompt_text.len);
        return;
    }
    size_t n = 0;
    char *s = kiln_decode(mi->tok, r->prompt, (size_t)r->n_prompt, true, &n);
    if (s) strbuf_put(out, s, n);
    free(s);
}

/* The choice's text: [prompt +] content from `from`. *prompt_len: the echoed prompt's length. */
static json_t *completion_text(const serve_model_info *mi, serve_req *r, bool echo, size_t from, size_t *prompt_len) {
    strbuf b = {0};
    if (echo) prompt_text(mi, r, &b);
    *prompt_len = b.len;
    strbuf_put(&b, r->content.p ? r->content.p + from : "", r->content.len - from);
    json_t *j = json_stringn(b.p ? b.p : "", b.len);
    strbuf_free(&b);
    return j;
}

/* One choice of a finished request: the answer of r, numbered index. */
static json_t *choice_json(const serve_model_info *mi, serve_req *r, int index) {
    json_t *choice;
    if (r->kind == REQ_CHAT) {
        json_t *text = r->n_calls && !r->content.len ? json_null() : json_stringn(r->content.p ? r->content.p : "", r->content.len);
        json_t *msg = json_pack("{s:s, s:o}", "role", "assistant", "content", text);
        if (r->n_calls) json_object_set_new(msg, "tool_calls", tool_calls_json(r, 0, r->n_calls, false));
        if (r->split_thinking)
            json_object_set_new(msg, "reasoning_content",
                                r->reasoning.len ? json_stringn(r->reasoning.p, r->reasoning.len) : json_null());
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", index, "message", msg, "logprobs",
                           r->logprobs ? chat_logprobs(mi, r, 0, r->n_lp) : json_null(), "finish_reason",
                           chat_finish_json(r));
    } else {
        size_t offset = 0;
        json_t *text = completion_text(mi, r, r->echo, 0, &offset);
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", index, "text", text, "logprobs",
                           r->logprobs ? completion_logprobs(mi, r, 0, r->n_lp, &offset) : json_null(),
                           "finish_reason", finish_json(r));
    }
    if (r->return_token_ids) {
        json_object_set_new(choice, "token_ids", ids_json(r->gen_ids, r->n_gen));
        json_object_set_new(choice, "prompt_token_ids", ids_json(r->prompt, r->n_prompt));
    }
    return choice;
}

/* best_of: the n_choices of the generated ones with the highest cumulative logprob, best first (stable:
 * ties keep generation order); without best_of all of them in order. */
static int rank_choices(serve_req *r, serve_req **out) {
    int total = 1 + r->n_more, keep = r->best_of > r->n_choices ? r->n_choices : total;
    for (int i = 0; i < total; i++) {
        serve_req *c = i ? r->more[i - 1] : r;
        int j = i;
        if (r->best_of > r->n_choices)
            for (; j > 0 && out[j - 1]->cum_logprob < c->cum_logprob; j--) out[j] = out[j - 1];
        out[j] = c;
    }
    return keep < total ? keep : total;
}

char *openai_response_json(const serve_model_info *mi, serve_req *r) {
    if (r->responses) return responses_json(mi, r);
    json_t *o = envelope(mi, r, r->kind == REQ_CHAT ? "chat.completion" : "text_completion");
    json_t *choices = json_array();
    serve_req *ranked[SERVE_MAX_CHOICES];
    int n = rank_choices(r, ranked);
    for (int i = 0; i < n; i++) {
        serve_req *c = ranked[i];
        if (c != r) pthread_mutex_lock(&c->mu);
        json_array_append_new(choices, choice_json(mi, c, i));
        if (c != r) pthread_mutex_unlock(&c->mu);
    }
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", usage_json(r));
    return dump(o);
}

static char *sse(json_t *o) {
    char *s = dump(o);
    if (!s) return NULL;
    size_t n = strlen(s);
    char *out = malloc(n + 9);
    if (out) {
        memcpy(out, "data: ", 6);
        memcpy(out + 6, s, n);
        memcpy(out + 6 + n, "\n\n", 3);
    }
    free(s);
    return out;
}

char *openai_stream_chunk(const serve_model_info *mi, serve_req *r, serve_cursor *cur) {
    if (r->responses) return responses_stream_events(mi, r, cur);
    bool more = r->content.len > cur->content || r->reasoning.len > cur->reasoning || r->n_lp > cur->lp ||
                r->n_calls > cur->calls;
    bool fin = r->done && !cur->sent_finish;
    if (!more && !fin && cur->sent_role) return NULL;
    json_t *choice, *o, *lp;
    if (r->kind == REQ_CHAT) {
        json_t *text = json_stringn(r->content.p ? r->content.p + cur->content : "", r->content.len - cur->content);
        lp = r->logprobs ? chat_logprobs(mi, r, cur->lp, r->n_lp) : json_null();
        o = envelope(mi, r, "chat.completion.chunk");
        json_t *delta = json_object();
        if (!cur->sent_role) json_object_set_new(delta, "role", json_string("assistant"));
        if (r->reasoning.len > cur->reasoning)
            json_object_set_new(delta, "reasoning_content",
                                json_stringn(r->reasoning.p + cur->reasoning, r->reasoning.len - cur->reasoning));
        if (r->content.len > cur->content || !cur->sent_role) json_object_set(delta, "content", text);
        json_decref(text);
        if (r->n_calls > cur->calls)
            json_object_set_new(delta, "tool_calls", tool_calls_json(r, cur->calls, r->n_calls, true));
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", r->index, "delta", delta, "logprobs", lp, "finish_reason",
                           r->done ? chat_finish_json(r) : json_null());
    } else {
        o = envelope(mi, r, "text_completion");
        size_t prompt_len = 0;
        json_t *text = completion_text(mi, r, !cur->sent_role && r->echo, cur->content, &prompt_len);
        cur->text_offset += prompt_len; /* the echoed prompt comes first */
        lp = r->logprobs ? completion_logprobs(mi, r, cur->lp, r->n_lp, &cur->text_offset) : json_null();
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", r->index, "text", text, "logprobs", lp, "finish_reason",
                           r->done ? finish_json(r) : json_null());
    }
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    if (r->include_usage) json_object_set_new(o, "usage", json_null());
    cur->content = r->content.len;
    cur->reasoning = r->reasoning.len;
    cur->lp = r->n_lp;
    cur->calls = r->n_calls;
    cur->sent_role = true;
    if (r->done) cur->sent_finish = true;
    return sse(o);
}

char *openai_usage_chunk(const serve_model_info *mi, serve_req *r) {
    json_t *o = envelope(mi, r, r->kind == REQ_CHAT ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(o, "choices", json_array());
    json_object_set_new(o, "usage", usage_json(r));
    return sse(o);
}

static json_t *model_card(const serve_model_info *mi, const char *id, long created) {
    return json_pack("{s:s, s:s, s:i, s:s, s:i}", "id", id, "object", "model", "created", (json_int_t)created,
                     "owned_by", "kiln", "max_model_len", mi->n_ctx);
}

char *openai_model_json(const serve_model_info *mi, const char *id, long created) {
    return openai_model_known(mi, id) ? dump(model_card(mi, id, created)) : NULL;
}

char *openai_models_json(const serve_model_info *mi, long created) {
    json_t *data = json_array();
    for (int i = 0; i < mi->n_names; i++) json_array_append_new(data, model_card(mi, mi->names[i], created));
    return dump(json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* ---- /tokenize and /detokenize (vLLM's shapes) ---- */

static int only_keys(json_t *o, const char *const *keys, perr *e) {
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        bool ok = false;
        for (const char *const *k = keys; *k && !ok; k++) ok = !strcmp(*k, key);
        if (!ok) return perr_set(e, key, "Unrecognized request argument supplied: '%s'", key);
    }
    return 0;
}

static json_t *load_object(const char *body, size_t len, perr *e, int *st) {
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!o) *st = perr_set(e, NULL, "malformed JSON body: %s (line %d, column %d)", je.text, je.line, je.column);
    else if (!json_is_object(o)) *st = perr_set(e, NULL, "the request body must be a JSON object");
    else *st = 0;
    if (*st) json_decref(o);
    return *st ? NULL : o;
}

/* {"prompt", "add_special_tokens"} or {"messages", "add_generation_prompt", ...} → {"count",
 * "max_model_len", "tokens", "token_strs"}. */
int openai_tokenize(const serve_model_info *mi, const char *body, size_t len, char **out, char *msg, size_t msg_size,
                    char *param, size_t param_size) {
    perr e = {msg, msg_size, param, param_size};
    static const char *const keys[] = {"model", "prompt", "messages", "add_special_tokens", "return_token_strs",
                                       "add_generation_prompt", "chat_template_kwargs", "tools", NULL};
    int st;
    json_t *o = load_object(body, len, &e, &st);
    if (!o) return st;
    serve_req *r = serve_req_new();
    bool strs = false, special = !json_object_get(o, "messages");
    if (!r) st = perr_set(&e, NULL, "out of memory");
    if (!st) st = only_keys(o, keys, &e);
    if (!st) st = check_model(mi, o, &e);
    if (!st) st = get_bool(o, "return_token_strs", &strs, &e);
    if (!st) st = get_bool(o, "add_special_tokens", &special, &e);
    if (!st && special && json_object_get(o, "messages")) /* the template writes them itself */
        st = perr_set(&e, "add_special_tokens", "'add_special_tokens' with 'messages' is not supported");
    if (!st && json_object_get(o, "messages")) st = parse_chat(mi, o, r, &e);
    else if (!st) {
        const char *text = NULL;
        kiln_err err = {{0}};
        size_t n = 0;
        if (json_get_str(o, "prompt", &text, &err) <= 0) st = perr_set(&e, "prompt", "'prompt' (a string) or 'messages' is required");
        else if (kiln_encode(mi->tok, text, json_string_length(json_object_get(o, "prompt")), special, &r->prompt, &n, &err))
            st = perr_set(&e, "prompt", "tokenizing the prompt failed: %s", err.msg);
        r->n_prompt = (int)n;
    }
    json_decref(o);
    if (!st) {
        json_t *strs_j = strs ? json_array() : json_null();
        for (int i = 0; strs && i < r->n_prompt; i++) {
            const char *t = kiln_token_str(mi->tok, r->prompt[i]);
            json_array_append_new(strs_j, json_string(t ? t : ""));
        }
        *out = dump(json_pack("{s:i, s:i, s:o, s:o}", "count", r->n_prompt, "max_model_len", mi->n_ctx, "tokens",
                              ids_json(r->prompt, r->n_prompt), "token_strs", strs_j));
        if (!*out) st = perr_set(&e, NULL, "out of memory");
    }
    serve_req_unref(r);
    return st;
}

/* {"tokens": [ids]} → {"prompt": text} (special tokens kept, as vLLM's tokenizer.decode). */
int openai_detokenize(const serve_model_info *mi, const char *body, size_t len, char **out, char *msg,
                      size_t msg_size, char *param, size_t param_size) {
    perr e = {msg, msg_size, param, param_size};
    static const char *const keys[] = {"model", "tokens", NULL};
    int st;
    json_t *o = load_object(body, len, &e, &st);
    if (!o) return st;
    json_t *toks = json_object_get(o, "tokens");
    size_t n = json_array_size(toks), vocab = kiln_tokenizer_vocab_size(mi->tok);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) st = perr_set(&e, NULL, "out of memory");
    if (!st) st = only_keys(o, keys, &e);
    if (!st) st = check_model(mi, o, &e);
    if (!st && !json_is_array(toks)) st = perr_set(&e, "tokens", "'tokens' (a list of token ids) is required");
    for (size_t i = 0; !st && i < n; i++) {
        long long id;
        if (json_int_value(json_array_get(toks, i), 0, (long long)vocab - 1, &id))
            st = perr_set(&e, "tokens", "'tokens[%zu]' must be a token id in [0, %zu)", i, vocab);
        else ids[i] = (int32_t)id;
    }
    json_decref(o);
    if (!st) {
        size_t tn = 0;
        char *text = kiln_decode(mi->tok, ids, n, false, &tn);
        *out = text ? dump(json_pack("{s:s%}", "prompt", text, tn)) : NULL;
        free(text);
        if (!*out) st = perr_set(&e, NULL, "out of memory");
    }
    free(ids);
    return st;
}

/* ---- /v1/embeddings ---- */

/* One input (a string, or a list of token ids) into r's prompt. */
static int embed_input(const serve_model_info *mi, json_t *v, size_t at, serve_req *r, perr *e) {
    size_t vocab = kiln_tokenizer_vocab_size(mi->tok);
    if (json_is_string(v)) {
        kiln_err err = {{0}};
        size_t n = 0;
        if (kiln_encode(mi->tok, json_string_value(v), json_string_length(v), true, &r->prompt, &n, &err))
            return perr_set(e, "input", "tokenizing 'input[%zu]' failed: %s", at, err.msg);
        r->n_prompt = (int)n;
    } else {
        size_t n = json_array_size(v);
        if (!(r->prompt = malloc((n ? n : 1) * sizeof *r->prompt))) return perr_set(e, "input", "out of memory");
        for (size_t i = 0; i < n; i++) {
            long long id;
            if (json_int_value(json_array_get(v, i), 0, (long long)vocab - 1, &id))
                return perr_set(e, "input", "'input[%zu][%zu]' must be a token id in [0, %zu)", at, i, vocab);
            r->prompt[i] = (int32_t)id;
        }
        r->n_prompt = (int)n;
    }
    if (r->n_prompt == 0) return perr_set(e, "input", "'input[%zu]' must not be empty", at);
    if (r->n_prompt > mi->n_ctx)
        return perr_set(e, "input", "'input[%zu]' has %d tokens, above this model's maximum context length of %d", at,
                        r->n_prompt, mi->n_ctx);
    r->kind = REQ_EMBED;
    r->mean_pooling = mi->mean_pooling;
    return 0;
}

/* input: a string, a list of strings, a list of token ids, or a list of such lists (OpenAI's four forms). */
static int embed_inputs(const serve_model_info *mi, json_t *in, serve_req *r, perr *e) {
    bool one = json_is_string(in) || (json_is_array(in) && json_array_size(in) && json_is_integer(json_array_get(in, 0)));
    size_t n = one ? 1 : json_array_size(in);
    if (!json_is_string(in) && !json_is_array(in))
        return perr_set(e, "input", "'input' must be a string, a list of strings or a list of token id lists");
    if (n == 0) return perr_set(e, "input", "'input' must not be empty");
    if (n > SERVE_MAX_INPUTS) return perr_set(e, "input", "'input' takes at most %d items, got %zu", SERVE_MAX_INPUTS, n);
    if (n > 1 && !(r->more = calloc(n - 1, sizeof *r->more))) return perr_set(e, "input", "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = one ? in : json_array_get(in, i);
        if (!json_is_string(v) && !json_is_array(v))
            return perr_set(e, "input", "'input[%zu]' must be a string or a list of token ids", i);
        serve_req *c = i ? serve_req_new() : r;
        if (!c) return perr_set(e, "input", "out of memory");
        if (i) r->more[r->n_more++] = c;
        c->index = (int)i;
        int st = embed_input(mi, v, i, c, e);
        if (st) return st;
    }
    return 0;
}

int openai_embeddings_parse(const serve_model_info *mi, const char *body, size_t len, serve_req *r, char *msg,
                            size_t msg_size, char *param, size_t param_size) {
    perr e = {msg, msg_size, param, param_size};
    static const char *const keys[] = {"model", "input", "encoding_format", "dimensions", "user", NULL};
    int st;
    json_t *o = load_object(body, len, &e, &st);
    if (!o) return st;
    long long dims = 0;
    const char *fmt = "float";
    kiln_err err = {{0}};
    st = only_keys(o, keys, &e);
    if (!st) st = check_model(mi, o, &e);
    if (!st) st = get_int(o, "dimensions", 1, mi->hidden, &dims, &e);
    if (!st && json_get_str(o, "encoding_format", &fmt, &err) < 0) st = perr_set(&e, "encoding_format", "%s", err.msg);
    if (!st && strcmp(fmt, "float") && strcmp(fmt, "base64"))
        st = perr_set(&e, "encoding_format", "'encoding_format' must be float or base64, got '%s'", fmt);
    if (!st && !json_object_get(o, "input")) st = perr_set(&e, "input", "'input' is required");
    if (!st) st = embed_inputs(mi, json_object_get(o, "input"), r, &e);
    r->dimensions = (int)dims;
    r->base64 = !strcmp(fmt, "base64");
    json_decref(o);
    return st;
}

/* The first `dims` values renormalised to unit L2 norm (Matryoshka truncation), as JSON numbers or as
 * base64 of little-endian float32 (OpenAI's encoding_format). */
static json_t *embedding_json(const float *x, int dims, bool base64) {
    double ss = 0;
    for (int i = 0; i < dims; i++) ss += (double)x[i] * x[i];
    float scale = ss > 0 ? (float)(1 / sqrt(ss)) : 0;
    if (!base64) {
        json_t *a = json_array();
        for (int i = 0; i < dims; i++) json_array_append_new(a, json_real(x[i] * scale));
        return a;
    }
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = (size_t)dims * 4;
    unsigned char *raw = malloc(n ? n : 1);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    json_t *j = NULL;
    if (raw && out) {
        for (int i = 0; i < dims; i++) {
            float v = x[i] * scale;
            uint32_t u;
            memcpy(&u, &v, 4);
            for (int k = 0; k < 4; k++) raw[4 * i + k] = (unsigned char)(u >> (8 * k));
        }
        size_t o = 0;
        for (size_t i = 0; i < n; i += 3) {
            uint32_t w = (uint32_t)raw[i] << 16 | (i + 1 < n ? (uint32_t)raw[i + 1] << 8 : 0) | (i + 2 < n ? raw[i + 2] : 0);
            out[o++] = b64[w >> 18 & 63], out[o++] = b64[w >> 12 & 63];
            out[o++] = i + 1 < n ? b64[w >> 6 & 63] : '=', out[o++] = i + 2 < n ? b64[w & 63] : '=';
        }
        j = json_stringn(out, o);
    }
    free(raw);
    free(out);
    return j;
}

char *openai_embeddings_json(const serve_model_info *mi, serve_req *r) {
    json_t *data = json_array();
    int tokens = 0, dims = r->dimensions > 0 ? r->dimensions : mi->hidden;
    for (int i = 0; i <= r->n_more; i++) {
        serve_req *c = i ? r->more[i - 1] : r;
        pthread_mutex_lock(&c->mu);
        json_t *emb = c->embedding ? embedding_json(c->embedding, dims, r->base64) : NULL;
        tokens += c->n_prompt;
        pthread_mutex_unlock(&c->mu);
        json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding", "index", i, "embedding", emb));
    }
    return dump(json_pack("{s:s, s:o, s:s, s:{s:i, s:i}}", "object", "list", "data", data, "model", mi->name, "usage",
                          "prompt_tokens", tokens, "total_tokens", tokens));
}
