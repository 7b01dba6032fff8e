/* engine: the salvo process — CLI, configuration, workers, SMTP client.
 * Each top-level command lives in its own cmd_<name>.c and returns the process
 * exit code: 0 ok, 1 user error (bad input, bad config), 2 runtime failure. */
#ifndef SALVO_ENGINE_H
#define SALVO_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

enum { EXIT_OK = 0, EXIT_USER = 1, EXIT_RUNTIME = 2 };

/* The typed, validated configuration every command works from. */
struct eng_conf {
    struct cfg_doc *doc; /* owned; the embedded default when no file was found */
    const char *source;  /* borrowed: the file name, or "(embedded default)" */

    /* [redis] */
    char *redis_url;  /* owned; "redis://127.0.0.1:6379/0" by default */
    char *queue_name; /* owned; redis.queue, "default" by default */

    /* [server.workers] */
    int worker_threads; /* 0 = one per online core */

    char *redis_password; /* owned; redis.password, NULL when not set */
    bool worker_pin;      /* server.workers.pin; true by default */
    int log_level;        /* log.level as an enum sv_log_level; info by default */

    /* queue.lease: a claimed job unreported for this long is taken over by another
     * process (rq_reclaim); "60s" by default. */
    int64_t lease_ms;
    /* queue.retention: a finished message's metadata (counts, name) is dropped
     * from Redis this long after its last recipient became final; "7d". */
    int64_t retention_ms;
    /* server.shutdown-timeout: SIGTERM waits this long for transactions in
     * flight; "10s" by default. */
    int64_t shutdown_timeout_ms;

    /* resolver.nameservers: "ip" or "ip:port" ("[v6]:port") as written; owned */
    char **nameservers;
    size_t n_nameservers;

    /* [remote.<name>]: relay hosts that rules can route to */
    struct eng_remote *remotes; /* owned array */
    size_t n_remotes;

    /* Expression settings (sched's rule_setting_find() knows the key), compiled
     * at load time; the engine evaluates them per attempt. */
    struct eng_rule *rules; /* owned array */
    size_t n_rules;

    /* Outbound pools and trust (plain keys, read by engine/deliver). */
    int out_connections;    /* queue.outbound.limits.connections: per MX per worker; 8 */
    int out_msgs_per_conn;  /* queue.outbound.limits.messages-per-connection; 1000 */
    int out_idle_timeout_s; /* queue.outbound.limits.idle-timeout (seconds); 30 */
    char *out_ca_file;      /* queue.outbound.tls.ca-file; NULL = the system bundle */
    int out_mx_port;        /* queue.outbound.mx-port: SMTP port of MX hosts; 25 (for tests) */

    /* [[queue.limiter.outbound]]: cluster-wide rate limits (runner_limit.c) and
     * connection caps (conc.c, applied in deliver.c); only
     * the enabled ones, in file order. */
    struct eng_limiter *limiters; /* owned array */
    size_t n_limiters;
};

#define ENG_LIMITERS_MAX     8 /* enabled limiters: a job carries one bucket per limiter */
#define ENG_LIMITER_KEYS_MAX 3

struct eng_limiter {
    char *id;                       /* owned; unique, for logs and Redis keys */
    int keys[ENG_LIMITER_KEYS_MAX]; /* enum rule_var: one bucket per distinct value */
    size_t nkeys;                   /* 0 = one bucket for every matching job */
    struct rule_program *match;     /* owned; NULL = every job */
    int64_t rate;                   /* messages per period; 0 = no rate (queue thread) */
    int64_t period_ms;
    int64_t concurrency; /* connections open at once, cluster-wide; 0 = no cap (workers) */
    bool at_connect;     /* key or match uses mx / remote_ip: the rate applies in workers */
};

struct eng_remote {
    char *name;         /* owned; the <name> of [remote.<name>] */
    char *address;      /* owned; host name or IP */
    int port;           /* 25 by default */
    bool tls_implicit;  /* tls.implicit: TLS from the first byte (port 465 style) */
    struct cfg_pos pos; /* where [remote.<name>] was written */
};

struct rule_setting;
struct rule_program;
struct eng_rule {
    char *key;                          /* owned; dotted key, e.g. "queue.outbound.tls.starttls" */
    const struct rule_setting *setting; /* borrowed from sched (static) */
    struct rule_program *program;       /* owned */
};

/* Picks the config file: `opt` (-c), then $SALVO_CONFIG, then ./salvo.toml when it
 * exists; NULL means "use the embedded default". Returns borrowed string. */
const char *eng_conf_path(const char *opt);

/* Loads and validates the config at `path` (NULL = embedded default). Every problem
 * goes to `diag`; returns 0 when there are no errors, -1 otherwise. */
int eng_conf_load(const char *path, struct eng_conf *conf, struct cfg_diag *diag);
void eng_conf_free(struct eng_conf *conf); /* NULL-safe */

/* Loads the config for a command, printing every diagnostic on stderr.
 * Returns 0, or the exit code to return (EXIT_USER) with `conf` already freed. */
int eng_conf_load_or_report(const char *opt_path, struct eng_conf *conf);

/* Top-level commands; argv[0] is the command name. */
int cmd_run(int argc, char **argv);
int cmd_enqueue(int argc, char **argv);
int cmd_queue(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_rules(int argc, char **argv);
int cmd_tls(int argc, char **argv);

/* Prints "salvo: <message>" on stderr (one line); returns `code` for tail calls. */
int eng_fail(int code, const char *fmt, ...) SV_PRINTF(2, 3);

#endif
