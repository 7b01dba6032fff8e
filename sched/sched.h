/* sched: decisions. The rule language (Stalwart-compatible expressions compiled
 * to bytecode), retry/expiry schedules, throttles. Pure code, no I/O. */
#ifndef SALVO_SCHED_H
#define SALVO_SCHED_H

#include <stddef.h>

#include "config.h"

/* A configuration key whose value is an expression: a constant or an
 * if/then/else list (e.g. "queue.outbound.tls.starttls"). */
struct rule_setting;

/* Returns the expression setting for a dotted key, or NULL when `key` is not one. */
const struct rule_setting *rule_setting_find(const char *key);
/* All expression setting keys (for "did you mean"). Returns borrowed array of n. */
const char *const *rule_setting_names(size_t *n);

/* Compiled bytecode for one setting. */
struct rule_program;

/* Compiles the value `v` of setting `s`. Errors and warnings (with positions) go to
 * `diag`. Returns owned program, or NULL when there were errors. */
struct rule_program *rule_compile_setting(const struct rule_setting *s, const struct cfg_value *v,
                                          struct cfg_diag *diag);
void rule_program_free(struct rule_program *p); /* NULL-safe */

#endif
