/* tls: the per-MX session cache of one worker thread (no locks).
 *
 * A hash table of entries keyed by (host, port, verification mode), chained, plus an
 * intrusive LRU list (head = most recent). Each entry holds a few wolfSSL sessions (TLS 1.3
 * tickets or TLS 1.2 ids/tickets) and the facts of the connection that made them, because a
 * resumed handshake carries no certificate to verify again.
 *
 * Tickets are used once while there are spares (RFC 8446 C.4 prefers single use); the last
 * one is reused rather than falling back to a full handshake. A connection caches a TLS 1.3
 * ticket only when the server sent it one (see tls_cache_store). */
#include "tls_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { TLS_SESSIONS_PER_HOST = 16 };

struct tls_session_entry {
    struct tls_session_entry *hnext;       /* hash chain */
    struct tls_session_entry *prev, *next; /* LRU */
    uint64_t hash;
    char *host; /* lower case */
    uint16_t port;
    enum tls_verify mode;
    WOLFSSL_SESSION *sess[TLS_SESSIONS_PER_HOST]; /* [n-1] is the newest; n >= 1 */
    size_t n;
    time_t expires; /* CLOCK_MONOTONIC seconds */
    bool verified;
    char *why; /* why unverified (allow-invalid), or NULL */
    struct tls_names names;
};

struct tls_session_cache {
    struct tls_session_entry **buckets;
    size_t nbuckets, capacity, count;
    unsigned ttl_s;
    struct tls_session_entry *head, *tail;
    struct tls_cache_stats st;
};

static time_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static uint64_t key_hash(const char *host, uint16_t port, enum tls_verify mode)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = host; *p; p++) {
        h ^= (unsigned char)tolower((unsigned char)*p);
        h *= 1099511628211ULL;
    }
    h ^= port;
    h *= 1099511628211ULL;
    h ^= (uint64_t)mode;
    h *= 1099511628211ULL;
    return h;
}

int tls_session_cache_new(size_t capacity, unsigned ttl_s, struct tls_session_cache **out)
{
    if (capacity == 0)
        return -EINVAL;
    struct tls_session_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    size_t nb = 16;
    while (nb < capacity)
        nb <<= 1;
    c->buckets = calloc(nb, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return -ENOMEM;
    }
    c->nbuckets = nb;
    c->capacity = capacity;
    c->ttl_s = ttl_s ? ttl_s : 3600;
    *out = c;
    return 0;
}

static void lru_unlink(struct tls_session_cache *c, struct tls_session_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct tls_session_cache *c, struct tls_session_entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static void entry_free(struct tls_session_entry *e)
{
    for (size_t i = 0; i < e->n; i++)
        wolfSSL_SESSION_free(e->sess[i]);
    tls_names_clear(&e->names);
    free(e->host);
    free(e->why);
    free(e);
}

static void entry_remove(struct tls_session_cache *c, struct tls_session_entry *e)
{
    struct tls_session_entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    lru_unlink(c, e);
    c->count--;
    entry_free(e);
}

static struct tls_session_entry *find(struct tls_session_cache *c, const char *host, uint16_t port,
                                      enum tls_verify mode, uint64_t h)
{
    for (struct tls_session_entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->port == port && e->mode == mode && strcasecmp(e->host, host) == 0)
            return e;
    return NULL;
}

void tls_session_cache_free(struct tls_session_cache *c)
{
    if (!c)
        return;
    struct tls_session_entry *e = c->head;
    while (e) {
        struct tls_session_entry *n = e->next;
        entry_free(e);
        e = n;
    }
    free(c->buckets);
    free(c);
}

void tls_session_cache_stats(const struct tls_session_cache *c, struct tls_cache_stats *out)
{
    *out = c->st;
    out->entries = c->count;
}

void tls_cache_count(struct tls_session_cache *c, bool resumed)
{
    if (resumed)
        c->st.resumed_handshakes++;
    else
        c->st.full_handshakes++;
}

bool tls_session_cache_has(struct tls_session_cache *c, const char *host, uint16_t port,
                           enum tls_verify mode)
{
    const struct tls_session_entry *e = find(c, host, port, mode, key_hash(host, port, mode));
    return e && e->expires > now_s();
}

void tls_cache_offer(struct tls_session_cache *c, struct tls_conn *conn)
{
    uint64_t h = key_hash(conn->host, conn->port, conn->mode);
    struct tls_session_entry *e = find(c, conn->host, conn->port, conn->mode, h);
    if (!e) {
        c->st.misses++;
        return;
    }
    if (e->expires <= now_s()) {
        c->st.expired++;
        c->st.misses++;
        entry_remove(c, e);
        return;
    }
    /* The newest ticket; it is used up unless it is the last one, which stays for
     * reuse: better a reused ticket than a full handshake. */
    bool popped = e->n > 1;
    WOLFSSL_SESSION *sess = popped ? e->sess[--e->n] : e->sess[0];
    int ok = wolfSSL_set_session(conn->ssl, sess) == WOLFSSL_SUCCESS;
    if (popped)
        wolfSSL_SESSION_free(sess); /* the connection holds its own copy */
    if (!ok) {
        c->st.misses++;
        entry_remove(c, e);
        return;
    }
    c->st.hits++;
    lru_unlink(c, e);
    lru_push_front(c, e);
    conn->offered_session = true;
    conn->cached_verified = e->verified;
    free(conn->cached_why);
    conn->cached_why = e->why ? strdup(e->why) : NULL;
    /* If the server resumes, no certificate is sent: these names are the facts. A full
     * handshake replaces them in the verify callback. */
    if (tls_names_copy(&conn->peer, &e->names) != 0)
        tls_names_clear(&conn->peer);
}

void tls_cache_store(struct tls_session_cache *c, struct tls_conn *conn)
{
    /* A strict connection that did not verify never gets here established; still,
     * never keep a session whose facts we could not vouch for in strict mode. */
    if (conn->mode == TLS_VERIFY_STRICT && !conn->verified)
        return;
    /* TLS 1.3: only a ticket this connection received. Before it arrives, the session of
     * a resumed connection pairs the ticket it used with its own new resumption secret:
     * a peer rejects that ("binder does not verify"). And each ticket is cached once. */
    if (wolfSSL_version(conn->ssl) == TLS1_3_VERSION) {
        if (!conn->ticket_fresh)
            return;
        conn->ticket_fresh = false;
    } else { /* a TLS 1.2 session id/ticket is fixed at the handshake: cache it once */
        if (conn->tls12_cached)
            return;
        conn->tls12_cached = true;
    }
    /* A detached copy: the connection keeps updating its own session object (a second
     * ticket), and each cached session must be freed exactly once. */
    WOLFSSL_SESSION *live = wolfSSL_get1_session(conn->ssl);
    WOLFSSL_SESSION *s = live ? wolfSSL_SESSION_dup(live) : NULL;
    wolfSSL_SESSION_free(live);
    if (!s)
        return;
    if (!wolfSSL_SESSION_is_resumable(s)) {
        wolfSSL_SESSION_free(s); /* TLS 1.3 before its ticket arrived */
        return;
    }
    time_t now = now_s();
    long life = wolfSSL_SESSION_get_timeout(s);
    time_t expires = now + (time_t)c->ttl_s;
    if (life > 0 && now + life < expires)
        expires = now + life;

    uint64_t h = key_hash(conn->host, conn->port, conn->mode);
    struct tls_session_entry *e = find(c, conn->host, conn->port, conn->mode, h);
    if (e) {
        if (e->n == TLS_SESSIONS_PER_HOST) { /* drop the oldest */
            wolfSSL_SESSION_free(e->sess[0]);
            memmove(e->sess, e->sess + 1, (e->n - 1) * sizeof(e->sess[0]));
            e->n--;
        }
        e->sess[e->n++] = s;
        lru_unlink(c, e);
    } else {
        e = calloc(1, sizeof(*e));
        if (!e || !(e->host = strdup(conn->host))) {
            free(e);
            wolfSSL_SESSION_free(s);
            return;
        }
        for (char *p = e->host; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        e->hash = h;
        e->port = conn->port;
        e->mode = conn->mode;
        e->sess[0] = s;
        e->n = 1;
        size_t b = h & (c->nbuckets - 1);
        e->hnext = c->buckets[b];
        c->buckets[b] = e;
        c->count++;
    }
    lru_push_front(c, e);
    e->expires = expires;
    e->verified = conn->verified;
    free(e->why);
    e->why = NULL;
    if (!conn->verified) {
        const char *why = conn->verify_reason[0] ? conn->verify_reason : conn->cached_why;
        e->why = why ? strdup(why) : NULL;
    }
    if (tls_names_copy(&e->names, &conn->peer) != 0)
        tls_names_clear(&e->names);
    c->st.stored++;
    while (c->count > c->capacity && c->tail) {
        c->st.evictions++;
        entry_remove(c, c->tail);
    }
}
