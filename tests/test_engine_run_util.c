#include "test_engine_run_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

int64_t tr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tr_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

int tr_start(struct tr_proc *p, const char *dir, const char *name, const char *const args[])
{
    memset(p, 0, sizeof(*p));
    snprintf(p->out_path, sizeof(p->out_path), "%s/%s.out", dir, name);
    snprintf(p->err_path, sizeof(p->err_path), "%s/%s.err", dir, name);
    const char *argv[32] = {tu_salvo_bin()};
    for (size_t i = 0; args[i] && i < 30; i++)
        argv[i + 1] = args[i];
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int o = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int n = open("/dev/null", O_RDONLY);
        if (o < 0 || e < 0 || n < 0 || chdir(dir))
            _exit(127);
        dup2(n, 0);
        dup2(o, 1);
        dup2(e, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    p->pid = pid;
    return 0;
}

int tr_wait(struct tr_proc *p, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    int64_t end = tr_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (tr_now_ms() >= end)
            return -1;
        tr_sleep_ms(10);
    }
}

void tr_kill9(struct tr_proc *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

char *tr_out(const struct tr_proc *p)
{
    return slurp(p->out_path);
}

char *tr_err(const struct tr_proc *p)
{
    return slurp(p->err_path);
}

bool tr_wait_for_text(const char *file, const char *needle, int timeout_ms)
{
    int64_t end = tr_now_ms() + timeout_ms;
    do {
        char *s = slurp(file);
        bool found = s && strstr(s, needle);
        free(s);
        if (found)
            return true;
        tr_sleep_ms(20);
    } while (tr_now_ms() < end);
    return false;
}

long long tr_queue_stat(const char *dir, const char *counter)
{
    const char *argv[] = {tu_salvo_bin(), "queue", "stats", NULL};
    struct tu_result r;
    if (tu_run_env(argv, NULL, 30, dir, NULL, &r))
        return -1;
    long long v = -1;
    if (r.status == 0) {
        size_t n = strlen(counter);
        for (const char *l = r.out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
            if (strncmp(l, counter, n) == 0 && l[n] == ' ') {
                v = strtoll(l + n, NULL, 10);
                break;
            }
        }
    }
    tu_result_free(&r);
    return v;
}

long long tr_summary_num(const char *line, const char *word)
{
    char key[64];
    snprintf(key, sizeof(key), "%s ", word);
    const char *s = line;
    size_t n = strlen(key);
    while ((s = strstr(s, key)) != NULL) {
        if ((s == line || s[-1] == ' ' || s[-1] == '(') && s[n] >= '0' && s[n] <= '9')
            return strtoll(s + n, NULL, 10);
        s += n;
    }
    return -1;
}
