/* tests/test_sched_util.h: one rule setting compiled from a TOML snippet, with its
 * diagnostics rendered as salvo prints them. Shared by the sched tests. */
#ifndef SALVO_TEST_SCHED_UTIL_H
#define SALVO_TEST_SCHED_UTIL_H

#include "salvo_sched.h"

struct loaded {
    struct cfg_doc *doc;
    struct rule_program *prog; /* NULL when the setting did not compile */
    struct cfg_diag diag;
    char text[4096]; /* the diagnostics as printed */
};

/* Parses `toml` (it must be valid TOML) and compiles the setting `key`. */
void load(struct loaded *l, const char *toml, const char *key);
void unload(struct loaded *l);

#endif
