/* config: a TOML 1.0 parser (https://toml.io/en/v1.0.0), recursive descent over
 * the whole input held in memory.
 *
 * The first error stops the parse: TOML gives no safe way to resynchronise, and
 * a second message after a syntax error is usually noise. Every key and value
 * records its position; positions are computed lazily from byte offsets (see
 * pos_at) so the scanner never has to count lines itself.
 */
#include "toml_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Arrays and inline tables nest by recursion; this bounds the C stack. */
enum { MAX_DEPTH = 128 };

struct parser {
    const char *file;
    const char *src;
    size_t len;
    size_t pos;
    struct cfg_diag *diag;
    bool failed;
    int depth;
    uint32_t section;      /* current [header] section (or inline table) */
    uint32_t next_section; /* counter for new sections */
    /* pos_at cache: the line that starts at line_off is number `line`. */
    size_t cache_off, cache_line_off;
    uint32_t cache_line;
    struct sv_buf scratch; /* string bodies while they are unescaped */
};

/* One segment of a dotted key. */
struct key_seg {
    char *s; /* owned, NUL-terminated */
    size_t len;
    size_t at; /* byte offset in the source */
};

struct key {
    struct key_seg *segs;
    size_t n, cap;
};

/* --- positions and errors -------------------------------------------------- */

static struct cfg_pos pos_at(struct parser *p, size_t off)
{
    if (off > p->len)
        off = p->len;
    if (off < p->cache_off) {
        p->cache_off = 0;
        p->cache_line_off = 0;
        p->cache_line = 1;
    }
    for (size_t i = p->cache_off; i < off; i++) {
        if (p->src[i] == '\n') {
            p->cache_line++;
            p->cache_line_off = i + 1;
        }
    }
    p->cache_off = off;
    return (struct cfg_pos){p->file, p->cache_line, (uint32_t)(off - p->cache_line_off + 1)};
}

static void SV_PRINTF(3, 4) perr(struct parser *p, size_t at, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cfg_error(p->diag, pos_at(p, at), "%s", msg);
}

static void oom(struct parser *p)
{
    perr(p, p->pos, "out of memory");
}

/* Names the character at `at` for an error message: 'x', newline, end of file, ... */
static const char *describe(const struct parser *p, size_t at, char *buf, size_t size)
{
    if (at >= p->len)
        return "end of file";
    unsigned char c = (unsigned char)p->src[at];
    if (c == '\n')
        return "newline";
    if (c == '\r')
        return at + 1 < p->len && p->src[at + 1] == '\n' ? "newline" : "carriage return";
    if (c == '\t')
        return "tab";
    if (c == ' ')
        return "space";
    if (c < 0x20 || c == 0x7f) {
        snprintf(buf, size, "control character U+%04X", c);
        return buf;
    }
    if (c < 0x80) {
        snprintf(buf, size, "'%c'", c);
        return buf;
    }
    /* The input is valid UTF-8 by now: quote the whole character. */
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    snprintf(buf, size, "'%.*s'", (int)n, p->src + at);
    return buf;
}

/* Renders a dotted key for messages, quoting segments that are not bare. */
static const char *key_name(const struct key *k, size_t n, char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        const struct key_seg *s = &k->segs[i];
        bool bare = s->len > 0;
        for (size_t j = 0; j < s->len; j++) {
            char c = s->s[j];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-'))
                bare = false;
        }
        int w = snprintf(buf + o, size - o, bare ? "%s%.*s" : "%s\"%.*s\"", i ? "." : "",
                         (int)s->len, s->s);
        if (w < 0)
            break;
        o += (size_t)w;
    }
    return buf;
}

static void key_free(struct key *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->segs[i].s);
    free(k->segs);
    memset(k, 0, sizeof(*k));
}

/* --- UTF-8 ------------------------------------------------------------------- */

/* Returns the length of the valid UTF-8 sequence at s (max n bytes), or 0. Rejects
 * overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static bool check_utf8(struct parser *p)
{
    const unsigned char *s = (const unsigned char *)p->src;
    for (size_t i = 0; i < p->len;) {
        size_t n = utf8_len(s + i, p->len - i);
        if (n == 0) {
            perr(p, i, "invalid UTF-8 byte 0x%02X (TOML files must be UTF-8)", s[i]);
            return false;
        }
        i += n;
    }
    return true;
}

static int put_utf8(struct sv_buf *b, uint32_t cp)
{
    char t[4];
    size_t n;
    if (cp < 0x80) {
        t[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        t[0] = (char)(0xc0 | (cp >> 6));
        t[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        t[0] = (char)(0xe0 | (cp >> 12));
        t[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        t[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        t[0] = (char)(0xf0 | (cp >> 18));
        t[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        t[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        t[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return sv_buf_append(b, t, n);
}

/* --- scanning helpers ---------------------------------------------------------- */

static int peek(const struct parser *p, size_t ahead)
{
    return p->pos + ahead < p->len ? (unsigned char)p->src[p->pos + ahead] : -1;
}

static bool at_newline(const struct parser *p)
{
    return peek(p, 0) == '\n' || (peek(p, 0) == '\r' && peek(p, 1) == '\n');
}

static void skip_newline(struct parser *p)
{
    p->pos += peek(p, 0) == '\r' ? 2 : 1;
}

static void skip_ws(struct parser *p)
{
    while (peek(p, 0) == ' ' || peek(p, 0) == '\t')
        p->pos++;
}

static bool is_control(int c)
{
    return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f;
}

/* At '#': skips to the end of the line (not past it). Comments may hold any
 * UTF-8 text but no control characters other than tab. */
static void skip_comment(struct parser *p)
{
    p->pos++;
    while (p->pos < p->len && !at_newline(p)) {
        int c = peek(p, 0);
        if (is_control(c)) {
            char d[48];
            perr(p, p->pos, "%s is not allowed in a comment", describe(p, p->pos, d, sizeof(d)));
            return;
        }
        p->pos++;
    }
}

/* Skips whitespace, newlines and comments (inside arrays). */
static void skip_ws_nl(struct parser *p)
{
    while (!p->failed) {
        skip_ws(p);
        if (peek(p, 0) == '#')
            skip_comment(p);
        else if (at_newline(p))
            skip_newline(p);
        else
            return;
    }
}

/* After a key/value pair or a header: only whitespace and a comment may follow. */
static void expect_eol(struct parser *p, const char *after)
{
    skip_ws(p);
    if (peek(p, 0) == '#')
        skip_comment(p);
    if (p->failed || p->pos >= p->len)
        return;
    if (at_newline(p)) {
        skip_newline(p);
        return;
    }
    char d[48];
    perr(p, p->pos, "unexpected %s after %s, expected a newline", describe(p, p->pos, d, sizeof(d)),
         after);
}

static bool is_bare_key_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* --- strings ----------------------------------------------------------------- */

/* Copies the scratch buffer into an owned, NUL-terminated string. */
static char *scratch_dup(struct parser *p, size_t *len)
{
    char *s = malloc(p->scratch.len + 1);
    if (!s) {
        oom(p);
        return NULL;
    }
    if (p->scratch.len)
        memcpy(s, p->scratch.ptr, p->scratch.len);
    s[p->scratch.len] = '\0';
    *len = p->scratch.len;
    return s;
}

static void append(struct parser *p, const char *s, size_t n)
{
    if (sv_buf_append(&p->scratch, s, n) != 0)
        oom(p);
}

/* At a backslash inside a basic string: appends the unescaped character. */
static void parse_escape(struct parser *p)
{
    size_t at = p->pos;
    int c = peek(p, 1);
    const char *rep = NULL;
    switch (c) {
    case 'b': rep = "\b"; break;
    case 't': rep = "\t"; break;
    case 'n': rep = "\n"; break;
    case 'f': rep = "\f"; break;
    case 'r': rep = "\r"; break;
    case '"': rep = "\""; break;
    case '\\': rep = "\\"; break;
    case 'u':
    case 'U': {
        size_t n = c == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (size_t i = 0; i < n; i++) {
            int h = hexval(peek(p, 2 + i));
            if (h < 0) {
                size_t shown = 2 + i + (peek(p, 2 + i) >= 0x20 && peek(p, 2 + i) < 0x7f);
                perr(p, at, "invalid unicode escape '%.*s': \\%c needs %zu hex digits", (int)shown,
                     p->src + at, c, n);
                return;
            }
            cp = cp * 16 + (uint32_t)h;
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            perr(p, at, "invalid unicode escape '%.*s': not a Unicode scalar value", (int)(2 + n),
                 p->src + at);
            return;
        }
        if (put_utf8(&p->scratch, cp) != 0)
            oom(p);
        p->pos += 2 + n;
        return;
    }
    default: {
        char d[48];
        if (c >= 0x20 && c < 0x7f)
            perr(p, at, "invalid escape sequence '\\%c' in string", c);
        else
            perr(p, at, "invalid escape sequence: backslash followed by %s",
                 describe(p, p->pos + 1, d, sizeof(d)));
        return;
    }
    }
    append(p, rep, 1);
    p->pos += 2;
}

static void bad_char_in_string(struct parser *p, const char *kind)
{
    char d[48];
    if (p->pos >= p->len)
        perr(p, p->pos, "unterminated %s: reached end of file", kind);
    else if (at_newline(p))
        perr(p, p->pos, "unterminated %s: newline before the closing quote", kind);
    else
        perr(p, p->pos, "%s is not allowed in a %s (use an escape)",
             describe(p, p->pos, d, sizeof(d)), kind);
}

/* Parses a string of any of the four kinds at p->pos into p->scratch. */
static bool parse_string_body(struct parser *p)
{
    sv_buf_reset(&p->scratch);
    size_t start = p->pos;
    char q = p->src[p->pos];
    bool literal = q == '\'';
    bool multi = peek(p, 1) == q && peek(p, 2) == q;
    const char *kind = literal ? (multi ? "multi-line literal string" : "literal string")
                               : (multi ? "multi-line string" : "string");
    if (!multi) {
        p->pos++;
        for (;;) {
            int c = peek(p, 0);
            if (c == q) {
                p->pos++;
                return !p->failed;
            }
            if (c == '\\' && !literal) {
                parse_escape(p);
                if (p->failed)
                    return false;
                continue;
            }
            if (c < 0 || is_control(c)) {
                bad_char_in_string(p, kind);
                return false;
            }
            append(p, p->src + p->pos, 1);
            p->pos++;
        }
    }
    p->pos += 3;
    /* A newline right after the opening delimiter is trimmed. */
    if (at_newline(p))
        skip_newline(p);
    for (;;) {
        int c = peek(p, 0);
        if (c == q && peek(p, 1) == q && peek(p, 2) == q) {
            /* Up to two quotes may sit right before the closing delimiter. */
            size_t n = 3;
            while (n < 5 && peek(p, (size_t)n) == q)
                n++;
            append(p, p->src + p->pos, n - 3);
            p->pos += n;
            return !p->failed;
        }
        if (c < 0) {
            perr(p, start, "unterminated %s: no closing %c%c%c before end of file", kind, q, q, q);
            return false;
        }
        if (at_newline(p)) {
            append(p, p->src + p->pos, c == '\r' ? 2 : 1);
            skip_newline(p);
            continue;
        }
        if (c == '\\' && !literal) {
            /* Line-ending backslash: eat all whitespace and newlines that follow. */
            size_t i = 1;
            while (peek(p, i) == ' ' || peek(p, i) == '\t')
                i++;
            if (peek(p, i) == '\n' || (peek(p, i) == '\r' && peek(p, i + 1) == '\n')) {
                p->pos += i;
                for (;;) {
                    if (peek(p, 0) == ' ' || peek(p, 0) == '\t')
                        p->pos++;
                    else if (at_newline(p))
                        skip_newline(p);
                    else
                        break;
                }
                continue;
            }
            parse_escape(p);
            if (p->failed)
                return false;
            continue;
        }
        if (is_control(c)) {
            bad_char_in_string(p, kind);
            return false;
        }
        append(p, p->src + p->pos, 1);
        p->pos++;
    }
}

/* --- keys -------------------------------------------------------------------- */

static bool key_push(struct parser *p, struct key *k, const char *s, size_t len, size_t at)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        struct key_seg *segs = realloc(k->segs, cap * sizeof(*segs));
        if (!segs) {
            oom(p);
            return false;
        }
        k->segs = segs;
        k->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        oom(p);
        return false;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    k->segs[k->n++] = (struct key_seg){copy, len, at};
    return true;
}

/* Parses a (possibly dotted) key at p->pos; `what` names the context for errors. */
static bool parse_key(struct parser *p, struct key *k, const char *what)
{
    for (;;) {
        size_t at = p->pos;
        int c = peek(p, 0);
        if (c == '"' || c == '\'') {
            if (peek(p, 1) == c && peek(p, 2) == c) {
                perr(p, at, "multi-line strings cannot be used as keys");
                return false;
            }
            if (!parse_string_body(p))
                return false;
            if (!key_push(p, k, p->scratch.ptr ? p->scratch.ptr : "", p->scratch.len, at))
                return false;
        } else if (is_bare_key_char(c)) {
            while (is_bare_key_char(peek(p, 0)))
                p->pos++;
            if (!key_push(p, k, p->src + at, p->pos - at, at))
                return false;
        } else {
            char d[48];
            perr(p, at, "expected %s, found %s", k->n ? "a key after '.'" : what,
                 describe(p, at, d, sizeof(d)));
            return false;
        }
        skip_ws(p);
        if (peek(p, 0) != '.')
            return true;
        p->pos++;
        skip_ws(p);
    }
}

/* --- numbers, booleans, dates ------------------------------------------------- */

/* Checks digits-with-underscores: every '_' sits between two digits of `base`. */
static bool digits_ok(const char *s, size_t len, int base)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '_') {
            if (i == 0 || i + 1 == len || s[i - 1] == '_' || s[i + 1] == '_')
                return false;
            continue;
        }
        int h = hexval((unsigned char)s[i]);
        if (h < 0 || h >= base)
            return false;
    }
    return true;
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* Parses an integer or float token; returns false (with an error) when invalid. */
static bool parse_number(struct parser *p, const char *t, size_t len, size_t at,
                         struct cfg_value *v)
{
    size_t i = (t[0] == '+' || t[0] == '-') ? 1 : 0;
    const char *body = t + i;
    size_t blen = len - i;
    if (blen >= 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'o' || body[1] == 'b')) {
        int base = body[1] == 'x' ? 16 : body[1] == 'o' ? 8 : 2;
        if (i) {
            perr(p, at, "invalid integer '%.*s': a sign is not allowed on %s integers", (int)len, t,
                 base == 16  ? "hexadecimal"
                 : base == 8 ? "octal"
                             : "binary");
            return false;
        }
        if (!digits_ok(body + 2, blen - 2, base)) {
            perr(p, at, "invalid %s integer '%.*s'",
                 base == 16  ? "hexadecimal"
                 : base == 8 ? "octal"
                             : "binary",
                 (int)len, t);
            return false;
        }
        uint64_t u = 0;
        for (size_t j = 2; j < blen; j++) {
            if (body[j] == '_')
                continue;
            uint64_t d = (uint64_t)hexval((unsigned char)body[j]);
            if (u > ((uint64_t)INT64_MAX - d) / (uint64_t)base) {
                perr(p, at, "integer '%.*s' is out of range (64-bit signed)", (int)len, t);
                return false;
            }
            u = u * (uint64_t)base + d;
        }
        v->type = CFG_INTEGER;
        v->u.integer = (int64_t)u;
        return true;
    }
    /* dec-int [ frac ] [ exp ] */
    size_t int_end = 0;
    while (int_end < blen && (is_digit(body[int_end]) || body[int_end] == '_'))
        int_end++;
    size_t frac_start = int_end, frac_end = int_end, exp_start = blen;
    bool is_float = false, ok = int_end > 0 && digits_ok(body, int_end, 10);
    if (ok && int_end > 1 && body[0] == '0') {
        perr(p, at, "invalid number '%.*s': leading zeros are not allowed", (int)len, t);
        return false;
    }
    if (ok && frac_start < blen && body[frac_start] == '.') {
        is_float = true;
        frac_end = frac_start + 1;
        while (frac_end < blen && (is_digit(body[frac_end]) || body[frac_end] == '_'))
            frac_end++;
        ok = digits_ok(body + frac_start + 1, frac_end - frac_start - 1, 10);
    }
    if (ok && frac_end < blen && (body[frac_end] == 'e' || body[frac_end] == 'E')) {
        is_float = true;
        exp_start = frac_end + 1;
        if (exp_start < blen && (body[exp_start] == '+' || body[exp_start] == '-'))
            exp_start++;
        ok = digits_ok(body + exp_start, blen - exp_start, 10);
    } else if (ok && frac_end != blen) {
        ok = false;
    }
    if (!ok) {
        perr(p, at, "invalid %s '%.*s'", is_float ? "float" : "number", (int)len, t);
        return false;
    }
    char buf[128];
    size_t o = 0;
    for (size_t j = 0; j < len; j++) {
        if (t[j] == '_')
            continue;
        if (o + 1 >= sizeof(buf)) {
            perr(p, at, "number '%.*s' is too long", (int)len, t);
            return false;
        }
        buf[o++] = t[j];
    }
    buf[o] = '\0';
    errno = 0;
    if (is_float) {
        double d = strtod(buf, NULL);
        if (errno == ERANGE && isinf(d)) {
            perr(p, at, "float '%.*s' is out of range", (int)len, t);
            return false;
        }
        v->type = CFG_FLOAT;
        v->u.flt = d;
        return true;
    }
    long long ll = strtoll(buf, NULL, 10);
    if (errno == ERANGE) {
        perr(p, at, "integer '%.*s' is out of range (64-bit signed)", (int)len, t);
        return false;
    }
    v->type = CFG_INTEGER;
    v->u.integer = ll;
    return true;
}

/* Reads exactly `n` digits at s; returns -1 if any is not a digit. */
static int num_n(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return days[m - 1];
}

/* Parses "HH:MM:SS[.frac]" at t; returns its length or 0 (with *why set). */
static size_t parse_time(const char *t, size_t len, const char **why)
{
    if (len < 8 || t[2] != ':' || t[5] != ':') {
        *why = "expected HH:MM:SS";
        return 0;
    }
    int h = num_n(t, 2), m = num_n(t + 3, 2), s = num_n(t + 6, 2);
    if (h < 0 || m < 0 || s < 0) {
        *why = "expected HH:MM:SS";
        return 0;
    }
    if (h > 23 || m > 59 || s > 60) {
        *why = h > 23   ? "hour out of range"
               : m > 59 ? "minute out of range"
                        : "second out of range";
        return 0;
    }
    size_t n = 8;
    if (n < len && t[n] == '.') {
        n++;
        size_t d = n;
        while (n < len && is_digit((unsigned char)t[n]))
            n++;
        if (n == d) {
            *why = "expected digits after '.'";
            return 0;
        }
    }
    return n;
}

/* Validates a date/time token and sets v's type and normalised text
 * ("T" and "Z" upper case, at least millisecond precision, as toml-test prints). */
static bool parse_datetime(struct parser *p, const char *t, size_t len, size_t at,
                           struct cfg_value *v)
{
    const char *why = "malformed";
    char out[96];
    size_t o = 0, i = 0;
    bool has_date = false, has_time = false, has_off = false, sep = false;
    if (len >= 10 && t[4] == '-') {
        int y = num_n(t, 4), mo = t[7] == '-' ? num_n(t + 5, 2) : -1, d = num_n(t + 8, 2);
        if (y < 0 || mo < 0 || d < 0) {
            why = "expected YYYY-MM-DD";
            goto bad;
        }
        if (mo < 1 || mo > 12) {
            why = "month out of range";
            goto bad;
        }
        if (d < 1 || d > days_in_month(y, mo)) {
            why = "day out of range";
            goto bad;
        }
        memcpy(out, t, 10);
        o = i = 10;
        has_date = true;
        if (i < len) {
            if (t[i] != 'T' && t[i] != 't' && t[i] != ' ') {
                why = "expected 'T' between date and time";
                goto bad;
            }
            out[o++] = 'T';
            i++;
            sep = true;
        }
    }
    if (!has_date || sep) {
        size_t n = parse_time(t + i, len - i, &why);
        if (n == 0)
            goto bad;
        if (n > 40) {
            why = "too many fractional digits";
            goto bad;
        }
        memcpy(out + o, t + i, n);
        o += n;
        /* toml-test prints fractions with at least millisecond precision. */
        for (size_t f = n > 8 ? n - 9 : 3; f < 3; f++)
            out[o++] = '0';
        i += n;
        has_time = true;
    }
    if (has_date && has_time && i < len) {
        if (t[i] == 'Z' || t[i] == 'z') {
            out[o++] = 'Z';
            i++;
        } else if ((t[i] == '+' || t[i] == '-') && len - i == 6 && t[i + 3] == ':') {
            int oh = num_n(t + i + 1, 2), om = num_n(t + i + 4, 2);
            if (oh < 0 || om < 0 || oh > 23 || om > 59) {
                why = "offset out of range";
                goto bad;
            }
            memcpy(out + o, t + i, 6);
            o += 6;
            i += 6;
        } else {
            why = "expected Z or an offset like +01:00";
            goto bad;
        }
        has_off = true;
    }
    if (i != len) {
        why = "unexpected text after the time";
        goto bad;
    }
    out[o] = '\0';
    v->type = has_off                ? CFG_DATETIME
              : has_date && has_time ? CFG_DATETIME_LOCAL
              : has_date             ? CFG_DATE_LOCAL
                                     : CFG_TIME_LOCAL;
    v->u.str.ptr = malloc(o + 1);
    if (!v->u.str.ptr) {
        oom(p);
        return false;
    }
    memcpy(v->u.str.ptr, out, o + 1);
    v->u.str.len = o;
    return true;
bad:
    perr(p, at, "invalid date/time '%.*s': %s", (int)len, t, why);
    return false;
}

static bool is_token_char(int c)
{
    return is_bare_key_char(c) || c == '+' || c == '.' || c == ':';
}

/* A bare value: boolean, number, inf/nan or date/time. */
static bool parse_bare_value(struct parser *p, struct cfg_value *v)
{
    size_t at = p->pos;
    while (is_token_char(peek(p, 0)))
        p->pos++;
    /* "1979-05-27 07:32:00": a space may separate date and time. */
    if (p->pos - at == 10 && p->src[at + 4] == '-' && peek(p, 0) == ' ' && is_digit(peek(p, 1)) &&
        is_digit(peek(p, 2)) && peek(p, 3) == ':') {
        p->pos++;
        while (is_token_char(peek(p, 0)))
            p->pos++;
    }
    const char *t = p->src + at;
    size_t len = p->pos - at;
    if (len == 0) {
        char d[48];
        perr(p, at, "expected a value, found %s", describe(p, at, d, sizeof(d)));
        return false;
    }
    if ((len == 4 && memcmp(t, "true", 4) == 0) || (len == 5 && memcmp(t, "false", 5) == 0)) {
        v->type = CFG_BOOL;
        v->u.boolean = len == 4;
        return true;
    }
    size_t s = (t[0] == '+' || t[0] == '-') ? 1 : 0;
    if (len - s == 3 && (memcmp(t + s, "inf", 3) == 0 || memcmp(t + s, "nan", 3) == 0)) {
        v->type = CFG_FLOAT;
        v->u.flt = t[s] == 'i' ? (t[0] == '-' ? -INFINITY : INFINITY) : NAN;
        return true;
    }
    if ((len >= 10 && t[4] == '-' && num_n(t, 4) >= 0) || (len >= 3 && t[2] == ':'))
        return parse_datetime(p, t, len, at, v);
    if (is_digit((unsigned char)t[s]))
        return parse_number(p, t, len, at, v);
    if (t[0] == '.' || (s && t[s] == '.')) {
        perr(p, at, "invalid float '%.*s': a digit is needed before '.'", (int)len, t);
        return false;
    }
    perr(p, at, "invalid value '%.*s' (strings need quotes)", (int)len, t);
    return false;
}

/* --- values ------------------------------------------------------------------ */

static struct cfg_value *parse_value(struct parser *p);
static bool parse_keyval(struct parser *p, struct cfg_value *table);

static struct cfg_value *new_value(struct parser *p, enum cfg_type t, size_t at)
{
    struct cfg_value *v = cfg_value_new(t, pos_at(p, at));
    if (!v)
        oom(p);
    return v;
}

/* Marks an inline table (and the dotted-key tables inside it) immutable. */
static void freeze(struct cfg_value *v)
{
    struct cfg_node *n = CFG_NODE(v);
    if (n->flags & NODE_FROZEN)
        return;
    n->flags |= NODE_FROZEN;
    if (v->type == CFG_TABLE)
        for (size_t i = 0; i < v->u.table.len; i++)
            if (v->u.table.items[i].value->type == CFG_TABLE)
                freeze(v->u.table.items[i].value);
}

static struct cfg_value *parse_array(struct parser *p)
{
    size_t at = p->pos;
    struct cfg_value *arr = new_value(p, CFG_ARRAY, at);
    if (!arr)
        return NULL;
    CFG_NODE(arr)->flags = NODE_FROZEN;
    p->pos++;
    for (;;) {
        skip_ws_nl(p);
        if (p->failed)
            goto fail;
        if (peek(p, 0) == ']')
            break;
        struct cfg_value *item = parse_value(p);
        if (!item)
            goto fail;
        if (cfg_array_push(arr, item) != 0) {
            cfg_value_free(item);
            oom(p);
            goto fail;
        }
        skip_ws_nl(p);
        if (p->failed)
            goto fail;
        if (peek(p, 0) == ',') {
            p->pos++;
            continue;
        }
        if (peek(p, 0) == ']')
            break;
        char d[48];
        if (p->pos >= p->len)
            perr(p, at, "unterminated array: no closing ']' before end of file");
        else
            perr(p, p->pos, "expected ',' or ']' in array, found %s",
                 describe(p, p->pos, d, sizeof(d)));
        goto fail;
    }
    p->pos++;
    return arr;
fail:
    cfg_value_free(arr);
    return NULL;
}

static struct cfg_value *parse_inline_table(struct parser *p)
{
    size_t at = p->pos;
    struct cfg_value *t = new_value(p, CFG_TABLE, at);
    if (!t)
        return NULL;
    uint32_t saved = p->section;
    p->section = ++p->next_section;
    p->pos++;
    skip_ws(p);
    if (peek(p, 0) != '}') {
        for (;;) {
            if (!parse_keyval(p, t))
                goto fail;
            skip_ws(p);
            if (peek(p, 0) == '}')
                break;
            char d[48];
            if (peek(p, 0) != ',') {
                if (p->pos >= p->len)
                    perr(p, at, "unterminated inline table: no closing '}' before end of file");
                else if (at_newline(p))
                    perr(p, p->pos,
                         "newline in an inline table (TOML 1.0 inline tables are "
                         "one line; use a [table] instead)");
                else
                    perr(p, p->pos, "expected ',' or '}' in inline table, found %s",
                         describe(p, p->pos, d, sizeof(d)));
                goto fail;
            }
            p->pos++;
            skip_ws(p);
            if (peek(p, 0) == '}') {
                perr(p, p->pos, "trailing comma in inline table");
                goto fail;
            }
        }
    }
    p->pos++;
    p->section = saved;
    freeze(t);
    return t;
fail:
    p->section = saved;
    cfg_value_free(t);
    return NULL;
}

static struct cfg_value *parse_value(struct parser *p)
{
    size_t at = p->pos;
    int c = peek(p, 0);
    if (p->depth >= MAX_DEPTH) {
        perr(p, at, "arrays and inline tables nested too deeply (more than %d levels)", MAX_DEPTH);
        return NULL;
    }
    struct cfg_value *v = NULL;
    p->depth++;
    if (c == '[') {
        v = parse_array(p);
    } else if (c == '{') {
        v = parse_inline_table(p);
    } else if (c == '"' || c == '\'') {
        if (parse_string_body(p) && (v = new_value(p, CFG_STRING, at)) != NULL)
            v->u.str.ptr = scratch_dup(p, &v->u.str.len);
        if (v && !v->u.str.ptr) {
            cfg_value_free(v);
            v = NULL;
        }
    } else {
        v = new_value(p, CFG_BOOL, at);
        if (v && !parse_bare_value(p, v)) {
            cfg_value_free(v);
            v = NULL;
        }
    }
    p->depth--;
    return v;
}

/* --- tables and key/value pairs ------------------------------------------------ */

static bool add_entry(struct parser *p, struct cfg_value *table, const struct key_seg *seg,
                      struct cfg_value *v)
{
    if (cfg_table_add(table, seg->s, seg->len, pos_at(p, seg->at), v) != 0) {
        oom(p);
        return false;
    }
    return true;
}

/* Creates an empty table under `seg` with the given flags. Returns borrowed or NULL. */
static struct cfg_value *add_table(struct parser *p, struct cfg_value *parent,
                                   const struct key_seg *seg, size_t at, unsigned flags)
{
    struct cfg_value *t = new_value(p, CFG_TABLE, at);
    if (!t)
        return NULL;
    CFG_NODE(t)->flags = flags;
    CFG_NODE(t)->section = p->section;
    if (!add_entry(p, parent, seg, t)) {
        cfg_value_free(t);
        return NULL;
    }
    return t;
}

static const char *a_type(enum cfg_type t)
{
    switch (t) {
    case CFG_STRING: return "a string";
    case CFG_INTEGER: return "an integer";
    case CFG_FLOAT: return "a float";
    case CFG_BOOL: return "a boolean";
    case CFG_DATETIME: return "a date-time";
    case CFG_DATETIME_LOCAL: return "a local date-time";
    case CFG_DATE_LOCAL: return "a local date";
    case CFG_TIME_LOCAL: return "a local time";
    case CFG_ARRAY: return "an array";
    case CFG_TABLE: return "a table";
    }
    return "a value";
}

/* key = value, into `table` (dotted keys create or extend sub-tables). */
static bool parse_keyval(struct parser *p, struct cfg_value *table)
{
    struct key k = {0};
    char name[256], d[48];
    if (!parse_key(p, &k, "a key"))
        goto fail;
    if (k.n > MAX_DEPTH) {
        perr(p, k.segs[0].at, "key has too many dotted parts (more than %d)", MAX_DEPTH);
        goto fail;
    }
    if (peek(p, 0) != '=') {
        perr(p, p->pos, "expected '=' after key '%s', found %s",
             key_name(&k, k.n, name, sizeof(name)), describe(p, p->pos, d, sizeof(d)));
        goto fail;
    }
    p->pos++;
    skip_ws(p);
    struct cfg_value *v = parse_value(p);
    if (!v)
        goto fail;
    struct cfg_value *t = table;
    for (size_t i = 0; i + 1 < k.n; i++) {
        struct key_seg *s = &k.segs[i];
        struct cfg_entry *e = cfg_table_find_n(t, s->s, s->len);
        if (!e) {
            t = add_table(p, t, s, s->at, NODE_DOTTED);
            if (!t)
                goto fail_v;
            continue;
        }
        struct cfg_node *n = CFG_NODE(e->value);
        key_name(&k, i + 1, name, sizeof(name));
        if (e->value->type != CFG_TABLE) {
            perr(p, s->at, "cannot add key '%s': '%s' is already %s (defined at line %u)",
                 key_name(&k, k.n, name, sizeof(name)), s->s, a_type(e->value->type),
                 e->key_pos.line);
            goto fail_v;
        }
        if (n->flags & NODE_FROZEN) {
            perr(p, s->at, "cannot add keys to inline table '%s' (defined at line %u)", name,
                 e->key_pos.line);
            goto fail_v;
        }
        if ((n->flags & NODE_EXPLICIT) || ((n->flags & NODE_DOTTED) && n->section != p->section)) {
            perr(p, s->at,
                 "cannot add keys to table '%s' with dotted keys: it was defined at line %u", name,
                 e->value->pos.line);
            goto fail_v;
        }
        n->flags |= NODE_DOTTED;
        n->section = p->section;
        t = e->value;
    }
    struct key_seg *last = &k.segs[k.n - 1];
    const struct cfg_entry *dup = cfg_table_find_n(t, last->s, last->len);
    if (dup) {
        perr(p, last->at, "duplicate key '%s' (first defined at line %u, column %u)",
             key_name(&k, k.n, name, sizeof(name)), dup->key_pos.line, dup->key_pos.col);
        goto fail_v;
    }
    if (!add_entry(p, t, last, v))
        goto fail_v;
    key_free(&k);
    return true;
fail_v:
    cfg_value_free(v);
fail:
    key_free(&k);
    return false;
}

/* [a.b.c] or [[a.b.c]]: returns the table that following keys go into. */
static struct cfg_value *parse_header(struct parser *p, struct cfg_value *root)
{
    size_t at = p->pos;
    bool aot = peek(p, 1) == '[';
    const char *what = aot ? "array of tables" : "table";
    struct key k = {0};
    char name[256], d[48];
    struct cfg_value *result = NULL;
    p->pos += aot ? 2 : 1;
    skip_ws(p);
    if (!parse_key(p, &k, aot ? "a key after '[['" : "a key after '['"))
        goto out;
    if (k.n > MAX_DEPTH) {
        perr(p, k.segs[0].at, "key has too many dotted parts (more than %d)", MAX_DEPTH);
        goto out;
    }
    if (peek(p, 0) != ']' || (aot && peek(p, 1) != ']')) {
        perr(p, p->pos, "expected '%s' to close the %s header, found %s", aot ? "]]" : "]", what,
             describe(p, aot && peek(p, 0) == ']' ? p->pos + 1 : p->pos, d, sizeof(d)));
        goto out;
    }
    p->pos += aot ? 2 : 1;
    p->section = ++p->next_section;
    key_name(&k, k.n, name, sizeof(name));

    struct cfg_value *t = root;
    for (size_t i = 0; i + 1 < k.n; i++) {
        struct key_seg *s = &k.segs[i];
        struct cfg_entry *e = cfg_table_find_n(t, s->s, s->len);
        if (!e) {
            t = add_table(p, t, s, s->at, NODE_IMPLICIT);
            if (!t)
                goto out;
            continue;
        }
        struct cfg_value *v = e->value;
        char pname[256];
        key_name(&k, i + 1, pname, sizeof(pname));
        if (v->type == CFG_TABLE && (CFG_NODE(v)->flags & NODE_FROZEN)) {
            perr(p, s->at, "cannot define %s '%s': '%s' is an inline table (line %u)", what, name,
                 pname, e->key_pos.line);
            goto out;
        }
        if (v->type == CFG_TABLE) {
            t = v;
        } else if (v->type == CFG_ARRAY && (CFG_NODE(v)->flags & NODE_AOT)) {
            t = v->u.array.items[v->u.array.len - 1];
        } else {
            perr(p, s->at, "cannot define %s '%s': '%s' is already %s (line %u)", what, name, pname,
                 a_type(v->type), e->key_pos.line);
            goto out;
        }
    }
    struct key_seg *last = &k.segs[k.n - 1];
    struct cfg_entry *e = cfg_table_find_n(t, last->s, last->len);
    if (aot) {
        struct cfg_value *arr;
        if (!e) {
            arr = new_value(p, CFG_ARRAY, at);
            if (!arr)
                goto out;
            CFG_NODE(arr)->flags = NODE_AOT;
            if (!add_entry(p, t, last, arr)) {
                cfg_value_free(arr);
                goto out;
            }
        } else if (e->value->type == CFG_ARRAY && (CFG_NODE(e->value)->flags & NODE_AOT)) {
            arr = e->value;
        } else {
            perr(p, last->at, "cannot define array of tables '%s': it is already %s%s (line %u)",
                 name, e->value->type == CFG_ARRAY ? "a static " : "",
                 e->value->type == CFG_ARRAY ? "array" : a_type(e->value->type), e->key_pos.line);
            goto out;
        }
        struct cfg_value *elem = new_value(p, CFG_TABLE, at);
        if (!elem)
            goto out;
        if (cfg_array_push(arr, elem) != 0) {
            cfg_value_free(elem);
            oom(p);
            goto out;
        }
        result = elem;
        goto out;
    }
    if (!e) {
        result = add_table(p, t, last, at, NODE_EXPLICIT);
        goto out;
    }
    struct cfg_value *v = e->value;
    unsigned f = CFG_NODE(v)->flags;
    if (v->type == CFG_TABLE && (f & NODE_IMPLICIT) &&
        !(f & (NODE_EXPLICIT | NODE_DOTTED | NODE_FROZEN))) {
        CFG_NODE(v)->flags = NODE_EXPLICIT;
        v->pos = pos_at(p, at);
        result = v;
        goto out;
    }
    if (v->type == CFG_TABLE)
        perr(p, last->at, "table '%s' is already defined (line %u)", name, e->key_pos.line);
    else if (v->type == CFG_ARRAY && (f & NODE_AOT))
        perr(p, last->at, "cannot define table '%s': it is already an array of tables (line %u)",
             name, e->key_pos.line);
    else
        perr(p, last->at, "cannot define table '%s': it is already %s (line %u)", name,
             a_type(v->type), e->key_pos.line);
out:
    key_free(&k);
    return result;
}

static void parse_document(struct parser *p, struct cfg_value *root)
{
    struct cfg_value *cur = root;
    /* A UTF-8 byte order mark is allowed at the very start only. */
    if (p->len >= 3 && memcmp(p->src, "\xEF\xBB\xBF", 3) == 0)
        p->pos = 3;
    while (!p->failed) {
        skip_ws(p);
        int c = peek(p, 0);
        if (c < 0)
            break;
        if (c == '#') {
            skip_comment(p);
            continue;
        }
        if (at_newline(p)) {
            skip_newline(p);
            continue;
        }
        if (c == '[') {
            struct cfg_value *t = parse_header(p, root);
            if (!t)
                break;
            cur = t;
            expect_eol(p, "the table header");
        } else {
            if (!parse_keyval(p, cur))
                break;
            expect_eol(p, "the value");
        }
    }
}

struct cfg_doc *cfg_doc_parse(const char *file, const char *src, size_t len, struct cfg_diag *diag)
{
    struct cfg_doc *doc = calloc(1, sizeof(*doc));
    if (!doc || !(doc->file = strdup(file ? file : "<input>"))) {
        free(doc);
        cfg_error(diag, ((struct cfg_pos){file, 0, 0}), "out of memory");
        return NULL;
    }
    struct parser p = {.file = doc->file, .src = src, .len = len, .diag = diag, .cache_line = 1};
    doc->root = cfg_value_new(CFG_TABLE, (struct cfg_pos){doc->file, 1, 1});
    if (!doc->root)
        oom(&p);
    else if (check_utf8(&p))
        parse_document(&p, doc->root);
    sv_buf_free(&p.scratch);
    if (p.failed) {
        cfg_doc_free(doc);
        return NULL;
    }
    return doc;
}

struct cfg_doc *cfg_doc_load_file(const char *path, struct cfg_diag *diag)
{
    bool is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "<stdin>" : path;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    struct sv_buf b = {0};
    int err = 0;
    if (!f) {
        err = errno;
    } else {
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
            if (sv_buf_append(&b, chunk, n) != 0) {
                err = ENOMEM;
                break;
            }
        }
        if (!err && ferror(f))
            err = errno ? errno : EIO;
        if (!is_stdin)
            fclose(f);
    }
    if (err) {
        /* Position-less: printed as "salvo: cannot read FILE: reason". */
        cfg_error(diag, ((struct cfg_pos){NULL, 0, 0}), "cannot read %s: %s", name, strerror(err));
        sv_buf_free(&b);
        return NULL;
    }
    struct cfg_doc *doc = cfg_doc_parse(name, b.ptr ? b.ptr : "", b.len, diag);
    sv_buf_free(&b);
    return doc;
}
