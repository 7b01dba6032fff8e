/* eng_conf_load in-process: the embedded default, typed values from a file, and
 * the state after errors (every error collected, conf still safe to free). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "testutil.h"

static void embedded_default(void **state)
{
    (void)state;
    struct eng_conf c;
    struct cfg_diag d;
    cfg_diag_init(&d);
    assert_int_equal(eng_conf_load(NULL, &c, &d), 0);
    assert_int_equal(d.len, 0);
    assert_string_equal(c.source, "(embedded default)");
    assert_non_null(c.doc);
    assert_string_equal(c.redis_url, "redis://127.0.0.1:6379/0");
    assert_string_equal(c.queue_name, "default");
    assert_null(c.redis_password);
    assert_int_equal(c.worker_threads, 0); /* one per core */
    assert_true(c.worker_pin);
    assert_int_equal(c.log_level, SV_LOG_INFO);
    assert_int_equal(c.n_nameservers, 0);
    assert_int_equal(c.n_remotes, 0);
    /* The default is a real document with positions, like any file. */
    const struct cfg_value *url = cfg_get(c.doc->root, "redis.url");
    assert_non_null(url);
    assert_string_equal(url->pos.file, "(embedded default)");
    assert_int_equal(url->pos.line, 3);
    eng_conf_free(&c);
    eng_conf_free(&c); /* idempotent after free */
    eng_conf_free(NULL);
    cfg_diag_free(&d);
}

static void typed_values_from_a_file(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_write_file(dir, "s.toml",
                               "[redis]\n"
                               "url = \"redis://10.1.2.3:6380/2\"\n"
                               "queue = \"mail\"\n"
                               "password = \"pw\"\n"
                               "[server.workers]\n"
                               "threads = 6\n"
                               "pin = false\n"
                               "[log]\n"
                               "level = \"trace\"\n"
                               "[resolver]\n"
                               "nameservers = [\"127.0.0.1:5353\", \"[::1]:53\"]\n"
                               "[remote.relay]\n"
                               "address = \"smtp.example.net\"\n"
                               "port = 465\n"
                               "tls.implicit = true\n"
                               "[remote.plain]\n"
                               "address = \"192.0.2.7\"\n");
    assert_non_null(path);
    struct eng_conf c;
    struct cfg_diag d;
    cfg_diag_init(&d);
    int rc = eng_conf_load(path, &c, &d);
    cfg_diag_print(&d, stderr);
    assert_int_equal(rc, 0);
    assert_int_equal(d.errors, 0);
    assert_string_equal(c.source, path);
    assert_string_equal(c.redis_url, "redis://10.1.2.3:6380/2");
    assert_string_equal(c.queue_name, "mail");
    assert_string_equal(c.redis_password, "pw");
    assert_int_equal(c.worker_threads, 6);
    assert_false(c.worker_pin);
    assert_int_equal(c.log_level, SV_LOG_TRACE);
    assert_int_equal(c.n_nameservers, 2);
    assert_string_equal(c.nameservers[0], "127.0.0.1:5353");
    assert_string_equal(c.nameservers[1], "[::1]:53");
    assert_int_equal(c.n_remotes, 2);
    assert_string_equal(c.remotes[0].name, "relay");
    assert_string_equal(c.remotes[0].address, "smtp.example.net");
    assert_int_equal(c.remotes[0].port, 465);
    assert_true(c.remotes[0].tls_implicit);
    assert_int_equal(c.remotes[0].pos.line, 12);
    assert_string_equal(c.remotes[1].name, "plain");
    assert_int_equal(c.remotes[1].port, 25);
    assert_false(c.remotes[1].tls_implicit);
    eng_conf_free(&c);
    cfg_diag_free(&d);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

static void errors_are_all_collected(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_write_file(dir, "bad.toml", "redis.url = 1\nredis.queue = 2\nbogus = 3\n");
    struct eng_conf c;
    struct cfg_diag d;
    cfg_diag_init(&d);
    assert_int_equal(eng_conf_load(path, &c, &d), -1);
    assert_int_equal(d.errors, 3);
    assert_int_equal(d.items[0].pos.line, 1);
    assert_int_equal(d.items[1].pos.line, 2);
    assert_int_equal(d.items[2].pos.line, 3);
    assert_string_equal(d.items[2].msg, "unknown key 'bogus'");
    /* Defaults stay in place for the keys that were wrong. */
    assert_string_equal(c.redis_url, "redis://127.0.0.1:6379/0");
    eng_conf_free(&c);
    cfg_diag_free(&d);

    /* An unreadable file: one error, no document, still safe to free. */
    char missing[4200];
    snprintf(missing, sizeof(missing), "%s/none.toml", dir);
    cfg_diag_init(&d);
    assert_int_equal(eng_conf_load(missing, &c, &d), -1);
    assert_int_equal(d.errors, 1);
    assert_null(c.doc);
    eng_conf_free(&c);
    cfg_diag_free(&d);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(embedded_default),
        cmocka_unit_test(typed_values_from_a_file),
        cmocka_unit_test(errors_are_all_collected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
