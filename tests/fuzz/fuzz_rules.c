/* libFuzzer: compile and evaluate arbitrary rules with random variables.
 *
 * Input: byte 0 picks the mode (bare expression, or a TOML document holding a
 * setting's value: plain or if/then/else list), bytes 1..8 pick variable values
 * and limits, the rest is the text. Checks: no crash, no leak (ASan), and no
 * budget overrun: every jump goes forward, so a program shorter than the budget
 * must never report RULE_E_BUDGET. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "salvo_sched.h"

static const char *const words[] = {
    "",   "tls", "none", "a@b.com", "192.0.2.1", "mx.example.com", "10", "2.5", "User@Example.COM",
    "::1"};

static void fill_vars(struct rule_vars *vars, const uint8_t *b)
{
    size_t nerr;
    const char *const *errs = rule_last_error_values(&nerr);
    rule_vars_init(vars);
    for (int i = 0; i < RULE_VAR_COUNT; i++) {
        uint8_t x = b[i % 8] ^ (uint8_t)(i * 37);
        if (i == RULE_VAR_LAST_ERROR) {
            rule_vars_set_text(vars, i, errs[x % nerr]);
        } else if (i == RULE_VAR_RECIPIENTS) {
            continue;
        } else if (vars->v[i].type == RULE_INT) {
            vars->v[i].u.i = (int64_t)(int8_t)x;
        } else {
            rule_vars_set_text(vars, i, words[x % (sizeof(words) / sizeof(words[0]))]);
        }
    }
}

static void check_eval(struct rule_program *p, const struct rule_vars *vars, const uint8_t *b)
{
    uint32_t budget = 4096;
    if (b[7] & 1) {
        budget = b[6];
        rule_program_set_limits(p, budget, (size_t)b[5] * 16);
    }
    struct rule_val v;
    int rc = rule_eval(p, vars, &v);
    if (rule_program_size(p) < budget)
        assert(rc != RULE_E_BUDGET);
    if (rc == 0) {
        struct sv_buf out = {0};
        rule_val_format(&v, &out);
        sv_buf_free(&out);
    }
    if (rule_program_setting(p)) {
        struct rule_result r;
        rc = rule_eval_setting(p, vars, &r);
        struct sv_buf out = {0};
        rule_result_format(&r, &out);
        sv_buf_free(&out);
    }
    struct sv_buf d = {0};
    rule_disasm(p, &d);
    sv_buf_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9 || size > 4096)
        return 0;
    uint8_t mode = data[0];
    const uint8_t *b = data + 1;
    const char *text = (const char *)data + 9;
    size_t len = size - 9;
    struct rule_vars vars;
    fill_vars(&vars, b);
    if (mode & 1) {
        struct rule_error err;
        struct rule_program *p = rule_compile_expr(text, len, RULE_VARS_ALL, &err);
        if (p) {
            check_eval(p, &vars, b);
            rule_program_free(p);
        } else {
            assert(err.offset <= len);
        }
        return 0;
    }
    size_t n;
    const char *const *names = rule_setting_names(&n);
    const char *key = names[(mode >> 1) % n];
    const char *dot = strrchr(key, '.');
    char *doc_text = malloc(len + 256);
    if (!doc_text)
        return 0;
    int hl = snprintf(doc_text, 256, "[%.*s]\n%s = ", (int)(dot - key), key, dot + 1);
    memcpy(doc_text + hl, text, len);
    struct cfg_diag diag;
    cfg_diag_init(&diag);
    struct cfg_doc *doc = cfg_doc_parse("fuzz.toml", doc_text, (size_t)hl + len, &diag);
    if (doc) {
        const struct cfg_value *v = cfg_get(doc->root, key);
        if (v) {
            struct rule_program *p = rule_compile_setting(rule_setting_find(key), v, &diag);
            if (p) {
                check_eval(p, &vars, b);
                rule_program_free(p);
            }
        }
        cfg_doc_free(doc);
    }
    cfg_diag_free(&diag);
    free(doc_text);
    return 0;
}
