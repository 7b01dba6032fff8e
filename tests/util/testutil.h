/* Helpers for tests: run a program and capture what it prints, temp dirs,
 * free loopback ports. Tests assert on behaviour: exit codes, output, counts. */
#ifndef SALVO_TESTUTIL_H
#define SALVO_TESTUTIL_H

#include <stddef.h>

struct tu_result {
    int status; /* exit code, or 128+signal when killed by a signal */
    char *out;  /* everything on stdout, NUL-terminated (owned) */
    char *err;  /* everything on stderr (owned) */
    size_t out_len, err_len;
};

/* Runs argv (argv[0] is a path or a name on $PATH) with `input` on stdin (NULL =
 * empty), waits up to `timeout_s` seconds (then SIGKILL, status 137).
 * Returns 0 and fills `r`, or -1 if the program could not be started. */
int tu_run(const char *const argv[], const char *input, int timeout_s, struct tu_result *r);
/* Like tu_run, but in directory `cwd` (NULL = the test's own) and with `env`
 * changes applied first: "NAME=value" sets, a bare "NAME" unsets (NULL-terminated;
 * NULL = no changes). */
int tu_run_env(const char *const argv[], const char *input, int timeout_s, const char *cwd,
               const char *const env[], struct tu_result *r);
void tu_result_free(struct tu_result *r);

/* The salvo binary under test: $SALVO_BIN, set by CTest for every test. */
const char *tu_salvo_bin(void);

/* Creates a fresh directory under $TMPDIR (or /tmp); returns owned path. */
char *tu_mkdtemp(void);
/* Removes a directory tree (best effort). */
void tu_rmtree(const char *path);
/* cmocka group set-up and tear-down for tests that need one scratch folder, tu_dir. */
extern char *tu_dir;
int tu_dir_setup(void **state);
int tu_dir_teardown(void **state);
/* Writes `data` to dir/name; returns owned full path (NULL on error). */
char *tu_write_file(const char *dir, const char *name, const char *data);

/* Returns a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0). */
int tu_free_port(void);

#endif
