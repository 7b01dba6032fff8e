/* tls: connections, the plain and TLS transport tables, the client context and
 * certificate verification.
 *
 * A connection starts plain; STARTTLS (or implicit TLS right after connect) swaps its
 * transport table to the TLS one in place, so the protocol code above keeps calling
 * tls_conn_read/write and never learns which library does the work. */
#include "tls_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#define TLS_SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

struct tls_client {
    WOLFSSL_CTX *ctx;
};

int tls_conn_fail(struct tls_conn *c, enum tls_err kind, const char *fmt, ...)
{
    if (c->err_kind == TLS_ERR_NONE) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, sizeof(c->err), fmt, ap);
        va_end(ap);
        c->err_kind = kind;
    }
    return TLS_IO_ERROR;
}

/* ---- I/O callbacks: wolfSSL reads and writes through the connection's fd ---------- */

int tls_io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    (void)ssl;
    struct tls_conn *c = ctx;
    for (;;) {
        ssize_t r = recv(c->fd, buf, (size_t)sz, 0);
        if (r > 0)
            return (int)r;
        if (r == 0) {
            c->peer_closed = true;
            return WOLFSSL_CBIO_ERR_CONN_CLOSE;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return WOLFSSL_CBIO_ERR_WANT_READ;
        c->last_errno = errno;
        return errno == ECONNRESET ? WOLFSSL_CBIO_ERR_CONN_RST : WOLFSSL_CBIO_ERR_GENERAL;
    }
}

int tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    (void)ssl;
    struct tls_conn *c = ctx;
    for (;;) {
        ssize_t r = send(c->fd, buf, (size_t)sz, MSG_NOSIGNAL);
        if (r >= 0)
            return (int)r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return WOLFSSL_CBIO_ERR_WANT_WRITE;
        c->last_errno = errno;
        if (errno == EPIPE)
            return WOLFSSL_CBIO_ERR_CONN_CLOSE;
        return errno == ECONNRESET ? WOLFSSL_CBIO_ERR_CONN_RST : WOLFSSL_CBIO_ERR_GENERAL;
    }
}

/* ---- plain transport ------------------------------------------------------------ */

static ssize_t plain_read(struct tls_conn *c, void *buf, size_t len)
{
    for (;;) {
        ssize_t r = recv(c->fd, buf, len, 0);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return TLS_IO_WANT_READ;
        return tls_conn_fail(c, TLS_ERR_IO, "recv: %s", strerror(errno));
    }
}

static ssize_t plain_write(struct tls_conn *c, const void *buf, size_t len)
{
    for (;;) {
        ssize_t r = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return TLS_IO_WANT_WRITE;
        return tls_conn_fail(c, TLS_ERR_IO, "send: %s", strerror(errno));
    }
}

static int plain_handshake(struct tls_conn *c)
{
    (void)c;
    return 0;
}

static int plain_shutdown(struct tls_conn *c)
{
    if (shutdown(c->fd, SHUT_WR) != 0 && errno != ENOTCONN)
        return tls_conn_fail(c, TLS_ERR_IO, "shutdown: %s", strerror(errno));
    return 0;
}

static size_t plain_pending(const struct tls_conn *c)
{
    (void)c;
    return 0;
}

const struct tls_transport tls_transport_plain = {
    .name = "plain",
    .read = plain_read,
    .write = plain_write,
    .handshake = plain_handshake,
    .shutdown = plain_shutdown,
    .pending = plain_pending,
};

/* ---- TLS transport ---------------------------------------------------------------- */

static const char *alert_name(int code)
{
    switch (code) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 22: return "record_overflow";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 86: return "inappropriate_fallback";
    case 90: return "user_canceled";
    case 109: return "missing_extension";
    case 110: return "unsupported_extension";
    case 112: return "unrecognized_name";
    case 115: return "unknown_psk_identity";
    case 116: return "certificate_required";
    case 120: return "no_application_protocol";
    default: return "unknown";
    }
}

/* Turns a failed wolfSSL call into the sticky error: what we recorded while verifying
 * wins (it is more precise than "verify failed"), then a received alert, then I/O. */
static int tls_fail_from_ssl(struct tls_conn *c, int ret, const char *what)
{
    int err = wolfSSL_get_error(c->ssl, ret);
    if (err == WOLFSSL_ERROR_WANT_READ)
        return TLS_IO_WANT_READ;
    if (err == WOLFSSL_ERROR_WANT_WRITE)
        return TLS_IO_WANT_WRITE;
    if (!c->established && c->verify_kind != TLS_ERR_NONE && c->mode == TLS_VERIFY_STRICT &&
        !c->is_server)
        return tls_conn_fail(c, c->verify_kind, "%s", c->verify_reason);
    WOLFSSL_ALERT_HISTORY h;
    memset(&h, 0, sizeof(h));
    wolfSSL_get_alert_history(c->ssl, &h);
    if (h.last_rx.level == 2 /* fatal */)
        return tls_conn_fail(c, TLS_ERR_ALERT, "%s failed: peer sent alert %s (%d)", what,
                             alert_name(h.last_rx.code), h.last_rx.code);
    if (err == SOCKET_PEER_CLOSED_E || err == WOLFSSL_ERROR_ZERO_RETURN || c->peer_closed)
        return tls_conn_fail(c, TLS_ERR_CLOSED, "%s failed: connection closed by peer", what);
    if (err == SOCKET_ERROR_E && c->last_errno)
        return tls_conn_fail(c, TLS_ERR_IO, "%s failed: %s", what, strerror(c->last_errno));
    char buf[WOLFSSL_MAX_ERROR_SZ];
    wolfSSL_ERR_error_string_n((unsigned long)err, buf, sizeof(buf));
    if (h.last_tx.level == 2)
        return tls_conn_fail(c, TLS_ERR_HANDSHAKE, "%s failed: %s (%d); sent alert %s", what, buf,
                             err, alert_name(h.last_tx.code));
    return tls_conn_fail(c, TLS_ERR_HANDSHAKE, "%s failed: %s (%d)", what, buf, err);
}

static int client_established(struct tls_conn *c)
{
    bool resumed = wolfSSL_session_reused(c->ssl) != 0;
    if (resumed && !c->host_checked) {
        /* Nothing was verified in this handshake: the facts (and peer names) come from
         * the session we resumed, which the cache only offers for the same host, port
         * and verification mode. */
        c->verified = c->cached_verified;
    } else {
        c->verified = !c->chain_failed && c->host_checked && c->host_ok;
    }
    /* The verify callback fails strict handshakes itself; this catches any path where
     * it was not consulted (no leaf seen), so strict never silently means unverified. */
    if (c->mode == TLS_VERIFY_STRICT && !c->verified) {
        c->established = false;
        if (c->verify_kind != TLS_ERR_NONE)
            return tls_conn_fail(c, c->verify_kind, "%s", c->verify_reason);
        return tls_conn_fail(c, TLS_ERR_BAD_CERT, "peer certificate was not verified");
    }
    if (c->cache) {
        tls_cache_count(c->cache, resumed);
        tls_cache_store(c->cache, c);
    }
    return 0;
}

static int tls_handshake(struct tls_conn *c)
{
    if (c->established)
        return 0;
    if (c->err_kind != TLS_ERR_NONE)
        return TLS_IO_ERROR;
    int ret = c->is_server ? wolfSSL_accept(c->ssl) : wolfSSL_connect(c->ssl);
    if (ret != WOLFSSL_SUCCESS) {
        int rc = tls_fail_from_ssl(c, ret, "handshake");
        if (rc == TLS_IO_ERROR && c->is_server)
            tls_server_count(2);
        return rc;
    }
    c->established = true;
    if (c->is_server) {
        const char *sni = wolfSSL_get_servername(c->ssl, WOLFSSL_SNI_HOST_NAME);
        if (sni && *sni)
            c->sni = strdup(sni);
        tls_server_count(wolfSSL_session_reused(c->ssl) ? 1 : 0);
    } else {
        return client_established(c);
    }
    return 0;
}

/* Called by wolfSSL when the server's (NewSession)Ticket has been taken in. */
static int ticket_seen(WOLFSSL *ssl, const unsigned char *ticket, int len, void *arg)
{
    (void)ssl;
    (void)ticket;
    (void)len;
    struct tls_conn *c = arg;
    c->ticket_fresh = true;
    return 0;
}

static ssize_t tls_read(struct tls_conn *c, void *buf, size_t len)
{
    if (c->err_kind != TLS_ERR_NONE)
        return TLS_IO_ERROR;
    if (!c->established) {
        int rc = tls_handshake(c);
        if (rc != 0)
            return rc;
    }
    int ask = len > (size_t)INT32_MAX ? INT32_MAX : (int)len;
    int r = wolfSSL_read(c->ssl, buf, ask);
    /* A TLS 1.3 ticket arrives after the handshake, in any read (also one that
     * returns no application data): cache it now so new connections resume while
     * this one stays open in a pool. */
    if (c->ticket_fresh && c->cache)
        tls_cache_store(c->cache, c);
    if (r > 0)
        return r;
    int err = wolfSSL_get_error(c->ssl, r);
    /* close_notify, or a TCP close without one: either way the peer is gone; SMTP
     * decides from its own state whether that was clean. */
    if (err == WOLFSSL_ERROR_ZERO_RETURN || err == SOCKET_PEER_CLOSED_E || c->peer_closed)
        return 0;
    return tls_fail_from_ssl(c, r, "read");
}

static ssize_t tls_write(struct tls_conn *c, const void *buf, size_t len)
{
    if (c->err_kind != TLS_ERR_NONE)
        return TLS_IO_ERROR;
    if (!c->established) {
        int rc = tls_handshake(c);
        if (rc != 0)
            return rc;
    }
    if (len == 0)
        return 0;
    int ask = len > (size_t)INT32_MAX ? INT32_MAX : (int)len;
    int r = wolfSSL_write(c->ssl, buf, ask);
    if (r > 0)
        return r;
    return tls_fail_from_ssl(c, r, "write");
}

static int tls_shutdown(struct tls_conn *c)
{
    if (!c->established)
        return 0;
    if (!c->is_server && c->cache)
        tls_cache_store(c->cache, c); /* TLS 1.3 tickets arrive after the handshake */
    int r = wolfSSL_shutdown(c->ssl);
    if (r == WOLFSSL_SUCCESS || r == WOLFSSL_SHUTDOWN_NOT_DONE)
        return 0; /* close_notify sent; we don't wait for the peer's */
    int err = wolfSSL_get_error(c->ssl, r);
    if (err == WOLFSSL_ERROR_WANT_WRITE)
        return TLS_IO_WANT_WRITE;
    if (err == WOLFSSL_ERROR_WANT_READ)
        return 0;
    return tls_fail_from_ssl(c, r, "shutdown");
}

static size_t tls_pending(const struct tls_conn *c)
{
    int n = wolfSSL_pending(c->ssl);
    return n > 0 ? (size_t)n : 0;
}

const struct tls_transport tls_transport_tls = {
    .name = "tls",
    .read = tls_read,
    .write = tls_write,
    .handshake = tls_handshake,
    .shutdown = tls_shutdown,
    .pending = tls_pending,
};

/* ---- public connection API -------------------------------------------------------- */

int tls_conn_new_plain(int fd, struct tls_conn **out)
{
    struct tls_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->t = &tls_transport_plain;
    c->fd = fd;
    *out = c;
    return 0;
}

void tls_conn_free(struct tls_conn *c)
{
    if (!c)
        return;
    if (c->ssl) {
        if (c->established && !c->is_server && c->cache && c->err_kind == TLS_ERR_NONE)
            tls_cache_store(c->cache, c);
        wolfSSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    tls_server_free(c->srv);
    tls_names_clear(&c->peer);
    free(c->host);
    free(c->cached_why);
    free(c->sni);
    free(c);
}

int tls_conn_fd(const struct tls_conn *c)
{
    return c->fd;
}

bool tls_conn_is_tls(const struct tls_conn *c)
{
    return c->t == &tls_transport_tls;
}

const char *tls_conn_transport(const struct tls_conn *c)
{
    return c->t->name;
}

ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len)
{
    return c->t->read(c, buf, len);
}

ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len)
{
    return c->t->write(c, buf, len);
}

size_t tls_conn_pending(const struct tls_conn *c)
{
    return c->t->pending(c);
}

int tls_conn_handshake(struct tls_conn *c)
{
    return c->t->handshake(c);
}

int tls_conn_shutdown(struct tls_conn *c)
{
    return c->t->shutdown(c);
}

enum tls_err tls_conn_error_kind(const struct tls_conn *c)
{
    return c->err_kind;
}

const char *tls_conn_error(const struct tls_conn *c)
{
    return c->err;
}

static const char *cipher_name(WOLFSSL *ssl)
{
    /* The IANA name ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"): what operators grep
     * for and what other MTAs log; wolfSSL's own names differ between versions. */
    WOLFSSL_CIPHER *ci = wolfSSL_get_current_cipher(ssl);
    int suite = wolfSSL_get_current_cipher_suite(ssl);
    const char *iana = wolfSSL_get_cipher_name_iana_from_suite((unsigned char)((suite >> 8) & 0xff),
                                                               (unsigned char)(suite & 0xff));
    if (iana && strcmp(iana, "None") != 0)
        return iana;
    return ci ? wolfSSL_CIPHER_get_name(ci) : "unknown";
}

int tls_conn_info(const struct tls_conn *c, struct tls_info *out)
{
    memset(out, 0, sizeof(*out));
    if (!c->ssl || !c->established)
        return -EINVAL;
    struct tls_conn *m = (struct tls_conn *)c; /* names_ptr is a cache of peer.v */
    out->version = wolfSSL_get_version(c->ssl);
    out->cipher = cipher_name(c->ssl);
    out->resumed = wolfSSL_session_reused(c->ssl) != 0;
    out->verified = c->is_server ? false : c->verified;
    if (!c->is_server && !c->verified)
        out->why_unverified = c->verify_reason[0] ? c->verify_reason
                              : c->cached_why     ? c->cached_why
                                                  : "not verified";
    for (size_t i = 0; i < c->peer.n; i++)
        m->names_ptr[i] = c->peer.v[i];
    out->peer_names = m->names_ptr;
    out->n_peer_names = c->peer.n;
    out->sni = c->sni;
    return 0;
}

/* ---- verification ------------------------------------------------------------------ */

static void fmt_time(const WOLFSSL_ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!t || wolfSSL_ASN1_TIME_to_tm(t, &tm) != WOLFSSL_SUCCESS ||
        strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, len, "(unknown date)");
}

static void subject_of(WOLFSSL_X509 *x, char *buf, size_t len)
{
    buf[0] = '\0';
    WOLFSSL_X509_NAME *n = x ? wolfSSL_X509_get_subject_name(x) : NULL;
    if (!n || wolfSSL_X509_NAME_get_text_by_NID(n, NID_commonName, buf, (int)len) <= 0)
        snprintf(buf, len, "(no CN)");
}

/* Records why the chain failed, in words an operator can act on. wolfSSL reports
 * either its own codes or OpenSSL's X509_V_ERR_* depending on build options. */
static void record_chain_error(struct tls_conn *c, int error, int depth, WOLFSSL_X509 *x)
{
    char when[64], subj[128];
    subject_of(x, subj, sizeof(subj));
    bool self_signed = false;
    if (x) {
        WOLFSSL_X509_NAME *s = wolfSSL_X509_get_subject_name(x);
        WOLFSSL_X509_NAME *i = wolfSSL_X509_get_issuer_name(x);
        self_signed = s && i && wolfSSL_X509_NAME_cmp(s, i) == 0;
    }
    enum tls_err kind;
    switch (error) {
    case ASN_AFTER_DATE_E:
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD: /* what this wolfSSL build reports */
        fmt_time(x ? wolfSSL_X509_get_notAfter(x) : NULL, when, sizeof(when));
        kind = TLS_ERR_EXPIRED;
        snprintf(c->verify_reason, sizeof(c->verify_reason),
                 "certificate expired: %s (depth %d) not valid after %s", subj, depth, when);
        break;
    case ASN_BEFORE_DATE_E:
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
        fmt_time(x ? wolfSSL_X509_get_notBefore(x) : NULL, when, sizeof(when));
        kind = TLS_ERR_NOT_YET_VALID;
        snprintf(c->verify_reason, sizeof(c->verify_reason),
                 "certificate not yet valid: %s (depth %d) not valid before %s", subj, depth, when);
        break;
    case ASN_NO_SIGNER_E:
    case ASN_SELF_SIGNED_E:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        kind = TLS_ERR_UNTRUSTED;
        if (self_signed)
            snprintf(c->verify_reason, sizeof(c->verify_reason),
                     "untrusted chain: self-signed certificate %s (depth %d) is not in the "
                     "trust store",
                     subj, depth);
        else {
            char issuer[128] = "(no CN)";
            WOLFSSL_X509_NAME *in = x ? wolfSSL_X509_get_issuer_name(x) : NULL;
            if (!in ||
                wolfSSL_X509_NAME_get_text_by_NID(in, NID_commonName, issuer, sizeof(issuer)) <= 0)
                snprintf(issuer, sizeof(issuer), "(no CN)");
            snprintf(c->verify_reason, sizeof(c->verify_reason),
                     "untrusted chain: issuer %s of %s (depth %d) is not in the trust store",
                     issuer, subj, depth);
        }
        break;
    default: {
        char buf[WOLFSSL_MAX_ERROR_SZ];
        wolfSSL_ERR_error_string_n((unsigned long)error, buf, sizeof(buf));
        kind = TLS_ERR_BAD_CERT;
        snprintf(c->verify_reason, sizeof(c->verify_reason),
                 "certificate rejected: %s (depth %d): %s (%d)", subj, depth, buf, error);
        break;
    }
    }
    c->verify_kind = kind;
    c->chain_failed = true;
}

/* Called by wolfSSL for every certificate of the chain, root-most first, leaf (depth 0)
 * last, whether it verified or not (WOLFSSL_ALWAYS_VERIFY_CB). Strict mode fails the
 * handshake on the first problem, so the server sees our alert; allow-invalid goes on
 * and keeps the reason for the event. */
static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    struct tls_conn *c = store->userCtx;
    if (!c)
        return preverify;
    if (!preverify && !c->chain_failed)
        record_chain_error(c, store->error, store->error_depth, store->current_cert);
    if (store->error_depth == 0 && store->current_cert && !c->host_checked) {
        c->host_checked = true;
        if (tls_names_from_x509(store->current_cert, &c->peer) != 0)
            c->peer.n = 0;
        c->host_ok = tls_names_match(&c->peer, c->host);
        if (!c->host_ok) {
            /* Reported even after a chain error: "untrusted and for another host" tells
             * the operator more than either half. */
            char names[TLS_REASON_MAX / 2];
            tls_names_join(&c->peer, names, sizeof(names));
            size_t off = c->chain_failed ? strlen(c->verify_reason) : 0;
            snprintf(c->verify_reason + off, sizeof(c->verify_reason) - off,
                     "%shost name mismatch: wanted %s, certificate has %s",
                     c->chain_failed ? "; " : "", c->host, names);
            if (!c->chain_failed)
                c->verify_kind = TLS_ERR_HOSTNAME;
        }
    }
    bool ok = !c->chain_failed && (!c->host_checked || c->host_ok);
    if (c->mode == TLS_VERIFY_STRICT)
        return ok ? 1 : 0;
    return 1;
}

/* ---- client context ------------------------------------------------------------- */

int tls_client_new(const struct tls_client_opts *opts, struct tls_client **out, char *err,
                   size_t errlen)
{
    const char *ca = opts && opts->ca_file ? opts->ca_file : TLS_SYSTEM_CA_FILE;
    char *pem = NULL;
    size_t pem_len = 0;
    struct tls_client *cl = NULL;
    int rc = tls_global_init();
    if (rc != 0) {
        snprintf(err, errlen, "tls: cannot initialise wolfSSL");
        return rc;
    }
    rc = tls_read_file(ca, &pem, &pem_len);
    if (rc != 0) {
        snprintf(err, errlen, "tls: cannot read CA file %s: %s", ca, strerror(-rc));
        return rc;
    }
    cl = calloc(1, sizeof(*cl));
    if (!cl)
        goto nomem;
    cl->ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
    if (!cl->ctx)
        goto nomem;
    if (wolfSSL_CTX_SetMinVersion(cl->ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_cipher_list(cl->ctx, TLS_CIPHER_LIST) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "tls: cannot configure client protocol versions/ciphers");
        rc = -EIO;
        goto fail;
    }
    /* The system bundle may hold certificates wolfSSL cannot parse: skip those. A
     * file the operator named must load cleanly. */
    unsigned flags = opts && opts->ca_file ? WOLFSSL_LOAD_FLAG_NONE : WOLFSSL_LOAD_FLAG_IGNORE_ERR;
    if (!strstr(pem, "-----BEGIN CERTIFICATE-----")) {
        snprintf(err, errlen, "tls: CA file %s: no PEM certificate in it", ca);
        rc = -EINVAL;
        goto fail;
    }
    int lr = wolfSSL_CTX_load_verify_buffer_ex(cl->ctx, (const unsigned char *)pem, (long)pem_len,
                                               WOLFSSL_FILETYPE_PEM, 0, flags);
    if (lr != WOLFSSL_SUCCESS) {
        char buf[WOLFSSL_MAX_ERROR_SZ];
        wolfSSL_ERR_error_string_n((unsigned long)lr, buf, sizeof(buf));
        snprintf(err, errlen, "tls: CA file %s: cannot load: %s", ca, buf);
        rc = -EINVAL;
        goto fail;
    }
    wolfSSL_CTX_set_verify(cl->ctx, WOLFSSL_VERIFY_PEER, verify_cb);
    /* Sessions live in our per-thread cache, not wolfSSL's global locked one. */
    wolfSSL_CTX_set_session_cache_mode(cl->ctx, WOLFSSL_SESS_CACHE_CLIENT |
                                                    WOLFSSL_SESS_CACHE_NO_INTERNAL_STORE);
    wolfSSL_CTX_SetIORecv(cl->ctx, tls_io_recv);
    wolfSSL_CTX_SetIOSend(cl->ctx, tls_io_send);
    free(pem);
    *out = cl;
    return 0;
nomem:
    snprintf(err, errlen, "tls: out of memory");
    rc = -ENOMEM;
fail:
    free(pem);
    tls_client_free(cl);
    return rc;
}

void tls_client_free(struct tls_client *cl)
{
    if (!cl)
        return;
    if (cl->ctx)
        wolfSSL_CTX_free(cl->ctx);
    free(cl);
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int tls_conn_start_client(struct tls_conn *c, struct tls_client *cl, const char *host,
                          uint16_t port, enum tls_verify mode, struct tls_session_cache *cache)
{
    if (c->t != &tls_transport_plain || !cl || !host || !*host)
        return -EINVAL;
    c->host = strdup(host);
    if (!c->host)
        return -ENOMEM;
    c->ssl = wolfSSL_new(cl->ctx);
    if (!c->ssl) {
        free(c->host);
        c->host = NULL;
        return -ENOMEM;
    }
    c->port = port;
    c->mode = mode;
    c->cache = cache;
    c->is_server = false;
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    wolfSSL_SetCertCbCtx(c->ssl, c);
    /* SNI always, except for address literals, which RFC 6066 3 forbids in SNI. */
    if (!is_ip_literal(host) && wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, host,
                                               (unsigned short)strlen(host)) != WOLFSSL_SUCCESS)
        goto fail;
    if (wolfSSL_UseSessionTicket(c->ssl) != WOLFSSL_SUCCESS ||
        wolfSSL_set_SessionTicket_cb(c->ssl, ticket_seen, c) != WOLFSSL_SUCCESS)
        goto fail;
    if (cache)
        tls_cache_offer(cache, c);
    c->t = &tls_transport_tls;
    return 0;
fail:
    wolfSSL_free(c->ssl);
    c->ssl = NULL;
    free(c->host);
    c->host = NULL;
    return -ENOMEM;
}
