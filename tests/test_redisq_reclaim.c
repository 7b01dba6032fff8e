/* A consumer process killed with its jobs claimed: after the lease another
 * consumer takes them over (XAUTOCLAIM); a late report of the dead one counts as a
 * duplicate, not twice. Promoters running in several processes at once never
 * move a retry twice. */
#include "test_redisq_util.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void killed_consumer_jobs_reclaimed_after_lease(void **state)
{
    (void)state;
    struct rq *q = tq_open(&tu_srv, "lease", "survivor");
    tq_enqueue(q, 400, 4); /* 8 jobs of 50 */

    /* A child claims 5 jobs, tells us their ids, and is killed with them. */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        struct rq *cq;
        struct rq_opts o = {.url = tu_srv.url, .queue = "lease", .consumer = "doomed"};
        if (rq_new(&o, &cq) || rq_connect(cq))
            _exit(1);
        struct rq_batch *b;
        int n = rq_claim(cq, 5, &b);
        for (int i = 0; i < n; i++) {
            char line[40];
            int len = snprintf(line, sizeof(line), "%s\n", b->jobs[i].sid);
            if (write(fds[1], line, (size_t)len) != len)
                _exit(1);
        }
        close(fds[1]);
        kill(getpid(), SIGKILL);
        _exit(1);
    }
    close(fds[1]);
    char sids[512] = {0};
    size_t got = 0;
    ssize_t r;
    while ((r = read(fds[0], sids + got, sizeof(sids) - 1 - got)) > 0)
        got += (size_t)r;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    tq_stats(q, 0, 150, 250, 0, 0, 0, 0);

    /* The survivor takes the other 3 and finishes them. */
    struct rq_batch *b;
    assert_int_equal(rq_claim(q, 100, &b), 3);
    for (size_t i = 0; i < b->njobs; i++)
        tq_report_all(q, &b->jobs[i], RQ_DELIVERED, 0, NULL);
    assert_int_equal(rq_flush(q), 0);
    rq_batch_free(b);

    /* Lease of 1 s: nothing to take yet. */
    assert_int_equal(rq_reclaim(q, 1000, 100, &b), 0);
    tq_sleep_ms(1100);
    assert_int_equal(rq_reclaim(q, 1000, 100, &b), 5);
    for (size_t i = 0; i < b->njobs; i++) {
        assert_non_null(strstr(sids, b->jobs[i].sid));
        assert_int_equal(b->jobs[i].nrcpt, 50);
        assert_non_null(b->jobs[i].body);
        tq_report_all(q, &b->jobs[i], RQ_DELIVERED, 0, NULL);
    }
    assert_int_equal(rq_flush(q), 0);

    struct rq_stats s;
    assert_int_equal(rq_stats_get(q, 0, &s), 0);
    assert_int_equal(s.delivered, 400);
    assert_int_equal(s.inflight, 0);
    assert_int_equal(s.reclaimed, 5);
    assert_int_equal(s.duplicates, 0);

    /* The "dead" consumer was only slow: its late report is a counted duplicate. */
    struct rq *late = tq_open(&tu_srv, "lease", "doomed");
    tq_report_all(late, &b->jobs[0], RQ_DELIVERED, 0, NULL);
    assert_int_equal(rq_flush(late), 0);
    rq_batch_free(b);
    assert_int_equal(rq_stats_get(q, 0, &s), 0);
    assert_int_equal(s.delivered, 400);
    assert_int_equal(s.duplicates, 1);
    const char *pend[] = {"XPENDING", "salvo:{lease}:ready", "salvo", NULL};
    char *p = tu_redis_cli(&tu_srv, pend);
    assert_int_equal(atoi(p), 0);
    free(p);
    rq_free(late);
    rq_free(q);
}

static void concurrent_promoters_do_not_duplicate(void **state)
{
    (void)state;
    enum { N = 3000, PROCS = 4 };
    struct rq *q = tq_open(&tu_srv, "promo", "c");
    tq_enqueue(q, N, N); /* one recipient per domain: N jobs */
    int64_t due = tq_now_ms() + 300;
    for (;;) {
        struct rq_batch *b;
        int got = rq_claim(q, 500, &b);
        assert_true(got >= 0);
        if (got == 0)
            break;
        for (size_t i = 0; i < b->njobs; i++)
            tq_report_all(q, &b->jobs[i], RQ_DEFERRED, due, "dns");
        assert_int_equal(rq_flush(q), 0);
        rq_batch_free(b);
    }
    tq_stats(q, 0, 0, 0, N, 0, 0, 0);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            struct rq *cq;
            struct rq_opts o = {.url = tu_srv.url, .queue = "promo"};
            if (rq_new(&o, &cq) || rq_connect(cq))
                _exit(1);
            while (tq_now_ms() < due) /* all start together */
                ;
            long moved = 0;
            int m;
            while ((m = rq_promote(cq, tq_now_ms(), 20, NULL)) > 0)
                moved += m;
            if (m < 0)
                _exit(2);
            if (write(fds[1], &moved, sizeof(moved)) != sizeof(moved))
                _exit(3);
            rq_free(cq);
            _exit(0);
        }
    }
    close(fds[1]);
    long total = 0, moved, workers_that_moved = 0;
    while (read(fds[0], &moved, sizeof(moved)) == sizeof(moved)) {
        total += moved;
        workers_that_moved += moved > 0;
    }
    close(fds[0]);
    for (int p = 0; p < PROCS; p++) {
        int st;
        waitpid(pids[p], &st, 0);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    printf("%ld jobs promoted by %ld of %d concurrent promoters\n", total, workers_that_moved,
           PROCS);
    assert_int_equal(total, N);
    assert_int_equal(tq_cli_int(&tu_srv, "XLEN", "salvo:{promo}:ready", NULL), N);
    tq_stats(q, 0, N, 0, 0, 0, 0, 0);

    /* Every recipient exactly once. */
    static unsigned char seen[N];
    memset(seen, 0, sizeof(seen));
    struct rq_batch *b;
    int got;
    while ((got = rq_claim(q, 1000, &b)) > 0) {
        for (size_t i = 0; i < b->njobs; i++) {
            assert_int_equal(b->jobs[i].retry_num, 1);
            int k = tq_index(b->jobs[i].rcpt[0].addr);
            assert_int_equal(seen[k], 0);
            seen[k] = 1;
        }
        rq_batch_free(b);
    }
    for (int k = 0; k < N; k++)
        assert_int_equal(seen[k], 1);
    rq_free(q);
}

static void touched_jobs_are_not_reclaimed(void **state)
{
    (void)state;
    struct rq *slow = tq_open(&tu_srv, "touch", "slow");
    struct rq *other = tq_open(&tu_srv, "touch", "other");
    tq_enqueue(slow, 100, 2); /* 2 jobs */
    struct rq_batch *b;
    assert_int_equal(rq_claim(slow, 10, &b), 2);
    tq_sleep_ms(400);
    const char *sids[] = {b->jobs[0].sid};
    assert_int_equal(rq_touch(slow, sids, 1), 1);
    tq_sleep_ms(200);
    /* Only the job that was not touched has been idle for 300 ms. */
    struct rq_batch *rb;
    assert_int_equal(rq_reclaim(other, 300, 10, &rb), 1);
    assert_string_equal(rb->jobs[0].sid, b->jobs[1].sid);
    tq_report_all(slow, &b->jobs[0], RQ_DELIVERED, 0, NULL);
    assert_int_equal(rq_flush(slow), 0);
    tq_report_all(other, &rb->jobs[0], RQ_DELIVERED, 0, NULL);
    assert_int_equal(rq_flush(other), 0);
    tq_stats(other, 0, 0, 0, 0, 100, 0, 0);
    rq_batch_free(rb);
    rq_batch_free(b);
    rq_free(other);
    rq_free(slow);
}

static void poison_job_becomes_dead_letter(void **state)
{
    (void)state;
    struct rq *q = tq_open(&tu_srv, "poison", "first");
    struct rq *other = tq_open(&tu_srv, "poison", "second");
    uint64_t id = tq_enqueue(q, 3, 1);
    struct rq_batch *b;
    assert_int_equal(rq_claim(q, 10, &b), 1); /* delivery 1 */
    rq_batch_free(b);
    /* Every consumer that takes it "dies": deliveries 2..5 are still handed out. */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rq_reclaim(other, 0, 10, &b), 1);
        rq_batch_free(b);
    }
    tq_stats(q, id, 0, 3, 0, 0, 0, 0);
    /* The 6th would exceed max_deliveries (5): a dead letter with the reason. */
    assert_int_equal(rq_reclaim(other, 0, 10, &b), 0);
    tq_stats(q, id, 0, 0, 0, 0, 0, 3);
    const char *dl[] = {"XREVRANGE", "salvo:{poison}:dead", "+", "-", "COUNT", "1", NULL};
    char *letter = tu_redis_cli(&tu_srv, dl);
    assert_non_null(strstr(letter, "claimed 6 times without an outcome (poison job?)"));
    free(letter);
    const char *pend[] = {"XPENDING", "salvo:{poison}:ready", "salvo", NULL};
    char *p = tu_redis_cli(&tu_srv, pend);
    assert_int_equal(atoi(p), 0);
    free(p);
    rq_free(other);
    rq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(killed_consumer_jobs_reclaimed_after_lease),
        cmocka_unit_test(concurrent_promoters_do_not_duplicate),
        cmocka_unit_test(touched_jobs_are_not_reclaimed),
        cmocka_unit_test(poison_job_becomes_dead_letter),
    };
    return cmocka_run_group_tests(tests, tu_redis_group_setup, tu_redis_group_teardown);
}
