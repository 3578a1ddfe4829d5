/* test_grammar.c — constrained decoding: each front end's language (accept / reject), its errors, the
 * token masks over real vocabularies, logit_bias, and the real test: a random-weight model sampling
 * under a grammar (several seeds) must produce output that parses and validates, checked here by
 * independent means (jansson, POSIX regular expressions), not by the grammar engine itself. */
#include <jansson.h>
#include <math.h>
#include <regex.h>

#include "check.h"
#include "kiln.h"

static bool posix_match(const char *pattern, const char *s) {
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB)) return false;
    bool ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

static bool acc(const kiln_grammar *g, const char *s) { return kiln_grammar_accepts(g, s, strlen(s)); }

/* Checks each of yes[] is in the language and each of no[] is not. */
static void check_language(kiln_grammar *g, const char *const *yes, const char *const *no) {
    for (int i = 0; yes[i]; i++) CHECK(acc(g, yes[i]), "should accept '%s'", yes[i]);
    for (int i = 0; no[i]; i++) CHECK(!acc(g, no[i]), "should reject '%s'", no[i]);
}

static void check_error(kiln_grammar *g, const kiln_err *e, const char *needle) {
    CHECK(!g, "expected an error mentioning '%s'", needle);
    CHECK(strstr(e->msg, needle), "error '%s' should mention '%s'", e->msg, needle);
    kiln_grammar_free(g);
}

TEST(gbnf_language) {
    kiln_err e = {{0}};
    kiln_grammar *g = kiln_grammar_from_gbnf("# a greeting\n"
                                             "root ::= greet \", \" name (\"!\" | \"?\")? # trailing\n"
                                             "greet ::= \"hello\" | \"hi\"\n"
                                             "name ::= ( [A-Z] [a-z\\u00e0-\\u00ff]{1,4}\n"
                                             "  | \"\\u4e16\"+ ) # newlines inside parentheses\n",
                                             &e);
    REQUIRE(g, "%s", e.msg);
    check_language(g, (const char *[]){"hello, Bob", "hi, Zoé!", "hi, \xE4\xB8\x96\xE4\xB8\x96?", "hello, Abcde", NULL},
                   (const char *[]){"hello, B", "hey, Bob", "hi, Abcdef", "hi, bob", "hello, Bob!!", "", NULL});
    kiln_grammar_free(g);
    g = kiln_grammar_from_gbnf("root ::= (\"a\" | [x-z]){2,3} [^abc\\n]* .\n", &e);
    REQUIRE(g, "%s", e.msg);
    check_language(g, (const char *[]){"aaZ", "xyz\xE2\x82\xAC", "aza\xF0\x9F\x98\x80" "d", NULL},
                   (const char *[]){"a", "aaaaZ", "aab\n", "aa\n\n", NULL});
    kiln_grammar_free(g);
}

/* Each source must fail with an error that names the problem. */
static void check_errors(kiln_grammar *(*compile)(const char *, kiln_err *), const char *const (*cases)[2]) {
    for (int i = 0; cases[i][0]; i++) {
        kiln_err e = {{0}};
        check_error(compile(cases[i][0], &e), &e, cases[i][1]);
    }
}

TEST(gbnf_errors) {
    static const char *const cases[][2] = {{"root ::= item\n", "'item' is used but never defined"},
                                           {"root ::= root \"a\" | \"b\"\n", "left-recursive"},
                                           {"start ::= \"a\"\n", "no 'root'"},
                                           {"root ::= \"a\n", "line 1"},
                                           {"root ::= \"a\"\nroot ::= \"b\"\n", "defined twice"},
                                           {"root ::= [b-a]\n", "out of order"},
                                           {"root ::= * \"a\"\n", "repetition operator"},
                                           {NULL, NULL}};
    check_errors(kiln_grammar_from_gbnf, cases);
}

TEST(regex_language) {
    kiln_err e = {{0}};
    kiln_grammar *g = kiln_grammar_from_regex("^(?:[A-Z][a-z]+|\\d{3}-\\d{2,})\\s?(x|y)*\\.?$", &e);
    REQUIRE(g, "%s", e.msg);
    check_language(g, (const char *[]){"Hello", "123-45 xy.", "123-456789", "Ab\tyyy", NULL},
                   (const char *[]){"hello", "12-45", "123-4", "Ab  x", "Ab.x", NULL});
    kiln_grammar_free(g);
    g = kiln_grammar_from_regex("[^\\d\\s]{2}\\W.+?", &e);
    REQUIRE(g, "%s", e.msg);
    check_language(g, (const char *[]){"ab!c", "\xC3\xA9\xC3\xA9-zz", NULL}, (const char *[]){"a1!c", "ab!", "abc\n", NULL});
    kiln_grammar_free(g);
    static const char *const bad[][2] = {{"(a)\\1", "backreferences"}, {"a(?=b)", "lookaround"}, {"a\\bc", "word boundaries"},
                                         {"(ab", "missing ')'"}, {"a++", "possessive"}, {NULL, NULL}};
    check_errors(kiln_grammar_from_regex, bad);
}

TEST(choice_language) {
    kiln_err e = {{0}};
    const char *choices[] = {"red", "green", "light \"blue\""};
    kiln_grammar *g = kiln_grammar_from_choice(choices, 3, &e);
    REQUIRE(g, "%s", e.msg);
    check_language(g, (const char *[]){"red", "green", "light \"blue\"", NULL}, (const char *[]){"re", "redgreen", "blue", "", NULL});
    kiln_grammar_free(g);
    check_error(kiln_grammar_from_choice(choices, 0, &e), &e, "empty");
}

static const char PERSON[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"maxLength\":12},"
    "\"age\":{\"type\":\"integer\"},"
    "\"ok\":{\"type\":\"boolean\"},"
    "\"role\":{\"enum\":[\"admin\",\"user\",null]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":6},\"minItems\":1,\"maxItems\":3},"
    "\"when\":{\"type\":\"string\",\"format\":\"date\"},"
    "\"code\":{\"type\":\"string\",\"pattern\":\"^[a-f0-9]{4}-[0-9]{2}$\"}},"
    "\"required\":[\"name\",\"age\",\"role\",\"tags\"],\"additionalProperties\":false}";

TEST(json_schema_language) {
    kiln_err e = {{0}};
    kiln_grammar *g = kiln_grammar_from_json_schema(PERSON, &e);
    REQUIRE(g, "%s", e.msg);
    check_language(g,
                   (const char *[]){"{\"name\":\"Al\",\"age\":3,\"role\":\"admin\",\"tags\":[\"x\"]}",
                                    "{ \"name\": \"\\u00e9\\\"\", \"age\": -40, \"ok\": true, \"role\": null, \"tags\": [\"a\", \"b\", \"c\"] }",
                                    "{\"name\":\"\",\"age\":0,\"role\":\"user\",\"tags\":[\"\"],\"when\":\"2024-02-29\",\"code\":\"beef-07\"}",
                                    NULL},
                   (const char *[]){"{\"age\":3,\"role\":\"admin\",\"tags\":[\"x\"]}",                       /* name missing */
                                    "{\"name\":\"Al\",\"age\":3,\"role\":\"admin\",\"tags\":[]}",             /* minItems */
                                    "{\"name\":\"Al\",\"age\":3,\"role\":\"admin\",\"tags\":[\"a\",\"b\",\"c\",\"d\"]}",
                                    "{\"name\":\"Al\",\"age\":3.5,\"role\":\"admin\",\"tags\":[\"x\"]}",      /* integer */
                                    "{\"name\":\"Al\",\"age\":3,\"role\":\"root\",\"tags\":[\"x\"]}",         /* enum */
                                    "{\"name\":\"Al\",\"age\":3,\"role\":\"user\",\"tags\":[\"x\"],\"extra\":1}",
                                    "{\"name\":\"Abcdefghijklm\",\"age\":3,\"role\":\"user\",\"tags\":[\"x\"]}", /* maxLength */
                                    "{\"name\":\"Al\",\"age\":3,\"role\":\"user\",\"tags\":[\"x\"],\"when\":\"2024-13-01\"}",
                                    "{\"name\":\"Al\",\"age\":3,\"role\":\"user\",\"tags\":[\"x\"],\"code\":\"BEEF-07\"}",
                                    "{\"age\":3,\"name\":\"Al\",\"role\":\"user\",\"tags\":[\"x\"]}", /* declared order */
                                    NULL});
    kiln_grammar_free(g);
    /* $ref / $defs (recursive), anyOf, const, type lists, additional properties by schema */
    g = kiln_grammar_from_json_schema("{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"const\":1},"
                                      "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}},"
                                      "\"anyOf\":[{\"$ref\":\"#/$defs/node\"},{\"type\":[\"number\",\"null\"]},"
                                      "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\",\"format\":\"uuid\"}}]}",
                                      &e);
    REQUIRE(g, "%s", e.msg);
    check_language(g, (const char *[]){"{\"v\":1,\"kids\":[{\"v\":1},{\"v\":1,\"kids\":[]}]}", "-1.5e3", "null", "{}",
                                       "{\"k\":\"123e4567-e89b-12d3-a456-426614174000\"}", NULL},
                   (const char *[]){"{\"v\":2}", "{\"v\":1,\"kids\":[{}]}", "{\"k\":\"nope\"}", "\"s\"", NULL});
    kiln_grammar_free(g);
    g = kiln_grammar_from_json_schema("{\"type\":\"object\"}", &e); /* json_object mode: any object */
    REQUIRE(g, "%s", e.msg);
    check_language(g, (const char *[]){"{}", "{\"a\":[1,{\"b\":null}],\"c\":\"d\"}", NULL}, (const char *[]){"[]", "{\"a\"}", "1", NULL});
    kiln_grammar_free(g);
}

/* minimum / maximum (inclusive and exclusive) on integers, checked against every integer in -1500..1500. */
TEST(json_schema_integer_ranges) {
    static const struct {
        const char *schema;
        long lo, hi;
    } cases[] = {{"{\"type\":\"integer\",\"minimum\":0}", 0, 1500},
                 {"{\"type\":\"integer\",\"minimum\":17,\"maximum\":342}", 17, 342},
                 {"{\"type\":\"integer\",\"minimum\":-25,\"exclusiveMaximum\":7}", -25, 6},
                 {"{\"type\":\"integer\",\"maximum\":-3}", -1500, -3},
                 {"{\"type\":\"integer\",\"exclusiveMinimum\":99,\"maximum\":1000}", 100, 1000}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        kiln_err e = {{0}};
        kiln_grammar *g = kiln_grammar_from_json_schema(cases[k].schema, &e);
        REQUIRE(g, "%s: %s", cases[k].schema, e.msg);
        int wrong = 0;
        for (long x = -1500; x <= 1500; x++) {
            char s[24];
            snprintf(s, sizeof s, "%ld", x);
            wrong += acc(g, s) != (x >= cases[k].lo && x <= cases[k].hi);
        }
        CHECK(wrong == 0 && !acc(g, "007") && !acc(g, "-0"), "%s: %d integers misjudged", cases[k].schema, wrong);
        kiln_grammar_free(g);
    }
}

TEST(json_schema_errors) {
    static const char *const cases[][2] = {
        {"{\"type\":\"integer\",\"multipleOf\":2}", "unsupported keyword 'multipleOf'"},
        {"{\"type\":\"number\",\"minimum\":0.5}", "not supported"},
        {"{\"type\":\"integer\",\"format\":\"int32\"}", "format on type 'integer'"},
        {"{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "range is empty"},
        {"{\"allOf\":[]}", "'allOf'"},
        {"{\"type\":\"string\",\"format\":\"hostname\"}", "format 'hostname'"},
        {"{\"$ref\":\"#/$defs/missing\"}", "not found"},
        {"{\"type\":\"string\",\"pattern\":\"(a\"}", "pattern"},
        {"{\"type\":\"object\",\"properties\":{},\"required\":[\"x\"]}", "'x'"},
        {"{\"type\":\"array\",\"minItems\":3,\"maxItems\":1}", "maxItems"},
        {"{\"type\":\"strin\"}", "unknown type 'strin'"},
        {"{not json", "not JSON"},
        {NULL, NULL}};
    check_errors(kiln_grammar_from_json_schema, cases);
}

static const char *const TOOL_NAMES[] = {"get_weather", "add"};
static const char *const TOOL_PARAMS[] = {
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":10},"
    "\"unit\":{\"enum\":[\"C\",\"F\"]}},\"required\":[\"city\"]}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":99},"
    "\"b\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":99}},\"required\":[\"a\",\"b\"]}"};

TEST(tools_language) {
    kiln_err e = {{0}};
    kiln_grammar *g = kiln_grammar_from_tools(TOOL_NAMES, TOOL_PARAMS, 2, "<tool_call>\n", "\n</tool_call>", "\n", 2, &e);
    REQUIRE(g, "%s", e.msg);
    check_language(g,
                   (const char *[]){"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
                                    "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":99}}\n</tool_call>\n"
                                    "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"\",\"unit\":\"F\"}}\n</tool_call>",
                                    NULL},
                   (const char *[]){"<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1}}\n</tool_call>",       /* b missing */
                                    "<tool_call>\n{\"name\":\"sub\",\"arguments\":{\"a\":1,\"b\":2}}\n</tool_call>", /* no such tool */
                                    "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":100,\"b\":2}}\n</tool_call>",
                                    "{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}", NULL});
    kiln_grammar_free(g);
    const char *bad[] = {"{\"type\":\"object\",\"patternProperties\":{}}"};
    check_error(kiln_grammar_from_tools(TOOL_NAMES, bad, 1, "", "", "", 1, &e), &e, "tool 'get_weather' parameters");
}

static kiln_tokenizer *open_tok(const char *rel) {
    kiln_err e = {{0}};
    kiln_tokenizer *t = kiln_tokenizer_open(shared_path(rel), &e);
    if (!t) fprintf(stderr, "  open %s: %s\n", rel, e.msg);
    return t;
}

static bool bytes_are(const kiln_grammar_vocab *v, int32_t id, const char *want) {
    size_t n;
    const char *b = kiln_grammar_vocab_bytes(v, id, &n);
    return b && n == strlen(want) && !memcmp(b, want, n);
}

TEST(vocab_bytes) {
    kiln_err e = {{0}};
    kiln_tokenizer *t = open_tok("models/tiny-qwen3");
    REQUIRE(t, "tiny-qwen3 tokenizer");
    kiln_grammar_vocab *v = kiln_grammar_vocab_new(t, &e);
    REQUIRE(v, "%s", e.msg);
    int32_t the = kiln_token_id(t, "\xC4\xA0the"); /* byte-level "Ġthe" */
    CHECK(the >= 0 && bytes_are(v, the, " the"), "' the' id %d", (int)the);
    int32_t eos = kiln_tokenizer_specials(t)->eos_id;
    size_t n = 1;
    CHECK(eos >= 0 && kiln_grammar_vocab_bytes(v, eos, &n) && n == 0, "special tokens have no bytes (%zu)", n);
    kiln_grammar_vocab_free(v);
    kiln_tokenizer_free(t);
    t = open_tok("models/stories260K"); /* SentencePiece-style with byte fallback */
    REQUIRE(t, "stories260K tokenizer");
    v = kiln_grammar_vocab_new(t, &e);
    REQUIRE(v, "%s", e.msg);
    int32_t sp = kiln_token_id(t, "\xE2\x96\x81" "a"), byte = kiln_token_id(t, "<0x41>");
    CHECK(sp >= 0 && bytes_are(v, sp, " a"), "'\u2581a' id %d should add ' a'", (int)sp);
    CHECK(byte >= 0 && bytes_are(v, byte, "A"), "<0x41> id %d should add 'A'", (int)byte);
    kiln_grammar_vocab_free(v);
    kiln_tokenizer_free(t);
}

/* Masks on the real Qwen3 vocabulary: only continuations survive, EOS only at the end. */
TEST(mask_over_vocab) {
    kiln_err e = {{0}};
    kiln_tokenizer *t = open_tok("models/tiny-qwen3");
    REQUIRE(t, "tiny-qwen3 tokenizer");
    kiln_grammar_vocab *v = kiln_grammar_vocab_new(t, &e);
    const char *choices[] = {"yes", "yesterday"};
    kiln_grammar *g = kiln_grammar_from_choice(choices, 2, &e);
    kiln_grammar_matcher *m = v && g ? kiln_grammar_matcher_new(g, v, &e) : NULL;
    REQUIRE(m, "%s", e.msg);
    int n = (int)kiln_tokenizer_vocab_size(t) + 10; /* the model's rows may outnumber the tokenizer's */
    float *logits = malloc((size_t)n * sizeof *logits);
    int32_t eos = kiln_tokenizer_specials(t)->eos_id;
    for (int i = 0; i < n; i++) logits[i] = 1;
    CHECK(kiln_grammar_matcher_mask(m, logits, n, &eos, 1, &e) == 0, "%s", e.msg);
    int32_t yes = kiln_token_id(t, "yes"), y = kiln_token_id(t, "y"), no = kiln_token_id(t, "no");
    CHECK(yes >= 0 && logits[yes] == 1 && y >= 0 && logits[y] == 1, "prefixes allowed");
    CHECK(no >= 0 && isinf(logits[no]) && isinf(logits[eos]) && isinf(logits[n - 1]), "others masked");
    int allowed = 0;
    for (int i = 0; i < n; i++) allowed += logits[i] == 1;
    CHECK(allowed >= 2 && allowed < 40, "%d tokens allowed", allowed);
    CHECK(kiln_grammar_matcher_accept_token(m, yes, &e) == 0, "%s", e.msg);
    CHECK(kiln_grammar_matcher_complete(m) && kiln_grammar_matcher_can_continue(m), "'yes' complete, 'yesterday' open");
    for (int i = 0; i < n; i++) logits[i] = 1;
    CHECK(kiln_grammar_matcher_mask(m, logits, n, &eos, 1, &e) == 0, "%s", e.msg);
    int32_t ter = kiln_token_id(t, "ter");
    CHECK(logits[eos] == 1 && ter >= 0 && logits[ter] == 1 && isinf(logits[yes]), "EOS or 'ter' next");
    CHECK(kiln_grammar_matcher_accept_token(m, yes, &e) < 0 && strstr(e.msg, "cannot continue"), "'yesyes' refused: %s", e.msg);
    CHECK(kiln_grammar_matcher_accept_eos(m, &e) == 0, "%s", e.msg);
    free(logits);
    kiln_grammar_matcher_free(m);
    kiln_grammar_free(g);
    kiln_grammar_vocab_free(v);
    kiln_tokenizer_free(t);
}

/* ---- generation with a random-weight model ---- */

typedef struct {
    kiln_model *m;
    kiln_tokenizer *t;
    kiln_grammar_vocab *v;
    int32_t *prompt;
    size_t n_prompt;
} gen_env;

static bool env_open(gen_env *g) {
    kiln_err e = {{0}};
    memset(g, 0, sizeof *g);
    kiln_model_opts o;
    kiln_model_opts_default(&o);
    o.quiet = true;
    o.threads = 1;
    g->m = kiln_model_open(shared_path("models/tiny-qwen3"), &o, &e);
    g->t = g->m ? open_tok("models/tiny-qwen3") : NULL;
    g->v = g->t ? kiln_grammar_vocab_new(g->t, &e) : NULL;
    const char *text = "Answer in the requested format:";
    if (!g->v || kiln_encode(g->t, text, strlen(text), false, &g->prompt, &g->n_prompt, &e)) {
        fprintf(stderr, "  tiny-qwen3: %s\n", e.msg);
        return false;
    }
    return true;
}

static void env_close(gen_env *g) {
    free(g->prompt);
    kiln_grammar_vocab_free(g->v);
    kiln_tokenizer_free(g->t);
    kiln_model_free(g->m);
}

/* Samples one output under g (seeded); returns its text (malloc'd) or NULL, checking it ended by EOS. */
static char *sample(gen_env *env, const kiln_grammar *g, uint64_t seed, int max_new) {
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    kiln_err e = {{0}};
    if (kiln_gen_params_load(&p, shared_path("models/tiny-qwen3"), &e)) return NULL;
    p.do_sample = true, p.temperature = 1.0f, p.top_k = 0, p.top_p = 1.0f, p.seed = seed;
    p.max_new_tokens = max_new;
    p.grammar = g, p.grammar_vocab = env->v;
    kiln_gen_output out;
    const int32_t *prompts[1] = {env->prompt};
    if (kiln_generate(env->m, env->t, &p, 1, prompts, &env->n_prompt, NULL, NULL, &out, &e)) {
        fprintf(stderr, "  generate: %s\n", e.msg);
        return NULL;
    }
    char *text = out.finish == KILN_FINISH_EOS ? strdup(out.text) : NULL;
    if (!text) fprintf(stderr, "  seed %llu finished '%s' after %zu tokens: %s\n", (unsigned long long)seed,
                       kiln_finish_name(out.finish), out.n_ids, out.text);
    kiln_gen_output_free(&out);
    return text;
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* The PERSON schema, checked by hand. */
static const char *person_invalid(const char *text) {
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    const char *why = NULL;
    static const char *keys[] = {"name", "age", "ok", "role", "tags", "when", "code"};
    if (!json_is_object(o)) why = "not a JSON object";
    const char *k;
    json_t *val;
    json_object_foreach(o, k, val) {
        bool known = false;
        for (int i = 0; i < 7; i++) known |= !strcmp(k, keys[i]);
        if (!known) why = "unknown key";
    }
    json_t *name = json_object_get(o, "name"), *role = json_object_get(o, "role"), *tags = json_object_get(o, "tags");
    json_t *ok = json_object_get(o, "ok"), *when = json_object_get(o, "when"), *code = json_object_get(o, "code");
    if (!why && (!json_is_string(name) || utf8_chars(json_string_value(name)) > 12)) why = "name";
    if (!why && !json_is_integer(json_object_get(o, "age"))) why = "age";
    if (!why && ok && !json_is_boolean(ok)) why = "ok";
    if (!why && !(json_is_null(role) || (json_is_string(role) && (!strcmp(json_string_value(role), "admin") ||
                                                                  !strcmp(json_string_value(role), "user")))))
        why = "role";
    if (!why && (!json_is_array(tags) || json_array_size(tags) < 1 || json_array_size(tags) > 3)) why = "tags";
    for (size_t i = 0; !why && i < json_array_size(tags); i++) {
        json_t *x = json_array_get(tags, i);
        if (!json_is_string(x) || utf8_chars(json_string_value(x)) > 6) why = "tags item";
    }
    if (!why && when && !(json_is_string(when) && posix_match("^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$", json_string_value(when))))
        why = "when";
    if (!why && code && !(json_is_string(code) && posix_match("^[a-f0-9]{4}-[0-9]{2}$", json_string_value(code)))) why = "code";
    json_decref(o);
    return why;
}

TEST(generate_json_schema) {
    gen_env env;
    REQUIRE(env_open(&env), "tiny-qwen3");
    kiln_err e = {{0}};
    kiln_grammar *g = kiln_grammar_from_json_schema(PERSON, &e);
    REQUIRE(g, "%s", e.msg);
    for (uint64_t seed = 1; seed <= 3; seed++) {
        char *text = sample(&env, g, seed, 400);
        CHECK(text, "seed %llu: no complete output", (unsigned long long)seed);
        const char *why = text ? person_invalid(text) : NULL;
        CHECK(!why, "seed %llu: %s: %s", (unsigned long long)seed, why, text);
        free(text);
    }
    kiln_grammar_free(g);
    g = kiln_grammar_from_json_schema("{\"anyOf\":[{\"type\":\"null\"},{\"type\":\"object\",\"properties\":{\"x\":"
                                      "{\"$ref\":\"#/$defs/n\"}},\"required\":[\"x\"]}],\"$defs\":{\"n\":{\"type\":\"number\"}}}",
                                      &e);
    REQUIRE(g, "%s", e.msg);
    for (uint64_t seed = 10; seed <= 11; seed++) {
        char *text = sample(&env, g, seed, 200);
        json_t *o = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
        CHECK(json_is_null(o) || (json_is_object(o) && json_object_size(o) == 1 && json_is_number(json_object_get(o, "x"))),
              "seed %llu: %s", (unsigned long long)seed, text ? text : "(none)");
        json_decref(o);
        free(text);
    }
    kiln_grammar_free(g);
    env_close(&env);
}

TEST(generate_regex_choice_gbnf) {
    gen_env env;
    REQUIRE(env_open(&env), "tiny-qwen3");
    kiln_err e = {{0}};
    kiln_grammar *re = kiln_grammar_from_regex("[A-Z][a-z]{2,6} [0-9]{1,3}(\\.[0-9])?", &e);
    const char *choices[] = {"red", "green", "blue", "light blue"};
    kiln_grammar *ch = kiln_grammar_from_choice(choices, 4, &e);
    kiln_grammar *gb = kiln_grammar_from_gbnf("root ::= greet \", \" name \"!\"\ngreet ::= \"hello\" | \"hi\"\n"
                                              "name ::= [a-z]{1,5}\n", &e);
    REQUIRE(re && ch && gb, "%s", e.msg);
    for (uint64_t seed = 1; seed <= 2; seed++) {
        char *a = sample(&env, re, seed, 100), *b = sample(&env, ch, seed, 100), *c = sample(&env, gb, seed, 100);
        CHECK(a && posix_match("^[A-Z][a-z]{2,6} [0-9]{1,3}(\\.[0-9])?$", a), "regex seed %llu: %s", (unsigned long long)seed, a);
        bool one = false;
        for (int i = 0; b && i < 4; i++) one |= !strcmp(b, choices[i]);
        CHECK(one, "choice seed %llu: %s", (unsigned long long)seed, b);
        CHECK(c && posix_match("^(hello|hi), [a-z]{1,5}!$", c), "gbnf seed %llu: %s", (unsigned long long)seed, c);
        free(a), free(b), free(c);
    }
    kiln_grammar_free(re), kiln_grammar_free(ch), kiln_grammar_free(gb);
    env_close(&env);
}

/* A forced tool call (tool_choice "required"): the named tool exists and its arguments validate. */
TEST(generate_tool_call) {
    gen_env env;
    REQUIRE(env_open(&env), "tiny-qwen3");
    kiln_err e = {{0}};
    kiln_grammar *g = kiln_grammar_from_tools(TOOL_NAMES, TOOL_PARAMS, 2, "<tool_call>\n", "\n</tool_call>", "\n", 1, &e);
    REQUIRE(g, "%s", e.msg);
    for (uint64_t seed = 1; seed <= 2; seed++) {
        char *text = sample(&env, g, seed, 200);
        size_t n = text ? strlen(text) : 0;
        const char *open = "<tool_call>\n", *close = "\n</tool_call>";
        bool framed = n > 25 && !strncmp(text, open, strlen(open)) && !strcmp(text + n - strlen(close), close);
        CHECK(framed, "seed %llu: not one framed call: %s", (unsigned long long)seed, text ? text : "(none)");
        json_t *call = framed ? json_loadb(text + strlen(open), n - strlen(open) - strlen(close), 0, NULL) : NULL;
        const char *name = json_string_value(json_object_get(call, "name"));
        json_t *args = json_object_get(call, "arguments");
        bool ok = false;
        if (name && !strcmp(name, "get_weather")) {
            json_t *city = json_object_get(args, "city"), *unit = json_object_get(args, "unit");
            ok = json_is_string(city) && utf8_chars(json_string_value(city)) <= 10 &&
                 (!unit || (json_is_string(unit) && strlen(json_string_value(unit)) == 1 && strchr("CF", json_string_value(unit)[0])));
        } else if (name && !strcmp(name, "add")) {
            json_t *a = json_object_get(args, "a"), *b = json_object_get(args, "b");
            ok = json_is_integer(a) && json_is_integer(b) && json_integer_value(a) >= 0 && json_integer_value(a) <= 99 &&
                 json_integer_value(b) >= 0 && json_integer_value(b) <= 99 && json_object_size(args) == 2;
        }
        CHECK(ok, "seed %llu: invalid call: %s", (unsigned long long)seed, text ? text : "(none)");
        json_decref(call);
        free(text);
    }
    kiln_grammar_free(g);
    env_close(&env);
}

/* logit_bias: +100 forces a token into the greedy answer, -100 bans the greedy one; bad ids refused. */
TEST(logit_bias) {
    gen_env env;
    REQUIRE(env_open(&env), "tiny-qwen3");
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    p.max_new_tokens = 3;
    kiln_err e = {{0}};
    kiln_gen_output out;
    const int32_t *prompts[1] = {env.prompt};
    REQUIRE(kiln_generate(env.m, env.t, &p, 1, prompts, &env.n_prompt, NULL, NULL, &out, &e) == 0, "%s", e.msg);
    int32_t greedy = out.ids[0];
    kiln_gen_output_free(&out);
    kiln_logit_bias bias[2] = {{greedy, -100}, {1234, 100}};
    p.logit_bias = bias, p.n_logit_bias = 1;
    REQUIRE(kiln_generate(env.m, env.t, &p, 1, prompts, &env.n_prompt, NULL, NULL, &out, &e) == 0, "%s", e.msg);
    CHECK(out.ids[0] != greedy, "banned token %d still chosen", (int)greedy);
    kiln_gen_output_free(&out);
    p.n_logit_bias = 2;
    REQUIRE(kiln_generate(env.m, env.t, &p, 1, prompts, &env.n_prompt, NULL, NULL, &out, &e) == 0, "%s", e.msg);
    CHECK(out.ids[0] == 1234, "+100 should force token 1234, got %d", (int)out.ids[0]);
    kiln_gen_output_free(&out);
    bias[1].token = 999999;
    CHECK(kiln_generate(env.m, env.t, &p, 1, prompts, &env.n_prompt, NULL, NULL, &out, &e) < 0 &&
              strstr(e.msg, "logit_bias: token id 999999"), "out-of-range id refused: %s", e.msg);
    bias[1] = (kiln_logit_bias){5, 150};
    CHECK(kiln_generate(env.m, env.t, &p, 1, prompts, &env.n_prompt, NULL, NULL, &out, &e) < 0 && strstr(e.msg, "-100..100"),
          "bias out of range refused: %s", e.msg);
    env_close(&env);
}

int main(void) {
    RUN(gbnf_language);
    RUN(gbnf_errors);
    RUN(regex_language);
    RUN(choice_language);
    RUN(json_schema_language);
    RUN(json_schema_integer_ranges);
    RUN(json_schema_errors);
    RUN(tools_language);
    RUN(vocab_bytes);
    RUN(mask_over_vocab);
    RUN(generate_json_schema);
    RUN(generate_regex_choice_gbnf);
    RUN(generate_tool_call);
    RUN(logit_bias);
    return check_done();
}
