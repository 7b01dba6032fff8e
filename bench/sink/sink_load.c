/* salvo-sink-load: a pipelining SMTP load generator, to measure salvo-sink (or any
 * SMTP sink) the way salvo talks to it. Postfix's smtp-source waits for every reply;
 * this client sends each message as one write that also carries the next
 * transaction's MAIL, RCPT and DATA (RFC 2920), so a message costs one round trip:
 *
 *   C: MAIL FROM / RCPT TO x R / DATA                    S: 250 / 250 x R / 354
 *   C: <body> CRLF.CRLF MAIL FROM / RCPT TO / DATA       S: 250 / 250 / 250 x R / 354
 *   ...
 *   C: <body> CRLF.CRLF QUIT                             S: 250 / 221
 *
 * usage: salvo-sink-load --connect HOST:PORT [--connections N] [--messages M]
 *                        [--size BYTES] [--rcpts R] [--threads T] [--starttls]
 *                        [--per-conn K]
 * --per-conn K: QUIT after K messages and connect again (with --starttls the new
 * connection resumes the TLS session from the thread's cache).
 * With --starttls every connection upgrades after EHLO (tls/ client, certificate not
 * verified, one session cache per thread) and says EHLO again.
 * Prints one JSON line: messages, seconds, msgs_per_s, errors. Exit 0 if every
 * message got a 250, 1 on bad arguments, 2 on failures. */
#include "tls.h"

#include <ev.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct load_opts {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int connections, threads, rcpts;
    long per_conn; /* messages per connection; 0 = unlimited */
    bool starttls;
    char host[256];
    uint16_t port;
    struct tls_client *tls;
    long messages;
    size_t size;
};

static struct load_opts g;
static _Atomic long g_next;            /* messages handed out so far (shared by connections) */
static _Atomic long g_done;            /* messages answered 250 */
static _Atomic long g_errors;          /* unexpected replies, connection failures */
static _Atomic long g_full, g_resumed; /* TLS handshakes */

struct lconn {
    struct ev_loop *loop;
    ev_io io;
    int fd;
    struct tls_conn *tc; /* all I/O goes through tls/ (plain until STARTTLS) */
    struct tls_session_cache *cache;
    bool handshaking, tls_done;
    int id;
    long seq;          /* messages this connection sent */
    long on_conn;      /* transactions started on the current TCP connection */
    int expect;        /* replies still due for the group in flight */
    bool have_msg;     /* the group in flight holds a transaction (ends in 354) */
    bool body_pending; /* the 354 came: the group's body goes next */
    bool quitting;
    bool reopen;
    char in[65536];
    size_t in_len;
    char *out;
    size_t out_len, out_off, out_cap;
};

static void lconn_open(struct lconn *c);
static void lconn_cb(struct ev_loop *loop, ev_io *w, int revents);

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "salvo-sink-load: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void out_add(struct lconn *c, const char *s, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = realloc(c->out, c->out_cap);
        if (!c->out)
            abort();
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

/* Queues MAIL/RCPT/DATA for one more message if any are left, else QUIT. */
static void queue_next(struct lconn *c)
{
    if ((g.per_conn && c->on_conn >= g.per_conn) || atomic_fetch_add(&g_next, 1) >= g.messages) {
        out_add(c, "QUIT\r\n", 6);
        c->expect = 1;
        c->have_msg = false;
        c->quitting = true;
        return;
    }
    char buf[256];
    int n =
        snprintf(buf, sizeof(buf), "MAIL FROM:<load%d@sender.test> SIZE=%zu\r\n", c->id, g.size);
    out_add(c, buf, (size_t)n);
    for (int r = 0; r < g.rcpts; r++) {
        n = snprintf(buf, sizeof(buf), "RCPT TO:<u%d.%d@rcpt%d.test>\r\n", c->id, r, r % 10);
        out_add(c, buf, (size_t)n);
    }
    out_add(c, "DATA\r\n", 6);
    c->on_conn++;
    c->expect = 2 + g.rcpts;
    c->have_msg = true;
}

/* The body of this connection's next message, ~g.size bytes, then ".\r\n". */
static void queue_body(struct lconn *c)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf),
                     "Message-ID: <%d.%ld.%ld@load.test>\r\nFrom: <load@sender.test>\r\n"
                     "Subject: load\r\n\r\n",
                     c->id, ++c->seq, (long)getpid());
    out_add(c, buf, (size_t)n);
    static const char line[] = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do "
                               "eiusmod tem\r\n";
    for (size_t sent = (size_t)n; sent < g.size; sent += sizeof(line) - 1)
        out_add(c, line, sizeof(line) - 1);
    out_add(c, ".\r\n", 3);
}

static void lconn_close(struct lconn *c)
{
    ev_io_stop(c->loop, &c->io);
    tls_conn_free(c->tc); /* closes the fd */
    c->tc = NULL;
    c->fd = -1;
}

static void watch(struct lconn *c, int events)
{
    ev_io_stop(c->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->loop, &c->io);
}

static void flush_out(struct lconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = tls_conn_write(c->tc, c->out + c->out_off, c->out_len - c->out_off);
        if (n == TLS_IO_WANT_WRITE || n == TLS_IO_WANT_READ)
            break;
        if (n < 0) {
            atomic_fetch_add(&g_errors, 1);
            lconn_close(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    watch(c, EV_READ | (c->out_len ? EV_WRITE : 0));
}

/* Drives the client handshake; once done, EHLO again (RFC 3207 4.2). */
static void handshake(struct lconn *c)
{
    int rc = tls_conn_handshake(c->tc);
    if (rc == TLS_IO_WANT_READ || rc == TLS_IO_WANT_WRITE) {
        watch(c, rc == TLS_IO_WANT_READ ? EV_READ : EV_WRITE);
        return;
    }
    if (rc != 0) {
        fprintf(stderr, "salvo-sink-load: TLS handshake: %s\n", tls_conn_error(c->tc));
        atomic_fetch_add(&g_errors, 1);
        lconn_close(c);
        return;
    }
    struct tls_info info;
    if (tls_conn_info(c->tc, &info) == 0 && info.resumed)
        atomic_fetch_add(&g_resumed, 1);
    else
        atomic_fetch_add(&g_full, 1);
    c->handshaking = false;
    c->tls_done = true;
    out_add(c, "EHLO load.test\r\n", 16);
    c->expect = -1;
    flush_out(c);
}

/* One complete reply (its final line) arrived with this code. */
static void on_reply(struct lconn *c, int code)
{
    if (c->expect == 0) { /* greeting */
        out_add(c, "EHLO load.test\r\n", 16);
        c->expect = -1;
        return;
    }
    if (c->expect == -1) { /* EHLO */
        if (code != 250)
            atomic_fetch_add(&g_errors, 1);
        if (g.starttls && !c->tls_done) {
            out_add(c, "STARTTLS\r\n", 10);
            c->expect = -2;
            return;
        }
        queue_next(c);
        return;
    }
    if (c->expect == -2) { /* STARTTLS: 220, then the handshake */
        if (code != 220 || tls_conn_start_client(c->tc, g.tls, g.host, g.port,
                                                 TLS_VERIFY_ALLOW_INVALID, c->cache) < 0) {
            atomic_fetch_add(&g_errors, 1);
            lconn_close(c);
            return;
        }
        c->handshaking = true;
        return;
    }
    c->expect--;
    if (c->body_pending) { /* first reply of a group: the previous message's fate */
        c->body_pending = false;
        if (code == 250)
            atomic_fetch_add(&g_done, 1);
        else
            atomic_fetch_add(&g_errors, 1);
        return;
    }
    if (c->quitting) {
        lconn_close(c);
        /* --per-conn: a new connection for the rest (opened by lconn_cb, once it is
         * done with this connection's buffers) */
        c->reopen = atomic_load(&g_next) < g.messages;
        return;
    }
    if (c->expect > 0) {
        if (code != 250)
            atomic_fetch_add(&g_errors, 1);
        return;
    }
    if (code != 354) {
        atomic_fetch_add(&g_errors, 1);
        lconn_close(c);
        return;
    }
    /* Body, then the next transaction in the same write. */
    queue_body(c);
    queue_next(c);
    c->expect++; /* the message's own 250 comes first */
    c->body_pending = true;
}

static void lconn_io(struct lconn *c);

static void lconn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lconn *c = w->data;
    lconn_io(c);
    if (c->fd < 0 && c->reopen) {
        c->reopen = false;
        lconn_open(c);
    }
}

static void lconn_io(struct lconn *c)
{
    if (c->handshaking) {
        handshake(c);
        return;
    }
    bool more = true;
    while (more && c->fd >= 0) {
        ssize_t n = tls_conn_read(c->tc, c->in + c->in_len, sizeof(c->in) - c->in_len);
        if (n == TLS_IO_WANT_READ || n == TLS_IO_WANT_WRITE)
            break;
        if (n <= 0) {
            if (!c->quitting)
                atomic_fetch_add(&g_errors, 1);
            lconn_close(c);
            return;
        }
        c->in_len += (size_t)n;
        size_t off = 0;
        char *nl;
        while (c->fd >= 0 && !c->handshaking && (nl = memchr(c->in + off, '\n', c->in_len - off))) {
            const char *line = c->in + off;
            off = (size_t)(nl - c->in) + 1;
            if (nl - line >= 3 && line[3] != '-')
                on_reply(c, atoi(line));
        }
        if (c->fd < 0)
            return;
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
        more = tls_conn_pending(c->tc) > 0;
    }
    if (c->fd < 0)
        return;
    if (c->handshaking) {
        c->in_len = 0;
        flush_out(c); /* nothing queued after STARTTLS; keeps the watcher right */
        handshake(c);
        return;
    }
    flush_out(c);
}

/* Opens (or re-opens, after --per-conn messages) the TCP connection of c. */
static void lconn_open(struct lconn *c)
{
    c->fd = socket(g.addr.ss_family, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&g.addr, g.addr_len) < 0) {
        perror("salvo-sink-load: connect");
        exit(2);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    if (tls_conn_new_plain(c->fd, &c->tc) < 0)
        exit(2);
    c->expect = 0;
    c->on_conn = 0;
    c->handshaking = c->tls_done = c->body_pending = c->quitting = false;
    c->in_len = c->out_len = c->out_off = 0;
    ev_io_init(&c->io, lconn_cb, c->fd, EV_READ);
    c->io.data = c;
    ev_io_start(c->loop, &c->io);
}

static void *thread_main(void *arg)
{
    int t = (int)(long)arg;
    struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL);
    int n = g.connections / g.threads + (t < g.connections % g.threads ? 1 : 0);
    struct lconn *cs = calloc((size_t)n, sizeof(*cs));
    struct tls_session_cache *cache = NULL;
    if (g.starttls && tls_session_cache_new(1024, 3600, &cache) < 0)
        exit(2);
    for (int i = 0; i < n; i++) {
        struct lconn *c = &cs[i];
        c->loop = loop;
        c->id = t + i * g.threads;
        c->cache = cache;
        lconn_open(c);
    }
    ev_run(loop, 0);
    for (int i = 0; i < n; i++) {
        tls_conn_free(cs[i].tc);
        free(cs[i].out);
    }
    free(cs);
    tls_session_cache_free(cache);
    tls_thread_cleanup();
    ev_loop_destroy(loop);
    return NULL;
}

static long num(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        die("bad value for %s", opt);
    return v;
}

int main(int argc, char **argv)
{
    const char *connect_to = NULL;
    g.connections = 50;
    g.threads = 1;
    g.rcpts = 1;
    g.messages = 100000;
    g.size = 5000;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--starttls")) {
            g.starttls = true;
            continue;
        }
        if (i + 1 >= argc)
            die("option %s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--connect"))
            connect_to = v;
        else if (!strcmp(o, "--connections"))
            g.connections = (int)num(o, v, 1, 10000);
        else if (!strcmp(o, "--messages"))
            g.messages = num(o, v, 1, 1000000000);
        else if (!strcmp(o, "--size"))
            g.size = (size_t)num(o, v, 0, 100000000);
        else if (!strcmp(o, "--rcpts"))
            g.rcpts = (int)num(o, v, 1, 1000);
        else if (!strcmp(o, "--per-conn"))
            g.per_conn = num(o, v, 1, 1000000000);
        else if (!strcmp(o, "--threads"))
            g.threads = (int)num(o, v, 1, 64);
        else
            die("unknown option %s", o);
    }
    if (!connect_to)
        die("%s", "--connect HOST:PORT is required");
    char host[256];
    const char *colon = strrchr(connect_to, ':');
    if (!colon || (size_t)(colon - connect_to) >= sizeof(host))
        die("--connect '%s': expected HOST:PORT", connect_to);
    memcpy(host, connect_to, (size_t)(colon - connect_to));
    host[colon - connect_to] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        die("--connect '%s': cannot resolve", connect_to);
    snprintf(g.host, sizeof(g.host), "%s", host);
    g.port = (uint16_t)atoi(colon + 1);
    memcpy(&g.addr, res->ai_addr, res->ai_addrlen);
    g.addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    if (g.threads > g.connections)
        g.threads = g.connections;
    if (g.starttls) {
        char err[512];
        if (tls_global_init() < 0 ||
            tls_client_new(&(struct tls_client_opts){0}, &g.tls, err, sizeof(err)) < 0)
            die("%s", err);
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t th[64];
    for (int t = 0; t < g.threads; t++)
        pthread_create(&th[t], NULL, thread_main, (void *)(long)t);
    for (int t = 0; t < g.threads; t++)
        pthread_join(th[t], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    long done = atomic_load(&g_done), errors = atomic_load(&g_errors);
    printf("{\"messages\":%ld,\"recipients\":%ld,\"seconds\":%.3f,\"msgs_per_s\":%.0f,"
           "\"errors\":%ld,\"tls_full\":%ld,\"tls_resumed\":%ld}\n",
           done, done * g.rcpts, secs, done / secs, errors, atomic_load(&g_full),
           atomic_load(&g_resumed));
    tls_client_free(g.tls);
    return done == g.messages && errors == 0 ? 0 : 2;
}
