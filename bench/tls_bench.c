/* tls_bench: what our TLS layer costs, for BENCHMARKS.md ("TLS"). Uses only tls/tls.h.
 *
 *   tls_bench pair --cert F --key F --ca F --servername N [--seconds S]
 *       client and server of our tls/ layer in ONE thread over a socketpair: full and
 *       resumed handshakes/s per core (both sides' work), then AES-GCM bytes/s through
 *       one TLS 1.3 connection (both sides' work).
 *   tls_bench connect --connect HOST:PORT --servername N --ca F [--seconds S] [--reuse]
 *       our client against any server (e.g. openssl s_server): handshakes/s, the same
 *       measure as `openssl s_time -new` / `-reuse` against that server. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tls.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "tls_bench: %s\n", what);
    exit(2);
}

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

static int flag(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

/* ---- pair: both sides in one thread ------------------------------------------------ */

struct pair {
    struct tls_conn *c, *s;
};

static void pair_open(struct pair *p, struct tls_client *cl, struct tls_server *srv,
                      const char *name, struct tls_session_cache *cache)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        die("socketpair");
    if (tls_conn_new_plain(sv[0], &p->c) != 0 || tls_conn_new_plain(sv[1], &p->s) != 0 ||
        tls_conn_start_client(p->c, cl, name, 25, TLS_VERIFY_STRICT, cache) != 0 ||
        tls_conn_start_server(p->s, srv) != 0)
        die("cannot create connections");
    for (;;) {
        int a = tls_conn_handshake(p->c);
        int b = tls_conn_handshake(p->s);
        if (a == 0 && b == 0)
            break;
        if (a == TLS_IO_ERROR || b == TLS_IO_ERROR) {
            fprintf(stderr, "tls_bench: handshake: client '%s' server '%s'\n", tls_conn_error(p->c),
                    tls_conn_error(p->s));
            exit(2);
        }
    }
}

/* One byte server -> client: the client processes the TLS 1.3 tickets sent before it. */
static void pair_ping(struct pair *p)
{
    char b = 'x';
    if (tls_conn_write(p->s, &b, 1) != 1)
        die("server write");
    for (;;) {
        ssize_t n = tls_conn_read(p->c, &b, 1);
        if (n == 1)
            return;
        if (n != TLS_IO_WANT_READ)
            die("client read");
    }
}

static void pair_close(struct pair *p)
{
    tls_conn_free(p->c); /* stores the session in the cache, if any */
    tls_conn_free(p->s);
}

static void bench_pair(int argc, char **argv)
{
    const char *name = opt(argc, argv, "--servername", "mail.example.test");
    double secs = atof(opt(argc, argv, "--seconds", "5"));
    struct tls_cert_pair pp = {opt(argc, argv, "--cert", NULL), opt(argc, argv, "--key", NULL)};
    struct tls_client_opts co = {.ca_file = opt(argc, argv, "--ca", NULL)};
    char err[512];
    struct tls_server *srv = NULL;
    struct tls_client *cl = NULL;
    if (!pp.cert_file || !pp.key_file || !co.ca_file)
        die("pair needs --cert, --key and --ca");
    if (tls_server_new(&pp, 1, &srv, err, sizeof(err)) != 0 ||
        tls_client_new(&co, &cl, err, sizeof(err)) != 0)
        die(err);

    /* full handshakes: no cache */
    struct pair p;
    long n = 0;
    double t0 = now(), t;
    do {
        pair_open(&p, cl, srv, name, NULL);
        pair_close(&p);
        n++;
    } while ((t = now()) - t0 < secs);
    printf("full handshakes:    %8.0f /s (client+server on one core, %ld in %.1f s)\n",
           (double)n / (t - t0), n, t - t0);

    /* resumed: one cache, a ticket per connection */
    struct tls_session_cache *cache;
    if (tls_session_cache_new(16, 3600, &cache) != 0)
        die("cache");
    pair_open(&p, cl, srv, name, cache);
    pair_ping(&p);
    pair_close(&p);
    n = 0;
    long resumed = 0;
    t0 = now();
    do {
        pair_open(&p, cl, srv, name, cache);
        struct tls_info in;
        tls_conn_info(p.c, &in);
        resumed += in.resumed;
        pair_ping(&p);
        pair_close(&p);
        n++;
    } while ((t = now()) - t0 < secs);
    printf("resumed handshakes: %8.0f /s (client+server on one core, %ld of %ld resumed)\n",
           (double)n / (t - t0), resumed, n);
    tls_session_cache_free(cache);

    /* bulk: client -> server, 16 KiB writes (one full TLS record each) */
    pair_open(&p, cl, srv, name, NULL);
    struct tls_info in;
    tls_conn_info(p.c, &in);
    static char buf[16384];
    memset(buf, 'a', sizeof(buf));
    double bytes = 0;
    t0 = now();
    do {
        for (int k = 0; k < 64; k++) {
            ssize_t w = tls_conn_write(p.c, buf, sizeof(buf));
            if (w == TLS_IO_WANT_WRITE)
                break;
            if (w <= 0)
                die("bulk write");
        }
        for (;;) {
            ssize_t r = tls_conn_read(p.s, buf, sizeof(buf));
            if (r == TLS_IO_WANT_READ)
                break;
            if (r <= 0)
                die("bulk read");
            bytes += (double)r;
        }
    } while ((t = now()) - t0 < secs);
    printf("bulk %s %s: %8.1f MB/s (encrypt+decrypt on one core)\n", in.version, in.cipher,
           bytes / (t - t0) / 1e6);
    pair_close(&p);
    tls_server_free(srv);
    tls_client_free(cl);
}

/* ---- connect: our client against another server ------------------------------------- */

static int wait_fd(int fd, int want)
{
    struct pollfd pf = {fd, want == TLS_IO_WANT_WRITE ? POLLOUT : POLLIN, 0};
    return poll(&pf, 1, 5000) == 1 ? 0 : -1;
}

static void bench_connect(int argc, char **argv)
{
    const char *hp = opt(argc, argv, "--connect", NULL);
    const char *name = opt(argc, argv, "--servername", "mail.example.test");
    double secs = atof(opt(argc, argv, "--seconds", "5"));
    int reuse = flag(argc, argv, "--reuse");
    struct tls_client_opts co = {.ca_file = opt(argc, argv, "--ca", NULL)};
    if (!hp || !strchr(hp, ':'))
        die("connect needs --connect HOST:PORT");
    char host[256];
    snprintf(host, sizeof(host), "%.*s", (int)(strrchr(hp, ':') - hp), hp);
    const char *port = strrchr(hp, ':') + 1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        die("cannot resolve");
    char err[512];
    struct tls_client *cl = NULL;
    if (tls_client_new(&co, &cl, err, sizeof(err)) != 0)
        die(err);
    struct tls_session_cache *cache = NULL;
    if (reuse && tls_session_cache_new(16, 3600, &cache) != 0)
        die("cache");
    long n = 0, resumed = 0;
    double t0 = now(), t;
    do {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 &&
            (errno != EINPROGRESS || wait_fd(fd, TLS_IO_WANT_WRITE) != 0))
            die("connect");
        struct tls_conn *c;
        if (tls_conn_new_plain(fd, &c) != 0 ||
            tls_conn_start_client(c, cl, name, (uint16_t)atoi(port), TLS_VERIFY_STRICT, cache))
            die("conn");
        int rc;
        while ((rc = tls_conn_handshake(c)) != 0) {
            if (rc == TLS_IO_ERROR) {
                fprintf(stderr, "tls_bench: %s\n", tls_conn_error(c));
                exit(2);
            }
            wait_fd(fd, rc);
        }
        struct tls_info in;
        tls_conn_info(c, &in);
        resumed += in.resumed;
        if (reuse) {
            /* collect the TLS 1.3 tickets: close_notify, read to the peer's close */
            tls_conn_shutdown(c);
            char b[512];
            for (;;) {
                ssize_t r = tls_conn_read(c, b, sizeof(b));
                if (r > 0)
                    continue;
                if (r == 0 || r == TLS_IO_ERROR || wait_fd(fd, (int)r) != 0)
                    break;
            }
        }
        tls_conn_free(c);
        n++;
    } while ((t = now()) - t0 < secs);
    printf("%s handshakes: %8.0f /s (our client, %ld in %.1f s, %ld resumed)\n",
           reuse ? "reused" : "new", (double)n / (t - t0), n, t - t0, resumed);
    freeaddrinfo(ai);
    tls_session_cache_free(cache);
    tls_client_free(cl);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (tls_global_init() != 0)
        die("tls_global_init");
    if (argc > 1 && strcmp(argv[1], "pair") == 0)
        bench_pair(argc, argv);
    else if (argc > 1 && strcmp(argv[1], "connect") == 0)
        bench_connect(argc, argv);
    else
        die("usage: tls_bench pair|connect ... (see the comment at the top of tls_bench.c)");
    tls_thread_cleanup();
    return 0;
}
