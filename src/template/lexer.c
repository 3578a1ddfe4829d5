/* lexer.c — template source → tokens, with the whitespace rules transformers' Environment uses:
 * trim_blocks (drop the newline right after a block/comment tag), lstrip_blocks (drop spaces/tabs before a
 * block/comment tag that starts its line), `-` on either side of a tag (strip all whitespace on that side),
 * `+` (disable lstrip/trim for that tag), keep_trailing_newline=False (one trailing newline is dropped). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja.h"

typedef struct lexer {
    jctx *c;
    const char *src, *p, *end;
    jtok *t;
    size_t n, cap;
    const char *pos_at; /* last position converted to line/column: positions mostly grow, so resume there */
    int pos_line, pos_col;
} lexer;

static void pos_of(lexer *L, const char *at, int *line, int *col) {
    if (!L->pos_at || at < L->pos_at) {
        L->pos_at = L->src;
        L->pos_line = L->pos_col = 1;
    }
    for (const char *q = L->pos_at; q < at; q++) {
        if (*q == '\n') L->pos_line++, L->pos_col = 1;
        else L->pos_col++;
    }
    L->pos_at = at;
    *line = L->pos_line;
    *col = L->pos_col;
}

static jtok *emit(lexer *L, ttype t, const char *s, size_t n) {
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 256;
        jtok *nt = j_alloc(L->c, cap * sizeof *nt);
        if (L->n) memcpy(nt, L->t, L->n * sizeof *nt);
        L->t = nt;
        L->cap = cap;
    }
    jtok *k = &L->t[L->n++];
    memset(k, 0, sizeof *k);
    k->t = t;
    k->s = s;
    k->n = n;
    pos_of(L, s, &k->line, &k->col);
    return k;
}

static bool is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'; }

/* The text token just before a tag: `-` strips all trailing whitespace; lstrip_blocks strips spaces/tabs
 * back to the start of the line when nothing else precedes the tag on it. */
static void strip_prev_text(lexer *L, char sign, bool is_block) {
    if (!L->n || L->t[L->n - 1].t != T_TEXT) return;
    jtok *k = &L->t[L->n - 1];
    if (sign == '-') {
        while (k->n && is_ws(k->s[k->n - 1])) k->n--;
    } else if (sign != '+' && is_block) {
        size_t i = k->n;
        while (i && (k->s[i - 1] == ' ' || k->s[i - 1] == '\t' || k->s[i - 1] == '\r' || k->s[i - 1] == '\v' ||
                     k->s[i - 1] == '\f'))
            i--;
        bool line_start = i == 0 ? (k->s == L->src || k->s[-1] == '\n') : k->s[i - 1] == '\n';
        if (line_start) k->n = i;
    }
}

/* After a tag: `-` eats all following whitespace; trim_blocks eats one newline after %} and #}. */
static void after_tag(lexer *L, char sign, bool is_block) {
    if (sign == '-')
        while (L->p < L->end && is_ws(*L->p)) L->p++;
    else if (sign != '+' && is_block) {
        if (L->p < L->end && *L->p == '\n') L->p++;
        else if (L->p + 1 < L->end && L->p[0] == '\r' && L->p[1] == '\n') L->p += 2;
    }
}

static jstr *lex_string(lexer *L) {
    char q = *L->p++;
    const char *start = L->p - 1;
    const char *close = L->p; /* the decoded text is never longer than the literal as written */
    while (close < L->end && *close != q) close += *close == '\\' && close + 1 < L->end ? 2 : 1;
    char *buf = j_alloc(L->c, (size_t)(close - L->p) + 1);
    size_t n = 0;
    while (L->p < L->end && *L->p != q) {
        char ch = *L->p++;
        if (ch == '\\' && L->p < L->end) {
            char e = *L->p++;
            switch (e) {
            case 'n': buf[n++] = '\n'; break;
            case 't': buf[n++] = '\t'; break;
            case 'r': buf[n++] = '\r'; break;
            case '0': buf[n++] = '\0'; break;
            case 'b': buf[n++] = '\b'; break;
            case 'f': buf[n++] = '\f'; break;
            case 'v': buf[n++] = '\v'; break;
            case 'a': buf[n++] = '\a'; break;
            case '\\': buf[n++] = '\\'; break;
            case '\'': buf[n++] = '\''; break;
            case '"': buf[n++] = '"'; break;
            case '\n': break;
            case 'x':
            case 'u':
            case 'U': {
                int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                if (L->end - L->p < digits) goto bad;
                char hex[9] = {0};
                memcpy(hex, L->p, (size_t)digits);
                char *ep;
                unsigned long cp = strtoul(hex, &ep, 16);
                if (*ep || cp > 0x10FFFF) goto bad;
                L->p += digits;
                if (cp < 0x80) buf[n++] = (char)cp;
                else if (cp < 0x800) buf[n++] = (char)(0xC0 | (cp >> 6)), buf[n++] = (char)(0x80 | (cp & 0x3F));
                else if (cp < 0x10000)
                    buf[n++] = (char)(0xE0 | (cp >> 12)), buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F)),
                    buf[n++] = (char)(0x80 | (cp & 0x3F));
                else
                    buf[n++] = (char)(0xF0 | (cp >> 18)), buf[n++] = (char)(0x80 | ((cp >> 12) & 0x3F)),
                    buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F)), buf[n++] = (char)(0x80 | (cp & 0x3F));
                break;
            }
            default: /* Python keeps unknown escapes as written */
                buf[n++] = '\\';
                buf[n++] = e;
            }
        } else buf[n++] = ch;
    }
    if (L->p >= L->end) {
    bad:;
        int line, col;
        pos_of(L, start, &line, &col);
        j_fail(L->c, line, col, "unterminated or malformed string literal");
    }
    L->p++;
    jstr *s = j_alloc(L->c, sizeof *s + n + 1);
    s->n = n;
    memcpy(s->s, buf, n);
    return s;
}

/* Tokens inside {{ }} or {% %} up to the closing tag; returns the closing sign ('-', '+' or 0). */
static char lex_tag(lexer *L, bool is_block) {
    int depth = 0;
    for (;;) {
        while (L->p < L->end && is_ws(*L->p)) L->p++;
        if (L->p >= L->end) {
            int line, col;
            pos_of(L, L->p, &line, &col);
            j_fail(L->c, line, col, "unexpected end of template inside a tag");
        }
        const char *p = L->p;
        char close = is_block ? '%' : '}';
        if (depth == 0) {
            char sign = 0;
            const char *q = p;
            if (*q == '-' || *q == '+') sign = *q++;
            if (L->end - q >= 2 && q[0] == close && q[1] == '}') {
                emit(L, is_block ? T_BLOCK_END : T_VAR_END, p, (size_t)(q + 2 - p));
                L->p = q + 2;
                return sign;
            }
        }
        if (isalpha((unsigned char)*p) || *p == '_') {
            while (L->p < L->end && (isalnum((unsigned char)*L->p) || *L->p == '_')) L->p++;
            emit(L, T_NAME, p, (size_t)(L->p - p));
        } else if (isdigit((unsigned char)*p)) {
            bool is_float = false;
            while (L->p < L->end && (isdigit((unsigned char)*L->p) || *L->p == '_')) L->p++;
            if (L->p + 1 < L->end && *L->p == '.' && isdigit((unsigned char)L->p[1])) {
                is_float = true;
                L->p++;
                while (L->p < L->end && isdigit((unsigned char)*L->p)) L->p++;
            }
            if (L->p < L->end && (*L->p == 'e' || *L->p == 'E')) {
                const char *q = L->p + 1;
                if (q < L->end && (*q == '+' || *q == '-')) q++;
                if (q < L->end && isdigit((unsigned char)*q)) {
                    is_float = true;
                    L->p = q;
                    while (L->p < L->end && isdigit((unsigned char)*L->p)) L->p++;
                }
            }
            char num[64];
            size_t k = 0;
            for (const char *q = p; q < L->p && k < sizeof num - 1; q++)
                if (*q != '_') num[k++] = *q;
            num[k] = 0;
            jtok *t = emit(L, is_float ? T_FLOAT : T_INT, p, (size_t)(L->p - p));
            if (is_float) t->fv = strtod(num, NULL);
            else {
                errno = 0;
                t->iv = strtoll(num, NULL, 10);
                if (errno == ERANGE || k == sizeof num - 1)
                    j_fail(L->c, t->line, t->col, "integer literal %.30s is outside the 64-bit range", num);
            }
        } else if (*p == '\'' || *p == '"') {
            jstr *s = lex_string(L);
            emit(L, T_STRING, p, (size_t)(L->p - p))->str = s;
        } else {
            static const char *two[] = {"**", "//", "==", "!=", "<=", ">="};
            size_t n = 1;
            for (size_t i = 0; i < sizeof two / sizeof *two; i++)
                if (L->end - p >= 2 && p[0] == two[i][0] && p[1] == two[i][1]) n = 2;
            if (n == 1 && !strchr("+-*/%~<>=()[]{}.,:|!", *p)) {
                int line, col;
                pos_of(L, p, &line, &col);
                j_fail(L->c, line, col, "unexpected character '%c'", *p);
            }
            if (*p == '(' || *p == '[' || *p == '{') depth++;
            if ((*p == ')' || *p == ']' || *p == '}') && depth > 0) depth--;
            L->p += n;
            emit(L, T_OP, p, n);
        }
    }
}

/* {% raw %}...{% endraw %}: the body is text, verbatim. L->p is just after the raw tag's %}. */
static void lex_raw(lexer *L, char open_sign) {
    (void)open_sign;
    for (const char *q = L->p; q + 1 < L->end; q++) {
        if (q[0] != '{' || q[1] != '%') continue;
        const char *r = q + 2;
        char lsign = 0;
        if (*r == '-' || *r == '+') lsign = *r++;
        while (r < L->end && is_ws(*r)) r++;
        if (L->end - r < 6 || memcmp(r, "endraw", 6) != 0) continue;
        r += 6;
        while (r < L->end && is_ws(*r)) r++;
        char rsign = 0;
        if (r < L->end && (*r == '-' || *r == '+')) rsign = *r++;
        if (L->end - r < 2 || r[0] != '%' || r[1] != '}') continue;
        emit(L, T_TEXT, L->p, (size_t)(q - L->p));
        strip_prev_text(L, lsign, true);
        L->p = r + 2;
        after_tag(L, rsign, true);
        return;
    }
    int line, col;
    pos_of(L, L->p, &line, &col);
    j_fail(L->c, line, col, "missing {%% endraw %%}");
}

jtok *j_lex(jctx *c, const char *src, size_t *n_tok) {
    lexer L = {.c = c, .src = src, .p = src, .end = src + strlen(src)};
    if (L.end > L.src && L.end[-1] == '\n') L.end--; /* keep_trailing_newline=False */
    while (L.p < L.end) {
        const char *tag = L.p;
        while (tag + 1 < L.end && !(tag[0] == '{' && (tag[1] == '{' || tag[1] == '%' || tag[1] == '#'))) tag++;
        if (tag + 1 >= L.end) tag = L.end;
        if (tag > L.p) emit(&L, T_TEXT, L.p, (size_t)(tag - L.p));
        if (tag == L.end) break;
        char kind = tag[1];
        char sign = (tag + 2 < L.end && (tag[2] == '-' || tag[2] == '+')) ? tag[2] : 0;
        L.p = tag + 2 + (sign ? 1 : 0);
        strip_prev_text(&L, sign, kind != '{');
        if (kind == '#') {
            const char *e = L.p;
            while (e + 1 < L.end && !(e[0] == '#' && e[1] == '}')) e++;
            if (e + 1 >= L.end) {
                int line, col;
                pos_of(&L, tag, &line, &col);
                j_fail(c, line, col, "unterminated comment");
            }
            char esign = (e > L.p && (e[-1] == '-' || e[-1] == '+')) ? e[-1] : 0;
            L.p = e + 2;
            after_tag(&L, esign, true);
            continue;
        }
        emit(&L, kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN, tag, 2);
        size_t first = L.n;
        char esign = lex_tag(&L, kind == '%');
        after_tag(&L, esign, kind == '%');
        if (kind == '%' && L.n == first + 2 && L.t[first].t == T_NAME && L.t[first].n == 3 &&
            memcmp(L.t[first].s, "raw", 3) == 0) {
            L.n -= 3; /* drop the raw tag itself */
            lex_raw(&L, sign);
        }
    }
    emit(&L, T_EOF, L.end, 0);
    *n_tok = L.n;
    return L.t;
}
