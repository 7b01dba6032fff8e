/* Load-time checks of rule settings found by review (issue 4):
 * - an error inside a TOML string points at the exact line:col of the offending
 *   character, through escapes and all four string kinds;
 * - a then/else/plain value whose type is known at load time and can never be a
 *   value of the setting is a load error (no silent fallback to the default),
 *   while values of unknown type stay dynamic;
 * - entries with the same condition are found by the compiled code, not the text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rule_int.h" /* rule_unit_result_type(): the compiler's static types */
#include "salvo_sched.h"
#include "test_sched_util.h"

/* Loads `toml` (key queue.outbound.tls.starttls unless given) expecting exactly
 * the diagnostics `want` (each line ends with '\n'). */
static void expect_diag(const char *toml, const char *key, const char *want)
{
    struct loaded l;
    load(&l, toml, key ? key : "queue.outbound.tls.starttls");
    assert_string_equal(l.text, want);
    unload(&l);
}

#define HDR      "[queue.outbound.tls]\n"
#define TAIL     ", then = \"require\" }, { else = \"optional\" } ]\n"
#define BOGUS(p) "t.toml:" p ": queue.outbound.tls.starttls: unknown variable 'bogus'\n"

/* The opening quote of the `if` string is at 2:21 in every case below. */
static void error_positions_inside_strings(void **state)
{
    (void)state;
    /* no escape: 22 + 17 */
    expect_diag(HDR "starttls = [ { if = \"retry_num > 0 && bogus\"" TAIL, NULL, BOGUS("2:39"));
    /* \u0072 is 6 bytes written for 1 decoded */
    expect_diag(HDR "starttls = [ { if = \"\\u0072etry_num > 0 && bogus\"" TAIL, NULL,
                BOGUS("2:44"));
    /* \U00000072: 10 for 1 */
    expect_diag(HDR "starttls = [ { if = \"\\U00000072etry_num > 0 && bogus\"" TAIL, NULL,
                BOGUS("2:48"));
    /* a regex with \\. (2 for 1) before the error */
    expect_diag(HDR "starttls = [ { if = \"matches('^mx\\\\.(.+)$', mx) && bogus\"" TAIL, NULL,
                BOGUS("2:52"));
    /* \" twice */
    expect_diag(HDR "starttls = [ { if = \"mx == \\\"a\\\" && bogus\"" TAIL, NULL, BOGUS("2:37"));
    /* literal string: no escapes */
    expect_diag(HDR "starttls = [ { if = 'mx == \"\\\\\" && bogus'" TAIL, NULL, BOGUS("2:36"));
    /* one-line multi-line string: the body starts after three quotes */
    expect_diag(HDR "starttls = [ { if = \"\"\"retry_num > 0 && bogus\"\"\"" TAIL, NULL,
                BOGUS("2:41"));
    /* multi-line basic string: trimmed first newline, a line-ending backslash */
    expect_diag(HDR "starttls = [ { if = \"\"\"\n"
                    "  retry_num > 0 && \\\n"
                    "      bogus\"\"\"" TAIL,
                NULL, BOGUS("4:7"));
    /* ... and an escape on the line of the error */
    expect_diag(HDR "starttls = [ { if = \"\"\"\n"
                    "retry_num > 0 &&\n"
                    "  mx == \\\"\\u0061\\\" && bogus\"\"\"" TAIL,
                NULL, BOGUS("4:23"));
    /* multi-line literal string */
    expect_diag(HDR "starttls = [ { if = '''\n"
                    "retry_num > 0 &&\n"
                    "  bogus'''" TAIL,
                NULL, BOGUS("4:3"));
    /* an error at the end of the expression points at the closing quote */
    expect_diag(HDR "starttls = [ { if = \"retry_num \\u003e\"" TAIL, NULL,
                "t.toml:2:38: queue.outbound.tls.starttls: unexpected end of expression\n");
    /* a plain value and a `then` value, not only conditions */
    expect_diag(HDR "starttls = \"if_then(retry_num > \\\"1\\\", bogus, 'require')\"\n", NULL,
                BOGUS("2:40"));
    expect_diag(HDR "starttls = [ { if = \"retry_num > 1\", then = \"\\tif_then(true, bogus, 1)\" "
                    "}, { else = \"require\" } ]\n",
                NULL, BOGUS("2:62"));
}

#define TYPE_ERR(p, key, exp, got)                                                                 \
    "t.toml:" p ": " key ": expected " exp ", but this expression always gives " got "\n"
#define TLS_K  "queue.outbound.tls.starttls"
#define TLS_EX "optional, require or disable"

static void values_that_can_never_fit_are_load_errors(void **state)
{
    (void)state;
    /* the reviewer's example: every evaluation would silently fall back to optional */
    expect_diag(HDR "starttls = [ { if = \"retry_num > 1\", then = \"require\" }, "
                    "{ else = \"retry_num\" } ]\n",
                NULL, TYPE_ERR("2:68", TLS_K, TLS_EX, "an integer"));
    expect_diag(HDR "starttls = [ { if = \"retry_num > 1\", then = \"len(mx) * 2\" }, "
                    "{ else = \"require\" } ]\n",
                NULL, TYPE_ERR("2:46", TLS_K, TLS_EX, "an integer"));
    /* reported at the first non-blank character */
    expect_diag(HDR "starttls = \"  size / 2\"\n", NULL,
                TYPE_ERR("2:15", TLS_K, TLS_EX, "a float"));
    expect_diag(HDR "starttls = \"retry_num - mx\"\n", NULL,
                TYPE_ERR("2:13", TLS_K, TLS_EX, "a number"));
    expect_diag(HDR "starttls = \"retry_num - size\"\n", NULL,
                TYPE_ERR("2:13", TLS_K, TLS_EX, "an integer"));
    expect_diag(HDR "starttls = \"-mx\"\n", NULL, TYPE_ERR("2:13", TLS_K, TLS_EX, "a number"));
    expect_diag(HDR "starttls = \"if_then(mx == 'a', 1, 2.5)\"\n", NULL,
                TYPE_ERR("2:13", TLS_K, TLS_EX, "a number"));
    expect_diag(
        HDR "allow-invalid-certs = \"split(mx, '.')\"\n", "queue.outbound.tls.allow-invalid-certs",
        TYPE_ERR("2:24", "queue.outbound.tls.allow-invalid-certs", "true or false", "an array"));
    expect_diag("[queue.outbound]\nhostname = \"retry_num + 1\"\n", "queue.outbound.hostname",
                TYPE_ERR("2:13", "queue.outbound.hostname", "a non-empty string", "an integer"));
    expect_diag("[queue.outbound]\nnext-hop = \"retry_num * 1.5\"\n", "queue.outbound.next-hop",
                TYPE_ERR("2:13", "queue.outbound.next-hop", "a relay name or false", "a float"));
    expect_diag("[queue.outbound.timeouts]\nconnect = \"[retry_num, 1]\"\n",
                "queue.outbound.timeouts.connect",
                TYPE_ERR("2:12", "queue.outbound.timeouts.connect",
                         "a duration such as 90s, 5m, 1h or 5d", "an array"));
    expect_diag("[queue.schedule]\nretry = [\"2m\", \"[retry_num]\"]\n", "queue.schedule.retry",
                TYPE_ERR("2:17", "queue.schedule.retry", "a duration such as 90s, 5m, 1h or 5d",
                         "an array"));
    expect_diag("[queue.outbound]\nip-strategy = \"len(mx)\"\n", "queue.outbound.ip-strategy",
                TYPE_ERR("2:16", "queue.outbound.ip-strategy",
                         "ipv4_only, ipv6_only, ipv4_then_ipv6 or ipv6_then_ipv4", "an integer"));
}

/* Types that may fit load, and types known only at run time stay dynamic. */
static void values_of_unknown_or_fitting_type_load(void **state)
{
    (void)state;
    static const struct {
        const char *toml, *key;
    } ok[] = {
        {HDR "starttls = \"to_lowercase(mx)\"\n", TLS_K},
        {HDR "starttls = \"[mx, 'require'][1]\"\n", TLS_K},                   /* array item */
        {HDR "starttls = \"if_then(retry_num > 1, 'require', 5)\"\n", TLS_K}, /* mixed */
        {HDR "starttls = \"sort(mx, false)\"\n", TLS_K},
        {HDR "allow-invalid-certs = \"retry_num > 2\"\n", "queue.outbound.tls.allow-invalid-certs"},
        {HDR "allow-invalid-certs = \"mx\"\n", "queue.outbound.tls.allow-invalid-certs"},
        {"[queue.outbound]\nnext-hop = \"retry_num\"\n", "queue.outbound.next-hop"}, /* 0 */
        {"[queue.outbound.timeouts]\nconnect = \"retry_num * 1.5\"\n",
         "queue.outbound.timeouts.connect"},
        {"[queue.schedule]\nretry = \"split(sender, ',')\"\n", "queue.schedule.retry"},
        {"[queue.schedule]\nretry = \"retry_num\"\n", "queue.schedule.retry"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct loaded l;
        load(&l, ok[i].toml, ok[i].key);
        if (!l.prog || l.diag.len)
            fail_msg("%s: %s", ok[i].toml, l.text);
        unload(&l);
    }

    /* the mixed if_then: 'require' when it gives a word, the default (and an
     * error code for the log) when it gives 5 */
    struct loaded l;
    load(&l, HDR "starttls = \"if_then(retry_num > 1, 'require', 5)\"\n", TLS_K);
    assert_non_null(l.prog);
    struct rule_vars vars;
    struct rule_result r;
    rule_vars_init(&vars);
    assert_int_equal(rule_vars_set_text(&vars, RULE_VAR_RETRY_NUM, "2"), 0);
    assert_int_equal(rule_eval_setting(l.prog, &vars, &r), 0);
    assert_int_equal(r.i, RULE_TLS_REQUIRE);
    assert_int_equal(rule_vars_set_text(&vars, RULE_VAR_RETRY_NUM, "0"), 0);
    assert_true(rule_eval_setting(l.prog, &vars, &r) < 0);
    assert_int_equal(r.i, RULE_TLS_OPTIONAL);
    unload(&l);
}

#define SAME(e, f)                                                                                 \
    "t.toml:2:" #e ": warning: queue.outbound.tls.starttls: entry 2 can never match: entry " #f    \
    " has the same condition\n"

static void same_condition_found_by_compiled_code(void **state)
{
    (void)state;
    /* parentheses that change nothing (entry 2's `if` string opens at 2:92) */
    expect_diag(HDR "starttls = [ { if = \"(retry_num > 1) && (last_error == 'tls')\", then = "
                    "\"disable\" }, { if = \"retry_num > 1 && last_error == 'tls'\", then = "
                    "\"require\" }, { else = \"optional\" } ]\n",
                NULL, SAME(92, 1));
    /* 'x' and "x" are the same string */
    expect_diag(HDR
                "starttls = [ { if = \"mx == 'x'\", then = \"disable\" }, { if = 'mx == \"x\"', "
                "then = \"require\" }, { else = \"optional\" } ]\n",
                NULL, SAME(61, 1));
    /* internal jumps (||) and a regex with the same pattern written differently:
     * "^a\\." and '^a\\.' are both the pattern ^a\. */
    expect_diag(HDR "starttls = [ { if = 'retry_num > 1 || matches(\"^a\\\\.\", mx)', then = "
                    "\"disable\" }, { if = \"(retry_num > 1) || matches('^a\\\\\\\\.', mx)\", "
                    "then = \"require\" }, { else = \"optional\" } ]\n",
                NULL, SAME(89, 1));
    /* but '^a\.' is ^a. (the rule language drops an unknown escape's backslash) */
    expect_diag(HDR
                "starttls = [ { if = 'matches(\"^a\\\\.\", mx)', then = \"disable\" }, "
                "{ if = 'matches(\"^a\\.\", mx)', then = \"require\" }, { else = \"optional\" } "
                "]\n",
                NULL, "");
    /* a constant folds: 1 + 1 is 2 */
    expect_diag(HDR "starttls = [ { if = \"retry_num > 2\", then = \"disable\" }, { if = "
                    "\"retry_num > 1 + 1\", then = \"require\" }, { else = \"optional\" } ]\n",
                NULL, SAME(65, 1));

    /* different conditions: no warning */
    static const char *const differ[] = {
        HDR "starttls = [ { if = \"retry_num > 1\", then = \"disable\" }, { if = \"retry_num > "
            "2\", then = \"require\" }, { else = \"optional\" } ]\n",
        /* '1' and 1 compare equal in the language, but are different constants */
        HDR "starttls = [ { if = \"mx == '1'\", then = \"disable\" }, { if = \"mx == 1\", then "
            "= \"require\" }, { else = \"optional\" } ]\n",
        HDR "starttls = [ { if = \"retry_num > 1 || mx == 'a'\", then = \"disable\" }, { if = "
            "\"retry_num > 1 || mx == 'b'\", then = \"require\" }, { else = \"optional\" } ]\n",
        HDR "starttls = [ { if = \"matches('^a', mx)\", then = \"disable\" }, { if = "
            "\"matches('^b', mx)\", then = \"require\" }, { else = \"optional\" } ]\n",
        HDR "starttls = [ { if = \"retry_num > 1 && mx == 'a'\", then = \"disable\" }, { if = "
            "\"mx == 'a' && retry_num > 1\", then = \"require\" }, { else = \"optional\" } ]\n",
    };
    for (size_t i = 0; i < sizeof(differ) / sizeof(differ[0]); i++)
        expect_diag(differ[i], NULL, "");

    /* the third entry repeats the first, not the second */
    expect_diag(HDR "starttls = [ { if = \"mx == 'a'\", then = \"disable\" }, { if = \"mx == "
                    "'b'\", then = \"disable\" }, { if = \"(mx) == ('a')\", then = \"require\" }, "
                    "{ else = \"optional\" } ]\n",
                NULL,
                "t.toml:2:101: warning: queue.outbound.tls.starttls: entry 3 can never match: "
                "entry 1 has the same condition\n");
}

/* --- the static types are sound: random expressions, evaluated ----------------- */

static uint64_t rng = 0x7ea5e1f00dull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static void put(char *b, size_t cap, const char *s)
{
    size_t l = strlen(b);
    snprintf(b + l, cap - l, "%s", s);
}

/* A random expression over every kind of operand, operator and function. */
static void gen_expr(char *b, size_t cap, int depth)
{
    static const char *const atoms[] = {
        "0",  "1",      "-2",         "2.5",       "'a'",      "'1.5'", "'3'",
        "''", "mx",     "last_error", "retry_num", "size",     "rcpt",  "recipients",
        "$1", "[1, 2]", "['a', 2.5]", "[]",        "[mx, 'b']"};
    static const char *const ops[] = {" + ",  " - ", " * ",  " / ", " == ", " != ", " < ",
                                      " <= ", " > ", " >= ", " ^ ", " && ", " || "};
    unsigned pick = depth >= 3 ? 0 : rnd(7);
    switch (pick) {
    case 0: put(b, cap, atoms[rnd(sizeof(atoms) / sizeof(atoms[0]))]); return;
    case 1:
        put(b, cap, rnd(2) ? "-(" : "!(");
        gen_expr(b, cap, depth + 1);
        put(b, cap, ")");
        return;
    case 2:
    case 3:
        put(b, cap, "(");
        gen_expr(b, cap, depth + 1);
        put(b, cap, ops[rnd(sizeof(ops) / sizeof(ops[0]))]);
        gen_expr(b, cap, depth + 1);
        put(b, cap, ")");
        return;
    case 4: {
        /* any pure function, with the right number of arguments */
        const struct rule_fn *fn;
        do
            fn = rule_fn_get((int)rnd(64));
        while (!fn || fn->kind == FN_LOOKUP || fn->kind == FN_MATCHES);
        put(b, cap, fn->name);
        put(b, cap, "(");
        for (int i = 0; i < fn->arity; i++) {
            if (i)
                put(b, cap, ", ");
            if (fn->kind == FN_PURE && strcmp(fn->name, "hash") == 0 && i == 1)
                put(b, cap, "'md5'");
            else
                gen_expr(b, cap, depth + 1);
        }
        put(b, cap, ")");
        return;
    }
    case 5:
        put(b, cap, "matches('(\\\\d)', ");
        gen_expr(b, cap, depth + 1);
        put(b, cap, ")");
        return;
    default:
        put(b, cap, "(");
        gen_expr(b, cap, depth + 1);
        put(b, cap, ")[");
        gen_expr(b, cap, depth + 1);
        put(b, cap, "]");
        return;
    }
}

static bool fits(enum rule_stype t, const struct rule_val *v)
{
    switch (t) {
    case RULE_ST_ANY: return true;
    case RULE_ST_INT: return v->type == RULE_INT;
    case RULE_ST_FLOAT: return v->type == RULE_FLOAT;
    case RULE_ST_NUM: return v->type == RULE_INT || v->type == RULE_FLOAT;
    case RULE_ST_STR: return v->type == RULE_STR;
    case RULE_ST_ARR: return v->type == RULE_ARR;
    }
    return false;
}

/* Whenever the compiler claims a type, every successful evaluation has it (a
 * wrong claim would turn a working rule into a load error). */
static void static_types_match_results(void **state)
{
    (void)state;
    static const char *const mxs[] = {"mx.example.com", "1.5", "7", "", "a1"};
    static const char *const rcpts[] = {"a@b", "x,y,z", "3", ""};
    unsigned checked = 0, known = 0;
    for (int n = 0; n < 20000; n++) {
        char src[2048] = "";
        gen_expr(src, sizeof(src), 0);
        struct rule_error err;
        struct rule_unit *u = rule_unit_new(RULE_VARS_ALL, NULL, NULL);
        assert_non_null(u);
        if (rule_unit_expr(u, src, strlen(src), &err, NULL, NULL)) {
            rule_unit_free(u);
            continue;
        }
        enum rule_stype t = rule_unit_result_type(u);
        rule_unit_emit(u, OP_RET, 0, 0);
        struct rule_program *p = rule_unit_finish(u, NULL);
        assert_non_null(p);
        known += t != RULE_ST_ANY;
        for (int c = 0; c < 4; c++) {
            struct rule_vars vars;
            rule_vars_init(&vars);
            char num[16];
            snprintf(num, sizeof(num), "%u", rnd(4));
            assert_int_equal(rule_vars_set_text(&vars, RULE_VAR_RETRY_NUM, num), 0);
            assert_int_equal(rule_vars_set_text(&vars, RULE_VAR_MX, mxs[rnd(5)]), 0);
            assert_int_equal(rule_vars_set_text(&vars, RULE_VAR_RCPT, rcpts[rnd(4)]), 0);
            assert_int_equal(rule_vars_set_text(&vars, RULE_VAR_RECIPIENTS, rcpts[rnd(4)]), 0);
            struct rule_val v;
            if (rule_eval(p, &vars, &v) != 0)
                continue;
            checked++;
            if (!fits(t, &v))
                fail_msg("%s: static type %d, but the value has type %d", src, (int)t, (int)v.type);
        }
        rule_program_free(p);
    }
    /* the generator must exercise the claim, not only ANY */
    assert_true(checked > 20000);
    assert_true(known > 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(error_positions_inside_strings),
        cmocka_unit_test(values_that_can_never_fit_are_load_errors),
        cmocka_unit_test(values_of_unknown_or_fitting_type_load),
        cmocka_unit_test(same_condition_found_by_compiled_code),
        cmocka_unit_test(static_types_match_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
