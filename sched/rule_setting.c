/* Placeholder until the rule language lands: no key is an expression yet. */
#include "sched.h"

const struct rule_setting *rule_setting_find(const char *key)
{
    (void)key;
    return NULL;
}

const char *const *rule_setting_names(size_t *n)
{
    *n = 0;
    return NULL;
}

struct rule_program *rule_compile_setting(const struct rule_setting *s, const struct cfg_value *v,
                                          struct cfg_diag *diag)
{
    (void)s;
    cfg_error(diag, v->pos, "expressions are not supported yet");
    return NULL;
}

void rule_program_free(struct rule_program *p)
{
    (void)p;
}
