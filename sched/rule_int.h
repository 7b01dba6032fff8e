/* sched: private types of the rule language (parser, compiler, VM).
 *
 * Instructions are fixed-width 32-bit words (as in Lua's lopcodes.h):
 *
 *    31               16 15        8 7         0
 *   +-------------------+-----------+-----------+
 *   |         B         |     A     |    op     |
 *   +-------------------+-----------+-----------+
 *
 * B (16 bits) is a constant index, variable slot, capture number, jump target
 * (absolute instruction index) or item count; A (8 bits) is a function id or a
 * variable slot. The machine is a stack machine; every jump goes forward, so a
 * program terminates within its own length, and programs are never longer than
 * the instruction budget (which stays as a second guard).
 */
#ifndef SALVO_RULE_INT_H
#define SALVO_RULE_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "salvo_sched.h"

/*         name        operands   meaning                                            */
#define RULE_OPCODES(X)                                                                            \
    X(CONST)  /* B     push K[B]                                                     */            \
    X(VAR)    /* B     push vars[B]                                                  */            \
    X(CAP)    /* B     push capture $B of the last matches() in this entry ("")      */            \
    X(CLRCAP) /* -     forget captures (start of an if/then entry)                   */            \
    X(NOT)    /* -     top = !truthy(top)                                            */            \
    X(NEG)    /* -     top = -number(top)                                            */            \
    X(ADD)    /* -     b = pop; top = top + b                                        */            \
    X(SUB)    /* -     b = pop; top = top - b                                        */            \
    X(MUL)    /* -     b = pop; top = top * b                                        */            \
    X(DIV)    /* -     b = pop; top = top / b (always a float; x/0 = 0.0)            */            \
    X(EQ)     /* -     b = pop; top = top == b                                       */            \
    X(NE)     /* -     b = pop; top = top != b                                       */            \
    X(LT)     /* -     b = pop; top = top < b                                        */            \
    X(LE)     /* -     b = pop; top = top <= b                                       */            \
    X(GT)     /* -     b = pop; top = top > b                                        */            \
    X(GE)     /* -     b = pop; top = top >= b                                       */            \
    X(XOR)    /* -     b = pop; top = truthy(top) ^ truthy(b)                        */            \
    X(BOOL)   /* -     top = truthy(top) (1 or 0)                                    */            \
    X(INDEX)  /* -     i = pop; top = top[i] ("" when out of range)                  */            \
    X(ARRAY)  /* B     pop B values, push them as one array                          */            \
    X(CALL)   /* A B   pop B arguments, push function A(args)                        */            \
    X(MATCH)  /* B     top = regex R[B] matches string(top); sets captures           */            \
    X(JMP)    /* B     pc = B                                                        */            \
    X(JMPF)   /* B     if !truthy(pop) pc = B                                        */            \
    X(ANDJ)   /* B     if !truthy(top) { top = 0; pc = B } else pop                  */            \
    X(ORJ)    /* B     if truthy(top) { top = 1; pc = B } else pop                   */            \
    X(GTK)    /* B     top = top > K[B]   (fused compare with a constant)            */            \
    X(EQK)    /* B     top = top == K[B]                                             */            \
    X(VGTK)   /* A B   push vars[A] > K[B]  (the shape of "retry_num > 1")           */            \
    X(VEQK)   /* A B   push vars[A] == K[B] (the shape of "last_error == 'tls'")     */            \
    X(RET)    /* -     return top                                                    */            \
    X(RETK)   /* B     return K[B] (CONST+RET, merged after compiling)               */

enum rule_op {
#define RULE_OP_ENUM(name) OP_##name,
    RULE_OPCODES(RULE_OP_ENUM)
#undef RULE_OP_ENUM
        OP_COUNT_
};

#define INS(op, a, b)    ((uint32_t)(op) | ((uint32_t)(a) << 8) | ((uint32_t)(b) << 16))
#define INS_OP(i)        ((i)&0xffu)
#define INS_A(i)         (((i) >> 8) & 0xffu)
#define INS_B(i)         ((i) >> 16)
#define RULE_MAX_B       0xffffu
#define RULE_STACK_MAX   64   /* deepest value stack a program may need */
#define RULE_MAX_CAPS    10   /* $0..$9 */
#define RULE_ARENA_SIZE  8192 /* bytes for strings/arrays made while evaluating */
#define RULE_BUDGET      4096 /* instructions per evaluation */
#define RULE_MAX_DEPTH   48   /* parser nesting */
#define RULE_MAX_FN_ARGS 3
#define RULE_MAX_CODE    (RULE_BUDGET - 1) /* instructions per program */

/* Binary operators shared by the compiler (constant folding) and the VM. */
enum rule_binop {
    BIN_ADD,
    BIN_SUB,
    BIN_MUL,
    BIN_DIV,
    BIN_EQ,
    BIN_NE,
    BIN_LT,
    BIN_LE,
    BIN_GT,
    BIN_GE,
    BIN_XOR,
    BIN_AND,
    BIN_OR
};

/* A bump allocator over a fixed buffer; reset at the start of each evaluation. */
struct rule_arena {
    char *base;
    size_t used, cap;
};
void *rule_arena_alloc(struct rule_arena *a, size_t n); /* NULL when full */

/* One compiled regex of matches(). */
struct rule_regex {
    const char *pat; /* the pattern text (a constant of the same unit or program) */
    size_t patlen;
    pcre2_code *code;
    pcre2_match_data *md;
    bool jit;
};

struct rule_program {
    uint32_t *code;
    size_t ncode;
    struct rule_val *k; /* constants; strings/arrays point into `kmem` blocks */
    size_t nk;
    void **kmem; /* owned blocks behind constant strings/arrays */
    size_t nkmem;
    struct rule_regex *re;
    size_t nre;
    char **names; /* per-constant source text for disasm (NULL = none) */
    const struct rule_setting *setting;
    const struct rule_program *parent; /* a clone borrows everything but its scratch */
    /* K[i] already converted to the setting's type (NULL: convert at run time) */
    struct rule_result *ktyped;
    int *ktyped_rc;
    uint32_t ret_k; /* constant returned by RETK in the last evaluation, else UINT32_MAX */
    uint32_t stack_need;
    uint32_t budget;
    /* evaluation scratch, preallocated at compile time */
    struct rule_val stack[RULE_STACK_MAX + 1]; /* [0] is never used: sp starts there */
    struct rule_val caps[RULE_MAX_CAPS];
    uint32_t ncaps;
    struct rule_arena arena;
    size_t arena_cap;
};

/* Value semantics (rule_ops.c). Functions returning int give 0 or RULE_E_*. */
bool rule_truthy(const struct rule_val *v);
int rule_binary(int op, const struct rule_val *a, const struct rule_val *b, struct rule_arena *ar,
                struct rule_val *out);
int rule_negate(const struct rule_val *a, struct rule_arena *ar, struct rule_val *out);
int rule_index(const struct rule_val *a, const struct rule_val *i, struct rule_val *out);
int rule_to_string(const struct rule_val *v, struct rule_arena *ar, struct rule_val *out);
bool rule_val_equal(const struct rule_val *a, const struct rule_val *b);
/* Parses "2m", "90s", "100ms", "1h", "5d", "1w" to milliseconds; -1 if not a duration. */
int64_t rule_parse_duration(const char *s, size_t len);
/* Parses a string as a number (integer, then float, else integer 0). */
void rule_str_to_number(const char *s, size_t len, struct rule_val *out);
/* Digest size in 32-bit words of a hash() algorithm name, 0 when unknown. */
int rule_hash_words(const char *algo, size_t len);

/* What the compiler knows about the type of an expression's value at load time.
 * NUM is "an integer or a float"; ANY means it depends on the run-time values. */
enum rule_stype { RULE_ST_ANY, RULE_ST_INT, RULE_ST_FLOAT, RULE_ST_NUM, RULE_ST_STR, RULE_ST_ARR };
/* Static type of variable `var` (its slot always holds that type). */
enum rule_stype rule_var_stype(int var);

/* Functions. */
struct rule_fn {
    const char *name;
    uint8_t arity;
    uint8_t kind; /* FN_PURE, FN_MATCHES, FN_IF_THEN, FN_LOOKUP */
    uint8_t ret;  /* enum rule_stype of every successful result */
    int (*impl)(const struct rule_val *args, struct rule_arena *ar, struct rule_val *out);
};
enum { FN_PURE, FN_MATCHES, FN_IF_THEN, FN_LOOKUP };
const struct rule_fn *rule_fn_find(const char *name, size_t len, int *id);
const struct rule_fn *rule_fn_get(int id);

/* Compiler entry points (rule_compile.c). A "unit" is one program being built from
 * several expressions (the entries of an if/then/else list). */
struct rule_unit;
/* Returns owned unit for expressions that may use `var_mask` and the bare-word
 * constants `consts` (NULL-terminated, may be NULL). */
struct rule_unit *rule_unit_new(uint32_t var_mask, const char *const *consts,
                                const char *setting_key);
/* Compiles an expression, leaving its value on the stack. Returns 0, or -1 with
 * `err`. If `constant` is non-NULL it receives whether the value folded to a
 * constant, and `kval` that constant (borrowed from the unit). */
int rule_unit_expr(struct rule_unit *u, const char *src, size_t len, struct rule_error *err,
                   bool *constant, struct rule_val *kval);
/* Like rule_unit_expr, for a condition: emits jumps taken when it is false, to be
 * patched with rule_unit_patch_false() to the start of the next entry. */
int rule_unit_cond(struct rule_unit *u, const char *src, size_t len, struct rule_error *err,
                   bool *constant, struct rule_val *kval);
void rule_unit_patch_false(struct rule_unit *u, size_t target);
/* Emitters for the list form. */
size_t rule_unit_emit(struct rule_unit *u, int op, int a, int b); /* returns index */
void rule_unit_patch(struct rule_unit *u, size_t at, size_t target);
size_t rule_unit_here(const struct rule_unit *u);
bool rule_unit_uses_regex(const struct rule_unit *u);
/* Static type of the value of the expression compiled last (enum rule_stype). */
enum rule_stype rule_unit_result_type(const struct rule_unit *u);
/* Whether instructions [a, a+alen) and [b, b+blen) compute the same thing: same
 * operations, equal constants (by type and value), equal regex patterns, and
 * jumps that go to the same relative place (or both leave their range). */
bool rule_unit_same_code(const struct rule_unit *u, size_t a, size_t alen, size_t b, size_t blen);
/* Finishes the unit into a program (NULL on memory failure); frees the unit. */
struct rule_program *rule_unit_finish(struct rule_unit *u, const struct rule_setting *s);
void rule_unit_free(struct rule_unit *u); /* NULL-safe */

#endif
