/* test_template.c — the Jinja interpreter: every chat golden renders byte-identical (and encodes to the
 * golden ids), each construct against hand-written Python jinja2 results, errors name line and column,
 * real published templates (tests/fixtures/templates/) render as transformers renders them. */
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* ---- hostile templates: each renders in a forked child, so a crash or a hang is a FAIL of this test, not
 * the end of the test binary. The child reports "ok:<output>" or "err:<message>" through a pipe. ---- */
typedef struct {
    bool exited;      /* the child exited normally, status 0 (no signal, no sanitizer report, no alarm) */
    bool ok;          /* it rendered */
    char text[1200];  /* the output's start, or the error message */
    double seconds;   /* the render's time in the child */
    int status;
} child_result;

static child_result render_in_child(const char *tmpl, const char *vars, const kiln_template_limits *lim) {
    child_result r = {0};
    int fd[2];
    if (pipe(fd)) {
        snprintf(r.text, sizeof r.text, "pipe failed");
        return r;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        alarm(20); /* a hang is a failure, not a stuck test run */
        kiln_err err = {{0}};
        size_t n = 0;
        double t0 = kiln_now();
        char *out = kiln_template_render_limited(tmpl, vars, lim, &n, &err);
        double dt = kiln_now() - t0;
        char msg[1300];
        int len = snprintf(msg, sizeof msg, "%.6f %s:%.1100s", dt, out ? "ok" : "err", out ? out : err.msg);
        free(out);
        ssize_t w = write(fd[1], msg, (size_t)(len < (int)sizeof msg ? len : (int)sizeof msg - 1));
        close(fd[1]);
        exit(w > 0 ? 0 : 3); /* exit(): LeakSanitizer checks the child too */
    }
    close(fd[1]);
    char buf[1300] = {0};
    size_t got = 0;
    ssize_t k;
    while (got < sizeof buf - 1 && (k = read(fd[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)k;
    close(fd[0]);
    waitpid(pid, &r.status, 0);
    r.exited = WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0;
    char *sp = strchr(buf, ' '), *colon = sp ? strchr(sp, ':') : NULL;
    if (colon) {
        r.seconds = atof(buf);
        r.ok = !strncmp(sp + 1, "ok:", 3);
        snprintf(r.text, sizeof r.text, "%s", colon + 1);
    }
    if (getenv("TEMPLATE_TIMES")) fprintf(stderr, "%.3fs %.60s\n", r.seconds, tmpl);
    return r;
}

static const char *how_it_ended(const child_result *r) {
    static char buf[64];
    if (WIFSIGNALED(r->status)) snprintf(buf, sizeof buf, "killed by signal %d", WTERMSIG(r->status));
    else snprintf(buf, sizeof buf, "exit status %d", WEXITSTATUS(r->status));
    return buf;
}

/* A limit test finishes in well under a second (measured at most 0.25 s in the release build, 0.6 s under
 * ASan); the bound leaves room for a loaded machine. */
#ifdef __SANITIZE_ADDRESS__
#define LIMIT_SECONDS 4.0
#else
#define LIMIT_SECONDS 1.0
#endif

/* A hostile template must end as a clean one-line error containing substr, in well under a second. */
static void expect_clean_error(const char *tmpl, const kiln_template_limits *lim, const char *substr, int line) {
    child_result r = render_in_child(tmpl, "{}", lim);
    CHECK(r.exited && !r.ok && strstr(r.text, substr) && !strchr(r.text, '\n') && r.seconds < LIMIT_SECONDS,
          "case at line %d: template %.80s: want a clean error with '%s'; got %s, %s [%.300s] in %.3fs", line, tmpl,
          substr, how_it_ended(&r), r.ok ? "rendered" : "error", r.text, r.seconds);
}
#define EXPECT_CLEAN_ERROR(t, s) expect_clean_error(t, NULL, s, __LINE__)

/* ... and one that is only unusual must render exactly want, also in a child. */
static void expect_in_child(const char *tmpl, const char *want, int line) {
    child_result r = render_in_child(tmpl, "{}", NULL);
    CHECK(r.exited && r.ok && !strcmp(r.text, want), "case at line %d: template %.80s: want [%s]; got %s, %s [%.300s]",
          line, tmpl, want, how_it_ended(&r), r.ok ? "rendered" : "error", r.text);
}
#define EXPECT_IN_CHILD(t, w) expect_in_child(t, w, __LINE__)

/* n copies of s between pre and post (malloc'd). */
static char *repeated(const char *pre, const char *s, size_t n, const char *post) {
    size_t a = strlen(pre), b = strlen(s), c = strlen(post);
    char *r = malloc(a + n * b + c + 1), *p = r;
    memcpy(p, pre, a), p += a;
    for (size_t i = 0; i < n; i++) memcpy(p, s, b), p += b;
    memcpy(p, post, c + 1);
    return r;
}

TEST(hostile_recursion_is_an_error) {
    EXPECT_CLEAN_ERROR("{% macro f(n) %}{{ f(n+1) }}{% endmacro %}{{ f(0) }}", "nesting too deep (max_depth 500");
    char *parens = repeated("{{ ", "(", 30000, "1");
    char *closed = repeated(parens, ")", 30000, " }}");
    EXPECT_CLEAN_ERROR(closed, "nesting too deep");
    free(parens);
    free(closed);
    char *ifs = repeated("", "{% if true %}", 30000, "x");
    EXPECT_CLEAN_ERROR(ifs, "nesting too deep");
    free(ifs);
    char *nots = repeated("{{ ", "not ", 30000, "1 }}");
    EXPECT_CLEAN_ERROR(nots, "nesting too deep");
    free(nots);
    char *negs = repeated("{{ ", "- ", 30000, "1 }}");
    EXPECT_CLEAN_ERROR(negs, "nesting too deep");
    free(negs);
    char *sum = repeated("{{ 0", " + 1", 30000, " }}"); /* parsed in a loop, but evaluated as a deep tree */
    EXPECT_CLEAN_ERROR(sum, "nesting too deep");
    free(sum);
    char *elifs = repeated("{% if false %}", "{% elif false %}", 30000, "{% else %}e{% endif %}");
    EXPECT_IN_CHILD(elifs, "e"); /* a long elif chain is not nesting: built and walked in a loop */
    free(elifs);
    const char *self_list = "{% set a = [1] %}{% do a.append(a) %}";
    char t[256];
    snprintf(t, sizeof t, "%s{{ a }}", self_list);
    EXPECT_CLEAN_ERROR(t, "nesting too deep");
    snprintf(t, sizeof t, "%s{{ a|tojson }}", self_list);
    EXPECT_CLEAN_ERROR(t, "nesting too deep");
    snprintf(t, sizeof t, "%s{{ a == a }} {{ a != a }}", self_list); /* Python: the same object is equal */
    EXPECT_IN_CHILD(t, "True False");
    snprintf(t, sizeof t, "%s{%% set b = [1] %%}{%% do b.append(b) %%}{{ a == b }}", self_list);
    EXPECT_CLEAN_ERROR(t, "nesting too deep");
    EXPECT_CLEAN_ERROR("{% set d = {} %}{% do d.update({'k': d}) %}{{ d }}", "nesting too deep");
    snprintf(t, sizeof t, "%s{{ 'x'.startswith(a) }}", self_list); /* a tuple's items are not searched further */
    EXPECT_CLEAN_ERROR(t, "startswith expects a string");
}

TEST(hostile_arithmetic_overflow_is_an_error) {
    EXPECT_CLEAN_ERROR("{{ (-9223372036854775807-1) // -1 }}", "integer overflow in '//'");
    EXPECT_CLEAN_ERROR("{{ 2**64 }}", "integer overflow in '**'");
    EXPECT_CLEAN_ERROR("{{ 2**63 }}", "integer overflow in '**'");
    EXPECT_CLEAN_ERROR("{{ 9223372036854775807 + 1 }}", "integer overflow in '+'");
    EXPECT_CLEAN_ERROR("{{ (-9223372036854775807-1) - 1 }}", "integer overflow in '-'");
    EXPECT_CLEAN_ERROR("{{ 4611686018427387904 * 2 }}", "integer overflow in '*'");
    EXPECT_CLEAN_ERROR("{{ [9223372036854775807, 1]|sum }}", "integer overflow in '+'");
    EXPECT_CLEAN_ERROR("{{ (-9223372036854775807-1)|abs }}", "integer overflow in 'abs'");
    EXPECT_CLEAN_ERROR("{{ -(-9223372036854775807-1) }}", "integer overflow in 'unary -'");
    EXPECT_CLEAN_ERROR("{{ 9223372036854775808 }}", "outside the 64-bit range");
    EXPECT_CLEAN_ERROR("{{ 1e300|int }}", "outside the 64-bit range");
    EXPECT_CLEAN_ERROR("{{ '99999999999999999999'|int }}", "outside the 64-bit range");
    /* what fits in 64 bits is exact, as Python */
    EXPECT_IN_CHILD("{{ (-9223372036854775807-1) % -1 }} {{ (-9223372036854775807-1) // 1 }} {{ (-2)**63 }} {{ 2**62 }}",
                    "0 -9223372036854775808 -9223372036854775808 4611686018427387904");
    EXPECT_IN_CHILD("{{ 1 ** 9223372036854775807 }} {{ 0 ** 9223372036854775807 }} {{ (-1) ** 9223372036854775807 }}",
                    "1 0 -1"); /* by squaring: 63 steps, not 2^63 */
    EXPECT_IN_CHILD("{{ (-9223372036854775807-1) is divisibleby(-1) }} {{ 7 % -3 }} {{ -7 // 2 }}", "True -2 -4");
    EXPECT_IN_CHILD("{{ [1, 2, 3][::9223372036854775807] }} {{ [1, 2, 3][::-9223372036854775807-1] }} "
                    "{{ 'abc'[1::9223372036854775807] }}",
                    "[1] [3] b");
}

TEST(hostile_range_counts_without_overflow) {
    EXPECT_CLEAN_ERROR("{{ range(-9223372036854775807-1, 9223372036854775807)|length }}", "range too big");
    EXPECT_CLEAN_ERROR("{{ range(9223372036854775807, -9223372036854775807-1, -1)|length }}", "range too big");
    EXPECT_IN_CHILD("{{ range(9223372036854775800, 9223372036854775807, 5)|list }}",
                    "[9223372036854775800, 9223372036854775805]");
    EXPECT_IN_CHILD("{{ range(0, -9223372036854775807-1, -9223372036854775807-1)|list }} {{ range(5, 0, -2)|list }}",
                    "[0] [5, 3, 1]");
}

TEST(hostile_growth_stops_at_the_budget) {
    EXPECT_CLEAN_ERROR("{{ 'a' * 10**12 }}", "string repetition: result longer than the output limit (max_output_bytes");
    EXPECT_CLEAN_ERROR("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                       "step limit exceeded (max_steps 250000");
    EXPECT_CLEAN_ERROR("{{ 'a\nb'|indent(10**12) }}", "longer than the output limit");
    EXPECT_CLEAN_ERROR("{{ [1]|tojson(indent=10**9) }}", "longer than the output limit");
    EXPECT_CLEAN_ERROR("{% macro d(s) %}{{ d(s ~ s) }}{% endmacro %}{{ d('a') }}", "longer than the output limit");
    EXPECT_CLEAN_ERROR("{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
                       "{% endfor %}{{ ns.s|length }}",
                       "string concatenation: result longer than the output limit");
    /* exponential work with no output: 2^40 macro calls */
    EXPECT_CLEAN_ERROR("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
                       "step limit exceeded");
    /* two distinct 60-level DAGs: 2^60 comparisons, small memory */
    EXPECT_CLEAN_ERROR("{% set ns = namespace(a=[0], b=[0]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}"
                       "{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ ns.a == ns.b }}",
                       "step limit exceeded");
    EXPECT_CLEAN_ERROR("{% set ns = namespace(a=[0]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}"
                       "{% endfor %}{{ ns.a }}",
                       "step limit exceeded"); /* items printed are steps too */
    /* a dict built key by key and searched each time: quadratic scans run into the step limit */
    EXPECT_CLEAN_ERROR("{% set d = {} %}{% for i in range(100000) %}{% do d.update({i|string: i}) %}{% endfor %}",
                       "step limit exceeded");
    /* many string literals: each takes the memory of its own text, not of the rest of the source */
    char *literals = repeated("", "{{ 'ab' }}", 20000, "");
    child_result r = render_in_child(literals, "{}", NULL);
    CHECK(r.exited && r.ok && !strncmp(r.text, "abababab", 8), "20000 literals: %s [%.200s]", how_it_ended(&r), r.text);
    free(literals);
    /* a list that doubles: 2^40 items */
    EXPECT_CLEAN_ERROR("{% set l = [1] %}{% for i in range(40) %}{% do l.extend(l) %}{% endfor %}",
                       "memory limit exceeded (max_memory_bytes 67108864)");
}

/* Running out of memory at any point of a render (here: the memory budget, which fails exactly where an
 * allocation would) is a clean error that frees everything the render held (LeakSanitizer checks in the ASan
 * build); between failures and success the output is always the exact one. */
TEST(memory_failure_anywhere_frees_everything) {
    kiln_err err = {{0}};
    kiln_tokenizer *qwen3 = kiln_tokenizer_open(shared_path("tokenizers/qwen3"), &err);
    REQUIRE(qwen3, "qwen3 tokenizer: %s", err.msg);
    const char *vars = "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", "
                       "\"content\": \"hi <think>x</think>\"}], \"tools\": [{\"type\": \"function\", \"function\": "
                       "{\"name\": \"f\", \"parameters\": {\"type\": \"object\"}}}], \"add_generation_prompt\": true}";
    size_t want_n = 0;
    char *want = kiln_chat_render(qwen3, vars, &want_n, &err);
    REQUIRE(want, "qwen3 render: %s", err.msg);
    int failures = 0, successes = 0;
    for (size_t budget = 1024; budget < (1u << 20); budget += budget / 16) {
        kiln_template_limits lim = {.max_memory_bytes = budget};
        size_t n = 0;
        char *got = kiln_chat_render_limited(qwen3, vars, &lim, &n, &err);
        if (got) {
            successes++;
            CHECK(n == want_n && !memcmp(got, want, n), "budget %zu: output differs", budget);
        } else {
            failures++;
            CHECK(strstr(err.msg, "memory limit exceeded") && !strchr(err.msg, '\n'), "budget %zu: [%s]", budget,
                  err.msg);
        }
        free(got);
    }
    CHECK(failures > 10 && successes > 3, "%d failures, %d successes: the budgets missed the render", failures,
          successes);
    free(want);
    kiln_tokenizer_free(qwen3);
}

/* Work that allocates nothing (searching, comparing, counting characters of a long string in a loop) is
 * charged to the step budget too: each of these ran for minutes (or hours: a 2 MB reversed slice was
 * quadratic) inside every other limit. A small step budget keeps each case short. */
TEST(hostile_scans_count_as_steps) {
    kiln_template_limits lim = {.max_steps = 20000};
    const char *loops[] = {"{{ 'b' in s }}", "{{ s|length }}", "{{ s[-1] }}", "{{ s.rfind('b') }}", "{{ s.count('b') }}",
                           "{{ s == t }}",   "{{ s < t }}",   "{{ s.strip() }}", "{{ s.startswith(t) }}",
                           "{{ s.split('b')|length }}", "{{ s.replace('b', 'c')|length }}", "{{ s.find('b') }}"};
    for (size_t i = 0; i < sizeof loops / sizeof *loops; i++) {
        char t[300];
        snprintf(t, sizeof t, "{%% set s = ' ' * 1000000 %%}{%% set t = ' ' * 1000000 %%}"
                              "{%% for i in range(100000) %%}%s{%% endfor %%}", loops[i]);
        expect_clean_error(t, &lim, "step limit exceeded (max_steps 20000", __LINE__);
    }
    EXPECT_IN_CHILD("{{ ('ab' * 1000000)[::-1]|length }} {{ ('ab' * 1000000)[1::2]|length }} {{ 'héllo'[::-2] }}", "2000000 1000000 olh");
}

/* Every limit is configurable and named in its error; 0 keeps a field's default. */
TEST(template_limits_are_configurable) {
    kiln_template_limits steps = {.max_steps = 10};
    const char *loop = "{% for i in range(N) %}{{ i }}{% endfor %}";
    char t[128];
    snprintf(t, sizeof t, "%s", loop);
    t[strstr(t, "N") - t] = '9'; /* 9 iterations: within 10 */
    kiln_err err = {{0}};
    size_t n;
    char *out = kiln_template_render_limited(t, "{}", &steps, &n, &err);
    CHECK(out && !strcmp(out, "012345678"), "9 iterations under max_steps 10: [%s]", out ? out : err.msg);
    free(out);
    expect_clean_error("{% for i in range(11) %}{% endfor %}", &steps, "step limit exceeded (max_steps 10 ", __LINE__);
    kiln_template_limits output = {.max_output_bytes = 8};
    out = kiln_template_render_limited("12345678", "{}", &output, &n, &err);
    CHECK(out && n == 8, "8 bytes under max_output_bytes 8: [%s]", out ? out : err.msg);
    free(out);
    expect_clean_error("123456789", &output, "longer than the output limit (max_output_bytes 8)", __LINE__);
    kiln_template_limits memory = {.max_memory_bytes = 1 << 20};
    expect_clean_error("{{ range(100000)|list|length }}", &memory, "memory limit exceeded (max_memory_bytes 1048576)",
                       __LINE__);
    kiln_template_limits depth = {.max_depth = 30};
    expect_clean_error("{{ ((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))) }}", &depth,
                       "nesting too deep (max_depth 30", __LINE__);
    out = kiln_template_render_limited("{{ (((1))) }}", "{}", &depth, &n, &err);
    CHECK(out && !strcmp(out, "1"), "shallow nesting under max_depth 30: [%s]", out ? out : err.msg);
    free(out);
    /* the error names the line and column where the limit broke */
    expect_clean_error("a\n{% for i in range(20) %}{{ i }}{% endfor %}", &steps, "template line 2 column", __LINE__);
}

/* ---- goldens: ../shared/golden/tokenizers/<tok>.chat.jsonl ---- */
/* Limits a hundredth of the defaults (depth a tenth): every published template and golden conversation must
 * render within them, which shows the defaults' headroom (measured at the most: 35 steps, 22 levels, 1 KB
 * strings, 200 KB of memory). */
static const kiln_template_limits tight = {.max_output_bytes = KILN_TEMPLATE_MAX_OUTPUT_BYTES / 100,
                                           .max_memory_bytes = KILN_TEMPLATE_MAX_MEMORY_BYTES / 100,
                                           .max_steps = KILN_TEMPLATE_MAX_STEPS / 100,
                                           .max_depth = KILN_TEMPLATE_MAX_DEPTH / 10};

static void golden_chat(const char *name, const kiln_template_limits *lim) {
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
        char *got = lim ? kiln_chat_render_limited(t, vs, lim, &n, &err) : kiln_chat_render(t, vs, &n, &err);
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
 * renders in a cases file: cases.jsonl (each checked by reading the template with Python jinja2 semantics)
 * or hf_cases.jsonl (Phi-3, Gemma 2 / 3, Mistral v0.3: rendered by @huggingface/jinja, render_hf.mjs). */
static void published_templates_under(const char *cases, const kiln_template_limits *lim) {
    FILE *f = fopen(cases, "r");
    REQUIRE(f, "missing %s", cases);
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
        REQUIRE(j, "%s line %d: bad JSON", cases, lines);
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
        char *got = tmpl ? kiln_template_render_limited(tmpl, vars, lim, NULL, &err) : NULL;
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

#define CASES "tests/fixtures/templates/cases.jsonl"
#define HF_CASES "tests/fixtures/templates/hf_cases.jsonl"
TEST(published_templates) { published_templates_under(CASES, NULL); }
TEST(published_templates_hf_jinja) { published_templates_under(HF_CASES, NULL); }
TEST(golden_chat_llama3) { golden_chat("llama3", NULL); }
TEST(golden_chat_qwen3) { golden_chat("qwen3", NULL); }
TEST(real_templates_far_inside_the_limits) {
    published_templates_under(CASES, &tight);
    published_templates_under(HF_CASES, &tight);
    golden_chat("llama3", &tight);
    golden_chat("qwen3", &tight);
}

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
    RUN(published_templates_hf_jinja);
    RUN(golden_chat_llama3);
    RUN(golden_chat_qwen3);
    RUN(real_templates_far_inside_the_limits);
    RUN(hostile_recursion_is_an_error);
    RUN(hostile_arithmetic_overflow_is_an_error);
    RUN(hostile_range_counts_without_overflow);
    RUN(hostile_growth_stops_at_the_budget);
    RUN(hostile_scans_count_as_steps);
    RUN(template_limits_are_configurable);
    RUN(memory_failure_anywhere_frees_everything);
    return check_done();
}
