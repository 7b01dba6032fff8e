#include "dnsmasq.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define DNSMASQ_BIN "/usr/sbin/dnsmasq"

/* A UDP socket on 127.0.0.1 (port 0 = any); returns the fd and sets *port. */
static int udp_bind(int *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Sends "A? probe.test" to the server and waits up to 200 ms for any reply. */
static int answers_query(int port)
{
    static const unsigned char q[] = {0x12, 0x34, 0x01, 0x00, 0,   1,   0,   0,   0, 0,
                                      0,    0,    5,    'p',  'r', 'o', 'b', 'e', 4, 't',
                                      'e',  's',  't',  0,    0,   1,   0,   1};
    int any = 0;
    int fd = udp_bind(&any);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = 0;
    if (sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&sa, sizeof(sa)) == (ssize_t)sizeof(q)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        unsigned char buf[512];
        if (poll(&p, 1, 200) == 1 && recv(fd, buf, sizeof(buf), 0) >= 12 && buf[0] == 0x12 &&
            buf[1] == 0x34)
            ok = 1;
    }
    close(fd);
    return ok;
}

static int spawn(struct tu_dnsmasq *d, const char *conf)
{
    char port[32], cfile[4096], lfile[4096];
    snprintf(port, sizeof(port), "--port=%d", d->port);
    snprintf(cfile, sizeof(cfile), "--conf-file=%s", conf);
    snprintf(lfile, sizeof(lfile), "--log-facility=%s/dnsmasq.log", d->dir);
    /* dnsmasq drops to "nobody" when started as root, and nobody may not read
     * our temp dir: stay root then. Not as root it cannot change user anyway. */
    const char *argv[] = {DNSMASQ_BIN,
                          "--keep-in-foreground",
                          "--no-resolv",
                          "--no-hosts",
                          "--no-poll",
                          "--bind-interfaces",
                          "--listen-address=127.0.0.1",
                          "--pid-file=",
                          port,
                          cfile,
                          lfile,
                          "--log-queries",
                          geteuid() == 0 ? "--user=root" : NULL,
                          NULL};
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
        }
        execv(DNSMASQ_BIN, (char *const *)argv);
        _exit(127);
    }
    d->pid = pid;
    return 0;
}

int tu_dnsmasq_start(struct tu_dnsmasq *d, const char *config_lines)
{
    memset(d, 0, sizeof(*d));
    d->blackhole_fd = -1;
    d->blackhole_fd = udp_bind(&d->blackhole_port);
    d->dir = tu_mkdtemp();
    if (d->blackhole_fd < 0 || !d->dir) {
        fprintf(stderr, "tu_dnsmasq_start: no temp dir or black-hole socket\n");
        tu_dnsmasq_stop(d);
        return -1;
    }
    size_t n = (config_lines ? strlen(config_lines) : 0) + 256;
    char *text = malloc(n);
    if (!text) {
        tu_dnsmasq_stop(d);
        return -1;
    }
    snprintf(text, n, "%s\nlocal=/test/\nserver=/timeout.test/127.0.0.1#%d\n",
             config_lines ? config_lines : "", d->blackhole_port);
    char *conf = tu_write_file(d->dir, "dnsmasq.conf", text);
    free(text);
    if (!conf) {
        tu_dnsmasq_stop(d);
        return -1;
    }
    /* The port was free a moment ago; another test may take it first: retry. */
    for (int attempt = 0; attempt < 5 && d->pid == 0; attempt++) {
        d->port = tu_free_port();
        if (d->port <= 0 || spawn(d, conf) < 0)
            continue;
        for (int i = 0; i < 100; i++) { /* up to ~25 s on a loaded machine */
            int st;
            if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
                d->pid = 0; /* exited: bad config or port taken */
                break;
            }
            if (answers_query(d->port)) {
                snprintf(d->ns, sizeof(d->ns), "127.0.0.1:%d", d->port);
                free(conf);
                return d->port;
            }
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (d->pid > 0) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
            d->pid = 0;
        }
    }
    fprintf(stderr, "tu_dnsmasq_start: dnsmasq did not come up (see %s/dnsmasq.log)\n", d->dir);
    free(conf);
    tu_dnsmasq_stop(d);
    return -1;
}

void tu_dnsmasq_stop(struct tu_dnsmasq *d)
{
    if (!d)
        return;
    if (d->pid > 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
    if (d->blackhole_fd > 0)
        close(d->blackhole_fd);
    d->blackhole_fd = -1;
    if (d->dir) {
        tu_rmtree(d->dir);
        free(d->dir);
        d->dir = NULL;
    }
}
