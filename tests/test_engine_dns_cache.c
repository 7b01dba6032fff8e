/* The shared DNS cache: TTL expiry, LRU bound, answers without a query, and two
 * worker threads (each with its own loop and resolver) sharing one cache. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dns_int.h"
#include "dnsmasq.h"
#include "test_engine_dns_util.h"

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static struct dns_rrset one_a(unsigned char last)
{
    struct dns_rrset rs;
    memset(&rs, 0, sizeof(rs));
    rs.status = DNS_RR_OK;
    rs.n = 1;
    unsigned char a[4] = {192, 0, 2, last};
    memcpy(rs.rr[0].addr, a, 4);
    return rs;
}

static void test_ttl_and_overwrite(void **state)
{
    (void)state;
    struct eng_dns_cache *c = eng_dns_cache_new(100);
    assert_non_null(c);
    struct dns_rrset rs = one_a(1), out;
    assert_int_equal(dns_cache_get(c, DNS_T_A, "a.test", &out), -ENOENT);
    dns_cache_put(c, DNS_T_A, "a.test", &rs, 1);
    dns_cache_put(c, DNS_T_A, "zero.test", &rs, 0); /* TTL 0: not kept */
    assert_int_equal(dns_cache_get(c, DNS_T_A, "zero.test", &out), -ENOENT);
    assert_int_equal(dns_cache_get(c, DNS_T_A, "a.test", &out), 0);
    assert_int_equal(out.n, 1);
    assert_int_equal(out.rr[0].addr[3], 1);
    /* another type of the same name is another entry */
    assert_int_equal(dns_cache_get(c, DNS_T_AAAA, "a.test", &out), -ENOENT);
    /* a newer answer replaces the old one */
    struct dns_rrset rs2 = one_a(2);
    dns_cache_put(c, DNS_T_A, "a.test", &rs2, 1);
    assert_int_equal(dns_cache_get(c, DNS_T_A, "a.test", &out), 0);
    assert_int_equal(out.rr[0].addr[3], 2);
    sleep_s(1.1);
    assert_int_equal(dns_cache_get(c, DNS_T_A, "a.test", &out), -ENOENT);
    eng_dns_cache_free(c);
    eng_dns_cache_free(NULL);
}

static void test_lru_bound(void **state)
{
    (void)state;
    struct eng_dns_cache *c = eng_dns_cache_new(64);
    assert_non_null(c);
    struct dns_rrset rs = one_a(7), out;
    char name[64];
    dns_cache_put(c, DNS_T_A, "hot.test", &rs, 300);
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        dns_cache_put(c, DNS_T_A, name, &rs, 300);
        /* kept warm: the least recently used entries go, not this one */
        assert_int_equal(dns_cache_get(c, DNS_T_A, "hot.test", &out), 0);
    }
    int hits = 0;
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        hits += dns_cache_get(c, DNS_T_A, name, &out) == 0;
    }
    /* 64 entries (4 per shard): at most 63 of the cold names survive, and the
     * newest of them do */
    assert_true(hits > 0 && hits <= 63);
    assert_int_equal(dns_cache_get(c, DNS_T_A, "n1999.test", &out), 0);
    assert_int_equal(dns_cache_get(c, DNS_T_A, "n0.test", &out), -ENOENT);
    eng_dns_cache_free(c);
}

static const char *const zone = "local-ttl=2\n"
                                "mx-host=cached.test,mx.cached.test,10\n"
                                "host-record=mx.cached.test,192.0.2.1,2001:db8::1\n"
                                "host-record=relay.cached.test,127.0.0.1\n";

static int resolve_now(struct eng_dns *d, struct ev_loop *loop, const char *domain, bool is_mx,
                       struct dns_capture *c)
{
    memset(c, 0, sizeof(*c));
    int rc = is_mx ? eng_dns_resolve_mx(d, domain, RULE_IP_V4_THEN_V6, 0, 0, dns_capture_cb, c)
                   : eng_dns_resolve_host(d, domain, RULE_IP_V4_ONLY, 0, dns_capture_cb, c);
    int sync = c->calls; /* answered before the call returned: no query was sent */
    if (rc == 0)
        dns_wait(loop, c);
    return sync;
}

/* A resolver on its own loop, with a cache, asking one dnsmasq serving `zone`. */
struct fixture {
    struct tu_dnsmasq dm;
    struct eng_dns_cache *cache;
    struct ev_loop *loop;
    const char *ns[1];
    struct eng_dns_opts o;
    struct eng_dns *d;
};

static void fixture_start(struct fixture *f, const char *zone_text)
{
    memset(f, 0, sizeof(*f));
    assert_true(tu_dnsmasq_start(&f->dm, zone_text) > 0);
    f->cache = eng_dns_cache_new(1000);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->ns[0] = f->dm.ns;
    f->o = (struct eng_dns_opts){.loop = f->loop,
                                 .cache = f->cache,
                                 .nameservers = f->ns,
                                 .n_nameservers = 1,
                                 .timeout_ms = 200,
                                 .tries = 1};
    assert_int_equal(eng_dns_new(&f->o, &f->d), 0);
}

static void fixture_stop(struct fixture *f)
{
    eng_dns_free(f->d);
    ev_loop_destroy(f->loop);
    eng_dns_cache_free(f->cache);
    tu_dnsmasq_stop(&f->dm);
}

static void test_answers_from_cache(void **state)
{
    (void)state;
    struct fixture f;
    fixture_start(&f, zone);
    struct eng_dns *d = f.d;
    struct ev_loop *loop = f.loop;
    struct dns_capture c;
    const char *want = "OK mx.cached.test:10=192.0.2.1,2001:db8::1";

    assert_int_equal(resolve_now(d, loop, "cached.test", true, &c), 0);
    assert_string_equal(c.line, want);
    assert_int_equal(resolve_now(d, loop, "relay.cached.test", false, &c), 0);
    assert_string_equal(c.line, "OK relay.cached.test:0=127.0.0.1");
    double t_cached = ev_time();

    /* the server is gone: the cache answers, at once */
    tu_dnsmasq_stop(&f.dm);
    assert_int_equal(resolve_now(d, loop, "cached.test", true, &c), 1);
    assert_string_equal(c.line, want);
    assert_int_equal(resolve_now(d, loop, "relay.cached.test", false, &c), 1);
    assert_string_equal(c.line, "OK relay.cached.test:0=127.0.0.1");
    /* a resolver without the cache has to ask */
    struct eng_dns *nocache = NULL;
    f.o.cache = NULL;
    assert_int_equal(eng_dns_new(&f.o, &nocache), 0);
    assert_int_equal(resolve_now(nocache, loop, "cached.test", true, &c), 0);
    assert_string_equal(c.line, "TEMPFAIL cached.test: MX lookup failed: no nameserver answered "
                                "(SERVFAIL, REFUSED or unreachable)");
    eng_dns_free(nocache);

    /* after the records' TTL (local-ttl=2) the cache lets go */
    double left = t_cached + 2.2 - ev_time();
    if (left > 0)
        sleep_s(left);
    assert_int_equal(resolve_now(d, loop, "cached.test", true, &c), 0);
    assert_string_equal(c.line, "TEMPFAIL cached.test: MX lookup failed: no nameserver answered "
                                "(SERVFAIL, REFUSED or unreachable)");

    fixture_stop(&f);
}

/* dnsmasq as an authoritative server puts the zone's SOA in negative answers */
static const char *const zone_auth = "auth-server=ns.neg.test,127.0.0.1\n"
                                     "auth-zone=neg.test\n"
                                     "auth-soa=1,hostmaster.neg.test,1200,120,600\n"
                                     "auth-ttl=2\n"
                                     "host-record=h.neg.test,192.0.2.77\n";

static void test_negative_cache(void **state)
{
    (void)state;
    struct fixture f;
    fixture_start(&f, zone_auth);
    struct eng_dns *d = f.d;
    struct ev_loop *loop = f.loop;
    struct dns_capture c;
    const char *nx = "NODOMAIN nx.neg.test: domain does not exist (NXDOMAIN)";
    /* h.neg.test has an A record, no MX, no AAAA: implicit MX after two
     * negative answers (MX and AAAA NODATA), both cached */
    const char *h = "OK h.neg.test:0=192.0.2.77";
    assert_int_equal(resolve_now(d, loop, "nx.neg.test", true, &c), 0);
    assert_string_equal(c.line, nx);
    assert_int_equal(resolve_now(d, loop, "h.neg.test", true, &c), 0);
    assert_string_equal(c.line, h);
    double t_cached = ev_time();
    tu_dnsmasq_stop(&f.dm);
    assert_int_equal(resolve_now(d, loop, "nx.neg.test", true, &c), 1);
    assert_string_equal(c.line, nx);
    assert_int_equal(resolve_now(d, loop, "h.neg.test", true, &c), 1);
    assert_string_equal(c.line, h);
    /* the SOA says 2 s (auth-ttl): then the server has to be asked again */
    double left = t_cached + 2.2 - ev_time();
    if (left > 0)
        sleep_s(left);
    assert_int_equal(resolve_now(d, loop, "nx.neg.test", true, &c), 0);
    assert_string_equal(c.line, "TEMPFAIL nx.neg.test: MX lookup failed: no nameserver answered "
                                "(SERVFAIL, REFUSED or unreachable)");
    fixture_stop(&f);
}

/* --- two workers, one cache ------------------------------------------------ */

/* authoritative, so negative answers are cached as well */
static const char *const zone_threads = "auth-server=ns.w.test,127.0.0.1\n"
                                        "auth-zone=w.test\n"
                                        "auth-soa=1,hostmaster.w.test,1200,120,600\n"
                                        "auth-ttl=60\n"
                                        "mx-host=t1.w.test,mx.t1.w.test,10\n"
                                        "host-record=mx.t1.w.test,192.0.2.11\n"
                                        "mx-host=t2.w.test,mx.t2.w.test,20\n"
                                        "host-record=mx.t2.w.test,192.0.2.12,2001:db8::12\n"
                                        "host-record=t3.w.test,192.0.2.13\n"
                                        "dns-rr=t4.w.test,15,000000\n";

static const char *const thread_domains[] = {"t1.w.test", "t2.w.test", "t3.w.test", "t4.w.test",
                                             "t5.w.test"};
static const char *const thread_want[] = {
    "OK mx.t1.w.test:10=192.0.2.11",
    "OK mx.t2.w.test:20=192.0.2.12,2001:db8::12",
    "OK t3.w.test:0=192.0.2.13",
    "NULL_MX t4.w.test: null MX: the domain accepts no mail (RFC 7505)",
    "NODOMAIN t5.w.test: domain does not exist (NXDOMAIN)",
};

struct worker {
    pthread_t th;
    const char *ns;
    struct eng_dns_cache *cache;
    int seed;
    int ok, bad, sync;
    char first_bad[2048];
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *ns[] = {w->ns};
    struct eng_dns_opts o = {.loop = loop,
                             .cache = w->cache,
                             .nameservers = ns,
                             .n_nameservers = 1,
                             .timeout_ms = 1000,
                             .tries = 2};
    struct eng_dns *d = NULL;
    if (eng_dns_new(&o, &d) != 0) {
        ev_loop_destroy(loop);
        w->bad = -1;
        return NULL;
    }
    for (int i = 0; i < 400; i++) {
        size_t k = (size_t)(i + w->seed) % (sizeof(thread_domains) / sizeof(thread_domains[0]));
        struct dns_capture c;
        w->sync += resolve_now(d, loop, thread_domains[k], true, &c);
        if (strcmp(c.line, thread_want[k]) == 0) {
            w->ok++;
        } else if (w->bad++ == 0) {
            snprintf(w->first_bad, sizeof(w->first_bad), "%s", c.line);
        }
    }
    eng_dns_free(d);
    ev_loop_destroy(loop);
    return NULL;
}

static void test_two_threads_share_cache(void **state)
{
    (void)state;
    struct tu_dnsmasq dm;
    assert_true(tu_dnsmasq_start(&dm, zone_threads) > 0);
    struct eng_dns_cache *cache = eng_dns_cache_new(1000);
    struct worker w[2] = {{.ns = dm.ns, .cache = cache, .seed = 0},
                          {.ns = dm.ns, .cache = cache, .seed = 3}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i].th, NULL);
    for (int i = 0; i < 2; i++) {
        if (w[i].bad)
            fail_msg("worker %d: %d wrong, first: %s", i, w[i].bad, w[i].first_bad);
        assert_int_equal(w[i].ok, 400);
        /* all but the first round (racing with the other thread) are hits */
        assert_true(w[i].sync >= 395);
    }
    tu_dnsmasq_stop(&dm);
    eng_dns_cache_free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ttl_and_overwrite),       cmocka_unit_test(test_lru_bound),
        cmocka_unit_test(test_answers_from_cache),      cmocka_unit_test(test_negative_cache),
        cmocka_unit_test(test_two_threads_share_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
