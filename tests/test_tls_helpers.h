/* Helpers shared by the tls tests: test certificates made with the openssl CLI,
 * background servers (openssl s_server, a python3 ssl STARTTLS server, and a tiny SMTP
 * server on our own tls/ server API). */
#ifndef SALVO_TEST_TLS_HELPERS_H
#define SALVO_TEST_TLS_HELPERS_H

#include <stdbool.h>
#include <sys/types.h>

#include "tls.h"

/* Makes, in `dir`: ca.pem/ca.key (test CA), wild.pem/key (*.example.test +
 * example.test), other.pem/key (other.test), wrong.pem/key (mx.wrong.test),
 * self.pem/key (self-signed, mail.example.test), expired.pem/key (2020),
 * future.pem/key (2099), ipsan.pem/key (IP:127.0.0.1, IP:2001:db8::25,
 * mail.example.test), ipdns.pem/key (DNS:127.0.0.1, a name, not an address). Returns 0, or -1 (with
 * the openssl output on stderr). */
int tt_make_certs(const char *dir);

/* "dir/name" in a static rotating buffer (valid for the next 8 calls). */
const char *tt_path(const char *dir, const char *name);

/* Starts argv in the background (stdout/stderr to /dev/null unless SALVO_TEST_VERBOSE);
 * returns the pid or -1. */
pid_t tt_spawn(const char *const argv[]);
/* SIGTERM, then SIGKILL after 2 s; reaps. */
void tt_stop(pid_t pid);
/* Waits until 127.0.0.1:port accepts a TCP connection; 0, or -1 after timeout_ms. */
int tt_wait_port(int port, int timeout_ms);

/* A tiny SMTP server on our own tls/ API, one connection at a time, in a thread.
 *   mode TT_STARTTLS: greeting, EHLO (with STARTTLS), STARTTLS, EHLO, QUIT
 *   mode TT_NO_STARTTLS: same without STARTTLS in the EHLO reply
 *   mode TT_IMPLICIT: TLS right after accept, then waits for the client to close */
enum tt_mode { TT_STARTTLS, TT_NO_STARTTLS, TT_IMPLICIT };
struct tt_smtpd;
/* Borrows srv for its lifetime. Returns the server (port in *port) or NULL. */
struct tt_smtpd *tt_smtpd_start(struct tls_server *srv, enum tt_mode mode, int *port);
void tt_smtpd_stop(struct tt_smtpd *d);
/* The SNI of the last TLS connection ("" if none), copied into buf. */
void tt_smtpd_last_sni(struct tt_smtpd *d, char *buf, size_t len);
int tt_smtpd_handshakes(struct tt_smtpd *d, int *resumed);

#endif
