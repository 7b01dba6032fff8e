/* A real redis-server for tests: started on a free loopback port in a fresh temp
 * dir with AOF on, stopped (or killed -9 and restarted on the same port and data)
 * on demand. Tests inspect it with redis-cli, like an operator would. */
#ifndef SALVO_TU_REDIS_H
#define SALVO_TU_REDIS_H

#include <stdbool.h>
#include <sys/types.h>

struct tu_redis {
    pid_t pid; /* 0 when not running */
    int port;
    char *dir;    /* owned: data dir (appendonlydir, redis.log) */
    char url[64]; /* "redis://127.0.0.1:PORT/0" */
    char **extra; /* owned copy of the extra arguments, NULL-terminated */
    bool fsync_always;
};

/* Starts redis-server (appendonly yes, appendfsync `fsync_always` ? always : everysec,
 * no RDB snapshots) plus `extra` arguments ("--maxmemory", "1mb", ... NULL; may be
 * NULL) and waits until it answers PING. Returns 0, or -1 (with a message on stderr). */
int tu_redis_start(struct tu_redis *r, bool fsync_always, const char *const *extra);
/* SIGKILL, no chance to flush anything; keeps the data dir. */
void tu_redis_kill9(struct tu_redis *r);
/* Starts again on the same port and data dir; waits for PING (the AOF is loaded). */
int tu_redis_restart(struct tu_redis *r);
/* Kills the server and removes its data dir (NULL-safe on a never-started r). */
void tu_redis_stop(struct tu_redis *r);
/* cmocka group set-up and tear-down for tests that share one redis-server (no
 * AOF) for the whole group: tu_srv. */
extern struct tu_redis tu_srv;
int tu_redis_group_setup(void **state);
int tu_redis_group_teardown(void **state);

/* Runs `redis-cli -p PORT args...`; returns its stdout (owned, trailing newline
 * removed) or NULL when it could not run. */
char *tu_redis_cli(const struct tu_redis *r, const char *const *args);
/* The same for a command answering an integer (DBSIZE, XLEN...); -1 on error. */
long long tu_redis_int(const struct tu_redis *r, const char *const *args);
/* One field of INFO (e.g. "used_memory"); -1 on error. */
long long tu_redis_info(const struct tu_redis *r, const char *field);

#endif
