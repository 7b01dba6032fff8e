/* sched: decisions. The rule language (Stalwart-compatible expressions compiled
 * to bytecode), retry/expiry schedules, throttles. Pure code, no I/O.
 *
 * Life of a rule: at config load a setting's value (a constant or an if/then/else
 * list) is compiled once into a rule_program: constants folded, variables resolved
 * to slots of struct rule_vars, regexes compiled with PCRE2 JIT. Per delivery
 * attempt the engine fills a rule_vars and calls rule_eval_setting(): no
 * allocation, a bounded stack, a bounded instruction budget, errors as codes.
 *
 * Threads: a program owns its evaluation scratch (stack, string arena, captures),
 * so one program is evaluated by one thread at a time; rule_program_clone() gives
 * each worker thread its own evaluator over the same compiled code.
 */
/* Named salvo_sched.h, not sched.h: this folder is on the include path of every
 * target that links salvo_sched, and <pthread.h> includes the C library's <sched.h>. */
#ifndef SALVO_SCHED_H
#define SALVO_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"

/* --- values ---------------------------------------------------------------- */

/* There is no boolean type: true/false are the integers 1/0 (as in Stalwart). */
enum rule_type { RULE_INT, RULE_FLOAT, RULE_STR, RULE_ARR };

/* A value. Strings are byte slices (not NUL-terminated); strings and arrays made
 * during an evaluation live in the program's arena until its next evaluation. */
struct rule_val {
    uint32_t type; /* enum rule_type */
    uint32_t len;  /* bytes of a string, items of an array */
    union {
        int64_t i;
        double f;
        const char *s;
        const struct rule_val *a;
    } u;
};

/* Writes a value for people: integers in decimal, floats as the shortest decimal
 * that round-trips, strings raw, arrays as "[a, b]". Returns 0 or -ENOMEM. */
int rule_val_format(const struct rule_val *v, struct sv_buf *out);
/* Truth as conditions see it: a non-zero number, a non-empty string or array. */
bool rule_truthy(const struct rule_val *v);

/* --- variables of the outbound queue --------------------------------------- */

#define RULE_VARS(X)                                                                               \
    X(SENDER, "sender")                                                                            \
    X(SENDER_DOMAIN, "sender_domain")                                                              \
    X(RCPT, "rcpt")                                                                                \
    X(RCPT_DOMAIN, "rcpt_domain")                                                                  \
    X(RECIPIENTS, "recipients")                                                                    \
    X(MX, "mx")                                                                                    \
    X(PRIORITY, "priority")                                                                        \
    X(REMOTE_IP, "remote_ip")                                                                      \
    X(LOCAL_IP, "local_ip")                                                                        \
    X(RETRY_NUM, "retry_num")                                                                      \
    X(NOTIFY_NUM, "notify_num")                                                                    \
    X(EXPIRES_IN, "expires_in")                                                                    \
    X(LAST_STATUS, "last_status")                                                                  \
    X(LAST_ERROR, "last_error")                                                                    \
    X(QUEUE_NAME, "queue_name")                                                                    \
    X(QUEUE_AGE, "queue_age")                                                                      \
    X(SOURCE, "source")                                                                            \
    X(SIZE, "size")

enum rule_var {
#define RULE_VAR_ENUM(id, name) RULE_VAR_##id,
    RULE_VARS(RULE_VAR_ENUM)
#undef RULE_VAR_ENUM
        RULE_VAR_COUNT
};
#define RULE_VARS_ALL ((1u << RULE_VAR_COUNT) - 1)

/* The context of one evaluation: one value per variable, indexed by enum rule_var.
 * Strings are borrowed from the caller for the duration of the evaluation. */
struct rule_vars {
    struct rule_val v[RULE_VAR_COUNT];
};

/* Sets every variable to its empty value (0, or "" for text; last_error "none"). */
void rule_vars_init(struct rule_vars *vars);
/* Returns the variable named `name`, or -1. */
int rule_var_find(const char *name);
const char *rule_var_name(int var); /* borrowed; NULL for an unknown id */
/* Sets a variable from text as an operator types it: numbers for retry_num,
 * notify_num, expires_in, priority, queue_age, size; a comma-separated list for
 * recipients (kept in one static table: for the CLI and tests, not for worker
 * threads); last_error must be one of its documented values. `text` is borrowed
 * (must outlive the evaluations). Returns 0 or -EINVAL. */
int rule_vars_set_text(struct rule_vars *vars, int var, const char *text);
/* Typed setters for the hot path; `s` is borrowed like any string value. */
static inline void rule_vars_set_str(struct rule_vars *vars, int var, const char *s)
{
    vars->v[var].type = RULE_STR;
    vars->v[var].len = (uint32_t)strlen(s);
    vars->v[var].u.s = s;
}
static inline void rule_vars_set_int(struct rule_vars *vars, int var, int64_t i)
{
    vars->v[var].type = RULE_INT;
    vars->v[var].len = 0;
    vars->v[var].u.i = i;
}
/* The values last_error may take ("none", "dns", ...); returns borrowed array of n. */
const char *const *rule_last_error_values(size_t *n);

/* --- programs -------------------------------------------------------------- */

/* Compiled bytecode for one setting or one bare expression. */
struct rule_program;

/* Runtime error codes (negative, as returned by the evaluation functions). */
enum {
    RULE_E_BUDGET = -1001, /* instruction budget exhausted */
    RULE_E_ARENA = -1002,  /* string/array arena exhausted */
    RULE_E_TYPE = -1003,   /* result has the wrong type for the setting */
    RULE_E_REGEX = -1004,  /* PCRE2 failed at match time (not "no match") */
    RULE_E_ARG = -1005,    /* bad argument at run time (e.g. unknown hash algorithm) */
};
const char *rule_strerror(int code); /* borrowed, never NULL */

/* A load error: byte offset into the expression text and a message. */
struct rule_error {
    size_t offset;
    char msg[256];
};

/* Compiles one bare expression `src` (len bytes) that may use the variables in
 * `var_mask` (bit i = enum rule_var i). Returns owned program, or NULL with `err`. */
struct rule_program *rule_compile_expr(const char *src, size_t len, uint32_t var_mask,
                                       struct rule_error *err);

/* Evaluates `p` for `vars`. `out` is valid until the next evaluation of `p`.
 * Returns 0 or a negative RULE_E_* code. */
int rule_eval(struct rule_program *p, const struct rule_vars *vars, struct rule_val *out);

/* Number of instructions in `p`. Every jump goes forward, so no evaluation runs
 * more instructions than this. */
size_t rule_program_size(const struct rule_program *p);

/* Disassembles `p`, one instruction per line. Returns 0 or -ENOMEM. */
int rule_disasm(const struct rule_program *p, struct sv_buf *out);

/* Sets the instruction budget and arena size for later evaluations (tests and fuzzing
 * use small ones). arena_bytes must not exceed the size given at compile time. */
void rule_program_set_limits(struct rule_program *p, uint32_t budget, size_t arena_bytes);

/* --- settings: typed keys --------------------------------------------------- */

/* A configuration key whose value is an expression: a constant or an
 * if/then/else list (e.g. "queue.outbound.tls.starttls"). */
struct rule_setting;

enum rule_kind {
    RULE_K_TLS_MODE,      /* optional | require | disable */
    RULE_K_BOOL,          /* true / false */
    RULE_K_INT,           /* integer */
    RULE_K_DURATION,      /* milliseconds */
    RULE_K_STRING,        /* text */
    RULE_K_RELAY,         /* a relay name, or false for direct MX delivery */
    RULE_K_IP_STRATEGY,   /* ipv4_only | ipv6_only | ipv4_then_ipv6 | ipv6_then_ipv4 */
    RULE_K_DURATION_LIST, /* list of milliseconds */
};

enum rule_tls_mode { RULE_TLS_OPTIONAL, RULE_TLS_REQUIRE, RULE_TLS_DISABLE };
enum rule_ip_strategy {
    RULE_IP_V4_ONLY,
    RULE_IP_V6_ONLY,
    RULE_IP_V4_THEN_V6,
    RULE_IP_V6_THEN_V4,
};

/* A typed setting value. `i` holds the bool/int/duration/enum value; `s`/`len` a
 * string or relay name (s == NULL: relay is false); `list`/`n` a duration list.
 * Pointers stay valid until the program's next evaluation. */
struct rule_result {
    enum rule_kind kind;
    int64_t i;
    const char *s;
    size_t len;
    const int64_t *list;
    size_t n;
};

/* Returns the expression setting for a dotted key, or NULL when `key` is not one.
 * Names may hold '*' for one segment of any name ("queue.tls.*.starttls": the
 * Stalwart 0.13+ TLS strategies); rule_setting_key() returns that pattern. */
const struct rule_setting *rule_setting_find(const char *key);
/* All expression setting keys (for "did you mean"). Returns borrowed array of n. */
const char *const *rule_setting_names(size_t *n);
const char *rule_setting_key(const struct rule_setting *s); /* borrowed */
enum rule_kind rule_setting_kind(const struct rule_setting *s);
uint32_t rule_setting_vars(const struct rule_setting *s); /* allowed variables mask */
/* The setting's default (used when a rule fails at run time). Borrowed pointers. */
void rule_setting_default(const struct rule_setting *s, struct rule_result *out);

/* Compiles the value `v` of setting `s`. Errors and warnings (with positions) go to
 * `diag`. Returns owned program, or NULL when there were errors. */
struct rule_program *rule_compile_setting(const struct rule_setting *s, const struct cfg_value *v,
                                          struct cfg_diag *diag);

/* Evaluates a setting program for `vars` into a typed result. On a runtime failure
 * (budget, arena, wrong-typed result) `out` holds the setting's default and the
 * negative code is returned (the caller logs it with the key); 0 otherwise. */
int rule_eval_setting(struct rule_program *p, const struct rule_vars *vars,
                      struct rule_result *out);
/* Writes a typed result as `salvo rules eval` prints it: "require", "true",
 * "120000", a string raw, "[120000, 300000]", "false" for no relay. */
int rule_result_format(const struct rule_result *r, struct sv_buf *out);
/* The setting a program was compiled for (NULL for a bare expression). */
const struct rule_setting *rule_program_setting(const struct rule_program *p);

/* A second evaluator for `p` with its own scratch (stack, arena, captures, PCRE2
 * match data) for another thread; code, constants and compiled regexes are
 * shared. Borrows `p`, which must outlive the clone. Returns owned, NULL on ENOMEM. */
struct rule_program *rule_program_clone(const struct rule_program *p);

void rule_program_free(struct rule_program *p); /* NULL-safe; a clone frees its scratch only */

#endif
