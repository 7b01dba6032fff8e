/* `salvo run` without deliveries: arguments, --drain on an empty queue, a Redis
 * that is down at start (wait, reconnect with backoff, then drain), SIGTERM while
 * Redis is down (graceful exit 0 with the summary), and the new config keys. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "redis_server.h"
#include "test_engine_run_util.h"
#include "testutil.h"

static struct tu_redis srv;
static char *dir;

static int setup(void **state)
{
    (void)state;
    if (tu_redis_start(&srv, false, NULL))
        return -1;
    dir = tu_mkdtemp();
    unsetenv("SALVO_CONFIG");
    setenv("SALVO_REDIS_URL", srv.url, 1);
    if (!dir)
        return -1;
    free(tu_write_file(dir, "salvo.toml",
                       "[server.workers]\nthreads = 2\npin = false\n[queue]\nlease = \"1s\"\n"));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_redis_stop(&srv);
    tu_rmtree(dir);
    free(dir);
    return 0;
}

static struct tu_result run(const char *const *args)
{
    const char *argv[16] = {tu_salvo_bin()};
    for (size_t i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];
    struct tu_result r;
    assert_int_equal(tu_run_env(argv, NULL, 30, dir, NULL, &r), 0);
    return r;
}
#define RUN(...) run((const char *const[]){__VA_ARGS__, NULL})

static void help_and_bad_arguments(void **state)
{
    (void)state;
    struct tu_result r = RUN("run", "--help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: salvo run [-c FILE] [--drain]"));
    assert_non_null(strstr(r.out, "delivered N, deferred N, bounced N"));
    tu_result_free(&r);
    r = RUN("run", "--bogus");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: run: unknown argument '--bogus'; see salvo run --help\n");
    tu_result_free(&r);
    r = RUN("run", "-c");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: run: -c needs a FILE; see salvo run --help\n");
    tu_result_free(&r);
}

static void bad_durations_are_config_errors(void **state)
{
    (void)state;
    char *bad = tu_write_file(dir, "bad.toml",
                              "[queue]\nlease = \"soon\"\n[server]\nshutdown-timeout = \"0s\"\n");
    assert_non_null(bad);
    struct tu_result r = RUN("run", "-c", bad, "--drain");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "bad.toml:2:9: queue.lease: 'soon' is not a duration"));
    assert_non_null(
        strstr(r.err, "bad.toml:4:20: server.shutdown-timeout: '0s' is not a duration"));
    assert_string_equal(r.out, "");
    tu_result_free(&r);
    free(bad);
    bad = tu_write_file(dir, "short.toml", "[queue]\nlease = \"100ms\"\n");
    r = RUN("run", "-c", bad, "--drain");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "queue.lease: '100ms' is too short (at least 300ms)"));
    tu_result_free(&r);
    free(bad);
}

static void drain_on_empty_queue_exits_at_once(void **state)
{
    (void)state;
    int64_t t0 = tr_now_ms();
    struct tu_result r = RUN("run", "--drain");
    int64_t took = tr_now_ms() - t0;
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "delivered 0, deferred 0, bounced 0, transactions 0, "
                                  "connections 0 (reused 0), tls full 0 resumed 0, in "));
    /* One line only. */
    assert_non_null(strchr(r.out, '\n'));
    assert_string_equal(strchr(r.out, '\n'), "\n");
    print_message("drain on an empty queue: %lld ms\n", (long long)took);
    assert_true(took < 3000);
    tu_result_free(&r);
}

/* Redis down when `salvo run --drain` starts: it keeps trying (backoff), and once
 * Redis is back it connects and drains. */
static void waits_for_redis_then_drains(void **state)
{
    (void)state;
    tu_redis_kill9(&srv);
    struct tr_proc p;
    assert_int_equal(tr_start(&p, dir, "down", (const char *const[]){"run", "--drain", NULL}), 0);
    assert_true(tr_wait_for_text(p.err_path, "reconnecting", 5000));
    /* Still waiting, not failed. */
    tr_sleep_ms(700);
    assert_int_equal(tr_wait(&p, 0), -1);
    assert_int_equal(tu_redis_restart(&srv), 0);
    int st = tr_wait(&p, 15000);
    char *out = tr_out(&p), *err = tr_err(&p);
    if (st != 0)
        print_message("stderr: %s\n", err);
    assert_int_equal(st, 0);
    assert_non_null(strstr(err, "connection refused"));
    assert_non_null(strstr(err, "redis 127.0.0.1:"));
    assert_non_null(strstr(err, ": connected"));
    assert_non_null(strstr(out, "delivered 0, deferred 0, bounced 0"));
    free(out);
    free(err);
}

/* SIGTERM while Redis is down: graceful stop, exit 0, the summary line. */
static void sigterm_while_redis_down(void **state)
{
    (void)state;
    tu_redis_kill9(&srv);
    struct tr_proc p;
    assert_int_equal(tr_start(&p, dir, "term", (const char *const[]){"run", NULL}), 0);
    assert_true(tr_wait_for_text(p.err_path, "reconnecting", 5000));
    kill(p.pid, SIGTERM);
    int st = tr_wait(&p, 5000);
    char *out = tr_out(&p);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "delivered 0, deferred 0, bounced 0"));
    free(out);
    assert_int_equal(tu_redis_restart(&srv), 0);
}

/* SIGINT is graceful too. */
static void sigint_stops_gracefully(void **state)
{
    (void)state;
    struct tr_proc p;
    assert_int_equal(tr_start(&p, dir, "int2", (const char *const[]){"run", NULL}), 0);
    assert_true(tr_wait_for_text(p.err_path, "running: 2 workers", 5000));
    kill(p.pid, SIGINT);
    int st = tr_wait(&p, 5000);
    assert_int_equal(st, 0);
    char *err = tr_err(&p);
    assert_non_null(strstr(err, "signal 2: stopping"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_and_bad_arguments),
        cmocka_unit_test(bad_durations_are_config_errors),
        cmocka_unit_test(drain_on_empty_queue_exits_at_once),
        cmocka_unit_test(waits_for_redis_then_drains),
        cmocka_unit_test(sigterm_while_redis_down),
        cmocka_unit_test(sigint_stops_gracefully),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
