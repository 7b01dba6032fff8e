/* Helpers shared by the tls tests (see test_tls_helpers.h). */
#include "test_tls_helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* EC P-256 keys (fast); leafs signed by a test CA; expired and not-yet-valid ones need
 * explicit dates, which only `openssl ca` takes on OpenSSL 3.0. */
static const char cert_script[] =
    "set -e\n"
    "cd \"$1\"\n"
    "key() { openssl ecparam -name prime256v1 -genkey -noout -out \"$1.key\"; }\n"
    "key ca\n"
    "openssl req -x509 -new -key ca.key -subj '/CN=salvo test CA' -days 30 -out ca.pem "
    "  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign\n"
    "leaf() {\n"
    "  key \"$1\"\n"
    "  printf '[ext]\\nsubjectAltName=%s\\nbasicConstraints=CA:FALSE\\n"
    "extendedKeyUsage=serverAuth\\n' \"$2\" > \"$1.cnf\"\n"
    "  openssl req -new -key \"$1.key\" -subj \"/CN=$1\" -out \"$1.csr\"\n"
    "  openssl x509 -req -in \"$1.csr\" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 "
    "    -extfile \"$1.cnf\" -extensions ext -out \"$1.pem\"\n"
    "}\n"
    "leaf wild 'DNS:*.example.test,DNS:example.test'\n"
    "leaf other 'DNS:other.test'\n"
    "leaf wrong 'DNS:mx.wrong.test'\n"
    "leaf ipsan 'IP:127.0.0.1,IP:2001:db8::25,DNS:mail.example.test'\n"
    "leaf ipdns 'DNS:127.0.0.1'\n"
    "key self\n"
    "openssl req -x509 -new -key self.key -subj /CN=self -days 30 -out self.pem "
    "  -addext subjectAltName=DNS:mail.example.test\n"
    "mkdir -p db && : > db/index.txt && echo 01 > db/serial\n"
    "cat > ca.cnf <<EOC\n"
    "[ca]\ndefault_ca=c\n[c]\ndir=.\ndatabase=db/index.txt\nserial=db/serial\n"
    "new_certs_dir=db\ncertificate=ca.pem\nprivate_key=ca.key\ndefault_md=sha256\n"
    "policy=p\nunique_subject=no\n[p]\ncommonName=supplied\n"
    "[ext]\nsubjectAltName=DNS:*.example.test,DNS:example.test\n"
    "EOC\n"
    "dated() {\n"
    "  key \"$1\"\n"
    "  openssl req -new -key \"$1.key\" -subj \"/CN=$1\" -out \"$1.csr\"\n"
    "  openssl ca -batch -config ca.cnf -extensions ext -startdate \"$2\" -enddate \"$3\" "
    "    -in \"$1.csr\" -out \"$1.pem\"\n"
    "}\n"
    "dated expired 20200101000000Z 20200102000000Z\n"
    "dated future 20990101000000Z 20990102000000Z\n";

int tt_make_certs(const char *dir)
{
    struct tu_result r;
    const char *argv[] = {"/bin/sh", "-c", cert_script, "sh", dir, NULL};
    if (tu_run(argv, NULL, 60, &r) != 0)
        return -1;
    int rc = r.status == 0 ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "certificate generation failed (%d):\n%s\n", r.status, r.err);
    tu_result_free(&r);
    return rc;
}

const char *tt_path(const char *dir, const char *name)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
    return b;
}

pid_t tt_spawn(const char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (!getenv("SALVO_TEST_VERBOSE")) {
            int fd = open("/dev/null", O_RDWR);
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

void tt_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int tt_wait_port(int port, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok)
            return 0;
        usleep(20000);
    }
    return -1;
}

/* ---- tiny SMTP server on our own tls/ API --------------------------------------- */

struct tt_smtpd {
    struct tls_server *srv;
    enum tt_mode mode;
    int lfd;
    int stop_pipe[2];
    pthread_t th;
    pthread_mutex_t mu;
    char last_sni[256];
    int full, resumed;
};

/* Waits for the fd or the stop pipe; 0 ready, -1 stop/timeout. */
static int d_wait(struct tt_smtpd *d, int fd, int want)
{
    struct pollfd p[2] = {{fd, want == TLS_IO_WANT_WRITE ? POLLOUT : POLLIN, 0},
                          {d->stop_pipe[0], POLLIN, 0}};
    int r = poll(p, 2, 10000);
    if (r <= 0 || p[1].revents)
        return -1;
    return 0;
}

static int d_write(struct tt_smtpd *d, struct tls_conn *c, const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = tls_conn_write(c, s + off, len - off);
        if (n > 0)
            off += (size_t)n;
        else if (n == TLS_IO_ERROR || d_wait(d, tls_conn_fd(c), (int)n) != 0)
            return -1;
    }
    return 0;
}

static int d_line(struct tt_smtpd *d, struct tls_conn *c, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = tls_conn_read(c, buf + len, 1); /* one byte: nothing read past the line */
        if (n == 1) {
            if (buf[len++] == '\n') {
                buf[len] = '\0';
                return 0;
            }
        } else if (n == 0 || n == TLS_IO_ERROR || d_wait(d, tls_conn_fd(c), (int)n) != 0) {
            return -1;
        }
    }
    return -1;
}

static int d_handshake(struct tt_smtpd *d, struct tls_conn *c)
{
    if (tls_conn_start_server(c, d->srv) != 0)
        return -1;
    for (;;) {
        int rc = tls_conn_handshake(c);
        if (rc == 0)
            break;
        if (rc == TLS_IO_ERROR || d_wait(d, tls_conn_fd(c), rc) != 0)
            return -1;
    }
    struct tls_info in;
    tls_conn_info(c, &in);
    pthread_mutex_lock(&d->mu);
    snprintf(d->last_sni, sizeof(d->last_sni), "%s", in.sni ? in.sni : "");
    if (in.resumed)
        d->resumed++;
    else
        d->full++;
    pthread_mutex_unlock(&d->mu);
    return 0;
}

static void d_serve(struct tt_smtpd *d, struct tls_conn *c)
{
    char line[1024];
    if (d->mode == TT_IMPLICIT) {
        if (d_handshake(d, c) != 0)
            return;
        while (d_line(d, c, line, sizeof(line)) == 0) {
        }
        tls_conn_shutdown(c);
        return;
    }
    if (d_write(d, c, "220 tt.test ESMTP ready\r\n") != 0)
        return;
    while (d_line(d, c, line, sizeof(line)) == 0) {
        if (strncasecmp(line, "EHLO", 4) == 0) {
            const char *r = d->mode == TT_STARTTLS && !tls_conn_is_tls(c)
                                ? "250-tt.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
                                : "250-tt.test\r\n250 PIPELINING\r\n";
            if (d_write(d, c, r) != 0)
                return;
        } else if (strncasecmp(line, "STARTTLS", 8) == 0 && d->mode == TT_STARTTLS) {
            if (d_write(d, c, "220 go ahead\r\n") != 0 || d_handshake(d, c) != 0)
                return;
        } else if (strncasecmp(line, "QUIT", 4) == 0) {
            d_write(d, c, "221 bye\r\n");
            tls_conn_shutdown(c);
            return;
        } else if (d_write(d, c, "502 5.5.2 not here\r\n") != 0) {
            return;
        }
    }
}

static void *d_main(void *arg)
{
    struct tt_smtpd *d = arg;
    for (;;) {
        struct pollfd p[2] = {{d->lfd, POLLIN, 0}, {d->stop_pipe[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(d->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        struct tls_conn *c = NULL;
        if (tls_conn_new_plain(fd, &c) != 0) {
            close(fd);
            continue;
        }
        d_serve(d, c);
        tls_conn_free(c);
    }
    tls_thread_cleanup();
    return NULL;
}

struct tt_smtpd *tt_smtpd_start(struct tls_server *srv, enum tt_mode mode, int *port)
{
    struct tt_smtpd *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->srv = srv;
    d->mode = mode;
    pthread_mutex_init(&d->mu, NULL);
    d->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (d->lfd < 0 || bind(d->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(d->lfd, 16) != 0 || getsockname(d->lfd, (struct sockaddr *)&a, &len) != 0 ||
        pipe(d->stop_pipe) != 0) {
        if (d->lfd >= 0)
            close(d->lfd);
        free(d);
        return NULL;
    }
    *port = ntohs(a.sin_port);
    signal(SIGPIPE, SIG_IGN);
    if (pthread_create(&d->th, NULL, d_main, d) != 0) {
        close(d->lfd);
        free(d);
        return NULL;
    }
    return d;
}

void tt_smtpd_stop(struct tt_smtpd *d)
{
    if (!d)
        return;
    if (write(d->stop_pipe[1], "x", 1) != 1)
        perror("tt_smtpd_stop");
    pthread_join(d->th, NULL);
    close(d->lfd);
    close(d->stop_pipe[0]);
    close(d->stop_pipe[1]);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

void tt_smtpd_last_sni(struct tt_smtpd *d, char *buf, size_t len)
{
    pthread_mutex_lock(&d->mu);
    snprintf(buf, len, "%s", d->last_sni);
    pthread_mutex_unlock(&d->mu);
}

int tt_smtpd_handshakes(struct tt_smtpd *d, int *resumed)
{
    pthread_mutex_lock(&d->mu);
    int full = d->full;
    *resumed = d->resumed;
    pthread_mutex_unlock(&d->mu);
    return full;
}
