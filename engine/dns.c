/* engine/dns: MX and address lookups with c-ares on a worker's libev loop.
 *
 * c-ares owns the sockets and the retry timers; it tells us which sockets to
 * watch through its socket-state callback (one ev_io per socket) and when it next
 * needs to run through ares_timeout() (one ev_timer). Nothing blocks and no thread
 * is started.
 *
 * A lookup runs in two phases:
 *
 *   MX phase      MX query for the domain (skipped by eng_dns_resolve_host)
 *   address phase A and/or AAAA per target, all in parallel
 *
 * Each query first asks the shared cache; a hit completes the query at once, so a
 * fully cached lookup calls back before eng_dns_resolve_* returns. Every lookup has
 * its own deadline (timeout x tries per phase): c-ares doubles its per-try timeout
 * on each round, so without it a lookup could take 3x longer than configured. A
 * lookup that completes (deadline, shutdown) while c-ares still holds its queries
 * stays allocated, marked done, until those queries call back. */
#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "dns_int.h"

/* Positive answers are kept at most a day; negative ones (RFC 2308 §5: only with
 * an SOA in the answer) at most a minute, so a domain that just got its records
 * is not refused for long. */
#define DNS_MAX_TTL     86400u
#define DNS_MAX_NEG_TTL 60u
/* Local policy: a negative answer without an SOA (dnsmasq's local records answer
 * NODATA for the family a name lacks that way) may not be cached per RFC 2308 §5,
 * but asking again for every job floods the resolver: keep it this briefly. */
#define DNS_NOSOA_NEG_TTL 5u
#define DNS_ERR_MAX       512

struct dns_io {
    ev_io w; /* w.data = the resolver */
    int fd;
};

/* One query's outcome: failed (with reason) or a record set. */
struct dns_answer {
    bool done;
    bool failed;
    char reason[96]; /* "timed out", "failed: server failure (SERVFAIL)", ... */
    struct dns_rrset rs;
};

struct dns_target {
    char name[DNS_NAME_MAX + 1];
    unsigned pref;
    bool want_a, want_aaaa;
    struct dns_answer a, aaaa;
};

enum lk_phase { PH_MX, PH_ADDR, PH_DONE };

struct dns_lookup {
    struct eng_dns *d;
    struct dns_lookup *prev, *next; /* in d->lookups until done */
    unsigned refs;                  /* 1 until done + 1 per c-ares query + callers on stack */
    enum lk_phase phase;
    bool is_mx;
    bool implicit; /* MX phase found no MX: the domain is its own MX */
    char domain[DNS_NAME_MAX + 1];
    enum rule_ip_strategy strategy;
    size_t max_mx, max_addrs;
    eng_dns_cb cb;
    void *arg;
    ev_timer deadline;
    size_t pending; /* answers outstanding in this phase */
    struct dns_answer mx;
    struct dns_target *t;
    size_t nt;
    char err[DNS_ERR_MAX];
};

struct dns_query {
    struct dns_lookup *lk;
    struct dns_answer *slot;
    uint16_t qtype;
    char name[DNS_NAME_MAX + 1];
    struct dns_query *next_waiter; /* in its flight */
};

/* One question on the network; identical questions asked meanwhile wait for its
 * answer instead of asking again (a burst of jobs to one host = one query). */
struct dns_flight {
    struct eng_dns *d;
    struct dns_flight *prev, *next; /* in d->flights */
    uint16_t qtype;
    char name[DNS_NAME_MAX + 1];
    struct dns_query *waiters;
};

struct eng_dns {
    struct ev_loop *loop;
    struct eng_dns_cache *cache;
    ares_channel ch;
    ev_timer tmo;
    struct dns_io **io;
    size_t nio, capio;
    struct dns_lookup *lookups;
    struct dns_flight *flights;
    double phase_timeout; /* seconds: timeout x tries */
    uint64_t rng;
    int depth;         /* > 0 while our code up the stack still uses the resolver */
    bool closing;      /* eng_dns_free was called */
    bool free_pending; /* freed when the outermost frame leaves (depth 0) */
};

static const char *strategy_name(enum rule_ip_strategy s)
{
    switch (s) {
    case RULE_IP_V4_ONLY: return "ipv4_only";
    case RULE_IP_V6_ONLY: return "ipv6_only";
    case RULE_IP_V4_THEN_V6: return "ipv4_then_ipv6";
    case RULE_IP_V6_THEN_V4: return "ipv6_then_ipv4";
    }
    return "?";
}

static uint64_t rng_next(struct eng_dns *d)
{
    /* xorshift64*: only for shuffling MX hosts of equal preference. */
    d->rng ^= d->rng >> 12;
    d->rng ^= d->rng << 25;
    d->rng ^= d->rng >> 27;
    return d->rng * 2685821657736338717ULL;
}

/* --- c-ares <-> libev ------------------------------------------------------ */

static void destroy(struct eng_dns *d);

static void leave(struct eng_dns *d)
{
    if (--d->depth == 0 && d->free_pending)
        destroy(d);
}

static void timer_update(struct eng_dns *d)
{
    struct timeval tv, *tvp = ares_timeout(d->ch, NULL, &tv);
    ev_timer_stop(d->loop, &d->tmo);
    if (!tvp)
        return;
    ev_timer_set(&d->tmo, (double)tvp->tv_sec + (double)tvp->tv_usec / 1e6, 0.0);
    ev_timer_start(d->loop, &d->tmo);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct eng_dns *d = w->data;
    int fd = w->fd; /* the watcher may be freed inside ares_process_fd */
    d->depth++;
    ares_process_fd(d->ch, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    if (!d->free_pending)
        timer_update(d);
    leave(d);
}

static void tmo_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct eng_dns *d = w->data;
    d->depth++;
    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    if (!d->free_pending)
        timer_update(d);
    leave(d);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct eng_dns *d = data;
    size_t i;
    for (i = 0; i < d->nio && d->io[i]->fd != fd; i++)
        ;
    if (!readable && !writable) {
        if (i < d->nio) {
            ev_io_stop(d->loop, &d->io[i]->w);
            free(d->io[i]);
            d->io[i] = d->io[--d->nio];
        }
        return;
    }
    if (i == d->nio) {
        if (d->nio == d->capio) {
            size_t cap = d->capio ? d->capio * 2 : 4;
            struct dns_io **n = realloc(d->io, cap * sizeof(*n));
            if (!n) {
                sv_error("dns: out of memory watching a resolver socket");
                return; /* the query will time out through ares_timeout */
            }
            d->io = n;
            d->capio = cap;
        }
        struct dns_io *io = calloc(1, sizeof(*io));
        if (!io) {
            sv_error("dns: out of memory watching a resolver socket");
            return;
        }
        io->fd = fd;
        ev_init(&io->w, io_cb);
        io->w.data = d;
        d->io[d->nio++] = io;
    }
    struct dns_io *io = d->io[i];
    ev_io_stop(d->loop, &io->w);
    ev_io_set(&io->w, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    ev_io_start(d->loop, &io->w);
}

/* --- answers --------------------------------------------------------------- */

static unsigned rd16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* Expands the name at buf+off into out (lower case, no trailing dot, "" = root).
 * Returns its encoded length, or -1; also when a label holds a byte c-ares escapes
 * (a dot, a backslash, a non-printable byte): no host name has one, and cutting the
 * last dot of an escaped one would break the escape. */
static long expand(const unsigned char *buf, int len, size_t off, char out[DNS_NAME_MAX + 1])
{
    char *s = NULL;
    long enclen = 0;
    if (off >= (size_t)len || ares_expand_name(buf + off, buf, len, &s, &enclen) != ARES_SUCCESS)
        return -1;
    size_t n = strlen(s);
    if (memchr(s, '\\', n)) {
        ares_free_string(s);
        return -1;
    }
    if (n > 0 && s[n - 1] == '.')
        s[--n] = '\0';
    if (n > DNS_NAME_MAX) {
        ares_free_string(s);
        return -1;
    }
    memcpy(out, s, n + 1);
    ares_free_string(s);
    lower(out);
    return enclen;
}

/* See dns_int.h. CNAMEs are followed in answer order, as resolvers send them. */
int dns_parse_answer(const unsigned char *buf, int len, const char *qname, uint16_t qtype,
                     struct dns_rrset *rs, uint32_t *ttl, uint32_t *soa_ttl)
{
    char owner[DNS_NAME_MAX + 1], cur[DNS_NAME_MAX + 1];
    rs->n = 0;
    *ttl = DNS_MAX_TTL;
    *soa_ttl = DNS_NO_SOA;
    if (len < 12)
        return -1;
    unsigned qd = rd16(buf + 4), an = rd16(buf + 6), ns = rd16(buf + 8);
    size_t p = 12;
    for (unsigned i = 0; i < qd; i++) {
        long el = expand(buf, len, p, owner);
        if (el < 0 || p + (size_t)el + 4 > (size_t)len)
            return -1;
        p += (size_t)el + 4;
    }
    snprintf(cur, sizeof(cur), "%s", qname);
    for (unsigned i = 0; i < an + ns; i++) {
        long el = expand(buf, len, p, owner);
        if (el < 0 || p + (size_t)el + 10 > (size_t)len)
            return -1;
        p += (size_t)el;
        unsigned type = rd16(buf + p), cls = rd16(buf + p + 2);
        uint32_t rttl = rd32(buf + p + 4);
        size_t rdlen = rd16(buf + p + 8), rd = p + 10;
        if (rd + rdlen > (size_t)len)
            return -1;
        p = rd + rdlen;
        if (cls != 1)
            continue;
        if (i >= an) {
            if (type == DNS_T_SOA && rdlen >= 22) {
                uint32_t min = rd32(buf + rd + rdlen - 4);
                *soa_ttl = rttl < min ? rttl : min;
            }
            continue;
        }
        if (strcmp(owner, cur) != 0)
            continue;
        if (type == DNS_T_CNAME) {
            if (expand(buf, len, rd, cur) < 0)
                return -1;
            if (rttl < *ttl)
                *ttl = rttl;
            continue;
        }
        if (type != qtype)
            continue;
        if (type == DNS_T_MX) {
            /* Beyond DNS_MAX_RR records the least preferred one makes room. */
            if (rdlen < 3)
                return -1;
            struct dns_rr r;
            memset(&r, 0, sizeof(r));
            r.pref = (uint16_t)rd16(buf + rd);
            if (expand(buf, len, rd + 2, r.name) < 0)
                return -1;
            size_t slot = rs->n;
            if (rs->n == DNS_MAX_RR) {
                slot = 0;
                for (size_t k = 1; k < rs->n; k++)
                    if (rs->rr[k].pref > rs->rr[slot].pref)
                        slot = k;
                if (rs->rr[slot].pref <= r.pref)
                    continue;
            } else {
                rs->n++;
            }
            rs->rr[slot] = r;
            if (rttl < *ttl)
                *ttl = rttl;
            continue;
        }
        if (rs->n == DNS_MAX_RR)
            continue;
        struct dns_rr *r = &rs->rr[rs->n];
        memset(r, 0, sizeof(*r));
        if (type == DNS_T_A && rdlen == 4) {
            memcpy(r->addr, buf + rd, 4);
        } else if (type == DNS_T_AAAA && rdlen == 16) {
            memcpy(r->addr, buf + rd, 16);
        } else {
            return -1;
        }
        rs->n++;
        if (rttl < *ttl)
            *ttl = rttl;
    }
    return 0;
}

static const char *qtype_name(uint16_t t)
{
    return t == DNS_T_MX ? "MX" : t == DNS_T_A ? "A" : "AAAA";
}

/* Turns what c-ares reported into an answer (and caches what may be cached). */
static void fill_answer(struct eng_dns *d, const struct dns_query *q, int status,
                        const unsigned char *abuf, int alen, struct dns_answer *a)
{
    a->done = true;
    a->failed = false;
    a->rs.n = 0;
    if ((status == ARES_SUCCESS || status == ARES_ENODATA || status == ARES_ENOTFOUND) && abuf) {
        uint32_t ttl, soa_ttl;
        if (dns_parse_answer(abuf, alen, q->name, q->qtype, &a->rs, &ttl, &soa_ttl) < 0) {
            a->failed = true;
            snprintf(a->reason, sizeof(a->reason), "failed: malformed %s answer",
                     qtype_name(q->qtype));
            return;
        }
        if (status == ARES_ENOTFOUND) {
            a->rs.status = DNS_RR_NXDOMAIN;
            a->rs.n = 0;
        } else {
            a->rs.status = a->rs.n > 0 ? DNS_RR_OK : DNS_RR_NODATA;
        }
        if (a->rs.status == DNS_RR_OK)
            ttl = ttl > DNS_MAX_TTL ? DNS_MAX_TTL : ttl;
        else if (soa_ttl == DNS_NO_SOA)
            ttl = DNS_NOSOA_NEG_TTL;
        else
            ttl = soa_ttl > DNS_MAX_NEG_TTL ? DNS_MAX_NEG_TTL : soa_ttl;
        dns_cache_put(d->cache, q->qtype, q->name, &a->rs, ttl);
        return;
    }
    a->failed = true;
    switch (status) {
    case ARES_ETIMEOUT: snprintf(a->reason, sizeof(a->reason), "timed out"); break;
    case ARES_ESERVFAIL:
        snprintf(a->reason, sizeof(a->reason), "failed: server failure (SERVFAIL)");
        break;
    case ARES_EREFUSED: snprintf(a->reason, sizeof(a->reason), "failed: refused (REFUSED)"); break;
    case ARES_ECONNREFUSED:
        /* c-ares 1.18 moves on to the next server on SERVFAIL / REFUSED and, when
         * none is left, reports this rather than the last rcode. */
        snprintf(a->reason, sizeof(a->reason),
                 "failed: no nameserver answered (SERVFAIL, REFUSED or unreachable)");
        break;
    case ARES_EDESTRUCTION:
    case ARES_ECANCELLED: snprintf(a->reason, sizeof(a->reason), "resolver shut down"); break;
    default: snprintf(a->reason, sizeof(a->reason), "failed: %s", ares_strerror(status)); break;
    }
}

/* --- lookups --------------------------------------------------------------- */

static void lk_unref(struct dns_lookup *lk)
{
    if (--lk->refs > 0)
        return;
    free(lk->t);
    free(lk);
}

/* Completes the lookup: unlinks it, calls back once, drops the "alive" reference. */
static void finish(struct dns_lookup *lk, const struct eng_mx_result *r)
{
    struct eng_dns *d = lk->d;
    lk->phase = PH_DONE;
    ev_timer_stop(d->loop, &lk->deadline);
    if (lk->prev)
        lk->prev->next = lk->next;
    else
        d->lookups = lk->next;
    if (lk->next)
        lk->next->prev = lk->prev;
    lk->prev = lk->next = NULL;
    if (r->status != ENG_DNS_OK)
        sv_debug("dns: %s", r->error);
    lk->cb(lk->arg, r);
    lk_unref(lk);
}

static void finish_err(struct dns_lookup *lk, enum eng_dns_status st, const char *fmt, ...)
    SV_PRINTF(3, 4);
static void finish_err(struct dns_lookup *lk, enum eng_dns_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lk->err, sizeof(lk->err), fmt, ap);
    va_end(ap);
    struct eng_mx_result r = {.status = st, .error = lk->err};
    finish(lk, &r);
}

static void answer_done(struct dns_lookup *lk);
static void deadline_start(struct dns_lookup *lk);

/* The answer of a flight arrives (c-ares callback): every waiting query gets it. */
static void query_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct dns_flight *f = arg;
    struct eng_dns *d = f->d;
    if (f->prev)
        f->prev->next = f->next;
    else
        d->flights = f->next;
    if (f->next)
        f->next->prev = f->prev;
    struct dns_query *q = f->waiters;
    free(f);
    while (q) {
        struct dns_query *next = q->next_waiter;
        struct dns_lookup *lk = q->lk;
        if (lk->phase != PH_DONE) {
            fill_answer(lk->d, q, status, abuf, alen, q->slot);
            answer_done(lk);
        }
        free(q);
        lk_unref(lk);
        q = next;
    }
}

/* Asks the cache, else c-ares, for (qtype, name); the answer lands in *slot and
 * counts down lk->pending (possibly before this returns). */
static void issue(struct dns_lookup *lk, uint16_t qtype, const char *name, struct dns_answer *slot)
{
    struct eng_dns *d = lk->d;
    lk->pending++;
    memset(slot, 0, sizeof(*slot));
    if (dns_cache_get(d->cache, qtype, name, &slot->rs) == 0) {
        slot->done = true;
        answer_done(lk);
        return;
    }
    struct dns_query *q = calloc(1, sizeof(*q));
    if (!q) {
        slot->done = slot->failed = true;
        snprintf(slot->reason, sizeof(slot->reason), "failed: out of memory");
        answer_done(lk);
        return;
    }
    /* The phase deadline runs only while something is on the network: a lookup
     * answered from the cache never touches a timer. */
    if (!ev_is_active(&lk->deadline))
        deadline_start(lk);
    q->lk = lk;
    q->slot = slot;
    q->qtype = qtype;
    snprintf(q->name, sizeof(q->name), "%s", name);
    lk->refs++;
    for (struct dns_flight *f = d->flights; f; f = f->next)
        if (f->qtype == qtype && strcmp(f->name, q->name) == 0) {
            q->next_waiter = f->waiters;
            f->waiters = q;
            return;
        }
    struct dns_flight *f = calloc(1, sizeof(*f));
    if (!f) {
        lk->refs--;
        free(q);
        slot->done = slot->failed = true;
        snprintf(slot->reason, sizeof(slot->reason), "failed: out of memory");
        answer_done(lk);
        return;
    }
    f->d = d;
    f->qtype = qtype;
    snprintf(f->name, sizeof(f->name), "%s", q->name);
    f->waiters = q;
    f->next = d->flights;
    if (d->flights)
        d->flights->prev = f;
    d->flights = f;
    ares_query(d->ch, f->name, 1 /* C_IN */, qtype, query_cb, f);
    timer_update(d);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents);

static bool is_ip_literal(const char *s, struct sockaddr_storage *ss)
{
    char tmp[DNS_NAME_MAX + 1];
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']' && n - 2 < sizeof(tmp)) {
        memcpy(tmp, s + 1, n - 2);
        tmp[n - 2] = '\0';
        s = tmp;
        if (strncasecmp(s, "ipv6:", 5) == 0) /* RFC 5321 §4.1.3 IPv6 literal */
            s += 5;
    }
    struct sockaddr_storage dummy;
    if (!ss)
        ss = &dummy;
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

/* (Re)starts the phase deadline. The loop's cached time may be stale (the owner
 * may have blocked since the last iteration): refresh it, or the deadline would
 * count from the past. */
static void deadline_start(struct dns_lookup *lk)
{
    struct eng_dns *d = lk->d;
    ev_now_update(d->loop);
    ev_timer_stop(d->loop, &lk->deadline);
    ev_timer_set(&lk->deadline, d->phase_timeout, 0.0);
    ev_timer_start(d->loop, &lk->deadline);
}

static void start_addr_phase(struct dns_lookup *lk)
{
    lk->phase = PH_ADDR;
    ev_timer_stop(lk->d->loop, &lk->deadline); /* the next network query restarts it */
    lk->refs++;
    lk->pending++; /* held until every query is issued: cache hits complete at once */
    for (size_t i = 0; i < lk->nt && lk->phase == PH_ADDR; i++) {
        struct dns_target *t = &lk->t[i];
        if (t->want_a)
            issue(lk, DNS_T_A, t->name, &t->a);
        if (t->want_aaaa && lk->phase == PH_ADDR)
            issue(lk, DNS_T_AAAA, t->name, &t->aaaa);
    }
    if (lk->phase == PH_ADDR)
        answer_done(lk);
    lk_unref(lk);
}

static void set_wants(struct dns_lookup *lk, struct dns_target *t)
{
    t->want_a = lk->strategy != RULE_IP_V6_ONLY;
    t->want_aaaa = lk->strategy != RULE_IP_V4_ONLY;
    /* The implicit MX exists if the domain has any address: ask for both so a
     * domain with only the other family is not bounced as nonexistent. */
    if (lk->implicit)
        t->want_a = t->want_aaaa = true;
}

static void mx_done(struct dns_lookup *lk)
{
    struct eng_dns *d = lk->d;
    struct dns_answer *a = &lk->mx;
    if (a->failed) {
        finish_err(lk, ENG_DNS_TEMPFAIL, "%s: MX lookup %s", lk->domain, a->reason);
        return;
    }
    if (a->rs.status == DNS_RR_NXDOMAIN) {
        finish_err(lk, ENG_DNS_NODOMAIN, "%s: domain does not exist (NXDOMAIN)", lk->domain);
        return;
    }
    if (a->rs.status == DNS_RR_NODATA) {
        /* RFC 5321 §5.1: no MX, so the domain itself is the MX, preference 0. */
        lk->implicit = true;
        lk->t = calloc(1, sizeof(*lk->t));
        if (!lk->t) {
            finish_err(lk, ENG_DNS_TEMPFAIL, "%s: out of memory", lk->domain);
            return;
        }
        lk->nt = 1;
        snprintf(lk->t[0].name, sizeof(lk->t[0].name), "%s", lk->domain);
        set_wants(lk, &lk->t[0]);
        start_addr_phase(lk);
        return;
    }
    size_t n = a->rs.n;
    if (n == 1 && a->rs.rr[0].name[0] == '\0') {
        finish_err(lk, ENG_DNS_NULL_MX, "%s: null MX: the domain accepts no mail (RFC 7505)",
                   lk->domain);
        return;
    }
    /* Preference order; a shuffle first, then a stable sort, spreads load among
     * equal preferences (RFC 5321 §5.1). */
    size_t order[DNS_MAX_RR];
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(d) % i);
        size_t tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
    }
    for (size_t i = 1; i < n; i++) {
        size_t v = order[i], j = i;
        while (j > 0 && a->rs.rr[order[j - 1]].pref > a->rs.rr[v].pref) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    lk->t = calloc(n, sizeof(*lk->t));
    if (!lk->t) {
        finish_err(lk, ENG_DNS_TEMPFAIL, "%s: out of memory", lk->domain);
        return;
    }
    for (size_t i = 0; i < n && lk->nt < lk->max_mx; i++) {
        const struct dns_rr *r = &a->rs.rr[order[i]];
        if (r->name[0] == '\0') {
            sv_warn("dns: %s: skipping MX \".\" among other MX records (RFC 7505)", lk->domain);
            continue;
        }
        if (is_ip_literal(r->name, NULL)) {
            sv_warn("dns: %s: skipping MX %s: an IP address is not a host name (RFC 5321 §5.1)",
                    lk->domain, r->name);
            continue;
        }
        struct dns_target *t = &lk->t[lk->nt++];
        snprintf(t->name, sizeof(t->name), "%s", r->name);
        t->pref = r->pref;
        set_wants(lk, t);
    }
    if (lk->nt == 0) {
        finish_err(lk, ENG_DNS_TEMPFAIL, "%s: no MX host has an address", lk->domain);
        return;
    }
    start_addr_phase(lk);
}

/* Appends the addresses of one answer (in DNS order) up to max. */
static void add_addrs(const struct dns_answer *a, int family, size_t max,
                      struct sockaddr_storage *out, size_t *n)
{
    if (!a->done || a->failed || a->rs.status != DNS_RR_OK)
        return;
    for (size_t i = 0; i < a->rs.n && *n < max; i++) {
        struct sockaddr_storage *ss = &out[(*n)++];
        memset(ss, 0, sizeof(*ss));
        if (family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)ss;
            sin->sin_family = AF_INET;
            memcpy(&sin->sin_addr, a->rs.rr[i].addr, 4);
        } else {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
            sin6->sin6_family = AF_INET6;
            memcpy(&sin6->sin6_addr, a->rs.rr[i].addr, 16);
        }
    }
}

/* Why a target has no usable address, for logs and errors. */
static const char *target_reason(const struct dns_target *t)
{
    if (t->want_a && t->a.failed)
        return t->a.reason;
    if (t->want_aaaa && t->aaaa.failed)
        return t->aaaa.reason;
    bool nx = (!t->want_a || t->a.rs.status == DNS_RR_NXDOMAIN) &&
              (!t->want_aaaa || t->aaaa.rs.status == DNS_RR_NXDOMAIN);
    return nx ? "does not exist (NXDOMAIN)" : "has no address records";
}

static void addr_done(struct dns_lookup *lk)
{
    bool v4 = lk->strategy != RULE_IP_V6_ONLY, v6 = lk->strategy != RULE_IP_V4_ONLY;
    bool v6_first = lk->strategy == RULE_IP_V6_THEN_V4;
    size_t per = lk->max_addrs < 2 * DNS_MAX_RR ? lk->max_addrs : 2 * DNS_MAX_RR;
    struct eng_mx_host *hosts = calloc(lk->nt, sizeof(*hosts));
    struct sockaddr_storage *addrs = calloc(lk->nt * per, sizeof(*addrs));
    if (!hosts || !addrs) {
        free(hosts);
        free(addrs);
        finish_err(lk, ENG_DNS_TEMPFAIL, "%s: out of memory", lk->domain);
        return;
    }
    size_t nh = 0;
    const struct dns_target *last = NULL;
    for (size_t i = 0; i < lk->nt; i++) {
        const struct dns_target *t = &lk->t[i];
        struct sockaddr_storage *out = addrs + nh * per;
        size_t n = 0;
        if (v6_first && v6)
            add_addrs(&t->aaaa, AF_INET6, per, out, &n);
        if (v4)
            add_addrs(&t->a, AF_INET, per, out, &n);
        if (!v6_first && v6)
            add_addrs(&t->aaaa, AF_INET6, per, out, &n);
        if (n == 0) {
            last = t;
            if (lk->is_mx && !lk->implicit)
                sv_info("dns: %s: skipping MX %s: %s", lk->domain, t->name, target_reason(t));
            continue;
        }
        hosts[nh].name = t->name;
        hosts[nh].preference = t->pref;
        hosts[nh].naddrs = n;
        hosts[nh].addrs = out;
        nh++;
    }
    if (nh > 0) {
        struct eng_mx_result r = {.status = ENG_DNS_OK, .nhosts = nh, .hosts = hosts};
        finish(lk, &r);
    } else if (lk->is_mx && !lk->implicit) {
        finish_err(lk, ENG_DNS_TEMPFAIL, "%s: no MX host has an address (%s %s)", lk->domain,
                   last->name, target_reason(last));
    } else {
        const struct dns_target *t = &lk->t[0];
        bool failed = (t->want_a && t->a.failed) || (t->want_aaaa && t->aaaa.failed);
        bool other = (t->want_a && !v4 && t->a.rs.status == DNS_RR_OK) ||
                     (t->want_aaaa && !v6 && t->aaaa.rs.status == DNS_RR_OK);
        if (failed)
            finish_err(lk, ENG_DNS_TEMPFAIL, "%s: address lookup %s", lk->domain, target_reason(t));
        else if (other)
            finish_err(lk, ENG_DNS_TEMPFAIL, "%s: no address usable with ip-strategy %s",
                       lk->domain, strategy_name(lk->strategy));
        else if (lk->implicit)
            finish_err(lk, ENG_DNS_NODOMAIN, "%s: no MX and no address records", lk->domain);
        else
            finish_err(lk, ENG_DNS_NODOMAIN, "%s: %s", lk->domain, target_reason(t));
    }
    free(hosts);
    free(addrs);
}

static void answer_done(struct dns_lookup *lk)
{
    if (--lk->pending > 0 || lk->phase == PH_DONE)
        return;
    if (lk->phase == PH_MX)
        mx_done(lk);
    else
        addr_done(lk);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct dns_lookup *lk = w->data;
    struct eng_dns *d = lk->d;
    d->depth++;
    if (lk->phase == PH_MX) {
        finish_err(lk, ENG_DNS_TEMPFAIL, "%s: MX lookup timed out", lk->domain);
    } else if (lk->phase == PH_ADDR) {
        /* Hosts that answered in time are used; the others count as timed out. */
        for (size_t i = 0; i < lk->nt; i++) {
            struct dns_answer *as[2] = {&lk->t[i].a, &lk->t[i].aaaa};
            bool want[2] = {lk->t[i].want_a, lk->t[i].want_aaaa};
            for (int k = 0; k < 2; k++)
                if (want[k] && !as[k]->done) {
                    as[k]->done = as[k]->failed = true;
                    snprintf(as[k]->reason, sizeof(as[k]->reason), "timed out");
                }
        }
        lk->pending = 0;
        addr_done(lk);
    }
    leave(d);
}

/* Lower-cases `in` into out without a trailing dot. Returns 0 or -EINVAL. */
static int norm_name(const char *in, char out[DNS_NAME_MAX + 1])
{
    if (!in)
        return -EINVAL;
    size_t n = strlen(in);
    if (n > 0 && in[n - 1] == '.')
        n--;
    if (n == 0 || n > DNS_NAME_MAX)
        return -EINVAL;
    memcpy(out, in, n);
    out[n] = '\0';
    lower(out);
    return 0;
}

static int start(struct eng_dns *d, bool is_mx, const char *name, enum rule_ip_strategy strategy,
                 size_t max_mx, size_t max_addrs, eng_dns_cb cb, void *arg)
{
    if (!d || !cb)
        return -EINVAL;
    if (d->closing)
        return -ESHUTDOWN;
    char norm[DNS_NAME_MAX + 1];
    if (norm_name(name, norm) < 0)
        return -EINVAL;
    struct sockaddr_storage lit;
    if ((!is_mx || norm[0] == '[') && is_ip_literal(norm, &lit)) {
        /* A relay given as an address, or a recipient domain that is an address
         * literal (RFC 5321 §4.1.3, "user@[192.0.2.1]"), needs no query. */
        char host[INET6_ADDRSTRLEN];
        const void *a = lit.ss_family == AF_INET
                            ? (const void *)&((struct sockaddr_in *)&lit)->sin_addr
                            : (const void *)&((struct sockaddr_in6 *)&lit)->sin6_addr;
        inet_ntop(lit.ss_family, a, host, sizeof(host));
        struct eng_mx_host h = {.name = host, .preference = 0, .naddrs = 1, .addrs = &lit};
        struct eng_mx_result r = {.status = ENG_DNS_OK, .nhosts = 1, .hosts = &h};
        cb(arg, &r);
        return 0;
    }
    struct dns_lookup *lk = calloc(1, sizeof(*lk));
    if (!lk)
        return -ENOMEM;
    lk->d = d;
    lk->refs = 1;
    lk->is_mx = is_mx;
    memcpy(lk->domain, norm, sizeof(norm));
    lk->strategy = strategy;
    lk->max_mx = max_mx ? max_mx : 5;
    lk->max_addrs = max_addrs ? max_addrs : 2;
    lk->cb = cb;
    lk->arg = arg;
    ev_timer_init(&lk->deadline, deadline_cb, d->phase_timeout, 0.0);
    lk->deadline.data = lk;
    lk->next = d->lookups;
    if (d->lookups)
        d->lookups->prev = lk;
    d->lookups = lk;

    d->depth++;
    if (is_mx) {
        lk->phase = PH_MX;
        lk->refs++;
        issue(lk, DNS_T_MX, lk->domain, &lk->mx);
        lk_unref(lk);
    } else {
        lk->t = calloc(1, sizeof(*lk->t));
        if (!lk->t) {
            finish_err(lk, ENG_DNS_TEMPFAIL, "%s: out of memory", lk->domain);
        } else {
            lk->nt = 1;
            memcpy(lk->t[0].name, norm, sizeof(norm));
            set_wants(lk, &lk->t[0]);
            start_addr_phase(lk);
        }
    }
    leave(d);
    return 0;
}

int eng_dns_resolve_mx(struct eng_dns *d, const char *domain, enum rule_ip_strategy strategy,
                       size_t max_mx, size_t max_addrs, eng_dns_cb cb, void *arg)
{
    return start(d, true, domain, strategy, max_mx, max_addrs, cb, arg);
}

int eng_dns_resolve_host(struct eng_dns *d, const char *host, enum rule_ip_strategy strategy,
                         size_t max_addrs, eng_dns_cb cb, void *arg)
{
    return start(d, false, host, strategy, 1, max_addrs, cb, arg);
}

/* --- resolver life --------------------------------------------------------- */

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_rc;

static void lib_init(void)
{
    lib_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

/* Parses "ip", "ip:port", "[v6]", "[v6]:port" (a bare v6 address has no port). */
static int parse_ns(const char *s, struct ares_addr_port_node *n)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port = NULL;
    size_t hl;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end)
            return -1;
        hl = (size_t)(end - s - 1);
        if (hl >= sizeof(host))
            return -1;
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return -1;
    } else {
        const char *c = strchr(s, ':');
        if (c && strchr(c + 1, ':'))
            c = NULL; /* bare IPv6 */
        hl = c ? (size_t)(c - s) : strlen(s);
        if (hl >= sizeof(host))
            return -1;
        memcpy(host, s, hl);
        host[hl] = '\0';
        if (c)
            port = c + 1;
    }
    memset(n, 0, sizeof(*n));
    if (inet_pton(AF_INET, host, &n->addr.addr4) == 1)
        n->family = AF_INET;
    else if (inet_pton(AF_INET6, host, &n->addr.addr6) == 1)
        n->family = AF_INET6;
    else
        return -1;
    long p = 53;
    if (port) {
        char *end;
        errno = 0;
        p = strtol(port, &end, 10);
        if (errno || end == port || *end || p < 1 || p > 65535)
            return -1;
    }
    n->udp_port = n->tcp_port = (int)p;
    return 0;
}

int eng_dns_new(const struct eng_dns_opts *o, struct eng_dns **out)
{
    *out = NULL;
    if (!o || !o->loop)
        return -EINVAL;
    pthread_once(&lib_once, lib_init);
    if (lib_rc != ARES_SUCCESS) {
        sv_error("dns: c-ares initialisation failed: %s", ares_strerror(lib_rc));
        return -EIO;
    }
    struct ares_addr_port_node *ns = NULL;
    if (o->n_nameservers > 0) {
        ns = calloc(o->n_nameservers, sizeof(*ns));
        if (!ns)
            return -ENOMEM;
        for (size_t i = 0; i < o->n_nameservers; i++) {
            if (parse_ns(o->nameservers[i], &ns[i]) < 0) {
                sv_error("dns: nameserver \"%s\": expected ip, ip:port or [ipv6]:port",
                         o->nameservers[i]);
                free(ns);
                return -EINVAL;
            }
            ns[i].next = i + 1 < o->n_nameservers ? &ns[i + 1] : NULL;
        }
    }
    struct eng_dns *d = calloc(1, sizeof(*d));
    if (!d) {
        free(ns);
        return -ENOMEM;
    }
    d->loop = o->loop;
    d->cache = o->cache;
    int timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 3000;
    int tries = o->tries > 0 ? o->tries : 2;
    d->phase_timeout = (double)timeout_ms * tries / 1000.0;
    d->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)d;
    if (d->rng == 0)
        d->rng = 0x9e3779b97f4a7c15ULL;
    ev_init(&d->tmo, tmo_cb);
    d->tmo.data = d;

    struct ares_options ao;
    memset(&ao, 0, sizeof(ao));
    ao.sock_state_cb = sock_state_cb;
    ao.sock_state_cb_data = d;
    ao.timeout = timeout_ms;
    ao.tries = tries;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    int rc = ares_init_options(&d->ch, &ao, mask);
    if (rc != ARES_SUCCESS) {
        sv_error("dns: resolver initialisation failed: %s", ares_strerror(rc));
        free(ns);
        free(d);
        return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
    }
    if (ns) {
        rc = ares_set_servers_ports(d->ch, ns);
        free(ns);
        if (rc != ARES_SUCCESS) {
            sv_error("dns: setting nameservers failed: %s", ares_strerror(rc));
            ares_destroy(d->ch);
            free(d);
            return -EINVAL;
        }
    }
    *out = d;
    return 0;
}

static void destroy(struct eng_dns *d)
{
    /* Every lookup is done by now: c-ares calls the queries it still holds with
     * ARES_EDESTRUCTION, which only releases them. */
    ares_destroy(d->ch);
    ev_timer_stop(d->loop, &d->tmo);
    for (size_t i = 0; i < d->nio; i++) {
        ev_io_stop(d->loop, &d->io[i]->w);
        free(d->io[i]);
    }
    free(d->io);
    free(d);
}

void eng_dns_free(struct eng_dns *d)
{
    if (!d || d->closing)
        return;
    d->closing = true;
    d->depth++;
    while (d->lookups)
        finish_err(d->lookups, ENG_DNS_TEMPFAIL, "%s: resolver shut down", d->lookups->domain);
    /* From inside one of our callbacks the frame that entered frees it. */
    d->free_pending = true;
    leave(d);
}
