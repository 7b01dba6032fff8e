/* A real dnsmasq for tests: an authoritative-looking DNS server on a free
 * loopback port (UDP and TCP), answering from config lines the test writes in
 * dnsmasq.conf syntax, e.g.
 *
 *   mx-host=example.test,mx1.example.test,10
 *   host-record=mx1.example.test,192.0.2.1,2001:db8::1
 *   dns-rr=nullmx.test,15,000000        (MX 0 "." = RFC 7505 null MX)
 *   txt-record=empty.test,"x"           (the name exists, no MX/A/AAAA)
 *   local-ttl=5                         (TTL of the records above; default 0)
 *
 * The helper always adds:
 *   local=/test/                        other names under .test: NXDOMAIN
 *   server=/timeout.test/127.0.0.1#B    names under timeout.test never get an
 *                                       answer (B is a UDP socket that reads
 *                                       nothing): clients time out
 * Point a resolver at `ns` ("127.0.0.1:PORT"). */
#ifndef SALVO_TU_DNSMASQ_H
#define SALVO_TU_DNSMASQ_H

#include <sys/types.h>

struct tu_dnsmasq {
    pid_t pid;        /* 0 when not running */
    int port;         /* UDP + TCP on 127.0.0.1 */
    char ns[32];      /* "127.0.0.1:PORT" */
    char *dir;        /* owned temp dir: dnsmasq.conf, dnsmasq.log */
    int blackhole_fd; /* the never-answering upstream of timeout.test */
    int blackhole_port;
};

/* Starts /usr/sbin/dnsmasq with `config_lines` (NUL-terminated, lines separated by
 * '\n'; may be NULL) and waits until it answers a query. Returns the port, or -1
 * (with a message on stderr; dnsmasq's own complaint is in its log). */
int tu_dnsmasq_start(struct tu_dnsmasq *d, const char *config_lines);
/* Kills dnsmasq, closes the black hole, removes the temp dir. NULL-safe, and safe
 * on a stopped or never-started d (zero-initialised). */
void tu_dnsmasq_stop(struct tu_dnsmasq *d);

#endif
