/* salvo-sink --fault SPEC: every kind, with the exact reply codes, disconnects seen
 * as EOF, stalls seen as a client timeout, hostile replies as they arrive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "test_sink_util.h"
#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define T 5000

static int reply(struct ts_client *c, char *text, size_t len)
{
    return ts_reply(c, text, len, T);
}

static void expect(struct ts_client *c, int code, const char *needle)
{
    char text[4096];
    int got = reply(c, text, sizeof(text));
    if (got != code || (needle && !strstr(text, needle)))
        fail_msg("expected %d '%s', got %d: %s", code, needle ? needle : "", got,
                 got > 0 ? text : "");
}

static struct ts_client *session(struct ts_sink *s, const char *fault)
{
    const char *args[] = {"--fault", fault, NULL};
    assert_int_equal(ts_sink_start(s, args), 0);
    struct ts_client *c = malloc(sizeof(*c));
    assert_int_equal(ts_connect(c, s->port), 0);
    return c;
}

static void finish(struct ts_sink *s, struct ts_client *c, char *json, size_t len)
{
    ts_close(c);
    free(c);
    assert_int_equal(ts_sink_stop(s, json, len), 0);
}

static void counter(const char *json, const char *key, uint64_t want)
{
    uint64_t got = ts_json_u64(json, key);
    if (got != want)
        fail_msg("%s: expected %llu, got %llu in %s", key, (unsigned long long)want,
                 (unsigned long long)got, json);
}

/* Greeting, EHLO and a MAIL FROM, all answered normally. */
static void open_txn(struct ts_client *c)
{
    expect(c, 220, NULL);
    assert_int_equal(ts_send(c, "EHLO x\r\nMAIL FROM:<a@x.test>\r\n"), 0);
    expect(c, 250, NULL);
    expect(c, 250, NULL);
}

static void rcpt_codes(void **state)
{
    (void)state;
    struct ts_sink s;
    const char *args[] = {"--fault", "rcpt:bad:550", "--fault", "rcpt:tmp:451", NULL};
    assert_int_equal(ts_sink_start(&s, args), 0);
    struct ts_client *c = malloc(sizeof(*c));
    assert_int_equal(ts_connect(c, s.port), 0);
    open_txn(c);
    assert_int_equal(ts_send(c, "RCPT TO:<x-bad@y.test>\r\nRCPT TO:<tmp@y.test>\r\n"
                                "RCPT TO:<ok@y.test>\r\nDATA\r\n"),
                     0);
    expect(c, 550, "550 5.1.1 <x-bad@y.test>");
    expect(c, 451, "451 4.1.1 <tmp@y.test>");
    expect(c, 250, NULL);
    expect(c, 354, NULL);
    assert_int_equal(ts_send(c, "Message-ID: <f@x>\r\n\r\nx\r\n.\r\n"), 0);
    expect(c, 250, NULL);
    char json[4096];
    finish(&s, c, json, sizeof(json));
    counter(json, "transactions", 1);
    counter(json, "recipients", 1);
    counter(json, "rcpt_rejected", 2);
    counter(json, "pairs", 1);
}

static void mail_code(void **state)
{
    (void)state;
    struct ts_sink s;
    struct ts_client *c = session(&s, "mail:spammer:550");
    expect(c, 220, NULL);
    assert_int_equal(ts_send(c, "EHLO x\r\nMAIL FROM:<spammer@x.test>\r\nMAIL FROM:<ok@x>\r\n"), 0);
    expect(c, 250, NULL);
    expect(c, 550, "550 5.7.1 <spammer@x.test>");
    expect(c, 250, NULL);
    char json[4096];
    finish(&s, c, json, sizeof(json));
    counter(json, "mail_rejected", 1);
}

/* data:every:2:451: the 2nd and 4th messages are refused after their final dot. */
static void data_every(void **state)
{
    (void)state;
    struct ts_sink s;
    struct ts_client *c = session(&s, "data:every:2:451");
    open_txn(c);
    int want[] = {250, 451, 250, 451, 250};
    for (int i = 0; i < 5; i++) {
        if (i > 0) {
            assert_int_equal(ts_send(c, "MAIL FROM:<a@x>\r\n"), 0);
            expect(c, 250, NULL);
        }
        assert_int_equal(ts_send(c, "RCPT TO:<b@y>\r\nDATA\r\n"), 0);
        expect(c, 250, NULL);
        expect(c, 354, NULL);
        assert_int_equal(ts_send(c, "Subject: x\r\n\r\nbody\r\n.\r\n"), 0);
        expect(c, want[i], want[i] == 451 ? "451 4.3.0" : "2.0.0");
    }
    char json[4096];
    finish(&s, c, json, sizeof(json));
    counter(json, "transactions", 3);
    counter(json, "data_rejected", 2);
    counter(json, "bytes", 3 * strlen("Subject: x\r\n\r\nbody\r\n"));
}

/* disconnect:data closes mid-message, after the 354 and some content. */
static void disconnect_data(void **state)
{
    (void)state;
    struct ts_sink s;
    struct ts_client *c = session(&s, "disconnect:data");
    open_txn(c);
    assert_int_equal(ts_send(c, "RCPT TO:<b@y>\r\nDATA\r\n"), 0);
    expect(c, 250, NULL);
    expect(c, 354, NULL);
    assert_int_equal(ts_send(c, "Subject: half a message\r\n"), 0);
    assert_int_equal(ts_wait_eof(c, T), 0);
    char json[4096];
    finish(&s, c, json, sizeof(json));
    counter(json, "transactions", 0);
    counter(json, "connections_open", 0);
}

/* disconnect:dot: the whole message arrives, the connection closes without a reply
 * (the at-least-once duplicate case) and nothing is counted. */
static void disconnect_dot(void **state)
{
    (void)state;
    struct ts_sink s;
    struct ts_client *c = session(&s, "disconnect:dot");
    open_txn(c);
    assert_int_equal(ts_send(c, "RCPT TO:<b@y>\r\nDATA\r\n"), 0);
    expect(c, 250, NULL);
    expect(c, 354, NULL);
    assert_int_equal(ts_send(c, "Message-ID: <d@x>\r\n\r\nx\r\n.\r\n"), 0);
    assert_int_equal(reply(c, NULL, 0), -1); /* EOF, no reply */
    char json[4096];
    finish(&s, c, json, sizeof(json));
    counter(json, "transactions", 0);
    counter(json, "pairs", 0);
}

static void disconnect_greeting(void **state)
{
    (void)state;
    struct ts_sink s;
    struct ts_client *c = session(&s, "disconnect:greeting");
    assert_int_equal(reply(c, NULL, 0), -1);
    finish(&s, c, NULL, 0);
}

/* stall:greeting: accepted, never answered: the client's timeout fires. */
static void stall_greeting(void **state)
{
    (void)state;
    struct ts_sink s;
    struct ts_client *c = session(&s, "stall:greeting");
    assert_int_equal(ts_send(c, "EHLO x\r\n"), 0);
    assert_int_equal(ts_reply(c, NULL, 0, 700), -2);
    char json[4096];
    assert_int_equal(ts_sink_stats(&s, json, sizeof(json)), 0);
    counter(json, "connections_open", 1); /* still open, just silent */
    finish(&s, c, NULL, 0);
}

/* stall:data: no reply to DATA; stall:dot: no reply after the final dot. */
static void stall_data_and_dot(void **state)
{
    (void)state;
    const char *faults[] = {"stall:data", "stall:dot"};
    for (int i = 0; i < 2; i++) {
        struct ts_sink s;
        struct ts_client *c = session(&s, faults[i]);
        open_txn(c);
        assert_int_equal(ts_send(c, "RCPT TO:<b@y>\r\nDATA\r\n"), 0);
        expect(c, 250, NULL);
        if (i == 0) {
            assert_int_equal(ts_reply(c, NULL, 0, 700), -2);
        } else {
            expect(c, 354, NULL);
            assert_int_equal(ts_send(c, "x\r\n.\r\n"), 0);
            assert_int_equal(ts_reply(c, NULL, 0, 700), -2);
        }
        char json[4096];
        finish(&s, c, json, sizeof(json));
        counter(json, "transactions", 0);
    }
}

/* hostile:multiline: "250-" lines without end; we read 1 MB and still no last line. */
static void hostile_multiline(void **state)
{
    (void)state;
    struct ts_sink s;
    struct ts_client *c = session(&s, "hostile:multiline");
    size_t total = 0;
    char buf[65536];
    while (total < (1u << 20)) {
        struct pollfd p = {c->fd, POLLIN, 0};
        assert_int_equal(poll(&p, 1, T), 1);
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        assert_true(n > 0);
        if (total == 0)
            assert_memory_equal(buf, "250-", 4);
        /* every line is a continuation line: no "250 " at any line start */
        for (ssize_t i = 0; i + 4 <= n; i++)
            if (buf[i] == '\n' && i + 4 < n)
                assert_memory_equal(buf + i + 1, "250-", 4);
        total += (size_t)n;
    }
    finish(&s, c, NULL, 0);
}

/* hostile:longline: the greeting is one 100,000-byte line; the session then works. */
static void hostile_longline(void **state)
{
    (void)state;
    struct ts_sink s;
    struct ts_client *c = session(&s, "hostile:longline");
    char *text = malloc(200000);
    assert_int_equal(ts_reply(c, text, 200000, T), 220);
    assert_int_equal(strlen(text), 4 + 100000 + 2);
    free(text);
    assert_int_equal(ts_send(c, "EHLO x\r\n"), 0);
    expect(c, 250, "PIPELINING");
    finish(&s, c, NULL, 0);
}

/* hostile:badcode: a reply whose code is not three digits (at greeting; and at EHLO
 * with an explicit stage, the greeting being normal). */
static void hostile_badcode(void **state)
{
    (void)state;
    struct ts_sink s;
    struct ts_client *c = session(&s, "hostile:badcode");
    char text[4096];
    assert_int_equal(ts_reply(c, text, sizeof(text), T), -3);
    finish(&s, c, NULL, 0);

    c = session(&s, "hostile:badcode:ehlo");
    expect(c, 220, NULL);
    assert_int_equal(ts_send(c, "EHLO x\r\n"), 0);
    assert_int_equal(ts_reply(c, text, sizeof(text), T), -3);
    finish(&s, c, NULL, 0);
}

/* hostile:multiline:ehlo: the greeting is fine, the EHLO reply never ends. */
static void hostile_multiline_ehlo(void **state)
{
    (void)state;
    struct ts_sink s;
    struct ts_client *c = session(&s, "hostile:multiline:ehlo");
    expect(c, 220, NULL);
    assert_int_equal(ts_send(c, "EHLO x\r\n"), 0);
    /* The reply never completes: our client's buffer (256 KB) overflows first. */
    assert_int_equal(ts_reply(c, NULL, 0, T), -3);
    finish(&s, c, NULL, 0);
}

static long long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* delay:rcpt:300 holds each RCPT reply 300 ms (in order, pipelining intact);
 * delay:dot:200 holds the final reply; the message is still accepted. */
static void delay_replies(void **state)
{
    (void)state;
    struct ts_sink s;
    const char *args[] = {"--fault", "delay:rcpt:300", "--fault", "delay:dot:200", NULL};
    assert_int_equal(ts_sink_start(&s, args), 0);
    struct ts_client *c = malloc(sizeof(*c));
    assert_int_equal(ts_connect(c, s.port), 0);
    open_txn(c);
    long long t0 = ms_now();
    assert_int_equal(ts_send(c, "RCPT TO:<a@y>\r\nRCPT TO:<b@y>\r\nDATA\r\n"), 0);
    assert_int_equal(ts_reply(c, NULL, 0, 150), -2); /* not yet */
    expect(c, 250, "2.1.5");
    expect(c, 250, "2.1.5");
    expect(c, 354, NULL);
    long long t1 = ms_now();
    if (t1 - t0 < 550)
        fail_msg("two delayed RCPT replies came after %lld ms", t1 - t0);
    assert_int_equal(ts_send(c, "Message-ID: <slow@x>\r\n\r\nx\r\n.\r\n"), 0);
    assert_int_equal(ts_reply(c, NULL, 0, 100), -2);
    expect(c, 250, "queued as");
    if (ms_now() - t1 < 180)
        fail_msg("final reply not delayed");
    char json[4096];
    finish(&s, c, json, sizeof(json));
    counter(json, "transactions", 1);
    counter(json, "recipients", 2);
    counter(json, "pairs", 2);
}

/* greeting:554: a refusing greeting, then 503 to everything but QUIT. */
static void greeting_code(void **state)
{
    (void)state;
    struct ts_sink s;
    struct ts_client *c = session(&s, "greeting:554");
    expect(c, 554, "no SMTP service here");
    assert_int_equal(ts_send(c, "EHLO c.test\r\n"), 0);
    expect(c, 503, "no SMTP service here");
    assert_int_equal(ts_send(c, "QUIT\r\n"), 0);
    expect(c, 221, NULL);
    char json[4096];
    finish(&s, c, json, sizeof(json));
}

/* no-pipelining / no-smtputf8: the extension is gone from the EHLO reply. */
static void no_extensions(void **state)
{
    (void)state;
    const char *specs[] = {"no-pipelining", "no-smtputf8"};
    const char *gone[] = {"PIPELINING", "SMTPUTF8"};
    for (int i = 0; i < 2; i++) {
        struct ts_sink s;
        struct ts_client *c = session(&s, specs[i]);
        expect(c, 220, NULL);
        assert_int_equal(ts_send(c, "EHLO c.test\r\n"), 0);
        char text[4096];
        assert_int_equal(reply(c, text, sizeof(text)), 250);
        assert_null(strstr(text, gone[i]));
        assert_non_null(strstr(text, gone[1 - i]));
        assert_non_null(strstr(text, "250 "));
        char json[4096];
        finish(&s, c, json, sizeof(json));
    }
}

/* reset-idle: at --idle-timeout the connection is reset (RST), without the 421. */
static void reset_idle(void **state)
{
    (void)state;
    struct ts_sink s;
    const char *args[] = {"--idle-timeout", "1", "--fault", "reset-idle", NULL};
    assert_int_equal(ts_sink_start(&s, args), 0);
    struct ts_client *c = malloc(sizeof(*c));
    assert_int_equal(ts_connect(c, s.port), 0);
    expect(c, 220, NULL);
    assert_int_equal(ts_send(c, "EHLO c.test\r\n"), 0);
    expect(c, 250, NULL);
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, T), 1);
    char b[512];
    ssize_t n = recv(c->fd, b, sizeof(b), 0);
    if (n != -1 || errno != ECONNRESET)
        fail_msg("expected a reset, got %zd bytes (%s)", n, n < 0 ? strerror(errno) : "");
    char json[4096];
    finish(&s, c, json, sizeof(json));
    counter(json, "timeouts", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rcpt_codes),        cmocka_unit_test(mail_code),
        cmocka_unit_test(data_every),        cmocka_unit_test(disconnect_data),
        cmocka_unit_test(disconnect_dot),    cmocka_unit_test(disconnect_greeting),
        cmocka_unit_test(stall_greeting),    cmocka_unit_test(stall_data_and_dot),
        cmocka_unit_test(hostile_multiline), cmocka_unit_test(hostile_longline),
        cmocka_unit_test(hostile_badcode),   cmocka_unit_test(hostile_multiline_ehlo),
        cmocka_unit_test(delay_replies),     cmocka_unit_test(greeting_code),
        cmocka_unit_test(no_extensions),     cmocka_unit_test(reset_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
