/* salvo rules eval|bench|dump, run as a real process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static char *dir, *seed_path, *bad_path, *lists_path;

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp();
    seed_path = tu_write_file(
        dir, "seed.toml",
        "[queue.outbound.tls]\n"
        "allow-invalid-certs = [ { if = \"retry_num > 0 && last_error == 'tls'\", then = true},\n"
        "{ else = false } ]\n"
        "starttls = [ { if = \"retry_num > 1 && last_error == 'tls'\", then = \"disable\"},\n"
        "{ else = \"require\" } ]\n"
        "[queue.schedule]\n"
        "retry = \"[2m, 5m]\"\n"
        "[queue.outbound]\n"
        "hostname = \"mta.example.com\"\n");
    bad_path = tu_write_file(dir, "bad.toml",
                             "[queue.outbound.tls]\n"
                             "starttls = [ { if = \"retry_num > (1\", then = \"disable\"},\n"
                             "{ else = \"require\" } ]\n");
    lists_path =
        tu_write_file(dir, "lists.toml", "[queue.schedule]\nretry = [\"2m\", \"5m\", \"1h\"]\n");
    return dir && seed_path && bad_path && lists_path ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    free(seed_path);
    free(bad_path);
    free(lists_path);
    return 0;
}

static struct tu_result run(const char *const *args)
{
    const char *argv[32];
    size_t n = 0;
    argv[n++] = tu_salvo_bin();
    argv[n++] = "rules";
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 30, &r), 0);
    return r;
}

static void expect(const char *const *args, int status, const char *out, const char *err)
{
    struct tu_result r = run(args);
    if (r.status != status || (out && strcmp(r.out, out) != 0) || (err && strcmp(r.err, err) != 0))
        fail_msg("%s %s: status %d out '%s' err '%s'", args[0], args[1], r.status, r.out, r.err);
    tu_result_free(&r);
}

static void eval_expr_prints_values(void **state)
{
    (void)state;
    expect((const char *[]){"eval", "--expr", "1 + 2 * 3", NULL}, 0, "7\n", "");
    expect((const char *[]){"eval", "--expr", "7 / 2", NULL}, 0, "3.5\n", "");
    expect((const char *[]){"eval", "--expr", "[1, 'a', 2.5]", NULL}, 0, "[1, a, 2.5]\n", "");
    expect(
        (const char *[]){"eval", "--expr", "'tls' + ':' + retry_num", "--set", "retry_num=4", NULL},
        0, "tls:4\n", "");
    expect((const char *[]){"eval", "--expr", "retry_num > 1 && last_error == 'tls'", "--set",
                            "retry_num=2", "--set", "last_error=tls", NULL},
           0, "1\n", "");
    expect((const char *[]){"eval", "--expr", "mx", "--set", "mx=mx1.example.com", NULL}, 0,
           "mx1.example.com\n", "");
    expect((const char *[]){"eval", "--expr", "count(recipients)", "--set", "recipients=a@x,b@y",
                            NULL},
           0, "2\n", "");
}

static void eval_expr_errors(void **state)
{
    (void)state;
    expect((const char *[]){"eval", "--expr", "retry_num > (1", NULL}, 1, "",
           "expr:1:13: unbalanced parentheses: '(' is never closed\n");
    expect((const char *[]){"eval", "--expr", "retry_num > 1 && lst_error == 'x'", NULL}, 1, "",
           "expr:1:18: unknown variable 'lst_error' (did you mean 'last_error'?)\n");
    expect((const char *[]){"eval", "--expr", "key_get('a', 'b')", NULL}, 1, "",
           "expr:1:1: key_get: not supported yet\n");
    expect((const char *[]){"eval", "--expr", "1", "--set", "retry_nun=2", NULL}, 1, "",
           "salvo: --set: unknown variable 'retry_nun' (did you mean 'retry_num'?)\n");
    expect((const char *[]){"eval", "--expr", "1", "--set", "bogus=2", NULL}, 1, "",
           "salvo: --set: unknown variable 'bogus'\n");
    expect((const char *[]){"eval", "--expr", "1", "--set", "last_error=oops", NULL}, 1, "",
           "salvo: --set: last_error must be one of none, dns, unexpected-reply, connection, "
           "tls, dane, mta-sts, rate, concurrency, io, got 'oops'\n");
    expect((const char *[]){"eval", "--expr", "1", "--set", "retry_num=x", NULL}, 1, "",
           "salvo: --set: retry_num needs a number, got 'x'\n");
    expect((const char *[]){"eval", NULL}, 1, NULL, NULL);
}

static void eval_config_settings(void **state)
{
    (void)state;
    const char *st = "queue.outbound.tls.starttls";
    const char *ai = "queue.outbound.tls.allow-invalid-certs";
    expect((const char *[]){"eval", "-c", seed_path, "--key", st, NULL}, 0, "require\n", "");
    expect((const char *[]){"eval", "-c", seed_path, "--key", st, "--set", "retry_num=2", "--set",
                            "last_error=tls", NULL},
           0, "disable\n", "");
    expect((const char *[]){"eval", "-c", seed_path, "--key", st, "--set", "retry_num=1", "--set",
                            "last_error=tls", NULL},
           0, "require\n", "");
    expect((const char *[]){"eval", "-c", seed_path, "--key", ai, "--set", "retry_num=1", "--set",
                            "last_error=tls", NULL},
           0, "true\n", "");
    expect((const char *[]){"eval", "-c", seed_path, "--key", ai, "--set", "retry_num=3", "--set",
                            "last_error=dns", NULL},
           0, "false\n", "");
    expect((const char *[]){"eval", "-c", seed_path, "--key", "queue.schedule.retry", NULL}, 0,
           "[120000, 300000]\n", "");
    expect((const char *[]){"eval", "-c", lists_path, "--key", "queue.schedule.retry", NULL}, 0,
           "[120000, 300000, 3600000]\n", "");
    expect((const char *[]){"eval", "-c", seed_path, "--key", "queue.outbound.hostname", NULL}, 0,
           "mta.example.com\n", "");
    /* not set in the file: the default */
    expect((const char *[]){"eval", "-c", seed_path, "--key", "queue.outbound.timeouts.data", NULL},
           0, "600000\n", "");
    expect((const char *[]){"eval", "-c", seed_path, "--key", "queue.outbound.tls.starttl", NULL},
           1, "",
           "salvo: --key: 'queue.outbound.tls.starttl' is not a rule setting (did you mean "
           "'queue.outbound.tls.starttls'?)\n");
}

static void bad_config_reports_position(void **state)
{
    (void)state;
    char want[512];
    snprintf(want, sizeof(want),
             "%s:2:34: queue.outbound.tls.starttls: unbalanced parentheses: '(' is never "
             "closed\n",
             bad_path);
    expect((const char *[]){"eval", "-c", bad_path, "--key", "queue.outbound.tls.starttls", NULL},
           1, "", want);
}

static void dump_and_bench(void **state)
{
    (void)state;
    expect((const char *[]){"dump", "-c", seed_path, "--key", "queue.outbound.tls.starttls", NULL},
           0,
           "0000  VGTK   9      K0     ; retry_num > 1\n"
           "0001  JMPF   -> 0006\n"
           "0002  VEQK   13     K1     ; last_error == 'tls'\n"
           "0003  JMPF   -> 0006\n"
           "0004  RETK   K2     ; 'disable'\n"
           "0005  RET\n"
           "0006  RETK   K3     ; 'require'\n"
           "0007  RET\n",
           "");
    struct tu_result r =
        run((const char *[]){"bench", "-c", seed_path, "--key", "queue.outbound.tls.starttls",
                             "--set", "retry_num=2", "--iterations", "20000", NULL});
    assert_int_equal(r.status, 0);
    const char *last = strrchr(r.out, '\n');
    assert_non_null(last);
    while (last > r.out && last[-1] != '\n')
        last--;
    double ns = atof(last);
    assert_true(ns > 0);
    assert_non_null(strstr(last, " ns/eval"));
    tu_result_free(&r);
    r = run((const char *[]){"bench", "--expr", "trim(' a ') + retry_num", "--iterations", "200",
                             "--reparse", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "baseline"));
    tu_result_free(&r);
}

static void help(void **state)
{
    (void)state;
    const char *subs[] = {"eval", "bench", "dump"};
    for (size_t i = 0; i < 3; i++) {
        struct tu_result r = run((const char *[]){subs[i], "--help", NULL});
        assert_int_equal(r.status, 0);
        char needle[64];
        snprintf(needle, sizeof(needle), "usage: salvo rules %s", subs[i]);
        assert_non_null(strstr(r.out, needle));
        tu_result_free(&r);
    }
    struct tu_result r = run((const char *[]){"--help", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "last_error values: none dns"));
    tu_result_free(&r);
    expect((const char *[]){"frob", NULL}, 1, "",
           "salvo: rules: unknown subcommand 'frob' (eval, bench or dump)\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(eval_expr_prints_values), cmocka_unit_test(eval_expr_errors),
        cmocka_unit_test(eval_config_settings),    cmocka_unit_test(bad_config_reports_position),
        cmocka_unit_test(dump_and_bench),          cmocka_unit_test(help),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
