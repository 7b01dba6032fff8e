/* The `salvo config` command line: help, exit codes, decode from a file and from
 * stdin, and the config lookup order (-c, $SALVO_CONFIG, ./salvo.toml, embedded
 * default) in a working directory and environment the test controls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

static void run(const char *const *args, const char *input, struct tu_result *r)
{
    const char *argv[16] = {tu_salvo_bin()};
    size_t n = 1;
    for (; args[n - 1]; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    assert_int_equal(tu_run(argv, input, 10, r), 0);
}

static void help_texts(void **state)
{
    (void)state;
    struct tu_result r;
    run((const char *[]){"config", "--help", NULL}, NULL, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: salvo config check [-c FILE]\n"));
    assert_non_null(strstr(r.out, "salvo config decode [FILE|-]\n"));
    tu_result_free(&r);

    run((const char *[]){"config", "check", "--help", NULL}, NULL, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: salvo config check [-c FILE]\n"));
    assert_non_null(strstr(r.out, "$SALVO_CONFIG"));
    tu_result_free(&r);

    run((const char *[]){"config", "decode", "-h", NULL}, NULL, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: salvo config decode [FILE|-]\n"));
    tu_result_free(&r);

    run((const char *[]){"config", NULL}, NULL, &r);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "usage: salvo config"));
    assert_string_equal(r.out, "");
    tu_result_free(&r);

    run((const char *[]){"config", "chekc", NULL}, NULL, &r);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: config: unknown subcommand 'chekc' (did you mean "
                               "'check'?)\n");
    tu_result_free(&r);

    run((const char *[]){"config", "check", "--verbose", NULL}, NULL, &r);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: config check: unexpected argument '--verbose'; see "
                               "salvo config check --help\n");
    tu_result_free(&r);

    run((const char *[]){"config", "check", "-c", NULL}, NULL, &r);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: config check: -c needs a FILE\n");
    tu_result_free(&r);
}

static void check_exit_codes(void **state)
{
    (void)state;
    char *good = tu_write_file(tu_dir, "good.toml", "[redis]\nqueue = \"q1\"\n");
    char *bad = tu_write_file(tu_dir, "bad.toml", "[redis]\nqueue = 1\n");
    char missing[4096];
    snprintf(missing, sizeof(missing), "%s/missing.toml", tu_dir);
    struct tu_result r;
    char want[4200];

    run((const char *[]){"config", "check", "-c", good, NULL}, NULL, &r);
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof(want), "%s: ok\n", good);
    assert_string_equal(r.out, want);
    assert_string_equal(r.err, "");
    tu_result_free(&r);

    run((const char *[]){"config", "check", "-c", bad, NULL}, NULL, &r);
    assert_int_equal(r.status, 1);
    snprintf(want, sizeof(want), "%s:2:9: redis.queue: expected a string, found integer\n", bad);
    assert_string_equal(r.err, want);
    assert_string_equal(r.out, "");
    tu_result_free(&r);

    run((const char *[]){"config", "check", "-c", missing, NULL}, NULL, &r);
    assert_int_equal(r.status, 1);
    snprintf(want, sizeof(want), "salvo: cannot read %s: No such file or directory\n", missing);
    assert_string_equal(r.err, want);
    assert_string_equal(r.out, "");
    tu_result_free(&r);

    /* A directory is not a config file either. */
    run((const char *[]){"config", "check", "-c", tu_dir, NULL}, NULL, &r);
    assert_int_equal(r.status, 1);
    snprintf(want, sizeof(want), "salvo: cannot read %s: Is a directory\n", tu_dir);
    assert_string_equal(r.err, want);
    tu_result_free(&r);
    free(good);
    free(bad);
}

static void decode_file_and_stdin(void **state)
{
    (void)state;
    const char *toml = "n = 0x10\n[t]\ns = 'x'\n";
    const char *json = "{\n"
                       "  \"n\": {\"type\": \"integer\", \"value\": \"16\"},\n"
                       "  \"t\": {\n"
                       "    \"s\": {\"type\": \"string\", \"value\": \"x\"}\n"
                       "  }\n"
                       "}\n";
    char *path = tu_write_file(tu_dir, "d.toml", toml);
    struct tu_result r;
    run((const char *[]){"config", "decode", path, NULL}, NULL, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, json);
    assert_string_equal(r.err, "");
    tu_result_free(&r);

    run((const char *[]){"config", "decode", "-", NULL}, toml, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, json);
    tu_result_free(&r);

    run((const char *[]){"config", "decode", NULL}, toml, &r); /* no FILE: stdin */
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, json);
    tu_result_free(&r);

    run((const char *[]){"config", "decode", NULL}, "a = 1\nb = [1,\n  2,,]\n", &r);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "<stdin>:3:5: expected a value, found ','\n");
    tu_result_free(&r);

    run((const char *[]){"config", "decode", "/nonexistent/x.toml", NULL}, NULL, &r);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: cannot read /nonexistent/x.toml: No such file or "
                               "directory\n");
    tu_result_free(&r);

    run((const char *[]){"config", "decode", path, path, NULL}, NULL, &r);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "only one FILE is allowed"));
    tu_result_free(&r);
    free(path);
}

/* Runs `salvo config check [-c c_opt]` in `cwd` with $SALVO_CONFIG = env_val
 * (NULL = unset) and returns its stdout (owned); asserts exit 0. */
static char *check_in(const char *cwd, const char *env_val, const char *c_opt)
{
    char env_entry[4200];
    const char *env[] = {"SALVO_CONFIG", NULL};
    if (env_val) {
        snprintf(env_entry, sizeof(env_entry), "SALVO_CONFIG=%s", env_val);
        env[0] = env_entry;
    }
    const char *argv[] = {tu_salvo_bin(), "config", "check", c_opt ? "-c" : NULL, c_opt, NULL};
    struct tu_result r;
    assert_int_equal(tu_run_env(argv, NULL, 10, cwd, env, &r), 0);
    if (r.status != 0)
        fprintf(stderr, "salvo config check failed: %s", r.err);
    assert_int_equal(r.status, 0);
    char *out = strdup(r.out);
    tu_result_free(&r);
    return out;
}

static void lookup_order(void **state)
{
    (void)state;
    char cwd[4096], empty[4096];
    snprintf(cwd, sizeof(cwd), "%s/work", tu_dir);
    snprintf(empty, sizeof(empty), "%s/empty", tu_dir);
    assert_int_equal(mkdir(cwd, 0755), 0);
    assert_int_equal(mkdir(empty, 0755), 0);
    char *c_file = tu_write_file(tu_dir, "c.toml", "redis.queue = \"from-c\"\n");
    char *env_file = tu_write_file(tu_dir, "env.toml", "redis.queue = \"from-env\"\n");
    char *cwd_file = tu_write_file(cwd, "salvo.toml", "redis.queue = \"from-cwd\"\n");
    assert_non_null(c_file);
    assert_non_null(env_file);
    assert_non_null(cwd_file);
    char want[4200];

    /* -c beats $SALVO_CONFIG and ./salvo.toml. */
    char *out = check_in(cwd, env_file, c_file);
    snprintf(want, sizeof(want), "%s: ok\n", c_file);
    assert_string_equal(out, want);
    free(out);

    /* $SALVO_CONFIG beats ./salvo.toml. */
    out = check_in(cwd, env_file, NULL);
    snprintf(want, sizeof(want), "%s: ok\n", env_file);
    assert_string_equal(out, want);
    free(out);

    /* ./salvo.toml when nothing else is given; an empty $SALVO_CONFIG counts as unset. */
    out = check_in(cwd, NULL, NULL);
    assert_string_equal(out, "salvo.toml: ok\n");
    free(out);
    out = check_in(cwd, "", NULL);
    assert_string_equal(out, "salvo.toml: ok\n");
    free(out);

    /* Nothing at all: the embedded default. */
    out = check_in(empty, NULL, NULL);
    assert_string_equal(out, "(embedded default): ok\n");
    free(out);

    /* The files lower in the order are not even read: break them and the higher
     * choice still loads. */
    char *broken = tu_write_file(cwd, "salvo.toml", "this is not toml\n");
    free(broken);
    broken = tu_write_file(tu_dir, "env.toml", "neither = is this\n");
    free(broken);
    out = check_in(cwd, env_file, c_file);
    snprintf(want, sizeof(want), "%s: ok\n", c_file);
    assert_string_equal(out, want);
    free(out);

    /* ...and a broken file that is chosen does fail. */
    const char *env[] = {"SALVO_CONFIG", NULL};
    const char *argv[] = {tu_salvo_bin(), "config", "check", NULL};
    struct tu_result r;
    assert_int_equal(tu_run_env(argv, NULL, 10, cwd, env, &r), 0);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo.toml:1:6: expected '=' after key 'this', found 'i'\n");
    tu_result_free(&r);
    free(c_file);
    free(env_file);
    free(cwd_file);
}

/* Rule errors inside TOML strings carry the exact line:col through escapes and
 * multi-line strings; a value that can never fit its setting fails the check. */
static void rule_errors_at_exact_positions(void **state)
{
    (void)state;
    char *f = tu_write_file(tu_dir, "rules.toml",
                            "[queue.outbound.tls]\n"
                            "starttls = [ { if = \"\\u0072etry_num > 0 && bogus\", then = "
                            "\"require\" }, { else = \"optional\" } ]\n"
                            "dane = [ { if = \"\"\"\n"
                            "    retry_num > 1 && \\\n"
                            "    last_error == \\\"tls\\\"\"\"\", then = \"require\" },\n"
                            "         { else = \"retry_num\" } ]\n");
    struct tu_result r;
    char want[8192];
    run((const char *[]){"config", "check", "-c", f, NULL}, NULL, &r);
    assert_int_equal(r.status, 1);
    snprintf(want, sizeof(want),
             "%s:2:44: queue.outbound.tls.starttls: unknown variable 'bogus'\n"
             "%s:6:20: queue.outbound.tls.dane: expected optional, require or disable, but this "
             "expression always gives an integer\n",
             f, f);
    assert_string_equal(r.err, want);
    tu_result_free(&r);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_texts),
        cmocka_unit_test(check_exit_codes),
        cmocka_unit_test(decode_file_and_stdin),
        cmocka_unit_test(lookup_order),
        cmocka_unit_test(rule_errors_at_exact_positions),
    };
    return cmocka_run_group_tests(tests, tu_dir_setup, tu_dir_teardown);
}
