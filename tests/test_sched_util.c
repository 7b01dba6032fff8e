#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "test_sched_util.h"

void load(struct loaded *l, const char *toml, const char *key)
{
    memset(l, 0, sizeof(*l));
    cfg_diag_init(&l->diag);
    l->doc = cfg_doc_parse("t.toml", toml, strlen(toml), &l->diag);
    if (!l->doc)
        fail_msg("TOML did not parse: %s", l->diag.len ? l->diag.items[0].msg : "?");
    const struct rule_setting *s = rule_setting_find(key);
    assert_non_null(s);
    const struct cfg_value *v = cfg_get(l->doc->root, key);
    assert_non_null(v);
    l->prog = rule_compile_setting(s, v, &l->diag);
    FILE *f = fmemopen(l->text, sizeof(l->text) - 1, "w");
    cfg_diag_print(&l->diag, f);
    fclose(f);
}

void unload(struct loaded *l)
{
    rule_program_free(l->prog);
    cfg_doc_free(l->doc);
    cfg_diag_free(&l->diag);
}
