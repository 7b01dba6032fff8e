/* Internationalised domains end to end through a real salvo-sink (and dnsmasq for
 * MX routing): what the sink received is read back from its protocol trace.
 *   SMTPUTF8 offered   -> RCPT TO and MAIL FROM in UTF-8, MAIL FROM ... SMTPUTF8
 *   SMTPUTF8 missing   -> the IDN domains as A-labels, no SMTPUTF8, delivered;
 *                         a UTF-8 local part bounces 553 5.6.7 without being sent
 *   MX routing         -> the lookup is for the A-label name (the zone has no other) */
#include "dnsmasq.h"
#include "test_engine_deliver_util.h"

#define MUENCHEN   "m\xc3\xbcnchen.test" /* münchen.test */
#define MUENCHEN_A "xn--mnchen-3ya.test"
#define BUECHER                                                                                    \
    "b\xc3\xbc"                                                                                    \
    "cher.test" /* bücher.test */
#define BUECHER_A "xn--bcher-kva.test"
#define UE        "\xc3\xbc" /* ü */

static struct tu_dnsmasq dns;
static const char zone[] = "mx-host=" MUENCHEN_A ",mx." MUENCHEN_A ",10\n"
                           "host-record=mx." MUENCHEN_A ",127.0.0.1\n";

/* The commands the sink received ("MAIL FROM:<...> ...", "RCPT TO:<...>"), one per
 * line, from its debug trace ("conn N: <<< COMMAND"). Owned. */
static char *received(struct ts_sink *sink)
{
    char *err = ts_sink_stderr(sink), *out = calloc(1, strlen(err) + 1), *w = out;
    assert_non_null(out);
    for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n")) {
        char *c = strstr(line, ": <<< ");
        if (c && (strncmp(c + 6, "MAIL ", 5) == 0 || strncmp(c + 6, "RCPT ", 5) == 0))
            w += sprintf(w, "%s\n", c + 6);
    }
    free(err);
    return out;
}

static int sink_start(struct ts_sink *s, bool smtputf8, bool pipelining)
{
    const char *argv[10] = {"--threads", "1", "--log-level", "debug"};
    int n = 4;
    if (!smtputf8) {
        argv[n++] = "--fault";
        argv[n++] = "no-smtputf8";
    }
    if (!pipelining) {
        argv[n++] = "--fault";
        argv[n++] = "no-pipelining";
    }
    return ts_sink_start(s, argv);
}

static const struct rq_result *result(const struct eng_outcome *o, const char *addr)
{
    for (size_t k = 0; k < o->job->nrcpt; k++)
        if (strcmp(o->job->rcpt[k].addr, addr) == 0)
            return &o->res[k];
    fail_msg("no result for <%s>", addr);
    return NULL;
}

/* SMTPUTF8 offered: the addresses go as enqueued, in UTF-8, with SMTPUTF8. */
static void test_idn_smtputf8(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_start(&sink, true, true), 0);
    struct td t;
    td_setup(&t, sink.port, "");
    td_enqueue_from(&t, "news@" BUECHER, (const char *[]){"user@" MUENCHEN, UE "@" MUENCHEN, NULL},
                    "Message-ID: <i1@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 1);
    const struct eng_outcome *o = t.out[first];
    assert_string_equal(o->job->domain, MUENCHEN_A);
    for (size_t k = 0; k < 2; k++)
        if (o->res[k].outcome != RQ_DELIVERED)
            fail_msg("<%s>: %s", o->job->rcpt[k].addr, o->res[k].reply);
    char *got = received(&sink);
    assert_string_equal(got, "MAIL FROM:<news@" BUECHER "> SIZE=32 SMTPUTF8\n"
                             "RCPT TO:<user@" MUENCHEN ">\n"
                             "RCPT TO:<" UE "@" MUENCHEN ">\n");
    free(got);
    assert_int_equal(td_stat(&sink, "pairs"), 2);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* SMTPUTF8 not offered: ASCII local parts go to the A-label domain (a plain ASCII
 * address, no SMTPUTF8), the sender's IDN domain too; ü@münchen cannot be sent
 * and bounces 553 5.6.7 at once. With and without PIPELINING. */
static void run_idn_no_smtputf8(bool pipelining)
{
    struct ts_sink sink;
    assert_int_equal(sink_start(&sink, false, pipelining), 0);
    struct td t;
    td_setup(&t, sink.port, "");
    td_enqueue_from(&t, "news@" BUECHER,
                    (const char *[]){"user@" MUENCHEN, UE "@" MUENCHEN, "b@" MUENCHEN, NULL},
                    "Message-ID: <i2@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 1);
    const struct eng_outcome *o = t.out[first];
    assert_int_equal(result(o, "user@" MUENCHEN)->outcome, RQ_DELIVERED);
    assert_int_equal(result(o, "b@" MUENCHEN)->outcome, RQ_DELIVERED);
    const struct rq_result *r = result(o, UE "@" MUENCHEN);
    assert_int_equal(r->outcome, RQ_BOUNCED);
    if (!strstr(r->reply, "553 5.6.7") || !strstr(r->reply, "needs SMTPUTF8"))
        fail_msg("<" UE "@" MUENCHEN ">: %s", r->reply);
    char *got = received(&sink);
    assert_string_equal(got, "MAIL FROM:<news@" BUECHER_A "> SIZE=32\n"
                             "RCPT TO:<user@" MUENCHEN_A ">\n"
                             "RCPT TO:<b@" MUENCHEN_A ">\n");
    free(got);
    assert_int_equal(td_stat(&sink, "pairs"), 2);
    assert_int_equal(td_stat(&sink, "rcpt_rejected"), 0); /* ü@ was never sent */
    td_report_and_promote(&t, b, first);
    struct rq_stats st;
    assert_int_equal(rq_stats_get(t.q, 0, &st), 0);
    assert_int_equal(st.delivered, 2);
    assert_int_equal(st.bounced, 1);
    assert_int_equal(st.scheduled, 0);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

static void test_idn_no_smtputf8(void **state)
{
    (void)state;
    run_idn_no_smtputf8(true);
    run_idn_no_smtputf8(false);
}

/* Two IDN transactions on one session without SMTPUTF8: the second is pipelined
 * behind the first one's final dot (nothing in it needs refusing), A-labels both. */
static void test_idn_pipelined_behind_dot(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_start(&sink, false, true), 0);
    struct td t;
    td_setup(&t, sink.port, "[queue.outbound.limits]\nconnections = 1\n");
    td_enqueue_from(&t, "news@" BUECHER, (const char *[]){"a@" MUENCHEN, NULL},
                    "Message-ID: <i5@src.test>\r\n\r\nx\r\n");
    td_enqueue_from(&t, "news@" BUECHER, (const char *[]){"b@" MUENCHEN, NULL},
                    "Message-ID: <i6@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 2);
    for (size_t i = first; i < t.nout; i++)
        if (t.out[i]->res[0].outcome != RQ_DELIVERED)
            fail_msg("%s", t.out[i]->res[0].reply);
    char *got = received(&sink);
    assert_string_equal(got, "MAIL FROM:<news@" BUECHER_A "> SIZE=32\n"
                             "RCPT TO:<a@" MUENCHEN_A ">\n"
                             "MAIL FROM:<news@" BUECHER_A "> SIZE=32\n"
                             "RCPT TO:<b@" MUENCHEN_A ">\n");
    free(got);
    assert_int_equal(td_stat(&sink, "connections"), 1);
    assert_int_equal(td_stat(&sink, "transactions"), 2);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* A UTF-8 local part in the sender cannot be downgraded: without SMTPUTF8 the whole
 * transaction bounces (even though the recipient's IDN domain alone could go). */
static void test_idn_utf8_sender_no_smtputf8(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_start(&sink, false, true), 0);
    struct td t;
    td_setup(&t, sink.port, "");
    td_enqueue_from(&t, "n" UE "ws@" BUECHER, (const char *[]){"user@" MUENCHEN, NULL},
                    "Message-ID: <i3@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    const struct rq_result *r = &t.out[first]->res[0];
    assert_int_equal(r->outcome, RQ_BOUNCED);
    if (!strstr(r->reply, "553 5.6.7"))
        fail_msg("%s", r->reply);
    char *got = received(&sink);
    assert_string_equal(got, "");
    free(got);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* Routed by MX: dnsmasq knows only the A-label zone, so delivery proves the MX and
 * address lookups used it; bücher.test (no zone) bounces naming its A-label. */
static void test_idn_mx(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_start(&sink, false, true), 0);
    char cfg[512];
    snprintf(cfg, sizeof(cfg),
             "[resolver]\nnameservers = [\"%s\"]\n[queue.outbound]\nmx-port = %d\n"
             "[queue.outbound.tls]\nstarttls = \"disable\"\n",
             dns.ns, sink.port);
    struct td t;
    td_setup(&t, 0, cfg);
    td_enqueue(&t, (const char *[]){"user@" MUENCHEN, "user@" BUECHER, NULL},
               "Message-ID: <i4@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 2);
    for (size_t i = first; i < t.nout; i++) {
        const struct eng_outcome *o = t.out[i];
        if (strcmp(o->job->domain, MUENCHEN_A) == 0) {
            if (o->res[0].outcome != RQ_DELIVERED)
                fail_msg("%s", o->res[0].reply);
        } else {
            assert_string_equal(o->job->domain, BUECHER_A);
            assert_int_equal(o->res[0].outcome, RQ_BOUNCED);
            if (!strstr(o->res[0].reply, BUECHER_A ": domain does not exist"))
                fail_msg("%s", o->res[0].reply);
        }
    }
    char *got = received(&sink);
    assert_string_equal(got, "MAIL FROM:<sender@src.test> SIZE=32\n"
                             "RCPT TO:<user@" MUENCHEN_A ">\n");
    free(got);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

static int setup(void **state)
{
    if (td_group_setup(state) != 0)
        return -1;
    return tu_dnsmasq_start(&dns, zone) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    tu_dnsmasq_stop(&dns);
    return td_group_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idn_smtputf8),
        cmocka_unit_test(test_idn_no_smtputf8),
        cmocka_unit_test(test_idn_pipelined_behind_dot),
        cmocka_unit_test(test_idn_utf8_sender_no_smtputf8),
        cmocka_unit_test(test_idn_mx),
    };
    if (getenv("TD_FILTER"))
        cmocka_set_test_filter(getenv("TD_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
