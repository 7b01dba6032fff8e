#include "test_sink_util.h"

#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *ts_sink_bin(void)
{
    const char *b = getenv("SALVO_SINK_BIN");
    return b && *b ? b : "salvo-sink";
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            buf = realloc(buf, cap);
        }
        memcpy(buf + len, tmp, n);
        len += n;
    }
    fclose(f);
    if (!buf)
        return strdup("");
    buf[len] = '\0';
    return buf;
}

char *ts_sink_stderr(struct ts_sink *s)
{
    return slurp(s->err_path);
}

int ts_sink_start(struct ts_sink *s, const char *const extra[])
{
    memset(s, 0, sizeof(*s));
    s->out_fd = -1;
    s->dir = tu_mkdtemp();
    if (!s->dir)
        return -1;
    char path[4096];
    snprintf(path, sizeof(path), "%s/stderr", s->dir);
    s->err_path = strdup(path);
    const char *argv[64];
    int n = 0;
    argv[n++] = ts_sink_bin();
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    int out[2];
    if (pipe(out) < 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* A failed assertion skips ts_sink_stop(), and a timed-out test is killed:
         * either way the sink must not outlive its test. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        int e = open(s->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(out[1], 1);
        dup2(e, 2);
        close(out[0]);
        close(out[1]);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(out[1]);
    s->pid = pid;
    s->out_fd = out[0];
    /* Ready once it says where it listens ("listening on 127.0.0.1:PORT"). */
    long long deadline = now_ms() + 10000;
    while (now_ms() < deadline) {
        char *err = ts_sink_stderr(s);
        const char *p = strstr(err, "listening on 127.0.0.1:");
        if (p) { /* the whole line must be there, not half of it */
            char *end;
            long port = strtol(p + strlen("listening on 127.0.0.1:"), &end, 10);
            if (*end == ' ' && port > 0 && port < 65536)
                s->port = (int)port;
        }
        free(err);
        if (s->port > 0)
            return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            return -1;
        }
        usleep(10000);
    }
    return -1;
}

/* Reads one line from the sink's stdout within timeout_ms. */
static int read_line(struct ts_sink *s, char *buf, size_t len, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(s->outbuf, '\n', s->outlen);
        if (nl) {
            size_t l = (size_t)(nl - s->outbuf);
            if (buf && len) {
                size_t c = l < len - 1 ? l : len - 1;
                memcpy(buf, s->outbuf, c);
                buf[c] = '\0';
            }
            memmove(s->outbuf, nl + 1, s->outlen - l - 1);
            s->outlen -= l + 1;
            return 0;
        }
        int ms = (int)(deadline - now_ms());
        if (ms <= 0 || s->outlen == sizeof(s->outbuf))
            return -1;
        struct pollfd p = {s->out_fd, POLLIN, 0};
        if (poll(&p, 1, ms) <= 0)
            continue;
        ssize_t n = read(s->out_fd, s->outbuf + s->outlen, sizeof(s->outbuf) - s->outlen);
        if (n <= 0)
            return -1;
        s->outlen += (size_t)n;
    }
}

int ts_sink_stats(struct ts_sink *s, char *buf, size_t len)
{
    if (s->pid <= 0 || kill(s->pid, SIGUSR1) < 0)
        return -1;
    return read_line(s, buf, len, 5000);
}

int ts_sink_stop(struct ts_sink *s, char *buf, size_t len)
{
    int status = -1;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        if (buf)
            read_line(s, buf, len, 10000);
        long long deadline = now_ms() + 10000;
        int st = 0;
        pid_t r;
        while ((r = waitpid(s->pid, &st, WNOHANG)) == 0 && now_ms() < deadline)
            usleep(10000);
        if (r == 0) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
        }
        status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        s->pid = 0;
    }
    if (s->out_fd >= 0)
        close(s->out_fd);
    s->out_fd = -1;
    tu_rmtree(s->dir);
    free(s->dir);
    free(s->err_path);
    s->dir = s->err_path = NULL;
    return status;
}

uint64_t ts_json_u64(const char *json, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        return UINT64_MAX;
    p += strlen(pat);
    if (*p < '0' || *p > '9')
        return UINT64_MAX;
    return strtoull(p, NULL, 10);
}

int ts_connect(struct ts_client *c, int port)
{
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

void ts_close(struct ts_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

int ts_send_n(struct ts_client *c, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int ts_send(struct ts_client *c, const char *s)
{
    return ts_send_n(c, s, strlen(s));
}

/* Reads more input within the deadline: 1 got bytes, -1 EOF/error, -2 timeout. */
static int fill(struct ts_client *c, long long deadline)
{
    if (c->len == sizeof(c->buf))
        return -3;
    int ms = (int)(deadline - now_ms());
    if (ms <= 0)
        return -2;
    struct pollfd p = {c->fd, POLLIN, 0};
    int r = poll(&p, 1, ms);
    if (r == 0)
        return -2;
    if (r < 0)
        return errno == EINTR ? 1 : -1;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n <= 0)
        return -1;
    c->len += (size_t)n;
    return 1;
}

int ts_reply(struct ts_client *c, char *text, size_t len, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    size_t pos = 0; /* start of the line being examined */
    for (;;) {
        char *nl = memchr(c->buf + pos, '\n', c->len - pos);
        if (!nl) {
            int r = fill(c, deadline);
            if (r < 0)
                return r;
            continue;
        }
        const char *line = c->buf + pos;
        size_t line_len = (size_t)(nl - line) + 1;
        pos += line_len;
        bool digits = line_len >= 4 && line[0] >= '0' && line[0] <= '9' && line[1] >= '0' &&
                      line[1] <= '9' && line[2] >= '0' && line[2] <= '9';
        if (!digits) {
            memmove(c->buf, c->buf + pos, c->len - pos);
            c->len -= pos;
            return -3;
        }
        if (line[3] == '-')
            continue;
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (text && len) {
            size_t n = pos < len - 1 ? pos : len - 1;
            memcpy(text, c->buf, n);
            text[n] = '\0';
        }
        memmove(c->buf, c->buf + pos, c->len - pos);
        c->len -= pos;
        return code;
    }
}

int ts_wait_eof(struct ts_client *c, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        c->len = 0;
        int r = fill(c, deadline);
        if (r == -1)
            return 0;
        if (r == -2)
            return -2;
    }
}
