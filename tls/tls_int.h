/* tls: module-private types. Only the tls module includes this (and wolfSSL). */
#ifndef SALVO_TLS_INT_H
#define SALVO_TLS_INT_H

#include <stdatomic.h>
#include <stdarg.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "common.h"
#include "tls.h"

#define TLS_REASON_MAX 512
#define TLS_MAX_NAMES  64

/* TLS 1.2 + 1.3, AEAD with forward secrecy only (no CBC, no RSA key exchange, no DHE).
 * Without AES-NI in the wolfSSL build (Debian's has none) AES-GCM runs in plain C at
 * ~160 MB/s against ~370 MB/s for ChaCha20-Poly1305 (BENCHMARKS.md, TLS), so
 * ChaCha20-Poly1305 goes first then. Both ends use this order: the client offers it,
 * and our server picks by its own order. */
#define TLS_CIPHERS_AES                                                                            \
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:"               \
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
#define TLS_CIPHERS_CHACHA                                                                         \
    "TLS13-CHACHA20-POLY1305-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#ifdef WOLFSSL_AESNI
#define TLS_CIPHER_LIST TLS_CIPHERS_AES ":" TLS_CIPHERS_CHACHA
#else
#define TLS_CIPHER_LIST TLS_CIPHERS_CHACHA ":" TLS_CIPHERS_AES
#endif

/* A list of names (SAN dNSNames and iPAddresses as "IP:<address>", or the CN when
 * there is no SAN extension). */
struct tls_names {
    char *v[TLS_MAX_NAMES];
    size_t n;
};
void tls_names_clear(struct tls_names *n);
int tls_names_copy(struct tls_names *dst, const struct tls_names *src);
/* Fills `out` from a certificate: SAN dNSNames when the SAN extension exists, else the
 * subject CN (RFC 6125 6.4.4). Returns 0 or -ENOMEM. */
int tls_names_from_x509(WOLFSSL_X509 *x, struct tls_names *out);
/* An address literal `host` (v4, v6, optionally in brackets) matches only an
 * "IP:" entry with the same address (RFC 6125 6.2.1); a host name only the names. */
bool tls_names_match(const struct tls_names *n, const char *host);
/* "a, b, c" into buf. */
void tls_names_join(const struct tls_names *n, char *buf, size_t len);

/* The transport table: the SMTP code reaches these through tls_conn_*(). */
struct tls_transport {
    const char *name;
    ssize_t (*read)(struct tls_conn *c, void *buf, size_t len);
    ssize_t (*write)(struct tls_conn *c, const void *buf, size_t len);
    int (*handshake)(struct tls_conn *c);
    int (*shutdown)(struct tls_conn *c);
    size_t (*pending)(const struct tls_conn *c);
};

extern const struct tls_transport tls_transport_plain;
extern const struct tls_transport tls_transport_tls;

struct tls_session_entry;

struct tls_conn {
    const struct tls_transport *t;
    int fd;
    WOLFSSL *ssl;
    bool is_server;
    bool established;

    /* client */
    char *host;
    uint16_t port;
    enum tls_verify mode;
    struct tls_session_cache *cache; /* borrowed */
    bool offered_session;            /* a cached session was set before the handshake */
    bool ticket_fresh; /* the server sent a ticket on this connection, not yet cached */
    bool tls12_cached; /* this TLS 1.2 connection's session is in the cache */
    struct tls_session_entry *cached; /* what we resumed from (facts for a resumed conn) */
    bool cached_verified;
    char *cached_why;

    /* verification results, filled by the verify callback */
    bool chain_failed;
    enum tls_err verify_kind;
    char verify_reason[TLS_REASON_MAX];
    bool host_checked, host_ok;
    struct tls_names peer;
    bool verified;

    /* server */
    struct tls_server *srv; /* one reference */
    char *sni;

    /* facts */
    const char *names_ptr[TLS_MAX_NAMES];
    int last_errno;
    bool peer_closed; /* recv saw EOF: wolfSSL reports that as a generic socket error */

    enum tls_err err_kind;
    char err[TLS_REASON_MAX];
};

/* Sets the sticky error (first one wins) and returns TLS_IO_ERROR. */
int tls_conn_fail(struct tls_conn *c, enum tls_err kind, const char *fmt, ...) SV_PRINTF(3, 4);

/* Session cache, used by the client connection. */
void tls_cache_offer(struct tls_session_cache *cache, struct tls_conn *c);
void tls_cache_store(struct tls_session_cache *cache, struct tls_conn *c);
void tls_cache_count(struct tls_session_cache *cache, bool resumed);

/* I/O callbacks installed on every WOLFSSL_CTX: they use the connection's fd and keep
 * errno for the error text. */
int tls_io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx);
int tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx);

/* Server: SNI callback, ticket callback, counters. */
void tls_server_count(int what); /* 0 full, 1 resumed, 2 failed */

/* Reads a whole file; returns 0 and an owned buffer, or -errno. */
int tls_read_file(const char *path, char **data, size_t *len);

#endif
