/* Redis Cluster (issue #9): a real 3-node cluster on loopback; salvo is pointed
 * at a node that does NOT own the queue's slot, so every command is first
 * answered MOVED. `salvo enqueue`, `salvo queue stats` and two `salvo run --drain`
 * processes (with a rate limiter and a concurrency cap, so their scripts run on
 * the cluster too) deliver a campaign to a real salvo-sink exactly once, and every
 * key lands on the slot's owner. Also a migrating slot (ASK) and a redirect loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redis_cluster.h"
#include "test_engine_e2e_util.h"
#include "test_engine_run_util.h"
#include "test_sink_util.h"
#include "test_tls_helpers.h"
#include "testutil.h"

static struct tu_redis_cluster cl;
static struct te_env env; /* env.srv unused: the cluster stands in for it */
static int owner, other;  /* node indexes: the queue's slot owner, one that is not */
static struct tr_proc procs[2];
static struct ts_sink sink = {.out_fd = -1};

static int setup(void **state)
{
    (void)state;
    if (tu_redis_cluster_start(&cl, 3))
        return -1;
    owner = tu_redis_cluster_owner(&cl, "salvo:{default}:ready");
    if (owner < 0)
        return -1;
    other = (owner + 1) % cl.n;
    env.dir = tu_mkdtemp();
    env.certs = tu_mkdtemp();
    if (!env.dir || !env.certs || tt_make_certs(env.certs))
        return -1;
    unsetenv("SALVO_CONFIG");
    setenv("SALVO_REDIS_URL", cl.node[other].url, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        tr_kill9(&procs[i]);
    ts_sink_stop(&sink, NULL, 0);
    te_env_teardown(&env);
    tu_redis_cluster_stop(&cl);
    return 0;
}

static long long dbsize(int node)
{
    return tu_redis_int(&cl.node[node], (const char *const[]){"DBSIZE", NULL});
}

static void run_via_a_redirect_exactly_once(void **state)
{
    (void)state;
    assert_int_equal(ts_sink_start(&sink, (const char *const[]){"--threads", "2", "--fault",
                                                                "delay:dot:10", NULL}),
                     0);
    te_write_conf(&env, sink.port,
                  "[[queue.limiter.outbound]]\n"
                  "id = \"per-sender\"\n"
                  "key = [\"sender_domain\"]\n"
                  "rate = \"1000/1s\"\n"
                  "[[queue.limiter.outbound]]\n"
                  "id = \"per-ip\"\n"
                  "key = \"remote_ip\"\n"
                  "concurrency = 2\n");
    long long n = te_enqueue(&env, "cluster", 600, 200, "example", false);
    assert_int_equal(n, 600);
    /* Everything went to the owner through MOVED; the node named in the URL holds nothing. */
    assert_int_equal(dbsize(other), 0);
    assert_true(dbsize(owner) > 0);
    assert_int_equal(tr_queue_stat(env.dir, "ready"), n); /* recipients */

    for (int i = 0; i < 2; i++) {
        char nm[16];
        snprintf(nm, sizeof(nm), "cl%d", i);
        assert_int_equal(
            tr_start(&procs[i], env.dir, nm, (const char *const[]){"run", "--drain", NULL}), 0);
    }
    long long sum = 0;
    for (int i = 0; i < 2; i++) {
        int st = tr_wait(&procs[i], 25000);
        char *out = tr_out(&procs[i]), *err = tr_err(&procs[i]);
        if (st != 0)
            print_message("process %d: status %d; stderr:\n%s\n", i, st, err);
        assert_int_equal(st, 0);
        print_message("process %d: %s", i, out);
        long long d = tr_summary_num(out, "delivered");
        assert_true(d >= 0);
        sum += d;
        free(out);
        free(err);
    }
    assert_int_equal(sum, n);
    assert_int_equal(te_sink_stat(&sink, "duplicates"), 0);
    assert_int_equal(te_sink_stat(&sink, "recipients"), (uint64_t)n);
    /* The concurrency script ran on the owner: never more than 2 connections. */
    uint64_t max_open = te_sink_stat(&sink, "connections_max_open");
    print_message("connections: at most %llu open at once\n", (unsigned long long)max_open);
    assert_true(max_open >= 1 && max_open <= 2);
    te_check_all_delivered(&env, &sink, n, "cluster");
    assert_int_equal(dbsize(other), 0);
    ts_sink_stop(&sink, NULL, 0);
}

static char *cli(int node, const char *const *args)
{
    char *out = tu_redis_cli(&cl.node[node], args);
    assert_non_null(out);
    return out;
}

static struct tu_result salvo(const char *const *args)
{
    const char *argv[12] = {tu_salvo_bin()};
    for (int i = 0; args[i] && i < 10; i++)
        argv[i + 1] = args[i];
    struct tu_result r;
    assert_int_equal(tu_run_env(argv, NULL, 30, env.dir, NULL, &r), 0);
    return r;
}

/* While the queue's slot is migrating (owner MIGRATING, another node IMPORTING):
 * a plain read of a key the owner does not have is answered ASK and followed once
 * (`queue show` of an unknown id says so, not ASK); a script is not followed (it
 * reads undeclared keys, part of which may have moved): `salvo enqueue` fails with
 * the migration named. Once the slot is stable again, enqueue works. */
static void migrating_slot(void **state)
{
    (void)state;
    te_write_conf(&env, 25, NULL);
    int to = (owner + 2) % cl.n; /* neither the owner nor the URL's node */
    char *slot =
        cli(owner, (const char *const[]){"CLUSTER", "KEYSLOT", "salvo:{default}:ready", NULL});
    char *owner_id = cli(owner, (const char *const[]){"CLUSTER", "MYID", NULL});
    char *to_id = cli(to, (const char *const[]){"CLUSTER", "MYID", NULL});
    char *ok =
        cli(to, (const char *const[]){"CLUSTER", "SETSLOT", slot, "IMPORTING", owner_id, NULL});
    assert_string_equal(ok, "OK");
    free(ok);
    ok = cli(owner, (const char *const[]){"CLUSTER", "SETSLOT", slot, "MIGRATING", to_id, NULL});
    assert_string_equal(ok, "OK");
    free(ok);

    struct tu_result r = salvo((const char *const[]){"queue", "show", "987654", NULL});
    print_message("queue show 987654: %d %s", r.status, r.err);
    assert_int_not_equal(r.status, 0);
    assert_non_null(strstr(r.err, "no message or campaign '987654'"));
    tu_result_free(&r);

    char *csv = tu_write_file(env.dir, "mig.csv", "email\nuser1@d1.example\n");
    char *body =
        tu_write_file(env.dir, "mig.eml", "From: a@salvo.test\r\nSubject: x\r\n\r\nhello\r\n");
    r = salvo((const char *const[]){"enqueue", "--from", "a@salvo.test", "--recipients", csv,
                                    "--template", body, NULL});
    print_message("enqueue while migrating: %d %s", r.status, r.err);
    char want[128];
    snprintf(want, sizeof(want), "cluster slot %s is migrating to 127.0.0.1:%d", slot,
             cl.node[to].port);
    assert_int_not_equal(r.status, 0);
    assert_non_null(strstr(r.err, want));
    tu_result_free(&r);
    assert_int_equal(dbsize(to), 0); /* nothing was written on the importing node */

    for (int i = 0; i < cl.n; i++) {
        ok = cli(i, (const char *const[]){"CLUSTER", "SETSLOT", slot, "STABLE", NULL});
        free(ok);
    }
    r = salvo((const char *const[]){"enqueue", "--from", "a@salvo.test", "--recipients", csv,
                                    "--template", body, NULL});
    if (r.status != 0)
        print_message("enqueue after migration: %d %s", r.status, r.err);
    assert_int_equal(r.status, 0);
    tu_result_free(&r);
    free(csv);
    free(body);
    free(slot);
    free(owner_id);
    free(to_id);
}

/* Two nodes that each say the other owns a slot: salvo gives up after a few hops
 * with one line naming the slot, not an endless loop. The slot is that of a fresh
 * queue `loop` (a node refuses to give away a slot it holds keys of). */
static void redirect_loop_is_bounded(void **state)
{
    (void)state;
    te_write_conf(&env, 25, "[redis]\nqueue = \"loop\"\n");
    int a = tu_redis_cluster_owner(&cl, "salvo:{loop}:ready");
    assert_true(a >= 0);
    int b = (a + 1) % cl.n;
    char *slot = cli(a, (const char *const[]){"CLUSTER", "KEYSLOT", "salvo:{loop}:ready", NULL});
    char *a_id = cli(a, (const char *const[]){"CLUSTER", "MYID", NULL});
    char *b_id = cli(b, (const char *const[]){"CLUSTER", "MYID", NULL});
    char *ok = cli(a, (const char *const[]){"CLUSTER", "SETSLOT", slot, "NODE", b_id, NULL});
    assert_string_equal(ok, "OK");
    free(ok);
    struct tu_result r = salvo((const char *const[]){"queue", "stats", NULL});
    print_message("queue stats in a loop: %d %s", r.status, r.err);
    char want[128];
    snprintf(want, sizeof(want), "redirected more than 5 times for cluster slot %s", slot);
    assert_int_not_equal(r.status, 0);
    assert_non_null(strstr(r.err, want));
    assert_ptr_equal(strchr(r.err, '\n'), r.err + strlen(r.err) - 1); /* one line */
    tu_result_free(&r);
    ok = cli(a, (const char *const[]){"CLUSTER", "SETSLOT", slot, "NODE", a_id, NULL});
    free(ok);
    free(slot);
    free(a_id);
    free(b_id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(run_via_a_redirect_exactly_once),
        cmocka_unit_test(migrating_slot),
        cmocka_unit_test(redirect_loop_is_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
