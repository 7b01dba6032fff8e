/* engine/dns: MX and address lookups for delivery, with c-ares on a worker's libev
 * loop, and a TTL cache shared read-mostly by all workers.
 *
 * RFC 5321 §5.1: MX records in preference order; no MX but an address record means
 * the domain itself is the one MX ("implicit MX"). RFC 7505: a single MX "." is a
 * null MX: the domain accepts no mail (permanent failure). */
#ifndef SALVO_ENG_DNS_H
#define SALVO_ENG_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "salvo_sched.h" /* enum rule_ip_strategy */

struct ev_loop;

/* --- the shared cache ------------------------------------------------------ */

/* Thread-safe (read-mostly lock); one per process, shared by every worker's
 * resolver. Entries expire with their records' TTL (negative answers per RFC 2308,
 * bounded). */
struct eng_dns_cache;

/* max_entries bounds memory (LRU beyond it). Returns owned cache or NULL (ENOMEM). */
struct eng_dns_cache *eng_dns_cache_new(size_t max_entries);
void eng_dns_cache_free(struct eng_dns_cache *c); /* NULL-safe; no resolver may use it any more */

/* --- one resolver per worker loop ------------------------------------------ */

struct eng_dns;

struct eng_dns_opts {
    struct ev_loop *loop;           /* borrowed: the worker's loop */
    struct eng_dns_cache *cache;    /* borrowed, shared; may be NULL (no caching) */
    const char *const *nameservers; /* borrowed: "ip", "ip:port", "[v6]:port"; n == 0 = system */
    size_t n_nameservers;
    int timeout_ms; /* per try; 0 = 3000 */
    int tries;      /* 0 = 2 */
};

/* Returns 0 and an owned resolver, or a negative errno (message logged). */
int eng_dns_new(const struct eng_dns_opts *o, struct eng_dns **out);
/* Cancels pending lookups: their callbacks run once with ENG_DNS_TEMPFAIL and the
 * error "resolver shut down", then the resolver is freed. NULL-safe. */
void eng_dns_free(struct eng_dns *d);

enum eng_dns_status {
    ENG_DNS_OK,       /* hosts[] has at least one host with at least one address */
    ENG_DNS_NULL_MX,  /* RFC 7505: permanent, bounce */
    ENG_DNS_NODOMAIN, /* NXDOMAIN, or no MX and no address: permanent, bounce */
    ENG_DNS_TEMPFAIL, /* timeout, SERVFAIL, refused, ...: retry later (last_error "dns") */
};

struct eng_mx_host {
    const char *name;    /* MX host name, lower case, no trailing dot */
    unsigned preference; /* from the MX record; 0 for an implicit MX */
    size_t naddrs;       /* addresses in ip-strategy order; port unset (0) */
    const struct sockaddr_storage *addrs;
};

struct eng_mx_result {
    enum eng_dns_status status;
    const char *error; /* for TEMPFAIL / NODOMAIN / NULL_MX: one line, e.g.
                          "example.test: MX lookup timed out" */
    size_t nhosts;     /* preference order (equal preferences in random order) */
    const struct eng_mx_host *hosts;
};

/* Everything in the result is borrowed for the duration of the callback only. */
typedef void (*eng_dns_cb)(void *arg, const struct eng_mx_result *r);

/* Resolves where mail for `domain` goes: its MX hosts (at most max_mx, 0 = 5),
 * each with its addresses per `strategy` (at most max_addrs, 0 = 2). A host whose
 * addresses cannot be found is left out; if none is left the result is TEMPFAIL.
 * May call `cb` before returning (cache hit). Returns 0, or a negative errno
 * without calling cb. */
int eng_dns_resolve_mx(struct eng_dns *d, const char *domain, enum rule_ip_strategy strategy,
                       size_t max_mx, size_t max_addrs, eng_dns_cb cb, void *arg);

/* Resolves one host name or IP literal (a relay's address) the same way: the
 * result has one host (preference 0), or NODOMAIN / TEMPFAIL. */
int eng_dns_resolve_host(struct eng_dns *d, const char *host, enum rule_ip_strategy strategy,
                         size_t max_addrs, eng_dns_cb cb, void *arg);

#endif
