/* Horizontal scaling (issue #9): several `salvo run` processes on one real
 * redis-server deliver one campaign through a real salvo-sink, every recipient
 * exactly once (the sink's (Message-ID, recipient) pairs), each process with its
 * own summary line; a small campaign is shared by two processes started together;
 * kill -9 of one of three leaves its jobs to the other two after the lease. Also the --progress
 * line of a run whose stderr is not a terminal, and the configuration reload on SIGHUP. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_engine_e2e_util.h"
#include "test_engine_run_util.h"
#include "test_sink_util.h"
#include "test_tls_helpers.h"
#include "testutil.h"

#define MAXP 3

static struct te_env env;
static struct tr_proc procs[MAXP]; /* killed by the next reset if a test failed */
static struct ts_sink sink = {.out_fd = -1}, sink2 = {.out_fd = -1};

static int setup(void **state)
{
    (void)state;
    return te_env_setup(&env);
}

static void stop_all(void)
{
    for (int i = 0; i < MAXP; i++)
        tr_kill9(&procs[i]);
    ts_sink_stop(&sink, NULL, 0);
    ts_sink_stop(&sink2, NULL, 0);
}

static int teardown(void **state)
{
    (void)state;
    stop_all();
    te_env_teardown(&env);
    return 0;
}

static int reset(void **state)
{
    (void)state;
    stop_all();
    return te_env_flush(&env);
}

/* Starts `np` processes of `salvo run --drain --progress` at once (NAME0, NAME1..). */
static void start_procs(int np, const char *name)
{
    for (int i = 0; i < np; i++) {
        char nm[64];
        snprintf(nm, sizeof(nm), "%s%d", name, i);
        assert_int_equal(tr_start(&procs[i], env.dir, nm,
                                  (const char *const[]){"run", "--drain", "--progress", NULL}),
                         0);
    }
}

/* Waits for process i to exit 0; returns its summary's delivered count. */
static long long wait_proc(int i, int timeout_ms)
{
    int st = tr_wait(&procs[i], timeout_ms);
    char *out = tr_out(&procs[i]);
    if (st != 0) {
        char *err = tr_err(&procs[i]);
        print_message("process %d: status %d; stderr:\n%s\n", i, st, err);
        free(err);
        tr_kill9(&procs[i]);
    }
    assert_int_equal(st, 0);
    print_message("process %d: %s", i, out);
    long long d = tr_summary_num(out, "delivered");
    assert_true(d >= 0);
    assert_int_equal(tr_summary_num(out, "bounced"), 0);
    free(out);
    return d;
}

/* np processes share a campaign of 6,000 recipients over 2,000 domains (2,000 jobs
 * of 3 recipients, one transaction each): every process gets a share. The shares
 * add up, nobody gets a recipient twice. */
static void processes_share_exactly_once(int np)
{
    assert_int_equal(ts_sink_start(&sink, (const char *const[]){"--threads", "2", "--fault",
                                                                "delay:dot:10", NULL}),
                     0);
    te_write_conf(&env, sink.port, NULL);
    char tag[16];
    snprintf(tag, sizeof(tag), "share%d", np);
    long long n = te_enqueue(&env, tag, 6000, 2000, "example", false);
    start_procs(np, tag);
    long long sum = 0;
    for (int i = 0; i < np; i++) {
        long long d = wait_proc(i, 30000);
        assert_true(d > 0); /* each one took part */
        sum += d;
    }
    assert_int_equal(sum, n);
    assert_int_equal(te_sink_stat(&sink, "duplicates"), 0);
    assert_int_equal(te_sink_stat(&sink, "recipients"), (uint64_t)n);
    assert_true(tr_queue_stat(env.dir, "duplicates") <= 0); /* -1: not printed, 0 */
    te_check_all_delivered(&env, &sink, n, tag);
    ts_sink_stop(&sink, NULL, 0);
}

static void two_processes_exactly_once(void **state)
{
    (void)state;
    processes_share_exactly_once(2);
}

static void three_processes_exactly_once(void **state)
{
    (void)state;
    processes_share_exactly_once(3);
}

/* A small campaign (3,000 recipients of one domain: 60 jobs of 50, one transaction
 * each) on two processes started together: a process claims what its workers can
 * start soon (8 connections), not all it could hold, so both deliver a real share
 * (each at least a quarter), every recipient exactly once. Transactions take 200 ms
 * at the sink, so a few ms between the two starts do not decide the split. */
static void small_campaign_is_shared(void **state)
{
    (void)state;
    assert_int_equal(ts_sink_start(&sink, (const char *const[]){"--threads", "2", "--fault",
                                                                "delay:dot:200", NULL}),
                     0);
    te_write_conf(&env, sink.port, NULL);
    long long n = te_enqueue(&env, "small", 3000, 1, "example", false);
    start_procs(2, "small");
    long long d0 = wait_proc(0, 30000), d1 = wait_proc(1, 30000);
    print_message("shares: %lld + %lld of %lld\n", d0, d1, n);
    assert_int_equal(d0 + d1, n);
    assert_true(d0 >= n / 4 && d1 >= n / 4);
    assert_int_equal(te_sink_stat(&sink, "duplicates"), 0);
    assert_int_equal(te_sink_stat(&sink, "transactions"), 60);
    te_check_all_delivered(&env, &sink, n, "small");
    ts_sink_stop(&sink, NULL, 0);
}

/* The delivered count of the last progress line in `err`, -1 if none. */
static long long last_progress(const char *err)
{
    long long v = -1;
    for (const char *l = err; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *p = strstr(l, "]: ");
        const char *nl = strchr(l, '\n');
        if (strncmp(l, "salvo[", 6) == 0 && p && (!nl || p < nl) && strstr(p, " delivered ("))
            v = strtoll(p + 3, NULL, 10);
    }
    return v;
}

/* Three processes on 1,000 jobs of 3 recipients; one is killed (-9) once it
 * delivered some while most of the campaign is still queued. The other two finish,
 * taking its claimed jobs over after the lease (1 s): every recipient arrives; only
 * transactions the killed one had in flight may come twice. */
static void kill9_one_of_three(void **state)
{
    (void)state;
    assert_int_equal(ts_sink_start(&sink, (const char *const[]){"--threads", "2", "--fault",
                                                                "delay:dot:50", NULL}),
                     0);
    /* At most 2 workers x 4 connections of a process are in a transaction. */
    te_write_conf(&env, sink.port, "[queue.outbound.limits]\nconnections = 4\n");
    long long n = te_enqueue(&env, "k9of3", 3000, 1000, "example", false);
    start_procs(3, "k9of3_");
    /* The victim (process 2) has reported deliveries, and most of the work is left. */
    int64_t end = tr_now_ms() + 15000;
    long long victim = -1;
    while (tr_now_ms() < end) {
        char *err = tr_err(&procs[2]);
        victim = last_progress(err);
        free(err);
        if (victim > 0)
            break;
        tr_sleep_ms(50);
    }
    assert_true(victim > 0);
    uint64_t before = te_sink_stat(&sink, "pairs");
    assert_true(before < (uint64_t)n / 2);
    assert_int_equal(tr_signal(&procs[2], SIGKILL), 0);
    assert_int_equal(tr_wait(&procs[2], 5000), 128 + SIGKILL);
    long long sum = wait_proc(0, 30000) + wait_proc(1, 30000);
    uint64_t dups = te_sink_stat(&sink, "duplicates");
    long long reclaimed = tr_queue_stat(env.dir, "reclaimed");
    print_message("killed after %lld delivered by it (%llu by all); survivors delivered %lld; "
                  "%llu duplicates, %lld jobs reclaimed\n",
                  victim, (unsigned long long)before, sum, (unsigned long long)dups, reclaimed);
    te_check_all_delivered(&env, &sink, n, "kill -9 of one");
    /* The survivors delivered the rest, taking the victim's claimed jobs over. */
    assert_true(sum >= n - victim - 2 * 8 * 3);
    assert_true(sum < n);
    assert_true(reclaimed > 0);
    /* In flight at the kill: at most 2 x 4 transactions of 3 recipients at the
     * receiver, plus those answered but not yet written to Redis (one flush window,
     * 20 ms, about as many again). */
    assert_true(dups <= 2 * 8 * 3);
    ts_sink_stop(&sink, NULL, 0);
}

/* `--progress` with stderr in a file: one `salvo[PID]: ...` line per second with
 * growing counts, a rate, the queue depth and the TLS resumption rate; the last
 * line agrees with the summary. STARTTLS required with one connection per worker
 * renewed every 50 messages: the renewed connections resume their TLS session. */
static void progress_lines_when_not_a_tty(void **state)
{
    (void)state;
    const char *extra[] = {"--threads",  "2",
                           "--tls-cert", tt_path(env.certs, "wild.pem"),
                           "--tls-key",  tt_path(env.certs, "wild.key"),
                           "--fault",    "delay:dot:3",
                           NULL};
    assert_int_equal(ts_sink_start(&sink, extra), 0);
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "[queue.outbound.tls]\nstarttls = \"'require'\"\nallow-invalid-certs = \"true\"\n"
             "ca-file = \"%s\"\n"
             "[queue.outbound.limits]\nconnections = 1\nmessages-per-connection = 50\n",
             tt_path(env.certs, "ca.pem"));
    te_write_conf(&env, sink.port, conf);
    long long n = te_enqueue(&env, "prog", 1500, 4, "example", true);
    assert_int_equal(tr_start(&procs[0], env.dir, "prog",
                              (const char *const[]){"run", "--drain", "--progress", NULL}),
                     0);
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "salvo[%ld]: ", (long)procs[0].pid);
    int st = tr_wait(&procs[0], 30000);
    char *out = tr_out(&procs[0]), *err = tr_err(&procs[0]);
    print_message("summary: %s", out);
    assert_int_equal(st, 0);
    assert_null(strchr(err, '\r'));
    int lines = 0;
    long long last = -1, max_rate = 0, first_queue = -1, last_queue = -1, last_flight = -1;
    char last_tls[16] = "";
    for (char *l = err; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, prefix, strlen(prefix)) != 0)
            continue;
        long long d, rate, def, b, q;
        char tls[16];
        char d_s[32], r_s[32], q_s[32], f_s[32];
        /* Numbers are grouped with commas: read them as strings. */
        int k = sscanf(l + strlen(prefix),
                       "%31[0-9,] delivered (%31[0-9,]/s), %lld deferred, %lld bounced, queue "
                       "%31[0-9,] (%31[0-9,] in flight), TLS resumed %15[-0-9%]",
                       d_s, r_s, &def, &b, q_s, f_s, tls);
        if (k != 7) {
            char *nl = strchr(l, '\n');
            fail_msg("not a progress line: %.*s", nl ? (int)(nl - l) : (int)strlen(l), l);
        }
        long long fl;
        char *src[4] = {d_s, r_s, q_s, f_s};
        long long *dst[4] = {&d, &rate, &q, &fl};
        for (int i = 0; i < 4; i++) {
            char digits[32];
            size_t m = 0;
            for (const char *c = src[i]; *c; c++)
                if (*c != ',')
                    digits[m++] = *c;
            digits[m] = '\0';
            *dst[i] = strtoll(digits, NULL, 10);
        }
        assert_true(d >= last); /* counts only grow */
        assert_true(d <= n);
        assert_int_equal(def, 0);
        assert_int_equal(b, 0);
        assert_true(q <= n);
        /* Redis counts what was flushed; this process's count may be ahead. */
        assert_true(q + fl >= n - d && q + fl <= n);
        if (first_queue < 0)
            first_queue = q;
        last_queue = q;
        last_flight = fl;
        if (rate > max_rate)
            max_rate = rate;
        last = d;
        snprintf(last_tls, sizeof(last_tls), "%s", tls);
        lines++;
    }
    print_message("%d progress lines; last: %lld delivered, max %lld/s, queue %lld -> %lld, TLS "
                  "resumed %s\n",
                  lines, last, max_rate, first_queue, last_queue, last_tls);
    assert_true(lines >= 2);
    assert_int_equal(last, tr_summary_num(out, "delivered"));
    assert_int_equal(last, n);
    assert_true(max_rate > 0 && max_rate <= n * 20);
    assert_true(first_queue > 0);
    assert_int_equal(last_queue, 0);
    assert_int_equal(last_flight, 0);
    /* The TLS share agrees with the summary's handshake counts. */
    long long full = tr_summary_num(out, "full"), resumed = tr_summary_num(out, "resumed");
    assert_true(full > 0 && resumed > 0);
    char want[16];
    snprintf(want, sizeof(want), "%d%%", (int)(100.0 * (double)resumed / (double)(full + resumed)));
    assert_string_equal(last_tls, want);
    free(out);
    free(err);
    ts_sink_stop(&sink, NULL, 0);
}

/* Waits until the sink has `n` (Message-ID, recipient) pairs. */
static void wait_pairs(struct ts_sink *s, uint64_t n, int timeout_ms)
{
    int64_t end = tr_now_ms() + timeout_ms;
    while (te_sink_stat(s, "pairs") < n && tr_now_ms() < end)
        tr_sleep_ms(20);
    assert_int_equal(te_sink_stat(s, "pairs"), n);
}

/* The number of times `needle` occurs in the process's stderr. */
static int count_err(const struct tr_proc *p, const char *needle)
{
    char *s = tr_err(p);
    int n = 0;
    for (const char *q = s; q && (q = strstr(q, needle)) != NULL; q += strlen(needle))
        n++;
    free(s);
    return n;
}

/* SIGHUP re-reads the config file (run.toml). An invalid file: one `reload failed: FILE:LINE:COL`
 * line, and the run goes on with the old settings (still to sink A). A valid one
 * moving next-hop to sink B: new attempts go to B. SIGHUPs while transactions are in
 * flight disturb nothing: every recipient arrives once. */
static void sighup_reloads_the_config(void **state)
{
    (void)state;
    const char *slow[] = {"--threads", "1", "--fault", "delay:dot:20", NULL};
    assert_int_equal(ts_sink_start(&sink, slow), 0);
    assert_int_equal(ts_sink_start(&sink2, slow), 0);
    te_write_conf(&env, sink.port, NULL); /* for salvo enqueue */
    te_write_conf_as(&env, "run.toml", sink.port, NULL);
    struct tr_proc *p = &procs[0];
    assert_int_equal(
        tr_start(p, env.dir, "hup", (const char *const[]){"run", "-c", "run.toml", NULL}), 0);
    long long n1 = te_enqueue(&env, "hup1", 300, 100, "example", false);
    wait_pairs(&sink, (uint64_t)n1, 15000);

    /* Invalid: an unterminated string on line 2. */
    free(tu_write_file(env.dir, "run.toml", "[queue]\nlease = \"1s\n"));
    assert_int_equal(tr_signal(p, SIGHUP), 0);
    assert_true(tr_wait_for_text(p->err_path, "salvo: reload failed: run.toml:2:", 5000));
    assert_int_equal(count_err(p, "reload failed"), 1);
    long long n2 = te_enqueue(&env, "hup2", 300, 100, "example", false);
    wait_pairs(&sink, (uint64_t)(n1 + n2), 15000);
    assert_int_equal(te_sink_stat(&sink2, "pairs"), 0);

    /* Valid, to sink B; then SIGHUP again (same file) while B receives. */
    te_write_conf_as(&env, "run.toml", sink2.port, NULL);
    assert_int_equal(tr_signal(p, SIGHUP), 0);
    assert_true(tr_wait_for_text(p->err_path, "reload: run.toml applied", 5000));
    long long n3 = te_enqueue(&env, "hup3", 1500, 500, "example", false);
    te_wait_transactions(&sink2, 20, 15000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tr_signal(p, SIGHUP), 0);
        tr_sleep_ms(100);
    }
    wait_pairs(&sink2, (uint64_t)n3, 20000);
    assert_int_equal(te_sink_stat(&sink, "pairs"), (uint64_t)(n1 + n2));
    assert_int_equal(count_err(p, "reload: run.toml applied"), 4);
    /* Limiters are built once per run: a reload that changes them says so. */
    te_write_conf_as(&env, "run.toml", sink2.port,
                     "[[queue.limiter.outbound]]\nid = \"all\"\nrate = \"10/1s\"\n");
    assert_int_equal(tr_signal(p, SIGHUP), 0);
    assert_true(tr_wait_for_text(
        p->err_path, "reload: queue.limiter.outbound changed: restart salvo run to apply it",
        5000));
    assert_int_equal(count_err(p, "restart salvo run"), 1);
    /* So does one that only adds a connection cap to it (the workers' caps are
     * built once too). */
    te_write_conf_as(&env, "run.toml", sink2.port,
                     "[[queue.limiter.outbound]]\nid = \"all\"\nrate = \"10/1s\"\n"
                     "concurrency = 2\n");
    assert_int_equal(tr_signal(p, SIGHUP), 0);
    for (int64_t end = tr_now_ms() + 5000;
         count_err(p, "reload: run.toml applied") < 6 && tr_now_ms() < end;)
        tr_sleep_ms(20);
    assert_int_equal(count_err(p, "reload: run.toml applied"), 6);
    assert_int_equal(count_err(p, "restart salvo run"), 2);
    /* Still not applied: the same file again warns again. */
    assert_int_equal(tr_signal(p, SIGHUP), 0);
    for (int64_t end = tr_now_ms() + 5000;
         count_err(p, "reload: run.toml applied") < 7 && tr_now_ms() < end;)
        tr_sleep_ms(20);
    assert_int_equal(count_err(p, "restart salvo run"), 3);
    assert_int_equal(tr_signal(p, SIGTERM), 0);
    assert_int_equal(tr_wait(p, 10000), 0);
    char *out = tr_out(p);
    print_message("summary: %s", out);
    assert_int_equal(tr_summary_num(out, "delivered"), n1 + n2 + n3);
    free(out);
    assert_int_equal(te_sink_stat(&sink, "duplicates"), 0);
    assert_int_equal(te_sink_stat(&sink2, "duplicates"), 0);
    assert_int_equal(tr_queue_stat(env.dir, "delivered"), n1 + n2 + n3);
    ts_sink_stop(&sink, NULL, 0);
    ts_sink_stop(&sink2, NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(two_processes_exactly_once, reset),
        cmocka_unit_test_setup(three_processes_exactly_once, reset),
        cmocka_unit_test_setup(small_campaign_is_shared, reset),
        cmocka_unit_test_setup(kill9_one_of_three, reset),
        cmocka_unit_test_setup(progress_lines_when_not_a_tty, reset),
        cmocka_unit_test_setup(sighup_reloads_the_config, reset),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
