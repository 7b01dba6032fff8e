#include "redis_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int start_node(struct tu_redis *r)
{
    /* tu_redis_start retries on other ports when a node cannot bind: a port above
     * 55535 (no room for the bus port) or a bus port in use makes redis-server exit. */
    const char *extra[] = {"--cluster-enabled",
                           "yes",
                           "--cluster-config-file",
                           "nodes.conf",
                           "--cluster-node-timeout",
                           "5000",
                           NULL};
    return tu_redis_start(r, false, extra);
}

static bool state_ok(const struct tu_redis *r)
{
    char *info = tu_redis_cli(r, (const char *const[]){"CLUSTER", "INFO", NULL});
    bool ok = info && strstr(info, "cluster_state:ok");
    free(info);
    return ok;
}

int tu_redis_cluster_start(struct tu_redis_cluster *c, int n)
{
    memset(c, 0, sizeof(*c));
    if (n < 3 || n > TU_CLUSTER_MAX)
        return -1;
    for (int i = 0; i < n; i++) {
        if (start_node(&c->node[i]))
            return -1;
        c->n = i + 1;
    }
    const char *argv[4 + TU_CLUSTER_MAX + 4] = {"redis-cli", "--cluster", "create"};
    char addr[TU_CLUSTER_MAX][32];
    int k = 3;
    for (int i = 0; i < n; i++) {
        snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", c->node[i].port);
        argv[k++] = addr[i];
    }
    argv[k++] = "--cluster-replicas";
    argv[k++] = "0";
    argv[k++] = "--cluster-yes";
    struct tu_result res;
    if (tu_run(argv, NULL, 60, &res)) {
        fprintf(stderr, "redis-cli --cluster create: cannot run\n");
        return -1;
    }
    int st = res.status;
    if (st != 0)
        fprintf(stderr, "redis-cli --cluster create: status %d\n%s%s\n", st, res.out, res.err);
    tu_result_free(&res);
    if (st != 0)
        return -1;
    for (int t = 0; t < 300; t++) { /* 15 s */
        bool all = true;
        for (int i = 0; i < n && all; i++)
            all = state_ok(&c->node[i]);
        if (all)
            return 0;
        sleep_ms(50);
    }
    fprintf(stderr, "redis cluster: cluster_state did not become ok\n");
    return -1;
}

void tu_redis_cluster_stop(struct tu_redis_cluster *c)
{
    for (int i = 0; i < c->n; i++)
        tu_redis_stop(&c->node[i]);
    c->n = 0;
}

/* Whether `slot` is in the "myself" line's ranges of CLUSTER NODES:
 * "<id> <addr> myself,master - 0 0 1 connected 0-5460 [5461] ...". */
static bool serves(const struct tu_redis *r, long slot)
{
    char *nodes = tu_redis_cli(r, (const char *const[]){"CLUSTER", "NODES", NULL});
    if (!nodes)
        return false;
    bool yes = false;
    for (char *line = strtok(nodes, "\n"); line && !yes; line = strtok(NULL, "\n")) {
        if (!strstr(line, " myself,"))
            continue;
        char *f = line;
        for (int i = 0; i < 8 && f; i++) { /* skip to the 9th field */
            f = strchr(f, ' ');
            if (f)
                f++;
        }
        while (f && *f && !yes) {
            char *end;
            long lo = strtol(f, &end, 10), hi = lo;
            if (end == f)
                break; /* "[slot->-node]" migration notes */
            if (*end == '-')
                hi = strtol(end + 1, &end, 10);
            yes = slot >= lo && slot <= hi;
            f = strchr(end, ' ');
            if (f)
                f++;
        }
    }
    free(nodes);
    return yes;
}

int tu_redis_cluster_owner(const struct tu_redis_cluster *c, const char *key)
{
    if (c->n == 0)
        return -1;
    long long slot =
        tu_redis_int(&c->node[0], (const char *const[]){"CLUSTER", "KEYSLOT", key, NULL});
    if (slot < 0)
        return -1;
    for (int i = 0; i < c->n; i++)
        if (serves(&c->node[i], (long)slot))
            return i;
    return -1;
}
