/* The rule VM: a stack machine over 32-bit instructions (layout in rule_int.h).
 *
 * Dispatch is a switch by default and computed goto under GCC/clang (as Lua's
 * lvm.c does). Nothing here allocates: the stack, the capture slots and the
 * string arena were allocated with the program. The compiler guarantees the
 * stack bound (RULE_STACK_MAX) and that jumps only go forward; the instruction
 * budget is a second, explicit bound. */
#include "rule_int.h"

#include <assert.h>
#include <string.h>

#if defined(__GNUC__) && !defined(RULE_VM_SWITCH)
#define RULE_VM_GOTO 1
#endif

static int do_match(struct rule_program *p, unsigned r, struct rule_val *top)
{
    struct rule_val s;
    int rc = rule_to_string(top, &p->arena, &s);
    if (rc)
        return rc;
    struct rule_regex *re = &p->re[r];
    int m = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)s.u.s, s.len, 0, 0, re->md, NULL)
                    : pcre2_match(re->code, (PCRE2_SPTR)s.u.s, s.len, 0, 0, re->md, NULL);
    if (m == PCRE2_ERROR_NOMATCH || m == PCRE2_ERROR_PARTIAL) {
        *top = (struct rule_val){.type = RULE_INT, .u.i = 0};
        return 0;
    }
    if (m < 0)
        return RULE_E_REGEX;
    uint32_t pairs = pcre2_get_ovector_count(re->md);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
    uint32_t n = m == 0 ? pairs : (uint32_t)m;
    if (n > RULE_MAX_CAPS)
        n = RULE_MAX_CAPS;
    for (uint32_t i = 0; i < n; i++) {
        if (ov[2 * i] == PCRE2_UNSET || ov[2 * i + 1] < ov[2 * i])
            p->caps[i] = (struct rule_val){.type = RULE_STR, .len = 0, .u.s = ""};
        else
            p->caps[i] = (struct rule_val){.type = RULE_STR,
                                           .len = (uint32_t)(ov[2 * i + 1] - ov[2 * i]),
                                           .u.s = s.u.s + ov[2 * i]};
    }
    p->ncaps = n;
    *top = (struct rule_val){.type = RULE_INT, .u.i = 1};
    return 0;
}

int rule_eval(struct rule_program *p, const struct rule_vars *vars, struct rule_val *out)
{
    static const struct rule_val empty = {.type = RULE_STR, .len = 0, .u.s = ""};
    const uint32_t *code = p->code;
    const struct rule_val *k = p->k;
    struct rule_val *sp = p->stack; /* points at the top value; stack[0] is a sentinel */
    uint32_t budget = p->budget;
    uint32_t pc = 0, ins;
    int rc;
    p->arena.used = 0;
    p->ncaps = 0;
    p->ret_k = UINT32_MAX;

#ifdef RULE_VM_GOTO
    static const void *const labels[] = {
#define RULE_OP_LABEL(name) &&L_##name,
        RULE_OPCODES(RULE_OP_LABEL)
#undef RULE_OP_LABEL
    };
#define CASE(name) L_##name:
#define DISPATCH()                                                                                 \
    do {                                                                                           \
        if (__builtin_expect(budget-- == 0, 0))                                                    \
            return RULE_E_BUDGET;                                                                  \
        ins = code[pc++];                                                                          \
        goto *labels[INS_OP(ins)];                                                                 \
    } while (0)
#define NEXT() DISPATCH()
    DISPATCH();
#else
#define CASE(name) case OP_##name:
#define NEXT()     continue
    for (;;) {
        if (budget-- == 0)
            return RULE_E_BUDGET;
        ins = code[pc++];
        switch ((enum rule_op)INS_OP(ins)) {
#endif
    /* The compiler proved the depth bound; debug and fuzz builds check it. */
#define PUSH_ROOM() assert(sp + 1 <= p->stack + RULE_STACK_MAX)
    CASE(CONST)
    {
        PUSH_ROOM();
        *++sp = k[INS_B(ins)];
        NEXT();
    }
    CASE(VAR)
    {
        PUSH_ROOM();
        *++sp = vars->v[INS_B(ins)];
        NEXT();
    }
    CASE(CAP)
    {
        unsigned n = INS_B(ins);
        PUSH_ROOM();
        *++sp = n < p->ncaps ? p->caps[n] : empty;
        NEXT();
    }
    CASE(CLRCAP)
    {
        p->ncaps = 0;
        NEXT();
    }
    CASE(NOT)
    {
        *sp = (struct rule_val){.type = RULE_INT, .u.i = !rule_truthy(sp)};
        NEXT();
    }
    CASE(NEG)
    {
        rule_negate(sp, &p->arena, sp);
        NEXT();
    }
#define BINOP(name, bin)                                                                           \
    CASE(name)                                                                                     \
    {                                                                                              \
        sp--;                                                                                      \
        if ((rc = rule_binary(bin, sp, sp + 1, &p->arena, sp)))                                    \
            return rc;                                                                             \
        NEXT();                                                                                    \
    }
    BINOP(ADD, BIN_ADD)
    BINOP(SUB, BIN_SUB)
    BINOP(MUL, BIN_MUL)
    BINOP(DIV, BIN_DIV)
    BINOP(EQ, BIN_EQ)
    BINOP(NE, BIN_NE)
    BINOP(LT, BIN_LT)
    BINOP(LE, BIN_LE)
    BINOP(GT, BIN_GT)
    BINOP(GE, BIN_GE)
    BINOP(XOR, BIN_XOR)
#undef BINOP
    CASE(BOOL)
    {
        *sp = (struct rule_val){.type = RULE_INT, .u.i = rule_truthy(sp)};
        NEXT();
    }
    CASE(INDEX)
    {
        sp--;
        rule_index(sp, sp + 1, sp);
        NEXT();
    }
    CASE(ARRAY)
    {
        unsigned n = INS_B(ins);
        struct rule_val *items = rule_arena_alloc(&p->arena, (n ? n : 1) * sizeof(*items));
        if (!items)
            return RULE_E_ARENA;
        sp -= n;
        memcpy(items, sp + 1, n * sizeof(*items));
        *++sp = (struct rule_val){.type = RULE_ARR, .len = n, .u.a = items};
        NEXT();
    }
    CASE(CALL)
    {
        unsigned n = INS_B(ins);
        sp -= n;
        if ((rc = rule_fn_get((int)INS_A(ins))->impl(sp + 1, &p->arena, sp + 1)))
            return rc;
        sp++;
        NEXT();
    }
    CASE(MATCH)
    {
        if ((rc = do_match(p, INS_B(ins), sp)))
            return rc;
        NEXT();
    }
    CASE(JMP)
    {
        pc = INS_B(ins);
        NEXT();
    }
    CASE(JMPF)
    {
        if (!rule_truthy(sp--))
            pc = INS_B(ins);
        NEXT();
    }
    CASE(ANDJ)
    {
        if (!rule_truthy(sp)) {
            *sp = (struct rule_val){.type = RULE_INT, .u.i = 0};
            pc = INS_B(ins);
        } else {
            sp--;
        }
        NEXT();
    }
    CASE(ORJ)
    {
        if (rule_truthy(sp)) {
            *sp = (struct rule_val){.type = RULE_INT, .u.i = 1};
            pc = INS_B(ins);
        } else {
            sp--;
        }
        NEXT();
    }
    CASE(GTK)
    {
        const struct rule_val *b = &k[INS_B(ins)];
        if (sp->type == RULE_INT && b->type == RULE_INT)
            sp->u.i = sp->u.i > b->u.i; /* the fast path: retry_num > 1 */
        else if ((rc = rule_binary(BIN_GT, sp, b, &p->arena, sp)))
            return rc;
        NEXT();
    }
    CASE(EQK)
    {
        const struct rule_val *b = &k[INS_B(ins)];
        if (sp->type == RULE_STR && b->type == RULE_STR) {
            /* the fast path: last_error == 'tls' */
            int64_t eq = sp->len == b->len && memcmp(sp->u.s, b->u.s, b->len) == 0;
            *sp = (struct rule_val){.type = RULE_INT, .u.i = eq};
        } else if ((rc = rule_binary(BIN_EQ, sp, b, &p->arena, sp))) {
            return rc;
        }
        NEXT();
    }
    CASE(VGTK)
    {
        const struct rule_val *a = &vars->v[INS_A(ins)], *b = &k[INS_B(ins)];
        PUSH_ROOM();
        ++sp;
        if (a->type == RULE_INT && b->type == RULE_INT)
            *sp = (struct rule_val){.type = RULE_INT, .u.i = a->u.i > b->u.i};
        else if ((rc = rule_binary(BIN_GT, a, b, &p->arena, sp)))
            return rc;
        NEXT();
    }
    CASE(VEQK)
    {
        const struct rule_val *a = &vars->v[INS_A(ins)], *b = &k[INS_B(ins)];
        PUSH_ROOM();
        ++sp;
        if (a->type == RULE_STR && b->type == RULE_STR)
            *sp = (struct rule_val){.type = RULE_INT,
                                    .u.i = a->len == b->len && memcmp(a->u.s, b->u.s, b->len) == 0};
        else if ((rc = rule_binary(BIN_EQ, a, b, &p->arena, sp)))
            return rc;
        NEXT();
    }
    CASE(RET)
    {
        *out = *sp;
        return 0;
    }
    CASE(RETK)
    {
        p->ret_k = INS_B(ins);
        *out = k[p->ret_k];
        return 0;
    }
#ifdef RULE_VM_GOTO
#undef DISPATCH
#else
        case OP_COUNT_: break;
        }
        return RULE_E_ARG; /* not reached: the compiler emits valid opcodes only */
    }
#endif
#undef CASE
#undef NEXT
}

const char *rule_strerror(int code)
{
    switch (code) {
    case 0: return "ok";
    case RULE_E_BUDGET: return "instruction budget exhausted";
    case RULE_E_ARENA: return "string memory for one evaluation exhausted";
    case RULE_E_TYPE: return "result has the wrong type for this setting";
    case RULE_E_REGEX: return "regular expression match failed";
    case RULE_E_ARG: return "invalid function argument";
    default: return "unknown error";
    }
}
