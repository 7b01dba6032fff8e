/* The server certificate store: loading (every failure names the file and the reason,
 * never a fallback), SNI selection, reload through the slot. The unreadable-key case
 * runs the loader as an unprivileged user, since root reads anything. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_tls_helpers.h"
#include "testutil.h"
#include "tls.h"

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp();
    if (!dir || tt_make_certs(dir) != 0)
        return -1;
    /* The unprivileged loader must reach the certificates (but not the 0600 key). */
    chmod(dir, 0755);
    return tls_global_init();
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

/* Loads one pair and returns the error text ("" when it loaded). */
static const char *load_err(const char *cert, const char *key)
{
    static char err[512];
    err[0] = '\0';
    struct tls_cert_pair p = {tt_path(dir, cert), tt_path(dir, key)};
    struct tls_server *srv = NULL;
    int rc = tls_server_new(&p, 1, &srv, err, sizeof(err));
    if (rc == 0) {
        assert_non_null(srv);
        tls_server_free(srv);
        assert_string_equal(err, "");
    } else {
        assert_true(rc < 0);
        assert_null(srv);
    }
    return err;
}

/* fmt is a literal, so -Wformat checks it; the arguments are tt_path() results. */
#define EXPECT_ERR(cert, key, fmt, ...)                                                            \
    do {                                                                                           \
        char want_[1024];                                                                          \
        snprintf(want_, sizeof(want_), fmt, __VA_ARGS__);                                          \
        assert_string_equal(load_err(cert, key), want_);                                           \
    } while (0)

static void good_pairs_load_with_their_names(void **state)
{
    (void)state;
    struct tls_cert_pair p[] = {{tt_path(dir, "wild.pem"), tt_path(dir, "wild.key")},
                                {tt_path(dir, "other.pem"), tt_path(dir, "other.key")}};
    struct tls_server *srv = NULL;
    char err[512] = "";
    assert_int_equal(tls_server_new(p, 2, &srv, err, sizeof(err)), 0);
    assert_int_equal(tls_server_npairs(srv), 2);
    const char *const *names;
    assert_int_equal(tls_server_pair_names(srv, 0, &names), 2);
    assert_string_equal(names[0], "*.example.test");
    assert_string_equal(names[1], "example.test");
    assert_int_equal(tls_server_pair_names(srv, 1, &names), 1);
    assert_string_equal(names[0], "other.test");
    tls_server_free(srv);
}

static void sni_selects_by_san_first_is_default(void **state)
{
    (void)state;
    /* self.pem names mail.example.test exactly: an exact name beats pair 0's wildcard. */
    struct tls_cert_pair p[] = {{tt_path(dir, "wild.pem"), tt_path(dir, "wild.key")},
                                {tt_path(dir, "other.pem"), tt_path(dir, "other.key")},
                                {tt_path(dir, "self.pem"), tt_path(dir, "self.key")}};
    struct tls_server *srv = NULL;
    char err[512] = "";
    assert_int_equal(tls_server_new(p, 3, &srv, err, sizeof(err)), 0);
    assert_int_equal(tls_server_select(srv, "other.test"), 1);
    assert_int_equal(tls_server_select(srv, "OTHER.TEST"), 1);
    assert_int_equal(tls_server_select(srv, "mx.example.test"), 0);
    assert_int_equal(tls_server_select(srv, "example.test"), 0);
    assert_int_equal(tls_server_select(srv, "mail.example.test"), 2);
    assert_int_equal(tls_server_select(srv, NULL), 0);
    assert_int_equal(tls_server_select(srv, ""), 0);
    assert_int_equal(tls_server_select(srv, "nomatch.test"), 0);
    assert_int_equal(tls_server_select(srv, "a.b.example.test"), 0);
    tls_server_free(srv);
}

static void missing_files_are_named(void **state)
{
    (void)state;
    EXPECT_ERR("nope.pem", "wild.key", "tls: cannot read certificate %s: No such file or directory",
               tt_path(dir, "nope.pem"));
    EXPECT_ERR("wild.pem", "nope.key", "tls: cannot read key %s: No such file or directory",
               tt_path(dir, "nope.key"));
}

static void not_pem_is_named(void **state)
{
    (void)state;
    char *junk = tu_write_file(dir, "junk.pem", "this is not a certificate\n");
    assert_non_null(junk);
    free(junk);
    EXPECT_ERR("junk.pem", "wild.key", "tls: certificate %s is not PEM (no BEGIN CERTIFICATE line)",
               tt_path(dir, "junk.pem"));
    EXPECT_ERR("wild.pem", "wild.pem", "tls: key %s is not a PEM private key",
               tt_path(dir, "wild.pem"));
}

static void key_must_match_certificate(void **state)
{
    (void)state;
    EXPECT_ERR("wild.pem", "other.key", "tls: key %s does not match certificate %s",
               tt_path(dir, "other.key"), tt_path(dir, "wild.pem"));
}

static void expired_and_future_certificates_refused(void **state)
{
    (void)state;
    EXPECT_ERR("expired.pem", "expired.key",
               "tls: certificate %s expired on 2020-01-02 00:00:00 UTC",
               tt_path(dir, "expired.pem"));
    EXPECT_ERR("future.pem", "future.key",
               "tls: certificate %s is not valid before 2099-01-01 00:00:00 UTC",
               tt_path(dir, "future.pem"));
}

static void one_bad_pair_fails_the_whole_store(void **state)
{
    (void)state;
    struct tls_cert_pair p[] = {{tt_path(dir, "wild.pem"), tt_path(dir, "wild.key")},
                                {tt_path(dir, "other.pem"), tt_path(dir, "missing.key")}};
    struct tls_server *srv = NULL;
    char err[512] = "";
    assert_true(tls_server_new(p, 2, &srv, err, sizeof(err)) < 0);
    assert_null(srv);
    char want[600];
    snprintf(want, sizeof(want), "tls: cannot read key %s: No such file or directory",
             tt_path(dir, "missing.key"));
    assert_string_equal(err, want);
}

/* The seeds/000 case: the key exists but the server's user cannot read it. */
static void unreadable_key_as_unprivileged_user(void **state)
{
    (void)state;
    struct tu_result r;
    const char *src = tt_path(dir, "wild.key");
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cp %s %s/locked.key && chmod 0600 %s/locked.key", src, dir, dir);
    const char *sh[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(tu_run(sh, NULL, 10, &r), 0);
    assert_int_equal(r.status, 0);
    tu_result_free(&r);

    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    assert_true(n > 0);
    self[n] = '\0';
    char want[1024];
    snprintf(want, sizeof(want), "tls: cannot read key %s/locked.key: Permission denied\n", dir);
    if (geteuid() == 0) {
        const char *argv[] = {
            "setpriv", "--reuid=65534", "--regid=65534",          "--clear-groups",
            self,      "--load",        tt_path(dir, "wild.pem"), tt_path(dir, "locked.key"),
            NULL};
        assert_int_equal(tu_run(argv, NULL, 20, &r), 0);
        assert_int_equal(r.status, 1);
        assert_string_equal(r.err, want);
        tu_result_free(&r);
        /* And as root the same files load: the failure above is the permission only. */
        assert_string_equal(load_err("wild.pem", "locked.key"), "");
    } else {
        char locked[600];
        snprintf(locked, sizeof(locked), "%s/locked.key", dir);
        chmod(locked, 0);
        const char *argv[] = {self, "--load", tt_path(dir, "wild.pem"), locked, NULL};
        assert_int_equal(tu_run(argv, NULL, 20, &r), 0);
        assert_int_equal(r.status, 1);
        assert_string_equal(r.err, want);
        tu_result_free(&r);
    }
}

static void reload_swaps_only_when_loaded(void **state)
{
    (void)state;
    struct tls_cert_pair wild = {tt_path(dir, "wild.pem"), tt_path(dir, "wild.key")};
    struct tls_cert_pair expired = {tt_path(dir, "expired.pem"), tt_path(dir, "expired.key")};
    struct tls_cert_pair other = {tt_path(dir, "other.pem"), tt_path(dir, "other.key")};
    struct tls_server *srv = NULL;
    char err[512] = "";
    assert_int_equal(tls_server_new(&wild, 1, &srv, err, sizeof(err)), 0);
    struct tls_server_slot *slot = NULL;
    assert_int_equal(tls_server_slot_new(srv, &slot), 0);

    /* A bad renewal: refused, the old store stays. */
    assert_true(tls_server_slot_reload(slot, &expired, 1, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "expired on 2020-01-02"));
    struct tls_server *cur = tls_server_slot_get(slot);
    const char *const *names;
    assert_int_equal(tls_server_pair_names(cur, 0, &names), 2);
    assert_string_equal(names[0], "*.example.test");

    /* A good one: swapped; the old store lives on while someone holds it. */
    assert_int_equal(tls_server_slot_reload(slot, &other, 1, err, sizeof(err)), 0);
    assert_string_equal(names[0], "*.example.test"); /* `cur` still valid (ASan checks) */
    tls_server_free(cur);
    cur = tls_server_slot_get(slot);
    assert_int_equal(tls_server_pair_names(cur, 0, &names), 1);
    assert_string_equal(names[0], "other.test");
    tls_server_free(cur);
    tls_server_slot_free(slot);
}

int main(int argc, char **argv)
{
    /* Loader mode, for the unprivileged-user test: load one pair, print the error. */
    if (argc == 4 && strcmp(argv[1], "--load") == 0) {
        struct tls_cert_pair p = {argv[2], argv[3]};
        struct tls_server *srv = NULL;
        char err[512] = "";
        if (tls_server_new(&p, 1, &srv, err, sizeof(err)) != 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        tls_server_free(srv);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_pairs_load_with_their_names),
        cmocka_unit_test(sni_selects_by_san_first_is_default),
        cmocka_unit_test(missing_files_are_named),
        cmocka_unit_test(not_pem_is_named),
        cmocka_unit_test(key_must_match_certificate),
        cmocka_unit_test(expired_and_future_certificates_refused),
        cmocka_unit_test(one_bad_pair_fails_the_whole_store),
        cmocka_unit_test(unreadable_key_as_unprivileged_user),
        cmocka_unit_test(reload_swaps_only_when_loaded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
