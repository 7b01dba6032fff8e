/* Envelope address checks (RFC 5321 section 4.1.2 and 4.5.3.1) and templates. */
#include "rq_int.h"

#include "idna.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

static bool atext(unsigned char c)
{
    /* RFC 5322 atext: letters, digits and !#$%&'*+-/=?^_`{|}~ */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* The length of the well-formed UTF-8 sequence at p (before end) for a code point
 * from U+00A0 on (no overlong forms, no surrogates, at most U+10FFFF); 0 when it is
 * malformed or a C1 control (U+0080..U+009F). RFC 6531 3.3: UTF8-non-ascii. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t n = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 ? 2 : 0;
    if (n == 0 || p[0] > 0xF4 || (size_t)(end - p) < n)
        return 0;
    uint32_t cp = p[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    static const uint32_t min[] = {0, 0, 0xA0, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static int bad(const char **why, const char *reason)
{
    *why = reason;
    return -EINVAL;
}

/* A domain that needs IDNA: a non-ASCII byte, or a label that starts "xn--". */
static bool idn(const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)d[i] >= 0x80 ||
            ((i == 0 || d[i - 1] == '.') && n - i >= 4 && strncasecmp(d + i, "xn--", 4) == 0))
            return true;
    return false;
}

static int check_ascii_domain(const char *d, size_t n, const char **why);

/* An IDN is checked in its A-label form (RFC 5891 5): DNS and ASCII SMTP see only
 * that; *alen gets its length. Other domains are checked as they are. */
static int check_domain(const char *d, size_t n, size_t *alen, const char **why)
{
    *alen = n;
    if (n == 0 || d[0] == '[' || !idn(d, n))
        return check_ascii_domain(d, n, why);
    char a[RQ_DOMAIN_MAX];
    int rc = sv_idna_domain(d, n, SV_IDNA_ASCII, a, sizeof(a), why);
    if (rc)
        return rc == -ENOSPC ? bad(why, "domain longer than 255 octets") : rc;
    *alen = strlen(a);
    return check_ascii_domain(a, *alen, why);
}

int rq_addr_domains(const char *d, char *route, char *given, const char **why)
{
    size_t n = strlen(d);
    if (d[0] == '[' || !idn(d, n)) {
        if (n >= RQ_DOMAIN_MAX)
            return bad(why, "domain longer than 255 octets");
        for (size_t i = 0; i <= n; i++)
            route[i] = given[i] = (char)tolower((unsigned char)d[i]);
        return 0;
    }
    int rc = sv_idna_domain(d, n, SV_IDNA_ASCII, route, RQ_DOMAIN_MAX, why);
    if (!rc)
        rc = sv_idna_domain(d, n, SV_IDNA_MAPPED, given, RQ_DOMAIN_MAX, why);
    return rc == -ENOSPC ? bad(why, "domain longer than 255 octets") : rc;
}

static int check_ascii_domain(const char *d, size_t n, const char **why)
{
    if (n == 0)
        return bad(why, "empty domain");
    if (n > 255)
        return bad(why, "domain longer than 255 octets");
    if (d[0] == '[') {
        /* Address literal: [1.2.3.4] or [IPv6:...] (RFC 5321 4.1.3). */
        char lit[64];
        if (d[n - 1] != ']' || n - 2 >= sizeof(lit))
            return bad(why, "bad address literal");
        memcpy(lit, d + 1, n - 2);
        lit[n - 2] = 0;
        unsigned char tmp[16];
        if (strncmp(lit, "IPv6:", 5) == 0 ? inet_pton(AF_INET6, lit + 5, tmp) == 1
                                          : inet_pton(AF_INET, lit, tmp) == 1)
            return 0;
        return bad(why, "bad address literal");
    }
    size_t label = 0, labels = 1;
    bool digits = true; /* the current label is all digits so far */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.') {
            if (label == 0)
                return bad(why, "empty label in domain (leading, trailing or double dot)");
            if (d[i - 1] == '-')
                return bad(why, "domain label ends with '-'");
            label = 0;
            labels++;
            digits = true;
            continue;
        }
        digits = digits && c >= '0' && c <= '9';
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return bad(why, "invalid character in domain");
        if (c == '-' && label == 0)
            return bad(why, "domain label starts with '-'");
        if (++label > 63)
            return bad(why, "domain label longer than 63 octets");
    }
    if (label == 0)
        return bad(why, "empty label in domain (leading, trailing or double dot)");
    if (d[n - 1] == '-')
        return bad(why, "domain label ends with '-'");
    if (labels < 2)
        return bad(why, "domain has no dot");
    /* No top-level domain is numeric: "1.2.3.4" is an IP address written without the
     * brackets of an address literal (RFC 5321 4.1.3), which MTAs refuse or misroute. */
    if (digits)
        return bad(why, "numeric top-level label (an IP address must be bracketed: [1.2.3.4])");
    return 0;
}

int rq_addr_check(const char *addr, const char **why)
{
    size_t n = strlen(addr);
    if (n == 0)
        return bad(why, "empty address");
    if (n > 254)
        return bad(why, "address longer than 254 octets");
    const char *at;
    if (addr[0] == '"') {
        /* Quoted-string: qtextSMTP or quoted-pairSMTP (backslash + printable). */
        size_t i = 1;
        for (; i < n && addr[i] != '"'; i++) {
            unsigned char c = (unsigned char)addr[i];
            if (c == '\\') {
                if (i + 1 >= n || (unsigned char)addr[i + 1] < 32 ||
                    (unsigned char)addr[i + 1] > 126)
                    return bad(why, "bad escape in quoted local part");
                i++;
            } else if (c >= 0x80) { /* RFC 6531 3.3: qtextSMTP =/ UTF8-non-ascii */
                size_t k =
                    utf8_len((const unsigned char *)addr + i, (const unsigned char *)addr + n);
                if (!k)
                    return bad(why, "invalid UTF-8 or control character in local part");
                i += k - 1;
            } else if (c < 32 || c > 126) {
                return bad(why, "control character in local part");
            }
        }
        if (i >= n)
            return bad(why, "unterminated quoted local part");
        if (addr[i + 1] != '@')
            return bad(why, "missing '@' after the quoted local part");
        at = addr + i + 1;
    } else {
        at = strchr(addr, '@');
        if (!at)
            return bad(why, "missing '@'");
        if (at == addr)
            return bad(why, "empty local part");
        for (const char *p = addr; p < at; p++) {
            unsigned char c = (unsigned char)*p;
            if (c == '.') {
                if (p == addr || p + 1 == at || p[1] == '.')
                    return bad(why, "misplaced dot in local part (leading, trailing or double)");
            } else if (c >= 0x80) { /* RFC 6531 3.3: atext =/ UTF8-non-ascii */
                size_t k = utf8_len((const unsigned char *)p, (const unsigned char *)at);
                if (!k)
                    return bad(why, "invalid UTF-8 or control character in local part");
                p += k - 1;
            } else if (c < 32 || c == 127) {
                return bad(why, "control character in local part");
            } else if (!atext(c)) {
                return bad(why, "invalid character in local part (quote it)");
            }
        }
    }
    if (at - addr > 64)
        return bad(why, "local part longer than 64 octets");
    const char *d = at + 1;
    if (strchr(d, '@'))
        return bad(why, "more than one '@'");
    size_t alen;
    int rc = check_domain(d, strlen(d), &alen, why);
    if (rc == 0 && (size_t)(at - addr) + 1 + alen > 254)
        return bad(why, "address longer than 254 octets in A-label form");
    return rc;
}

/* --- templates ----------------------------------------------------------------- */

int rq_placeholders(const char *text, size_t len,
                    int (*fn)(void *arg, const char *name, size_t name_len, size_t line), void *arg)
{
    size_t line = 1;
    for (size_t i = 0; i + 1 < len; i++) {
        if (text[i] == '\n') {
            line++;
            continue;
        }
        if (text[i] != '{' || text[i + 1] != '{')
            continue;
        size_t j = i + 2;
        while (j + 1 < len && !(text[j] == '}' && text[j + 1] == '}') && text[j] != '\n')
            j++;
        if (j + 1 >= len || text[j] == '\n')
            continue; /* not closed on this line: plain text */
        size_t a = i + 2, b = j;
        while (a < b && text[a] == ' ')
            a++;
        while (b > a && text[b - 1] == ' ')
            b--;
        int rc = fn(arg, text + a, b - a, line);
        if (rc)
            return rc;
        i = j + 1;
    }
    return 0;
}

int rq_render(const struct rq_body *b, const struct rq_rcpt *r, struct sv_buf *out)
{
    return rq_render_text(b->data, b->len, (const char *const *)b->fields, b->nfields, r, out);
}

int rq_render_text(const char *t, size_t len, const char *const *fields, size_t nfields,
                   const struct rq_rcpt *r, struct sv_buf *out)
{
    size_t start = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (t[i] != '{' || t[i + 1] != '{')
            continue;
        size_t j = i + 2;
        while (j + 1 < len && !(t[j] == '}' && t[j + 1] == '}') && t[j] != '\n')
            j++;
        if (j + 1 >= len || t[j] == '\n')
            continue;
        size_t a = i + 2, e = j;
        while (a < e && t[a] == ' ')
            a++;
        while (e > a && t[e - 1] == ' ')
            e--;
        const char *val = NULL;
        if (e - a == 5 && memcmp(t + a, "email", 5) == 0)
            val = r->addr;
        for (size_t f = 0; !val && f < nfields; f++)
            if (strlen(fields[f]) == e - a && memcmp(fields[f], t + a, e - a) == 0)
                val = r->values[f];
        if (!val)
            continue; /* unknown names were refused at enqueue; keep the text */
        if (sv_buf_append(out, t + start, i - start) || sv_buf_puts(out, val))
            return -ENOMEM;
        start = j + 2;
        i = j + 1;
    }
    return sv_buf_append(out, t + start, len - start) ? -ENOMEM : 0;
}
