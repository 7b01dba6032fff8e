/* Shared by the engine/dns tests: run one lookup on a private libev loop and
 * render its result as one comparable line:
 *
 *   "OK mx1.a.test:10=192.0.2.1,2001:db8::1 mx2.a.test:20=192.0.2.2"
 *   "TEMPFAIL a.test: MX lookup timed out"                                    */
#ifndef SALVO_TEST_ENGINE_DNS_UTIL_H
#define SALVO_TEST_ENGINE_DNS_UTIL_H

#include <arpa/inet.h>
#include <ev.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "dns.h"

struct dns_capture {
    int calls;
    char line[2048];
};

static inline const char *dns_status_name(enum eng_dns_status s)
{
    switch (s) {
    case ENG_DNS_OK: return "OK";
    case ENG_DNS_NULL_MX: return "NULL_MX";
    case ENG_DNS_NODOMAIN: return "NODOMAIN";
    case ENG_DNS_TEMPFAIL: return "TEMPFAIL";
    }
    return "?";
}

static inline void dns_render(const struct eng_mx_result *r, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "%s", dns_status_name(r->status));
    if (r->status != ENG_DNS_OK) {
        snprintf(out + n, cap - n, " %s", r->error ? r->error : "(null)");
        return;
    }
    for (size_t i = 0; i < r->nhosts && n < cap; i++) {
        const struct eng_mx_host *h = &r->hosts[i];
        n += (size_t)snprintf(out + n, cap - n, " %s:%u=", h->name, h->preference);
        for (size_t k = 0; k < h->naddrs && n < cap; k++) {
            char ip[INET6_ADDRSTRLEN] = "?";
            const struct sockaddr_storage *ss = &h->addrs[k];
            if (ss->ss_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, sizeof(ip));
            else if (ss->ss_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof(ip));
            n += (size_t)snprintf(out + n, cap - n, "%s%s", k ? "," : "", ip);
        }
    }
}

static inline void dns_capture_cb(void *arg, const struct eng_mx_result *r)
{
    struct dns_capture *c = arg;
    c->calls++;
    dns_render(r, c->line, sizeof(c->line));
}

/* Runs the loop until the capture was called (or ~10 s passed). */
static inline void dns_wait(struct ev_loop *loop, struct dns_capture *c)
{
    ev_tstamp until = ev_time() + 10.0;
    while (c->calls == 0 && ev_time() < until)
        ev_run(loop, EVRUN_ONCE);
}

#endif
