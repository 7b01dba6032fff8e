/* Property: for random expressions (fixed seed), the compiled bytecode gives the
 * same value as a small tree-walking reference interpreter written here from
 * stalwart-compat.md, independently of sched/. Expressions are rendered with the
 * fewest parentheses precedence allows (plus random extra ones), so the parser's
 * precedence and associativity are exercised too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "salvo_sched.h"

/* --- a tiny deterministic PRNG ----------------------------------------------- */

static uint64_t rng = 0x5a1f0c0ffee1234ull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* --- reference values --------------------------------------------------------- */

enum { R_INT, R_FLOAT, R_STR };

struct ref {
    int t;
    int64_t i;
    double f;
    char s[4096];
    size_t len;
};

static struct ref r_int(int64_t i)
{
    struct ref r = {.t = R_INT, .i = i};
    return r;
}

static struct ref r_float(double f)
{
    struct ref r = {.t = R_FLOAT, .f = f};
    return r;
}

static struct ref r_str(const char *s, size_t len)
{
    struct ref r = {.t = R_STR};
    if (len >= sizeof(r.s))
        len = sizeof(r.s) - 1;
    memcpy(r.s, s, len);
    r.len = len;
    return r;
}

static int truthy(const struct ref *v)
{
    return v->t == R_INT ? v->i != 0 : v->t == R_FLOAT ? v->f != 0.0 : v->len != 0;
}

/* A string as a number: the whole text as an integer, else as a float, else 0. */
static struct ref num(const struct ref *v)
{
    if (v->t != R_STR)
        return *v;
    char buf[64];
    if (v->len == 0 || v->len >= sizeof(buf) || v->s[0] == ' ')
        return r_int(0);
    memcpy(buf, v->s, v->len);
    buf[v->len] = 0;
    char *end;
    errno = 0;
    long long i = strtoll(buf, &end, 10);
    if (!*end && !errno)
        return r_int(i);
    double d = strtod(buf, &end);
    if (!*end)
        return r_float(d);
    return r_int(0);
}

static double fl(const struct ref *n)
{
    return n->t == R_INT ? (double)n->i : n->f;
}

static void fmt(const struct ref *v, char *out, size_t cap)
{
    if (v->t == R_INT) {
        snprintf(out, cap, "%lld", (long long)v->i);
    } else if (v->t == R_FLOAT) {
        for (int p = 1; p <= 17; p++) {
            snprintf(out, cap, "%.*g", p, v->f);
            if (strtod(out, NULL) == v->f)
                break;
        }
    } else {
        snprintf(out, cap, "%.*s", (int)v->len, v->s);
    }
}

static struct ref to_s(const struct ref *v)
{
    char b[64];
    if (v->t == R_STR)
        return *v;
    fmt(v, b, sizeof(b));
    return r_str(b, strlen(b));
}

static int64_t sat(__int128 x)
{
    return x > INT64_MAX ? INT64_MAX : x < INT64_MIN ? INT64_MIN : (int64_t)x;
}

enum { B_ADD, B_SUB, B_MUL, B_DIV, B_EQ, B_NE, B_LT, B_LE, B_GT, B_GE, B_XOR, B_AND, B_OR, B_N };

static int cmp(const struct ref *a, const struct ref *b)
{
    if (a->t == R_STR && b->t == R_STR) {
        size_t n = a->len < b->len ? a->len : b->len;
        int c = memcmp(a->s, b->s, n);
        return c ? (c < 0 ? -1 : 1) : (a->len > b->len) - (a->len < b->len);
    }
    struct ref x = num(a), y = num(b);
    if (x.t == R_INT && y.t == R_INT)
        return (x.i > y.i) - (x.i < y.i);
    return (fl(&x) > fl(&y)) - (fl(&x) < fl(&y));
}

static int eq(const struct ref *a, const struct ref *b)
{
    if (a->t == R_STR && b->t == R_STR)
        return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
    struct ref x = num(a), y = num(b);
    if (x.t == R_INT && y.t == R_INT)
        return x.i == y.i;
    return fl(&x) == fl(&y);
}

static struct ref binop(int op, const struct ref *a, const struct ref *b)
{
    struct ref x = num(a), y = num(b);
    switch (op) {
    case B_ADD:
        if (a->t == R_STR || b->t == R_STR) {
            struct ref p = to_s(a), q = to_s(b), r = p;
            size_t n = q.len < sizeof(r.s) - 1 - r.len ? q.len : sizeof(r.s) - 1 - r.len;
            memcpy(r.s + r.len, q.s, n);
            r.len += n;
            return r;
        }
        if (a->t == R_INT && b->t == R_INT)
            return r_int(sat((__int128)a->i + b->i));
        return r_float(fl(a) + fl(b));
    case B_SUB:
        if (x.t == R_INT && y.t == R_INT)
            return r_int(sat((__int128)x.i - y.i));
        return r_float(fl(&x) - fl(&y));
    case B_MUL:
        if (x.t == R_INT && y.t == R_INT)
            return r_int(sat((__int128)x.i * y.i));
        return r_float(fl(&x) * fl(&y));
    case B_DIV: return r_float(fl(&y) != 0.0 ? fl(&x) / fl(&y) : 0.0);
    case B_EQ: return r_int(eq(a, b));
    case B_NE: return r_int(!eq(a, b));
    case B_LT: return r_int(cmp(a, b) < 0);
    case B_LE: return r_int(cmp(a, b) <= 0);
    case B_GT: return r_int(cmp(a, b) > 0);
    case B_GE: return r_int(cmp(a, b) >= 0);
    case B_XOR: return r_int(truthy(a) != truthy(b));
    case B_AND: return r_int(truthy(a) && truthy(b));
    case B_OR: return r_int(truthy(a) || truthy(b));
    }
    return r_int(0);
}

/* --- expression trees ----------------------------------------------------------- */

enum {
    E_INT,
    E_FLOAT,
    E_STR,
    E_VAR,
    E_NOT,
    E_NEG,
    E_BIN,
    E_LEN,
    E_UPPER,
    E_CONTAINS,
    E_IFTHEN,
    E_EMPTY
};

struct expr {
    int kind, op, n;
    int64_t i;
    double f;
    const char *s;
    int var;
    struct expr *k[3];
};

static const char *const strs[] = {"", "a", "b", "10", "2.5", "tls", "A", "-3"};
static const int vars_used[] = {RULE_VAR_RETRY_NUM, RULE_VAR_SIZE, RULE_VAR_LAST_ERROR,
                                RULE_VAR_RCPT};

static struct expr *gen(int depth)
{
    struct expr *e = calloc(1, sizeof(*e));
    unsigned pick = depth <= 0 ? rnd(5) : rnd(16);
    switch (pick) {
    case 0:
        e->kind = E_INT;
        e->i = rnd(21);
        break;
    case 1:
        e->kind = E_FLOAT;
        e->f = rnd(10) + 0.5;
        break;
    case 2:
        e->kind = E_STR;
        e->s = strs[rnd(8)];
        break;
    case 3:
    case 4:
        e->kind = E_VAR;
        e->var = vars_used[rnd(4)];
        break;
    case 5:
        e->kind = E_NOT;
        e->k[0] = gen(depth - 1);
        break;
    case 6:
        e->kind = E_NEG;
        e->k[0] = gen(depth - 1);
        break;
    case 7:
        e->kind = E_LEN;
        e->k[0] = gen(depth - 1);
        break;
    case 8:
        e->kind = E_UPPER;
        e->k[0] = gen(depth - 1);
        break;
    case 9:
        e->kind = E_CONTAINS;
        e->k[0] = gen(depth - 1);
        e->k[1] = gen(depth - 1);
        break;
    case 10:
        e->kind = E_IFTHEN;
        for (int i = 0; i < 3; i++)
            e->k[i] = gen(depth - 1);
        break;
    case 11:
        e->kind = E_EMPTY;
        e->k[0] = gen(depth - 1);
        break;
    default:
        e->kind = E_BIN;
        e->op = (int)rnd(B_N);
        e->k[0] = gen(depth - 1);
        e->k[1] = gen(depth - 1);
        break;
    }
    return e;
}

static void free_expr(struct expr *e)
{
    if (!e)
        return;
    for (int i = 0; i < 3; i++)
        free_expr(e->k[i]);
    free(e);
}

static int prec(int op)
{
    static const int p[B_N] = {
        [B_ADD] = 6, [B_SUB] = 6, [B_MUL] = 7, [B_DIV] = 7, [B_EQ] = 4,  [B_NE] = 4, [B_LT] = 5,
        [B_LE] = 5,  [B_GT] = 5,  [B_GE] = 5,  [B_XOR] = 3, [B_AND] = 2, [B_OR] = 1};
    return p[op];
}

/* Spellings, including the alternative ones (& | = => =<). */
static const char *spell(int op)
{
    static const char *const a[B_N] = {"+",  "-", "*",  "/", "==", "!=", "<",
                                       "<=", ">", ">=", "^", "&&", "||"};
    static const char *const b[B_N] = {"+",  "-", "*",  "/", "=", "!=", "<",
                                       "=<", ">", "=>", "^", "&", "|"};
    return rnd(4) == 0 ? b[op] : a[op];
}

static void put(char **o, const char *s)
{
    size_t n = strlen(s);
    memcpy(*o, s, n);
    *o += n;
}

static void render(const struct expr *e, char **o, int ctx_prec, bool right)
{
    char b[64];
    bool extra = rnd(10) == 0;
    if (extra)
        put(o, "(");
    switch (e->kind) {
    case E_INT:
        snprintf(b, sizeof(b), "%lld", (long long)e->i);
        put(o, b);
        break;
    case E_FLOAT:
        snprintf(b, sizeof(b), "%.1f", e->f);
        put(o, b);
        break;
    case E_STR: {
        const char *q = rnd(2) ? "'" : "\"";
        put(o, q);
        put(o, e->s);
        put(o, q);
        break;
    }
    case E_VAR: put(o, rule_var_name(e->var)); break;
    case E_NOT:
    case E_NEG:
        put(o, e->kind == E_NOT ? "!" : "-");
        render(e->k[0], o, 100, false);
        break;
    case E_LEN:
    case E_UPPER:
    case E_EMPTY:
        put(o, e->kind == E_LEN ? "len(" : e->kind == E_UPPER ? "to_uppercase(" : "is_empty(");
        render(e->k[0], o, 0, false);
        put(o, ")");
        break;
    case E_CONTAINS:
    case E_IFTHEN:
        put(o, e->kind == E_CONTAINS ? "contains(" : "if_then(");
        for (int i = 0; i < (e->kind == E_CONTAINS ? 2 : 3); i++) {
            if (i)
                put(o, ", ");
            render(e->k[i], o, 0, false);
        }
        put(o, ")");
        break;
    case E_BIN: {
        int p = prec(e->op);
        bool paren = p < ctx_prec || (p == ctx_prec && right);
        if (paren)
            put(o, "(");
        render(e->k[0], o, p, false);
        put(o, " ");
        put(o, spell(e->op));
        put(o, " ");
        render(e->k[1], o, p, true);
        if (paren)
            put(o, ")");
        break;
    }
    }
    if (extra)
        put(o, ")");
}

/* Unary operators bind tighter than any binary one: a binary child of `!`/`-`
 * gets parentheses because render() is called with ctx_prec 100. */

static struct ref ref_eval(const struct expr *e, const struct rule_vars *vars)
{
    struct ref a, b;
    switch (e->kind) {
    case E_INT: return r_int(e->i);
    case E_FLOAT: return r_float(e->f);
    case E_STR: return r_str(e->s, strlen(e->s));
    case E_VAR: {
        const struct rule_val *v = &vars->v[e->var];
        return v->type == RULE_INT ? r_int(v->u.i) : r_str(v->u.s, v->len);
    }
    case E_NOT: a = ref_eval(e->k[0], vars); return r_int(!truthy(&a));
    case E_NEG:
        a = ref_eval(e->k[0], vars);
        a = num(&a);
        return a.t == R_INT ? r_int(a.i == INT64_MIN ? INT64_MAX : -a.i) : r_float(-a.f);
    case E_LEN:
        a = ref_eval(e->k[0], vars);
        a = to_s(&a);
        return r_int((int64_t)a.len);
    case E_UPPER:
        a = ref_eval(e->k[0], vars);
        a = to_s(&a);
        for (size_t i = 0; i < a.len; i++)
            if (a.s[i] >= 'a' && a.s[i] <= 'z')
                a.s[i] = (char)(a.s[i] - 32);
        return a;
    case E_EMPTY: a = ref_eval(e->k[0], vars); return r_int(a.t == R_STR && a.len == 0);
    case E_CONTAINS:
        a = ref_eval(e->k[0], vars);
        b = ref_eval(e->k[1], vars);
        a = to_s(&a);
        b = to_s(&b);
        a.s[a.len] = 0;
        b.s[b.len] = 0;
        return r_int(strstr(a.s, b.s) != NULL);
    case E_IFTHEN: a = ref_eval(e->k[0], vars); return ref_eval(e->k[truthy(&a) ? 1 : 2], vars);
    case E_BIN:
        a = ref_eval(e->k[0], vars);
        if (e->op == B_AND && !truthy(&a))
            return r_int(0);
        if (e->op == B_OR && truthy(&a))
            return r_int(1);
        b = ref_eval(e->k[1], vars);
        return binop(e->op, &a, &b);
    }
    return r_int(0);
}

static void vm_matches_reference(void **state)
{
    (void)state;
    static const char *const errs[] = {"none", "tls", "dns", "io"};
    static const char *const rcpts[] = {"a@b.com", "10", "", "TLS"};
    static char src[1 << 16];
    char nums[2][16];
    int checked = 0, skipped = 0;
    for (int iter = 0; iter < 4000; iter++) {
        struct expr *e = gen(1 + (int)rnd(5));
        char *o = src;
        render(e, &o, 0, false);
        *o = 0;
        struct rule_vars vars;
        rule_vars_init(&vars);
        snprintf(nums[0], sizeof(nums[0]), "%u", rnd(4));
        snprintf(nums[1], sizeof(nums[1]), "%u", rnd(3000));
        rule_vars_set_text(&vars, RULE_VAR_RETRY_NUM, nums[0]);
        rule_vars_set_text(&vars, RULE_VAR_SIZE, nums[1]);
        rule_vars_set_text(&vars, RULE_VAR_LAST_ERROR, errs[rnd(4)]);
        rule_vars_set_text(&vars, RULE_VAR_RCPT, rcpts[rnd(4)]);

        struct rule_error err;
        struct rule_program *p = rule_compile_expr(src, strlen(src), RULE_VARS_ALL, &err);
        if (!p)
            fail_msg("did not compile: %s\n  at %zu: %s", src, err.offset, err.msg);
        struct rule_val v;
        int rc = rule_eval(p, &vars, &v);
        struct ref want = ref_eval(e, &vars);
        if (rc == RULE_E_ARENA || want.len >= sizeof(want.s) - 1) {
            skipped++; /* a string longer than either side keeps: not comparable */
        } else {
            assert_int_equal(rc, 0);
            struct sv_buf got = {0};
            assert_int_equal(rule_val_format(&v, &got), 0);
            char w[4200];
            fmt(&want, w, sizeof(w));
            int want_t = want.t == R_INT ? RULE_INT : want.t == R_FLOAT ? RULE_FLOAT : RULE_STR;
            if ((int)v.type != want_t || strcmp(got.ptr ? got.ptr : "", w) != 0)
                fail_msg("%s\n  vm: %s (type %u)\n ref: %s (type %d)", src, got.ptr ? got.ptr : "",
                         v.type, w, want_t);
            sv_buf_free(&got);
            checked++;
        }
        rule_program_free(p);
        free_expr(e);
    }
    print_message("checked %d expressions (%d skipped: too long)\n", checked, skipped);
    assert_true(checked > 3900);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vm_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
