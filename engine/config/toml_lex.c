/* config: the TOML scanner — positions, error messages, whitespace and comments,
 * UTF-8, strings, and the bare values (numbers, booleans, dates and times).
 * toml.c builds the tree from these pieces.
 */
#include "toml_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- positions and errors -------------------------------------------------- */

struct cfg_pos cfg_lex_pos(struct parser *p, size_t off)
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

void cfg_lex_error(struct parser *p, size_t at, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cfg_error(p->diag, cfg_lex_pos(p, at), "%s", msg);
}

void cfg_lex_oom(struct parser *p)
{
    cfg_lex_error(p, p->pos, "out of memory");
}

/* Names the character at `at` for an error message: 'x', newline, end of file, ... */
const char *cfg_lex_describe(const struct parser *p, size_t at, char *buf, size_t size)
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

bool cfg_lex_check_utf8(struct parser *p)
{
    const unsigned char *s = (const unsigned char *)p->src;
    for (size_t i = 0; i < p->len;) {
        size_t n = utf8_len(s + i, p->len - i);
        if (n == 0) {
            cfg_lex_error(p, i, "invalid UTF-8 byte 0x%02X (TOML files must be UTF-8)", s[i]);
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

/* At '#': skips to the end of the line (not past it). Comments may hold any
 * UTF-8 text but no control characters other than tab. */
void cfg_lex_skip_comment(struct parser *p)
{
    p->pos++;
    while (p->pos < p->len && !cfg_lex_at_newline(p)) {
        int c = cfg_lex_peek(p, 0);
        if (cfg_lex_is_control(c)) {
            char d[48];
            cfg_lex_error(p, p->pos, "%s is not allowed in a comment",
                          cfg_lex_describe(p, p->pos, d, sizeof(d)));
            return;
        }
        p->pos++;
    }
}

/* Skips whitespace, newlines and comments (inside arrays). */
void cfg_lex_skip_ws_nl(struct parser *p)
{
    while (!p->failed) {
        cfg_lex_skip_ws(p);
        if (cfg_lex_peek(p, 0) == '#')
            cfg_lex_skip_comment(p);
        else if (cfg_lex_at_newline(p))
            cfg_lex_skip_newline(p);
        else
            return;
    }
}

/* After a key/value pair or a header: only whitespace and a comment may follow. */
void cfg_lex_expect_eol(struct parser *p, const char *after)
{
    cfg_lex_skip_ws(p);
    if (cfg_lex_peek(p, 0) == '#')
        cfg_lex_skip_comment(p);
    if (p->failed || p->pos >= p->len)
        return;
    if (cfg_lex_at_newline(p)) {
        cfg_lex_skip_newline(p);
        return;
    }
    char d[48];
    cfg_lex_error(p, p->pos, "unexpected %s after %s, expected a newline",
                  cfg_lex_describe(p, p->pos, d, sizeof(d)), after);
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
char *cfg_lex_scratch_dup(struct parser *p, size_t *len)
{
    char *s = malloc(p->scratch.len + 1);
    if (!s) {
        cfg_lex_oom(p);
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
        cfg_lex_oom(p);
}

/* At a backslash inside a basic string: appends the unescaped character. */
static void parse_escape(struct parser *p)
{
    size_t at = p->pos;
    int c = cfg_lex_peek(p, 1);
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
            int h = hexval(cfg_lex_peek(p, 2 + i));
            if (h < 0) {
                size_t shown =
                    2 + i + (cfg_lex_peek(p, 2 + i) >= 0x20 && cfg_lex_peek(p, 2 + i) < 0x7f);
                cfg_lex_error(p, at, "invalid unicode escape '%.*s': \\%c needs %zu hex digits",
                              (int)shown, p->src + at, c, n);
                return;
            }
            cp = cp * 16 + (uint32_t)h;
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            cfg_lex_error(p, at, "invalid unicode escape '%.*s': not a Unicode scalar value",
                          (int)(2 + n), p->src + at);
            return;
        }
        if (put_utf8(&p->scratch, cp) != 0)
            cfg_lex_oom(p);
        p->pos += 2 + n;
        return;
    }
    default: {
        char d[48];
        if (c >= 0x20 && c < 0x7f)
            cfg_lex_error(p, at, "invalid escape sequence '\\%c' in string", c);
        else
            cfg_lex_error(p, at, "invalid escape sequence: backslash followed by %s",
                          cfg_lex_describe(p, p->pos + 1, d, sizeof(d)));
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
        cfg_lex_error(p, p->pos, "unterminated %s: reached end of file", kind);
    else if (cfg_lex_at_newline(p))
        cfg_lex_error(p, p->pos, "unterminated %s: newline before the closing quote", kind);
    else
        cfg_lex_error(p, p->pos, "%s is not allowed in a %s (use an escape)",
                      cfg_lex_describe(p, p->pos, d, sizeof(d)), kind);
}

/* Parses a string of any of the four kinds at p->pos into p->scratch. */
bool cfg_lex_string(struct parser *p)
{
    sv_buf_reset(&p->scratch);
    size_t start = p->pos;
    char q = p->src[p->pos];
    bool literal = q == '\'';
    bool multi = cfg_lex_peek(p, 1) == q && cfg_lex_peek(p, 2) == q;
    const char *kind = literal ? (multi ? "multi-line literal string" : "literal string")
                               : (multi ? "multi-line string" : "string");
    if (!multi) {
        p->pos++;
        for (;;) {
            int c = cfg_lex_peek(p, 0);
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
            if (c < 0 || cfg_lex_is_control(c)) {
                bad_char_in_string(p, kind);
                return false;
            }
            append(p, p->src + p->pos, 1);
            p->pos++;
        }
    }
    p->pos += 3;
    /* A newline right after the opening delimiter is trimmed. */
    if (cfg_lex_at_newline(p))
        cfg_lex_skip_newline(p);
    for (;;) {
        int c = cfg_lex_peek(p, 0);
        if (c == q && cfg_lex_peek(p, 1) == q && cfg_lex_peek(p, 2) == q) {
            /* Up to two quotes may sit right before the closing delimiter. */
            size_t n = 3;
            while (n < 5 && cfg_lex_peek(p, (size_t)n) == q)
                n++;
            append(p, p->src + p->pos, n - 3);
            p->pos += n;
            return !p->failed;
        }
        if (c < 0) {
            cfg_lex_error(p, start, "unterminated %s: no closing %c%c%c before end of file", kind,
                          q, q, q);
            return false;
        }
        if (cfg_lex_at_newline(p)) {
            /* CRLF becomes LF: the value should not depend on the editor's platform. */
            append(p, "\n", 1);
            cfg_lex_skip_newline(p);
            continue;
        }
        if (c == '\\' && !literal) {
            /* Line-ending backslash: eat all whitespace and newlines that follow. */
            size_t i = 1;
            while (cfg_lex_peek(p, i) == ' ' || cfg_lex_peek(p, i) == '\t')
                i++;
            if (cfg_lex_peek(p, i) == '\n' ||
                (cfg_lex_peek(p, i) == '\r' && cfg_lex_peek(p, i + 1) == '\n')) {
                p->pos += i;
                for (;;) {
                    if (cfg_lex_peek(p, 0) == ' ' || cfg_lex_peek(p, 0) == '\t')
                        p->pos++;
                    else if (cfg_lex_at_newline(p))
                        cfg_lex_skip_newline(p);
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
        if (cfg_lex_is_control(c)) {
            bad_char_in_string(p, kind);
            return false;
        }
        append(p, p->src + p->pos, 1);
        p->pos++;
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
            cfg_lex_error(p, at, "invalid integer '%.*s': a sign is not allowed on %s integers",
                          (int)len, t,
                          base == 16  ? "hexadecimal"
                          : base == 8 ? "octal"
                                      : "binary");
            return false;
        }
        if (!digits_ok(body + 2, blen - 2, base)) {
            cfg_lex_error(p, at, "invalid %s integer '%.*s'",
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
                cfg_lex_error(p, at, "integer '%.*s' is out of range (64-bit signed)", (int)len, t);
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
        cfg_lex_error(p, at, "invalid number '%.*s': leading zeros are not allowed", (int)len, t);
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
        cfg_lex_error(p, at, "invalid %s '%.*s'", is_float ? "float" : "number", (int)len, t);
        return false;
    }
    char buf[128];
    size_t o = 0;
    for (size_t j = 0; j < len; j++) {
        if (t[j] == '_')
            continue;
        if (o + 1 >= sizeof(buf)) {
            cfg_lex_error(p, at, "number '%.*s' is too long", (int)len, t);
            return false;
        }
        buf[o++] = t[j];
    }
    buf[o] = '\0';
    errno = 0;
    if (is_float) {
        double d = strtod(buf, NULL);
        if (errno == ERANGE && isinf(d)) {
            cfg_lex_error(p, at, "float '%.*s' is out of range", (int)len, t);
            return false;
        }
        v->type = CFG_FLOAT;
        v->u.flt = d;
        return true;
    }
    long long ll = strtoll(buf, NULL, 10);
    if (errno == ERANGE) {
        cfg_lex_error(p, at, "integer '%.*s' is out of range (64-bit signed)", (int)len, t);
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
        cfg_lex_oom(p);
        return false;
    }
    memcpy(v->u.str.ptr, out, o + 1);
    v->u.str.len = o;
    return true;
bad:
    cfg_lex_error(p, at, "invalid date/time '%.*s': %s", (int)len, t, why);
    return false;
}

static bool is_token_char(int c)
{
    return cfg_lex_bare_key_char(c) || c == '+' || c == '.' || c == ':';
}

/* A bare value: boolean, number, inf/nan or date/time. */
bool cfg_lex_scalar(struct parser *p, struct cfg_value *v)
{
    size_t at = p->pos;
    while (is_token_char(cfg_lex_peek(p, 0)))
        p->pos++;
    /* "1979-05-27 07:32:00": a space may separate date and time. */
    if (p->pos - at == 10 && p->src[at + 4] == '-' && cfg_lex_peek(p, 0) == ' ' &&
        is_digit(cfg_lex_peek(p, 1)) && is_digit(cfg_lex_peek(p, 2)) && cfg_lex_peek(p, 3) == ':') {
        p->pos++;
        while (is_token_char(cfg_lex_peek(p, 0)))
            p->pos++;
    }
    const char *t = p->src + at;
    size_t len = p->pos - at;
    if (len == 0) {
        char d[48];
        cfg_lex_error(p, at, "expected a value, found %s", cfg_lex_describe(p, at, d, sizeof(d)));
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
    if (s < len && is_digit((unsigned char)t[s]))
        return parse_number(p, t, len, at, v);
    if (t[0] == '.' || (s && s < len && t[s] == '.')) {
        cfg_lex_error(p, at, "invalid float '%.*s': a digit is needed before '.'", (int)len, t);
        return false;
    }
    cfg_lex_error(p, at, "invalid value '%.*s' (strings need quotes)", (int)len, t);
    return false;
}
