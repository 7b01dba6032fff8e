/* The CLI contract: --version, --help, usage and unknown commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "testutil.h"

static void version_prints_and_exits_zero(void **state)
{
    (void)state;
    struct tu_result r;
    const char *argv[] = {tu_salvo_bin(), "--version", NULL};
    assert_int_equal(tu_run(argv, NULL, 10, &r), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "salvo 0."));
    tu_result_free(&r);
}

static void help_lists_every_command(void **state)
{
    (void)state;
    struct tu_result r;
    const char *argv[] = {tu_salvo_bin(), "--help", NULL};
    assert_int_equal(tu_run(argv, NULL, 10, &r), 0);
    assert_int_equal(r.status, 0);
    const char *cmds[] = {"run", "enqueue", "queue", "config", "rules", "tls"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        char needle[32];
        snprintf(needle, sizeof(needle), "  %s ", cmds[i]);
        assert_non_null(strstr(r.out, needle));
    }
    tu_result_free(&r);
}

static void no_arguments_prints_usage_naming_next_step(void **state)
{
    (void)state;
    struct tu_result r;
    const char *argv[] = {tu_salvo_bin(), NULL};
    assert_int_equal(tu_run(argv, NULL, 10, &r), 0);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "usage: salvo"));
    assert_non_null(strstr(r.err, "salvo config check"));
    tu_result_free(&r);
}

static void unknown_command_suggests(void **state)
{
    (void)state;
    struct tu_result r;
    const char *argv[] = {tu_salvo_bin(), "cnofig", NULL};
    assert_int_equal(tu_run(argv, NULL, 10, &r), 0);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: unknown command 'cnofig' (did you mean 'config'?); see "
                               "salvo --help\n");
    assert_int_equal(r.out_len, 0);
    tu_result_free(&r);

    const char *argv2[] = {tu_salvo_bin(), "xyzzy", NULL};
    assert_int_equal(tu_run(argv2, NULL, 10, &r), 0);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: unknown command 'xyzzy'; see salvo --help\n");
    tu_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_prints_and_exits_zero),
        cmocka_unit_test(help_lists_every_command),
        cmocka_unit_test(no_arguments_prints_usage_naming_next_step),
        cmocka_unit_test(unknown_command_suggests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
