/* test_generate.c — one sequence's generation state (kiln_gen_seq) with real tokenizers and
 * constructed ids or fake logits, no forward pass: --min-new-tokens / --max-new-tokens exactness, stop
 * strings spanning tokens, UTF-8-safe streaming through byte-fallback tokens, and the thinking split at
 * the last </think> (the Qwen3 recipe: index = len - ids[::-1].index(151668), ValueError → 0). */
#include <math.h>

#include "check.h"
#include "kiln.h"

static kiln_tokenizer *open_tok(const char *rel) {
    kiln_err err = {0};
    kiln_tokenizer *t = kiln_tokenizer_open(shared_path(rel), &err);
    if (!t) fprintf(stderr, "  open %s: %s\n", shared_path(rel), err.msg);
    return t;
}

/* Strict UTF-8: no stray continuation bytes, no truncated or overlong sequences, no surrogates. */
static bool utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n) return false;
        unsigned cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* What a streaming client sees: content and thinking pieces concatenated, each piece checked. */
typedef struct {
    char content[4096], thinking[4096];
    size_t nc, nt;
    int pieces, bad_pieces;
    size_t pushed; /* ids pushed before the sequence finished */
    kiln_finish finish;
} stream;

static void take(stream *s, const kiln_gen_step *st) {
    if (!st->text_len) return;
    s->pieces++;
    if (!utf8_valid(st->text, st->text_len)) s->bad_pieces++;
    char *dst = st->thinking ? s->thinking : s->content;
    size_t *n = st->thinking ? &s->nt : &s->nc;
    if (*n + st->text_len < sizeof s->content) {
        memcpy(dst + *n, st->text, st->text_len);
        *n += st->text_len;
        dst[*n] = 0;
    }
}

/* Pushes ids (as if sampled) until the sequence finishes. */
static void push_all(kiln_gen_seq *g, const int32_t *ids, size_t n, stream *s) {
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < n && s->finish == KILN_FINISH_NONE; i++) {
        kiln_gen_step st;
        CHECK(kiln_gen_seq_push(g, ids[i], &st) == 0, "push %zu failed", i);
        take(s, &st);
        s->finish = st.finish;
        s->pushed = i + 1;
    }
}

static void params_for(kiln_gen_params *p, int max_new, int min_new) {
    kiln_gen_params_default(p);
    p->max_new_tokens = max_new;
    p->min_new_tokens = min_new;
}

static const char *STORY = "Once upon a time, there was a little dog named Max.";
static const int32_t BOS = 1, EOS = 2; /* stories260K */

/* ---- min / max new tokens (fake logits, greedy) ---- */

/* logits where EOS is the argmax and `other` the runner-up */
static void eos_first(float *l, int V, int32_t other) {
    for (int i = 0; i < V; i++) l[i] = 0;
    l[EOS] = 10;
    l[other] = 5;
}

TEST(min_new_tokens_suppresses_eos) {
    kiln_tokenizer *t = open_tok("models/stories260K");
    REQUIRE(t, "stories260K tokenizer");
    int V = (int)kiln_tokenizer_vocab_size(t);
    /* MinNewTokensLengthLogitsProcessor suppresses EOS while new_tokens_length < min: tokens 1..5 can't
     * be EOS, token 6 can. So min 5 with EOS always the argmax: 5 × 300, then EOS (6 ids, "eos"). */
    for (int min = 0; min <= 5; min += 5) {
        kiln_gen_params p;
        params_for(&p, 20, min);
        kiln_gen_params_add_eos(&p, EOS);
        kiln_err err = {0};
        int32_t prompt[1] = {BOS};
        kiln_gen_seq *g = kiln_gen_seq_new(t, &p, prompt, 1, V, &err);
        REQUIRE(g, "%s", err.msg);
        float *l = malloc((size_t)V * sizeof *l);
        kiln_gen_step st = {0};
        int steps = 0;
        while (st.finish == KILN_FINISH_NONE && steps < 30) {
            eos_first(l, V, 300);
            CHECK(kiln_gen_seq_step(g, l, &st) == 0, "step");
            steps++;
        }
        size_t n;
        const int32_t *ids = kiln_gen_seq_ids(g, &n);
        CHECK(n == (size_t)min + 1 && st.finish == KILN_FINISH_EOS, "min %d: %zu ids, finish %s", min, n,
              kiln_finish_name(st.finish));
        for (size_t i = 0; i + 1 < n; i++) CHECK(ids[i] == 300, "min %d: id %zu = %d", min, i, ids[i]);
        CHECK(n && ids[n - 1] == EOS, "min %d: last id is not EOS", min);
        free(l);
        kiln_gen_seq_free(g);
    }
    kiln_tokenizer_free(t);
}

TEST(max_new_tokens_exact) {
    kiln_tokenizer *t = open_tok("models/stories260K");
    REQUIRE(t, "stories260K tokenizer");
    int V = (int)kiln_tokenizer_vocab_size(t);
    /* (max, min, EOS favoured): (7, 0, no) → 7 ids "length"; (7, 7, yes) → EOS suppressed for all 7
     * → 7 ids "length"; (1, 0, no) → 1 id. Steps after the finish add nothing. */
    struct { int max, min; bool eos; } cases[] = {{7, 0, false}, {7, 7, true}, {1, 0, false}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        kiln_gen_params p;
        params_for(&p, cases[c].max, cases[c].min);
        kiln_gen_params_add_eos(&p, EOS);
        kiln_err err = {0};
        int32_t prompt[1] = {BOS};
        kiln_gen_seq *g = kiln_gen_seq_new(t, &p, prompt, 1, V, &err);
        REQUIRE(g, "%s", err.msg);
        float *l = malloc((size_t)V * sizeof *l);
        kiln_gen_step st;
        for (int s = 0; s < cases[c].max + 3; s++) {
            eos_first(l, V, 300);
            if (!cases[c].eos) l[EOS] = -10;
            kiln_gen_seq_step(g, l, &st);
        }
        size_t n;
        const int32_t *ids = kiln_gen_seq_ids(g, &n);
        CHECK(n == (size_t)cases[c].max, "case %zu: %zu ids, want %d", c, n, cases[c].max);
        CHECK(st.finish == KILN_FINISH_LENGTH, "case %zu: finish %s", c, kiln_finish_name(st.finish));
        for (size_t i = 0; i < n; i++) CHECK(ids[i] == 300, "case %zu: id %zu = %d", c, i, ids[i]);
        free(l);
        kiln_gen_seq_free(g);
    }
    kiln_tokenizer_free(t);
}

/* ---- stop strings ---- */

/* Runs STORY's ids through a sequence with the given stops; returns the stream. */
static void story_with_stops(kiln_tokenizer *t, const char **stops, int n_stop, int min_new, stream *s,
                             int32_t **ids_out, size_t *n_out) {
    kiln_err err = {0};
    int32_t *ids;
    size_t n;
    CHECK(kiln_encode(t, STORY, strlen(STORY), false, &ids, &n, &err) == 0, "%s", err.msg);
    kiln_gen_params p;
    params_for(&p, (int)n, min_new);
    for (int i = 0; i < n_stop; i++) p.stop[p.n_stop++] = stops[i];
    int32_t prompt[1] = {BOS};
    kiln_gen_seq *g = kiln_gen_seq_new(t, &p, prompt, 1, (int)kiln_tokenizer_vocab_size(t), &err);
    if (!g) {
        CHECK(g, "%s", err.msg);
        free(ids);
        return;
    }
    push_all(g, ids, n, s);
    char *content, *thinking;
    if (kiln_gen_seq_result(g, &content, &thinking, &err) == 0) {
        CHECK(!strcmp(content, s->content), "result '%s' != streamed '%s'", content, s->content);
        CHECK(!*thinking, "thinking '%s'", thinking);
        free(content);
        free(thinking);
    }
    kiln_gen_seq_free(g);
    *ids_out = ids;
    *n_out = n;
}

TEST(stop_strings_spanning_tokens) {
    kiln_tokenizer *t = open_tok("models/stories260K");
    REQUIRE(t, "stories260K tokenizer");
    /* STORY's tokens: Once|upon|a|time|,|there|was|a|little|do|g|named|M|a|x|.  (▁ = space)
     *   "there was": 2 tokens (▁there ▁was)             "dog named": 3 (▁do g ▁named)
     *   "e w": cuts inside ▁there and ▁was              " Max": 3 (▁M a x), ends before "."
     * For each, the streamed text must be exactly STORY up to the stop (stop never printed), the finish
     * "stop", and the sequence must end on the token that completes the stop string. */
    const char *stops[] = {"there was", "dog named", "e w", " Max"};
    for (int k = 0; k < 4; k++) {
        stream s;
        int32_t *ids = NULL;
        size_t n = 0;
        story_with_stops(t, &stops[k], 1, 0, &s, &ids, &n);
        if (!ids) continue;
        const char *at = strstr(STORY, stops[k]);
        size_t cut = (size_t)(at - STORY);
        CHECK(s.nc == cut && !memcmp(s.content, STORY, cut), "stop '%s': streamed '%s'", stops[k], s.content);
        CHECK(!strstr(s.content, stops[k]), "stop '%s' was printed", stops[k]);
        CHECK(s.finish == KILN_FINISH_STOP, "stop '%s': finish %s", stops[k], kiln_finish_name(s.finish));
        /* the tokens the stop string spans, from prefix decodes: first token reaching past `cut`, and
         * the token whose decode first contains the whole stop */
        size_t first = 0, last = 0;
        for (size_t i = 1; i <= n; i++) {
            char *d = kiln_decode(t, ids, i, true, NULL);
            if (!first && d && strlen(d) > cut) first = i;
            if (!last && d && strstr(d, stops[k])) last = i;
            free(d);
        }
        CHECK(last - first + 1 >= 2, "stop '%s' spans %zu token(s), want a multi-token case", stops[k],
              last - first + 1);
        CHECK(s.pushed == last, "stop '%s': finished after %zu ids, want %zu", stops[k], s.pushed, last);
        free(ids);
    }
    kiln_tokenizer_free(t);
}

TEST(stop_strings_near_miss_and_earliest) {
    kiln_tokenizer *t = open_tok("models/stories260K");
    REQUIRE(t, "stories260K tokenizer");
    stream s;
    int32_t *ids = NULL;
    size_t n = 0;
    /* "there is" shares "there " with the text: held back, then released when "was" arrives */
    const char *miss[] = {"there is", "Max!"};
    story_with_stops(t, miss, 2, 0, &s, &ids, &n);
    CHECK(!strcmp(s.content, STORY) && s.finish == KILN_FINISH_LENGTH, "near miss: '%s' (%s)", s.content,
          kiln_finish_name(s.finish));
    free(ids);
    /* two stops: the one that appears first in the text wins ("there" before "little") */
    const char *two[] = {"little", "there"};
    story_with_stops(t, two, 2, 0, &s, &ids, &n);
    CHECK(!strcmp(s.content, "Once upon a time, ") && s.finish == KILN_FINISH_STOP, "earliest: '%s'", s.content);
    free(ids);
    kiln_tokenizer_free(t);
}

TEST(min_new_tokens_suppresses_stop) {
    kiln_tokenizer *t = open_tok("models/stories260K");
    REQUIRE(t, "stories260K tokenizer");
    /* "there was" completes at token 7. min_new_tokens 10: not a stop yet, everything is printed and the
     * sequence runs to max (= all 16 ids). min_new_tokens 7: active exactly when it completes → stop. */
    const char *stop[] = {"there was"};
    stream s;
    int32_t *ids = NULL;
    size_t n = 0;
    story_with_stops(t, stop, 1, 10, &s, &ids, &n);
    CHECK(!strcmp(s.content, STORY) && s.finish == KILN_FINISH_LENGTH && s.pushed == n,
          "min 10: '%s' (%s, %zu ids)", s.content, kiln_finish_name(s.finish), s.pushed);
    free(ids);
    story_with_stops(t, stop, 1, 7, &s, &ids, &n);
    CHECK(!strcmp(s.content, "Once upon a time, ") && s.finish == KILN_FINISH_STOP && s.pushed == 7,
          "min 7: '%s' (%s, %zu ids)", s.content, kiln_finish_name(s.finish), s.pushed);
    free(ids);
    kiln_tokenizer_free(t);
}

/* ---- UTF-8-safe streaming through byte-fallback tokens ---- */

/* Encodes text, streams its ids; every piece valid UTF-8 and the pieces add up to the full decode. */
static void stream_text(const char *tok_dir, const char *text, const char *stop, int min_bytes_tokens) {
    kiln_tokenizer *t = open_tok(tok_dir);
    REQUIRE(t, "%s tokenizer", tok_dir);
    kiln_err err = {0};
    int32_t *ids;
    size_t n;
    REQUIRE(kiln_encode(t, text, strlen(text), false, &ids, &n, &err) == 0, "%s", err.msg);
    /* count byte-fallback tokens (vocab pieces "<0xE4>"...): the case under test must have many */
    int bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const char *piece = kiln_token_str(t, ids[i]);
        if (piece && strlen(piece) == 6 && !strncmp(piece, "<0x", 3) && piece[5] == '>') bytes++;
    }
    CHECK(bytes >= min_bytes_tokens, "%s: only %d byte-fallback tokens", tok_dir, bytes);
    size_t full_len;
    char *full = kiln_decode(t, ids, n, true, &full_len);
    kiln_gen_params p;
    params_for(&p, (int)n, 0);
    if (stop) p.stop[p.n_stop++] = stop;
    kiln_gen_seq *g = kiln_gen_seq_new(t, &p, NULL, 0, (int)kiln_tokenizer_vocab_size(t), &err);
    if (g && full) {
        stream s;
        push_all(g, ids, n, &s);
        size_t want = stop ? (size_t)(strstr(full, stop) - full) : full_len;
        CHECK(s.bad_pieces == 0, "%s: %d of %d streamed pieces are broken UTF-8", tok_dir, s.bad_pieces, s.pieces);
        CHECK(s.nc == want && !memcmp(s.content, full, want), "%s: streamed '%s' != decode '%.*s'", tok_dir,
              s.content, (int)want, full);
        CHECK(s.pieces > 3, "%s: only %d pieces streamed", tok_dir, s.pieces);
        CHECK(s.finish == (stop ? KILN_FINISH_STOP : KILN_FINISH_LENGTH), "finish %s", kiln_finish_name(s.finish));
    }
    CHECK(g != NULL, "%s", err.msg);
    kiln_gen_seq_free(g);
    free(full);
    free(ids);
    kiln_tokenizer_free(t);
}

TEST(chinese_through_byte_fallback) {
    /* stories260K has 512 pieces: every CJK character is 3 byte tokens (<0xE4><0xBD><0xA0> ...) */
    const char *zh = "从前有一个小女孩，她喜欢在公园里玩。Once upon a time 🙂 café";
    stream_text("models/stories260K", zh, NULL, 40);
    /* a stop string made of byte tokens, 6 of them: cut at a character boundary, never printed */
    stream_text("models/stories260K", zh, "公园", 40);
    /* llama2's 32000 pieces hold common CJK characters; rarer ones and emoji fall back to bytes */
    stream_text("tokenizers/llama2", "你好，世界！龘靐齉 🙂🚀 naïve", NULL, 8);
}

/* ---- thinking split (Qwen3: </think> = 151668) ---- */

TEST(think_split_ids) {
    /* index = len(ids) - ids[::-1].index(151668), 0 when absent */
    int32_t one[] = {151667, 10, 11, 151668, 271, 12};
    int32_t two[] = {151667, 10, 151668, 11, 151668, 12, 13};
    int32_t none[] = {10, 11, 12};
    CHECK(kiln_think_split(one, 6, 151668) == 4, "one: %zu", kiln_think_split(one, 6, 151668));
    CHECK(kiln_think_split(two, 7, 151668) == 5, "two (last wins): %zu", kiln_think_split(two, 7, 151668));
    CHECK(kiln_think_split(none, 3, 151668) == 0, "none: %zu", kiln_think_split(none, 3, 151668));
    CHECK(kiln_think_split(NULL, 0, 151668) == 0, "empty");
    CHECK(kiln_think_split(one, 6, -1) == 0, "no think token in the vocabulary");
    int32_t at_end[] = {10, 151668};
    CHECK(kiln_think_split(at_end, 2, 151668) == 2, "at end: all thinking, empty content");
}

/* The recipe: thinking = decode(ids[:index]).strip("\n"), content = decode(ids[index:]).strip("\n");
 * kiln_gen_seq_result gives the same content, and the same thinking with the think tags removed
 * before the strip (the recipe's thinking keeps "<think>\n...\n</think>" as Qwen3's tags are not
 * special tokens; kiln returns just the reasoning). */
static char *strip_nl(char *s) {
    char *b = s;
    while (*b == '\n') b++;
    size_t n = strlen(b);
    while (n && b[n - 1] == '\n') n--;
    memmove(s, b, n);
    s[n] = 0;
    return s;
}

static void remove_all(char *s, const char *what) {
    size_t w = strlen(what);
    for (char *at; (at = strstr(s, what));) memmove(at, at + w, strlen(at + w) + 1);
}

static void think_case(kiln_tokenizer *t, const char *prompt_text, const char *gen_text) {
    kiln_err err = {0};
    int32_t *prompt = NULL, *ids = NULL;
    size_t np = 0, n = 0;
    CHECK(kiln_encode(t, prompt_text, strlen(prompt_text), false, &prompt, &np, &err) == 0, "%s", err.msg);
    CHECK(kiln_encode(t, gen_text, strlen(gen_text), false, &ids, &n, &err) == 0, "%s", err.msg);
    kiln_gen_params p;
    params_for(&p, (int)n, 0);
    kiln_gen_seq *g = kiln_gen_seq_new(t, &p, prompt, np, (int)kiln_tokenizer_vocab_size(t), &err);
    if (!g || !ids) {
        CHECK(0, "setup: %s", err.msg);
        goto done;
    }
    stream s;
    push_all(g, ids, n, &s);
    size_t idx = kiln_think_split(ids, n, 151668);
    char *want_think = kiln_decode(t, ids, idx, true, NULL);
    char *want_content = strip_nl(kiln_decode(t, ids + idx, n - idx, true, NULL));
    remove_all(want_think, "<think>");
    remove_all(want_think, "</think>");
    strip_nl(want_think);
    char *content = NULL, *thinking = NULL;
    CHECK(kiln_gen_seq_result(g, &content, &thinking, &err) == 0, "%s", err.msg);
    CHECK(content && !strcmp(content, want_content), "'%s': content '%s', want '%s'", gen_text, content,
          want_content);
    CHECK(thinking && !strcmp(thinking, want_think), "'%s': thinking '%s', want '%s'", gen_text, thinking,
          want_think);
    /* streamed: the tags never printed; with one </think> at most, the content stream is the content
     * (a second </think> turns text already streamed as content into thinking: only the result knows) */
    CHECK(!strstr(s.content, "think>") && !strstr(s.thinking, "think>"), "a think tag was streamed");
    size_t ends = 0;
    for (size_t i = 0; i < n; i++) ends += ids[i] == 151668;
    if (ends <= 1) CHECK(!strcmp(strip_nl(s.content), want_content), "streamed content '%s'", s.content);
    free(want_think);
    free(want_content);
    free(content);
    free(thinking);
done:
    kiln_gen_seq_free(g);
    free(prompt);
    free(ids);
}

TEST(thinking_split_in_gen_seq) {
    kiln_tokenizer *t = open_tok("tokenizers/qwen3");
    REQUIRE(t, "qwen3 tokenizer");
    REQUIRE(kiln_token_id(t, "</think>") == 151668, "</think> is %d", kiln_token_id(t, "</think>"));
    const char *user = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    /* the model opens <think> itself */
    think_case(t, user, "<think>\nLet me think.\n</think>\n\nThe answer is 42.");
    /* no </think>: all content, empty thinking */
    think_case(t, user, "The answer is 42.");
    /* the template opened <think> in the prompt (enable_thinking): the generated part has only </think> */
    think_case(t, "<|im_start|>assistant\n<think>\n", "Hmm, two plus two.\n</think>\n\nFour.");
    /* two </think>: the split is at the LAST one */
    think_case(t, user, "<think>\na</think>b\n</think>\n\nc");
    /* --think off renders an empty think block into the prompt: everything generated is content */
    think_case(t, "<|im_start|>assistant\n<think>\n\n</think>\n\n", "Just the answer.");
    kiln_tokenizer_free(t);
}

/* Streaming flags: pieces before </think> are marked thinking, after it content. */
TEST(thinking_stream_flags) {
    kiln_tokenizer *t = open_tok("tokenizers/qwen3");
    REQUIRE(t, "qwen3 tokenizer");
    const char *text = "<think>\nstep one, step two\n</think>\n\nDone.";
    kiln_err err = {0};
    int32_t *ids;
    size_t n;
    REQUIRE(kiln_encode(t, text, strlen(text), false, &ids, &n, &err) == 0, "%s", err.msg);
    kiln_gen_params p;
    params_for(&p, (int)n, 0);
    kiln_gen_seq *g = kiln_gen_seq_new(t, &p, NULL, 0, (int)kiln_tokenizer_vocab_size(t), &err);
    if (g) {
        stream s;
        push_all(g, ids, n, &s);
        CHECK(!strcmp(s.thinking, "\nstep one, step two\n"), "thinking stream '%s'", s.thinking);
        CHECK(!strcmp(s.content, "\n\nDone."), "content stream '%s'", s.content);
    }
    CHECK(g, "%s", err.msg);
    kiln_gen_seq_free(g);
    free(ids);
    kiln_tokenizer_free(t);
}

int main(void) {
    RUN(min_new_tokens_suppresses_eos);
    RUN(max_new_tokens_exact);
    RUN(stop_strings_spanning_tokens);
    RUN(stop_strings_near_miss_and_earliest);
    RUN(min_new_tokens_suppresses_stop);
    RUN(chinese_through_byte_fallback);
    RUN(think_split_ids);
    RUN(thinking_split_in_gen_seq);
    RUN(thinking_stream_flags);
    return check_done();
}
