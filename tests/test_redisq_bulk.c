/* A big campaign through the CLI: 300 000 recipients (a 14 MB CSV) are enqueued
 * with memory that does not grow with the file (peak RSS of the salvo process),
 * every one counted, in jobs of at most 50 per domain. */
#include "test_redisq_util.h"

#include <sys/resource.h>
#include <unistd.h>

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
    return dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_redis_stop(&srv);
    tu_rmtree(dir);
    free(dir);
    return 0;
}

enum { N = 600000 };

static void big_campaign_bounded_memory(void **state)
{
    (void)state;
    char csv[512], tpl[512];
    snprintf(csv, sizeof(csv), "%s/big.csv", dir);
    FILE *f = fopen(csv, "w");
    assert_non_null(f);
    fputs("email,first,unused\n", f);
    for (int i = 0; i < N; i++)
        fprintf(f, "firstname.lastname%d@domain%d.example,Name%d,%d\n", i, i % 1000, i % 997, i);
    long size = ftell(f);
    fclose(f);
    free(tu_write_file(dir, "t.eml", "Subject: Hi {{first}}\r\n\r\nHello {{first}}\r\n"));
    snprintf(tpl, sizeof(tpl), "%s/t.eml", dir);

    const char *argv[] = {tu_salvo_bin(), "enqueue", "--from",     "news@sender.example",
                          "--recipients", csv,       "--template", tpl,
                          "--campaign",   "big",     NULL};
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 240, &r), 0);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    tu_result_free(&r);

    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    printf("enqueue of %d recipients from a %ld-byte CSV: peak RSS %ld KiB\n", N, size,
           ru.ru_maxrss);
#ifndef SALVO_SANITIZED
    /* Far below the file size: the CSV is streamed, not loaded. */
    assert_true(ru.ru_maxrss * 1024L < size / 2);
    assert_true(ru.ru_maxrss < 16 * 1024);
#endif
    struct rq *q = tq_open(&srv, "default", NULL);
    uint64_t id;
    assert_int_equal(rq_msg_lookup(q, "big", &id), 0);
    tq_stats(q, id, N, 0, 0, 0, 0, 0);
    /* 1000 domains x 600 recipients -> 12 jobs of 50 each. */
    assert_int_equal(tq_cli_int(&srv, "XLEN", "salvo:{default}:ready", NULL), 12000);
    rq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(big_campaign_bounded_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
