/* responses.c — a stateless /v1/responses (OpenAI's Responses API) as far as the SDK's
 * client.responses.create needs: the request is rewritten as the chat request it means (instructions →
 * a system message, input items → messages, function_call / function_call_output → tool calls and
 * results, tools and text.format → their chat forms) and runs as one; only the answer's shape differs.
 * Nothing is stored: previous_response_id is refused, store is accepted (its default is true) and
 * nothing is kept. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"

/* Keys passed to the chat request as they are; the others are translated below or refused. */
static const char *const SAME[] = {"model", "temperature", "top_p", "seed", "stream", "parallel_tool_calls", NULL};
static const char *const DROPPED[] = {"store", "user", "metadata", NULL}; /* ask for nothing that changes the answer */

static bool listed(const char *const *keys, const char *k) {
    for (; *keys; keys++)
        if (!strcmp(*keys, k)) return true;
    return false;
}

/* A message's content: a string, or input_text / output_text parts joined. */
static json_t *content_text(json_t *c, size_t i, perr *e, int *st) {
    if (json_is_string(c)) return json_incref(c);
    strbuf t = {0};
    for (size_t k = 0; json_is_array(c) && k < json_array_size(c); k++) {
        json_t *p = json_array_get(c, k);
        const char *type = json_string_value(json_object_get(p, "type")), *text = json_string_value(json_object_get(p, "text"));
        if (!type || (strcmp(type, "input_text") && strcmp(type, "output_text")) || !text) {
            strbuf_free(&t);
            *st = perr_set(e, "input", "'input[%zu].content' parts must be input_text (only text is supported)", i);
            return NULL;
        }
        strbuf_puts(&t, text);
    }
    if (!json_is_array(c)) {
        *st = perr_set(e, "input", "'input[%zu].content' must be a string or a list of parts", i);
        return NULL;
    }
    json_t *j = json_stringn(t.p ? t.p : "", t.len);
    strbuf_free(&t);
    return j;
}

/* One input item as a chat message. */
static json_t *item_message(json_t *it, size_t i, perr *e, int *st) {
    const char *type = json_string_value(json_object_get(it, "type"));
    if (!json_is_object(it)) return *st = perr_set(e, "input", "'input[%zu]' must be an object", i), NULL;
    if (type && !strcmp(type, "function_call"))
        return json_pack("{s:s, s:n, s:[{s:O?, s:s, s:{s:O?, s:O?}}]}", "role", "assistant", "content", "tool_calls", "id",
                         json_object_get(it, "call_id"), "type", "function", "function", "name",
                         json_object_get(it, "name"), "arguments", json_object_get(it, "arguments"));
    if (type && !strcmp(type, "function_call_output"))
        return json_pack("{s:s, s:O?, s:O?}", "role", "tool", "tool_call_id", json_object_get(it, "call_id"), "content",
                         json_object_get(it, "output"));
    if (type && strcmp(type, "message"))
        return *st = perr_set(e, "input", "'input[%zu].type' %s is not supported (message, function_call, function_call_output)", i, type), NULL;
    json_t *text = content_text(json_object_get(it, "content"), i, e, st);
    if (!text) return NULL;
    return json_pack("{s:O?, s:o}", "role", json_object_get(it, "role"), "content", text);
}

static int translate_input(json_t *o, json_t *chat, perr *e) {
    json_t *msgs = json_array(), *in = json_object_get(o, "input"), *ins = json_object_get(o, "instructions");
    json_object_set_new(chat, "messages", msgs);
    if (json_is_string(ins)) json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "system", "content", ins));
    else if (ins && !json_is_null(ins)) return perr_set(e, "instructions", "'instructions' must be a string");
    if (json_is_string(in)) {
        json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "user", "content", in));
        return 0;
    }
    if (!json_is_array(in)) return perr_set(e, "input", "'input' must be a string or a list of items");
    int st = 0;
    for (size_t i = 0; i < json_array_size(in) && !st; i++) {
        json_t *m = item_message(json_array_get(in, i), i, e, &st);
        if (m) json_array_append_new(msgs, m);
    }
    return st;
}

/* tools [{type:function, name, description, parameters}] and tool_choice {type:function, name}. */
static int translate_tools(json_t *o, json_t *chat, perr *e) {
    json_t *tools = json_object_get(o, "tools"), *tc = json_object_get(o, "tool_choice");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) return perr_set(e, "tools", "'tools' must be a list");
        json_t *out = json_array();
        json_object_set_new(chat, "tools", out);
        for (size_t i = 0; i < json_array_size(tools); i++) {
            json_t *t = json_array_get(tools, i);
            const char *type = json_string_value(json_object_get(t, "type"));
            if (!type || strcmp(type, "function"))
                return perr_set(e, "tools", "'tools[%zu]': only function tools are supported", i);
            json_array_append_new(out, json_pack("{s:s, s:{s:O?, s:O?, s:O?}}", "type", "function", "function", "name",
                                                 json_object_get(t, "name"), "description", json_object_get(t, "description"),
                                                 "parameters", json_object_get(t, "parameters")));
        }
    }
    if (json_is_object(tc))
        json_object_set_new(chat, "tool_choice", json_pack("{s:s, s:{s:O?}}", "type", "function", "function", "name",
                                                           json_object_get(tc, "name")));
    else if (tc && !json_is_null(tc)) json_object_set(chat, "tool_choice", tc);
    return 0;
}

/* text.format → response_format; max_output_tokens → max_tokens. */
static int translate_text(json_t *o, json_t *chat, perr *e) {
    json_t *fmt = json_object_get(json_object_get(o, "text"), "format"), *mt = json_object_get(o, "max_output_tokens");
    if (mt && !json_is_null(mt)) json_object_set(chat, "max_tokens", mt);
    if (!fmt || json_is_null(fmt)) return 0;
    const char *type = json_string_value(json_object_get(fmt, "type"));
    if (!type) return perr_set(e, "text", "'text.format' must be an object with a 'type'");
    if (!strcmp(type, "json_schema"))
        json_object_set_new(chat, "response_format",
                            json_pack("{s:s, s:{s:O?, s:O?, s:O?}}", "type", "json_schema", "json_schema", "name",
                                      json_object_get(fmt, "name"), "schema", json_object_get(fmt, "schema"), "strict",
                                      json_object_get(fmt, "strict")));
    else json_object_set_new(chat, "response_format", json_pack("{s:s}", "type", type));
    return 0;
}

int openai_responses_parse(const serve_model_info *mi, const char *body, size_t len, serve_req *r, char *msg,
                           size_t msg_size, char *param, size_t param_size) {
    perr e = {msg, msg_size, param, param_size};
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return perr_set(&e, NULL, "the request body must be a JSON object");
    }
    json_t *chat = json_object(), *v;
    const char *key;
    int st = 0;
    json_object_foreach(o, key, v) {
        if (st || json_is_null(v) || listed(DROPPED, key)) continue;
        if (listed(SAME, key)) json_object_set(chat, key, v);
        else if (strcmp(key, "input") && strcmp(key, "instructions") && strcmp(key, "tools") && strcmp(key, "tool_choice") &&
                 strcmp(key, "text") && strcmp(key, "max_output_tokens"))
            st = perr_set(&e, key, "'%s' is not supported by this stateless /v1/responses", key);
    }
    if (!st && !json_object_get(o, "input")) st = perr_set(&e, "input", "'input' is required");
    if (!st) st = translate_input(o, chat, &e);
    if (!st) st = translate_tools(o, chat, &e);
    if (!st) st = translate_text(o, chat, &e);
    char *text = st ? NULL : json_dumps(chat, JSON_COMPACT);
    json_decref(chat);
    json_decref(o);
    if (!st && !text) st = perr_set(&e, NULL, "out of memory");
    if (!st) st = openai_parse(mi, REQ_CHAT, text, strlen(text), r, msg, msg_size, param, param_size);
    free(text);
    r->responses = true;
    return st;
}

/* ---- the answer ---- */

static json_t *output_items(serve_req *r) {
    json_t *out = json_array();
    if (r->content.len || !r->n_calls) {
        char id[64];
        snprintf(id, sizeof id, "msg_%s", r->id);
        json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s%, s:[]}]}", "type", "message", "id", id,
                                             "status", "completed", "role", "assistant", "content", "type", "output_text",
                                             "text", r->content.p ? r->content.p : "", r->content.len, "annotations"));
    }
    for (int i = 0; i < r->n_calls; i++) {
        char id[80], call[80];
        snprintf(id, sizeof id, "fc_%s_%d", r->id, i);
        snprintf(call, sizeof call, "call_%s_%d", r->id, i);
        json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "function_call", "id", id, "call_id",
                                             call, "name", r->calls[i].name, "arguments", r->calls[i].arguments, "status",
                                             "completed"));
    }
    return out;
}

/* The response object; done: with its output and usage (else in progress, empty). Caller holds r->mu. */
static json_t *response_object(const serve_model_info *mi, serve_req *r, bool done) {
    bool cut = done && r->finish == FIN_LENGTH;
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s, s:o, s:n, s:o, s:b}", "id", r->id, "object", "response", "created_at",
                          (json_int_t)r->created, "status", !done ? "in_progress" : cut ? "incomplete" : "completed", "model",
                          mi->name, "output", done ? output_items(r) : json_array(), "error", "incomplete_details",
                          cut ? json_pack("{s:s}", "reason", "max_output_tokens") : json_null(), "parallel_tool_calls", true);
    json_object_set_new(o, "usage", done ? json_pack("{s:i, s:i, s:i, s:{s:i}, s:{s:i}}", "input_tokens", r->n_prompt,
                                                     "output_tokens", r->n_gen, "total_tokens", r->n_prompt + r->n_gen,
                                                     "input_tokens_details", "cached_tokens", r->n_cached,
                                                     "output_tokens_details", "reasoning_tokens", 0)
                                         : json_null());
    return o;
}

char *responses_json(const serve_model_info *mi, serve_req *r) {
    json_t *o = response_object(mi, r, true);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* One SSE event "event: TYPE\ndata: {...,"type":TYPE,"sequence_number":n}\n\n" appended to out. */
static void event(strbuf *out, const char *type, json_t *o, serve_cursor *cur) {
    json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "sequence_number", json_integer(cur->lp++)); /* lp counts events here */
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s) strbuf_printf(out, "event: %s\ndata: %s\n\n", type, s);
    free(s);
}

char *responses_stream_events(const serve_model_info *mi, serve_req *r, serve_cursor *cur) {
    strbuf out = {0};
    char item[64];
    snprintf(item, sizeof item, "msg_%s", r->id);
    if (!cur->sent_role) {
        event(&out, "response.created", json_pack("{s:o}", "response", response_object(mi, r, false)), cur);
        cur->sent_role = true;
    }
    if (r->content.len > cur->content) {
        event(&out, "response.output_text.delta",
              json_pack("{s:s, s:i, s:i, s:s%}", "item_id", item, "output_index", 0, "content_index", 0, "delta",
                        r->content.p + cur->content, r->content.len - cur->content),
              cur);
        cur->content = r->content.len;
    }
    if (r->done && !cur->sent_finish) {
        if (r->finish != FIN_ERROR && r->finish != FIN_CANCELLED) {
            event(&out, "response.output_text.done",
                  json_pack("{s:s, s:i, s:i, s:s%}", "item_id", item, "output_index", 0, "content_index", 0, "text",
                            r->content.p ? r->content.p : "", r->content.len),
                  cur);
            event(&out, "response.completed", json_pack("{s:o}", "response", response_object(mi, r, true)), cur);
        }
        cur->sent_finish = true;
    }
    size_t n = 0;
    char *text = strbuf_take(&out, &n);
    if (text && !n) free(text), text = NULL;
    return text;
}
