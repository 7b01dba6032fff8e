/* engine/deliver routed by DNS (a real dnsmasq): MX in preference order with
 * fallback on connection failure, a relay given by host name, verified TLS against
 * the test CA, null MX and NXDOMAIN bounced, and a session opened with
 * allow-invalid-certs never reused for a strict attempt. */
#include "dnsmasq.h"
#include "test_engine_deliver_util.h"
#include "test_tls_helpers.h"

static char *certs;
static struct tu_dnsmasq dns;

static const char zone[] = "mx-host=example.test,mx.example.test,10\n"
                           "mx-host=lax.test,mx.example.test,10\n"
                           "host-record=mx.example.test,127.0.0.1\n"
                           "mx-host=multi.test,dead.example.test,5\n"
                           "mx-host=multi.test,mx.example.test,20\n"
                           "host-record=dead.example.test,127.0.0.2\n"
                           "dns-rr=nullmx.test,15,000000\n"
                           "mx-host=refuse1.test,refuse.example.test,10\n"
                           "mx-host=refuse2.test,refuse.example.test,5\n"
                           "mx-host=refuse2.test,mx.example.test,20\n"
                           "host-record=refuse.example.test,127.0.0.3\n";

static const char *config(int port, const char *rest)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf),
             "[resolver]\nnameservers = [\"%s\"]\n"
             "[queue.outbound]\nmx-port = %d\n"
             "[queue.outbound.tls]\nca-file = \"%s\"\n%s",
             dns.ns, port, tt_path(certs, "ca.pem"), rest);
    return buf;
}

static int sink_wild(struct ts_sink *s)
{
    const char *argv[] = {"--threads",  "1",
                          "--tls-cert", tt_path(certs, "wild.pem"),
                          "--tls-key",  tt_path(certs, "wild.key"),
                          NULL};
    return ts_sink_start(s, argv);
}

static void test_mx_verified_and_fallback(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_wild(&sink), 0);
    struct td t;
    td_setup(&t, 0, config(sink.port, "starttls = \"require\"\n"));
    td_enqueue(&t,
               (const char *[]){"a@example.test", "b@multi.test", "c@nullmx.test",
                                "d@nxdomain.test", NULL},
               "Message-ID: <mx1@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 4);
    for (size_t i = first; i < t.nout; i++) {
        const struct eng_outcome *o = t.out[i];
        const char *dom = o->job->domain;
        if (strcmp(dom, "example.test") == 0 || strcmp(dom, "multi.test") == 0) {
            assert_int_equal(o->res[0].outcome, RQ_DELIVERED);
            if (strncmp(o->res[0].tls, "TLSv1.3 ", 8) != 0 ||
                strcmp(o->res[0].tls + strlen(o->res[0].tls) - 9, " verified") != 0)
                fail_msg("%s: tls facts: %s", dom, o->res[0].tls);
        } else {
            assert_int_equal(o->res[0].outcome, RQ_BOUNCED);
            assert_string_equal(o->res[0].tls, "none");
        }
    }
    assert_int_equal(td_stat(&sink, "transactions"), 2);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* A session opened under allow-invalid-certs (lax.test) is not reused for a strict
 * attempt to the same MX; a strict session serves a lax attempt. */
static void test_strict_not_over_lax(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_wild(&sink), 0);
    struct td t;
    td_setup(&t, 0,
             config(sink.port,
                    "starttls = \"require\"\n"
                    "allow-invalid-certs = [ { if = \"rcpt_domain == 'lax.test'\", then = true},\n"
                    "{ else = false } ]\n"));
    const char *order[] = {"a@lax.test", "b@example.test", "c@lax.test"};
    unsigned want_reused[] = {0, 0, 1};
    for (int i = 0; i < 3; i++) {
        char body[64];
        snprintf(body, sizeof(body), "Message-ID: <l%d@src.test>\r\n\r\nx\r\n", i);
        td_enqueue(&t, (const char *[]){order[i], NULL}, body);
        size_t first;
        struct rq_batch *b = td_run(&t, &first);
        assert_int_equal(t.out[first]->res[0].outcome, RQ_DELIVERED);
        assert_int_equal(t.out[first]->connections_reused, want_reused[i]);
        td_report_and_promote(&t, b, first);
    }
    assert_int_equal(td_stat(&sink, "connections"), 2);
    assert_int_equal(td_stat(&sink, "transactions"), 3);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* A relay given by host name is resolved (eng_dns_resolve_host) and verified. */
static void test_relay_by_name(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_wild(&sink), 0);
    char rest[256];
    snprintf(rest, sizeof(rest),
             "starttls = \"require\"\n[remote.relay1]\naddress = \"mx.example.test\"\nport = %d\n",
             sink.port);
    struct td t;
    char cfg[4096];
    snprintf(cfg, sizeof(cfg), "%s", config(sink.port, rest));
    /* next-hop has to go into [queue.outbound], which config() opened first */
    char *p = strstr(cfg, "mx-port");
    assert_non_null(p);
    char final[4200];
    snprintf(final, sizeof(final), "%.*snext-hop = \"relay1\"\n%s", (int)(p - cfg), cfg, p);
    td_setup(&t, 0, final);
    td_enqueue(&t, (const char *[]){"a@elsewhere.test", NULL},
               "Message-ID: <r1@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.out[first]->res[0].outcome, RQ_DELIVERED);
    assert_non_null(strstr(t.out[first]->res[0].tls, " verified"));
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* RFC 5321 3.1: a 554 greeting means "no SMTP service here". With a single MX
 * (refuse1.test) the recipients bounce at once with that reply; with a second MX
 * (refuse2.test) the next one is tried and delivers. */
static void test_greeting_554(void **state)
{
    (void)state;
    struct ts_sink good, bad;
    assert_int_equal(ts_sink_start(&good, (const char *[]){"--threads", "1", NULL}), 0);
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.3:%d", good.port);
    assert_int_equal(ts_sink_start(&bad, (const char *[]){"--threads", "1", "--listen", listen,
                                                          "--fault", "greeting:554", NULL}),
                     0);
    struct td t;
    td_setup(&t, 0, config(good.port, "[queue.schedule]\nretry = [\"1m\"]\n"));
    td_enqueue(&t, (const char *[]){"a@refuse1.test", "b@refuse1.test", "c@refuse2.test", NULL},
               "Message-ID: <g554@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 2);
    for (size_t i = first; i < t.nout; i++) {
        const struct eng_outcome *o = t.out[i];
        if (strcmp(o->job->domain, "refuse1.test") == 0) {
            assert_int_equal(o->job->nrcpt, 2);
            for (size_t k = 0; k < 2; k++) {
                assert_int_equal(o->res[k].outcome, RQ_BOUNCED);
                if (!strstr(o->res[k].reply, "554 ") ||
                    !strstr(o->res[k].reply, "no SMTP service here"))
                    fail_msg("reply: %s", o->res[k].reply);
            }
        } else {
            assert_int_equal(o->res[0].outcome, RQ_DELIVERED);
        }
    }
    assert_int_equal(td_stat(&good, "transactions"), 1);
    assert_int_equal(td_stat(&bad, "transactions"), 0);
    assert_int_equal(td_stat(&bad, "connections"), 2);
    td_report_and_promote(&t, b, first);
    struct rq_stats st;
    assert_int_equal(rq_stats_get(t.q, 0, &st), 0);
    assert_int_equal(st.bounced, 2);
    assert_int_equal(st.delivered, 1);
    assert_int_equal(st.scheduled, 0);
    td_teardown(&t);
    ts_sink_stop(&bad, NULL, 0);
    ts_sink_stop(&good, NULL, 0);
}

static int setup(void **state)
{
    if (td_group_setup(state) != 0)
        return -1;
    certs = tu_mkdtemp();
    if (!certs || tt_make_certs(certs) != 0)
        return -1;
    return tu_dnsmasq_start(&dns, zone) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    tu_dnsmasq_stop(&dns);
    tu_rmtree(certs);
    free(certs);
    return td_group_teardown(state);
}

/* Graceful stop while a job waits for its MX lookup: handed back at once (NULL
 * outcome), nothing waits for the resolver; the lookup is dropped when the
 * deliverer is freed, after the job itself is gone (ASan: no use of it). */
static void td_shut_flag(void *arg)
{
    *(int *)arg = 1;
}

static void test_shutdown_during_lookup(void **state)
{
    (void)state;
    struct td t;
    td_setup(&t, 0, config(25, ""));
    td_enqueue(&t, (const char *[]){"a@slow.timeout.test", NULL},
               "Message-ID: <mx9@src.test>\r\n\r\nx\r\n");
    struct rq_batch *b = NULL;
    assert_int_equal(rq_claim(t.q, 10, &b), 1);
    t.want = 10;
    assert_int_equal(eng_deliver(t.d, &b->jobs[0], td_cb, &t), 0);
    for (int i = 0; i < 5; i++)
        ev_run(t.loop, EVRUN_NOWAIT), usleep(10000);
    assert_int_equal(t.nout, 0);
    int done = 0;
    eng_deliverer_shutdown(t.d, 20000, td_shut_flag, &done);
    assert_int_equal(t.nout, 1);
    assert_null(t.out[0]);
    assert_int_equal(eng_deliverer_busy(t.d), 0);
    ev_tstamp until = ev_time() + 2.0;
    while (!done && ev_time() < until)
        ev_run(t.loop, EVRUN_ONCE);
    assert_int_equal(done, 1);
    rq_batch_free(b); /* the caller may drop the job once it is handed back */
    td_teardown(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mx_verified_and_fallback),
        cmocka_unit_test(test_strict_not_over_lax),
        cmocka_unit_test(test_relay_by_name),
        cmocka_unit_test(test_shutdown_during_lookup),
        cmocka_unit_test(test_greeting_554),
    };
    if (getenv("TD_FILTER"))
        cmocka_set_test_filter(getenv("TD_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
