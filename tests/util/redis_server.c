#include "redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static bool answers_ping(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    bool ok = false;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && write(fd, "PING\r\n", 6) == 6) {
        char buf[64] = {0};
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        /* "-LOADING" while the AOF is replayed: not ready yet. "-NOAUTH": up, with
         * a password. */
        ok = (n >= 5 && strncmp(buf, "+PONG", 5) == 0) ||
             (n >= 7 && strncmp(buf, "-NOAUTH", 7) == 0);
    }
    close(fd);
    return ok;
}

static int spawn(struct tu_redis *r, bool fsync_always)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", r->port);
    char log[4096];
    snprintf(log, sizeof(log), "%s/redis.log", r->dir);
    const char *base[] = {"redis-server",
                          "--port",
                          port,
                          "--bind",
                          "127.0.0.1",
                          "--dir",
                          r->dir,
                          "--appendonly",
                          "yes",
                          "--appendfsync",
                          fsync_always ? "always" : "everysec",
                          "--save",
                          "",
                          "--logfile",
                          log,
                          "--protected-mode",
                          "no",
                          "--daemonize",
                          "no"};
    size_t nb = sizeof(base) / sizeof(base[0]), ne = 0;
    while (r->extra && r->extra[ne])
        ne++;
    const char **argv = calloc(nb + ne + 1, sizeof(*argv));
    if (!argv)
        return -1;
    memcpy(argv, base, sizeof(base));
    for (size_t i = 0; i < ne; i++)
        argv[nb + i] = r->extra[i];
    pid_t pid = fork();
    if (pid < 0) {
        free(argv);
        return -1;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    free(argv);
    r->pid = pid;
    for (int i = 0; i < 400; i++) { /* 20 s: AOF replay of a big test can take a while */
        if (answers_ping(r->port))
            return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->pid = 0;
            return -1;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "redis-server on port %d did not answer PING\n", r->port);
    tu_redis_kill9(r);
    return -1;
}

int tu_redis_start(struct tu_redis *r, bool fsync_always, const char *const *extra)
{
    memset(r, 0, sizeof(*r));
    size_t ne = 0;
    while (extra && extra[ne])
        ne++;
    r->extra = calloc(ne + 1, sizeof(*r->extra));
    for (size_t i = 0; i < ne; i++)
        r->extra[i] = strdup(extra[i]);
    r->fsync_always = fsync_always;
    /* The free port may be taken between the probe and the bind: try a few. */
    for (int attempt = 0; attempt < 5; attempt++) {
        r->dir = tu_mkdtemp();
        r->port = tu_free_port();
        if (!r->dir || r->port <= 0)
            return -1;
        snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d/0", r->port);
        if (spawn(r, fsync_always) == 0)
            return 0;
        tu_rmtree(r->dir);
        free(r->dir);
        r->dir = NULL;
    }
    fprintf(stderr, "could not start redis-server\n");
    return -1;
}

void tu_redis_kill9(struct tu_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
    }
    r->pid = 0;
}

int tu_redis_restart(struct tu_redis *r)
{
    tu_redis_kill9(r);
    return spawn(r, r->fsync_always);
}

void tu_redis_stop(struct tu_redis *r)
{
    tu_redis_kill9(r);
    if (r->dir) {
        tu_rmtree(r->dir);
        free(r->dir);
    }
    for (size_t i = 0; r->extra && r->extra[i]; i++)
        free(r->extra[i]);
    free(r->extra);
    memset(r, 0, sizeof(*r));
}

char *tu_redis_cli(const struct tu_redis *r, const char *const *args)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", r->port);
    size_t n = 0;
    while (args[n])
        n++;
    const char **argv = calloc(n + 4, sizeof(*argv));
    if (!argv)
        return NULL;
    argv[0] = "redis-cli";
    argv[1] = "-p";
    argv[2] = port;
    memcpy(argv + 3, args, n * sizeof(*args));
    struct tu_result res;
    int rc = tu_run(argv, NULL, 30, &res);
    free(argv);
    if (rc || res.status != 0) {
        if (rc == 0)
            tu_result_free(&res);
        return NULL;
    }
    free(res.err);
    char *out = res.out;
    size_t len = strlen(out);
    while (len && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        out[--len] = 0;
    return out;
}

long long tu_redis_int(const struct tu_redis *r, const char *const *args)
{
    char *s = tu_redis_cli(r, args);
    if (!s)
        return -1;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s)
        v = -1;
    free(s);
    return v;
}

long long tu_redis_info(const struct tu_redis *r, const char *field)
{
    const char *args[] = {"INFO", "memory", NULL};
    if (strncmp(field, "used_memory", 11) != 0)
        args[1] = "everything";
    char *s = tu_redis_cli(r, args);
    if (!s)
        return -1;
    char key[128];
    snprintf(key, sizeof(key), "\n%s:", field);
    char *p = strstr(s, key);
    long long v = p ? strtoll(p + strlen(key), NULL, 10) : -1;
    free(s);
    return v;
}

struct tu_redis tu_srv;

int tu_redis_group_setup(void **state)
{
    (void)state;
    return tu_redis_start(&tu_srv, false, NULL);
}

int tu_redis_group_teardown(void **state)
{
    (void)state;
    tu_redis_stop(&tu_srv);
    return 0;
}
