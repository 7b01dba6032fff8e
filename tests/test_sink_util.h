/* Helpers for the salvo-sink tests: run the real sink binary ($SALVO_SINK_BIN) on a
 * free loopback port, read its JSON counters, and talk SMTP to it over a socket. */
#ifndef SALVO_TEST_SINK_UTIL_H
#define SALVO_TEST_SINK_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ts_sink {
    pid_t pid;
    int port;
    int out_fd;     /* the sink's stdout: one JSON line per SIGUSR1 / exit */
    char *dir;      /* owned temp dir; stderr goes to dir/stderr */
    char *err_path; /* owned */
    char outbuf[16384];
    size_t outlen;
};

/* The sink binary: $SALVO_SINK_BIN (set by tests/sink.cmake). */
const char *ts_sink_bin(void);

/* Starts the sink with "--listen 127.0.0.1:0" plus `extra` (NULL-terminated, may be
 * NULL) and waits until it logs the port it listens on. Returns 0 or -1. */
int ts_sink_start(struct ts_sink *s, const char *const extra[]);
/* Sends SIGUSR1 and reads the JSON line it prints into buf. Returns 0 or -1. */
int ts_sink_stats(struct ts_sink *s, char *buf, size_t len);
/* Sends SIGTERM, reads the final JSON line (if buf), reaps; returns the exit status
 * (128+signal if killed) or -1. Removes the temp dir. */
int ts_sink_stop(struct ts_sink *s, char *buf, size_t len);
/* Reads the sink's stderr so far (owned, NUL-terminated). */
char *ts_sink_stderr(struct ts_sink *s);

/* The unsigned number after "key": in a flat JSON object, or UINT64_MAX if absent. */
uint64_t ts_json_u64(const char *json, const char *key);

/* A blocking SMTP test client with its own input buffer. */
struct ts_client {
    int fd;
    size_t len;
    char buf[262144];
};

/* Connects to 127.0.0.1:port (TCP_NODELAY). Returns 0 or -1. */
int ts_connect(struct ts_client *c, int port);
void ts_close(struct ts_client *c);
/* Writes all of s. Returns 0 or -1. */
int ts_send(struct ts_client *c, const char *s);
int ts_send_n(struct ts_client *c, const void *p, size_t n);
/* Reads one complete reply (all lines of a multi-line reply) within timeout_ms.
 * Returns the 3-digit code of its last line; text (if non-NULL) gets the whole
 * reply. Returns -1 on EOF / connection error, -2 on timeout, -3 if the reply does
 * not fit the buffer or has no valid code. */
int ts_reply(struct ts_client *c, char *text, size_t len, int timeout_ms);
/* Waits up to timeout_ms for the peer to close: 0 if it did (EOF or reset), -2 on
 * timeout. Unread input is discarded. */
int ts_wait_eof(struct ts_client *c, int timeout_ms);

#endif
