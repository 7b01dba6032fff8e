/* engine/dns against a real dnsmasq: MX order, implicit and null MX, NXDOMAIN,
 * ip-strategy, limits, skipped targets, timeouts, relays, shutdown. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "dns_int.h"
#include "dnsmasq.h"
#include "test_engine_dns_util.h"

static const char *const zone =
    "mx-host=order.test,mx2.order.test,20\n"
    "mx-host=order.test,mx3.order.test,30\n"
    "mx-host=order.test,mx1.order.test,10\n"
    "host-record=mx1.order.test,192.0.2.1\n"
    "host-record=mx2.order.test,192.0.2.2\n"
    "host-record=mx3.order.test,192.0.2.3\n"
    /* two of equal preference after one better one */
    "mx-host=equal.test,b.equal.test,10\n"
    "mx-host=equal.test,a.equal.test,10\n"
    "mx-host=equal.test,first.equal.test,5\n"
    "host-record=a.equal.test,192.0.2.11\n"
    "host-record=b.equal.test,192.0.2.12\n"
    "host-record=first.equal.test,192.0.2.10\n"
    /* no MX, an address: implicit MX */
    "host-record=implicit.test,192.0.2.20,2001:db8::20\n"
    "host-record=implicit6.test,2001:db8::21\n"
    /* RFC 7505 null MX: MX 0 "." as raw RDATA */
    "dns-rr=nullmx.test,15,000000\n"
    /* exists, but no MX and no address */
    "txt-record=empty.test,\"nothing here\"\n"
    /* dual-stack MX host, and a v4-only one */
    "mx-host=dual.test,mx.dual.test,10\n"
    "host-record=mx.dual.test,192.0.2.30,2001:db8::30\n"
    "mx-host=v4only.test,mx.v4only.test,10\n"
    "host-record=mx.v4only.test,192.0.2.31\n"
    /* limits: four MX hosts with three addresses each */
    "mx-host=many.test,m1.many.test,1\n"
    "mx-host=many.test,m2.many.test,2\n"
    "mx-host=many.test,m3.many.test,3\n"
    "mx-host=many.test,m4.many.test,4\n"
    "host-record=m1.many.test,192.0.2.41,2001:db8::41\n"
    "host-record=m2.many.test,192.0.2.42,2001:db8::42\n"
    "host-record=m3.many.test,192.0.2.43\n"
    "host-record=m4.many.test,192.0.2.44\n"
    /* targets to skip: an IP literal and a name without addresses */
    "mx-host=skip.test,192.0.2.50,5\n"
    "mx-host=skip.test,gone.skip.test,10\n"
    "mx-host=skip.test,ok.skip.test,20\n"
    "host-record=ok.skip.test,192.0.2.51\n"
    "mx-host=allbad.test,gone.allbad.test,10\n"
    /* one MX host never answers: the other is used after the deadline */
    "mx-host=slowmx.test,h.timeout.test,10\n"
    "mx-host=slowmx.test,fast.slowmx.test,20\n"
    "host-record=fast.slowmx.test,192.0.2.60\n"
    /* 24 MX records: more than fit a 512-byte UDP answer (TCP retry) and more
     * than the resolver keeps (16: the most preferred) */
    "mx-host=big.test,h6.big.test,6\n"
    "mx-host=big.test,h19.big.test,19\n"
    "mx-host=big.test,h23.big.test,23\n"
    "mx-host=big.test,h16.big.test,16\n"
    "mx-host=big.test,h8.big.test,8\n"
    "mx-host=big.test,h15.big.test,15\n"
    "mx-host=big.test,h24.big.test,24\n"
    "mx-host=big.test,h22.big.test,22\n"
    "mx-host=big.test,h7.big.test,7\n"
    "mx-host=big.test,h20.big.test,20\n"
    "mx-host=big.test,h14.big.test,14\n"
    "mx-host=big.test,h17.big.test,17\n"
    "mx-host=big.test,h9.big.test,9\n"
    "mx-host=big.test,h1.big.test,1\n"
    "mx-host=big.test,h10.big.test,10\n"
    "mx-host=big.test,h12.big.test,12\n"
    "mx-host=big.test,h4.big.test,4\n"
    "mx-host=big.test,h18.big.test,18\n"
    "mx-host=big.test,h3.big.test,3\n"
    "mx-host=big.test,h2.big.test,2\n"
    "mx-host=big.test,h21.big.test,21\n"
    "mx-host=big.test,h13.big.test,13\n"
    "mx-host=big.test,h5.big.test,5\n"
    "mx-host=big.test,h11.big.test,11\n"
    "host-record=h1.big.test,192.0.2.71\n"
    "host-record=h2.big.test,192.0.2.72\n"
    /* a relay */
    "host-record=relay.test,127.0.0.1,::1\n"
    /* v4 only: AAAA is NODATA without an SOA */
    "host-record=burst.test,192.0.2.90\n";

static struct tu_dnsmasq dm;
static struct ev_loop *loop;
static struct eng_dns *dns;

static int group_setup(void **state)
{
    (void)state;
    if (tu_dnsmasq_start(&dm, zone) < 0)
        return -1;
    loop = ev_loop_new(EVFLAG_AUTO);
    const char *ns[] = {dm.ns};
    struct eng_dns_opts o = {
        .loop = loop, .nameservers = ns, .n_nameservers = 1, .timeout_ms = 200, .tries = 2};
    return eng_dns_new(&o, &dns);
}

static int group_teardown(void **state)
{
    (void)state;
    eng_dns_free(dns);
    ev_loop_destroy(loop);
    tu_dnsmasq_stop(&dm);
    return 0;
}

static const char *mx(const char *domain, enum rule_ip_strategy s, size_t max_mx, size_t max_addrs)
{
    static struct dns_capture c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(eng_dns_resolve_mx(dns, domain, s, max_mx, max_addrs, dns_capture_cb, &c), 0);
    dns_wait(loop, &c);
    assert_int_equal(c.calls, 1);
    return c.line;
}

static const char *host(const char *name, enum rule_ip_strategy s, size_t max_addrs)
{
    static struct dns_capture c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(eng_dns_resolve_host(dns, name, s, max_addrs, dns_capture_cb, &c), 0);
    dns_wait(loop, &c);
    assert_int_equal(c.calls, 1);
    return c.line;
}

static void test_preference_order(void **state)
{
    (void)state;
    assert_string_equal(mx("order.test", RULE_IP_V4_THEN_V6, 0, 0),
                        "OK mx1.order.test:10=192.0.2.1 mx2.order.test:20=192.0.2.2 "
                        "mx3.order.test:30=192.0.2.3");
    /* names are case-insensitive and may carry the root dot */
    assert_string_equal(mx("ORDER.Test.", RULE_IP_V4_THEN_V6, 0, 0),
                        "OK mx1.order.test:10=192.0.2.1 mx2.order.test:20=192.0.2.2 "
                        "mx3.order.test:30=192.0.2.3");
}

static void test_equal_preference_random(void **state)
{
    (void)state;
    const char *ab = "OK first.equal.test:5=192.0.2.10 a.equal.test:10=192.0.2.11 "
                     "b.equal.test:10=192.0.2.12";
    const char *ba = "OK first.equal.test:5=192.0.2.10 b.equal.test:10=192.0.2.12 "
                     "a.equal.test:10=192.0.2.11";
    int nab = 0, nba = 0;
    for (int i = 0; i < 40; i++) {
        const char *r = mx("equal.test", RULE_IP_V4_ONLY, 0, 0);
        if (strcmp(r, ab) == 0)
            nab++;
        else if (strcmp(r, ba) == 0)
            nba++;
        else
            fail_msg("unexpected: %s", r);
    }
    /* both orders turn up (each 40 times in a row would be 2^-39) */
    assert_true(nab > 0 && nba > 0);
}

static void test_implicit_mx(void **state)
{
    (void)state;
    assert_string_equal(mx("implicit.test", RULE_IP_V6_THEN_V4, 0, 0),
                        "OK implicit.test:0=2001:db8::20,192.0.2.20");
    assert_string_equal(mx("implicit6.test", RULE_IP_V4_THEN_V6, 0, 0),
                        "OK implicit6.test:0=2001:db8::21");
    /* the domain exists with an address, none usable: retry, never bounce */
    assert_string_equal(mx("implicit6.test", RULE_IP_V4_ONLY, 0, 0),
                        "TEMPFAIL implicit6.test: no address usable with ip-strategy ipv4_only");
}

static void test_null_mx(void **state)
{
    (void)state;
    assert_string_equal(mx("nullmx.test", RULE_IP_V4_THEN_V6, 0, 0),
                        "NULL_MX nullmx.test: null MX: the domain accepts no mail (RFC 7505)");
}

static void test_nodomain(void **state)
{
    (void)state;
    assert_string_equal(mx("nosuch.test", RULE_IP_V4_THEN_V6, 0, 0),
                        "NODOMAIN nosuch.test: domain does not exist (NXDOMAIN)");
    assert_string_equal(mx("empty.test", RULE_IP_V4_THEN_V6, 0, 0),
                        "NODOMAIN empty.test: no MX and no address records");
}

static void test_ip_strategy(void **state)
{
    (void)state;
    assert_string_equal(mx("dual.test", RULE_IP_V4_ONLY, 0, 0), "OK mx.dual.test:10=192.0.2.30");
    assert_string_equal(mx("dual.test", RULE_IP_V6_ONLY, 0, 0), "OK mx.dual.test:10=2001:db8::30");
    assert_string_equal(mx("dual.test", RULE_IP_V4_THEN_V6, 0, 0),
                        "OK mx.dual.test:10=192.0.2.30,2001:db8::30");
    assert_string_equal(mx("dual.test", RULE_IP_V6_THEN_V4, 0, 0),
                        "OK mx.dual.test:10=2001:db8::30,192.0.2.30");
    assert_string_equal(
        mx("v4only.test", RULE_IP_V6_ONLY, 0, 0),
        "TEMPFAIL v4only.test: no MX host has an address (mx.v4only.test has no address records)");
}

static void test_limits(void **state)
{
    (void)state;
    assert_string_equal(mx("many.test", RULE_IP_V6_THEN_V4, 2, 1),
                        "OK m1.many.test:1=2001:db8::41 m2.many.test:2=2001:db8::42");
    assert_string_equal(mx("many.test", RULE_IP_V4_THEN_V6, 3, 2),
                        "OK m1.many.test:1=192.0.2.41,2001:db8::41 "
                        "m2.many.test:2=192.0.2.42,2001:db8::42 m3.many.test:3=192.0.2.43");
    /* defaults: 5 hosts, 2 addresses */
    assert_string_equal(mx("many.test", RULE_IP_V4_THEN_V6, 0, 0),
                        "OK m1.many.test:1=192.0.2.41,2001:db8::41 "
                        "m2.many.test:2=192.0.2.42,2001:db8::42 m3.many.test:3=192.0.2.43 "
                        "m4.many.test:4=192.0.2.44");
}

static void test_many_mx_records(void **state)
{
    (void)state;
    assert_string_equal(mx("big.test", RULE_IP_V4_ONLY, 2, 0),
                        "OK h1.big.test:1=192.0.2.71 h2.big.test:2=192.0.2.72");
}

static void test_skipped_targets(void **state)
{
    (void)state;
    assert_string_equal(mx("skip.test", RULE_IP_V4_THEN_V6, 0, 0), "OK ok.skip.test:20=192.0.2.51");
    assert_string_equal(mx("allbad.test", RULE_IP_V4_THEN_V6, 0, 0),
                        "TEMPFAIL allbad.test: no MX host has an address "
                        "(gone.allbad.test does not exist (NXDOMAIN))");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_timeout(void **state)
{
    (void)state;
    /* timeout 200 ms x 2 tries: the answer comes at 0.4 s, never later */
    double t0 = now_s();
    assert_string_equal(mx("x.timeout.test", RULE_IP_V4_THEN_V6, 0, 0),
                        "TEMPFAIL x.timeout.test: MX lookup timed out");
    double dt = now_s() - t0;
    assert_true(dt >= 0.39);
    assert_true(dt < 1.2);

    t0 = now_s();
    assert_string_equal(host("relay.timeout.test", RULE_IP_V4_ONLY, 0),
                        "TEMPFAIL relay.timeout.test: address lookup timed out");
    dt = now_s() - t0;
    assert_true(dt >= 0.39 && dt < 1.2);

    /* one MX host does not answer: the one that did is used at the deadline */
    assert_string_equal(mx("slowmx.test", RULE_IP_V4_THEN_V6, 0, 0),
                        "OK fast.slowmx.test:20=192.0.2.60");
}

static void test_refused(void **state)
{
    (void)state;
    /* dnsmasq has no upstream for names outside its zones: REFUSED */
    assert_string_equal(mx("example.invalid", RULE_IP_V4_THEN_V6, 0, 0),
                        "TEMPFAIL example.invalid: MX lookup failed: no nameserver answered "
                        "(SERVFAIL, REFUSED or unreachable)");
}

static void test_resolve_host(void **state)
{
    (void)state;
    assert_string_equal(host("relay.test", RULE_IP_V4_THEN_V6, 0), "OK relay.test:0=127.0.0.1,::1");
    assert_string_equal(host("relay.test", RULE_IP_V6_ONLY, 0), "OK relay.test:0=::1");
    assert_string_equal(host("relay.test", RULE_IP_V6_THEN_V4, 1), "OK relay.test:0=::1");
    assert_string_equal(host("nosuch.test", RULE_IP_V4_THEN_V6, 0),
                        "NODOMAIN nosuch.test: does not exist (NXDOMAIN)");
    assert_string_equal(host("empty.test", RULE_IP_V4_THEN_V6, 0),
                        "NODOMAIN empty.test: has no address records");
}

static void test_ip_literals(void **state)
{
    (void)state;
    /* no query: the callback runs before the call returns */
    struct dns_capture c = {0};
    assert_int_equal(eng_dns_resolve_host(dns, "127.0.0.1", RULE_IP_V6_ONLY, 0, dns_capture_cb, &c),
                     0);
    assert_int_equal(c.calls, 1);
    assert_string_equal(c.line, "OK 127.0.0.1:0=127.0.0.1");
    memset(&c, 0, sizeof(c));
    assert_int_equal(eng_dns_resolve_host(dns, "[::1]", RULE_IP_V4_ONLY, 0, dns_capture_cb, &c), 0);
    assert_int_equal(c.calls, 1);
    assert_string_equal(c.line, "OK ::1:0=::1");
    memset(&c, 0, sizeof(c));
    assert_int_equal(
        eng_dns_resolve_host(dns, "2001:DB8::1", RULE_IP_V4_ONLY, 0, dns_capture_cb, &c), 0);
    assert_int_equal(c.calls, 1);
    assert_string_equal(c.line, "OK 2001:db8::1:0=2001:db8::1");
    /* a recipient domain that is an address literal: that host, no MX query */
    memset(&c, 0, sizeof(c));
    assert_int_equal(
        eng_dns_resolve_mx(dns, "[192.0.2.5]", RULE_IP_V4_ONLY, 0, 0, dns_capture_cb, &c), 0);
    assert_int_equal(c.calls, 1);
    assert_string_equal(c.line, "OK 192.0.2.5:0=192.0.2.5");
    memset(&c, 0, sizeof(c));
    assert_int_equal(
        eng_dns_resolve_mx(dns, "[IPv6:2001:db8::5]", RULE_IP_V4_ONLY, 0, 0, dns_capture_cb, &c),
        0);
    assert_int_equal(c.calls, 1);
    assert_string_equal(c.line, "OK 2001:db8::5:0=2001:db8::5");
}

/* Found by fuzz_dns_answer: an MX target whose last label holds a '.' byte ("tes."):
 * c-ares escapes it, and cutting the "trailing" dot left a name ending in '\\'. Such
 * an answer is refused (no host name has such a label), not passed on half-cut. */
static void test_escaped_dot_in_label_refused(void **state)
{
    (void)state;
    static const unsigned char answer[] = {
        0x12, 0x34, 0x85, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78,
        0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x0f, 0x00, 0x41,
        0xc0, 0x0c, 0x00, 0x0f, 0x00, 0x01, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x14, 0x00, 0x0a, 0x03,
        0x6d, 0x78, 0x31, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x04, 0x74, 0x65, 0x73,
        0x2e, 0x01, 0x00, 0x00, 0x0c, 0x00, 0xc0, 0x0f, 0x27, 0x00, 0x00, 0x00, 0x00};
    struct dns_rrset rs;
    uint32_t ttl = 0, soa_ttl = 0;
    assert_true(dns_parse_answer(answer, (int)sizeof(answer), "example.test", DNS_T_MX, &rs, &ttl,
                                 &soa_ttl) < 0);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct dns_capture c = {0};
    assert_int_equal(eng_dns_resolve_mx(dns, "", RULE_IP_V4_ONLY, 0, 0, dns_capture_cb, &c),
                     -EINVAL);
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(eng_dns_resolve_mx(dns, longname, RULE_IP_V4_ONLY, 0, 0, dns_capture_cb, &c),
                     -EINVAL);
    assert_int_equal(c.calls, 0);

    struct eng_dns *d2 = NULL;
    const char *bad[] = {"127.0.0.1:0"};
    struct eng_dns_opts o = {.loop = loop, .nameservers = bad, .n_nameservers = 1};
    assert_int_equal(eng_dns_new(&o, &d2), -EINVAL);
    const char *bad2[] = {"ns.example"};
    o.nameservers = bad2;
    assert_int_equal(eng_dns_new(&o, &d2), -EINVAL);
    const char *good[] = {"127.0.0.1", "127.0.0.1:5353", "[::1]:53", "::1", "[2001:db8::1]"};
    o.nameservers = good;
    o.n_nameservers = 5;
    assert_int_equal(eng_dns_new(&o, &d2), 0);
    eng_dns_free(d2);
}

static void test_ipv6_nameserver(void **state)
{
    (void)state;
    struct tu_dnsmasq v6;
    if (tu_dnsmasq_start(&v6, "listen-address=::1\nhost-record=v6ns.test,192.0.2.99\n") < 0)
        skip(); /* no IPv6 loopback here */
    char ns6[64];
    snprintf(ns6, sizeof(ns6), "[::1]:%d", v6.port);
    const char *ns[] = {ns6};
    struct eng_dns_opts o = {.loop = loop, .nameservers = ns, .n_nameservers = 1};
    struct eng_dns *d = NULL;
    assert_int_equal(eng_dns_new(&o, &d), 0);
    struct dns_capture c = {0};
    assert_int_equal(
        eng_dns_resolve_host(d, "v6ns.test", RULE_IP_V4_THEN_V6, 0, dns_capture_cb, &c), 0);
    dns_wait(loop, &c);
    assert_string_equal(c.line, "OK v6ns.test:0=192.0.2.99");
    eng_dns_free(d);
    tu_dnsmasq_stop(&v6);
}

/* --- shutdown ------------------------------------------------------------- */

struct free_probe {
    int calls;
    char line[512];
    struct eng_dns *free_me; /* freed from inside the callback */
};

static void free_probe_cb(void *arg, const struct eng_mx_result *r)
{
    struct free_probe *p = arg;
    p->calls++;
    dns_render(r, p->line, sizeof(p->line));
    if (p->free_me) {
        struct eng_dns *d = p->free_me;
        p->free_me = NULL;
        eng_dns_free(d);
    }
}

static void test_free_with_pending(void **state)
{
    (void)state;
    const char *ns[] = {dm.ns};
    struct eng_dns_opts o = {
        .loop = loop, .nameservers = ns, .n_nameservers = 1, .timeout_ms = 2000, .tries = 1};
    struct eng_dns *d = NULL;
    assert_int_equal(eng_dns_new(&o, &d), 0);
    struct free_probe p[3] = {0};
    assert_int_equal(
        eng_dns_resolve_mx(d, "a.timeout.test", RULE_IP_V4_ONLY, 0, 0, free_probe_cb, &p[0]), 0);
    assert_int_equal(
        eng_dns_resolve_mx(d, "slowmx.test", RULE_IP_V4_ONLY, 0, 0, free_probe_cb, &p[1]), 0);
    assert_int_equal(
        eng_dns_resolve_host(d, "b.timeout.test", RULE_IP_V4_THEN_V6, 0, free_probe_cb, &p[2]), 0);
    /* let the queries go out (slowmx.test reaches its address phase) */
    ev_tstamp until = ev_time() + 0.3;
    while (ev_time() < until)
        ev_run(loop, EVRUN_NOWAIT);
    for (int i = 0; i < 3; i++)
        assert_int_equal(p[i].calls, 0);
    eng_dns_free(d);
    assert_string_equal(p[0].line, "TEMPFAIL a.timeout.test: resolver shut down");
    assert_string_equal(p[1].line, "TEMPFAIL slowmx.test: resolver shut down");
    assert_string_equal(p[2].line, "TEMPFAIL b.timeout.test: resolver shut down");
    /* nothing fires later: no watcher of the freed resolver is left on the loop */
    until = ev_time() + 2.5;
    while (ev_time() < until)
        ev_run(loop, EVRUN_NOWAIT);
    for (int i = 0; i < 3; i++)
        assert_int_equal(p[i].calls, 1);

    /* freed from inside a callback while another lookup is pending */
    assert_int_equal(eng_dns_new(&o, &d), 0);
    struct free_probe q[2] = {0};
    q[0].free_me = d;
    assert_int_equal(
        eng_dns_resolve_mx(d, "c.timeout.test", RULE_IP_V4_ONLY, 0, 0, free_probe_cb, &q[1]), 0);
    assert_int_equal(
        eng_dns_resolve_mx(d, "order.test", RULE_IP_V4_ONLY, 0, 0, free_probe_cb, &q[0]), 0);
    until = ev_time() + 3.0;
    while (q[0].calls == 0 && ev_time() < until)
        ev_run(loop, EVRUN_ONCE);
    assert_int_equal(q[0].calls, 1);
    assert_string_equal(q[0].line, "OK mx1.order.test:10=192.0.2.1 mx2.order.test:20=192.0.2.2 "
                                   "mx3.order.test:30=192.0.2.3");
    assert_int_equal(q[1].calls, 1);
    assert_string_equal(q[1].line, "TEMPFAIL c.timeout.test: resolver shut down");
    until = ev_time() + 0.5;
    while (ev_time() < until)
        ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(q[0].calls, 1);
    assert_int_equal(q[1].calls, 1);
}

/* Lines of dnsmasq's query log that start with `what` (e.g. "query[A] burst.test "). */
static int log_count(const char *what)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/dnsmasq.log", dm.dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, "]: ");
        n += p && strncmp(p + 3, what, strlen(what)) == 0;
    }
    fclose(f);
    return n;
}

/* 200 simultaneous lookups of one name: one A and one AAAA query on the wire, the
 * same answer for every caller; the NODATA AAAA answer (no SOA) is then kept
 * briefly, the A answer (TTL 0) is not. */
static void test_coalesce_burst(void **state)
{
    (void)state;
    struct eng_dns_cache *cache = eng_dns_cache_new(100);
    assert_non_null(cache);
    const char *ns[] = {dm.ns};
    struct eng_dns_opts o = {.loop = loop,
                             .cache = cache,
                             .nameservers = ns,
                             .n_nameservers = 1,
                             .timeout_ms = 200,
                             .tries = 2};
    struct eng_dns *d;
    assert_int_equal(eng_dns_new(&o, &d), 0);
    static struct dns_capture c[200];
    memset(c, 0, sizeof(c));
    for (int i = 0; i < 200; i++)
        assert_int_equal(
            eng_dns_resolve_host(d, "burst.test", RULE_IP_V4_THEN_V6, 0, dns_capture_cb, &c[i]), 0);
    ev_tstamp until = ev_time() + 10.0;
    for (int i = 0; i < 200; i++)
        while (c[i].calls == 0 && ev_time() < until)
            ev_run(loop, EVRUN_ONCE);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(c[i].calls, 1);
        assert_string_equal(c[i].line, "OK burst.test:0=192.0.2.90");
    }
    usleep(200000); /* dnsmasq writes its log as it goes */
    assert_int_equal(log_count("query[A] burst.test "), 1);
    assert_int_equal(log_count("query[AAAA] burst.test "), 1);
    /* Again: A asked again (TTL 0), AAAA from the cache (NODATA, 5 s). */
    struct dns_capture again = {0};
    assert_int_equal(
        eng_dns_resolve_host(d, "burst.test", RULE_IP_V4_THEN_V6, 0, dns_capture_cb, &again), 0);
    dns_wait(loop, &again);
    assert_string_equal(again.line, "OK burst.test:0=192.0.2.90");
    usleep(200000);
    assert_int_equal(log_count("query[A] burst.test "), 2);
    assert_int_equal(log_count("query[AAAA] burst.test "), 1);
    eng_dns_free(d);
    eng_dns_cache_free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip_literals),
        cmocka_unit_test(test_preference_order),
        cmocka_unit_test(test_equal_preference_random),
        cmocka_unit_test(test_implicit_mx),
        cmocka_unit_test(test_null_mx),
        cmocka_unit_test(test_nodomain),
        cmocka_unit_test(test_ip_strategy),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_many_mx_records),
        cmocka_unit_test(test_skipped_targets),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_resolve_host),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_escaped_dot_in_label_refused),
        cmocka_unit_test(test_ipv6_nameserver),
        cmocka_unit_test(test_free_with_pending),
        cmocka_unit_test(test_coalesce_burst),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
