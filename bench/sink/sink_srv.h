/* salvo-sink server internals shared by sink_main.c (process, threads, signals,
 * statistics) and sink_conn.c (one SMTP session per connection). */
#ifndef SALVO_SINK_SRV_H
#define SALVO_SINK_SRV_H

#include "sink.h"
#include "tls.h"

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SINK_MAX_LISTEN  16
#define SINK_MAX_THREADS 256
#define SINK_IN_CAP      16384 /* per-connection input buffer; > SINK_LINE_MAX */
#define SINK_MAX_CERTS   16
#define SINK_MAX_CERTS   16
#define SINK_MAX_RCPT    1000 /* per transaction; RFC 5321 4.5.3.1.8 asks for >= 100 */

/* Every counter, in JSON output order. Each worker owns one copy and is its only
 * writer; the main thread sums them (relaxed loads) for --stats / SIGUSR1. */
#define SINK_COUNTERS(X)                                                                           \
    X(connections)                                                                                 \
    X(connections_closed)                                                                          \
    X(tls_handshakes_full)                                                                         \
    X(tls_handshakes_resumed)                                                                      \
    X(tls_handshakes_failed)                                                                       \
    X(transactions)                                                                                \
    X(recipients)                                                                                  \
    X(bytes)                                                                                       \
    X(pairs)                                                                                       \
    X(duplicates)                                                                                  \
    X(no_message_id)                                                                               \
    X(track_full)                                                                                  \
    X(mail_rejected)                                                                               \
    X(rcpt_rejected)                                                                               \
    X(data_rejected)                                                                               \
    X(commands)                                                                                    \
    X(syntax_errors)                                                                               \
    X(lines_too_long)                                                                              \
    X(timeouts)

struct sink_counters {
#define SINK_X(name) _Atomic uint64_t name;
    SINK_COUNTERS(SINK_X)
#undef SINK_X
};

/* Single-writer increment: a plain load + store, no locked RMW needed. */
#define SINK_INC(w, name, n)                                                                       \
    atomic_store_explicit(&(w)->ctr.name,                                                          \
                          atomic_load_explicit(&(w)->ctr.name, memory_order_relaxed) + (n),        \
                          memory_order_relaxed)

struct sink_listen {
    char spec[300]; /* as given, for messages */
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

struct sink_config {
    struct sink_listen listen[SINK_MAX_LISTEN];
    int n_listen;
    int threads;
    const char *stats_path; /* borrowed from argv */
    char hostname[256];
    struct sink_faults faults;
    bool track;
    size_t track_max;
    uint64_t max_size;
    double idle_timeout; /* seconds without input before "421" and close; 0 = never */
    struct tls_cert_pair certs[SINK_MAX_CERTS]; /* borrowed from argv; first = default */
    size_t n_certs, n_keys;
    struct tls_server_slot *tls_slot; /* owned; NULL without certificates */
    bool starttls;                    /* certificates given and not disabled by no-starttls */
    char *ehlo_tail;     /* owned: EHLO capability lines after the first, CRLF-terminated */
    char *ehlo_tail_tls; /* owned: the same once TLS is active (no STARTTLS) */
};

struct sink_conn;

struct sink_worker {
    struct sink_counters ctr; /* first: own cache lines, written by this thread only */
    int id;
    pthread_t thread;
    struct ev_loop *loop;
    ev_async wake;
    _Atomic bool stop;
    int lfd[SINK_MAX_LISTEN];
    ev_io lio[SINK_MAX_LISTEN];
    ev_timer accept_pause; /* accepts paused after EMFILE */
    ev_timer idle_sweep;   /* closes connections idle longer than cfg->idle_timeout */
    int n_listen;
    struct sink_conn *conns; /* doubly linked, for shutdown */
    uint64_t next_id;
    uint64_t next_queue_id;
    const struct sink_config *cfg;
    struct sink_track *track; /* borrowed, shared by all workers */
    /* This thread's reference to the current certificate store, refreshed when
     * sink_tls_gen moves (SIGHUP), so STARTTLS takes no lock. */
    struct tls_server *tls_srv;
    unsigned tls_gen;
} __attribute__((aligned(64)));

/* Global sequence for data:every:N (shared by all threads; only touched when that
 * fault is configured). */
extern _Atomic uint64_t sink_data_seq;
/* Bumped by the main thread after each successful certificate reload. */
extern _Atomic unsigned sink_tls_gen;

/* Connections open now and the most open at once, over every thread (shared:
 * one locked add per accept and close). */
extern _Atomic uint64_t sink_open_now, sink_open_max;

/* Accepts connections on listening socket `fd` until it would block (ev_io callback). */
void sink_accept_cb(struct ev_loop *loop, ev_io *w, int revents);
/* Timer callback (w->idle_sweep): closes w's idle connections with a 421. */
void sink_idle_sweep_cb(struct ev_loop *loop, ev_timer *t, int revents);
/* Closes and frees every connection of `w` (at shutdown, on w's thread). */
void sink_conns_close_all(struct sink_worker *w);

#endif
