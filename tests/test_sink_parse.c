/* The sink's pure parts, in process: SMTP command parser, DATA scanner fed in every
 * possible split, the lock-free pair set under two threads, fault specs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "sink.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *line, struct sink_cmd *c)
{
    return sink_cmd_parse(line, strlen(line), c);
}

static void cmd_parser(void **state)
{
    (void)state;
    struct sink_cmd c;
    assert_int_equal(parse("MAIL FROM:<a@b.test> SIZE=12345 BODY=8BITMIME SMTPUTF8", &c), 0);
    assert_int_equal(c.verb, SINK_VERB_MAIL);
    assert_int_equal(c.path_len, 8);
    assert_memory_equal(c.path, "a@b.test", 8);
    assert_true(c.has_size);
    assert_int_equal(c.size, 12345);
    assert_int_equal(c.body, SINK_BODY_8BITMIME);
    assert_true(c.smtputf8);

    assert_int_equal(parse("mail from: <>", &c), 0); /* space after colon tolerated */
    assert_int_equal(c.path_len, 0);
    assert_int_equal(parse("RCPT TO:<\"a b>c\"@d> NOTIFY=SUCCESS,FAILURE", &c), 0);
    assert_int_equal(c.path_len, 9);
    assert_int_equal(parse("EHLO  host.test  ", &c), 0);
    assert_int_equal(c.arg_len, 9);
    assert_int_equal(parse("QUIT", &c), 0);
    assert_int_equal(c.verb, SINK_VERB_QUIT);
    assert_int_equal(parse("starttls", &c), 0);
    assert_int_equal(c.verb, SINK_VERB_STARTTLS);

    assert_int_equal(parse("XYZZY", &c), SINK_CMD_UNKNOWN);
    assert_int_equal(parse("MAILFROM:<a@b>", &c), SINK_CMD_UNKNOWN);
    assert_int_equal(parse("MAIL TO:<a@b>", &c), SINK_CMD_SYNTAX);
    assert_int_equal(c.verb, SINK_VERB_MAIL);
    assert_int_equal(parse("MAIL FROM:<a@b", &c), SINK_CMD_SYNTAX);
    assert_int_equal(parse("MAIL FROM:<a b@c>", &c), SINK_CMD_SYNTAX);
    assert_int_equal(parse("MAIL FROM:<a@b>x", &c), SINK_CMD_SYNTAX);
    assert_int_equal(parse("RCPT TO:<>", &c), SINK_CMD_SYNTAX);
    assert_int_equal(parse("MAIL FROM:<a@b> SIZE=12x", &c), SINK_CMD_BADPARAM);
    assert_int_equal(parse("MAIL FROM:<a@b> SIZE=18446744073709551616", &c), SINK_CMD_TOOLARGE);
    assert_int_equal(parse("MAIL FROM:<a@b> SIZE=18446744073709551615", &c), 0);
    assert_int_equal(parse("MAIL FROM:<a@b> BODY=9BIT", &c), SINK_CMD_BADPARAM);
    assert_int_equal(parse("MAIL FROM:<a@b> SMTPUTF8=yes", &c), SINK_CMD_BADPARAM);
    assert_int_equal(parse("RCPT TO:<a@b> SIZE=1", &c), SINK_CMD_BADPARAM);
    assert_int_equal(parse("DATA now", &c), SINK_CMD_SYNTAX);
    assert_int_equal(parse("EHLO", &c), SINK_CMD_SYNTAX);
    assert_int_equal(parse("VRFY", &c), SINK_CMD_SYNTAX);
    assert_int_equal(sink_cmd_parse("NOOP\0x", 6, &c), SINK_CMD_SYNTAX);
    assert_int_equal(sink_cmd_parse("MAIL FROM:<a\x01@b>", 17, &c), SINK_CMD_SYNTAX);
}

/* Feeds `wire` split at every position (and byte by byte): the result must not
 * depend on where reads end. */
static void feed_all_splits(const char *wire, size_t want_consumed, uint64_t want_bytes,
                            const char *want_msgid)
{
    size_t n = strlen(wire);
    for (size_t split = 0; split <= n + 1; split++) {
        struct sink_data *d = malloc(sizeof(*d));
        sink_data_begin(d);
        size_t off = 0;
        bool done = false;
        while (off < n && !done) {
            size_t chunk = split == n + 1 ? 1 : (off < split ? split - off : n - off);
            if (chunk == 0)
                chunk = n - off;
            off += sink_data_feed(d, wire + off, chunk, &done);
        }
        assert_true(done);
        assert_int_equal(off, want_consumed);
        assert_int_equal(sink_data_bytes(d), want_bytes);
        if (want_msgid) {
            assert_true(d->have_msgid);
            assert_int_equal(d->msgid_len, strlen(want_msgid));
            assert_memory_equal(d->msgid, want_msgid, d->msgid_len);
        } else {
            assert_false(d->have_msgid);
        }
        free(d);
    }
}

static void data_scanner(void **state)
{
    (void)state;
    const char *w1 = "Message-ID: <a@b>\r\n\r\n..x\r\n.\r\nMAIL";
    feed_all_splits(w1, strlen(w1) - 4, strlen("Message-ID: <a@b>\r\n\r\n.x\r\n"), "<a@b>");
    /* folded Message-ID; a header after the body is not a header */
    const char *w2 =
        "Subject: s\r\nMessage-Id:\r\n\t<f@b>\r\nX: y\r\n\r\nMessage-ID: <no>\r\n.\r\n";
    feed_all_splits(w2, strlen(w2), strlen(w2) - 3, "<f@b>");
    /* empty message; a bare LF and a bare CR are content; ".\r" + "x" is unstuffed */
    feed_all_splits(".\r\n", 3, 0, NULL);
    const char *w3 = "a\nb\rc\r\n.\rx\r\n.\r\n";
    feed_all_splits(w3, strlen(w3), strlen("a\nb\rc\r\n\rx\r\n"), NULL);
    /* the first header ends the search: a second Message-ID is ignored */
    const char *w4 = "message-id: <1>\r\nMessage-ID: <2>\r\n\r\n.\r\n";
    feed_all_splits(w4, strlen(w4), strlen(w4) - 3, "<1>");
}

struct track_arg {
    struct sink_track *t;
    int fresh, dup;
};

static void *track_thread(void *p)
{
    struct track_arg *a = p;
    for (uint64_t i = 0; i < 200000; i++) {
        int r = sink_track_insert(a->t, sink_pair_key(sink_hash(&i, sizeof(i), 1), 7));
        if (r == 1)
            a->fresh++;
        else if (r == 0)
            a->dup++;
    }
    return NULL;
}

/* Two threads insert the same 200,000 keys: each key is new exactly once. */
static void track_concurrent(void **state)
{
    (void)state;
    struct sink_track *t = sink_track_new(400000);
    assert_non_null(t);
    struct track_arg a = {t, 0, 0}, b = {t, 0, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, track_thread, &a);
    pthread_create(&tb, NULL, track_thread, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.fresh + b.fresh, 200000);
    assert_int_equal(a.dup + b.dup, 200000);
    sink_track_free(t);

    t = sink_track_new(2);
    assert_int_equal(sink_track_insert(t, 10), 1);
    assert_int_equal(sink_track_insert(t, 11), 1);
    assert_int_equal(sink_track_insert(t, 10), 0);
    assert_int_equal(sink_track_insert(t, 12), -ENOSPC);
    sink_track_free(t);
}

static void fault_specs(void **state)
{
    (void)state;
    struct sink_faults f;
    memset(&f, 0, sizeof(f));
    char err[256];
    assert_int_equal(sink_fault_parse(&f, "rcpt:user:with:colons:451", err, sizeof(err)), 0);
    assert_string_equal(f.rcpt[0].pattern, "user:with:colons");
    assert_int_equal(sink_fault_match(f.rcpt, f.n_rcpt, "x-user:with:colons-y", 20), 451);
    assert_int_equal(sink_fault_match(f.rcpt, f.n_rcpt, "user", 4), 0);
    assert_int_equal(sink_fault_parse(&f, "data:every:3:554", err, sizeof(err)), 0);
    assert_int_equal(f.data_every, 3);
    assert_int_equal(f.data_code, 554);
    assert_int_equal(sink_fault_parse(&f, "hostile:longline:dot", err, sizeof(err)), 0);
    assert_int_equal(f.longline, 1u << SINK_STAGE_DOT);
    assert_int_equal(sink_fault_parse(&f, "stall:rcpt", err, sizeof(err)), 0);
    assert_int_equal(f.stall, 1u << SINK_STAGE_RCPT);
    assert_int_equal(sink_fault_parse(&f, "delay:greeting:1500", err, sizeof(err)), 0);
    assert_int_equal(f.delay_ms[SINK_STAGE_GREETING], 1500);
    assert_int_equal(sink_fault_parse(&f, "delay:nowhere:5", err, sizeof(err)), -EINVAL);
    assert_int_equal(sink_fault_parse(&f, "no-starttls", err, sizeof(err)), 0);
    assert_true(f.no_starttls);
    assert_int_equal(sink_fault_parse(&f, "rcpt::451", err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "bad --fault 'rcpt::451': expected rcpt:PATTERN:CODE");
    assert_int_equal(sink_fault_parse(&f, "data:every:x:451", err, sizeof(err)), -EINVAL);
    sink_faults_free(&f);
    sink_faults_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cmd_parser),
        cmocka_unit_test(data_scanner),
        cmocka_unit_test(track_concurrent),
        cmocka_unit_test(fault_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
