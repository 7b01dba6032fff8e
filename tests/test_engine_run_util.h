/* Helpers for the `salvo run` tests: a salvo process in the background (its
 * stdout and stderr in files), waiting for it with a deadline, signals, and
 * the queue counters read with `salvo queue stats`. */
#ifndef SALVO_TEST_ENGINE_RUN_UTIL_H
#define SALVO_TEST_ENGINE_RUN_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct tr_proc {
    pid_t pid;
    char out_path[512], err_path[512];
};

/* Starts `salvo args...` (NULL-terminated) in `dir` with stdout/stderr to
 * dir/NAME.out and dir/NAME.err. Returns 0 or -1. */
int tr_start(struct tr_proc *p, const char *dir, const char *name, const char *const args[]);
/* Waits up to timeout_ms: the exit status (128+signal when killed), or -1 on timeout
 * (the process keeps running). */
int tr_wait(struct tr_proc *p, int timeout_ms);
/* SIGKILL and reap (NULL-safe for a finished process). */
void tr_kill9(struct tr_proc *p);
/* Everything the process wrote so far (owned). */
char *tr_out(const struct tr_proc *p);
char *tr_err(const struct tr_proc *p);

/* Waits up to timeout_ms until `file`'s contents contain `needle`; true if so. */
bool tr_wait_for_text(const char *file, const char *needle, int timeout_ms);

/* One counter of `salvo queue stats` ("delivered", "ready", ...), -1 on error. */
long long tr_queue_stat(const char *dir, const char *counter);

/* The number after `word ` in a summary line ("delivered 12, ..."), -1 if absent. */
long long tr_summary_num(const char *line, const char *word);

/* Milliseconds on the monotonic clock. */
int64_t tr_now_ms(void);
void tr_sleep_ms(int ms);

#endif
