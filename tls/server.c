/* tls: the server-side certificate store, SNI selection, session tickets, reload.
 *
 * Every cert/key pair gets its own WOLFSSL_CTX; connections start on the first (the
 * default) and the SNI callback moves them to the pair whose names match. All pair
 * contexts share one ticket callback keyed by the store, so a ticket issued under any
 * pair resumes whichever context the ClientHello lands on first.
 *
 * Loading is all-or-nothing and every failure names the file and the reason: the
 * operator in seeds/000 got a self-signed certificate instead of an error because
 * the key was unreadable. Here there is nothing to fall back to. */
#include "tls_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <wolfssl/openssl/evp.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>

struct tls_pair {
    WOLFSSL_CTX *ctx;
    struct tls_names names;
    const char *names_ptr[TLS_MAX_NAMES];
};

struct tls_server {
    atomic_int refs;
    size_t n;
    struct tls_pair *pairs;
    unsigned char ticket_name[WOLFSSL_TICKET_NAME_SZ];
    unsigned char ticket_key[CHACHA20_POLY1305_AEAD_KEYSIZE];
    atomic_uint_fast64_t ticket_seq;
};

static atomic_uint_fast64_t srv_stats[3];

void tls_server_count(int what)
{
    atomic_fetch_add_explicit(&srv_stats[what], 1, memory_order_relaxed);
}

void tls_server_stats(struct tls_server_stats *out)
{
    out->full_handshakes = atomic_load_explicit(&srv_stats[0], memory_order_relaxed);
    out->resumed_handshakes = atomic_load_explicit(&srv_stats[1], memory_order_relaxed);
    out->failed_handshakes = atomic_load_explicit(&srv_stats[2], memory_order_relaxed);
}

/* ---- session tickets ----------------------------------------------------------------
 * The ticket body is sealed with ChaCha20-Poly1305 under a key made at load:
 *   key_name (16, identifies the store) | iv (16: 12 used as nonce) | body | mac (16 of 32)
 * The nonce is 4 random bytes + a 64-bit counter, so it never repeats under one key. */
static int ticket_cb(WOLFSSL *ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
                     unsigned char iv[WOLFSSL_TICKET_IV_SZ],
                     unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc, unsigned char *ticket,
                     int in_len, int *out_len, void *user)
{
    (void)ssl;
    struct tls_server *srv = user;
    if (!srv || in_len < 0)
        return WOLFSSL_TICKET_RET_FATAL;
    if (enc) {
        memcpy(key_name, srv->ticket_name, WOLFSSL_TICKET_NAME_SZ);
        memset(iv, 0, WOLFSSL_TICKET_IV_SZ);
        if (getrandom(iv, 4, 0) != 4)
            return WOLFSSL_TICKET_RET_FATAL;
        uint64_t seq = atomic_fetch_add(&srv->ticket_seq, 1);
        memcpy(iv + 4, &seq, sizeof(seq));
        memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
        if (wc_ChaCha20Poly1305_Encrypt(srv->ticket_key, iv, key_name, WOLFSSL_TICKET_NAME_SZ,
                                        ticket, (word32)in_len, ticket, mac) != 0)
            return WOLFSSL_TICKET_RET_FATAL;
        *out_len = in_len;
        return WOLFSSL_TICKET_RET_OK;
    }
    /* A ticket from another store (before a reload, another process): not an error,
     * just a full handshake. */
    if (memcmp(key_name, srv->ticket_name, WOLFSSL_TICKET_NAME_SZ) != 0)
        return WOLFSSL_TICKET_RET_REJECT;
    if (wc_ChaCha20Poly1305_Decrypt(srv->ticket_key, iv, key_name, WOLFSSL_TICKET_NAME_SZ, ticket,
                                    (word32)in_len, mac, ticket) != 0)
        return WOLFSSL_TICKET_RET_REJECT;
    *out_len = in_len;
    return WOLFSSL_TICKET_RET_OK;
}

/* ---- SNI ------------------------------------------------------------------------------ */

size_t tls_server_select(const struct tls_server *srv, const char *sni)
{
    if (!sni || !*sni)
        return 0;
    /* An exact name beats a wildcard, whatever the order of the pairs. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < srv->n; i++)
            for (size_t j = 0; j < srv->pairs[i].names.n; j++) {
                const char *pat = srv->pairs[i].names.v[j];
                if ((pat[0] == '*') == (pass == 1) && tls_name_matches(pat, sni))
                    return i;
            }
    return 0;
}

static int sni_cb(WOLFSSL *ssl, int *alert, void *arg)
{
    (void)alert;
    struct tls_server *srv = arg;
    const char *name = wolfSSL_get_servername(ssl, WOLFSSL_SNI_HOST_NAME);
    size_t i = tls_server_select(srv, name);
    /* No match: the default pair, no alert (RFC 6066 3 lets the server go on). */
    if (i != 0 && wolfSSL_set_SSL_CTX(ssl, srv->pairs[i].ctx) == NULL)
        return 2; /* SSL_TLSEXT_ERR_ALERT_FATAL */
    return 0;     /* SSL_TLSEXT_ERR_OK */
}

/* ---- loading ------------------------------------------------------------------------ */

static void fmt_asn1_time(const WOLFSSL_ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!t || wolfSSL_ASN1_TIME_to_tm(t, &tm) != WOLFSSL_SUCCESS ||
        strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, len, "(unknown date)");
}

static const char *wolf_reason(int code, char *buf, size_t len)
{
    wolfSSL_ERR_error_string_n((unsigned long)code, buf, len);
    return buf;
}

/* Does the private key belong to the certificate? wolfSSL_CTX_check_private_key (5.5.4)
 * accepts any EC key of the right curve for an EC certificate, so we sign a message
 * with the key and verify it with the certificate's public key. Key types EVP cannot
 * sign with here (e.g. Ed25519) fall back to wolfSSL's own check. Returns 1, 0, or -1
 * when the round trip cannot be made. */
static int key_matches(WOLFSSL_X509 *leaf, const char *key, size_t key_len)
{
    static const unsigned char msg[] = "salvo: does this key belong to this certificate?";
    unsigned char sig[1024];
    size_t sig_len = sizeof(sig);
    int rc = -1;
    WOLFSSL_BIO *bio = wolfSSL_BIO_new_mem_buf(key, (int)key_len);
    WOLFSSL_EVP_PKEY *priv = bio ? wolfSSL_PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    WOLFSSL_EVP_PKEY *pub = wolfSSL_X509_get_pubkey(leaf);
    WOLFSSL_EVP_MD_CTX *md = wolfSSL_EVP_MD_CTX_new();
    if (!priv || !pub || !md)
        goto out;
    if (wolfSSL_EVP_DigestSignInit(md, NULL, wolfSSL_EVP_sha256(), NULL, priv) != 1 ||
        wolfSSL_EVP_DigestSignUpdate(md, msg, sizeof(msg)) != 1 ||
        wolfSSL_EVP_DigestSignFinal(md, sig, &sig_len) != 1)
        goto out;
    wolfSSL_EVP_MD_CTX_free(md);
    md = wolfSSL_EVP_MD_CTX_new();
    if (!md || wolfSSL_EVP_DigestVerifyInit(md, NULL, wolfSSL_EVP_sha256(), NULL, pub) != 1 ||
        wolfSSL_EVP_DigestVerifyUpdate(md, msg, sizeof(msg)) != 1)
        goto out;
    rc = wolfSSL_EVP_DigestVerifyFinal(md, sig, sig_len) == 1 ? 1 : 0;
out:
    wolfSSL_EVP_MD_CTX_free(md);
    wolfSSL_EVP_PKEY_free(pub);
    wolfSSL_EVP_PKEY_free(priv);
    wolfSSL_BIO_free(bio);
    return rc;
}

static int load_pair(struct tls_server *srv, struct tls_pair *p, const struct tls_cert_pair *in,
                     char *err, size_t errlen)
{
    char *cert = NULL, *key = NULL, why[WOLFSSL_MAX_ERROR_SZ], when[64];
    size_t cert_len = 0, key_len = 0;
    WOLFSSL_X509 *leaf = NULL;
    int rc;

    if (!in->cert_file || !in->key_file) {
        snprintf(err, errlen, "tls: a certificate needs both a certificate and a key file");
        return -EINVAL;
    }
    rc = tls_read_file(in->cert_file, &cert, &cert_len);
    if (rc != 0) {
        snprintf(err, errlen, "tls: cannot read certificate %s: %s", in->cert_file, strerror(-rc));
        goto out;
    }
    if (!strstr(cert, "-----BEGIN CERTIFICATE-----")) {
        snprintf(err, errlen, "tls: certificate %s is not PEM (no BEGIN CERTIFICATE line)",
                 in->cert_file);
        rc = -EINVAL;
        goto out;
    }
    leaf = wolfSSL_X509_load_certificate_buffer((const unsigned char *)cert, (int)cert_len,
                                                WOLFSSL_FILETYPE_PEM);
    if (!leaf) {
        snprintf(err, errlen, "tls: certificate %s: cannot parse the first certificate",
                 in->cert_file);
        rc = -EINVAL;
        goto out;
    }
    const WOLFSSL_ASN1_TIME *na = wolfSSL_X509_get_notAfter(leaf);
    const WOLFSSL_ASN1_TIME *nb = wolfSSL_X509_get_notBefore(leaf);
    if (na && wolfSSL_X509_cmp_current_time(na) < 0) {
        fmt_asn1_time(na, when, sizeof(when));
        snprintf(err, errlen, "tls: certificate %s expired on %s", in->cert_file, when);
        rc = -EINVAL;
        goto out;
    }
    if (nb && wolfSSL_X509_cmp_current_time(nb) > 0) {
        fmt_asn1_time(nb, when, sizeof(when));
        snprintf(err, errlen, "tls: certificate %s is not valid before %s", in->cert_file, when);
        rc = -EINVAL;
        goto out;
    }
    rc = tls_names_from_x509(leaf, &p->names);
    if (rc != 0) {
        snprintf(err, errlen, "tls: out of memory");
        goto out;
    }
    for (size_t i = 0; i < p->names.n; i++)
        p->names_ptr[i] = p->names.v[i];

    rc = tls_read_file(in->key_file, &key, &key_len);
    if (rc != 0) {
        snprintf(err, errlen, "tls: cannot read key %s: %s", in->key_file, strerror(-rc));
        goto out;
    }
    if (!strstr(key, "-----BEGIN ") || !strstr(key, "PRIVATE KEY-----")) {
        snprintf(err, errlen, "tls: key %s is not a PEM private key", in->key_file);
        rc = -EINVAL;
        goto out;
    }
    if (strstr(key, "ENCRYPTED")) {
        snprintf(err, errlen, "tls: key %s is encrypted (a passphrase cannot be asked for)",
                 in->key_file);
        rc = -EINVAL;
        goto out;
    }

    rc = -EIO;
    p->ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    if (!p->ctx) {
        snprintf(err, errlen, "tls: out of memory");
        rc = -ENOMEM;
        goto out;
    }
    if (wolfSSL_CTX_SetMinVersion(p->ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_cipher_list(p->ctx, TLS_CIPHER_LIST) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "tls: cannot configure server protocol versions/ciphers");
        goto out;
    }
    int r = wolfSSL_CTX_use_certificate_chain_buffer_format(p->ctx, (const unsigned char *)cert,
                                                            (long)cert_len, WOLFSSL_FILETYPE_PEM);
    if (r != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "tls: certificate %s: cannot load: %s", in->cert_file,
                 wolf_reason(r, why, sizeof(why)));
        rc = -EINVAL;
        goto out;
    }
    r = wolfSSL_CTX_use_PrivateKey_buffer(p->ctx, (const unsigned char *)key, (long)key_len,
                                          WOLFSSL_FILETYPE_PEM);
    if (r != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "tls: key %s: cannot load: %s", in->key_file,
                 wolf_reason(r, why, sizeof(why)));
        rc = -EINVAL;
        goto out;
    }
    if (wolfSSL_CTX_check_private_key(p->ctx) != WOLFSSL_SUCCESS ||
        key_matches(leaf, key, key_len) == 0) {
        snprintf(err, errlen, "tls: key %s does not match certificate %s", in->key_file,
                 in->cert_file);
        rc = -EINVAL;
        goto out;
    }
    wolfSSL_CTX_set_verify(p->ctx, WOLFSSL_VERIFY_NONE, NULL);
    wolfSSL_CTX_SetIORecv(p->ctx, tls_io_recv);
    wolfSSL_CTX_SetIOSend(p->ctx, tls_io_send);
    if (wolfSSL_CTX_set_TicketEncCb(p->ctx, ticket_cb) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_TicketEncCtx(p->ctx, srv) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "tls: cannot enable session tickets");
        goto out;
    }
    /* Tickets carry the whole state; wolfSSL's process-wide server cache would only
     * add a lock per handshake. */
    wolfSSL_CTX_set_session_cache_mode(p->ctx, WOLFSSL_SESS_CACHE_OFF);
    wolfSSL_CTX_set_servername_callback(p->ctx, sni_cb);
    wolfSSL_CTX_set_servername_arg(p->ctx, srv);
    rc = 0;
out:
    wolfSSL_X509_free(leaf);
    free(cert);
    free(key);
    return rc;
}

static void server_destroy(struct tls_server *srv)
{
    for (size_t i = 0; i < srv->n; i++) {
        if (srv->pairs[i].ctx)
            wolfSSL_CTX_free(srv->pairs[i].ctx);
        tls_names_clear(&srv->pairs[i].names);
    }
    free(srv->pairs);
    free(srv);
}

int tls_server_new(const struct tls_cert_pair *pairs, size_t n, struct tls_server **out, char *err,
                   size_t errlen)
{
    if (n == 0) {
        snprintf(err, errlen, "tls: no certificate given");
        return -EINVAL;
    }
    int rc = tls_global_init();
    if (rc != 0) {
        snprintf(err, errlen, "tls: cannot initialise wolfSSL");
        return rc;
    }
    struct tls_server *srv = calloc(1, sizeof(*srv));
    if (!srv || !(srv->pairs = calloc(n, sizeof(*srv->pairs)))) {
        free(srv);
        snprintf(err, errlen, "tls: out of memory");
        return -ENOMEM;
    }
    atomic_init(&srv->refs, 1);
    srv->n = n;
    if (getrandom(srv->ticket_name, sizeof(srv->ticket_name), 0) !=
            (ssize_t)sizeof(srv->ticket_name) ||
        getrandom(srv->ticket_key, sizeof(srv->ticket_key), 0) !=
            (ssize_t)sizeof(srv->ticket_key)) {
        snprintf(err, errlen, "tls: getrandom: %s", strerror(errno));
        server_destroy(srv);
        return -EIO;
    }
    for (size_t i = 0; i < n; i++) {
        rc = load_pair(srv, &srv->pairs[i], &pairs[i], err, errlen);
        if (rc != 0) {
            server_destroy(srv);
            return rc;
        }
    }
    *out = srv;
    return 0;
}

struct tls_server *tls_server_ref(struct tls_server *srv)
{
    atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
    return srv;
}

void tls_server_free(struct tls_server *srv)
{
    if (!srv)
        return;
    if (atomic_fetch_sub_explicit(&srv->refs, 1, memory_order_acq_rel) == 1)
        server_destroy(srv);
}

size_t tls_server_npairs(const struct tls_server *srv)
{
    return srv->n;
}

size_t tls_server_pair_names(const struct tls_server *srv, size_t i, const char *const **names)
{
    if (i >= srv->n) {
        *names = NULL;
        return 0;
    }
    *names = srv->pairs[i].names_ptr;
    return srv->pairs[i].names.n;
}

int tls_conn_start_server(struct tls_conn *c, struct tls_server *srv)
{
    if (c->t != &tls_transport_plain || !srv)
        return -EINVAL;
    c->ssl = wolfSSL_new(srv->pairs[0].ctx);
    if (!c->ssl)
        return -ENOMEM;
    wolfSSL_SetIOReadCtx(c->ssl, c);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    c->srv = tls_server_ref(srv);
    c->is_server = true;
    c->t = &tls_transport_tls;
    return 0;
}

/* ---- reload slot ---------------------------------------------------------------------- */

struct tls_server_slot {
    pthread_mutex_t mu;
    struct tls_server *cur;
};

int tls_server_slot_new(struct tls_server *srv, struct tls_server_slot **out)
{
    struct tls_server_slot *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    s->cur = srv;
    *out = s;
    return 0;
}

void tls_server_slot_free(struct tls_server_slot *slot)
{
    if (!slot)
        return;
    tls_server_free(slot->cur);
    pthread_mutex_destroy(&slot->mu);
    free(slot);
}

struct tls_server *tls_server_slot_get(struct tls_server_slot *slot)
{
    pthread_mutex_lock(&slot->mu);
    struct tls_server *s = slot->cur ? tls_server_ref(slot->cur) : NULL;
    pthread_mutex_unlock(&slot->mu);
    return s;
}

int tls_server_slot_reload(struct tls_server_slot *slot, const struct tls_cert_pair *pairs,
                           size_t n, char *err, size_t errlen)
{
    struct tls_server *fresh = NULL;
    int rc = tls_server_new(pairs, n, &fresh, err, errlen);
    if (rc != 0)
        return rc; /* the old store stays in place */
    pthread_mutex_lock(&slot->mu);
    struct tls_server *old = slot->cur;
    slot->cur = fresh;
    pthread_mutex_unlock(&slot->mu);
    tls_server_free(old); /* freed when its last connection ends */
    return 0;
}
