/* Host name matching (RFC 6125 / RFC 7817) as a table of cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "tls.h"

struct name_case {
    const char *pattern, *host;
    bool match;
};

static const struct name_case cases[] = {
    /* exact names, case-insensitive, trailing dot ignored */
    {"mail.example.test", "mail.example.test", true},
    {"MAIL.Example.TEST", "mail.example.test", true},
    {"mail.example.test", "MAIL.EXAMPLE.TEST.", true},
    {"mail.example.test.", "mail.example.test", true},
    {"mail.example.test", "mail.example.tes", false},
    {"mail.example.test", "ail.example.test", false},
    {"mail.example.test", "mail.example.test.evil", false},
    {"example.test", "mail.example.test", false},
    /* wildcard: exactly one whole left-most label */
    {"*.example.test", "mail.example.test", true},
    {"*.Example.Test", "MX1.example.test", true},
    {"*.example.test", "mail.example.test.", true},
    {"*.example.test", "a.b.example.test", false},
    {"*.example.test", "example.test", false},
    {"*.example.test", ".example.test", false},
    {"*.example.test", "mail.example.org", false},
    {"*.example.test", "mailexample.test", false},
    /* partial-label and misplaced wildcards never match (we don't take RFC 6125 6.4.3's
     * option) */
    {"m*.example.test", "mail.example.test", false},
    {"*ail.example.test", "mail.example.test", false},
    {"mail.*.test", "mail.example.test", false},
    {"*.*.test", "a.example.test", false},
    {"**.example.test", "mail.example.test", false},
    /* a wildcard over a single remaining label would cover a TLD */
    {"*.test", "example.test", false},
    {"*", "test", false},
    {"*.", "test.", false},
    /* a host with '*' is not a host name: it matches nothing */
    {"*.example.test", "*.example.test", false},
    {"mail.example.test", "*.example.test", false},
    /* empty */
    {"", "mail.example.test", false},
    {"mail.example.test", "", false},
    {".", ".", false},
};

static void name_table(void **state)
{
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = tls_name_matches(cases[i].pattern, cases[i].host);
        if (got != cases[i].match) {
            fprintf(stderr, "case %zu: pattern '%s' host '%s': got %d, want %d\n", i,
                    cases[i].pattern, cases[i].host, got, cases[i].match);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void null_inputs_never_match(void **state)
{
    (void)state;
    assert_false(tls_name_matches(NULL, "a.test"));
    assert_false(tls_name_matches("a.test", NULL));
}

static void error_kind_names(void **state)
{
    (void)state;
    assert_string_equal(tls_err_name(TLS_ERR_HOSTNAME), "hostname-mismatch");
    assert_string_equal(tls_err_name(TLS_ERR_EXPIRED), "expired");
    assert_string_equal(tls_err_name(TLS_ERR_NO_STARTTLS), "no-starttls");
    assert_string_equal(tls_err_name((enum tls_err)999), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(name_table),
        cmocka_unit_test(null_inputs_never_match),
        cmocka_unit_test(error_kind_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
