/* salvo-sink: process set-up, worker threads, signals and statistics.
 *
 * Each worker thread has its own libev loop and its own SO_REUSEPORT listening
 * socket per --listen address, so the kernel spreads new connections over the
 * threads and no fd ever crosses threads. The main thread only handles signals:
 * SIGUSR1 prints the counters, SIGTERM/SIGINT stop the workers, join them and print
 * the final counters, SIGHUP reloads certificates. */
#include "sink_srv.h"

#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PROG "salvo-sink"

static void usage(FILE *f)
{
    fprintf(f, "usage: " PROG " --listen ADDR:PORT [--listen ...] [--threads N]\n"
               "                  [--tls-cert FILE --tls-key FILE]... [--stats FILE]\n"
               "                  [--hostname NAME] [--fault SPEC]... [--no-track]\n"
               "                  [--track-max N] [--max-size BYTES] [--idle-timeout SECONDS]\n"
               "                  [--log-level LEVEL]\n"
               "A fast SMTP sink: accepts and counts mail, delivers nothing.\n"
               "Counters go out as one JSON object on SIGUSR1 and at exit (SIGTERM/SIGINT),\n"
               "to stdout or atomically to --stats FILE. Fault specs: see bench/README.md.\n");
}

/* Prints "salvo-sink: <message>" and exits with `code` (1 user error, 2 runtime). */
static void die(int code, const char *fmt, ...) SV_PRINTF(2, 3) __attribute__((noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static long long parse_num(const char *opt, const char *s, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        die(1, "%s: expected a number from %lld to %lld, got '%s'", opt, lo, hi, s);
    return v;
}

/* "ADDR:PORT" or "[V6ADDR]:PORT"; ADDR may be a name. Port 0 picks a free port
 * (shared by all threads) and the "listening on" line tells which. */
static void parse_listen(struct sink_listen *l, const char *spec)
{
    char host[256];
    const char *port;
    snprintf(l->spec, sizeof(l->spec), "%s", spec);
    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - spec - 1) >= sizeof(host))
            die(1, "--listen '%s': expected [ADDR]:PORT", spec);
        memcpy(host, spec + 1, (size_t)(rb - spec - 1));
        host[rb - spec - 1] = '\0';
        port = rb + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host) ||
            memchr(spec, ':', (size_t)(colon - spec)))
            die(1, "--listen '%s': expected ADDR:PORT (IPv6 as [ADDR]:PORT)", spec);
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 0 || p > 65535)
        die(1, "--listen '%s': bad port '%s'", spec, port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc)
        die(1, "--listen '%s': cannot resolve '%s': %s", spec, host, gai_strerror(rc));
    memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
    l->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
}

static void addr_str(const struct sockaddr_storage *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN + 2], serv[16];
    if (getnameinfo((const struct sockaddr *)a, sizeof(*a), host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV)) {
        snprintf(buf, len, "?");
        return;
    }
    if (a->ss_family == AF_INET6)
        snprintf(buf, len, "[%s]:%s", host, serv);
    else
        snprintf(buf, len, "%s:%s", host, serv);
}

static int listen_socket(struct sink_listen *l)
{
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die(2, "--listen %s: socket: %s", l->spec, strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        die(2, "--listen %s: SO_REUSEPORT: %s", l->spec, strerror(errno));
    if (l->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&l->addr, l->addr_len) < 0)
        die(2, "--listen %s: bind: %s", l->spec, strerror(errno));
    if (listen(fd, 4096) < 0)
        die(2, "--listen %s: listen: %s", l->spec, strerror(errno));
    /* Port 0: every further socket (other threads) binds the port we got. */
    struct sockaddr_storage got;
    socklen_t got_len = sizeof(got);
    if (getsockname(fd, (struct sockaddr *)&got, &got_len) == 0) {
        memcpy(&l->addr, &got, got_len);
        l->addr_len = got_len;
    }
    return fd;
}

/* --- workers ------------------------------------------------------------------ */

static struct sink_config g_cfg;
static struct sink_worker *g_workers;
static struct sink_track *g_track;
static struct timespec g_start;

static void worker_wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct sink_worker *w = a->data;
    if (!atomic_load(&w->stop))
        return;
    for (int i = 0; i < w->n_listen; i++)
        ev_io_stop(loop, &w->lio[i]);
    ev_timer_stop(loop, &w->accept_pause);
    ev_timer_stop(loop, &w->idle_sweep);
    sink_conns_close_all(w);
    ev_async_stop(loop, a);
    ev_break(loop, EVBREAK_ALL);
}

static void *worker_main(void *arg)
{
    struct sink_worker *w = arg;
    ev_run(w->loop, 0);
    tls_server_free(w->tls_srv);
    tls_thread_cleanup();
    return NULL;
}

/* --- statistics --------------------------------------------------------------------- */

static void stats_json(struct sv_buf *b)
{
    struct sink_counters sum;
    memset(&sum, 0, sizeof(sum));
    for (int i = 0; i < g_cfg.threads; i++) {
#define SINK_X(name)                                                                               \
    atomic_store_explicit(&sum.name,                                                               \
                          atomic_load_explicit(&sum.name, memory_order_relaxed) +                  \
                              atomic_load_explicit(&g_workers[i].ctr.name, memory_order_relaxed),  \
                          memory_order_relaxed);
        SINK_COUNTERS(SINK_X)
#undef SINK_X
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double up =
        (double)(now.tv_sec - g_start.tv_sec) + (double)(now.tv_nsec - g_start.tv_nsec) / 1e9;
    sv_buf_puts(b, "{");
#define SINK_X(name)                                                                               \
    if (strcmp(#name, "connections_closed") != 0)                                                  \
        sv_buf_printf(b, "\"%s\":%llu,", #name,                                                    \
                      (unsigned long long)atomic_load_explicit(&sum.name, memory_order_relaxed));
    SINK_COUNTERS(SINK_X)
#undef SINK_X
    unsigned long long open = (unsigned long long)(sum.connections - sum.connections_closed);
    sv_buf_printf(b,
                  "\"connections_open\":%llu,\"connections_max_open\":%llu,\"threads\":%d,"
                  "\"tracking\":%s,\"uptime_s\":%.3f}\n",
                  open,
                  (unsigned long long)atomic_load_explicit(&sink_open_max, memory_order_relaxed),
                  g_cfg.threads, g_cfg.track ? "true" : "false", up);
}

/* Writes the counters: one JSON line on stdout, or FILE replaced atomically
 * (write FILE.tmp, fsync-free rename) so a reader never sees half an object. */
static int stats_write(void)
{
    struct sv_buf b = {0};
    stats_json(&b);
    if (!b.ptr)
        return -ENOMEM;
    int rc = 0;
    if (!g_cfg.stats_path) {
        fputs(b.ptr, stdout);
        fflush(stdout);
    } else {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", g_cfg.stats_path, (long)getpid());
        FILE *f = fopen(tmp, "w");
        if (!f || fputs(b.ptr, f) < 0 || fclose(f) != 0) {
            rc = -errno;
            sv_error("--stats %s: cannot write %s: %s", g_cfg.stats_path, tmp, strerror(errno));
        } else if (rename(tmp, g_cfg.stats_path) < 0) {
            rc = -errno;
            sv_error("--stats %s: rename: %s", g_cfg.stats_path, strerror(errno));
        }
        if (rc)
            unlink(tmp);
    }
    sv_buf_free(&b);
    return rc;
}

static void signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)revents;
    switch (s->signum) {
    case SIGUSR1: stats_write(); break;
    case SIGHUP: {
        /* The certbot renewal case: load the new files, swap only if all are good. */
        if (!g_cfg.tls_slot) {
            sv_info("SIGHUP: no certificates to reload");
            break;
        }
        char err[512];
        if (tls_server_slot_reload(g_cfg.tls_slot, g_cfg.certs, g_cfg.n_certs, err, sizeof(err)))
            sv_error("SIGHUP: reload failed, keeping the current certificates: %s", err);
        else {
            atomic_fetch_add_explicit(&sink_tls_gen, 1, memory_order_release);
            sv_info("SIGHUP: reloaded %zu certificate/key pair(s)", g_cfg.n_certs);
        }
        break;
    }
    default: ev_break(loop, EVBREAK_ALL); break;
    }
}

/* --- start-up ----------------------------------------------------------------------- */

/* The EHLO capability lines after the first, built once: with STARTTLS (plain
 * connection, certificates loaded) and without (TLS active, or no certificates). */
static char *ehlo_caps(const struct sink_config *cfg, bool starttls)
{
    const char *caps[6];
    char size[40];
    int n = 0;
    snprintf(size, sizeof(size), "SIZE %llu", (unsigned long long)cfg->max_size);
    if (!cfg->faults.no_pipelining)
        caps[n++] = "PIPELINING";
    caps[n++] = size;
    caps[n++] = "8BITMIME";
    caps[n++] = "ENHANCEDSTATUSCODES";
    if (starttls)
        caps[n++] = "STARTTLS";
    if (!cfg->faults.no_smtputf8)
        caps[n++] = "SMTPUTF8";
    struct sv_buf b = {0};
    for (int i = 0; i < n; i++)
        sv_buf_printf(&b, "250%c%s\r\n", i + 1 < n ? '-' : ' ', caps[i]);
    if (!b.ptr)
        die(2, "out of memory");
    return b.ptr;
}

static void parse_args(int argc, char **argv)
{
    enum {
        O_LISTEN = 256,
        O_THREADS,
        O_CERT,
        O_KEY,
        O_STATS,
        O_HOST,
        O_FAULT,
        O_NOTRACK,
        O_TRACKMAX,
        O_MAXSIZE,
        O_LOG,
        O_IDLE,
        O_HELP,
        O_VERSION
    };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"threads", required_argument, NULL, O_THREADS},
        {"tls-cert", required_argument, NULL, O_CERT},
        {"tls-key", required_argument, NULL, O_KEY},
        {"stats", required_argument, NULL, O_STATS},
        {"hostname", required_argument, NULL, O_HOST},
        {"fault", required_argument, NULL, O_FAULT},
        {"no-track", no_argument, NULL, O_NOTRACK},
        {"track-max", required_argument, NULL, O_TRACKMAX},
        {"max-size", required_argument, NULL, O_MAXSIZE},
        {"log-level", required_argument, NULL, O_LOG},
        {"idle-timeout", required_argument, NULL, O_IDLE},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    struct sink_config *cfg = &g_cfg;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cpus > 0 ? (int)(cpus > SINK_MAX_THREADS ? SINK_MAX_THREADS : cpus) : 1;
    cfg->track = true;
    cfg->track_max = 2000000;
    cfg->idle_timeout = 300;
    cfg->max_size = 52428800;
    if (gethostname(cfg->hostname, sizeof(cfg->hostname) - 1) < 0 || !cfg->hostname[0])
        snprintf(cfg->hostname, sizeof(cfg->hostname), "salvo-sink.invalid");
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (o) {
        case O_LISTEN:
            if (cfg->n_listen == SINK_MAX_LISTEN)
                die(1, "--listen: at most %d addresses", SINK_MAX_LISTEN);
            parse_listen(&cfg->listen[cfg->n_listen++], optarg);
            break;
        case O_THREADS:
            cfg->threads = (int)parse_num("--threads", optarg, 1, SINK_MAX_THREADS);
            break;
        case O_CERT:
            if (cfg->n_certs == SINK_MAX_CERTS)
                die(1, "--tls-cert: at most %d certificate/key pairs", SINK_MAX_CERTS);
            cfg->certs[cfg->n_certs++].cert_file = optarg;
            break;
        case O_KEY:
            if (cfg->n_keys == SINK_MAX_CERTS)
                die(1, "--tls-key: at most %d certificate/key pairs", SINK_MAX_CERTS);
            cfg->certs[cfg->n_keys++].key_file = optarg;
            break;
        case O_STATS:
            if (!*optarg)
                die(1, "--stats: empty file name");
            cfg->stats_path = optarg;
            break;
        case O_HOST:
            if (!*optarg || strlen(optarg) >= sizeof(cfg->hostname) || strpbrk(optarg, " \t\r\n"))
                die(1, "--hostname '%s': expected a host name without spaces", optarg);
            snprintf(cfg->hostname, sizeof(cfg->hostname), "%s", optarg);
            break;
        case O_FAULT: {
            char err[512];
            if (sink_fault_parse(&cfg->faults, optarg, err, sizeof(err)) < 0)
                die(1, "%s", err);
            break;
        }
        case O_NOTRACK: cfg->track = false; break;
        case O_TRACKMAX:
            cfg->track_max = (size_t)parse_num("--track-max", optarg, 1, 1000000000LL);
            break;
        case O_MAXSIZE:
            cfg->max_size = (uint64_t)parse_num("--max-size", optarg, 1, 1LL << 40);
            break;
        case O_IDLE:
            cfg->idle_timeout = (double)parse_num("--idle-timeout", optarg, 0, 86400);
            break;
        case O_LOG: {
            enum sv_log_level lv;
            if (sv_log_level_parse(optarg, &lv) < 0)
                die(1, "--log-level '%s': expected error, warn, info, debug or trace", optarg);
            sv_log_set_level(lv);
            break;
        }
        case O_HELP: usage(stdout); exit(0);
        case O_VERSION: printf(PROG " %s\n", SALVO_VERSION); exit(0);
        case ':': die(1, "option '%s' needs a value", argv[optind - 1]);
        default: die(1, "unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        die(1, "unexpected argument '%s' (see --help)", argv[optind]);
    if (cfg->n_listen == 0)
        die(1, "--listen ADDR:PORT is required (see --help)");
    /* Pairs go in order: the i-th --tls-key belongs to the i-th --tls-cert. */
    if (cfg->n_certs != cfg->n_keys) {
        if (cfg->n_certs > cfg->n_keys)
            die(1, "--tls-cert %s has no matching --tls-key", cfg->certs[cfg->n_keys].cert_file);
        die(1, "--tls-key %s has no matching --tls-cert", cfg->certs[cfg->n_certs].key_file);
    }
    cfg->starttls = cfg->n_certs > 0 && !cfg->faults.no_starttls;
    cfg->ehlo_tail = ehlo_caps(cfg, cfg->starttls);
    cfg->ehlo_tail_tls = ehlo_caps(cfg, false);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    clock_gettime(CLOCK_MONOTONIC, &g_start);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max; /* one fd per connection: take all we may */
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (g_cfg.n_certs) {
        char err[512];
        struct tls_server *srv = NULL;
        if (tls_global_init() < 0)
            die(2, "cannot initialise the TLS library");
        if (tls_server_new(g_cfg.certs, g_cfg.n_certs, &srv, err, sizeof(err)) < 0)
            die(1, "%s", err); /* names the file and the reason; never a fallback */
        if (tls_server_slot_new(srv, &g_cfg.tls_slot) < 0)
            die(2, "out of memory");
    }
    if (g_cfg.track) {
        g_track = sink_track_new(g_cfg.track_max);
        if (!g_track)
            die(2, "cannot allocate the tracking set for %zu entries", g_cfg.track_max);
    }

    g_workers = aligned_alloc(64, sizeof(*g_workers) * (size_t)g_cfg.threads);
    if (!g_workers)
        die(2, "out of memory");
    memset(g_workers, 0, sizeof(*g_workers) * (size_t)g_cfg.threads);
    for (int i = 0; i < g_cfg.threads; i++) {
        struct sink_worker *w = &g_workers[i];
        w->id = i;
        w->cfg = &g_cfg;
        w->track = g_track;
        w->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOSIGMASK);
        if (!w->loop)
            die(2, "ev_loop_new failed");
        ev_async_init(&w->wake, worker_wake_cb);
        w->wake.data = w;
        ev_async_start(w->loop, &w->wake);
        for (int j = 0; j < g_cfg.n_listen; j++) {
            w->lfd[j] = listen_socket(&g_cfg.listen[j]);
            ev_io_init(&w->lio[j], sink_accept_cb, w->lfd[j], EV_READ);
            w->lio[j].data = w;
            ev_io_start(w->loop, &w->lio[j]);
        }
        w->n_listen = g_cfg.n_listen;
        if (g_cfg.idle_timeout > 0) {
            double every = g_cfg.idle_timeout < 2 ? 0.25 : 1.0;
            ev_timer_init(&w->idle_sweep, sink_idle_sweep_cb, every, every);
            w->idle_sweep.data = w;
            ev_timer_start(w->loop, &w->idle_sweep);
        }
    }

    /* Nobody takes these signals asynchronously: they stay blocked in every thread
     * (the workers inherit the mask) and the main loop reads them from a signalfd. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    for (int i = 0; i < g_cfg.threads; i++) {
        int rc = pthread_create(&g_workers[i].thread, NULL, worker_main, &g_workers[i]);
        if (rc)
            die(2, "pthread_create: %s", strerror(rc));
    }
    struct ev_loop *loop = ev_default_loop(EVFLAG_SIGNALFD);
    ev_signal sw[4];
    int signums[4] = {SIGINT, SIGTERM, SIGUSR1, SIGHUP};
    for (int i = 0; i < 4; i++) {
        ev_signal_init(&sw[i], signal_cb, signums[i]);
        ev_signal_start(loop, &sw[i]);
    }

    struct sv_buf where = {0};
    for (int j = 0; j < g_cfg.n_listen; j++) {
        char a[128];
        addr_str(&g_cfg.listen[j].addr, a, sizeof(a));
        sv_buf_printf(&where, "%s%s", j ? " " : "", a);
    }
    sv_info("listening on %s (%d threads, tracking %s, STARTTLS %s)", where.ptr, g_cfg.threads,
            g_cfg.track ? "on" : "off", g_cfg.starttls ? "on" : "off");
    sv_buf_free(&where);

    ev_run(loop, 0);

    for (int i = 0; i < g_cfg.threads; i++) {
        atomic_store(&g_workers[i].stop, true);
        ev_async_send(g_workers[i].loop, &g_workers[i].wake);
    }
    for (int i = 0; i < g_cfg.threads; i++) {
        pthread_join(g_workers[i].thread, NULL);
        for (int j = 0; j < g_workers[i].n_listen; j++)
            close(g_workers[i].lfd[j]);
        ev_loop_destroy(g_workers[i].loop);
    }
    int rc = stats_write();
    for (int i = 0; i < 4; i++)
        ev_signal_stop(loop, &sw[i]);
    ev_loop_destroy(loop);
    free(g_workers);
    sink_track_free(g_track);
    sink_faults_free(&g_cfg.faults);
    free(g_cfg.ehlo_tail);
    free(g_cfg.ehlo_tail_tls);
    tls_server_slot_free(g_cfg.tls_slot);
    if (g_cfg.n_certs)
        tls_thread_cleanup();
    return rc ? 2 : 0;
}
