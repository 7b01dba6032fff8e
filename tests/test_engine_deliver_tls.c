/* engine/deliver with STARTTLS to a real salvo-sink: TLS facts, session resumption
 * on a new connection, the seed scenario (rules relaxing TLS by retry_num and
 * last_error), "require" never falling back to plaintext, and pooled sessions
 * reused only when they satisfy the attempt's policy. */
#include "test_engine_deliver_util.h"
#include "test_tls_helpers.h"

static char *certs;

static const char seed_rules[] =
    "[queue.outbound.tls]\n"
    "allow-invalid-certs = [ { if = \"retry_num > 0 && last_error == 'tls'\", then = true},\n"
    "{ else = false } ]\n"
    "starttls = [ { if = \"retry_num > 1 && last_error == 'tls'\", then = \"disable\"},\n"
    "{ else = \"require\" } ]\n";

/* `rest` plus queue.outbound.tls.ca-file (in rest's [queue.outbound.tls] if any). */
static char *toml(const char *rest)
{
    static char buf[4096];
    const char hdr[] = "[queue.outbound.tls]\n";
    const char *h = strstr(rest, hdr);
    if (h)
        snprintf(buf, sizeof(buf), "%.*sca-file = \"%s\"\n%s", (int)(h - rest + strlen(hdr)), rest,
                 tt_path(certs, "ca.pem"), h + strlen(hdr));
    else
        snprintf(buf, sizeof(buf), "%s%sca-file = \"%s\"\n", rest, hdr, tt_path(certs, "ca.pem"));
    return buf;
}

static int sink_tls(struct ts_sink *s, const char *cert, const char *fault)
{
    char c[64], k[64];
    snprintf(c, sizeof(c), "%s.pem", cert);
    snprintf(k, sizeof(k), "%s.key", cert);
    const char *argv[] = {"--threads",
                          "1",
                          "--tls-cert",
                          tt_path(certs, c),
                          "--tls-key",
                          tt_path(certs, k),
                          fault ? "--fault" : NULL,
                          fault,
                          NULL};
    return ts_sink_start(s, argv);
}

static void test_starttls_resume(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_tls(&sink, "wild", NULL), 0);
    struct td t;
    /* The relay is 127.0.0.1, not a name in the certificate: allow-invalid. */
    td_setup(&t, sink.port,
             toml("[queue.outbound.limits]\nmessages-per-connection = 1\n"
                  "[queue.outbound.tls]\nstarttls = \"require\"\nallow-invalid-certs = true\n"));
    td_enqueue(&t, (const char *[]){"a@example.test", NULL},
               "Message-ID: <t1@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    struct eng_outcome *o = t.out[first];
    assert_int_equal(o->res[0].outcome, RQ_DELIVERED);
    if (strncmp(o->res[0].tls, "TLSv1.3 TLS_", 12) != 0 || !strstr(o->res[0].tls, " unverified: "))
        fail_msg("tls facts: %s", o->res[0].tls);
    assert_int_equal(o->tls_full, 1);
    td_report_and_promote(&t, b, first);
    /* The first session was closed after its one message; the next one resumes. */
    td_enqueue(&t, (const char *[]){"b@example.test", NULL},
               "Message-ID: <t2@src.test>\r\n\r\nx\r\n");
    b = td_run(&t, &first);
    o = t.out[first];
    assert_int_equal(o->res[0].outcome, RQ_DELIVERED);
    assert_int_equal(o->connections_opened, 1);
    assert_int_equal(o->tls_resumed, 1);
    assert_int_equal(td_stat(&sink, "connections"), 2);
    assert_int_equal(td_stat(&sink, "tls_handshakes_full"), 1);
    assert_int_equal(td_stat(&sink, "tls_handshakes_resumed"), 1);
    assert_int_equal(td_stat(&sink, "transactions"), 2);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* Seed: a self-signed certificate. Attempt 0 (strict) fails `tls`; attempt 1 with
 * retry_num 1 and last_error tls allows invalid certificates: delivered encrypted. */
static void test_seed_untrusted(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_tls(&sink, "self", NULL), 0);
    struct td t;
    td_setup(&t, sink.port, toml(seed_rules));
    td_enqueue(&t, (const char *[]){"a@example.test", NULL},
               "Message-ID: <s1@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(b->jobs[0].retry_num, 0);
    struct eng_outcome *o = t.out[first];
    assert_int_equal(o->res[0].outcome, RQ_DEFERRED);
    assert_string_equal(o->res[0].error, "tls");
    if (!strstr(o->res[0].reply, "TLS handshake with 127.0.0.1 failed"))
        fail_msg("reply: %s", o->res[0].reply);
    assert_int_equal(td_stat(&sink, "transactions"), 0);
    td_report_and_promote(&t, b, first);

    b = td_run(&t, &first);
    assert_int_equal(b->jobs[0].retry_num, 1);
    assert_string_equal(b->jobs[0].last_error, "tls");
    o = t.out[first];
    assert_int_equal(o->res[0].outcome, RQ_DELIVERED);
    if (strncmp(o->res[0].tls, "TLSv1.3 ", 8) != 0 || !strstr(o->res[0].tls, "unverified"))
        fail_msg("tls facts: %s", o->res[0].tls);
    assert_int_equal(td_stat(&sink, "transactions"), 1);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* Seed: no STARTTLS offered. Deferred `tls` at retries 0 and 1, plaintext at 2. */
static void test_seed_no_starttls(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_tls(&sink, "wild", "no-starttls"), 0);
    struct td t;
    td_setup(&t, sink.port, toml(seed_rules));
    td_enqueue(&t, (const char *[]){"a@example.test", NULL},
               "Message-ID: <s2@src.test>\r\n\r\nx\r\n");
    for (unsigned r = 0; r < 3; r++) {
        size_t first;
        struct rq_batch *b = td_run(&t, &first);
        assert_int_equal(b->jobs[0].retry_num, r);
        struct eng_outcome *o = t.out[first];
        if (r < 2) {
            assert_int_equal(o->res[0].outcome, RQ_DEFERRED);
            assert_string_equal(o->res[0].error, "tls");
            assert_string_equal(o->res[0].reply, "STARTTLS required but not offered by 127.0.0.1");
            assert_int_equal(td_stat(&sink, "transactions"), 0);
        } else {
            assert_int_equal(o->res[0].outcome, RQ_DELIVERED);
            assert_string_equal(o->res[0].tls, "none");
            assert_int_equal(td_stat(&sink, "transactions"), 1);
        }
        td_report_and_promote(&t, b, first);
    }
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* starttls = "require": never plaintext, however often it is retried; bounced once
 * the next retry would come after queue.schedule.expire. */
static void test_require_never_plain(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_tls(&sink, "wild", "no-starttls"), 0);
    struct td t;
    td_setup(&t, sink.port,
             toml("[queue.outbound.tls]\nstarttls = \"require\"\nallow-invalid-certs = true\n"));
    td_enqueue(&t, (const char *[]){"a@example.test", NULL},
               "Message-ID: <s3@src.test>\r\n\r\nx\r\n");
    for (unsigned r = 0; r < 4; r++) {
        size_t first;
        struct rq_batch *b = td_run(&t, &first);
        assert_int_equal(t.out[first]->res[0].outcome, RQ_DEFERRED);
        assert_string_equal(t.out[first]->res[0].error, "tls");
        td_report_and_promote(&t, b, first);
    }
    assert_int_equal(td_stat(&sink, "transactions"), 0);
    assert_int_equal(td_stat(&sink, "connections"), 4);
    td_teardown(&t);

    /* expire 1s, retry 2m: the next attempt would be past expiry -> bounced */
    td_setup(&t, sink.port,
             toml("[queue.outbound.tls]\nstarttls = \"require\"\n"
                  "[queue.schedule]\nexpire = \"1s\"\nretry = [\"2m\"]\n"));
    td_enqueue(&t, (const char *[]){"a@example.test", NULL},
               "Message-ID: <s4@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    struct eng_outcome *o = t.out[first];
    assert_int_equal(o->res[0].outcome, RQ_BOUNCED);
    assert_string_equal(o->res[0].error, "expired (last error tls): STARTTLS required but not "
                                         "offered by 127.0.0.1");
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    assert_int_equal(td_stat(&sink, "transactions"), 0);
    ts_sink_stop(&sink, NULL, 0);
}

/* A pooled plaintext session (opened under "disable") is not reused for an
 * attempt whose rules say "require": a new TLS connection is opened. */
static void test_pool_policy(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_tls(&sink, "wild", NULL), 0);
    struct td t;
    td_setup(&t, sink.port,
             toml("[queue.outbound.tls]\nallow-invalid-certs = true\n"
                  "starttls = [ { if = \"rcpt_domain == 'plain.test'\", then = \"disable\"},\n"
                  "{ else = \"require\" } ]\n"));
    td_enqueue(&t, (const char *[]){"a@plain.test", NULL},
               "Message-ID: <p1@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.out[first]->res[0].outcome, RQ_DELIVERED);
    assert_string_equal(t.out[first]->res[0].tls, "none");
    td_report_and_promote(&t, b, first);

    td_enqueue(&t, (const char *[]){"b@example.test", NULL},
               "Message-ID: <p2@src.test>\r\n\r\nx\r\n");
    b = td_run(&t, &first);
    struct eng_outcome *o = t.out[first];
    assert_int_equal(o->res[0].outcome, RQ_DELIVERED);
    assert_int_equal(o->connections_opened, 1);
    assert_int_equal(o->connections_reused, 0);
    assert_memory_equal(o->res[0].tls, "TLSv1.", 6);
    td_report_and_promote(&t, b, first);

    /* "disable" may use either; "require" again reuses the TLS session. */
    td_enqueue(&t, (const char *[]){"c@example.test", NULL},
               "Message-ID: <p3@src.test>\r\n\r\nx\r\n");
    b = td_run(&t, &first);
    o = t.out[first];
    assert_int_equal(o->res[0].outcome, RQ_DELIVERED);
    assert_int_equal(o->connections_reused, 1);
    assert_memory_equal(o->res[0].tls, "TLSv1.", 6);
    td_report_and_promote(&t, b, first);
    assert_int_equal(td_stat(&sink, "connections"), 2);
    assert_int_equal(td_stat(&sink, "tls_handshakes_full"), 1);
    assert_int_equal(td_stat(&sink, "transactions"), 3);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* Five jobs at once, one connection allowed, starttls require: they all queue on
 * the one session while it is still connecting (it will be TLS or nothing). */
static void test_require_queue_on_connecting(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_tls(&sink, "wild", NULL), 0);
    struct td t;
    td_setup(&t, sink.port,
             toml("[queue.outbound.limits]\nconnections = 1\n"
                  "[queue.outbound.tls]\nstarttls = \"require\"\nallow-invalid-certs = true\n"));
    td_enqueue(
        &t, (const char *[]){"a@d1.test", "b@d2.test", "c@d3.test", "d@d4.test", "e@d5.test", NULL},
        "Message-ID: <q@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 5);
    for (size_t i = first; i < t.nout; i++) {
        assert_int_equal(t.out[i]->res[0].outcome, RQ_DELIVERED);
        assert_memory_equal(t.out[i]->res[0].tls, "TLSv1.", 6);
    }
    assert_int_equal(td_stat(&sink, "connections"), 1);
    assert_int_equal(td_stat(&sink, "tls_handshakes_full"), 1);
    assert_int_equal(td_stat(&sink, "transactions"), 5);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* Jobs arriving together for a destination with no cached TLS session: the first
 * connection pays the full handshake, the others wait for it to settle and resume
 * its session (before: one full handshake per connection opened at the start). */
static void test_tls_warm_up(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_tls(&sink, "wild", NULL), 0);
    struct td t;
    td_setup(&t, sink.port,
             toml("[queue.outbound.limits]\nconnections = 4\nmessages-per-connection = 2\n"
                  "[queue.outbound.tls]\nstarttls = \"require\"\nallow-invalid-certs = true\n"));
    td_enqueue(&t,
               (const char *[]){"a@d1.test", "b@d2.test", "c@d3.test", "d@d4.test", "e@d5.test",
                                "f@d6.test", "g@d7.test", "h@d8.test", NULL},
               "Message-ID: <warm@src.test>\r\n\r\nx\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 8);
    for (size_t i = first; i < t.nout; i++)
        assert_int_equal(t.out[i]->res[0].outcome, RQ_DELIVERED);
    uint64_t conns = td_stat(&sink, "connections");
    assert_true(conns >= 4); /* 8 jobs, 2 messages per connection */
    assert_int_equal(td_stat(&sink, "tls_handshakes_full"), 1);
    assert_int_equal(td_stat(&sink, "tls_handshakes_resumed"), conns - 1);
    assert_int_equal(td_stat(&sink, "transactions"), 8);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* Two 1 MB bodies over TLS: one already in wire form (written straight from the
 * shared buffer), one with bare LFs and leading dots (converted chunk by chunk).
 * The sink's byte count is the message as RFC 5321 defines it. */
static void test_large_bodies(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_tls(&sink, "wild", NULL), 0);
    struct td t;
    td_setup(&t, sink.port,
             toml("[queue.outbound.tls]\nstarttls = \"require\"\nallow-invalid-certs = true\n"));
    struct sv_buf clean = {0}, messy = {0};
    sv_buf_puts(&clean, "Message-ID: <big1@src.test>\r\n\r\n");
    sv_buf_puts(&messy, "Message-ID: <big2@src.test>\n\n");
    size_t messy_wire = strlen("Message-ID: <big2@src.test>\r\n\r\n");
    for (int i = 0; clean.len < 1000000; i++) {
        sv_buf_printf(&clean, "line %d of a clean body, nothing to change\r\n", i);
        int n0 = (int)messy.len;
        sv_buf_printf(&messy, "%sline %d with a bare LF\n", i % 3 == 0 ? "." : "", i);
        messy_wire += messy.len - (size_t)n0 + 1; /* LF -> CRLF; the dot is unstuffed */
    }
    sv_buf_puts(&messy, "no final newline");
    messy_wire += strlen("no final newline") + 2;
    td_enqueue(&t, (const char *[]){"a@example.test", NULL}, clean.ptr);
    td_enqueue(&t, (const char *[]){"b@example.test", NULL}, messy.ptr);
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    assert_int_equal(t.nout - first, 2);
    for (size_t i = first; i < t.nout; i++)
        assert_int_equal(t.out[i]->res[0].outcome, RQ_DELIVERED);
    assert_int_equal(td_stat(&sink, "transactions"), 2);
    assert_int_equal(td_stat(&sink, "bytes"), clean.len + messy_wire);
    sv_buf_free(&clean);
    sv_buf_free(&messy);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* [remote.NAME] tls.implicit: TLS from the first byte (port 465 style). The test
 * server completes the handshake and then says nothing: the attempt ends on the
 * greeting timeout, with the handshake counted by the server and the TLS facts
 * in the outcome. */
static void test_implicit_tls(void **state)
{
    (void)state;
    struct tls_server *srv;
    char err[256];
    struct tls_cert_pair pair = {tt_path(certs, "wild.pem"), tt_path(certs, "wild.key")};
    assert_int_equal(tls_server_new(&pair, 1, &srv, err, sizeof(err)), 0);
    int port = 0;
    struct tt_smtpd *sd = tt_smtpd_start(srv, TT_IMPLICIT, &port);
    assert_non_null(sd);
    struct td t;
    td_setup(&t, port,
             toml("[remote.sink.tls]\nimplicit = true\n"
                  "[queue.outbound.timeouts]\ngreeting = \"300ms\"\n"
                  "[queue.outbound.tls]\nallow-invalid-certs = true\n"));
    td_enqueue(&t, (const char *[]){"a@example.test", NULL}, "x\r\n");
    size_t first;
    struct rq_batch *b = td_run(&t, &first);
    struct eng_outcome *o = t.out[first];
    assert_int_equal(o->res[0].outcome, RQ_DEFERRED);
    assert_string_equal(o->res[0].error, "io");
    assert_memory_equal(o->res[0].tls, "TLSv1.3 ", 8);
    int resumed = -1;
    assert_int_equal(tt_smtpd_handshakes(sd, &resumed), 1);
    td_report_and_promote(&t, b, first);
    td_teardown(&t);
    tt_smtpd_stop(sd);
    tls_server_free(srv);
}

/* limits.connections holds across TLS policies: a "require" job arriving while
 * the only connection is a busy plaintext one ("disable") waits for it to close
 * instead of opening a second. */
static void test_limit_across_policies(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_tls(&sink, "wild", "delay:dot:400"), 0);
    struct td t;
    td_setup(&t, sink.port,
             toml("[queue.outbound.limits]\nconnections = 1\n"
                  "[queue.outbound.tls]\nallow-invalid-certs = true\n"
                  "starttls = [ { if = \"rcpt_domain == 'plain.test'\", then = \"disable\"},\n"
                  "{ else = \"require\" } ]\n"));
    td_enqueue(&t, (const char *[]){"a@plain.test", NULL},
               "Message-ID: <lp1@src.test>\r\n\r\nx\r\n");
    struct rq_batch *b1 = NULL, *b2 = NULL;
    assert_int_equal(rq_claim(t.q, 10, &b1), 1);
    t.want = 2;
    assert_int_equal(eng_deliver(t.d, &b1->jobs[0], td_cb, &t), 0);
    for (int i = 0; i < 10; i++) /* the plaintext session reaches the final dot */
        ev_run(t.loop, EVRUN_NOWAIT), usleep(10000);
    td_enqueue(&t, (const char *[]){"b@example.test", NULL},
               "Message-ID: <lp2@src.test>\r\n\r\nx\r\n");
    assert_int_equal(rq_claim(t.q, 10, &b2), 1);
    assert_int_equal(eng_deliver(t.d, &b2->jobs[0], td_cb, &t), 0);
    for (int i = 0; i < 10; i++)
        ev_run(t.loop, EVRUN_NOWAIT), usleep(10000);
    assert_int_equal(t.nout, 0);
    assert_int_equal(td_stat(&sink, "connections"), 1); /* the second one waits */
    ev_timer tm;
    ev_timer_init(&tm, td_timeout, 10., 0.);
    ev_timer_start(t.loop, &tm);
    ev_run(t.loop, 0);
    ev_timer_stop(t.loop, &tm);
    assert_int_equal(t.nout, 2);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(t.out[i]->res[0].outcome, RQ_DELIVERED);
    assert_string_equal(t.out[0]->res[0].tls, "none");
    assert_memory_equal(t.out[1]->res[0].tls, "TLSv1.", 6);
    assert_int_equal(td_stat(&sink, "connections"), 2);
    assert_int_equal(td_stat(&sink, "transactions"), 2);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(rq_report(t.q, t.out[i]->job, t.out[i]->res), 0);
    assert_int_equal(rq_flush(t.q), 0);
    rq_batch_free(b1);
    rq_batch_free(b2);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

/* The value of `field` in the event for recipient `rcpt` (redis-cli XRANGE output:
 * one line per id, field and value), or NULL. Owned. */
static char *event_field(const struct td *t, const char *rcpt, const char *field)
{
    char key[64];
    snprintf(key, sizeof(key), "salvo:{%s}:events", t->queue);
    char *out = tu_redis_cli(&td_redis, (const char *[]){"XRANGE", key, "-", "+", NULL});
    assert_non_null(out);
    char *lines[512];
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l && n < 512;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    char *found = NULL;
    /* An event: its id line ("123-0"), then field/value lines up to the next id. */
    for (size_t e = 0; e < n && !found; e++) {
        if (!strchr(lines[e], '-') || strspn(lines[e], "0123456789-") != strlen(lines[e]))
            continue;
        size_t end = e + 1;
        while (end < n && !(strspn(lines[end], "0123456789-") == strlen(lines[end]) &&
                            strchr(lines[end], '-') && (end - e) % 2 == 1))
            end++;
        bool mine = false;
        for (size_t f = e + 1; f + 1 < end; f += 2)
            mine |= strcmp(lines[f], "r") == 0 && strcmp(lines[f + 1], rcpt) == 0;
        for (size_t f = e + 1; mine && f + 1 < end; f += 2)
            if (strcmp(lines[f], field) == 0)
                found = strdup(lines[f + 1]);
        if (mine && !found)
            found = strdup("(absent)");
    }
    free(out);
    return found;
}

static void expect_field(const struct td *t, const char *rcpt, const char *field, const char *want)
{
    char *got = event_field(t, rcpt, field);
    if (!got || strcmp(got, want) != 0)
        fail_msg("event <%s> %s: expected '%s', got '%s'", rcpt, field, want, got ? got : "(none)");
    free(got);
}

/* Events carry the TLS facts as fields (version, cipher, verified, resumed) and
 * the attempt's duration in ms; a plaintext delivery says tls=none and nothing
 * else about TLS. */
static void test_event_tls_fields(void **state)
{
    (void)state;
    struct ts_sink sink;
    assert_int_equal(sink_tls(&sink, "ipsan", "delay:dot:30"), 0);
    struct td t;
    td_setup(&t, sink.port,
             toml("[queue.outbound.limits]\nmessages-per-connection = 1\n"
                  "[queue.outbound.tls]\n"
                  "starttls = [ { if = \"rcpt_domain == 'plain.test'\", then = \"disable\"},\n"
                  "{ else = \"require\" } ]\n"));
    const char *rcpts[] = {"a@example.test", "b@example.test", "c@plain.test"};
    for (int i = 0; i < 3; i++) {
        char body[64];
        snprintf(body, sizeof(body), "Message-ID: <ev%d@src.test>\r\n\r\nx\r\n", i);
        td_enqueue(&t, (const char *[]){rcpts[i], NULL}, body);
        size_t first;
        struct rq_batch *b = td_run(&t, &first);
        const struct rq_result *r = &t.out[first]->res[0];
        assert_int_equal(r->outcome, RQ_DELIVERED);
        assert_true(r->us >= 30000 && r->us < 5000000);
        td_report_and_promote(&t, b, first);
    }
    for (int i = 0; i < 2; i++) {
        expect_field(&t, rcpts[i], "t", "delivered");
        expect_field(&t, rcpts[i], "tls_version", "TLSv1.3");
        char *c = event_field(&t, rcpts[i], "tls_cipher");
        assert_non_null(c);
        if (strncmp(c, "TLS_", 4) != 0)
            fail_msg("cipher: %s", c);
        free(c);
        expect_field(&t, rcpts[i], "tls_verified", "yes");
        expect_field(&t, rcpts[i], "tls_resumed", i == 0 ? "no" : "yes");
        expect_field(&t, rcpts[i], "tls", "(absent)");
        char *ms = event_field(&t, rcpts[i], "ms");
        assert_non_null(ms);
        /* milliseconds with three decimals; the sink holds each final reply 30 ms */
        char *dot = strchr(ms, '.');
        long v = strtol(ms, NULL, 10);
        if (v < 30 || v > 5000 || !dot || strlen(dot) != 4)
            fail_msg("ms: %s", ms);
        free(ms);
    }
    expect_field(&t, rcpts[2], "tls", "none");
    expect_field(&t, rcpts[2], "tls_version", "(absent)");
    expect_field(&t, rcpts[2], "tls_verified", "(absent)");
    char *ms = event_field(&t, rcpts[2], "ms");
    assert_non_null(ms);
    assert_true(strtol(ms, NULL, 10) >= 30);
    free(ms);
    assert_int_equal(td_stat(&sink, "tls_handshakes_resumed"), 1);
    td_teardown(&t);
    ts_sink_stop(&sink, NULL, 0);
}

static int setup(void **state)
{
    if (td_group_setup(state) != 0)
        return -1;
    certs = tu_mkdtemp();
    return certs && tt_make_certs(certs) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    tu_rmtree(certs);
    free(certs);
    return td_group_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_tls_fields), cmocka_unit_test(test_limit_across_policies),
        cmocka_unit_test(test_starttls_resume),  cmocka_unit_test(test_seed_untrusted),
        cmocka_unit_test(test_seed_no_starttls), cmocka_unit_test(test_require_never_plain),
        cmocka_unit_test(test_pool_policy),      cmocka_unit_test(test_require_queue_on_connecting),
        cmocka_unit_test(test_large_bodies),     cmocka_unit_test(test_tls_warm_up),
        cmocka_unit_test(test_implicit_tls),
    };
    if (getenv("TD_FILTER"))
        cmocka_set_test_filter(getenv("TD_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
