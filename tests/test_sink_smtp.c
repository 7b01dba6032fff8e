/* salvo-sink as an SMTP server: pipelined sessions, exact counters (SIGUSR1 and
 * --stats FILE), dot-unstuffing, (Message-ID, recipient) pairs and duplicates,
 * over-long lines, command sequencing errors. Real sink process, real sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "test_sink_util.h"
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T 5000 /* ms to wait for a reply */

static void expect_reply(struct ts_client *c, int code)
{
    char text[4096];
    int got = ts_reply(c, text, sizeof(text), T);
    if (got != code)
        fail_msg("expected %d, got %d: %s", code, got, got > 0 ? text : "");
}

static void expect_reply_text(struct ts_client *c, int code, const char *needle)
{
    char text[4096];
    int got = ts_reply(c, text, sizeof(text), T);
    if (got != code || !strstr(text, needle))
        fail_msg("expected %d with '%s', got %d: %s", code, needle, got, got > 0 ? text : "");
}

static void start(struct ts_sink *s, const char *const extra[])
{
    assert_int_equal(ts_sink_start(s, extra), 0);
}

static void client(struct ts_client *c, struct ts_sink *s)
{
    assert_int_equal(ts_connect(c, s->port), 0);
    expect_reply_text(c, 220, "ESMTP salvo-sink");
}

static void assert_counter(const char *json, const char *key, uint64_t want)
{
    uint64_t got = ts_json_u64(json, key);
    if (got != want)
        fail_msg("%s: expected %llu, got %llu in %s", key, (unsigned long long)want,
                 (unsigned long long)got, json);
}

/* Three transactions over two connections, every group pipelined in one write:
 * pairs and duplicates across connections (and possibly threads). */
static void pipelined_session_exact_counters(void **state)
{
    (void)state;
    struct ts_sink s;
    const char *args[] = {"--threads", "2", NULL};
    start(&s, args);
    struct ts_client *c = malloc(sizeof(*c)), *d = malloc(sizeof(*d));
    client(c, &s);

    const char *body1 = "Message-ID: <m1@salvo.test>\r\nSubject: one\r\n\r\nhello\r\n";
    const char *body2 = "Message-ID:\r\n <m2@salvo.test>\r\n\r\nsecond body\r\nline 2\r\n";
    const char *body3 = "message-id: <m1@salvo.test>\r\n\r\nresent\r\n";

    /* EHLO + first transaction in one write (RFC 2920: DATA ends the group). */
    assert_int_equal(ts_send(c,
                             "EHLO client.test\r\nMAIL FROM:<a@x.test> SIZE=100 BODY=8BITMIME\r\n"
                             "RCPT TO:<r1@y.test>\r\nRCPT TO:<r2@y.test>\r\nDATA\r\n"),
                     0);
    char text[4096];
    assert_int_equal(ts_reply(c, text, sizeof(text), T), 250);
    assert_non_null(strstr(text, "250-PIPELINING\r\n"));
    assert_non_null(strstr(text, "250-SIZE 52428800\r\n"));
    assert_non_null(strstr(text, "250-8BITMIME\r\n"));
    assert_non_null(strstr(text, "250-ENHANCEDSTATUSCODES\r\n"));
    assert_non_null(strstr(text, "250 SMTPUTF8\r\n"));
    assert_null(strstr(text, "STARTTLS")); /* no certificate given */
    expect_reply(c, 250);
    expect_reply_text(c, 250, "2.1.5");
    expect_reply(c, 250);
    expect_reply(c, 354);
    /* Message 1, then transaction 2 pipelined right behind the final dot. */
    assert_int_equal(ts_send(c, body1), 0);
    assert_int_equal(ts_send(c, ".\r\nMAIL FROM:<> SMTPUTF8\r\nRCPT TO:<r3@y.test>\r\nDATA\r\n"),
                     0);
    expect_reply_text(c, 250, "queued as");
    expect_reply(c, 250);
    expect_reply(c, 250);
    expect_reply(c, 354);
    assert_int_equal(ts_send(c, body2), 0);
    assert_int_equal(ts_send(c, ".\r\n"), 0);
    expect_reply(c, 250);

    /* Message 3 on a second connection re-sends m1 to r1 (a duplicate) and r4. */
    client(d, &s);
    assert_int_equal(ts_send(d, "HELO d.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<r1@y.test>\r\n"
                                "RCPT TO:<r4@y.test>\r\nDATA\r\n"),
                     0);
    expect_reply(d, 250);
    expect_reply(d, 250);
    expect_reply(d, 250);
    expect_reply(d, 250);
    expect_reply(d, 354);
    assert_int_equal(ts_send(d, body3), 0);
    assert_int_equal(ts_send(d, ".\r\nQUIT\r\n"), 0);
    expect_reply(d, 250);
    expect_reply_text(d, 221, "2.0.0");
    assert_int_equal(ts_wait_eof(d, T), 0);

    char json[4096];
    assert_int_equal(ts_sink_stats(&s, json, sizeof(json)), 0);
    assert_counter(json, "connections", 2);
    assert_counter(json, "connections_open", 1);
    assert_counter(json, "transactions", 3);
    assert_counter(json, "recipients", 5);
    assert_counter(json, "bytes", strlen(body1) + strlen(body2) + strlen(body3));
    assert_counter(json, "pairs", 4); /* m1/r1 m1/r2 m2/r3 m1/r4 */
    assert_counter(json, "duplicates", 1);
    assert_counter(json, "no_message_id", 0);
    assert_counter(json, "threads", 2);
    assert_non_null(strstr(json, "\"tracking\":true"));

    /* RSET drops a transaction: nothing more is counted. */
    assert_int_equal(ts_send(c, "MAIL FROM:<a@x.test>\r\nRCPT TO:<r9@y.test>\r\nRSET\r\nNOOP\r\n"),
                     0);
    expect_reply(c, 250);
    expect_reply(c, 250);
    expect_reply(c, 250);
    expect_reply(c, 250);
    ts_close(c);
    ts_close(d);

    char final[4096];
    assert_int_equal(ts_sink_stop(&s, final, sizeof(final)), 0);
    assert_counter(final, "transactions", 3);
    assert_counter(final, "recipients", 5);
    assert_counter(final, "connections_open", 0);
    free(c);
    free(d);
}

/* --stats FILE: replaced atomically on SIGUSR1 and at exit; no temp file left. */
static void stats_file_atomic(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char path[4096];
    snprintf(path, sizeof(path), "%s/stats.json", dir);
    struct ts_sink s;
    const char *args[] = {"--stats", path, "--no-track", NULL};
    start(&s, args);
    struct ts_client *c = malloc(sizeof(*c));
    client(c, &s);
    assert_int_equal(ts_send(c, "EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"), 0);
    for (int i = 0; i < 4; i++)
        expect_reply(c, i < 3 ? 250 : 354);
    assert_int_equal(ts_send(c, "Message-ID: <s@x>\r\n\r\nabc\r\n.\r\n"), 0);
    expect_reply(c, 250);

    kill(s.pid, SIGUSR1);
    struct stat st;
    for (int i = 0; i < 500 && stat(path, &st) != 0; i++)
        usleep(10000);
    char *json = NULL;
    for (int i = 0; i < 500; i++) { /* the file appears whole or not at all */
        struct tu_result r;
        const char *cat[] = {"cat", path, NULL};
        assert_int_equal(tu_run(cat, NULL, 5, &r), 0);
        if (r.status == 0 && r.out_len > 0) {
            json = strdup(r.out);
            tu_result_free(&r);
            break;
        }
        tu_result_free(&r);
        usleep(10000);
    }
    assert_non_null(json);
    assert_true(json[strlen(json) - 1] == '\n');
    assert_counter(json, "transactions", 1);
    assert_counter(json, "bytes", strlen("Message-ID: <s@x>\r\n\r\nabc\r\n"));
    assert_counter(json, "pairs", 0); /* --no-track */
    assert_non_null(strstr(json, "\"tracking\":false"));
    free(json);
    ts_close(c);
    free(c);
    assert_int_equal(ts_sink_stop(&s, NULL, 0), 0);
    /* Final write at exit; the directory holds only stats.json. */
    struct tu_result r;
    const char *ls[] = {"ls", "-A", dir, NULL};
    assert_int_equal(tu_run(ls, NULL, 5, &r), 0);
    assert_string_equal(r.out, "stats.json\n");
    tu_result_free(&r);
    tu_rmtree(dir);
    free(dir);
}

/* Sends `s` in pieces with pauses, so the sink sees them in separate reads. */
static void send_split(struct ts_client *c, const char *const parts[])
{
    for (int i = 0; parts[i]; i++) {
        assert_int_equal(ts_send(c, parts[i]), 0);
        usleep(30000);
    }
}

/* RFC 5321 4.5.2: the leading dot of a line is removed; the terminator is found even
 * when CRLF.CRLF is split over several reads; bytes counted = the unstuffed message. */
static void dot_unstuffing_and_split_terminator(void **state)
{
    (void)state;
    struct ts_sink s;
    start(&s, NULL);
    struct ts_client *c = malloc(sizeof(*c));
    client(c, &s);
    assert_int_equal(ts_send(c, "EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"), 0);
    for (int i = 0; i < 4; i++)
        expect_reply(c, i < 3 ? 250 : 354);
    /* On the wire (stuffed):            unstuffed:
     *   Subject: dots                     Subject: dots
     *                                     (empty)
     *   ..                                .
     *   ..leading                         .leading
     *   ...two                            ..two
     *   a.b.                              a.b.
     *   (empty)                           (empty)
     *   .                                 end; CRLF.CRLF arrives as "\r" "\n." "\r" "\n"
     */
    const char *wire[] = {"Subject: dots\r\n\r\n..\r",
                          "\n..lea",
                          "ding\r\n.",
                          ".",
                          ".two\r\na.b.\r\n",
                          "\r",
                          "\n.",
                          "\r",
                          "\n",
                          NULL};
    const char *unstuffed = "Subject: dots\r\n\r\n.\r\n.leading\r\n..two\r\na.b.\r\n\r\n";
    send_split(c, wire);
    expect_reply(c, 250);
    /* A message that is only the terminator right after DATA: 0 bytes. */
    assert_int_equal(ts_send(c, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"), 0);
    expect_reply(c, 250);
    expect_reply(c, 250);
    expect_reply(c, 354);
    assert_int_equal(ts_send(c, ".\r\n"), 0);
    expect_reply(c, 250);
    char json[4096];
    assert_int_equal(ts_sink_stats(&s, json, sizeof(json)), 0);
    assert_counter(json, "transactions", 2);
    assert_counter(json, "bytes", strlen(unstuffed));
    assert_counter(json, "no_message_id", 2);
    assert_counter(json, "pairs", 0);
    ts_close(c);
    free(c);
    assert_int_equal(ts_sink_stop(&s, NULL, 0), 0);
}

/* Over-long command lines get 500 and the session goes on, whether the line arrives
 * in one read or over many (longer than the sink's input buffer). */
static void long_line_500_session_survives(void **state)
{
    (void)state;
    struct ts_sink s;
    start(&s, NULL);
    struct ts_client *c = malloc(sizeof(*c));
    client(c, &s);
    size_t n = 5000;
    char *line = malloc(n + 16);
    memcpy(line, "NOOP ", 5);
    memset(line + 5, 'x', n - 5);
    memcpy(line + n, "\r\nNOOP\r\n", 9);
    assert_int_equal(ts_send(c, line), 0);
    expect_reply_text(c, 500, "5.5.2 Error: line too long");
    expect_reply(c, 250);
    free(line);

    /* 100 KB without a newline, in pieces, then the end of the line. */
    char chunk[10000];
    memset(chunk, 'y', sizeof(chunk));
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ts_send_n(c, chunk, sizeof(chunk)), 0);
        usleep(5000);
    }
    assert_int_equal(ts_send(c, "yyy\r\nEHLO x\r\n"), 0);
    expect_reply_text(c, 500, "line too long");
    expect_reply(c, 250);
    /* A line of exactly the limit (2048 with CRLF) is still a command. */
    char ok[2049];
    memcpy(ok, "NOOP ", 5);
    memset(ok + 5, 'z', 2046 - 5);
    memcpy(ok + 2046, "\r\n", 3);
    assert_int_equal(ts_send(c, ok), 0);
    expect_reply(c, 250);
    char json[4096];
    assert_int_equal(ts_sink_stats(&s, json, sizeof(json)), 0);
    assert_counter(json, "lines_too_long", 2);
    ts_close(c);
    free(c);
    assert_int_equal(ts_sink_stop(&s, NULL, 0), 0);
}

/* Sequencing and syntax errors, each with its RFC 5321 / 3463 code. */
static void command_errors(void **state)
{
    (void)state;
    struct ts_sink s;
    const char *args[] = {"--max-size", "1000", "--hostname", "sink.test", NULL};
    start(&s, args);
    struct ts_client *c = malloc(sizeof(*c));
    assert_int_equal(ts_connect(c, s.port), 0);
    expect_reply_text(c, 220, "220 sink.test ESMTP");
    struct {
        const char *cmd;
        int code;
        const char *text;
    } steps[] = {
        {"FROB x", 500, "5.5.2"},
        {"", 500, "5.5.2"},
        {"MAIL FROM:<a@x>", 503, "send HELO/EHLO first"},
        {"EHLO", 501, "5.5.4"},
        {"EHLO c.test", 250, "250 SMTPUTF8"},
        {"EHLO a\rb\x01"
         "c",
         250, "250-sink.test greets a?b?c\r\n"}, /* no forged lines */
        {"RCPT TO:<b@y>", 503, "need MAIL"},
        {"DATA", 503, "need MAIL"},
        {"MAIL FROM:a@x", 501, "5.5.4"},
        {"MAIL FROM:<a@x> FROB=1", 555, "5.5.4"},
        {"MAIL FROM:<a@x> SIZE=1001", 552, "5.3.4"},
        {"MAIL FROM:<a@x> SIZE=99999999999999999999999", 552, "5.3.4"},
        {"mail from:<a@x> size=1000", 250, "2.1.0"},
        {"MAIL FROM:<a@x>", 503, "nested MAIL"},
        {"DATA", 554, "no valid recipients"},
        {"RCPT TO:<>", 501, "5.5.4"},
        {"RCPT TO:<\"quoted >user\"@y.test> NOTIFY=NEVER", 250, "2.1.5"},
        {"DATA extra", 501, "5.5.4"},
        {"VRFY someone", 252, "2.0.0"},
        {"HELP", 214, "salvo-sink"},
        {"STARTTLS", 502, "5.5.1"},
        {"RSET", 250, "2.0.0"},
        {"RCPT TO:<b@y>", 503, "need MAIL"},
        {"QUIT", 221, "Bye"},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        char line[256];
        snprintf(line, sizeof(line), "%s\r\n", steps[i].cmd);
        assert_int_equal(ts_send(c, line), 0);
        char text[4096];
        int got = ts_reply(c, text, sizeof(text), T);
        if (got != steps[i].code || !strstr(text, steps[i].text))
            fail_msg("'%s': expected %d '%s', got %d: %s", steps[i].cmd, steps[i].code,
                     steps[i].text, got, got > 0 ? text : "");
    }
    assert_int_equal(ts_wait_eof(c, T), 0);
    ts_close(c);
    free(c);
    char final[4096];
    assert_int_equal(ts_sink_stop(&s, final, sizeof(final)), 0);
    assert_counter(final, "transactions", 0);
    assert_counter(final, "syntax_errors", 7);
}

/* Many pipelined messages over several connections on two threads: every one
 * counted once, in the sum of the per-thread counters. */
static void many_connections_two_threads(void **state)
{
    (void)state;
    struct ts_sink s;
    const char *args[] = {"--threads", "2", NULL};
    start(&s, args);
    enum { NCONN = 6, NMSG = 40 };
    struct ts_client *c = calloc(NCONN, sizeof(*c));
    for (int i = 0; i < NCONN; i++) {
        client(&c[i], &s);
        assert_int_equal(ts_send(&c[i], "EHLO x\r\n"), 0);
        expect_reply(&c[i], 250);
    }
    size_t bytes = 0;
    for (int m = 0; m < NMSG; m++) {
        for (int i = 0; i < NCONN; i++) {
            char buf[512];
            snprintf(buf, sizeof(buf),
                     "MAIL FROM:<a@x>\r\nRCPT TO:<u%d@y>\r\nRCPT TO:<v%d@y>\r\nDATA\r\n", i, i);
            assert_int_equal(ts_send(&c[i], buf), 0);
        }
        for (int i = 0; i < NCONN; i++) {
            expect_reply(&c[i], 250);
            expect_reply(&c[i], 250);
            expect_reply(&c[i], 250);
            expect_reply(&c[i], 354);
            char body[512];
            int n = snprintf(body, sizeof(body), "Message-ID: <%d.%d@x>\r\n\r\nbody %d\r\n", m, i,
                             m * i);
            bytes += (size_t)n;
            assert_int_equal(ts_send(&c[i], body), 0);
            assert_int_equal(ts_send(&c[i], ".\r\n"), 0);
        }
        for (int i = 0; i < NCONN; i++)
            expect_reply(&c[i], 250);
    }
    for (int i = 0; i < NCONN; i++)
        ts_close(&c[i]);
    free(c);
    char final[4096];
    assert_int_equal(ts_sink_stop(&s, final, sizeof(final)), 0);
    assert_counter(final, "connections", NCONN);
    assert_counter(final, "transactions", NCONN * NMSG);
    assert_counter(final, "recipients", 2 * NCONN * NMSG);
    assert_counter(final, "pairs", 2 * NCONN * NMSG);
    assert_counter(final, "duplicates", 0);
    assert_counter(final, "bytes", bytes);
}

/* RFC 5321 4.5.3.2.7: an idle client gets 421 and is disconnected (--idle-timeout);
 * an active one is not. */
static void idle_timeout_421(void **state)
{
    (void)state;
    struct ts_sink s;
    const char *args[] = {"--idle-timeout", "2", "--hostname", "sink.test", NULL};
    start(&s, args);
    struct ts_client *c = malloc(sizeof(*c)), *d = malloc(sizeof(*d));
    client(c, &s);
    client(d, &s);
    assert_int_equal(ts_send(c, "EHLO x\r\n"), 0);
    expect_reply(c, 250);
    for (int i = 0; i < 16; i++) { /* d stays busy for 3.2 s (margin: 1.8 s per gap) */
        usleep(200000);
        assert_int_equal(ts_send(d, "NOOP\r\n"), 0);
        expect_reply(d, 250);
    }
    expect_reply_text(c, 421, "421 4.4.2 sink.test Error: timeout exceeded");
    assert_int_equal(ts_wait_eof(c, T), 0);
    char json[4096];
    assert_int_equal(ts_sink_stats(&s, json, sizeof(json)), 0);
    assert_counter(json, "timeouts", 1);
    assert_counter(json, "connections_open", 1);
    ts_close(c);
    ts_close(d);
    free(c);
    free(d);
    assert_int_equal(ts_sink_stop(&s, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pipelined_session_exact_counters),
        cmocka_unit_test(stats_file_atomic),
        cmocka_unit_test(dot_unstuffing_and_split_terminator),
        cmocka_unit_test(long_line_500_session_survives),
        cmocka_unit_test(command_errors),
        cmocka_unit_test(many_connections_two_threads),
        cmocka_unit_test(idle_timeout_421),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
