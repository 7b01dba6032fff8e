/* engine/deliver over plain SMTP to a real salvo-sink: multi-recipient
 * transactions, per-recipient outcomes, connection reuse, personalised bodies,
 * faults (4xx/5xx RCPT, disconnect mid-DATA, stalled greeting, hostile replies). */
#include "test_engine_deliver_util.h"

#include <errno.h>
#include <unistd.h>

static const char body1[] = "Message-ID: <m1@src.test>\r\nSubject: one\r\n\r\nline 1\r\n"
                            ".starts with a dot\nbare LF line\r\nlast line without newline";
/* What the sink counts for body1: CRLF everywhere, the dot-stuffing undone, and the
 * CRLF we add at the end (the final ".\r\n" is not counted). */
static const char body1_wire[] =
    "Message-ID: <m1@src.test>\r\nSubject: one\r\n\r\nline 1\r\n"
    ".starts with a dot\r\nbare LF line\r\nlast line without newline\r\n";

static void test_multi_rcpt(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(ts_sink_start(&sink, (const char *[]){"--threads", "1", NULL}), 0);
    struct td t;
    td_setup(&t, sink.port, "");
    td_enqueue(&t, (const char *[]){"a@example.test", "b@example.test", "c@example.test", NULL},
               body1);
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 1);
    struct eng_outcome *o = t.out[first];
    assert_int_equal(o->job->nrcpt, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(o->res[i].outcome, RQ_DELIVERED);
        assert_non_null(strstr(o->res[i].reply, "250"));
        assert_string_equal(o->res[i].tls, "none");
    }
    assert_int_equal(o->transactions, 1);
    assert_int_equal(o->connections_opened, 1);
    assert_int_equal(td_stat(&sink, "transactions"), 1);
    assert_int_equal(td_stat(&sink, "recipients"), 3);
    assert_int_equal(td_stat(&sink, "pairs"), 3);
    assert_int_equal(td_stat(&sink, "bytes"), strlen(body1_wire));
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* Twenty jobs (twenty domains) at once with one connection allowed: they queue on
 * the one session, pipelined back to back. */
static void test_reuse(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(ts_sink_start(&sink, (const char *[]){"--threads", "1", NULL}), 0);
    struct td t;
    td_setup(&t, sink.port, "[queue.outbound.limits]\nconnections = 1\n");
    char addrs[20][64];
    const char *rc[21];
    for (int i = 0; i < 20; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "u%d@d%d.test", i, i);
        rc[i] = addrs[i];
    }
    rc[20] = NULL;
    td_enqueue(&t, rc, "Message-ID: <m2@src.test>\r\n\r\nhello\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 20);
    unsigned opened = 0, reused = 0, txns = 0;
    for (size_t i = first; i < t.nout; i++) {
        assert_int_equal(t.out[i]->res[0].outcome, RQ_DELIVERED);
        opened += t.out[i]->connections_opened;
        reused += t.out[i]->connections_reused;
        txns += t.out[i]->transactions;
    }
    assert_int_equal(opened, 1);
    assert_int_equal(reused, 19);
    assert_int_equal(txns, 20);
    assert_int_equal(td_stat(&sink, "connections"), 1);
    assert_int_equal(td_stat(&sink, "transactions"), 20);
    assert_int_equal(td_stat(&sink, "pairs"), 20);
    /* A second round reuses the idle pooled session. */
    td_report_and_promote(&t, b, first);
    td_enqueue(&t, (const char *[]){"x@again.test", NULL},
               "Message-ID: <m3@src.test>\r\n\r\nx\r\n");
    b = td_run(&t, &first);
    assert_int_equal(t.out[first]->res[0].outcome, RQ_DELIVERED);
    assert_int_equal(t.out[first]->connections_reused, 1);
    assert_int_equal(td_stat(&sink, "connections"), 1);
    struct eng_deliver_stats st;
    eng_deliverer_stats(t.d, &st);
    assert_int_equal(st.jobs, 21);
    assert_int_equal(st.transactions, 21);
    assert_int_equal(st.connections_opened, 1);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* limits.messages-per-connection also binds jobs queued on a busy session: with a
 * single-connection pool, the sink sees ceil(transactions / limit) connections. */
static void run_msgs_per_conn(int limit, int njobs)
{
    struct ts_sink sink;
    assert_int_equal(ts_sink_start(&sink, (const char *[]){"--threads", "1", NULL}), 0);
    struct td t;
    char toml[128];
    snprintf(toml, sizeof(toml),
             "[queue.outbound.limits]\nconnections = 1\nmessages-per-connection = %d\n", limit);
    td_setup(&t, sink.port, toml);
    char addrs[40][64];
    const char *rc[41];
    for (int i = 0; i < njobs; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "u%d@d%d.test", i, i);
        rc[i] = addrs[i];
    }
    rc[njobs] = NULL;
    td_enqueue(&t, rc, "Message-ID: <mpc@src.test>\r\n\r\nhello\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, njobs);
    for (size_t i = first; i < t.nout; i++)
        assert_int_equal(t.out[i]->res[0].outcome, RQ_DELIVERED);
    assert_int_equal(td_stat(&sink, "transactions"), njobs);
    assert_int_equal(td_stat(&sink, "connections"), (njobs + limit - 1) / limit);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

static void test_msgs_per_conn(void **state)
{
    (void)state;
    run_msgs_per_conn(1, 40);
    run_msgs_per_conn(3, 20);
}

/* Personalised: one transaction per recipient with its rendered body. */
static void test_personalised(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(ts_sink_start(&sink, (const char *[]){"--threads", "1", NULL}), 0);
    struct td t;
    td_setup(&t, sink.port, "");
    const char tpl[] = "Message-ID: <p-{{email}}>\r\n\r\nHello {{name}}\r\n";
    const char *fields[] = {"name"};
    struct rq_msg_spec spec = {.from = "sender@src.test",
                               .body = tpl,
                               .body_len = sizeof(tpl) - 1,
                               .personalised = true,
                               .fields = fields,
                               .nfields = 1};
    struct rq_enq *e;
    uint64_t id;
    assert_int_equal(rq_enq_begin(t.q, &spec, &e, &id), 0);
    assert_int_equal(rq_enq_add(e, "ann@example.test", (const char *[]){"Ann"}), 0);
    assert_int_equal(rq_enq_add(e, "bob@example.test", (const char *[]){"Bob"}), 0);
    assert_int_equal(rq_enq_end(e), 0);
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    struct eng_outcome *o = t.out[first];
    assert_int_equal(o->res[0].outcome, RQ_DELIVERED);
    assert_int_equal(o->res[1].outcome, RQ_DELIVERED);
    assert_int_equal(o->transactions, 2);
    assert_int_equal(td_stat(&sink, "transactions"), 2);
    assert_int_equal(td_stat(&sink, "pairs"), 2);
    assert_int_equal(td_stat(&sink, "connections"), 1);
    size_t want = strlen("Message-ID: <p-ann@example.test>\r\n\r\nHello Ann\r\n") +
                  strlen("Message-ID: <p-bob@example.test>\r\n\r\nHello Bob\r\n");
    assert_int_equal(td_stat(&sink, "bytes"), want);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

static void test_rcpt_faults(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(
        ts_sink_start(&sink, (const char *[]){"--threads", "1", "--fault", "rcpt:later:451",
                                              "--fault", "rcpt:bounce:550", NULL}),
        0);
    struct td t;
    td_setup(&t, sink.port, "[queue.schedule]\nretry = [\"7m\"]\n");
    td_enqueue(
        &t, (const char *[]){"ok@example.test", "later@example.test", "bounce@example.test", NULL},
        "Message-ID: <f1@src.test>\r\n\r\nx\r\n");
    size_t first;
    int64_t before = (int64_t)time(NULL) * 1000;
    struct rq_batch *b = td_run(&t, &first);
    struct eng_outcome *o = t.out[first];
    assert_int_equal(o->res[0].outcome, RQ_DELIVERED);
    assert_int_equal(o->res[1].outcome, RQ_DEFERRED);
    assert_string_equal(o->res[1].error, "unexpected-reply");
    assert_memory_equal(o->res[1].reply, "451 ", 4);
    assert_true(o->res[1].retry_at_ms >= before + 7 * 60000 - 1000 &&
                o->res[1].retry_at_ms <= before + 7 * 60000 + 5000);
    assert_int_equal(o->res[2].outcome, RQ_BOUNCED);
    assert_memory_equal(o->res[2].reply, "550 ", 4);
    assert_int_equal(td_stat(&sink, "transactions"), 1);
    assert_int_equal(td_stat(&sink, "recipients"), 1);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* One fault, one job: every recipient deferred with `cls`, reply containing `text`. */
static void fault_case(const char *fault, const char *toml, const char *cls, const char *text)
{
    struct ts_sink sink;
    assert_int_equal(
        ts_sink_start(&sink, (const char *[]){"--threads", "1", "--fault", fault, NULL}), 0);
    struct td t;
    td_setup(&t, sink.port, toml);
    td_enqueue(&t, (const char *[]){"a@example.test", "b@example.test", NULL},
               "Message-ID: <f2@src.test>\r\n\r\nx\r\n");
    size_t first;
    time_t t0 = time(NULL);
    struct rq_batch *b = td_run(&t, &first);
    assert_true(time(NULL) - t0 < 10);
    struct eng_outcome *o = t.out[first];
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(o->res[i].outcome, RQ_DEFERRED);
        assert_string_equal(o->res[i].error, cls);
        if (!strstr(o->res[i].reply, text))
            fail_msg("%s: reply '%s' lacks '%s'", fault, o->res[i].reply, text);
    }
    assert_int_equal(td_stat(&sink, "transactions"), 0);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

static void test_disconnect_data(void **state)
{
    (void)state;
    fault_case("disconnect:data", "", "connection", "connection closed by 127.0.0.1");
}

static void test_stall_greeting(void **state)
{
    (void)state;
    fault_case("stall:greeting", "[queue.outbound.timeouts]\ngreeting = \"300ms\"\n", "io",
               "timed out waiting for a reply during greeting");
    fault_case("stall:dot", "[queue.outbound.timeouts]\ndata = \"300ms\"\n", "io",
               "timed out waiting for a reply during end of data");
}

static void test_hostile(void **state)
{
    (void)state;
    fault_case("hostile:multiline", "", "unexpected-reply", "reply of more than 100 lines");
    fault_case("hostile:longline", "", "unexpected-reply", "reply line longer than 2048 bytes");
    fault_case("hostile:badcode", "", "unexpected-reply", "bad reply code");
    fault_case("hostile:badcode:rcpt", "", "unexpected-reply", "during RCPT TO: bad reply code");
}

static void test_connect_refused(void **state)
{
    (void)state;
    struct td t;
    td_setup(&t, tu_free_port(), "");
    td_enqueue(&t, (const char *[]){"a@example.test", NULL}, "x\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    struct eng_outcome *o = t.out[first];
    assert_int_equal(o->res[0].outcome, RQ_DEFERRED);
    assert_string_equal(o->res[0].error, "connection");
    assert_non_null(strstr(o->res[0].reply, "Connection refused"));
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
}

/* queue.outbound.limits.idle-timeout: a pooled session idle that long gets QUIT. */
static void test_idle_timeout(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(ts_sink_start(&sink, (const char *[]){"--threads", "1", NULL}), 0);
    struct td t;
    td_setup(&t, sink.port, "[queue.outbound.limits]\nidle-timeout = 1\n");
    td_enqueue(&t, (const char *[]){"a@example.test", NULL},
               "Message-ID: <i@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.out[first]->res[0].outcome, RQ_DELIVERED);
    assert_int_equal(td_stat(&sink, "connections_open"), 1);
    ev_timer tm;
    ev_timer_init(&tm, td_timeout, 1.5, 0.);
    ev_timer_start(t.loop, &tm);
    ev_run(t.loop, 0);
    assert_int_equal(td_stat(&sink, "connections_open"), 0);
    assert_int_equal(td_stat(&sink, "commands"), 5); /* EHLO MAIL RCPT DATA QUIT */
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* Shutdown while a transaction is stuck (no reply to DATA): after the bound, the
 * session is aborted and the recipients come back deferred "connection". */
static void shut_done(void *arg)
{
    *(int *)arg = 1;
}

static void test_shutdown_aborts(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(
        ts_sink_start(&sink, (const char *[]){"--threads", "1", "--fault", "stall:data", NULL}), 0);
    struct td t;
    td_setup(&t, sink.port, "");
    td_enqueue(&t, (const char *[]){"a@example.test", NULL},
               "Message-ID: <s@src.test>\r\n\r\nx\r\n");
    struct rq_batch *b = NULL;
    assert_int_equal(rq_claim(t.q, 10, &b), 1);
    t.want = 1;
    assert_int_equal(eng_deliver(t.d, &b->jobs[0], td_cb, &t), 0);
    for (int i = 0; i < 20; i++) /* let it reach DATA */
        ev_run(t.loop, EVRUN_NOWAIT), usleep(10000);
    assert_int_equal(t.nout, 0);
    assert_int_equal(eng_deliverer_busy(t.d), 1);
    int done = 0;
    time_t t0 = time(NULL);
    eng_deliverer_shutdown(t.d, 300, shut_done, &done);
    assert_int_equal(eng_deliver(t.d, &b->jobs[0], td_cb, &t), -ESHUTDOWN);
    while (!done && time(NULL) - t0 < 5)
        ev_run(t.loop, EVRUN_ONCE);
    assert_int_equal(done, 1);
    assert_int_equal(t.nout, 1);
    assert_int_equal(t.out[0]->res[0].outcome, RQ_DEFERRED);
    assert_string_equal(t.out[0]->res[0].error, "connection");
    assert_string_equal(t.out[0]->res[0].reply, "shutting down");
    assert_int_equal(eng_deliverer_busy(t.d), 0);
    td_report_and_promote(&t, b, 0);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* Graceful stop hands back at once the jobs nothing of which was sent (queued
 * behind the transaction in progress): called back with NULL; the one in progress
 * finishes. The bound (20 s) is not waited for. */
static void test_shutdown_hands_back(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(
        ts_sink_start(&sink, (const char *[]){"--threads", "1", "--fault", "delay:dot:400", NULL}),
        0);
    struct td t;
    td_setup(&t, sink.port, "[queue.outbound.limits]\nconnections = 1\n");
    char addrs[10][64];
    const char *rc[11];
    for (int i = 0; i < 10; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "u%d@d%d.test", i, i);
        rc[i] = addrs[i];
    }
    rc[10] = NULL;
    td_enqueue(&t, rc, "Message-ID: <hb@src.test>\r\n\r\nx\r\n");
    struct rq_batch *b = NULL;
    assert_int_equal(rq_claim(t.q, 64, &b), 10);
    t.want = 100;
    for (int i = 0; i < 10; i++)
        assert_int_equal(eng_deliver(t.d, &b->jobs[i], td_cb, &t), 0);
    for (int i = 0; i < 20; i++) /* the first transaction reaches the final dot */
        ev_run(t.loop, EVRUN_NOWAIT), usleep(10000);
    assert_int_equal(t.nout, 0);
    int done = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    eng_deliverer_shutdown(t.d, 20000, shut_done, &done);
    /* At once: all but the one at the dot and (PIPELINING) the next, whose MAIL
     * FROM went out with the body. */
    size_t back = t.nout;
    assert_true(back >= 8 && back <= 9);
    for (size_t i = 0; i < back; i++)
        assert_null(t.out[i]);
    while (!done)
        ev_run(t.loop, EVRUN_ONCE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("shutdown took %.3f s\n", took);
    assert_true(took < 2.0);
    assert_int_equal(t.nout, 10);
    for (size_t i = back; i < 10; i++) {
        assert_non_null(t.out[i]);
        assert_int_equal(t.out[i]->res[0].outcome, RQ_DELIVERED);
        assert_int_equal(rq_report(t.q, t.out[i]->job, t.out[i]->res), 0);
    }
    assert_int_equal(eng_deliverer_busy(t.d), 0);
    assert_int_equal(td_stat(&sink, "transactions"), 10 - back);
    assert_int_equal(rq_flush(t.q), 0);
    rq_batch_free(b);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* A server without PIPELINING: one command at a time, everything over one
 * connection. Back-to-back transactions need no RSET (the final "." ends one,
 * RFC 5321 4.1.1.4); a session taken from the pool starts with RSET. */
static void test_no_pipelining(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(
        ts_sink_start(&sink, (const char *[]){"--threads", "1", "--fault", "no-pipelining", NULL}),
        0);
    struct td t;
    td_setup(&t, sink.port, "[queue.outbound.limits]\nconnections = 1\n");
    td_enqueue(
        &t, (const char *[]){"a@d1.test", "b@d2.test", "c@d3.test", "d@d4.test", "e@d4.test", NULL},
        "Message-ID: <np@src.test>\r\n\r\nhello\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 4);
    for (size_t i = first; i < t.nout; i++)
        for (size_t k = 0; k < t.out[i]->job->nrcpt; k++)
            assert_int_equal(t.out[i]->res[k].outcome, RQ_DELIVERED);
    td_report_and_promote(&t, b, first);
    /* Later, from the pool: RSET first, still one command at a time. */
    td_enqueue(&t, (const char *[]){"f@d5.test", NULL},
               "Message-ID: <np2@src.test>\r\n\r\nagain\r\n");
    b = td_run(&t, &first);
    assert_int_equal(t.out[first]->res[0].outcome, RQ_DELIVERED);
    assert_int_equal(t.out[first]->connections_reused, 1);
    assert_int_equal(td_stat(&sink, "connections"), 1);
    assert_int_equal(td_stat(&sink, "transactions"), 5);
    assert_int_equal(td_stat(&sink, "pairs"), 6);
    /* EHLO; 4 x (MAIL RCPT DATA), d4 with two RCPTs; then RSET MAIL RCPT DATA */
    assert_int_equal(td_stat(&sink, "commands"), 1 + 4 * 3 + 1 + 4);
    assert_int_equal(td_stat(&sink, "recipients"), 6);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* A pooled session the server closed while it was idle (sink idle timeout: "421"
 * then close), noticed only when the next job is put on it: that job goes over a
 * fresh connection and is delivered, not deferred. */
static void test_dead_idle_pooled(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(
        ts_sink_start(&sink, (const char *[]){"--threads", "1", "--idle-timeout", "1", NULL}), 0);
    struct td t;
    td_setup(&t, sink.port, "[queue.outbound.limits]\nconnections = 1\nidle-timeout = 60\n");
    for (int round = 0; round < 3; round++) {
        char rcpt[64], body[64];
        snprintf(rcpt, sizeof(rcpt), "u%d@dead%d.test", round, round);
        snprintf(body, sizeof(body), "Message-ID: <dead%d@src.test>\r\n\r\nx\r\n", round);
        td_enqueue(&t, (const char *[]){rcpt, NULL}, body);
        size_t first;
        struct rq_batch *b = td_run(&t, &first);
        const struct eng_outcome *o = t.out[first];
        if (o->res[0].outcome != RQ_DELIVERED)
            fail_msg("round %d: %s %s", round, o->res[0].error, o->res[0].reply);
        assert_int_equal(o->connections_opened, 1);
        td_report_and_promote(&t, b, first);
        /* The loop does not run: the close waits unread in the socket. */
        usleep(1700 * 1000);
    }
    assert_int_equal(td_stat(&sink, "connections"), 3);
    assert_int_equal(td_stat(&sink, "transactions"), 3);
    struct rq_stats st;
    assert_int_equal(rq_stats_get(t.q, 0, &st), 0);
    assert_int_equal(st.delivered, 3);
    assert_int_equal(st.scheduled, 0);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* A personalised job with more recipients (transactions) than
 * limits.messages-per-connection goes in chunks: no connection carries more. */
static void test_personalised_split(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(ts_sink_start(&sink, (const char *[]){"--threads", "1", "--fault",
                                                           "rcpt:d@split:550", NULL}),
                     0);
    struct td t;
    td_setup(&t, sink.port, "[queue.outbound.limits]\nmessages-per-connection = 2\n");
    const char tpl[] = "Message-ID: <ps-{{email}}>\r\n\r\nHello {{name}}\r\n";
    const char *fields[] = {"name"};
    struct rq_msg_spec spec = {.from = "sender@src.test",
                               .body = tpl,
                               .body_len = sizeof(tpl) - 1,
                               .personalised = true,
                               .fields = fields,
                               .nfields = 1,
                               .job_rcpts = 50};
    struct rq_enq *e;
    uint64_t id;
    assert_int_equal(rq_enq_begin(t.q, &spec, &e, &id), 0);
    const char *names[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "%s@split.test", names[i]);
        assert_int_equal(rq_enq_add(e, addr, (const char *[]){names[i]}), 0);
    }
    assert_int_equal(rq_enq_end(e), 0);
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 1);
    struct eng_outcome *o = t.out[first];
    assert_int_equal(o->job->nrcpt, 5);
    /* Outcomes stay with their recipients across chunks: d (second chunk) refused. */
    for (size_t k = 0; k < 5; k++) {
        assert_int_equal(o->res[k].outcome, k == 3 ? RQ_BOUNCED : RQ_DELIVERED);
        if (k == 3)
            assert_non_null(strstr(o->res[k].reply, "<d@split.test>"));
    }
    assert_int_equal(o->transactions, 4);
    assert_int_equal(o->connections_opened, 3);
    assert_int_equal(td_stat(&sink, "transactions"), 4);
    assert_int_equal(td_stat(&sink, "pairs"), 4);
    assert_int_equal(td_stat(&sink, "connections"), 3); /* 2 + 2 + 1 */
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

#define JOERG "j\xc3\xb6rg@utf8.test" /* jörg: a UTF-8 local part (RFC 6531) */

/* SMTPUTF8 offered: a non-ASCII recipient goes with MAIL FROM ... SMTPUTF8 (the sink
 * refuses a non-ASCII address without it, 553 5.6.7). */
static void test_smtputf8(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(ts_sink_start(&sink, (const char *[]){"--threads", "1", NULL}), 0);
    struct td t;
    td_setup(&t, sink.port, "");
    td_enqueue_from(&t, "sender@src.test", (const char *[]){JOERG, "ann@utf8.test", NULL},
                    "Message-ID: <u1@src.test>\r\n\r\nx\r\n");
    td_enqueue_from(&t, "s\xc3\xa9nder@src.test", (const char *[]){"bob@utf8b.test", NULL},
                    "Message-ID: <u2@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 2);
    for (size_t i = first; i < t.nout; i++)
        for (size_t k = 0; k < t.out[i]->job->nrcpt; k++)
            if (t.out[i]->res[k].outcome != RQ_DELIVERED)
                fail_msg("<%s>: %s", t.out[i]->job->rcpt[k].addr, t.out[i]->res[k].reply);
    assert_int_equal(td_stat(&sink, "pairs"), 3);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* SMTPUTF8 not offered: the non-ASCII recipient bounces at once (5.6.7, not
 * retried), its ASCII neighbour is delivered; a non-ASCII sender bounces all. */
static void run_smtputf8_not_offered(bool pipelining)
{
    struct ts_sink sink;
    assert_int_equal(
        ts_sink_start(&sink, (const char *[]){"--threads", "1", "--fault", "no-smtputf8", "--fault",
                                              pipelining ? "no-smtputf8" : "no-pipelining", NULL}),
        0);
    struct td t;
    td_setup(&t, sink.port, "");
    td_enqueue_from(&t, "sender@src.test", (const char *[]){JOERG, "ann@utf8.test", NULL},
                    "Message-ID: <u3@src.test>\r\n\r\nx\r\n");
    td_enqueue_from(&t, "s\xc3\xa9nder@src.test", (const char *[]){"bob@utf8b.test", NULL},
                    "Message-ID: <u4@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 2);
    for (size_t i = first; i < t.nout; i++) {
        const struct eng_outcome *o = t.out[i];
        for (size_t k = 0; k < o->job->nrcpt; k++) {
            const struct rq_result *r = &o->res[k];
            if (strcmp(o->job->rcpt[k].addr, "ann@utf8.test") == 0) {
                assert_int_equal(r->outcome, RQ_DELIVERED);
                continue;
            }
            assert_int_equal(r->outcome, RQ_BOUNCED);
            if (!strstr(r->reply, "553 5.6.7") || !strstr(r->reply, "needs SMTPUTF8"))
                fail_msg("<%s>: %s", o->job->rcpt[k].addr, r->reply);
        }
    }
    assert_int_equal(td_stat(&sink, "pairs"), 1);
    assert_int_equal(td_stat(&sink, "rcpt_rejected"), 0); /* never sent */
    td_report_and_promote(&t, b, first);
    struct rq_stats st;
    assert_int_equal(rq_stats_get(t.q, 0, &st), 0);
    assert_int_equal(st.bounced, 2);
    assert_int_equal(st.scheduled, 0);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

static void test_smtputf8_not_offered(void **state)
{
    (void)state;
    run_smtputf8_not_offered(true);
    run_smtputf8_not_offered(false); /* one RCPT at a time: the refused one is skipped */
}

/* A pooled, ready session without SMTPUTF8 refuses a UTF-8 sender inside submit:
 * the job ends (and is freed) before eng_deliver's submit loop returns. Under ASan
 * this was a use-after-free; here the bounce and the reuse are checked too. */
static void test_smtputf8_refused_on_pooled(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(
        ts_sink_start(&sink, (const char *[]){"--threads", "1", "--fault", "no-smtputf8", NULL}),
        0);
    struct td t;
    td_setup(&t, sink.port, "[queue.outbound.limits]\nconnections = 1\n");
    td_enqueue(&t, (const char *[]){"ann@a.test", NULL}, "Message-ID: <p1@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.out[first]->res[0].outcome, RQ_DELIVERED);
    td_report_and_promote(&t, b, first);
    td_enqueue_from(&t, "s\xc3\xa9nder@src.test", (const char *[]){"bob@b.test", NULL},
                    "Message-ID: <p2@src.test>\r\n\r\nx\r\n");
    b = td_run(&t, &first);
    const struct rq_result *r = &t.out[first]->res[0];
    assert_int_equal(r->outcome, RQ_BOUNCED);
    if (!strstr(r->reply, "553 5.6.7"))
        fail_msg("bounce reply: %s", r->reply);
    /* The same connection is still good for an ASCII message afterwards. */
    td_report_and_promote(&t, b, first);
    td_enqueue(&t, (const char *[]){"cy@c.test", NULL}, "Message-ID: <p3@src.test>\r\n\r\nx\r\n");
    b = td_run(&t, &first);
    assert_int_equal(t.out[first]->res[0].outcome, RQ_DELIVERED);
    assert_int_equal(td_stat(&sink, "connections"), 1);
    assert_int_equal(td_stat(&sink, "pairs"), 2);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* Enqueues one personalised message (one transaction per recipient). */
static void enqueue_personal(struct td *t, const char *const *rcpts)
{
    const char tpl[] = "Message-ID: <pp-{{email}}>\r\n\r\nHello {{email}}\r\n";
    td_enqueue_spec(t,
                    (struct rq_msg_spec){.from = "sender@src.test",
                                         .body = tpl,
                                         .body_len = sizeof(tpl) - 1,
                                         .personalised = true},
                    rcpts);
}

/* The server resets a pooled connection while it is idle; the next job, a
 * personalised one (a chunk of two transactions), takes it and the first submit's
 * RSET cannot be written. The session must outlive that submit: the second one is
 * handed to the same session (under ASan this was a use-after-free in try_next),
 * and both go on a fresh connection. */
static void test_reset_idle_pooled_chunk(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(ts_sink_start(&sink, (const char *[]){"--threads", "1", "--idle-timeout", "1",
                                                           "--fault", "reset-idle", NULL}),
                     0);
    struct td t;
    td_setup(&t, sink.port, "[queue.outbound.limits]\nconnections = 1\nidle-timeout = 60\n");
    td_enqueue(&t, (const char *[]){"ann@a.test", NULL}, "Message-ID: <r1@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.out[first]->res[0].outcome, RQ_DELIVERED);
    td_report_and_promote(&t, b, first);
    /* The loop does not run: the reset waits in the socket until the next write. */
    usleep(1700 * 1000);
    enqueue_personal(&t, (const char *[]){"bob@p.test", "cy@p.test", NULL});
    b = td_run(&t, &first);
    const struct eng_outcome *o = t.out[first];
    assert_int_equal(o->job->nrcpt, 2);
    for (size_t k = 0; k < 2; k++)
        if (o->res[k].outcome != RQ_DELIVERED)
            fail_msg("<%s>: %s %s", o->job->rcpt[k].addr, o->res[k].error, o->res[k].reply);
    assert_int_equal(o->connections_opened, 1);
    assert_int_equal(td_stat(&sink, "connections"), 2);
    assert_int_equal(td_stat(&sink, "transactions"), 3);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* eng_deliverer_free without a shutdown first, one job on the only connection
 * allowed and one waiting for it: both come back deferred ("shutting down"). The
 * close woke the waiting job, which opened a connection nothing closed again (its
 * job never called back, the session leaked). */
static void test_free_with_waiting_job(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(ts_sink_start(&sink, (const char *[]){"--threads", "1", NULL}), 0);
    struct td t;
    td_setup(&t, sink.port,
             "[queue.outbound.limits]\nconnections = 1\nmessages-per-connection = 1\n");
    td_enqueue(&t, (const char *[]){"ann@a.test", NULL}, "Message-ID: <f1@src.test>\r\n\r\nx\r\n");
    td_enqueue(&t, (const char *[]){"bob@b.test", NULL}, "Message-ID: <f2@src.test>\r\n\r\nx\r\n");
    struct rq_batch *b = NULL;
    assert_int_equal(rq_claim(t.q, 64, &b), 2);
    t.want = 2;
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(eng_deliver(t.d, &b->jobs[i], td_cb, &t), 0);
    assert_int_equal(eng_deliverer_busy(t.d), 2);
    assert_int_equal(eng_deliverer_sessions(t.d), 1); /* the second job waits */
    eng_deliverer_free(t.d);
    assert_int_equal(t.nout, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(t.out[i]->res[0].outcome, RQ_DEFERRED);
        if (!strstr(t.out[i]->res[0].reply, "shutting down"))
            fail_msg("<%s>: %s", t.out[i]->job->rcpt[0].addr, t.out[i]->res[0].reply);
    }
    ev_run(t.loop, EVRUN_NOWAIT); /* nothing of the deliverer is left to run */
    eng_dns_cache_free(t.cache);
    ev_loop_destroy(t.loop);
    for (size_t i = 0; i < t.nout; i++)
        eng_outcome_free(t.out[i]);
    rq_batch_free(b);
    rq_free(t.q);
    eng_conf_free(&t.conf);
    ts_sink_stop(&sink, NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multi_rcpt),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_msgs_per_conn),
        cmocka_unit_test(test_personalised),
        cmocka_unit_test(test_rcpt_faults),
        cmocka_unit_test(test_disconnect_data),
        cmocka_unit_test(test_stall_greeting),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_shutdown_aborts),
        cmocka_unit_test(test_shutdown_hands_back),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_no_pipelining),
        cmocka_unit_test(test_dead_idle_pooled),
        cmocka_unit_test(test_smtputf8),
        cmocka_unit_test(test_smtputf8_not_offered),
        cmocka_unit_test(test_smtputf8_refused_on_pooled),
        cmocka_unit_test(test_personalised_split),
        cmocka_unit_test(test_reset_idle_pooled_chunk),
        cmocka_unit_test(test_free_with_waiting_job),
    };
    if (getenv("TD_FILTER"))
        cmocka_set_test_filter(getenv("TD_FILTER"));
    return cmocka_run_group_tests(tests, td_group_setup, td_group_teardown);
}
