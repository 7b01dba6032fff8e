/* A real Redis Cluster for tests: n redis-server nodes (cluster-enabled, each a
 * tu_redis on a free loopback port whose bus port, +10000, is free too), joined
 * with `redis-cli --cluster create`, masters only. */
#ifndef SALVO_TU_REDIS_CLUSTER_H
#define SALVO_TU_REDIS_CLUSTER_H

#include "redis_server.h"

#define TU_CLUSTER_MAX 6

struct tu_redis_cluster {
    struct tu_redis node[TU_CLUSTER_MAX];
    int n;
};

/* Starts n (3..TU_CLUSTER_MAX) nodes, creates the cluster and waits until every
 * node says cluster_state:ok. Returns 0, or -1 (with a message on stderr). */
int tu_redis_cluster_start(struct tu_redis_cluster *c, int n);
/* Stops every node and removes their dirs (safe on a failed start). */
void tu_redis_cluster_stop(struct tu_redis_cluster *c);
/* The index of the node serving `key`'s hash slot, or -1. */
int tu_redis_cluster_owner(const struct tu_redis_cluster *c, const char *key);

#endif
