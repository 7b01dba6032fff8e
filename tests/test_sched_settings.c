/* Settings typed by key: the seed's two rules over retry_num x last_error, the
 * if/then/else list form and its load errors (file:line:col), plain values,
 * duration lists, captures in `then`, and the fallback to the default. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "salvo_sched.h"
#include "test_sched_util.h"

/* Evaluates with retry_num/last_error (and optional mx) and returns the printed result. */
static const char *eval_with(struct rule_program *p, const char *retry, const char *err,
                             const char *mx, int *rc)
{
    static char buf[512];
    struct rule_vars vars;
    rule_vars_init(&vars);
    if (retry)
        assert_int_equal(rule_vars_set_text(&vars, RULE_VAR_RETRY_NUM, retry), 0);
    if (err)
        assert_int_equal(rule_vars_set_text(&vars, RULE_VAR_LAST_ERROR, err), 0);
    if (mx)
        assert_int_equal(rule_vars_set_text(&vars, RULE_VAR_MX, mx), 0);
    struct rule_result r;
    int code = rule_eval_setting(p, &vars, &r);
    if (rc)
        *rc = code;
    struct sv_buf b = {0};
    assert_int_equal(rule_result_format(&r, &b), 0);
    snprintf(buf, sizeof(buf), "%.*s", (int)b.len, b.ptr ? b.ptr : "");
    sv_buf_free(&b);
    return buf;
}

static const char seed[] =
    "[queue.outbound.tls]\n"
    "allow-invalid-certs = [ { if = \"retry_num > 0 && last_error == 'tls'\", then = true},\n"
    "{ else = false } ]\n"
    "starttls = [ { if = \"retry_num > 1 && last_error == 'tls'\", then = \"disable\"},\n"
    "{ else = \"require\" } ]\n";

/* The seed document's two rules. Expected values written out per last_error and
 * retry_num 0..3: allow invalid certificates after the first TLS failure, disable
 * STARTTLS after the second. */
static void seed_grid(void **state)
{
    (void)state;
    static const struct {
        const char *last_error;
        const char *starttls[4];
        const char *allow_invalid[4];
    } grid[] = {
        {"none",
         {"require", "require", "require", "require"},
         {"false", "false", "false", "false"}},
        {"dns", {"require", "require", "require", "require"}, {"false", "false", "false", "false"}},
        {"unexpected-reply",
         {"require", "require", "require", "require"},
         {"false", "false", "false", "false"}},
        {"connection",
         {"require", "require", "require", "require"},
         {"false", "false", "false", "false"}},
        {"tls", {"require", "require", "disable", "disable"}, {"false", "true", "true", "true"}},
        {"dane",
         {"require", "require", "require", "require"},
         {"false", "false", "false", "false"}},
        {"mta-sts",
         {"require", "require", "require", "require"},
         {"false", "false", "false", "false"}},
        {"rate",
         {"require", "require", "require", "require"},
         {"false", "false", "false", "false"}},
        {"concurrency",
         {"require", "require", "require", "require"},
         {"false", "false", "false", "false"}},
        {"io", {"require", "require", "require", "require"}, {"false", "false", "false", "false"}},
    };
    size_t n_errors;
    rule_last_error_values(&n_errors);
    assert_int_equal(n_errors, sizeof(grid) / sizeof(grid[0]));
    struct loaded st, ai;
    load(&st, seed, "queue.outbound.tls.starttls");
    load(&ai, seed, "queue.outbound.tls.allow-invalid-certs");
    assert_non_null(st.prog);
    assert_non_null(ai.prog);
    assert_string_equal(st.text, "");
    for (size_t e = 0; e < n_errors; e++) {
        for (int r = 0; r < 4; r++) {
            char retry[4];
            snprintf(retry, sizeof(retry), "%d", r);
            int rc;
            const char *got = eval_with(st.prog, retry, grid[e].last_error, NULL, &rc);
            assert_int_equal(rc, 0);
            if (strcmp(got, grid[e].starttls[r]) != 0)
                fail_msg("starttls retry_num=%d last_error=%s: got %s", r, grid[e].last_error, got);
            got = eval_with(ai.prog, retry, grid[e].last_error, NULL, &rc);
            if (strcmp(got, grid[e].allow_invalid[r]) != 0)
                fail_msg("allow-invalid-certs retry_num=%d last_error=%s: got %s", r,
                         grid[e].last_error, got);
        }
    }
    unload(&st);
    unload(&ai);
}

struct load_case {
    const char *toml;
    const char *key;
    const char *diag; /* exact rendered diagnostics */
};

static void load_errors_with_positions(void **state)
{
    (void)state;
    static const struct load_case c[] = {
        {"[queue.outbound.tls]\n"
         "starttls = [ { if = \"retry_num > 1 && last_eror == 'tls'\", then = \"disable\" },\n"
         "             { else = \"require\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:39: queue.outbound.tls.starttls: unknown variable 'last_eror' (did you mean "
         "'last_error'?)\n"},
        {"[queue.outbound.tls]\n"
         "starttls = [ { if = \"retry_num > 1\", then = \"disable\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:12: queue.outbound.tls.starttls: missing 'else' entry: end the list with "
         "{ else = ... }\n"},
        {"[queue.outbound.tls]\n"
         "starttls = [ { else = \"require\" }, { if = \"retry_num > 1\", then = \"disable\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:16: queue.outbound.tls.starttls: 'else' before an 'if' entry: 'else' must be "
         "the last entry\n"},
        {"[queue.outbound.tls]\n"
         "starttls = [ { if = \"retry_num > 1\", then = \"disable\" }, { else = \"require\" }, "
         "{ else = \"optional\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:82: queue.outbound.tls.starttls: more than one 'else' entry\n"},
        {"[queue.outbound.tls]\n"
         "starttls = [ { then = \"disable\" }, { else = \"require\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:16: queue.outbound.tls.starttls: 'then' without 'if'\n"},
        {"[queue.outbound.tls]\n"
         "starttls = [ { if = \"retry_num > 1\", then = \"disable\" }, { else = \"require\", then "
         "= "
         "\"optional\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:78: queue.outbound.tls.starttls: 'then' is not allowed in the 'else' entry\n"},
        {"[queue.outbound.tls]\n"
         "starttls = [ { if = \"retry_num > 1\", then = \"disable\", when = 1 }, { else = "
         "\"require\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:56: queue.outbound.tls.starttls: unknown property 'when' in a rule entry "
         "(expected 'if', 'then' or 'else')\n"},
        {"[queue.outbound.tls]\n"
         "starttls = [ { if = \"retry_num > 1\" }, { else = \"require\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:16: queue.outbound.tls.starttls: 'if' without 'then'\n"},
        {"[queue.outbound.tls]\nstarttls = 'maybe'\n", "queue.outbound.tls.starttls",
         "t.toml:2:13: queue.outbound.tls.starttls: expected optional, require or disable, got "
         "'maybe'\n"},
        {"[queue.outbound.tls]\nstarttls = \"'maybe'\"\n", "queue.outbound.tls.starttls",
         "t.toml:2:13: queue.outbound.tls.starttls: expected optional, require or disable, got "
         "'maybe'\n"},
        {"[queue.outbound.tls]\n"
         "starttls = [ { if = \"retry_num > 1\", then = 5 }, { else = \"require\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:45: queue.outbound.tls.starttls: expected optional, require or disable, got "
         "5\n"},
        {"[queue.outbound.tls]\nallow-invalid-certs = \"'yes'\"\n",
         "queue.outbound.tls.allow-invalid-certs",
         "t.toml:2:24: queue.outbound.tls.allow-invalid-certs: expected true or false, got "
         "'yes'\n"},
        {"[queue.schedule]\nretry = \"[2m, mx]\"\n", "queue.schedule.retry",
         "t.toml:2:15: queue.schedule.retry: variable 'mx' is not available for "
         "queue.schedule.retry\n"},
        {"[queue.schedule]\nretry = [\"2m\", \"5x\"]\n", "queue.schedule.retry",
         "t.toml:2:17: queue.schedule.retry: invalid duration '5x' (use ms, s, m, h, d or w, "
         "e.g. 90s)\n"},
        {"[queue.outbound]\nhostname = \"matches('(', mx)\"\n", "queue.outbound.hostname",
         "t.toml:2:21: queue.outbound.hostname: invalid regular expression in matches(): missing "
         "closing parenthesis at offset 1\n"},
        {"[queue.outbound.timeouts]\nconnect = \"(5m\"\n", "queue.outbound.timeouts.connect",
         "t.toml:2:12: queue.outbound.timeouts.connect: unbalanced parentheses: '(' is never "
         "closed\n"},
        {"[queue.outbound.timeouts]\nconnect = \"'5m\"\n", "queue.outbound.timeouts.connect",
         "t.toml:2:12: queue.outbound.timeouts.connect: unterminated string\n"},
        {"[queue.outbound.limits]\nmx = \"trim(1, 2)\"\n", "queue.outbound.limits.mx",
         "t.toml:2:7: queue.outbound.limits.mx: function 'trim' takes 1 argument, got 2\n"},
        {"[queue.outbound.limits]\nmx = \"key_get('a', rcpt_domain)\"\n",
         "queue.outbound.limits.mx",
         "t.toml:2:7: queue.outbound.limits.mx: key_get: not supported yet\n"},
        {"[queue.outbound.limits]\nmx = \"nosuch(1)\"\n", "queue.outbound.limits.mx",
         "t.toml:2:7: queue.outbound.limits.mx: unknown function 'nosuch'\n"},
        {"[queue.outbound.tls]\nstarttls = [ { if = \"retry_num > 1\", else = \"require\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:38: queue.outbound.tls.starttls: 'else' cannot be combined with 'if' in one "
         "entry\n"},
        {"[queue.outbound.tls]\nstarttls = [ \"require\", { else = \"require\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:14: queue.outbound.tls.starttls: a rule entry is a table: { if = \"...\", "
         "then = ... } or { else = ... }\n"},
        {"[queue.outbound.tls]\nstarttls = [ { }, { else = \"require\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:14: queue.outbound.tls.starttls: empty rule entry\n"},
        {"[queue.outbound.tls]\nstarttls = []\n", "queue.outbound.tls.starttls",
         "t.toml:2:12: queue.outbound.tls.starttls: expected a value or a list of { if = \"...\", "
         "then = ... } entries ending with { else = ... }\n"},
        {"[queue.outbound.tls]\nstarttls = [ { if = \"(retry_num > 1\", then = \"disable\" }, "
         "{ else = \"'maybe'\" } ]\n",
         "queue.outbound.tls.starttls",
         "t.toml:2:22: queue.outbound.tls.starttls: unbalanced parentheses: '(' is never closed\n"
         "t.toml:2:69: queue.outbound.tls.starttls: expected optional, require or disable, got "
         "'maybe'\n"},
        {"[queue.outbound]\nip-strategy = \"ipv5_only\"\n", "queue.outbound.ip-strategy",
         "t.toml:2:16: queue.outbound.ip-strategy: expected ipv4_only, ipv6_only, ipv4_then_ipv6 "
         "or ipv6_then_ipv4, got 'ipv5_only'\n"},
        {"[queue.outbound]\nlimits.mx = -1\n", "queue.outbound.limits.mx",
         "t.toml:2:13: queue.outbound.limits.mx: expected a non-negative integer, got -1\n"},
        {"[queue.outbound.limits]\nmx = { if = \"1\" }\n", "queue.outbound.limits.mx",
         "t.toml:2:6: queue.outbound.limits.mx: expected a value or a list of { if = \"...\", "
         "then = ... } entries ending with { else = ... }\n"},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        struct loaded l;
        load(&l, c[i].toml, c[i].key);
        if (l.prog)
            fail_msg("case %zu compiled; want %s", i, c[i].diag);
        if (strcmp(l.text, c[i].diag) != 0)
            fail_msg("case %zu:\n got: %s\nwant: %s", i, l.text, c[i].diag);
        unload(&l);
    }
}

static void unreachable_entries_warn(void **state)
{
    (void)state;
    struct loaded l;
    load(&l,
         "[queue.outbound.tls]\n"
         "starttls = [ { if = \"retry_num > 1\", then = \"disable\" },\n"
         "             { if = \"retry_num>1\", then = \"optional\" },\n"
         "             { else = \"require\" } ]\n",
         "queue.outbound.tls.starttls");
    assert_non_null(l.prog);
    assert_string_equal(l.text, "t.toml:3:21: warning: queue.outbound.tls.starttls: entry 2 "
                                "can never match: entry 1 has the same condition\n");
    assert_string_equal(eval_with(l.prog, "2", NULL, NULL, NULL), "disable");
    assert_string_equal(eval_with(l.prog, "0", NULL, NULL, NULL), "require");
    unload(&l);

    load(&l,
         "[queue.outbound.tls]\n"
         "starttls = [ { if = \"true\", then = \"disable\" },\n"
         "             { else = \"require\" } ]\n",
         "queue.outbound.tls.starttls");
    assert_non_null(l.prog);
    assert_string_equal(l.text,
                        "t.toml:3:16: warning: queue.outbound.tls.starttls: the 'else' entry can "
                        "never match: the condition of entry 1 is always true\n");
    unload(&l);
}

struct value_case {
    const char *toml, *key, *want;
};

static void plain_values_and_lists(void **state)
{
    (void)state;
    static const struct value_case c[] = {
        {"[queue.outbound.tls]\nstarttls = \"require\"\n", "queue.outbound.tls.starttls",
         "require"},
        {"[queue.outbound.tls]\nstarttls = \"required\"\n", "queue.outbound.tls.starttls",
         "require"},
        {"[queue.outbound.tls]\nstarttls = \"disabled\"\n", "queue.outbound.tls.starttls",
         "disable"},
        {"[queue.outbound.tls]\nstarttls = \"'optional'\"\n", "queue.outbound.tls.starttls",
         "optional"},
        {"[queue.outbound.tls]\ndane = \"disable\"\n", "queue.outbound.tls.dane", "disable"},
        {"[queue.outbound.tls]\nmta-sts = \"require\"\n", "queue.outbound.tls.mta-sts", "require"},
        {"[queue.outbound.tls]\nallow-invalid-certs = true\n",
         "queue.outbound.tls.allow-invalid-certs", "true"},
        {"[queue.outbound.tls]\nallow-invalid-certs = \"retry_num > 1\"\n",
         "queue.outbound.tls.allow-invalid-certs", "true"},
        {"[queue.outbound]\nhostname = \"mta.example.com\"\n", "queue.outbound.hostname",
         "mta.example.com"},
        {"[queue.outbound]\nhostname = \"'mta-' + retry_num + '.example.com'\"\n",
         "queue.outbound.hostname", "mta-3.example.com"},
        {"[queue.outbound]\nnext-hop = false\n", "queue.outbound.next-hop", "false"},
        {"[queue.outbound]\nnext-hop = \"relay1\"\n", "queue.outbound.next-hop", "relay1"},
        {"[queue.outbound]\nnext-hop = [ { if = \"retry_num > 2\", then = \"'backup'\" }, "
         "{ else = false } ]\n",
         "queue.outbound.next-hop", "backup"},
        {"[queue.outbound]\nip-strategy = \"ipv6_then_ipv4\"\n", "queue.outbound.ip-strategy",
         "ipv6_then_ipv4"},
        {"[queue.outbound]\nlimits.mx = 7\n", "queue.outbound.limits.mx", "7"},
        {"[queue.outbound]\nlimits.multihomed = \"retry_num + 1\"\n",
         "queue.outbound.limits.multihomed", "4"},
        {"[queue.outbound.timeouts]\ndata = \"10m\"\n", "queue.outbound.timeouts.data", "600000"},
        {"[queue.outbound.timeouts]\nconnect = 1500\n", "queue.outbound.timeouts.connect", "1500"},
        {"[queue.outbound.timeouts]\nmta-sts = \"if_then(retry_num > 1, 2m, 1m)\"\n",
         "queue.outbound.timeouts.mta-sts", "120000"},
        {"[queue.schedule]\nretry = \"[2m, 5m]\"\n", "queue.schedule.retry", "[120000, 300000]"},
        {"[queue.schedule]\nretry = [\"2m\", \"5m\"]\n", "queue.schedule.retry",
         "[120000, 300000]"},
        {"[queue.schedule]\nretry = [\"2m\", 500]\n", "queue.schedule.retry", "[120000, 500]"},
        {"[queue.schedule]\nnotify = \"[1d, 3d]\"\n", "queue.schedule.notify",
         "[86400000, 259200000]"},
        {"[queue.schedule]\nexpire = \"5d\"\n", "queue.schedule.expire", "432000000"},
        {"[queue.strategy]\ntls = [ { if = \"retry_num > 2 && last_error == 'tls'\", then = "
         "\"'relaxed'\" }, { else = \"'default'\" } ]\n",
         "queue.strategy.tls", "default"},
        {"[queue.tls.relaxed]\nstarttls = \"optional\"\nallow-invalid-certs = true\n",
         "queue.tls.relaxed.allow-invalid-certs", "true"},
        {"[queue.tls.default]\nstarttls = \"require\"\ntimeout.tls = \"2m\"\n",
         "queue.tls.default.timeout.tls", "120000"},
        {"[queue.schedule]\nretry = [ { if = \"retry_num > 2\", then = \"[1h]\" }, "
         "{ else = \"[2m, 5m]\" } ]\n",
         "queue.schedule.retry", "[3600000]"},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        struct loaded l;
        load(&l, c[i].toml, c[i].key);
        if (!l.prog)
            fail_msg("case %zu did not compile: %s", i, l.text);
        int rc;
        const char *got = eval_with(l.prog, "3", NULL, NULL, &rc);
        if (rc || strcmp(got, c[i].want) != 0)
            fail_msg("case %zu (%s): got '%s' rc %d, want '%s'", i, c[i].key, got, rc, c[i].want);
        unload(&l);
    }
}

/* $0..$n of a matches() are visible to the `then` of the same entry only. */
static void captures_reach_then(void **state)
{
    (void)state;
    struct loaded l;
    load(&l,
         "[queue.outbound]\n"
         "hostname = [ { if = \"matches('^mx\\\\.(.+)$', mx)\", then = \"'out.' + $1\" },\n"
         "             { if = \"retry_num > 0\", then = \"'r.' + $1 + 'x'\" },\n"
         "             { else = \"'default.example'\" } ]\n",
         "queue.outbound.hostname");
    assert_non_null(l.prog);
    assert_string_equal(eval_with(l.prog, "0", NULL, "mx.example.net", NULL), "out.example.net");
    assert_string_equal(eval_with(l.prog, "1", NULL, "other.example.net", NULL), "r.x");
    assert_string_equal(eval_with(l.prog, "0", NULL, "other.example.net", NULL), "default.example");
    unload(&l);
}

static void runtime_failure_falls_back_to_default(void **state)
{
    (void)state;
    struct loaded l;
    load(&l,
         "[queue.outbound.timeouts]\n"
         "connect = \"if_then(retry_num > 0, 'soon', 2m)\"\n",
         "queue.outbound.timeouts.connect");
    assert_non_null(l.prog);
    int rc;
    assert_string_equal(eval_with(l.prog, "0", NULL, NULL, &rc), "120000");
    assert_int_equal(rc, 0);
    assert_string_equal(eval_with(l.prog, "1", NULL, NULL, &rc), "300000");
    assert_int_equal(rc, RULE_E_TYPE);
    unload(&l);

    load(&l, "[queue.outbound.tls]\nstarttls = \"if_then(retry_num > 0, last_error, 'require')\"\n",
         "queue.outbound.tls.starttls");
    assert_non_null(l.prog);
    assert_string_equal(eval_with(l.prog, "1", "tls", NULL, &rc), "optional");
    assert_int_equal(rc, RULE_E_TYPE);
    assert_string_equal(eval_with(l.prog, "0", "tls", NULL, &rc), "require");
    assert_int_equal(rc, 0);
    unload(&l);
}

struct worker {
    struct rule_program *prog;
    const char *mx, *want;
    int bad;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct rule_vars vars;
    rule_vars_init(&vars);
    rule_vars_set_text(&vars, RULE_VAR_MX, w->mx);
    for (int i = 0; i < 20000; i++) {
        struct rule_result r;
        if (rule_eval_setting(w->prog, &vars, &r) != 0 || r.len != strlen(w->want) ||
            memcmp(r.s, w->want, r.len) != 0)
            w->bad++;
    }
    return NULL;
}

/* Each worker thread evaluates its own clone: same code, separate scratch. */
static void clones_evaluate_in_threads(void **state)
{
    (void)state;
    struct loaded l;
    load(&l,
         "[queue.outbound]\n"
         "hostname = [ { if = \"matches('^mx[0-9]*\\\\.(.+)$', mx)\", then = \"'out.' + $1\" },\n"
         "             { else = \"'mta.example.com'\" } ]\n",
         "queue.outbound.hostname");
    assert_non_null(l.prog);
    struct worker w[2] = {{rule_program_clone(l.prog), "mx1.a.example", "out.a.example", 0},
                          {rule_program_clone(l.prog), "mx22.bb.example", "out.bb.example", 0}};
    assert_non_null(w[0].prog);
    assert_non_null(w[1].prog);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(w[0].bad, 0);
    assert_int_equal(w[1].bad, 0);
    /* the original still works on its own scratch */
    assert_string_equal(eval_with(l.prog, "0", NULL, "mx.c.example", NULL), "out.c.example");
    rule_program_free(w[0].prog);
    rule_program_free(w[1].prog);
    unload(&l);
}

static void too_many_entries_is_a_load_error(void **state)
{
    (void)state;
    struct sv_buf t = {0};
    sv_buf_puts(&t, "[queue.outbound.tls]\nstarttls = [");
    for (int i = 0; i < 1100; i++)
        sv_buf_printf(&t, "{ if = \"retry_num > %d\", then = \"disable\" },\n", i);
    sv_buf_puts(&t, "{ else = \"require\" } ]\n");
    struct loaded l;
    load(&l, t.ptr, "queue.outbound.tls.starttls");
    assert_null(l.prog);
    assert_string_equal(l.text, "t.toml:2:12: queue.outbound.tls.starttls: rules too large "
                                "(more than 4095 instructions)\n");
    unload(&l);
    sv_buf_free(&t);
}

static void setting_table(void **state)
{
    (void)state;
    size_t n;
    const char *const *names = rule_setting_names(&n);
    assert_int_equal(n, 27);
    for (size_t i = 0; i < n; i++) {
        const struct rule_setting *s = rule_setting_find(names[i]);
        assert_non_null(s);
        assert_string_equal(rule_setting_key(s), names[i]);
    }
    assert_null(rule_setting_find("queue.outbound.tls.nope"));
    /* the 0.13+ strategy tables: any strategy name, quoted or not */
    assert_string_equal(rule_setting_key(rule_setting_find("queue.tls.default.starttls")),
                        "queue.tls.*.starttls");
    assert_string_equal(rule_setting_key(rule_setting_find("queue.tls.\"eu.strict\".timeout.tls")),
                        "queue.tls.*.timeout.tls");
    assert_null(rule_setting_find("queue.tls.starttls"));
    assert_null(rule_setting_find("queue.tls.a.b.starttls"));
    assert_null(rule_setting_find("queue.tls.default.starttls.x"));
    struct rule_result r;
    struct sv_buf b = {0};
    rule_setting_default(rule_setting_find("queue.schedule.retry"), &r);
    rule_result_format(&r, &b);
    assert_string_equal(b.ptr, "[120000, 300000, 600000, 900000, 1800000, 3600000, 7200000]");
    sv_buf_free(&b);
    /* mx only once an MX is chosen */
    assert_false(rule_setting_vars(rule_setting_find("queue.schedule.retry")) &
                 (1u << RULE_VAR_MX));
    assert_true(rule_setting_vars(rule_setting_find("queue.outbound.tls.starttls")) &
                (1u << RULE_VAR_MX));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seed_grid),
        cmocka_unit_test(load_errors_with_positions),
        cmocka_unit_test(unreachable_entries_warn),
        cmocka_unit_test(plain_values_and_lists),
        cmocka_unit_test(captures_reach_then),
        cmocka_unit_test(runtime_failure_falls_back_to_default),
        cmocka_unit_test(clones_evaluate_in_threads),
        cmocka_unit_test(too_many_entries_is_a_load_error),
        cmocka_unit_test(setting_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
