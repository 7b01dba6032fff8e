/* `salvo run`: the delivery engine process (the work is in runner.c/worker.c). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "engine.h"
#include "run_int.h"

static const char run_usage[] =
    "usage: salvo run [-c FILE] [--drain] [--progress | --no-progress]\n"
    "\n"
    "Delivers the queued mail: one queue thread talks to Redis, server.workers.threads\n"
    "worker threads (pinned unless server.workers.pin = false) run the SMTP sessions.\n"
    "\n"
    "  -c FILE        configuration file (default: $SALVO_CONFIG, ./salvo.toml, built-in)\n"
    "  --drain        exit 0 once nothing is ready, scheduled or in flight\n"
    "  --progress     a progress line every second on stderr, also when it is not a\n"
    "                 terminal (default: only on a terminal)\n"
    "  --no-progress  no progress line\n"
    "\n"
    "SIGTERM or SIGINT stops gracefully: no new jobs, transactions in flight finish\n"
    "(at most server.shutdown-timeout, default 10s), outcomes are written, exit 0.\n"
    "Jobs not finished stay queued and are taken over after queue.lease (default 60s)\n"
    "by the next `salvo run`. A second signal exits at once (nothing is lost either:\n"
    "delivery is at-least-once).\n"
    "\n"
    "SIGHUP re-reads the configuration file. If it is valid, delivery attempts\n"
    "started from then on use its rules, limits, remotes and TLS trust (ca-file), and\n"
    "queue.lease applies; redis.*, server.*, resolver.* and log.level need a restart\n"
    "(a warning names each one changed). If it is not valid: one line\n"
    "`salvo: reload failed: FILE:LINE:COL: ...` and the run goes on as before.\n"
    "\n"
    "On exit one summary line goes to stdout:\n"
    "  delivered N, deferred N, bounced N, transactions N, connections N (reused N),\n"
    "  tls full N resumed N, in SECONDSs (RATE msgs/s)\n"
    "counting recipients by outcome (bounced includes dead letters), SMTP transactions,\n"
    "new connections and transactions sent over an already open one, TLS handshakes,\n"
    "and delivered recipients per second of run time.\n"
    "\n"
    "The progress line (every second; on a terminal rewritten in place, otherwise one\n"
    "line each time, prefixed with salvo[PID]):\n"
    "  N delivered (N/s), N deferred, N bounced, queue N (N in flight), TLS resumed P%\n"
    "counts this process's recipients, the rate since the previous line (on the last\n"
    "line: over the whole run), the queue's ready + scheduled recipients and those\n"
    "claimed by any process, and the share of this process's TLS handshakes that\n"
    "resumed a session (- before the first).\n"
    "\n"
    "Environment: SALVO_REDIS_URL overrides redis.url.\n";

int cmd_run(int argc, char **argv)
{
    const char *conf_path = NULL;
    struct eng_run_opts o = {0};
    int progress = -1; /* -1: on a terminal only */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(run_usage, stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--drain") == 0) {
            o.drain = true;
        } else if (strcmp(a, "--progress") == 0) {
            progress = 1;
        } else if (strcmp(a, "--no-progress") == 0) {
            progress = 0;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc)
                return eng_fail(EXIT_USER, "run: %s needs a FILE; see salvo run --help", a);
            conf_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            conf_path = a + 9;
        } else {
            return eng_fail(EXIT_USER, "run: unknown argument '%s'; see salvo run --help", a);
        }
    }
    struct eng_conf conf;
    int rc = eng_conf_load_or_report(conf_path, &conf);
    if (rc)
        return rc;
    bool tty = isatty(STDERR_FILENO) == 1;
    o.progress = progress < 0 ? tty : progress == 1;
    o.progress_lines = !tty;
    o.conf_path = eng_conf_path(conf_path);
    rc = eng_run(&conf, &o);
    eng_conf_free(&conf);
    return rc;
}
