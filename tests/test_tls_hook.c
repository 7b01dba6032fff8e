/* deploy/certbot-deploy-hook: installs the renewed files with a readable-by-group key and
 * sends SIGHUP to the process named by a pid file; a stale pid file is an error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_tls_helpers.h"
#include "testutil.h"

static void run_hook(const char *env, struct tu_result *r)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s %s/deploy/certbot-deploy-hook", env, getenv("SALVO_SOURCE_DIR"));
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(tu_run(argv, NULL, 20, r), 0);
}

static void installs_files_and_sends_sighup(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char live[600], out[600], pidf[600], env[3000];
    snprintf(live, sizeof(live), "%s/live", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(pidf, sizeof(pidf), "%s/sink.pid", dir);
    mkdir(live, 0700);
    free(tu_write_file(live, "fullchain.pem", "-----BEGIN CERTIFICATE-----\nx\n"));
    free(tu_write_file(live, "privkey.pem", "-----BEGIN PRIVATE KEY-----\ny\n"));

    const char *sl[] = {"sleep", "30", NULL};
    pid_t pid = tt_spawn(sl);
    assert_true(pid > 0);
    char pidtext[32];
    snprintf(pidtext, sizeof(pidtext), "%d\n", (int)pid);
    free(tu_write_file(dir, "sink.pid", pidtext));

    snprintf(env, sizeof(env),
             "RENEWED_LINEAGE=%s SALVO_CERT_DIR=%s SALVO_CERT_GROUP=nogroup SALVO_UNITS=none "
             "SALVO_PID_FILES=%s",
             live, out, pidf);
    struct tu_result r;
    run_hook(env, &r);
    assert_int_equal(r.status, 0);
    char want[700];
    snprintf(want, sizeof(want), "sent SIGHUP to %d (%s)", (int)pid, pidf);
    assert_non_null(strstr(r.err, want));
    tu_result_free(&r);

    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGHUP);

    struct stat sb;
    char key[700];
    snprintf(key, sizeof(key), "%s/privkey.pem", out);
    assert_int_equal(stat(key, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0640);

    /* The process is gone now: the same pid file is reported, exit non-zero. */
    run_hook(env, &r);
    assert_int_equal(r.status, 1);
    snprintf(want, sizeof(want), "%s: process %d is not running", pidf, (int)pid);
    assert_non_null(strstr(r.err, want));
    tu_result_free(&r);
    tu_rmtree(dir);
    free(dir);
}

static void missing_lineage_file_fails(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char env[2000];
    snprintf(env, sizeof(env), "RENEWED_LINEAGE=%s/nowhere SALVO_CERT_DIR=%s/out", dir, dir);
    struct tu_result r;
    run_hook(env, &r);
    assert_int_equal(r.status, 1);
    char want[700];
    snprintf(want, sizeof(want), "salvo-certbot-hook: cannot read %s/nowhere/fullchain.pem\n", dir);
    assert_string_equal(r.err, want);
    tu_result_free(&r);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(installs_files_and_sends_sighup),
        cmocka_unit_test(missing_lineage_file_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
