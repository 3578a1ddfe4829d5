/* test_template.c — the Jinja interpreter: every chat golden renders byte-identical (and encodes to the
 * golden ids), each construct against hand-written Python jinja2 results, errors name line and column,
 * real published templates (tests/fixtures/templates/) render as transformers renders them. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "check.h"
#include "common/fileio.h"
#include "kiln.h"

/* Renders tmpl with vars; returns the malloc'd output or NULL with err filled. */
static char *render(const char *tmpl, const char *vars, kiln_err *err) {
    size_t n;
    return kiln_template_render(tmpl, vars, &n, err);
}

static void expect(const char *tmpl, const char *vars, const char *want, int line) {
    kiln_err err = {{0}};
    char *got = render(tmpl, vars, &err);
    CHECK(got && !strcmp(got, want), "case at line %d: template %s\n    want [%s]\n    got  [%s] %s", line, tmpl,
          want, got ? got : "(error)", got ? "" : err.msg);
    free(got);
}
#define EXPECT(t, v, w) expect(t, v, w, __LINE__)

static void expect_error(const char *tmpl, const char *vars, const char *substr, int line) {
    kiln_err err = {{0}};
    char *got = render(tmpl, vars, &err);
    CHECK(!got && strstr(err.msg, substr), "case at line %d: template %s should fail with '%s', got [%s] err [%s]",
          line, tmpl, substr, got ? got : "", err.msg);
    free(got);
}
#define EXPECT_ERROR(t, v, s) expect_error(t, v, s, __LINE__)

TEST(text_and_output) {
    EXPECT("hello", "{}", "hello");
    EXPECT("{{ 'a' ~ 1 ~ none ~ true }}", "{}", "a1NoneTrue");
    EXPECT("{{ x }}|{{ y }}", "{\"x\": 1.0, \"y\": [1, \"a\", null, {\"k\": false}]}", "1.0|[1, 'a', None, {'k': False}]");
    EXPECT("{{ missing }}.", "{}", ".");
    EXPECT("{{ 0.1 + 0.2 }} {{ 1e20 }} {{ 2.5e-5 }} {{ 3 / 2 }} {{ 4 / 2 }}", "{}",
           "0.30000000000000004 1e+20 2.5e-05 1.5 2.0");
    EXPECT("a\n", "{}", "a");          /* keep_trailing_newline=False */
    EXPECT("a\n\n", "{}", "a\n");      /* only one newline goes */
    EXPECT("{# comment #}x", "{}", "x");
    EXPECT("{% raw %}{{ x }}{% endraw %}", "{}", "{{ x }}");
}

TEST(whitespace_control) {
    /* trim_blocks: newline after %} goes; lstrip_blocks: indentation before {% goes */
    EXPECT("{% if true %}\n  yes\n{% endif %}\nend", "{}", "  yes\nend");
    EXPECT("    {% if true %}\nx\n    {% endif %}\n", "{}", "x\n");
    EXPECT("a  {%- if true %} b {% endif -%}  c", "{}", "a b c");
    EXPECT("a {{- 'b' -}} c", "{}", "abc");
    EXPECT("a {{ 'b' }}\n c", "{}", "a b\n c"); /* no trim after }} */
    EXPECT("x  {%+ if true %}y{% endif %}", "{}", "x  y");
    EXPECT("{% if true +%}\ny{% endif %}", "{}", "\ny");
    EXPECT("  {# c #}\nz", "{}", "z");
}

TEST(if_elif_else) {
    const char *t = "{% if n == 1 %}one{% elif n == 2 %}two{% elif n is none %}none{% else %}many{% endif %}";
    EXPECT(t, "{\"n\":1}", "one");
    EXPECT(t, "{\"n\":2}", "two");
    EXPECT(t, "{\"n\":null}", "none");
    EXPECT(t, "{\"n\":7}", "many");
    EXPECT("{{ 'y' if x else 'n' }}{{ 'y' if not x }}", "{\"x\": []}", "ny");
}

TEST(for_loops) {
    EXPECT("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
           "{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ x }};{% endfor %}",
           "{\"xs\": [\"a\", \"b\"]}", "1021TrueFalse2a;2110FalseTrue2b;");
    EXPECT("{% for x in xs if x > 1 %}{{ x }}{{ loop.last }},{% endfor %}", "{\"xs\": [1, 2, 3]}", "2False,3True,");
    EXPECT("{% for x in [] %}x{% else %}empty{% endfor %}", "{}", "empty");
    EXPECT("{% for x in nothing %}x{% else %}none{% endfor %}", "{}", "none");
    EXPECT("{% for k, v in d.items() %}{{ k }}={{ v }} {% endfor %}", "{\"d\": {\"b\": 1, \"a\": 2}}", "b=1 a=2 ");
    EXPECT("{% for k in d %}{{ k }}{% endfor %}", "{\"d\": {\"b\": 1, \"a\": 2}}", "ba");
    EXPECT("{% for c in 'héllo' %}{{ c }}.{% endfor %}", "{}", "h.é.l.l.o.");
    EXPECT("{% for x in [1,2,3,4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}"
           "{{ x }}{% endfor %}",
           "{}", "13");
    EXPECT("{% for x in [1,2] %}{{ loop.previtem }}-{{ loop.nextitem }} {% endfor %}", "{}", "-2 1- ");
    EXPECT("{% for x in range(3) %}{{ loop.cycle('a', 'b') }}{% endfor %}", "{}", "aba");
    /* a loop's set does not leak out; the loop variable neither */
    EXPECT("{% set x = 1 %}{% for i in [5] %}{% set x = i %}{% endfor %}{{ x }}{{ i }}", "{}", "1");
    EXPECT("{% for a in [1,2] %}{% for b in [3] %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}", "{}",
           "1112");
}

TEST(set_and_namespace) {
    EXPECT("{% set a = 'x' %}{% set b, c = [1, 2] %}{{ a }}{{ b }}{{ c }}", "{}", "x12");
    EXPECT("{% set ns = namespace(n=0, s='') %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
           "{}", "6");
    EXPECT("{% set block %}a{{ 1 + 1 }}{% endset %}[{{ block }}]", "{}", "[a2]");
    EXPECT_ERROR("{% set x = 1 %}{% set x.y = 2 %}", "{}", "non-namespace");
}

TEST(macros) {
    EXPECT("{% macro m(a, b='d') %}<{{ a }}|{{ b }}>{% endmacro %}{{ m(1) }}{{ m(1, 2) }}{{ m(b=3, a=4) }}", "{}",
           "<1|d><1|2><4|3>");
    EXPECT("{% macro w() %}[{{ caller() }}]{% endmacro %}{% call w() %}in{% endcall %}", "{}", "[in]");
    EXPECT("{% set g = 'G' %}{% macro m() %}{{ g }}{% endmacro %}{{ m() }}", "{}", "G");
}

TEST(operators) {
    EXPECT("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 * 3 + 1 }} {{ 'ab' * 2 }}", "{}",
           "3 -4 1 2 1024 7 abab");
    EXPECT("{{ 1 < 2 }} {{ 'a' < 'b' }} {{ 2 >= 2.0 }} {{ 1 == 1.0 }} {{ 'a' != 'a' }}", "{}",
           "True True True True False");
    EXPECT("{{ 'b' in 'abc' }} {{ 2 in [1,2] }} {{ 'k' in d }} {{ 'z' not in d }}", "{\"d\": {\"k\": 1}}",
           "True True True True");
    EXPECT("{{ [1] + [2] }} {{ 'a' + 'b' }} {{ x is not defined }} {{ not x is defined }}", "{}",
           "[1, 2] ab True True");
    EXPECT("{{ true and 'x' }} {{ false or 'y' }} {{ 0 or none }}", "{}", "x y None");
    EXPECT("{{ -x|abs }} {{ (1, 2) }}", "{\"x\": 3}", "3 [1, 2]"); /* (-x)|abs, as jinja2 parses it */
    EXPECT_ERROR("{{ 'a' + 1 }}", "{}", "unsupported operand");
    EXPECT_ERROR("{{ x + 1 }}", "{}", "'x' is undefined");
}

TEST(subscripts_and_slices) {
    const char *v = "{\"xs\": [1, 2, 3, 4], \"s\": \"héllo\", \"d\": {\"a\": {\"b\": 5}}}";
    EXPECT("{{ xs[0] }}{{ xs[-1] }}{{ xs[1:3] }}{{ xs[::-1] }}{{ xs[::2] }}{{ xs[-2:] }}{{ xs[10] }}", v,
           "14[2, 3][4, 3, 2, 1][1, 3][3, 4]");
    EXPECT("{{ s[1] }}{{ s[::-1] }}{{ s[1:3] }}{{ s[-1] }}", v, "éolléhélo");
    EXPECT("{{ d.a.b }}{{ d['a']['b'] }}{{ d.zz }}{{ d.zz is defined }}", v, "55False");
    EXPECT_ERROR("{{ d.zz.yy }}", v, "'zz' is undefined");
}

TEST(filters) {
    const char *v = "{\"xs\": [{\"n\": \"a\", \"k\": 1}, {\"n\": \"b\", \"k\": 0}], \"s\": \"  Hi there  \"}";
    EXPECT("[{{ s|trim }}] {{ s|length }} {{ xs|length }} {{ xs|count }}", v, "[Hi there] 12 2 2");
    EXPECT("{{ u|default('d') }} {{ ''|default('e') }} {{ ''|default('f', true) }} {{ u|d('g') }}", v, "d  f g");
    EXPECT("{{ xs|map(attribute='n')|join(', ') }} {{ xs|selectattr('k')|map(attribute='n')|list }}", v,
           "a, b ['a']");
    EXPECT("{{ xs|rejectattr('k')|map(attribute='n')|first }} {{ xs|selectattr('n', 'equalto', 'b')|list|length }}",
           v, "b 1");
    EXPECT("{{ [1, 2, 3, 4]|select('odd')|list }} {{ [1, 2, 3]|reject('even')|list }} {{ [3, 1]|last }}", "{}",
           "[1, 3] [1, 3] 1");
    EXPECT("{{ 'ab'|upper }}{{ 'AB'|lower }} {{ 'hello wORLD'|title }} {{ 'hELLO'|capitalize }}", "{}",
           "ABab Hello World Hello");
    EXPECT("{{ {'a': 1}|items|list }} {{ 'ab'|list }} {{ [1, 2]|reverse|list }} {{ 'abc'|reverse }}", "{}",
           "[['a', 1]] ['a', 'b'] [2, 1] cba");
    EXPECT("{{ 'aXbX'|replace('X', '-') }} {{ 3|string + 'x' }} {{ '42'|int + 1 }} {{ 'x'|int }} {{ '2.5'|float }}",
           "{}", "a-b- 3x 43 0 2.5");
    EXPECT("{{ 2.5|round }} {{ 3.14159|round(2) }} {{ -4|abs }} {{ 'x'|safe }} {{ [1, 1, 2]|unique|list }}", "{}",
           "2.0 3.14 4 x [1, 2]");
    EXPECT("{{ 'a\nb'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}", "{}", "a\n  b|  a\n  b");
    EXPECT("{{ [1, 2, 3]|sum }} {{ 'a b  c'|wordcount }}", "{}", "6 3");
    EXPECT("{% filter upper %}abc{% endfilter %}", "{}", "ABC");
    EXPECT_ERROR("{{ 1|nosuchfilter }}", "{}", "no filter named 'nosuchfilter'");
}

TEST(tojson) {
    const char *v = "{\"t\": {\"name\": \"f\", \"args\": [1, 2.0, true, null, \"é\\\"\\n\"], \"e\": {}}}";
    EXPECT("{{ t|tojson }}", v, "{\"name\": \"f\", \"args\": [1, 2.0, true, null, \"é\\\"\\n\"], \"e\": {}}");
    EXPECT("{{ t|tojson(indent=2) }}", v,
           "{\n  \"name\": \"f\",\n  \"args\": [\n    1,\n    2.0,\n    true,\n    null,\n    \"é\\\"\\n\"\n  ],\n"
           "  \"e\": {}\n}");
    EXPECT("{{ {'b': 1, 'a': [2]}|tojson(sort_keys=true) }}", "{}", "{\"a\": [2], \"b\": 1}");
    EXPECT("{{ {'b': 1}|tojson(separators=(',', ':')) }}", "{}", "{\"b\":1}");
    EXPECT("{{ '\\u0001'|tojson }}", "{}", "\"\\u0001\"");
}

TEST(tests) {
    EXPECT("{{ x is defined }}{{ x is undefined }}{{ none is none }}{{ 's' is string }}{{ {} is mapping }}", "{}",
           "FalseTrueTrueTrueTrue");
    EXPECT("{{ [] is iterable }}{{ 's' is sequence }}{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is integer }}", "{}",
           "TrueTrueTrueTrueFalse");
    EXPECT("{{ true is boolean }}{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 0 is false }}", "{}",
           "TrueTrueFalseTrueFalse");
    EXPECT("{{ 1 is eq 1 }}{{ 'a' is equalto 'a' }}{{ 2 is in [1, 2] }}{{ 3 is divisibleby 3 }}{{ 1 is odd }}", "{}",
           "TrueTrueTrueTrueTrue");
    EXPECT_ERROR("{{ 1 is frobnicated }}", "{}", "no test named 'frobnicated'");
}

TEST(methods) {
    EXPECT("{{ 'a,b,,c'.split(',') }} {{ '  a  b '.split() }} {{ 'a-b-c'.split('-', 1) }}", "{}",
           "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b-c']");
    EXPECT("[{{ ' x '.strip() }}][{{ 'xxaxx'.lstrip('x') }}][{{ 'xxaxx'.rstrip('x') }}][{{ '\nx\n'.strip('\n') }}]",
           "{}", "[x][axx][xxa][x]");
    EXPECT("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}{{ 'abc'.startswith(('x', 'a')) }}", "{}",
           "TrueTrueTrue");
    EXPECT("{{ 'aaa'.replace('a', 'b', 2) }} {{ 'Ab'.upper() }}{{ 'Ab'.lower() }} {{ \"they're ok\".title() }}", "{}",
           "bba ABab They'Re Ok");
    EXPECT("{{ 'héllo'.find('l') }} {{ 'abab'.count('ab') }} {{ '{} is {}'.format('x', 1) }} {{ '-'.join(['a', 'b']) }}",
           "{}", "2 2 x is 1 a-b");
    EXPECT("{{ d.get('a') }} {{ d.get('z', 'no') }} {{ d.get('z') }} {{ d.keys()|list }} {{ d.values()|list }}",
           "{\"d\": {\"a\": 1}}", "1 no None ['a'] [1]");
    EXPECT("{% set l = [] %}{% do l.append(1) %}{{ l.append(2) }}{{ l }}", "{}", "None[1, 2]");
}

TEST(globals) {
    EXPECT("{{ range(3)|list }} {{ range(1, 7, 2)|list }}", "{}", "[0, 1, 2] [1, 3, 5]");
    EXPECT_ERROR("{{ raise_exception('bad role') }}", "{}", "bad role");
    kiln_err err = {{0}};
    char *got = render("{{ strftime_now('%Y') }}", "{}", &err);
    CHECK(got && strlen(got) == 4 && got[0] == '2', "strftime_now('%%Y') gave [%s]", got ? got : err.msg);
    free(got);
}

TEST(errors_name_line_and_column) {
    EXPECT_ERROR("line one\n{% if x %}\n  {% foo %}\n{% endif %}", "{}", "line 3 column 6: unsupported statement 'foo'");
    EXPECT_ERROR("{% for x in xs %}", "{}", "missing {% endfor %}");
    EXPECT_ERROR("{{ 1 +", "{}", "line 1 column");
    EXPECT_ERROR("{% endif %}", "{}", "unexpected 'endif'");
    EXPECT_ERROR("{{ 'abc }}", "{}", "string literal");
    EXPECT_ERROR("x", "[1]", "expected a JSON object");
    EXPECT_ERROR("x", "{bad", "invalid JSON");
    EXPECT_ERROR("{% include 'x' %}", "{}", "line 1 column 4: unsupported statement 'include'");
}

/* Long conversation: render time grows linearly (no per-message rescans of the output). */
TEST(long_conversation_is_linear) {
    const char *tmpl = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}";
    double t[2];
    for (int k = 0; k < 2; k++) {
        size_t n = k ? 20000 : 5000;
        json_t *msgs = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", i % 2 ? "assistant" : "user", "content",
                                                  "some words of content here"));
        json_t *vars = json_pack("{s:o}", "messages", msgs);
        char *vs = json_dumps(vars, JSON_COMPACT);
        json_decref(vars);
        double t0 = kiln_now();
        kiln_err err = {{0}};
        char *out = render(tmpl, vs, &err);
        t[k] = kiln_now() - t0;
        CHECK(out && strlen(out) > n * 20, "long conversation failed: %s", err.msg);
        free(out);
        free(vs);
    }
    CHECK(t[1] < 5.0 && t[1] < 12 * t[0] + 0.05, "4x the messages took %.3fs vs %.3fs", t[1], t[0]);
}

/* ---- goldens: ../shared/golden/tokenizers/<tok>.chat.jsonl ---- */
static void golden_chat(const char *name) {
    char dir[8192], file[8192];
    snprintf(dir, sizeof dir, "%s", shared_path("tokenizers/"));
    strncat(dir, name, sizeof dir - strlen(dir) - 1);
    snprintf(file, sizeof file, "%s", shared_path("golden/tokenizers/"));
    strncat(file, name, sizeof file - strlen(file) - 1);
    strncat(file, ".chat.jsonl", sizeof file - strlen(file) - 1);
    kiln_err err = {{0}};
    kiln_tokenizer *t = kiln_tokenizer_open(dir, &err);
    REQUIRE(t, "tokenizer %s: %s", dir, err.msg);
    FILE *f = fopen(file, "r");
    CHECK(f, "missing fixture %s", file);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0;
    while (f && getline(&line, &cap, f) > 0) {
        lines++;
        json_t *j = json_loads(line, JSON_ALLOW_NUL, NULL);
        REQUIRE(j, "%s line %d: bad JSON", file, lines);
        json_t *want = json_object_get(j, "rendered"), *want_err = json_object_get(j, "error");
        json_t *vars = json_deep_copy(j);
        json_object_del(vars, "rendered");
        json_object_del(vars, "ids");
        json_object_del(vars, "error");
        char *vs = json_dumps(vars, JSON_COMPACT | JSON_PRESERVE_ORDER);
        size_t n = 0;
        char *got = kiln_chat_render(t, vs, &n, &err);
        if (want_err && !json_is_null(want_err)) {
            CHECK(!got, "%s line %d: expected error '%s', rendered", name, lines, json_string_value(want_err));
        } else {
            CHECK(got && n == json_string_length(want) && !memcmp(got, json_string_value(want), n),
                  "%s line %d: rendered differs\n    want [%s]\n    got  [%s]", name, lines, json_string_value(want),
                  got ? got : err.msg);
            int32_t *ids = NULL;
            size_t n_ids = 0;
            if (got && kiln_encode(t, got, n, false, &ids, &n_ids, &err) == 0) {
                json_t *wid = json_object_get(j, "ids");
                bool same = json_array_size(wid) == n_ids;
                for (size_t i = 0; same && i < n_ids; i++) same = json_integer_value(json_array_get(wid, i)) == ids[i];
                CHECK(same, "%s line %d: ids differ (%zu vs %zu)", name, lines, n_ids, json_array_size(wid));
            } else CHECK(0, "%s line %d: encode failed: %s", name, lines, err.msg);
            free(ids);
        }
        free(got);
        free(vs);
        json_decref(vars);
        json_decref(j);
    }
    CHECK(lines >= 1, "%s: no conversations", file);
    free(line);
    if (f) fclose(f);
    kiln_tokenizer_free(t);
}

/* Published templates (tests/fixtures/templates/<name>.jinja; "qwen3" is the shared tokenizer's) against the
 * renders in cases.jsonl, each checked by reading the template with Python jinja2 semantics. */
TEST(published_templates) {
    FILE *f = fopen("tests/fixtures/templates/cases.jsonl", "r");
    REQUIRE(f, "missing tests/fixtures/templates/cases.jsonl");
    kiln_err err = {{0}};
    char qdir[8192];
    snprintf(qdir, sizeof qdir, "%s", shared_path("tokenizers/qwen3"));
    kiln_tokenizer *qwen3 = kiln_tokenizer_open(qdir, &err);
    CHECK(qwen3, "qwen3 tokenizer: %s", err.msg);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0;
    while (getline(&line, &cap, f) > 0) {
        lines++;
        json_t *j = json_loads(line, 0, NULL);
        REQUIRE(j, "cases.jsonl line %d: bad JSON", lines);
        const char *name = json_string_value(json_object_get(j, "template"));
        char *tmpl = NULL;
        if (!strcmp(name, "qwen3")) {
            const char *t = qwen3 ? kiln_tokenizer_chat_template(qwen3, NULL) : NULL;
            tmpl = t ? strdup(t) : NULL;
        } else {
            char path[512];
            size_t n;
            snprintf(path, sizeof path, "tests/fixtures/templates/%s.jinja", name);
            tmpl = kiln_read_file(path, &n, &err);
        }
        CHECK(tmpl, "case %d: template %s not found", lines, name);
        char *vars = json_dumps(json_object_get(j, "vars"), JSON_COMPACT | JSON_PRESERVE_ORDER);
        char *got = tmpl ? render(tmpl, vars, &err) : NULL;
        json_t *want = json_object_get(j, "rendered"), *want_err = json_object_get(j, "error");
        if (json_is_string(want))
            CHECK(got && !strcmp(got, json_string_value(want)), "case %d (%s):\n    want [%s]\n    got  [%s]", lines,
                  name, json_string_value(want), got ? got : err.msg);
        else
            CHECK(!got && strstr(err.msg, json_string_value(want_err)), "case %d (%s): want error '%s', got [%s]",
                  lines, name, json_string_value(want_err), got ? got : err.msg);
        free(got);
        free(vars);
        free(tmpl);
        json_decref(j);
    }
    CHECK(lines >= 10, "only %d cases", lines);
    free(line);
    fclose(f);
    kiln_tokenizer_free(qwen3);
}

TEST(golden_chat_llama3) { golden_chat("llama3"); }
TEST(golden_chat_qwen3) { golden_chat("qwen3"); }

int main(void) {
    RUN(text_and_output);
    RUN(whitespace_control);
    RUN(if_elif_else);
    RUN(for_loops);
    RUN(set_and_namespace);
    RUN(macros);
    RUN(operators);
    RUN(subscripts_and_slices);
    RUN(filters);
    RUN(tojson);
    RUN(tests);
    RUN(methods);
    RUN(globals);
    RUN(errors_name_line_and_column);
    RUN(long_conversation_is_linear);
    RUN(published_templates);
    RUN(golden_chat_llama3);
    RUN(golden_chat_qwen3);
    return check_done();
}
