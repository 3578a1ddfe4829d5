/* json_schema.c — JSON Schema → GBNF (then the GBNF parser builds the IR), after llama.cpp's
 * json-schema-to-grammar: each schema becomes one GBNF item (a rule name, a literal or a group).
 *
 * Objects keep the declared property order; optional properties may be left out, so each object is a
 * chain of rules A_i (nothing written yet) / B_i (something written: a comma comes first), linear in
 * the number of properties. Output whitespace is at most one space at each place JSON allows it, so a
 * sampled output cannot wander off into blanks. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

/* The building blocks every schema may use (unused ones cost nothing). */
static const char PRIMITIVES[] =
    "ws ::= \" \"?\n"
    "jchar ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n"
    "jstring ::= \"\\\"\" jchar* \"\\\"\"\n"
    "jint ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} )\n"
    "jnum ::= jint ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?\n"
    "jbool ::= \"true\" | \"false\"\n"
    "jnull ::= \"null\"\n"
    "jvalue ::= jobject | jarray | jstring | jnum | jbool | jnull\n"
    "jobject ::= \"{\" ws ( jstring ws \":\" ws jvalue ws ( \",\" ws jstring ws \":\" ws jvalue ws )* )? \"}\"\n"
    "jarray ::= \"[\" ws ( jvalue ws ( \",\" ws jvalue ws )* )? \"]\"\n"
    "jdate ::= [0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] )\n"
    "jtime ::= ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,6} )? "
    "( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )\n"
    "jdatetime ::= jdate \"T\" jtime\n"
    "juuid ::= [0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{12}\n"
    "jemail ::= [a-zA-Z0-9._%+-]+ \"@\" [a-zA-Z0-9-]+ ( \".\" [a-zA-Z0-9-]+ )+\n";

static const char *const FORMATS[][2] = {
    {"date", "jdate"}, {"time", "jtime"}, {"date-time", "jdatetime"}, {"uuid", "juuid"}, {"email", "jemail"}};

/* Keywords understood here, and annotations that do not constrain the output (ignored by design). */
static const char *const KEYWORDS[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const",
    "minLength", "maxLength", "pattern", "format", "anyOf", "oneOf", "$ref", "$defs", "definitions",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "title", "description", "default", "examples", "$schema", "$id", "$comment"};

typedef struct {
    char *ref;
    int id;
} ref_rule;

typedef struct {
    strbuf rules; /* GBNF rule definitions */
    json_t *root;
    kiln_err *err;
    int n_rules, depth;
    ref_rule *refs;
    int n_refs;
} jsc;

static int js_fail(jsc *c, const char *fmt, const char *arg) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg);
    return kiln_err_set(c->err, "json schema: %s", msg);
}
static int js_oom(jsc *c) { return kiln_err_set(c->err, "json schema: out of memory"); }

static int gen(jsc *c, json_t *s, strbuf *out);

static int check_keywords(jsc *c, json_t *s) {
    const char *key;
    json_t *v;
    json_object_foreach(s, key, v) {
        bool known = false;
        for (size_t i = 0; i < sizeof KEYWORDS / sizeof *KEYWORDS && !known; i++) known = !strcmp(key, KEYWORDS[i]);
        if (!known) return js_fail(c, "unsupported keyword '%s'", key);
    }
    return 0;
}

/* Appends the GBNF literal of a JSON value's compact text (const, enum members, property names). */
static int json_literal(jsc *c, json_t *v, strbuf *out) {
    char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc = !txt || gbnf_literal(out, txt, strlen(txt)) ? js_oom(c) : 0;
    free(txt);
    return rc;
}

/* Writes `jN ::= body` and appends jN to out. */
static int add_rule(jsc *c, strbuf *body, strbuf *out) {
    int id = ++c->n_rules;
    int rc = strbuf_printf(&c->rules, "j%d ::= %s\n", id, body->p ? body->p : "") || strbuf_printf(out, "j%d", id);
    strbuf_free(body);
    return rc ? js_oom(c) : 0;
}

/* A JSON pointer ("#", "#/$defs/x", "#/definitions/a~1b") into the root schema. */
static json_t *resolve(jsc *c, const char *ref) {
    if (ref[0] != '#') return NULL;
    json_t *at = c->root;
    for (const char *p = ref + 1; at && *p == '/';) {
        const char *e = strchr(p + 1, '/');
        size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);
        char key[256];
        size_t k = 0;
        for (size_t i = 0; i < n && k + 1 < sizeof key; i++) {
            char ch = p[1 + i];
            if (ch == '~' && i + 1 < n) ch = p[2 + i] == '1' ? '/' : '~', i++;
            key[k++] = ch;
        }
        key[k] = 0;
        at = json_object_get(at, key);
        p += 1 + n;
    }
    return at;
}

static int gen_ref(jsc *c, json_t *s, strbuf *out) {
    const char *ref = json_string_value(json_object_get(s, "$ref"));
    if (!ref) return js_fail(c, "%s must be a string", "$ref");
    for (int i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].ref, ref)) return strbuf_printf(out, "j%d", c->refs[i].id) ? js_oom(c) : 0;
    json_t *target = resolve(c, ref);
    if (!target) return js_fail(c, "$ref '%s' not found (only local #/... references are supported)", ref);
    ref_rule *r = realloc(c->refs, (size_t)(c->n_refs + 1) * sizeof *r);
    if (!r) return js_oom(c);
    c->refs = r;
    int id = ++c->n_rules; /* named before its body is generated, so recursive schemas work */
    if (!(r[c->n_refs].ref = strdup(ref))) return js_oom(c);
    r[c->n_refs++].id = id;
    strbuf body = {0};
    int rc = gen(c, target, &body);
    if (!rc && (strbuf_printf(&c->rules, "j%d ::= %s\n", id, body.p) || strbuf_printf(out, "j%d", id))) rc = js_oom(c);
    strbuf_free(&body);
    return rc;
}

static int gen_alternatives(jsc *c, json_t *list, const char *kw, strbuf *out) {
    if (!json_is_array(list) || json_array_size(list) == 0) return js_fail(c, "%s must be a non-empty array", kw);
    if (strbuf_puts(out, "(")) return js_oom(c);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        if (strbuf_puts(out, i ? " | " : " ")) return js_oom(c);
        if (!strcmp(kw, "enum") ? json_literal(c, v, out) : gen(c, v, out)) return -1;
    }
    return strbuf_puts(out, " )") ? js_oom(c) : 0;
}

/* A non-negative integer keyword; *out stays as given when absent. */
static int get_count(jsc *c, json_t *s, const char *kw, long *out) {
    json_t *v = json_object_get(s, kw);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 10000)
        return js_fail(c, "%s must be an integer from 0 to 10000", kw);
    *out = (long)json_integer_value(v);
    return 0;
}

static int put_repeat(strbuf *out, long min, long max) {
    return max < 0 ? strbuf_printf(out, "{%ld,}", min) : strbuf_printf(out, "{%ld,%ld}", min, max);
}

static int gen_string(jsc *c, json_t *s, strbuf *out) {
    json_t *fmt = json_object_get(s, "format"), *pat = json_object_get(s, "pattern");
    long min = 0, max = -1;
    if (get_count(c, s, "minLength", &min) || get_count(c, s, "maxLength", &max)) return -1;
    bool lengths = json_object_get(s, "minLength") || json_object_get(s, "maxLength");
    if ((fmt || pat) && lengths) return js_fail(c, "%s together with minLength/maxLength is not supported", fmt ? "format" : "pattern");
    if (fmt && pat) return js_fail(c, "%s", "format together with pattern is not supported");
    if (fmt) {
        const char *f = json_string_value(fmt);
        for (size_t i = 0; f && i < sizeof FORMATS / sizeof *FORMATS; i++)
            if (!strcmp(f, FORMATS[i][0])) return strbuf_printf(out, "( \"\\\"\" %s \"\\\"\" )", FORMATS[i][1]) ? js_oom(c) : 0;
        return js_fail(c, "unsupported string format '%s'", f ? f : "(not a string)");
    }
    if (pat) {
        if (!json_is_string(pat)) return js_fail(c, "%s must be a string", "pattern");
        kiln_err e = {{0}};
        strbuf re = {0};
        if (regex_to_gbnf(json_string_value(pat), true, &re, &e)) {
            strbuf_free(&re);
            return kiln_err_set(c->err, "json schema: pattern: %s", e.msg[0] ? e.msg : "out of memory");
        }
        int rc = strbuf_printf(out, "( \"\\\"\" %s \"\\\"\" )", re.p);
        strbuf_free(&re);
        return rc ? js_oom(c) : 0;
    }
    if (max >= 0 && max < min) return js_fail(c, "%s", "maxLength is below minLength");
    if (!lengths) return strbuf_puts(out, "jstring") ? js_oom(c) : 0;
    return strbuf_puts(out, "( \"\\\"\" jchar") || put_repeat(out, min, max) || strbuf_puts(out, " \"\\\"\" )") ? js_oom(c) : 0;
}

static int gen_array(jsc *c, json_t *s, strbuf *out) {
    long min = 0, max = -1;
    if (get_count(c, s, "minItems", &min) || get_count(c, s, "maxItems", &max)) return -1;
    if (max >= 0 && max < min) return js_fail(c, "%s", "maxItems is below minItems");
    json_t *items = json_object_get(s, "items");
    strbuf item = {0};
    int rc = items ? gen(c, items, &item) : strbuf_puts(&item, "jvalue") ? js_oom(c) : 0;
    strbuf body = {0};
    if (rc) return strbuf_free(&item), -1;
    if (max == 0) {
        rc = strbuf_puts(&body, "\"[\" ws \"]\"");
    } else { /* [ item (, item){min-1,max-1} ], the whole list optional when min is 0 */
        rc = strbuf_printf(&body, "\"[\" ws %s%s ws ( \",\" ws %s ws )", min ? "" : "( ", item.p, item.p) ||
             put_repeat(&body, min ? min - 1 : 0, max < 0 ? -1 : max - 1) ||
             strbuf_puts(&body, min ? " \"]\"" : " )? \"]\"");
    }
    strbuf_free(&item);
    if (rc) return strbuf_free(&body), js_oom(c);
    return add_rule(c, &body, out);
}

/* One object's rule chain (see the file comment); props[i] with their value items, add: the value item
 * of additional properties or NULL when none are allowed. */
static int gen_object(jsc *c, json_t *s, strbuf *out) {
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) return js_fail(c, "%s must be an object", "properties");
    if (req && !json_is_array(req)) return js_fail(c, "%s must be an array", "required");
    size_t i;
    json_t *v;
    json_array_foreach(req, i, v) {
        if (!json_is_string(v)) return js_fail(c, "%s must list strings", "required");
        if (!json_object_get(props, json_string_value(v)))
            return js_fail(c, "required property '%s' is not among the properties", json_string_value(v));
    }
    bool any_extra = addl ? !json_is_false(addl) : !props; /* llama.cpp: declared properties only */
    if (!props && any_extra && (!addl || json_is_true(addl))) return strbuf_puts(out, "jobject") ? js_oom(c) : 0;
    strbuf kv_add = {0};
    int rc = 0;
    if (any_extra) {
        strbuf val = {0};
        rc = !addl || json_is_true(addl) ? (strbuf_puts(&val, "jvalue") ? js_oom(c) : 0) : gen(c, addl, &val);
        if (!rc && strbuf_printf(&kv_add, "jstring ws \":\" ws %s ws", val.p)) rc = js_oom(c);
        strbuf_free(&val);
    }
    int base = ++c->n_rules, n = (int)json_object_size(props), k = 0;
    /* the tail after the declared properties: A (nothing written yet) and B (after a property) */
    if (!rc && (any_extra ? strbuf_printf(&c->rules, "j%da%d ::= ( %s j%db%d )?\nj%db%d ::= ( \",\" ws %s )*\n", base, n,
                                          kv_add.p, base, n, base, n, kv_add.p)
                          : strbuf_printf(&c->rules, "j%da%d ::= \"\"\nj%db%d ::= \"\"\n", base, n, base, n)))
        rc = js_oom(c);
    strbuf_free(&kv_add);
    const char *key;
    json_object_foreach(props, key, v) {
        if (rc) break;
        bool required = false;
        json_t *r;
        json_array_foreach(req, i, r) required |= !strcmp(json_string_value(r), key);
        strbuf kv = {0};
        json_t *name = json_string(key);
        rc = name ? json_literal(c, name, &kv) : js_oom(c);
        json_decref(name);
        if (!rc && strbuf_puts(&kv, " ws \":\" ws ")) rc = js_oom(c);
        if (!rc) rc = gen(c, json_object_get(props, key), &kv);
        if (!rc && strbuf_puts(&kv, " ws")) rc = js_oom(c);
        if (!rc && (required ? strbuf_printf(&c->rules, "j%da%d ::= %s j%db%d\nj%db%d ::= \",\" ws %s j%db%d\n", base, k, kv.p,
                                             base, k + 1, base, k, kv.p, base, k + 1)
                             : strbuf_printf(&c->rules, "j%da%d ::= %s j%db%d | j%da%d\nj%db%d ::= ( \",\" ws %s )? j%db%d\n",
                                             base, k, kv.p, base, k + 1, base, k + 1, base, k, kv.p, base, k + 1)))
            rc = js_oom(c);
        strbuf_free(&kv);
        k++;
    }
    if (rc) return rc;
    strbuf body = {0};
    if (strbuf_printf(&body, "\"{\" ws j%da0 \"}\"", base)) return js_oom(c);
    return add_rule(c, &body, out);
}

/* ---- integer ranges: digit-by-digit alternatives (as regex range generators do) ---- */
#define MAX_DIGITS 16 /* jint's limit: numbers of up to 16 digits */

/* Non-negative integers from lo to hi, both of n digits (decimal strings). */
static int digits_same_len(strbuf *o, const char *lo, const char *hi, int n) {
    if (n == 0) return 0;
    if (lo[0] == hi[0]) return strbuf_printf(o, "\"%c\" ", lo[0]) || digits_same_len(o, lo + 1, hi + 1, n - 1);
    char nines[MAX_DIGITS + 1], zeros[MAX_DIGITS + 1];
    memset(nines, '9', (size_t)n - 1), memset(zeros, '0', (size_t)n - 1);
    nines[n - 1] = zeros[n - 1] = 0;
    int rc = strbuf_printf(o, "( \"%c\" ", lo[0]) || digits_same_len(o, lo + 1, nines, n - 1);
    if (!rc && lo[0] + 1 <= hi[0] - 1) rc = strbuf_printf(o, "| [%c-%c] ", lo[0] + 1, hi[0] - 1) || (n > 1 && strbuf_printf(o, "[0-9]{%d} ", n - 1));
    return rc || strbuf_printf(o, "| \"%c\" ", hi[0]) || digits_same_len(o, zeros, hi + 1, n - 1) || strbuf_puts(o, ") ");
}

/* Non-negative integers in [lo, hi] (hi < 0: no upper bound below 10^MAX_DIGITS) as one group. */
static int uint_range(strbuf *o, long long lo, long long hi) {
    char a[32], b[32];
    int la = snprintf(a, sizeof a, "%lld", lo), rc = strbuf_puts(o, "( ");
    int lb = hi < 0 ? MAX_DIGITS : snprintf(b, sizeof b, "%lld", hi);
    for (int len = la; !rc && len <= lb; len++) { /* one alternative per digit count */
        char from[32], to[32];
        if (len == la) strcpy(from, a);
        else from[0] = '1', memset(from + 1, '0', (size_t)len - 1), from[len] = 0;
        if (hi >= 0 && len == lb) strcpy(to, b);
        else memset(to, '9', (size_t)len), to[len] = 0;
        rc = (len > la && strbuf_puts(o, "| ")) || digits_same_len(o, from, to, len);
    }
    return rc || strbuf_puts(o, ")");
}

static int get_bound(jsc *c, json_t *s, const char *kw, bool *has, long long *out) {
    json_t *v = json_object_get(s, kw);
    if (!v) return 0;
    if (!json_is_integer(v) && !(json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v)))
        return js_fail(c, "%s must be an integer here (bounds on numbers are not supported)", kw);
    long long x = json_is_integer(v) ? json_integer_value(v) : (long long)json_real_value(v);
    if (x < -999999999999999LL || x > 999999999999999LL) return js_fail(c, "%s is beyond 15 digits", kw);
    *has = true, *out = x;
    return 0;
}

/* An integer with minimum / maximum (exclusive ones too), as "-"? digits alternatives. */
static int gen_int_range(jsc *c, json_t *s, strbuf *out) {
    bool has_lo = false, has_hi = false, xlo = false, xhi = false;
    long long lo = 0, hi = 0, xl = 0, xh = 0;
    if (get_bound(c, s, "minimum", &has_lo, &lo) || get_bound(c, s, "maximum", &has_hi, &hi) ||
        get_bound(c, s, "exclusiveMinimum", &xlo, &xl) || get_bound(c, s, "exclusiveMaximum", &xhi, &xh))
        return -1;
    if (xlo && (!has_lo || xl + 1 > lo)) lo = xl + 1, has_lo = true;
    if (xhi && (!has_hi || xh - 1 < hi)) hi = xh - 1, has_hi = true;
    if (has_lo && has_hi && lo > hi) return js_fail(c, "%s", "the integer range is empty");
    strbuf b = {0};
    int rc = strbuf_puts(&b, "( ");
    bool any = false;
    if (!has_lo || lo < 0) { /* the negative part: -1 down to lo */
        long long nhi = has_lo ? -lo : -1, nlo = has_hi && hi < 0 ? -hi : 1;
        rc = rc || strbuf_puts(&b, "\"-\" ") || uint_range(&b, nlo, nhi);
        any = true;
    }
    if (!has_hi || hi >= 0) rc = rc || (any && strbuf_puts(&b, " | ")) || uint_range(&b, has_lo && lo > 0 ? lo : 0, has_hi ? hi : -1);
    rc = rc || strbuf_puts(&b, " )");
    if (!rc) rc = strbuf_puts(out, b.p);
    strbuf_free(&b);
    return rc ? js_oom(c) : 0;
}

static int gen_type(jsc *c, json_t *s, const char *type, strbuf *out) {
    static const char *const bounds[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    bool bounded = false;
    for (int i = 0; i < 4; i++) bounded |= json_object_get(s, bounds[i]) != NULL;
    if (json_object_get(s, "format") && strcmp(type, "string"))
        return js_fail(c, "format on type '%s' is not supported (formats apply to strings)", type);
    if (bounded && !strcmp(type, "integer")) return gen_int_range(c, s, out);
    if (bounded && !strcmp(type, "number"))
        return js_fail(c, "%s", "minimum / maximum on \"number\" are not supported (use \"integer\")");
    static const char *const simple[][2] = {{"integer", "jint"}, {"number", "jnum"}, {"boolean", "jbool"}, {"null", "jnull"}};
    for (size_t i = 0; i < sizeof simple / sizeof *simple; i++)
        if (!strcmp(type, simple[i][0])) return strbuf_puts(out, simple[i][1]) ? js_oom(c) : 0;
    if (!strcmp(type, "string")) return gen_string(c, s, out);
    if (!strcmp(type, "array")) return gen_array(c, s, out);
    if (!strcmp(type, "object")) return gen_object(c, s, out);
    return js_fail(c, "unknown type '%s'", type);
}

static int gen(jsc *c, json_t *s, strbuf *out) {
    if (json_is_true(s)) return strbuf_puts(out, "jvalue") ? js_oom(c) : 0;
    if (!json_is_object(s)) return js_fail(c, "%s", "a schema must be an object or true");
    if (check_keywords(c, s)) return -1;
    if (++c->depth > 100) return js_fail(c, "%s", "schema nested too deep");
    json_t *type = json_object_get(s, "type");
    int rc;
    if (json_object_get(s, "$ref")) rc = gen_ref(c, s, out);
    else if (json_object_get(s, "const")) rc = json_literal(c, json_object_get(s, "const"), out);
    else if (json_object_get(s, "enum")) rc = gen_alternatives(c, json_object_get(s, "enum"), "enum", out);
    else if (json_object_get(s, "anyOf")) rc = gen_alternatives(c, json_object_get(s, "anyOf"), "anyOf", out);
    else if (json_object_get(s, "oneOf")) rc = gen_alternatives(c, json_object_get(s, "oneOf"), "oneOf", out);
    else if (json_is_string(type)) rc = gen_type(c, s, json_string_value(type), out);
    else if (json_is_array(type)) { /* ["string", "null"]: one alternative per type */
        size_t i;
        json_t *t;
        rc = json_array_size(type) ? strbuf_puts(out, "(") : js_fail(c, "%s", "type list is empty");
        json_array_foreach(type, i, t) {
            if (rc) break;
            if (!json_is_string(t)) rc = js_fail(c, "%s", "type list must hold strings");
            else rc = strbuf_puts(out, i ? " | " : " ") ? js_oom(c) : gen_type(c, s, json_string_value(t), out);
        }
        if (!rc && strbuf_puts(out, " )")) rc = js_oom(c);
    } else if (type) rc = js_fail(c, "%s", "type must be a string or a list");
    else if (json_object_get(s, "properties") || json_object_get(s, "additionalProperties")) rc = gen_object(c, s, out);
    else if (json_object_get(s, "items")) rc = gen_array(c, s, out);
    else rc = strbuf_puts(out, "jvalue") ? js_oom(c) : 0; /* no constraint: any JSON value */
    c->depth--;
    return rc;
}

int json_schema_rules(const char *schema_json, const char *name, int *counter, strbuf *out, kiln_err *err) {
    json_error_t je;
    json_t *root = json_loads(schema_json, JSON_DECODE_ANY, &je);
    if (!root) return kiln_err_set(err, "json schema: not JSON: %s (line %d)", je.text, je.line);
    jsc c = {.root = root, .err = err, .n_rules = *counter};
    strbuf top = {0};
    int rc = gen(&c, root, &top);
    if (!rc && (strbuf_printf(out, "%s ::= %s\n", name, top.p) || strbuf_puts(out, c.rules.p ? c.rules.p : "")))
        rc = js_oom(&c);
    *counter = c.n_rules;
    for (int i = 0; i < c.n_refs; i++) free(c.refs[i].ref);
    free(c.refs);
    strbuf_free(&top);
    strbuf_free(&c.rules);
    json_decref(root);
    return rc;
}

int json_schema_primitives(strbuf *out) { return strbuf_puts(out, PRIMITIVES); }

char *kiln_json_schema_to_gbnf(const char *schema_json, kiln_err *err) {
    strbuf all = {0};
    int counter = 0;
    if (json_schema_rules(schema_json, "root", &counter, &all, err)) {
        strbuf_free(&all);
        return NULL;
    }
    if (json_schema_primitives(&all)) {
        strbuf_free(&all);
        return kiln_err_set(err, "json schema: out of memory"), NULL;
    }
    return strbuf_take(&all, NULL);
}

kiln_grammar *kiln_grammar_from_json_schema(const char *schema_json, kiln_err *err) {
    char *text = kiln_json_schema_to_gbnf(schema_json, err);
    if (!text) return NULL;
    strbuf s = {text, strlen(text), strlen(text) + 1};
    return gbnf_compile_buf(&s, "json schema", err);
}
