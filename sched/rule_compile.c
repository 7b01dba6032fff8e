/* The rule compiler: lexer -> recursive-descent parser building a small tree
 * (folded as it is built) -> bytecode. The tree lives only while one expression
 * is compiled; the VM never sees it.
 *
 * Constant folding uses the VM's own operator functions (rule_ops.c), so a
 * folded constant is exactly what the VM would compute. Variables resolve to
 * slots of struct rule_vars here, and a word that is no variable allowed for
 * the setting is a load error, never a silent empty value. */
#include "rule_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- tokens ------------------------------------------------------------------ */

enum tok { T_EOF, T_INT, T_FLOAT, T_STR, T_WORD, T_LP, T_RP, T_LB, T_RB, T_COMMA, T_BIN, T_NOT };

struct token {
    enum tok kind;
    size_t off, len; /* where in the source (len: raw length) */
    int bin;         /* enum rule_binop for T_BIN; BIN_SUB doubles as unary minus */
    int64_t i;
    double f;
    struct rule_val str; /* T_STR: unescaped, owned by the unit */
};

/* --- tree -------------------------------------------------------------------- */

enum nkind {
    N_CONST,
    N_VAR,
    N_CAP,
    N_NOT,
    N_NEG,
    N_BIN,
    N_AND,
    N_OR,
    N_CALL,
    N_ARRAY,
    N_INDEX,
    N_MATCH,
    N_IFTHEN
};

struct node {
    enum nkind kind;
    int id; /* binop, var slot, capture, function id, regex index */
    int n;  /* call arguments / array items */
    size_t off;
    struct rule_val k; /* N_CONST (strings/arrays owned by the unit) */
    struct node *kid[3];
    struct node *next; /* array items */
    struct node *pool_next;
};

struct rule_unit {
    uint32_t var_mask;
    const char *const *consts;
    const char *key;
    /* output */
    uint32_t *code;
    size_t ncode, capcode;
    struct rule_val *k;
    size_t nk, capk;
    void **kmem;
    size_t nkmem, capkmem;
    struct rule_regex *re;
    size_t nre, capre;
    uint32_t depth, max_depth;
    bool oom;
    size_t *fjumps; /* JMPF instructions of the current condition, to patch */
    size_t nfj, capfj;
    /* per expression */
    const char *src;
    size_t len, pos;
    struct token tok;
    struct node *pool;
    int nest;
    struct rule_error *err;
    bool failed;
    enum rule_stype last_type; /* of the expression compiled last */
    _Alignas(16) char fold_buf[RULE_ARENA_SIZE];
};

static void fail(struct rule_unit *u, size_t off, const char *fmt, ...) SV_PRINTF(3, 4);

static void fail(struct rule_unit *u, size_t off, const char *fmt, ...)
{
    if (u->failed)
        return;
    u->failed = true;
    u->err->offset = off;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->err->msg, sizeof(u->err->msg), fmt, ap);
    va_end(ap);
}

static void *keep(struct rule_unit *u, size_t n)
{
    if (u->nkmem == u->capkmem) {
        size_t cap = u->capkmem ? u->capkmem * 2 : 16;
        void **p = realloc(u->kmem, cap * sizeof(*p));
        if (!p)
            return NULL;
        u->kmem = p;
        u->capkmem = cap;
    }
    void *m = malloc(n ? n : 1);
    if (m)
        u->kmem[u->nkmem++] = m;
    return m;
}

/* Deep-copies a value into unit-owned memory (for constants). */
static int intern(struct rule_unit *u, const struct rule_val *v, struct rule_val *out)
{
    *out = *v;
    if (v->type == RULE_STR) {
        char *p = keep(u, v->len);
        if (!p)
            return -ENOMEM;
        memcpy(p, v->u.s, v->len);
        out->u.s = p;
    } else if (v->type == RULE_ARR) {
        struct rule_val *items = keep(u, v->len * sizeof(*items));
        if (!items)
            return -ENOMEM;
        for (uint32_t i = 0; i < v->len; i++) {
            if (intern(u, &v->u.a[i], &items[i]))
                return -ENOMEM;
        }
        out->u.a = items;
    }
    return 0;
}

static struct node *node_new(struct rule_unit *u, enum nkind kind, size_t off)
{
    struct node *n = calloc(1, sizeof(*n));
    if (!n) {
        u->oom = true;
        fail(u, off, "out of memory");
        return NULL;
    }
    n->kind = kind;
    n->off = off;
    n->pool_next = u->pool;
    u->pool = n;
    return n;
}

static struct node *const_node(struct rule_unit *u, size_t off, struct rule_val v)
{
    struct node *n = node_new(u, N_CONST, off);
    if (n)
        n->k = v;
    return n;
}

/* Replaces `n` by a constant computed from constant children, when that succeeds. */
static void fold_to(struct rule_unit *u, struct node *n, int rc, const struct rule_val *v)
{
    struct rule_val kept;
    if (rc == 0 && intern(u, v, &kept) == 0) {
        n->kind = N_CONST;
        n->k = kept;
    }
}

static struct rule_arena fold_arena(struct rule_unit *u)
{
    return (struct rule_arena){.base = u->fold_buf, .used = 0, .cap = sizeof(u->fold_buf)};
}

/* --- lexer ------------------------------------------------------------------- */

static bool is_word_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
}

static bool is_word_char(char c)
{
    return is_word_start(c) || (c >= '0' && c <= '9');
}

static const char *tok_text(struct rule_unit *u, char *buf, size_t cap)
{
    if (u->tok.kind == T_EOF)
        return "end of expression";
    size_t n = u->tok.len < cap - 3 ? u->tok.len : cap - 3;
    snprintf(buf, cap, "'%.*s'", (int)n, u->src + u->tok.off);
    return buf;
}

static void next(struct rule_unit *u)
{
    const char *s = u->src;
    size_t len = u->len;
    while (u->pos < len &&
           (s[u->pos] == ' ' || s[u->pos] == '\t' || s[u->pos] == '\n' || s[u->pos] == '\r'))
        u->pos++;
    struct token *t = &u->tok;
    memset(t, 0, sizeof(*t));
    t->off = u->pos;
    if (u->pos >= len) {
        t->kind = T_EOF;
        return;
    }
    char c = s[u->pos];
    char d = u->pos + 1 < len ? s[u->pos + 1] : 0;
    size_t two = 2;
    switch (c) {
    case '(': t->kind = T_LP; break;
    case ')': t->kind = T_RP; break;
    case '[': t->kind = T_LB; break;
    case ']': t->kind = T_RB; break;
    case ',': t->kind = T_COMMA; break;
    case '+':
        t->kind = T_BIN;
        t->bin = BIN_ADD;
        break;
    case '-':
        t->kind = T_BIN;
        t->bin = BIN_SUB;
        break;
    case '*':
        t->kind = T_BIN;
        t->bin = BIN_MUL;
        break;
    case '/':
        t->kind = T_BIN;
        t->bin = BIN_DIV;
        break;
    case '^':
        t->kind = T_BIN;
        t->bin = BIN_XOR;
        break;
    case '&':
        t->kind = T_BIN;
        t->bin = BIN_AND;
        t->len = d == '&' ? two : 1;
        break;
    case '|':
        t->kind = T_BIN;
        t->bin = BIN_OR;
        t->len = d == '|' ? two : 1;
        break;
    case '!':
        if (d == '=') {
            t->kind = T_BIN;
            t->bin = BIN_NE;
            t->len = 2;
        } else {
            t->kind = T_NOT;
        }
        break;
    case '=':
        t->kind = T_BIN;
        t->bin = d == '<' ? BIN_LE : d == '>' ? BIN_GE : BIN_EQ;
        t->len = (d == '=' || d == '<' || d == '>') ? two : 1;
        break;
    case '>':
        t->kind = T_BIN;
        t->bin = d == '=' ? BIN_GE : BIN_GT;
        t->len = d == '=' ? two : 1;
        break;
    case '<':
        t->kind = T_BIN;
        t->bin = d == '=' ? BIN_LE : BIN_LT;
        t->len = d == '=' ? two : 1;
        break;
    case '\'':
    case '"': {
        /* unescape into unit memory: \n \r \t, any other \x is x */
        size_t i = u->pos + 1;
        char *buf = keep(u, len - u->pos);
        if (!buf) {
            u->oom = true;
            fail(u, t->off, "out of memory");
            t->kind = T_EOF;
            return;
        }
        size_t o = 0;
        for (;;) {
            if (i >= len) {
                fail(u, t->off, "unterminated string");
                t->kind = T_EOF;
                u->pos = len;
                return;
            }
            char ch = s[i++];
            if (ch == c)
                break;
            if (ch == '\\' && i < len) {
                ch = s[i++];
                ch = ch == 'n' ? '\n' : ch == 'r' ? '\r' : ch == 't' ? '\t' : ch;
            }
            buf[o++] = ch;
        }
        t->kind = T_STR;
        t->str = (struct rule_val){.type = RULE_STR, .len = (uint32_t)o, .u.s = buf};
        t->len = i - u->pos;
        u->pos = i;
        return;
    }
    default:
        if (c >= '0' && c <= '9') {
            size_t i = u->pos;
            while (i < len && s[i] >= '0' && s[i] <= '9')
                i++;
            bool dot = i + 1 < len && s[i] == '.' && s[i + 1] >= '0' && s[i + 1] <= '9';
            if (dot) {
                i++;
                while (i < len && s[i] >= '0' && s[i] <= '9')
                    i++;
            }
            if (i < len && is_word_char(s[i])) {
                /* a duration such as 2m or 100ms: resolved with the other words */
                while (i < len && is_word_char(s[i]))
                    i++;
                t->kind = T_WORD;
            } else if (dot) {
                char tmp[64];
                size_t n = i - u->pos < sizeof(tmp) - 1 ? i - u->pos : sizeof(tmp) - 1;
                memcpy(tmp, s + u->pos, n);
                tmp[n] = 0;
                t->kind = T_FLOAT;
                t->f = strtod(tmp, NULL);
            } else {
                t->kind = T_INT;
                int64_t v = 0;
                for (size_t k = u->pos; k < i; k++) {
                    if (v > (INT64_MAX - (s[k] - '0')) / 10) {
                        fail(u, t->off, "integer literal '%.*s' is out of range", (int)(i - u->pos),
                             s + u->pos);
                        break;
                    }
                    v = v * 10 + (s[k] - '0');
                }
                t->i = v;
            }
            t->len = i - u->pos;
            u->pos = i;
            return;
        }
        if (is_word_start(c)) {
            size_t i = u->pos;
            while (i < len && is_word_char(s[i]))
                i++;
            t->kind = T_WORD;
            t->len = i - u->pos;
            u->pos = i;
            return;
        }
        t->len = 1;
        fail(u, t->off, "unexpected character '%c'", c);
        t->kind = T_EOF;
        u->pos = len;
        return;
    }
    if (!t->len)
        t->len = 1;
    u->pos += t->len;
}

/* --- parser ------------------------------------------------------------------ */

static struct node *parse_expr(struct rule_unit *u, int minprec);

static int prec_of(int bin)
{
    switch ((enum rule_binop)bin) {
    case BIN_OR: return 1;
    case BIN_AND: return 2;
    case BIN_XOR: return 3;
    case BIN_EQ:
    case BIN_NE: return 4;
    case BIN_LT:
    case BIN_LE:
    case BIN_GT:
    case BIN_GE: return 5;
    case BIN_ADD:
    case BIN_SUB: return 6;
    case BIN_MUL:
    case BIN_DIV: return 7;
    }
    return 0;
}

static struct node *parse_call(struct rule_unit *u, const struct rule_fn *fn, int id, size_t off)
{
    size_t name_len = strlen(fn->name);
    next(u); /* '(' */
    struct node *args[RULE_MAX_FN_ARGS] = {0};
    size_t arg_off[RULE_MAX_FN_ARGS] = {0};
    int n = 0;
    if (u->tok.kind != T_RP) {
        for (;;) {
            size_t aoff = u->tok.off;
            struct node *a = parse_expr(u, 1);
            if (!a)
                return NULL;
            if (n < RULE_MAX_FN_ARGS) {
                args[n] = a;
                arg_off[n] = aoff;
            }
            n++;
            if (u->tok.kind == T_COMMA) {
                next(u);
                continue;
            }
            break;
        }
    }
    if (u->tok.kind != T_RP) {
        char b[64];
        if (u->tok.kind == T_EOF)
            fail(u, off + name_len, "unbalanced parentheses: '(' of %s() is never closed",
                 fn->name);
        else
            fail(u, u->tok.off, "expected ',' or ')' in %s(), found %s", fn->name,
                 tok_text(u, b, sizeof(b)));
        return NULL;
    }
    next(u);
    if (n != fn->arity) {
        fail(u, off, "function '%s' takes %d argument%s, got %d", fn->name, fn->arity,
             fn->arity == 1 ? "" : "s", n);
        return NULL;
    }
    if (fn->kind == FN_MATCHES) {
        if (args[0]->kind != N_CONST || args[0]->k.type != RULE_STR) {
            fail(u, arg_off[0], "matches(): the regular expression must be a string literal");
            return NULL;
        }
        if (u->nre == u->capre) {
            size_t cap = u->capre ? u->capre * 2 : 4;
            struct rule_regex *p = realloc(u->re, cap * sizeof(*p));
            if (!p) {
                fail(u, off, "out of memory");
                return NULL;
            }
            u->re = p;
            u->capre = cap;
        }
        int ec;
        PCRE2_SIZE eoff;
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)args[0]->k.u.s, args[0]->k.len,
                                         PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &eoff, NULL);
        if (!code) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof(msg));
            fail(u, arg_off[0], "invalid regular expression in matches(): %s at offset %zu",
                 (const char *)msg, (size_t)eoff);
            return NULL;
        }
        uint32_t groups = 0;
        pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &groups);
        struct rule_regex *re = &u->re[u->nre];
        re->pat = args[0]->k.u.s; /* interned: lives as long as the unit's constants */
        re->patlen = args[0]->k.len;
        re->code = code;
        re->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
        re->md =
            pcre2_match_data_create(groups + 1 < RULE_MAX_CAPS ? groups + 1 : RULE_MAX_CAPS, NULL);
        if (!re->md) {
            pcre2_code_free(code);
            fail(u, off, "out of memory");
            return NULL;
        }
        u->nre++;
        struct node *m = node_new(u, N_MATCH, off);
        if (m) {
            m->id = (int)u->nre - 1;
            m->kid[0] = args[1];
        }
        return m;
    }
    if (fn->kind == FN_IF_THEN) {
        if (args[0]->kind == N_CONST)
            return rule_truthy(&args[0]->k) ? args[1] : args[2];
        struct node *m = node_new(u, N_IFTHEN, off);
        if (m)
            memcpy(m->kid, args, sizeof(m->kid));
        return m;
    }
    if (strcmp(fn->name, "hash") == 0 && args[1]->kind == N_CONST &&
        (args[1]->k.type != RULE_STR || !rule_hash_words(args[1]->k.u.s, args[1]->k.len))) {
        fail(u, arg_off[1],
             "hash(): unknown algorithm (expected 'md5', 'sha1', 'sha256' or 'sha512')");
        return NULL;
    }
    struct node *c = node_new(u, N_CALL, off);
    if (!c)
        return NULL;
    c->id = id;
    c->n = n;
    memcpy(c->kid, args, sizeof(c->kid));
    bool all_const = true;
    for (int i = 0; i < n; i++)
        all_const &= args[i]->kind == N_CONST;
    if (all_const) {
        struct rule_val vals[RULE_MAX_FN_ARGS], out;
        for (int i = 0; i < n; i++)
            vals[i] = args[i]->k;
        struct rule_arena ar = fold_arena(u);
        fold_to(u, c, fn->impl(vals, &ar, &out), &out);
    }
    return c;
}

static struct node *parse_word(struct rule_unit *u)
{
    size_t off = u->tok.off, wl = u->tok.len;
    const char *w = u->src + off;
    char name[64];
    snprintf(name, sizeof(name), "%.*s", (int)(wl < 60 ? wl : 60), w);
    if (w[0] == '$') {
        int n = 0;
        bool ok = wl >= 2 && wl <= 3;
        for (size_t i = 1; ok && i < wl; i++) {
            ok = w[i] >= '0' && w[i] <= '9';
            n = n * 10 + (w[i] - '0');
        }
        if (!ok || n >= RULE_MAX_CAPS) {
            fail(u, off, "unknown capture '%s' (matches() captures are $0..$%d)", name,
                 RULE_MAX_CAPS - 1);
            return NULL;
        }
        next(u);
        struct node *c = node_new(u, N_CAP, off);
        if (c)
            c->id = n;
        return c;
    }
    int id;
    const struct rule_fn *fn = rule_fn_find(w, wl, &id);
    next(u);
    bool call = u->tok.kind == T_LP;
    if (fn) {
        if (fn->kind == FN_LOOKUP) {
            fail(u, off, "%s: not supported yet", fn->name);
            return NULL;
        }
        if (!call) {
            fail(u, off, "function '%s' needs its arguments: %s(...)", fn->name, fn->name);
            return NULL;
        }
        return parse_call(u, fn, id, off);
    }
    if (call) {
        fail(u, off, "unknown function '%s'", name);
        return NULL;
    }
    if (strcmp(name, "true") == 0 || strcmp(name, "false") == 0)
        return const_node(u, off,
                          (struct rule_val){.type = RULE_INT, .u.i = strcmp(name, "true") == 0});
    int var = rule_var_find(name);
    if (var >= 0 && wl < 60) {
        if (!(u->var_mask & (1u << var))) {
            if (u->key)
                fail(u, off, "variable '%s' is not available for %s", name, u->key);
            else
                fail(u, off, "variable '%s' is not available here", name);
            return NULL;
        }
        struct node *v = node_new(u, N_VAR, off);
        if (v)
            v->id = var;
        return v;
    }
    for (size_t i = 0; u->consts && u->consts[i]; i++) {
        if (strlen(u->consts[i]) == wl && memcmp(u->consts[i], w, wl) == 0)
            return const_node(
                u, off,
                (struct rule_val){.type = RULE_STR, .len = (uint32_t)wl, .u.s = u->consts[i]});
    }
    int64_t ms = rule_parse_duration(w, wl);
    if (ms >= 0)
        return const_node(u, off, (struct rule_val){.type = RULE_INT, .u.i = ms});
    if (w[0] >= '0' && w[0] <= '9') {
        fail(u, off, "invalid duration '%s' (use ms, s, m, h, d or w, e.g. 90s)", name);
        return NULL;
    }
    /* a "did you mean" over the allowed variables */
    const char *cands[RULE_VAR_COUNT];
    size_t nc = 0;
    for (int i = 0; i < RULE_VAR_COUNT; i++) {
        if (u->var_mask & (1u << i))
            cands[nc++] = rule_var_name(i);
    }
    const char *hint = cfg_suggest(name, cands, nc);
    if (hint)
        fail(u, off, "unknown variable '%s' (did you mean '%s'?)", name, hint);
    else
        fail(u, off, "unknown variable '%s'", name);
    return NULL;
}

static struct node *parse_primary(struct rule_unit *u)
{
    char b[64];
    size_t off = u->tok.off;
    switch (u->tok.kind) {
    case T_INT: {
        struct node *n = const_node(u, off, (struct rule_val){.type = RULE_INT, .u.i = u->tok.i});
        next(u);
        return n;
    }
    case T_FLOAT: {
        struct node *n = const_node(u, off, (struct rule_val){.type = RULE_FLOAT, .u.f = u->tok.f});
        next(u);
        return n;
    }
    case T_STR: {
        struct node *n = const_node(u, off, u->tok.str);
        next(u);
        return n;
    }
    case T_WORD: return parse_word(u);
    case T_LP: {
        next(u);
        struct node *e = parse_expr(u, 1);
        if (!e)
            return NULL;
        if (u->tok.kind != T_RP) {
            if (u->tok.kind == T_EOF)
                fail(u, off, "unbalanced parentheses: '(' is never closed");
            else
                fail(u, u->tok.off, "expected ')', found %s", tok_text(u, b, sizeof(b)));
            return NULL;
        }
        next(u);
        return e;
    }
    case T_LB: {
        next(u);
        struct node *arr = node_new(u, N_ARRAY, off);
        if (!arr)
            return NULL;
        struct node **tail = &arr->kid[0];
        bool all_const = true;
        if (u->tok.kind != T_RB) {
            for (;;) {
                struct node *e = parse_expr(u, 1);
                if (!e)
                    return NULL;
                all_const &= e->kind == N_CONST;
                *tail = e;
                tail = &e->next;
                arr->n++;
                if (u->tok.kind == T_COMMA) {
                    next(u);
                    continue;
                }
                break;
            }
        }
        if (u->tok.kind != T_RB) {
            if (u->tok.kind == T_EOF)
                fail(u, off, "unbalanced brackets: '[' is never closed");
            else
                fail(u, u->tok.off, "expected ',' or ']', found %s", tok_text(u, b, sizeof(b)));
            return NULL;
        }
        next(u);
        if (all_const && arr->n <= 256) {
            struct rule_val items[256];
            int i = 0;
            for (struct node *e = arr->kid[0]; e; e = e->next)
                items[i++] = e->k;
            struct rule_val v = {.type = RULE_ARR, .len = (uint32_t)arr->n, .u.a = items};
            fold_to(u, arr, 0, &v);
        }
        return arr;
    }
    case T_RP: fail(u, off, "unbalanced parentheses: unexpected ')'"); return NULL;
    case T_EOF:
        if (!u->failed)
            fail(u, off, "unexpected end of expression");
        return NULL;
    case T_RB:
    case T_COMMA:
    case T_BIN:
    case T_NOT: break;
    }
    fail(u, off, "unexpected %s", tok_text(u, b, sizeof(b)));
    return NULL;
}

static struct node *parse_unary(struct rule_unit *u)
{
    size_t off = u->tok.off;
    bool is_not = u->tok.kind == T_NOT;
    bool is_neg = u->tok.kind == T_BIN && u->tok.bin == BIN_SUB;
    if (is_not || is_neg) {
        if (++u->nest > RULE_MAX_DEPTH) {
            fail(u, off, "expression nested too deeply (more than %d levels)", RULE_MAX_DEPTH);
            return NULL;
        }
        next(u);
        struct node *a = parse_unary(u);
        u->nest--;
        if (!a)
            return NULL;
        struct node *n = node_new(u, is_not ? N_NOT : N_NEG, off);
        if (!n)
            return NULL;
        n->kid[0] = a;
        if (a->kind == N_CONST) {
            struct rule_val out;
            struct rule_arena ar = fold_arena(u);
            int rc = 0;
            if (is_not)
                out = (struct rule_val){.type = RULE_INT, .u.i = !rule_truthy(&a->k)};
            else
                rc = rule_negate(&a->k, &ar, &out);
            fold_to(u, n, rc, &out);
        }
        return n;
    }
    struct node *e = parse_primary(u);
    while (e && u->tok.kind == T_LB) {
        size_t ioff = u->tok.off;
        next(u);
        struct node *i = parse_expr(u, 1);
        if (!i)
            return NULL;
        if (u->tok.kind != T_RB) {
            char b[64];
            if (u->tok.kind == T_EOF)
                fail(u, ioff, "unbalanced brackets: '[' is never closed");
            else
                fail(u, u->tok.off, "expected ']', found %s", tok_text(u, b, sizeof(b)));
            return NULL;
        }
        next(u);
        struct node *n = node_new(u, N_INDEX, ioff);
        if (!n)
            return NULL;
        n->kid[0] = e;
        n->kid[1] = i;
        if (e->kind == N_CONST && i->kind == N_CONST) {
            struct rule_val out;
            fold_to(u, n, rule_index(&e->k, &i->k, &out), &out);
        }
        e = n;
    }
    return e;
}

static struct node *parse_expr(struct rule_unit *u, int minprec)
{
    if (++u->nest > RULE_MAX_DEPTH) {
        fail(u, u->tok.off, "expression nested too deeply (more than %d levels)", RULE_MAX_DEPTH);
        return NULL;
    }
    struct node *left = parse_unary(u);
    while (left && u->tok.kind == T_BIN && prec_of(u->tok.bin) >= minprec) {
        int op = u->tok.bin;
        size_t off = u->tok.off;
        next(u);
        struct node *right = parse_expr(u, prec_of(op) + 1);
        if (!right) {
            left = NULL;
            break;
        }
        enum nkind kind = op == BIN_AND ? N_AND : op == BIN_OR ? N_OR : N_BIN;
        if (kind != N_BIN && left->kind == N_CONST) {
            /* short-circuit at compile time: `false && x` is 0, `true || x` is 1 */
            bool t = rule_truthy(&left->k);
            if ((kind == N_AND && !t) || (kind == N_OR && t)) {
                left = const_node(u, off, (struct rule_val){.type = RULE_INT, .u.i = t});
                continue;
            }
        }
        struct node *n = node_new(u, kind, off);
        if (!n) {
            left = NULL;
            break;
        }
        n->id = op;
        n->kid[0] = left;
        n->kid[1] = right;
        if (left->kind == N_CONST && right->kind == N_CONST) {
            struct rule_val out;
            struct rule_arena ar = fold_arena(u);
            fold_to(u, n, rule_binary(op, &left->k, &right->k, &ar, &out), &out);
        }
        left = n;
    }
    u->nest--;
    return left;
}

/* --- code generation ------------------------------------------------------- */

size_t rule_unit_emit(struct rule_unit *u, int op, int a, int b)
{
    if (u->ncode == u->capcode) {
        size_t cap = u->capcode ? u->capcode * 2 : 32;
        uint32_t *p = realloc(u->code, cap * sizeof(*p));
        if (!p) {
            u->oom = true;
            return 0;
        }
        u->code = p;
        u->capcode = cap;
    }
    u->code[u->ncode] = INS(op, a, b);
    /* stack effect */
    switch ((enum rule_op)op) {
    case OP_CONST:
    case OP_VAR:
    case OP_CAP: u->depth++; break;
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_EQ:
    case OP_NE:
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE:
    case OP_XOR:
    case OP_INDEX:
    case OP_JMPF:
    case OP_ANDJ:
    case OP_ORJ:
    case OP_RET: u->depth--; break;
    case OP_RETK: break;
    case OP_ARRAY: u->depth = u->depth - (uint32_t)b + 1; break;
    case OP_CALL: u->depth = u->depth - (uint32_t)b + 1; break;
    case OP_CLRCAP:
    case OP_NOT:
    case OP_NEG:
    case OP_BOOL:
    case OP_MATCH:
    case OP_JMP:
    case OP_GTK:
    case OP_EQK:
    case OP_COUNT_: break;
    case OP_VGTK:
    case OP_VEQK: u->depth++; break;
    }
    if (u->depth > u->max_depth)
        u->max_depth = u->depth;
    return u->ncode++;
}

void rule_unit_patch(struct rule_unit *u, size_t at, size_t target)
{
    if (at < u->ncode)
        u->code[at] = (u->code[at] & 0xffffu) | ((uint32_t)target << 16);
}

size_t rule_unit_here(const struct rule_unit *u)
{
    return u->ncode;
}

bool rule_unit_uses_regex(const struct rule_unit *u)
{
    return u->nre > 0;
}

static int add_const(struct rule_unit *u, const struct rule_val *v)
{
    /* reuse an equal scalar constant; strings by content */
    for (size_t i = 0; i < u->nk; i++) {
        if (u->k[i].type == v->type && v->type != RULE_ARR && rule_val_equal(&u->k[i], v) &&
            (v->type != RULE_FLOAT || u->k[i].u.f == v->u.f))
            return (int)i;
    }
    if (u->nk > RULE_MAX_B)
        return -1;
    if (u->nk == u->capk) {
        size_t cap = u->capk ? u->capk * 2 : 16;
        struct rule_val *p = realloc(u->k, cap * sizeof(*p));
        if (!p)
            return -1;
        u->k = p;
        u->capk = cap;
    }
    u->k[u->nk] = *v;
    return (int)u->nk++;
}

static void gen(struct rule_unit *u, const struct node *n)
{
    if (u->failed)
        return;
    int k;
    switch (n->kind) {
    case N_CONST:
        k = add_const(u, &n->k);
        if (k < 0) {
            fail(u, n->off, "too many constants in one setting");
            return;
        }
        rule_unit_emit(u, OP_CONST, 0, k);
        return;
    case N_VAR: rule_unit_emit(u, OP_VAR, 0, n->id); return;
    case N_CAP: rule_unit_emit(u, OP_CAP, 0, n->id); return;
    case N_NOT:
        gen(u, n->kid[0]);
        rule_unit_emit(u, OP_NOT, 0, 0);
        return;
    case N_NEG:
        gen(u, n->kid[0]);
        rule_unit_emit(u, OP_NEG, 0, 0);
        return;
    case N_BIN: {
        static const uint8_t ops[] = {
            [BIN_ADD] = OP_ADD, [BIN_SUB] = OP_SUB, [BIN_MUL] = OP_MUL, [BIN_DIV] = OP_DIV,
            [BIN_EQ] = OP_EQ,   [BIN_NE] = OP_NE,   [BIN_LT] = OP_LT,   [BIN_LE] = OP_LE,
            [BIN_GT] = OP_GT,   [BIN_GE] = OP_GE,   [BIN_XOR] = OP_XOR};
        const struct node *r = n->kid[1];
        if ((n->id == BIN_GT || n->id == BIN_EQ) && r->kind == N_CONST &&
            n->kid[0]->kind == N_VAR) {
            /* variable vs constant in one instruction */
            k = add_const(u, &r->k);
            if (k < 0) {
                fail(u, r->off, "too many constants in one setting");
                return;
            }
            rule_unit_emit(u, n->id == BIN_GT ? OP_VGTK : OP_VEQK, n->kid[0]->id, k);
            return;
        }
        gen(u, n->kid[0]);
        if ((n->id == BIN_GT || n->id == BIN_EQ) && r->kind == N_CONST) {
            /* fused compare-with-constant: the common shape of queue rules */
            k = add_const(u, &r->k);
            if (k < 0) {
                fail(u, r->off, "too many constants in one setting");
                return;
            }
            rule_unit_emit(u, n->id == BIN_GT ? OP_GTK : OP_EQK, 0, k);
            return;
        }
        gen(u, r);
        rule_unit_emit(u, ops[n->id], 0, 0);
        return;
    }
    case N_AND:
    case N_OR: {
        gen(u, n->kid[0]);
        size_t j = rule_unit_emit(u, n->kind == N_AND ? OP_ANDJ : OP_ORJ, 0, 0);
        gen(u, n->kid[1]);
        rule_unit_emit(u, OP_BOOL, 0, 0);
        /* ANDJ/ORJ keep the value on the jump path: both paths end one deeper */
        rule_unit_patch(u, j, u->ncode);
        return;
    }
    case N_CALL:
        for (int i = 0; i < n->n; i++)
            gen(u, n->kid[i]);
        rule_unit_emit(u, OP_CALL, n->id, n->n);
        return;
    case N_ARRAY:
        for (const struct node *e = n->kid[0]; e; e = e->next)
            gen(u, e);
        if (n->n > (int)RULE_MAX_B) {
            fail(u, n->off, "array literal too long");
            return;
        }
        rule_unit_emit(u, OP_ARRAY, 0, n->n);
        return;
    case N_INDEX:
        gen(u, n->kid[0]);
        gen(u, n->kid[1]);
        rule_unit_emit(u, OP_INDEX, 0, 0);
        return;
    case N_MATCH:
        gen(u, n->kid[0]);
        rule_unit_emit(u, OP_MATCH, 0, n->id);
        return;
    case N_IFTHEN: {
        gen(u, n->kid[0]);
        size_t jf = rule_unit_emit(u, OP_JMPF, 0, 0);
        gen(u, n->kid[1]);
        size_t jend = rule_unit_emit(u, OP_JMP, 0, 0);
        u->depth--; /* the else branch starts from the same depth as the then branch */
        rule_unit_patch(u, jf, u->ncode);
        gen(u, n->kid[2]);
        rule_unit_patch(u, jend, u->ncode);
        return;
    }
    }
}

/* Emits a condition as jumps-if-false: `a && b` needs no 0/1 value at all. */
static void gen_cond(struct rule_unit *u, const struct node *n)
{
    if (u->failed)
        return;
    if (n->kind == N_AND) {
        gen_cond(u, n->kid[0]);
        gen_cond(u, n->kid[1]);
        return;
    }
    gen(u, n);
    size_t j = rule_unit_emit(u, OP_JMPF, 0, 0);
    if (u->nfj == u->capfj) {
        size_t cap = u->capfj ? u->capfj * 2 : 8;
        size_t *p = realloc(u->fjumps, cap * sizeof(*p));
        if (!p) {
            u->oom = true;
            fail(u, n->off, "out of memory");
            return;
        }
        u->fjumps = p;
        u->capfj = cap;
    }
    u->fjumps[u->nfj++] = j;
}

void rule_unit_patch_false(struct rule_unit *u, size_t target)
{
    for (size_t i = 0; i < u->nfj; i++)
        rule_unit_patch(u, u->fjumps[i], target);
    u->nfj = 0;
}

/* --- static types -------------------------------------------------------------- */

/* The type to_num() gives a value of type t (rule_ops.c: an array counts as 0). */
static enum rule_stype num_of(enum rule_stype t)
{
    switch (t) {
    case RULE_ST_INT:
    case RULE_ST_ARR: return RULE_ST_INT;
    case RULE_ST_FLOAT: return RULE_ST_FLOAT;
    case RULE_ST_ANY:
    case RULE_ST_NUM:
    case RULE_ST_STR: break;
    }
    return RULE_ST_NUM;
}

/* Arithmetic on two numbers: integer only when both are (else a float). */
static enum rule_stype arith(enum rule_stype a, enum rule_stype b)
{
    if (a == RULE_ST_FLOAT || b == RULE_ST_FLOAT)
        return RULE_ST_FLOAT;
    return a == RULE_ST_INT && b == RULE_ST_INT ? RULE_ST_INT : RULE_ST_NUM;
}

static bool is_numeric(enum rule_stype t)
{
    return t == RULE_ST_INT || t == RULE_ST_FLOAT || t == RULE_ST_NUM;
}

/* The type every successful evaluation of `n` gives, mirroring rule_ops.c; ANY
 * when it depends on run-time values (those stay checked at run time only). */
static enum rule_stype stype(const struct node *n)
{
    enum rule_stype a, b;
    switch (n->kind) {
    case N_CONST:
        switch ((enum rule_type)n->k.type) {
        case RULE_INT: return RULE_ST_INT;
        case RULE_FLOAT: return RULE_ST_FLOAT;
        case RULE_STR: return RULE_ST_STR;
        case RULE_ARR: return RULE_ST_ARR;
        }
        return RULE_ST_ANY;
    case N_VAR: return rule_var_stype(n->id);
    case N_CAP: return RULE_ST_STR;
    case N_NOT:
    case N_AND:
    case N_OR:
    case N_MATCH: return RULE_ST_INT;
    case N_NEG: return num_of(stype(n->kid[0]));
    case N_BIN:
        a = stype(n->kid[0]);
        b = stype(n->kid[1]);
        switch ((enum rule_binop)n->id) {
        case BIN_ADD:
            if (a == RULE_ST_ARR || b == RULE_ST_ARR)
                return RULE_ST_ARR;
            if (a == RULE_ST_STR || b == RULE_ST_STR)
                return RULE_ST_STR;
            if (a == RULE_ST_ANY || b == RULE_ST_ANY)
                return RULE_ST_ANY;
            return arith(a, b);
        case BIN_SUB:
            if (a == RULE_ST_ARR)
                return RULE_ST_ARR;
            if (a == RULE_ST_ANY)
                return RULE_ST_ANY;
            return arith(num_of(a), num_of(b));
        case BIN_MUL: return arith(num_of(a), num_of(b));
        case BIN_DIV: return RULE_ST_FLOAT;
        case BIN_EQ:
        case BIN_NE:
        case BIN_LT:
        case BIN_LE:
        case BIN_GT:
        case BIN_GE:
        case BIN_XOR:
        case BIN_AND:
        case BIN_OR: return RULE_ST_INT;
        }
        return RULE_ST_ANY;
    case N_CALL: {
        const struct rule_fn *fn = rule_fn_get(n->id);
        return fn ? (enum rule_stype)fn->ret : RULE_ST_ANY;
    }
    case N_ARRAY: return RULE_ST_ARR;
    case N_INDEX:
        /* an array's item can be anything; anything else indexes as a string */
        a = stype(n->kid[0]);
        return a == RULE_ST_ARR || a == RULE_ST_ANY ? RULE_ST_ANY : RULE_ST_STR;
    case N_IFTHEN:
        a = stype(n->kid[1]);
        b = stype(n->kid[2]);
        if (a == b)
            return a;
        return is_numeric(a) && is_numeric(b) ? RULE_ST_NUM : RULE_ST_ANY;
    }
    return RULE_ST_ANY;
}

enum rule_stype rule_unit_result_type(const struct rule_unit *u)
{
    return u->last_type;
}

/* Constants are equal for the unreachable-entry check only when they have the same
 * type and value ("1" and 1 compare equal in the language, not here). */
static bool same_const(const struct rule_val *a, const struct rule_val *b)
{
    if (a->type != b->type || a->len != b->len)
        return false;
    switch ((enum rule_type)a->type) {
    case RULE_INT: return a->u.i == b->u.i;
    case RULE_FLOAT: return memcmp(&a->u.f, &b->u.f, sizeof(a->u.f)) == 0;
    case RULE_STR: return a->len == 0 || memcmp(a->u.s, b->u.s, a->len) == 0;
    case RULE_ARR:
        for (uint32_t i = 0; i < a->len; i++) {
            if (!same_const(&a->u.a[i], &b->u.a[i]))
                return false;
        }
        return true;
    }
    return false;
}

bool rule_unit_same_code(const struct rule_unit *u, size_t a, size_t alen, size_t b, size_t blen)
{
    if (alen != blen || a + alen > u->ncode || b + blen > u->ncode)
        return false;
    for (size_t i = 0; i < alen; i++) {
        uint32_t x = u->code[a + i], y = u->code[b + i];
        if (INS_OP(x) != INS_OP(y) || INS_A(x) != INS_A(y))
            return false;
        size_t bx = INS_B(x), by = INS_B(y);
        switch ((enum rule_op)INS_OP(x)) {
        case OP_CONST:
        case OP_GTK:
        case OP_EQK:
        case OP_VGTK:
        case OP_VEQK:
        case OP_RETK:
            if (bx >= u->nk || by >= u->nk || !same_const(&u->k[bx], &u->k[by]))
                return false;
            break;
        case OP_MATCH:
            if (bx >= u->nre || by >= u->nre || u->re[bx].patlen != u->re[by].patlen ||
                memcmp(u->re[bx].pat, u->re[by].pat, u->re[bx].patlen) != 0)
                return false;
            break;
        case OP_JMP:
        case OP_JMPF:
        case OP_ANDJ:
        case OP_ORJ: {
            /* inside the range: the same relative target; outside: both leave it
             * (the false exits of a condition go to the next entry) */
            bool xin = bx >= a && bx < a + alen, yin = by >= b && by < b + blen;
            if (xin != yin || (xin && bx - a != by - b))
                return false;
            break;
        }
        case OP_VAR:
        case OP_CAP:
        case OP_CLRCAP:
        case OP_NOT:
        case OP_NEG:
        case OP_ADD:
        case OP_SUB:
        case OP_MUL:
        case OP_DIV:
        case OP_EQ:
        case OP_NE:
        case OP_LT:
        case OP_LE:
        case OP_GT:
        case OP_GE:
        case OP_XOR:
        case OP_BOOL:
        case OP_INDEX:
        case OP_ARRAY:
        case OP_CALL:
        case OP_RET:
        case OP_COUNT_:
            if (bx != by)
                return false;
            break;
        }
    }
    return true;
}

/* --- unit lifecycle ------------------------------------------------------------ */

struct rule_unit *rule_unit_new(uint32_t var_mask, const char *const *consts,
                                const char *setting_key)
{
    struct rule_unit *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->var_mask = var_mask;
    u->consts = consts;
    u->key = setting_key;
    return u;
}

static void free_nodes(struct rule_unit *u)
{
    while (u->pool) {
        struct node *n = u->pool;
        u->pool = n->pool_next;
        free(n);
    }
}

static int unit_compile(struct rule_unit *u, const char *src, size_t len, struct rule_error *err,
                        bool *constant, struct rule_val *kval, bool cond);

int rule_unit_expr(struct rule_unit *u, const char *src, size_t len, struct rule_error *err,
                   bool *constant, struct rule_val *kval)
{
    return unit_compile(u, src, len, err, constant, kval, false);
}

int rule_unit_cond(struct rule_unit *u, const char *src, size_t len, struct rule_error *err,
                   bool *constant, struct rule_val *kval)
{
    u->nfj = 0;
    return unit_compile(u, src, len, err, constant, kval, true);
}

static int unit_compile(struct rule_unit *u, const char *src, size_t len, struct rule_error *err,
                        bool *constant, struct rule_val *kval, bool cond)
{
    u->src = src;
    u->len = len;
    u->pos = 0;
    u->err = err;
    u->failed = false;
    u->nest = 0;
    u->last_type = RULE_ST_ANY;
    err->offset = 0;
    err->msg[0] = 0;
    if (memchr(src, 0, len)) {
        fail(u, (size_t)((const char *)memchr(src, 0, len) - src), "NUL byte in expression");
        return -1;
    }
    next(u);
    struct node *root = u->failed ? NULL : parse_expr(u, 1);
    if (root && u->tok.kind != T_EOF) {
        char b[64];
        if (u->tok.kind == T_RP)
            fail(u, u->tok.off, "unbalanced parentheses: unexpected ')'");
        else
            fail(u, u->tok.off, "unexpected %s after the expression", tok_text(u, b, sizeof(b)));
    }
    if (!u->failed && root) {
        size_t start = u->ncode;
        uint32_t depth0 = u->depth;
        if (cond)
            gen_cond(u, root);
        else
            gen(u, root);
        if (u->oom)
            fail(u, 0, "out of memory");
        if (!u->failed && u->max_depth > RULE_STACK_MAX)
            fail(u, 0, "expression too complex (needs more than %d stack slots)", RULE_STACK_MAX);
        /* one below the program limit: a bare expression still needs its RET */
        if (!u->failed && u->ncode - start > RULE_MAX_CODE - 1)
            fail(u, 0, "expression too long (more than %d instructions)", RULE_MAX_CODE - 1);
        if (u->failed) {
            u->ncode = start;
            u->depth = depth0;
        }
        u->last_type = stype(root);
        if (constant)
            *constant = root->kind == N_CONST;
        if (kval && root->kind == N_CONST)
            *kval = root->k;
    }
    free_nodes(u);
    return u->failed ? -1 : 0;
}

static void free_regexes(struct rule_regex *re, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pcre2_match_data_free(re[i].md);
        pcre2_code_free(re[i].code);
    }
    free(re);
}

void rule_unit_free(struct rule_unit *u)
{
    if (!u)
        return;
    free_nodes(u);
    free(u->fjumps);
    free(u->code);
    free(u->k);
    for (size_t i = 0; i < u->nkmem; i++)
        free(u->kmem[i]);
    free(u->kmem);
    free_regexes(u->re, u->nre);
    free(u);
}

/* CONST k; RET -> RETK k; RET, unless a jump lands on that RET. Indices do not
 * move (the RET stays as dead code), so no jump needs patching. */
static void merge_const_ret(struct rule_unit *u)
{
    uint8_t *target = calloc(u->ncode + 1, 1);
    if (!target)
        return; /* an optimisation only */
    for (size_t i = 0; i < u->ncode; i++) {
        unsigned op = INS_OP(u->code[i]);
        if (op == OP_JMP || op == OP_JMPF || op == OP_ANDJ || op == OP_ORJ)
            target[INS_B(u->code[i])] = 1;
    }
    for (size_t i = 0; i + 1 < u->ncode; i++) {
        if (INS_OP(u->code[i]) == OP_CONST && INS_OP(u->code[i + 1]) == OP_RET && !target[i + 1])
            u->code[i] = INS(OP_RETK, 0, INS_B(u->code[i]));
    }
    free(target);
}

struct rule_program *rule_unit_finish(struct rule_unit *u, const struct rule_setting *s)
{
    if (!u->oom && u->ncode <= RULE_MAX_CODE)
        merge_const_ret(u);
    if (u->oom || u->ncode > RULE_MAX_CODE || u->max_depth > RULE_STACK_MAX) {
        rule_unit_free(u);
        return NULL;
    }
    struct rule_program *p = calloc(1, sizeof(*p));
    char *arena = malloc(RULE_ARENA_SIZE);
    if (!p || !arena) {
        free(p);
        free(arena);
        rule_unit_free(u);
        return NULL;
    }
    p->code = u->code;
    p->ncode = u->ncode;
    p->k = u->k;
    p->nk = u->nk;
    p->kmem = u->kmem;
    p->nkmem = u->nkmem;
    p->re = u->re;
    p->nre = u->nre;
    p->setting = s;
    p->stack_need = u->max_depth;
    p->budget = RULE_BUDGET;
    p->arena = (struct rule_arena){.base = arena, .used = 0, .cap = RULE_ARENA_SIZE};
    p->arena_cap = RULE_ARENA_SIZE;
    free(u->fjumps);
    free(u);
    return p;
}

struct rule_program *rule_program_clone(const struct rule_program *p)
{
    struct rule_program *c = malloc(sizeof(*c));
    char *arena = malloc(p->arena_cap);
    struct rule_regex *re = p->nre ? calloc(p->nre, sizeof(*re)) : NULL;
    if (!c || !arena || (p->nre && !re))
        goto fail;
    *c = *p;
    c->parent = p->parent ? p->parent : p;
    c->arena = (struct rule_arena){.base = arena, .used = 0, .cap = p->arena.cap};
    c->re = re;
    for (size_t i = 0; i < p->nre; i++) {
        re[i].code = p->re[i].code; /* compiled and JIT code is safe to share */
        re[i].jit = p->re[i].jit;
        re[i].md = pcre2_match_data_create(pcre2_get_ovector_count(p->re[i].md), NULL);
        if (!re[i].md)
            goto fail;
    }
    return c;
fail:
    for (size_t i = 0; re && i < p->nre; i++)
        pcre2_match_data_free(re[i].md);
    free(re);
    free(arena);
    free(c);
    return NULL;
}

void rule_program_free(struct rule_program *p)
{
    if (!p)
        return;
    if (p->parent) {
        for (size_t i = 0; i < p->nre; i++)
            pcre2_match_data_free(p->re[i].md);
        free(p->re);
        free(p->arena.base);
        free(p);
        return;
    }
    free(p->code);
    free(p->k);
    for (size_t i = 0; i < p->nkmem; i++)
        free(p->kmem[i]);
    free(p->kmem);
    free_regexes(p->re, p->nre);
    free(p->arena.base);
    free(p->ktyped);
    free(p->ktyped_rc);
    free(p);
}

void rule_program_set_limits(struct rule_program *p, uint32_t budget, size_t arena_bytes)
{
    p->budget = budget;
    p->arena.cap = arena_bytes < p->arena_cap ? arena_bytes : p->arena_cap;
}

size_t rule_program_size(const struct rule_program *p)
{
    return p->ncode;
}

const struct rule_setting *rule_program_setting(const struct rule_program *p)
{
    return p->setting;
}

struct rule_program *rule_compile_expr(const char *src, size_t len, uint32_t var_mask,
                                       struct rule_error *err)
{
    struct rule_unit *u = rule_unit_new(var_mask, NULL, NULL);
    if (!u) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        err->offset = 0;
        return NULL;
    }
    if (rule_unit_expr(u, src, len, err, NULL, NULL)) {
        rule_unit_free(u);
        return NULL;
    }
    rule_unit_emit(u, OP_RET, 0, 0);
    struct rule_program *p = rule_unit_finish(u, NULL);
    if (!p) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        err->offset = 0;
    }
    return p;
}

/* --- disassembler -------------------------------------------------------------- */

static const char *const op_names[] = {
#define RULE_OP_NAME(name) #name,
    RULE_OPCODES(RULE_OP_NAME)
#undef RULE_OP_NAME
};

static int const_text(const struct rule_val *v, struct sv_buf *out)
{
    if (v->type == RULE_STR) {
        if (sv_buf_putc(out, '\''))
            return -ENOMEM;
        for (uint32_t i = 0; i < v->len; i++) {
            unsigned char c = (unsigned char)v->u.s[i];
            int rc = c < 0x20 || c == '\'' || c == '\\' ? sv_buf_printf(out, "\\x%02x", c)
                                                        : sv_buf_putc(out, (char)c);
            if (rc)
                return rc;
        }
        return sv_buf_putc(out, '\'');
    }
    return rule_val_format(v, out);
}

int rule_disasm(const struct rule_program *p, struct sv_buf *out)
{
    for (size_t pc = 0; pc < p->ncode; pc++) {
        uint32_t ins = p->code[pc];
        unsigned op = INS_OP(ins), a = INS_A(ins), b = INS_B(ins);
        if (op >= OP_COUNT_)
            return -EINVAL;
        if (sv_buf_printf(out, "%04zu  %-7s", pc, op_names[op]))
            return -ENOMEM;
        int rc = 0;
        switch ((enum rule_op)op) {
        case OP_CONST:
        case OP_RETK:
        case OP_GTK:
        case OP_EQK:
            rc = sv_buf_printf(out, "K%-5u ; ", b);
            if (!rc)
                rc = const_text(&p->k[b], out);
            break;
        case OP_VGTK:
        case OP_VEQK:
            rc = sv_buf_printf(out, "%-6u K%-5u ; %s %s ", a, b, rule_var_name((int)a),
                               op == OP_VGTK ? ">" : "==");
            if (!rc)
                rc = const_text(&p->k[b], out);
            break;
        case OP_VAR: rc = sv_buf_printf(out, "%-6u ; %s", b, rule_var_name((int)b)); break;
        case OP_CAP: rc = sv_buf_printf(out, "$%u", b); break;
        case OP_ARRAY: rc = sv_buf_printf(out, "%u", b); break;
        case OP_CALL:
            rc = sv_buf_printf(out, "%-6u ; %s/%u", a, rule_fn_get((int)a)->name, b);
            break;
        case OP_MATCH:
            rc = sv_buf_printf(out, "R%-5u ; %s", b, p->re[b].jit ? "jit" : "interp");
            break;
        case OP_JMP:
        case OP_JMPF:
        case OP_ANDJ:
        case OP_ORJ: rc = sv_buf_printf(out, "-> %04u", b); break;
        case OP_CLRCAP:
        case OP_NOT:
        case OP_NEG:
        case OP_ADD:
        case OP_SUB:
        case OP_MUL:
        case OP_DIV:
        case OP_EQ:
        case OP_NE:
        case OP_LT:
        case OP_LE:
        case OP_GT:
        case OP_GE:
        case OP_XOR:
        case OP_BOOL:
        case OP_INDEX:
        case OP_RET:
        case OP_COUNT_: break;
        }
        /* trim the padding of operand-less lines */
        while (out->len && out->ptr[out->len - 1] == ' ')
            out->len--;
        if (rc || sv_buf_putc(out, '\n'))
            return -ENOMEM;
    }
    return 0;
}
