/* Punycode (RFC 3492) and IDNA domain conversion (RFC 5890/5891); see idna.h for
 * what is and is not checked without Unicode tables. */
#include "idna.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* --- Punycode: RFC 3492 section 5 parameters, section 6 algorithms ------------- */

enum { BASE = 36, TMIN = 1, TMAX = 26, SKEW = 38, DAMP = 700, INITIAL_BIAS = 72, INITIAL_N = 128 };
#define PUNY_MAXINT UINT32_MAX

static uint32_t adapt(uint32_t delta, uint32_t numpoints, bool first)
{
    delta = first ? delta / DAMP : delta / 2;
    delta += delta / numpoints;
    uint32_t k = 0;
    while (delta > ((BASE - TMIN) * TMAX) / 2) {
        delta /= BASE - TMIN;
        k += BASE;
    }
    return k + (BASE - TMIN + 1) * delta / (delta + SKEW);
}

static uint32_t threshold(uint32_t k, uint32_t bias)
{
    return k <= bias ? TMIN : k >= bias + TMAX ? TMAX : k - bias;
}

static char digit_char(uint32_t d)
{
    return (char)(d < 26 ? 'a' + d : '0' + (d - 26)); /* 0..25 a..z, 26..35 0..9 */
}

static uint32_t digit_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0' + 26;
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    return BASE; /* none */
}

static bool scalar(uint32_t c)
{
    return c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF);
}

int sv_punycode_encode(const uint32_t *in, size_t n, char *out, size_t *outlen)
{
    size_t cap = *outlen, o = 0;
    *outlen = 0;
    if (n >= PUNY_MAXINT)
        return -EOVERFLOW;
    for (size_t j = 0; j < n; j++) {
        if (!scalar(in[j]))
            return -EINVAL;
        if (in[j] < 0x80) {
            if (o >= cap)
                return -EOVERFLOW;
            out[o++] = (char)in[j];
        }
    }
    uint32_t h = (uint32_t)o, b = h;
    if (b > 0) {
        if (o >= cap)
            return -EOVERFLOW;
        out[o++] = '-';
    }
    uint32_t cur = INITIAL_N, delta = 0, bias = INITIAL_BIAS;
    while (h < n) {
        uint32_t m = PUNY_MAXINT;
        for (size_t j = 0; j < n; j++)
            if (in[j] >= cur && in[j] < m)
                m = in[j];
        if (m - cur > (PUNY_MAXINT - delta) / (h + 1))
            return -EOVERFLOW;
        delta += (m - cur) * (h + 1);
        cur = m;
        for (size_t j = 0; j < n; j++) {
            if (in[j] < cur && ++delta == 0)
                return -EOVERFLOW; /* wrapped past maxint */
            if (in[j] != cur)
                continue;
            uint32_t q = delta;
            for (uint32_t k = BASE;; k += BASE) {
                uint32_t t = threshold(k, bias);
                if (q < t)
                    break;
                if (o >= cap)
                    return -EOVERFLOW;
                out[o++] = digit_char(t + (q - t) % (BASE - t));
                q = (q - t) / (BASE - t);
            }
            if (o >= cap)
                return -EOVERFLOW;
            out[o++] = digit_char(q);
            bias = adapt(delta, h + 1, h == b);
            delta = 0;
            h++;
        }
        if (++delta == 0 || cur == PUNY_MAXINT)
            return -EOVERFLOW;
        cur++;
    }
    *outlen = o;
    return 0;
}

int sv_punycode_decode(const char *in, size_t n, uint32_t *out, size_t *outlen)
{
    size_t cap = *outlen, len = 0;
    *outlen = 0;
    size_t b = 0; /* the basic code points are those before the last delimiter */
    for (size_t j = 0; j < n; j++)
        if (in[j] == '-')
            b = j;
    if (b > cap)
        return -EOVERFLOW;
    for (size_t j = 0; j < b; j++) {
        if ((unsigned char)in[j] >= 0x80)
            return -EINVAL;
        out[len++] = (unsigned char)in[j];
    }
    uint32_t cur = INITIAL_N, i = 0, bias = INITIAL_BIAS;
    for (size_t in_pos = b > 0 ? b + 1 : 0; in_pos < n;) {
        uint32_t oldi = i, w = 1;
        for (uint32_t k = BASE;; k += BASE) {
            if (in_pos >= n)
                return -EINVAL; /* truncated number */
            uint32_t digit = digit_value((unsigned char)in[in_pos++]);
            if (digit >= BASE)
                return -EINVAL;
            if (digit > (PUNY_MAXINT - i) / w)
                return -EOVERFLOW;
            i += digit * w;
            uint32_t t = threshold(k, bias);
            if (digit < t)
                break;
            if (w > PUNY_MAXINT / (BASE - t))
                return -EOVERFLOW;
            w *= BASE - t;
        }
        if (len >= cap)
            return -EOVERFLOW;
        uint32_t np = (uint32_t)len + 1;
        bias = adapt(i - oldi, np, oldi == 0);
        if (i / np > PUNY_MAXINT - cur)
            return -EOVERFLOW;
        cur += i / np;
        i %= np;
        if (cur < 0x80 || !scalar(cur))
            return -EINVAL;
        memmove(out + i + 1, out + i, (len - i) * sizeof(*out));
        out[i++] = cur;
        len++;
    }
    *outlen = len;
    return 0;
}

/* --- IDNA ------------------------------------------------------------------- */

/* Decodes one well-formed UTF-8 sequence at p (before end) into *cp; returns its
 * length, or 0 when malformed (overlong, surrogate, over U+10FFFF, truncated). */
static size_t utf8_dec(const unsigned char *p, const unsigned char *end, uint32_t *cp)
{
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    size_t n = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 ? 2 : 0;
    if (n == 0 || p[0] > 0xF4 || (size_t)(end - p) < n)
        return 0;
    uint32_t c = p[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (p[i] & 0x3F);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[n] || !scalar(c))
        return 0;
    *cp = c;
    return n;
}

static size_t utf8_enc(uint32_t c, char *o)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | c >> 12);
        o[1] = (char)(0x80 | (c >> 6 & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | c >> 18);
    o[1] = (char)(0x80 | (c >> 12 & 0x3F));
    o[2] = (char)(0x80 | (c >> 6 & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

static bool is_dot(uint32_t c)
{
    /* UTS #46 maps the ideographic, full-width and half-width full stops to '.'. */
    return c == '.' || c == 0x3002 || c == 0xFF0E || c == 0xFF61;
}

/* The case mapping salvo knows without Unicode tables (UTS #46 "mapped" for these
 * blocks, which follow simple patterns). Writes 1 or 2 code points to m. */
static size_t map_cp(uint32_t c, uint32_t m[2])
{
    m[0] = c;
    bool even = (c & 1) == 0;
    if (c >= 'A' && c <= 'Z')
        m[0] = c + 32;
    else if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
        m[0] = c + 0x20;
    else if (c == 0x130) { /* I with dot above -> i + combining dot above */
        m[0] = 'i';
        m[1] = 0x307;
        return 2;
    } else if (c == 0x178)
        m[0] = 0xFF;
    else if (c == 0x17F) /* long s */
        m[0] = 's';
    else if (((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) ||
              (c >= 0x14A && c <= 0x177)) &&
             even)
        m[0] = c + 1;
    else if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && !even)
        m[0] = c + 1;
    else if (c == 0x386)
        m[0] = 0x3AC;
    else if (c >= 0x388 && c <= 0x38A)
        m[0] = c + 0x25;
    else if (c == 0x38C)
        m[0] = 0x3CC;
    else if (c >= 0x38E && c <= 0x38F)
        m[0] = c + 0x3F;
    else if ((c >= 0x391 && c <= 0x3A1) || (c >= 0x3A3 && c <= 0x3AB))
        m[0] = c + 0x20;
    else if (c >= 0x400 && c <= 0x40F)
        m[0] = c + 0x50;
    else if (c >= 0x410 && c <= 0x42F)
        m[0] = c + 0x20;
    else if (((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) ||
              (c >= 0x4D0 && c <= 0x52F)) &&
             even)
        m[0] = c + 1;
    else if (c == 0x4C0)
        m[0] = 0x4CF;
    else if (c >= 0x4C1 && c <= 0x4CE && !even)
        m[0] = c + 1;
    else if (c >= 0x531 && c <= 0x556)
        m[0] = c + 0x30;
    else if (((c >= 0x1E00 && c <= 0x1E94) || (c >= 0x1EA0 && c <= 0x1EFF)) && even)
        m[0] = c + 1;
    else if (c == 0x1E9E) { /* capital sharp s -> "ss" */
        m[0] = m[1] = 's';
        return 2;
    } else if ((c >= 0xFF21 && c <= 0xFF3A) || (c >= 0xFF41 && c <= 0xFF5A))
        m[0] = 'a' + (c - (c >= 0xFF41 ? 0xFF41 : 0xFF21));
    else if (c >= 0xFF10 && c <= 0xFF19)
        m[0] = '0' + (c - 0xFF10);
    else if (c == 0xFF0D)
        m[0] = '-';
    return 1;
}

/* Why a (mapped) non-ASCII code point cannot be in a label, or NULL. Only blocks
 * that IDNA2008 disallows whole (or nearly) are listed. */
static const char *disallowed(uint32_t c)
{
    if (c < 0xA0)
        return "control character in domain";
    if ((c < 0xC0 && c != 0xB7) || c == 0xD7 || c == 0xF7)
        return "symbol or punctuation in domain";
    if (c == 0x200C || c == 0x200D)
        return "zero-width joiner or non-joiner in domain (not supported)";
    /* U+3002 separates labels in input; inside a decoded A-label it would turn
     * one label into two on the way back. */
    if ((c >= 0x2000 && c <= 0x206F) || (c >= 0x2E00 && c <= 0x2E7F) ||
        (c >= 0x3000 && c <= 0x3003))
        return "space, punctuation or format character in domain";
    if ((c >= 0x2070 && c <= 0x2BFF && c != 0x214E && c != 0x2184) ||
        (c >= 0x1D000 && c <= 0x1D24F) || (c >= 0x1D400 && c <= 0x1D7FF) ||
        (c >= 0x1F000 && c <= 0x1FAFF))
        return "symbol or emoji in domain";
    if ((c >= 0xE000 && c <= 0xF8FF) || c >= 0xF0000)
        return "private-use code point in domain";
    if ((c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFE) == 0xFFFE)
        return "noncharacter in domain";
    if ((c >= 0xFE00 && c <= 0xFE0F) || (c >= 0xE0100 && c <= 0xE01EF))
        return "variation selector in domain";
    if ((c >= 0xE0000 && c <= 0xE007F))
        return "tag character in domain";
    if ((c >= 0xFE10 && c <= 0xFE1F) || (c >= 0xFE30 && c <= 0xFE6F) || c == 0xFEFF ||
        (c >= 0xFF00 && c <= 0xFFEF) || c >= 0xFFF0)
        return "compatibility form or special code point in domain (not mapped)";
    return NULL;
}

/* RFC 5891 4.2.3.2: a label must not start with a combining mark (common blocks). */
static bool combining(uint32_t c)
{
    return (c >= 0x300 && c <= 0x36F) || (c >= 0x483 && c <= 0x489) || (c >= 0x591 && c <= 0x5BD) ||
           (c >= 0x64B && c <= 0x65F) || c == 0x670 || (c >= 0x1AB0 && c <= 0x1AFF) ||
           (c >= 0x1DC0 && c <= 0x1DFF) || (c >= 0xFE20 && c <= 0xFE2F) || c == 0x3099 ||
           c == 0x309A;
}

static bool ldh(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Checks a U-label (mapped code points, at least one non-ASCII); NULL when fine. */
static const char *ulabel_check(const uint32_t *cp, size_t n)
{
    if (cp[0] == '-')
        return "domain label starts with '-'";
    if (cp[n - 1] == '-')
        return "domain label ends with '-'";
    if (n >= 4 && cp[2] == '-' && cp[3] == '-') /* RFC 5891 4.2.3.1 */
        return "'--' in the third and fourth positions of a domain label";
    if (combining(cp[0]))
        return "domain label starts with a combining mark";
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp[i];
        if (c < 0x80) {
            if (!ldh(c))
                return "invalid character in domain";
            continue;
        }
        const char *why = disallowed(c);
        if (why)
            return why;
        /* RFC 5892 appendix A.3: MIDDLE DOT only between two 'l' (Catalan l.l). */
        if (c == 0xB7 && (i == 0 || i + 1 == n || cp[i - 1] != 'l' || cp[i + 1] != 'l'))
            return "middle dot (U+00B7) in domain not between two 'l'";
    }
    return NULL;
}

#define LABEL_CP_MAX 64 /* more code points than this cannot fit 63 octets */

struct label {
    uint32_t cp[LABEL_CP_MAX];
    size_t n;
    bool ascii;
    char alabel[SV_IDNA_LABEL_MAX + 1]; /* A-label form when !ascii or an xn-- label */
    size_t alen;
};

/* Validates an ASCII label (lower-cased in cp); decodes an "xn--" one into u. */
static const char *ascii_label(struct label *l, struct label *u)
{
    if (l->n > SV_IDNA_LABEL_MAX)
        return "domain label longer than 63 octets";
    for (size_t i = 0; i < l->n; i++)
        if (!ldh(l->cp[i]))
            return "invalid character in domain";
    if (l->cp[0] == '-')
        return "domain label starts with '-'";
    if (l->cp[l->n - 1] == '-')
        return "domain label ends with '-'";
    u->n = 0;
    if (l->n < 4 || l->cp[0] != 'x' || l->cp[1] != 'n' || l->cp[2] != '-' || l->cp[3] != '-')
        return NULL;
    /* An A-label given as such must be one that IDNA produces (RFC 5891 5.4). */
    char s[SV_IDNA_LABEL_MAX + 1];
    for (size_t i = 0; i < l->n; i++)
        s[i] = (char)l->cp[i];
    size_t n = LABEL_CP_MAX;
    if (sv_punycode_decode(s + 4, l->n - 4, u->cp, &n) || n == 0)
        return "invalid A-label (xn--...) in domain";
    u->n = n;
    bool nonascii = false;
    for (size_t i = 0; i < n; i++) {
        uint32_t m[2];
        if (map_cp(u->cp[i], m) != 1 || m[0] != u->cp[i])
            return "invalid A-label (xn--...) in domain"; /* not in mapped form */
        nonascii |= u->cp[i] >= 0x80;
    }
    char re[SV_IDNA_LABEL_MAX];
    size_t rn = sizeof(re);
    if (!nonascii || ulabel_check(u->cp, n) || sv_punycode_encode(u->cp, n, re, &rn) ||
        rn != l->n - 4 || memcmp(re, s + 4, rn) != 0)
        return "invalid A-label (xn--...) in domain";
    memcpy(l->alabel, s, l->n);
    l->alen = l->n;
    return NULL;
}

static const char *unicode_label(struct label *l)
{
    const char *why = ulabel_check(l->cp, l->n);
    if (why)
        return why;
    memcpy(l->alabel, "xn--", 4);
    size_t n = SV_IDNA_LABEL_MAX - 4;
    int rc = sv_punycode_encode(l->cp, l->n, l->alabel + 4, &n);
    if (rc == -EOVERFLOW)
        return "domain label longer than 63 octets in A-label form";
    if (rc)
        return "invalid code point in domain";
    l->alen = n + 4;
    return NULL;
}

/* Appends s (n bytes) at out[*o], keeping room for the NUL. */
static int put(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
    if (cap - *o <= n)
        return -ENOSPC;
    memcpy(out + *o, s, n);
    *o += n;
    return 0;
}

static int put_cps(char *out, size_t cap, size_t *o, const uint32_t *cp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char u[4];
        size_t k = utf8_enc(cp[i], u);
        if (put(out, cap, o, u, k))
            return -ENOSPC;
    }
    return 0;
}

static int fail(const char **why, const char *reason)
{
    *why = reason;
    return -EINVAL;
}

int sv_idna_domain(const char *in, size_t len, enum sv_idna_form form, char *out, size_t cap,
                   const char **why)
{
    if (cap == 0)
        return -ENOSPC;
    out[0] = 0;
    const unsigned char *p = (const unsigned char *)in, *end = p + len;
    size_t o = 0, alen = 0; /* output length, A-label form length */
    struct label l, u;
    if (len == 0)
        return fail(why, "empty domain");
    for (;;) {
        l.n = 0;
        l.ascii = true;
        uint32_t c = 0;
        bool more = false;
        while (p < end) {
            size_t k = utf8_dec(p, end, &c);
            if (!k)
                return fail(why, "invalid UTF-8 in domain");
            p += k;
            if (is_dot(c)) {
                more = true;
                break;
            }
            uint32_t m[2];
            size_t nm = map_cp(c, m);
            if (l.n + nm > LABEL_CP_MAX)
                return fail(why, "domain label longer than 63 octets");
            for (size_t i = 0; i < nm; i++) {
                l.cp[l.n++] = m[i];
                l.ascii = l.ascii && m[i] < 0x80;
            }
        }
        if (l.n == 0)
            return fail(why, "empty label in domain (leading, trailing or double dot)");
        const char *bad = l.ascii ? ascii_label(&l, &u) : unicode_label(&l);
        if (bad)
            return fail(why, bad);
        bool alabel = !l.ascii || u.n > 0;
        size_t al = alabel ? l.alen : l.n;
        alen += al + (more ? 1 : 0);
        if (alen > SV_IDNA_DOMAIN_MAX)
            return fail(why, "domain longer than 253 octets in A-label form");
        int rc;
        if (form == SV_IDNA_ASCII && alabel)
            rc = put(out, cap, &o, l.alabel, l.alen);
        else if (form == SV_IDNA_UNICODE && l.ascii && u.n > 0)
            rc = put_cps(out, cap, &o, u.cp, u.n);
        else
            rc = put_cps(out, cap, &o, l.cp, l.n);
        if (rc == 0 && more)
            rc = put(out, cap, &o, ".", 1);
        if (rc) {
            out[0] = 0;
            return -ENOSPC;
        }
        if (!more)
            break;
    }
    out[o] = 0;
    return 0;
}
