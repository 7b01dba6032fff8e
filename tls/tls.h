/* tls: everything about wolfSSL. Nothing else includes wolfSSL headers.
 *
 * Three parts:
 *   - a connection with a transport table (plain / TLS): SMTP code reads and writes
 *     through tls_conn_*() and never sees wolfSSL; STARTTLS upgrades a plain connection
 *     in place (tls_conn_start_client / tls_conn_start_server swap its table);
 *   - the client side: contexts (TLS 1.2/1.3, AEAD suites only), strict or
 *     allow-invalid verification with our own RFC 6125 host name check, a per-thread
 *     per-MX session cache;
 *   - the server side: a certificate store (SNI picks the pair; the first is the
 *     default), loaded with errors that name the file and the reason, and a slot that
 *     swaps stores atomically on reload.
 *
 * All I/O is non-blocking: operations return TLS_IO_WANT_READ / TLS_IO_WANT_WRITE
 * instead of blocking, so callers drive them from libev watchers.
 * Errors: functions return 0 or a negative code; a connection keeps a sticky error kind
 * and a one-line reason (class `tls` for last_error). */
#ifndef SALVO_TLS_H
#define SALVO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Initialises wolfSSL once per process (thread-safe, idempotent); routes its
 * allocations to jemalloc unless built with sanitizers. Returns 0 or -EIO. */
int tls_global_init(void);

/* Call at the end of every thread that did TLS (worker, sink thread): frees wolfSSL's
 * per-thread caches (the FP_ECC point cache), which otherwise leak with the thread. */
void tls_thread_cleanup(void);

/* ---- host names (RFC 6125 / RFC 7817) ---------------------------------------------
 * `pattern` is a certificate name (SAN dNSName or CN), `host` the name we asked for.
 * Case-insensitive; a trailing dot on host is ignored; the wildcard is allowed only as
 * the whole left-most label of a pattern with at least two more labels:
 * "*.example.test" matches "mail.example.test", not "a.b.example.test", not
 * "example.test"; partial-label wildcards ("m*.example.test") never match. */
bool tls_name_matches(const char *pattern, const char *host);

/* ---- errors -------------------------------------------------------------------- */
#define TLS_ERROR_KINDS(X)                                                                         \
    X(TLS_ERR_NONE, "none")                                                                        \
    X(TLS_ERR_IO, "io")                       /* a syscall failed (reason has strerror) */         \
    X(TLS_ERR_CLOSED, "closed")               /* peer closed during the handshake */               \
    X(TLS_ERR_ALERT, "alert")                 /* peer sent a fatal alert (named) */                \
    X(TLS_ERR_HANDSHAKE, "handshake")         /* protocol failure: version, cipher, ... */         \
    X(TLS_ERR_UNTRUSTED, "untrusted")         /* chain does not lead to the trust store */         \
    X(TLS_ERR_EXPIRED, "expired")             /* a certificate's notAfter has passed */            \
    X(TLS_ERR_NOT_YET_VALID, "not-yet-valid") /* a certificate's notBefore is ahead */             \
    X(TLS_ERR_BAD_CERT, "bad-certificate")    /* unparsable, bad signature, ... */                 \
    X(TLS_ERR_HOSTNAME, "hostname-mismatch")  /* no presented name matches */                      \
    X(TLS_ERR_NO_STARTTLS, "no-starttls")     /* set by the SMTP caller, never here */             \
    X(TLS_ERR_INTERNAL, "internal")           /* out of memory, library failure */

#define TLS_X_ENUM(name, str) name,
enum tls_err { TLS_ERROR_KINDS(TLS_X_ENUM) };
#undef TLS_X_ENUM

/* "hostname-mismatch" etc.; never NULL. */
const char *tls_err_name(enum tls_err kind);

/* ---- connections and their transport ------------------------------------------
 * Results of tls_conn_read/write/handshake/shutdown: n > 0 bytes moved, 0 (read: the
 * peer closed; handshake/shutdown: done), or one of these. */
enum {
    TLS_IO_WANT_READ = -1,  /* wait until the fd is readable, then call again */
    TLS_IO_WANT_WRITE = -2, /* wait until the fd is writable, then call again */
    TLS_IO_ERROR = -3       /* sticky: see tls_conn_error() */
};

struct tls_conn; /* one TCP connection, plain or TLS; owned by one thread */

/* Facts about an established TLS connection; strings are borrowed from the connection
 * and live until tls_conn_free(). */
struct tls_info {
    const char *version;           /* "TLSv1.3" */
    const char *cipher;            /* "TLS_AES_128_GCM_SHA256" (IANA name) */
    bool verified;                 /* chain to the trust store and host name both passed */
    bool resumed;                  /* session resumed (ticket or session id) */
    const char *why_unverified;    /* NULL when verified; else the reason (allow-invalid) */
    const char *const *peer_names; /* client: the peer's SAN dNSNames (CN if none) */
    size_t n_peer_names;
    const char *sni; /* server: the name the client asked for, NULL if none */
};

/* Wraps a connected non-blocking socket as a plain connection. Takes `fd` (closed by
 * tls_conn_free). Returns 0 and *out (owned), or -ENOMEM. */
int tls_conn_new_plain(int fd, struct tls_conn **out);
void tls_conn_free(struct tls_conn *c); /* NULL-safe; closes the fd, no close_notify */

int tls_conn_fd(const struct tls_conn *c);
bool tls_conn_is_tls(const struct tls_conn *c);
/* "plain" or "tls": the transport table in use. */
const char *tls_conn_transport(const struct tls_conn *c);

/* Reads up to `len` bytes: n > 0, 0 on EOF, or TLS_IO_*. */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len);
/* Writes up to `len` bytes: n > 0 (may be short), or TLS_IO_*. With TLS, after a
 * WANT_* the caller must retry with the same buffer and length. */
ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len);
/* Bytes already decrypted and buffered: libev will not report them as readable, so
 * read again while this is > 0. Always 0 for plain. */
size_t tls_conn_pending(const struct tls_conn *c);
/* Drives the TLS handshake: 0 once established, or TLS_IO_*. Plain: returns 0. */
int tls_conn_handshake(struct tls_conn *c);
/* Sends close_notify (TLS) or shuts down writing (plain): 0, or TLS_IO_*. */
int tls_conn_shutdown(struct tls_conn *c);

/* After a handshake: fills *out (borrowed strings). -EINVAL when not TLS/established. */
int tls_conn_info(const struct tls_conn *c, struct tls_info *out);

/* Sticky error: the kind and a one-line reason, e.g. "host name mismatch: wanted
 * mx.example.org, certificate has *.example.test, example.test". */
enum tls_err tls_conn_error_kind(const struct tls_conn *c);
const char *tls_conn_error(const struct tls_conn *c); /* "" when none */

/* ---- client side ---------------------------------------------------------------- */
enum tls_verify {
    TLS_VERIFY_STRICT,        /* chain to the trust store + host name, else fail */
    TLS_VERIFY_ALLOW_INVALID, /* encrypt anyway; record why the peer is unverified */
};

struct tls_client_opts {
    const char *ca_file; /* PEM bundle; NULL = /etc/ssl/certs/ca-certificates.crt */
};

/* Client contexts: immutable after creation, shareable by all worker threads. */
struct tls_client;

/* Loads the trust store. Returns 0 and *out (owned), or a negative errno with a
 * one-line reason in err ("tls: cannot read CA file /x: No such file or directory"). */
int tls_client_new(const struct tls_client_opts *opts, struct tls_client **out, char *err,
                   size_t errlen);
void tls_client_free(struct tls_client *cl); /* NULL-safe */

/* Per-MX session cache: one per worker thread, no locks. Bounded LRU keyed by
 * (host, port, verification mode); entries expire after ttl_s or the session's own
 * lifetime, whichever is sooner. A session made with allow-invalid is never offered to
 * a strict connection. */
struct tls_session_cache;

struct tls_cache_stats {
    uint64_t full_handshakes;    /* client handshakes completed without resumption */
    uint64_t resumed_handshakes; /* client handshakes that resumed */
    uint64_t stored, hits, misses, evictions, expired;
    size_t entries;
};

/* Returns 0 and *out (owned), or -ENOMEM / -EINVAL (capacity 0). */
int tls_session_cache_new(size_t capacity, unsigned ttl_s, struct tls_session_cache **out);
void tls_session_cache_free(struct tls_session_cache *cache); /* NULL-safe */
void tls_session_cache_stats(const struct tls_session_cache *cache, struct tls_cache_stats *out);
/* Is there an unexpired session to offer for (host, port, mode)? */
bool tls_session_cache_has(struct tls_session_cache *cache, const char *host, uint16_t port,
                           enum tls_verify mode);

/* Upgrades `c` (plain, nothing buffered: after the "220" to STARTTLS, or right after
 * connect for implicit TLS) to a TLS client; then call tls_conn_handshake(). `host` is
 * both the SNI and the name verified (copied; no SNI for address literals, RFC 6066 3);
 * `cache` (borrowed, may be NULL; must outlive the connection) is consulted for a session
 * to resume and receives the new one after the handshake, at shutdown and at free (TLS
 * 1.3 tickets arrive after the handshake: read something, or shut down and read to EOF,
 * before freeing). Returns 0 or -ENOMEM / -EINVAL (already TLS). */
int tls_conn_start_client(struct tls_conn *c, struct tls_client *cl, const char *host,
                          uint16_t port, enum tls_verify mode, struct tls_session_cache *cache);

/* ---- server side ------------------------------------------------------------------ */
struct tls_cert_pair {
    const char *cert_file; /* PEM: leaf first, then intermediates */
    const char *key_file;  /* PEM private key (unencrypted) */
};

/* A certificate store with its wolfSSL contexts. Immutable once loaded; shared by
 * threads through a reference count. Session tickets are on (key made at load). */
struct tls_server;

/* Loads every pair (n >= 1); the first is the default for clients without SNI or with
 * no matching name. Any problem fails the whole load with a negative errno and one line
 * in err naming the file and the reason, e.g.
 *   "tls: cannot read key /etc/x/privkey.pem: Permission denied"
 *   "tls: key /k.pem does not match certificate /c.pem"
 *   "tls: certificate /c.pem expired on 2020-01-02 00:00:00 UTC"
 * Never falls back to anything. Returns 0 and *out (owned, one reference). */
int tls_server_new(const struct tls_cert_pair *pairs, size_t n, struct tls_server **out, char *err,
                   size_t errlen);
/* Adds a reference; returns srv. */
struct tls_server *tls_server_ref(struct tls_server *srv);
/* Drops a reference; frees at zero (connections hold their own). NULL-safe. */
void tls_server_free(struct tls_server *srv);

size_t tls_server_npairs(const struct tls_server *srv);
/* The SAN dNSNames (CN if none) of pair i; borrowed. Returns count, *names set. */
size_t tls_server_pair_names(const struct tls_server *srv, size_t i, const char *const **names);
/* Which pair a client asking for `sni` (NULL = none) gets: index into the pair list. */
size_t tls_server_select(const struct tls_server *srv, const char *sni);

/* Upgrades `c` (plain, nothing buffered) to a TLS server connection using `srv` (the
 * connection takes its own reference). Then call tls_conn_handshake(). 0 or -errno. */
int tls_conn_start_server(struct tls_conn *c, struct tls_server *srv);

/* Server handshake counters, summed over all connections of all stores in this
 * process (atomic; cheap). */
struct tls_server_stats {
    uint64_t full_handshakes, resumed_handshakes, failed_handshakes;
};
void tls_server_stats(struct tls_server_stats *out);

/* A slot holding the current store, for reload on SIGHUP: threads take a reference per
 * accepted connection (a short mutex, never on the per-message path); reload builds
 * the new store first and swaps only if it loaded. */
struct tls_server_slot;

/* Takes `srv`. Returns 0 and *out (owned), or -ENOMEM. */
int tls_server_slot_new(struct tls_server *srv, struct tls_server_slot **out);
void tls_server_slot_free(struct tls_server_slot *slot); /* NULL-safe; drops its ref */
/* Returns owned reference to the current store (release with tls_server_free). */
struct tls_server *tls_server_slot_get(struct tls_server_slot *slot);
/* Loads `pairs`; on success swaps it in (the old store lives on until its last
 * connection ends) and returns 0; on failure keeps the old one, fills err, returns
 * the negative errno. */
int tls_server_slot_reload(struct tls_server_slot *slot, const struct tls_cert_pair *pairs,
                           size_t n, char *err, size_t errlen);

#endif
