/* tls: process-wide set-up, host name matching, certificate names, small helpers. */
#include "tls_int.h"

#include <wolfssl/wolfcrypt/ecc.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef SALVO_TLS_JEMALLOC
#include <jemalloc/jemalloc.h>

/* wolfSSL's allocations go to jemalloc explicitly (mallocx & co.), whatever malloc the
 * process uses. Sanitizer builds skip this: ASan must see every allocation. */
static void *tls_je_malloc(size_t size)
{
    return mallocx(size ? size : 1, 0);
}

static void tls_je_free(void *p)
{
    if (p)
        dallocx(p, 0);
}

static void *tls_je_realloc(void *p, size_t size)
{
    if (!p)
        return tls_je_malloc(size);
    return rallocx(p, size ? size : 1, 0);
}
#endif

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_init_rc = -EIO;

static void tls_init_once(void)
{
#ifdef SALVO_TLS_JEMALLOC
    /* Must precede wolfSSL_Init: nothing may be allocated with another allocator. */
    if (wolfSSL_SetAllocators(tls_je_malloc, tls_je_free, tls_je_realloc) != 0)
        return;
#endif
    if (wolfSSL_Init() != WOLFSSL_SUCCESS)
        return;
    tls_init_rc = 0;
}

int tls_global_init(void)
{
    pthread_once(&tls_once, tls_init_once);
    return tls_init_rc;
}

void tls_thread_cleanup(void)
{
#ifdef FP_ECC
    wc_ecc_fp_free();
#endif
}

#define TLS_X_NAME(name, str) [name] = str,
static const char *const tls_err_names[] = {TLS_ERROR_KINDS(TLS_X_NAME)};
#undef TLS_X_NAME

const char *tls_err_name(enum tls_err kind)
{
    if ((size_t)kind >= SV_ARRAY_LEN(tls_err_names))
        return "unknown";
    return tls_err_names[kind];
}

/* ---- host names ------------------------------------------------------------------ */

/* Compares label sequences case-insensitively; `n` bytes of a, all of b (b's length n). */
static bool eq_nocase(const char *a, const char *b, size_t n)
{
    return strncasecmp(a, b, n) == 0;
}

bool tls_name_matches(const char *pattern, const char *host)
{
    if (!pattern || !host || !*pattern || !*host)
        return false;
    size_t plen = strlen(pattern), hlen = strlen(host);
    /* Absolute names: "mx.example.test." is the same host (RFC 6125 6.4.1 compares
     * the reference identifier without its trailing dot). */
    if (host[hlen - 1] == '.')
        hlen--;
    if (plen && pattern[plen - 1] == '.')
        plen--;
    if (!plen || !hlen)
        return false;
    /* A reference identifier is a real host name: one with '*' matches nothing. */
    if (memchr(host, '*', hlen))
        return false;

    if (pattern[0] != '*') {
        /* A '*' anywhere else (partial label like "m*.example.test") is not a wildcard
         * here: RFC 6125 6.4.3 allows it as an option; we don't, like the browsers. The
         * plain comparison below then fails since a host never contains '*'. */
        return plen == hlen && eq_nocase(pattern, host, plen);
    }
    /* "*." + at least two labels: "*.test" would cover a whole TLD. */
    if (plen < 3 || pattern[1] != '.')
        return false;
    const char *suffix = pattern + 1; /* ".example.test" */
    size_t slen = plen - 1;
    if (!memchr(suffix + 1, '.', slen - 1))
        return false;
    if (memchr(suffix, '*', slen))
        return false;
    /* The wildcard covers exactly one non-empty left-most label. */
    const char *dot = memchr(host, '.', hlen);
    if (!dot || dot == host)
        return false;
    size_t rest = hlen - (size_t)(dot - host);
    return rest == slen && eq_nocase(dot, suffix, slen);
}

void tls_names_clear(struct tls_names *n)
{
    for (size_t i = 0; i < n->n; i++)
        free(n->v[i]);
    n->n = 0;
}

int tls_names_copy(struct tls_names *dst, const struct tls_names *src)
{
    tls_names_clear(dst);
    for (size_t i = 0; i < src->n; i++) {
        dst->v[i] = strdup(src->v[i]);
        if (!dst->v[i]) {
            dst->n = i;
            tls_names_clear(dst);
            return -ENOMEM;
        }
        dst->n = i + 1;
    }
    return 0;
}

static int names_add(struct tls_names *n, const char *s, size_t len)
{
    if (n->n >= TLS_MAX_NAMES)
        return 0; /* more than 64 names: the rest are ignored for matching and display */
    char *d = strndup(s, len);
    if (!d)
        return -ENOMEM;
    n->v[n->n++] = d;
    return 0;
}

int tls_names_from_x509(WOLFSSL_X509 *x, struct tls_names *out)
{
    tls_names_clear(out);
    WOLFSSL_GENERAL_NAMES *gens = wolfSSL_X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (gens) {
        int rc = 0;
        int num = wolfSSL_sk_GENERAL_NAME_num(gens);
        /* wolfSSL's stacks push at the head: walk backwards to keep certificate order. */
        for (int i = num - 1; i >= 0 && rc == 0; i--) {
            WOLFSSL_GENERAL_NAME *g = wolfSSL_sk_GENERAL_NAME_value(gens, i);
            if (g && g->type == 7 /* GEN_IPADD: iPAddress */ && g->d.iPAddress) {
                /* Kept as "IP:<address>": matched only against an IP-literal
                 * reference identity (RFC 6125 6.2.1), and shown as such. */
                const unsigned char *a = wolfSSL_ASN1_STRING_data(g->d.iPAddress);
                int alen = wolfSSL_ASN1_STRING_length(g->d.iPAddress);
                char text[3 + INET6_ADDRSTRLEN] = "IP:";
                if (a && (alen == 4 || alen == 16) &&
                    inet_ntop(alen == 4 ? AF_INET : AF_INET6, a, text + 3, INET6_ADDRSTRLEN))
                    rc = names_add(out, text, strlen(text));
                continue;
            }
            if (!g || g->type != 2 /* GEN_DNS: dNSName */ || !g->d.dNSName)
                continue;
            const unsigned char *s = wolfSSL_ASN1_STRING_data(g->d.dNSName);
            int len = wolfSSL_ASN1_STRING_length(g->d.dNSName);
            /* An embedded NUL ("good.test\0.evil.test") would truncate into a
             * name the issuer never vouched for: such a name is skipped. */
            if (s && len > 0 && !memchr(s, '\0', (size_t)len))
                rc = names_add(out, (const char *)s, (size_t)len);
        }
        wolfSSL_GENERAL_NAMES_free(gens);
        /* SANs present (even with no dNSName): the CN is not consulted (RFC 6125 6.4.4). */
        return rc;
    }
    WOLFSSL_X509_NAME *subj = wolfSSL_X509_get_subject_name(x);
    char cn[256];
    if (subj) {
        int len = wolfSSL_X509_NAME_get_text_by_NID(subj, NID_commonName, cn, sizeof(cn));
        if (len > 0)
            return names_add(out, cn, strnlen(cn, sizeof(cn)));
    }
    return 0;
}

/* An address literal ("192.0.2.1", "2001:db8::1", "[2001:db8::1]") to its bytes:
 * family and 4 or 16 bytes in out; false for a host name. */
static bool ip_bytes(const char *s, int *family, unsigned char out[16])
{
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, s + 1, n - 2);
        buf[n - 2] = '\0';
        s = buf;
    }
    if (inet_pton(AF_INET, s, out) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, out) == 1) {
        *family = AF_INET6;
        return true;
    }
    return false;
}

bool tls_names_match(const struct tls_names *n, const char *host)
{
    int fam = 0;
    unsigned char want[16];
    bool ip = ip_bytes(host, &fam, want);
    for (size_t i = 0; i < n->n; i++) {
        bool is_ipsan = strncmp(n->v[i], "IP:", 3) == 0;
        if (ip != is_ipsan)
            continue; /* an address matches only an iPAddress SAN, a name only a name */
        if (!ip) {
            if (tls_name_matches(n->v[i], host))
                return true;
            continue;
        }
        unsigned char have[16];
        int hfam = 0;
        if (ip_bytes(n->v[i] + 3, &hfam, have) && hfam == fam &&
            memcmp(have, want, fam == AF_INET ? 4 : 16) == 0)
            return true;
    }
    return false;
}

void tls_names_join(const struct tls_names *n, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    if (n->n == 0) {
        snprintf(buf, len, "(none)");
        return;
    }
    for (size_t i = 0; i < n->n && off < len; i++) {
        int w = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", n->v[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

int tls_read_file(const char *path, char **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return -EISDIR;
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                close(fd);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}
