/* IDN end to end with the real programs: `salvo enqueue` (CSV and --to) with
 * UTF-8 domains, `salvo run --drain` to a salvo-sink without SMTPUTF8. The sink's
 * protocol trace shows what it received: the A-label forms; the UTF-8 local part
 * bounced (5.6.7) instead. A bad IDN is refused at enqueue with its reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_engine_e2e_util.h"
#include "test_engine_run_util.h"
#include "testutil.h"

static struct te_env env;

static void test_enqueue_run_idn(void **state)
{
    (void)state;
    assert_int_equal(te_env_flush(&env), 0);
    struct ts_sink sink;
    assert_int_equal(ts_sink_start(&sink, (const char *[]){"--threads", "1", "--log-level", "debug",
                                                           "--fault", "no-smtputf8", NULL}),
                     0);
    te_write_conf(&env, sink.port, "");
    free(tu_write_file(env.dir, "idn.csv",
                       "email\n"
                       "user@m\xc3\xbcnchen.test\n"
                       "\xc3\xbc@m\xc3\xbcnchen.test\n"
                       "ann@\xe4\xbe\x8b\xe3\x81\x88\xe3\x80\x82jp\n")); /* 例え。jp */
    free(tu_write_file(env.dir, "idn.eml", "Message-ID: <idn@salvo.test>\nSubject: x\n\nhi\n"));
    const char *argv[] = {tu_salvo_bin(),
                          "enqueue",
                          "--from",
                          "news@b\xc3\xbc"
                          "cher.test",
                          "--recipients",
                          "idn.csv",
                          "--template",
                          "idn.eml",
                          NULL};
    struct tu_result r;
    assert_int_equal(tu_run_env(argv, NULL, 60, env.dir, NULL, &r), 0);
    if (r.status != 0)
        fail_msg("enqueue: %s", r.err);
    tu_result_free(&r);

    free(te_run_drain(&env, "run", 30000));
    char *err = ts_sink_stderr(&sink);
    const char *want[] = {
        "<<< MAIL FROM:<news@xn--bcher-kva.test> SIZE=", "<<< RCPT TO:<user@xn--mnchen-3ya.test>\n",
        "<<< RCPT TO:<ann@xn--r8jz45g.jp>\n"};
    for (size_t i = 0; i < 3; i++)
        if (!strstr(err, want[i]))
            fail_msg("the sink did not get '%s'", want[i]);
    assert_null(strstr(err, "SMTPUTF8\n"));
    assert_null(strstr(err, "RCPT TO:<\xc3\xbc"));
    free(err);
    assert_int_equal(te_sink_stat(&sink, "pairs"), 2);
    assert_int_equal(tr_queue_stat(env.dir, "delivered"), 2);
    assert_int_equal(tr_queue_stat(env.dir, "bounced"), 1);
    assert_int_equal(tr_queue_stat(env.dir, "scheduled"), 0);
    ts_sink_stop(&sink, NULL, 0);
}

static void test_enqueue_bad_idn(void **state)
{
    (void)state;
    te_write_conf(&env, 0, "");
    free(tu_write_file(env.dir, "m.eml", "Subject: x\n\nhi\n"));
    const char *argv[] = {tu_salvo_bin(),           "enqueue", "--from", "a@src.test", "--to",
                          "user@\xe2\x98\x83.test", "m.eml",   NULL};
    struct tu_result r;
    assert_int_equal(tu_run_env(argv, NULL, 60, env.dir, NULL, &r), 0);
    assert_int_equal(r.status, 1);
    if (!strstr(r.err,
                "--to: malformed address 'user@\xe2\x98\x83.test': symbol or emoji in domain"))
        fail_msg("%s", r.err);
    tu_result_free(&r);
}

static int setup(void **state)
{
    (void)state;
    return te_env_setup(&env);
}

static int teardown(void **state)
{
    (void)state;
    te_env_teardown(&env);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enqueue_run_idn),
        cmocka_unit_test(test_enqueue_bad_idn),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
