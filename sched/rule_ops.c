/* The semantics of rule values: operators, coercions and functions. One
 * implementation serves both the VM and the compiler's constant folding, so a
 * folded constant always equals what the VM would have computed.
 *
 * Coercions (stalwart-compat.md): truthy = non-zero number, non-empty string or
 * array; a string meeting a number is parsed as a number (integer, then float,
 * else 0); an array used as a number is 0. Nothing here calls malloc: new strings
 * and arrays come from the caller's arena. */
#include "rule_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *rule_arena_alloc(struct rule_arena *a, size_t n)
{
    /* align the address, not the offset: a base inside a struct may be unaligned */
    size_t pad = (size_t)(-(uintptr_t)(a->base + a->used) & 7u);
    size_t at = a->used + pad;
    if (at > a->cap || a->cap - at < n)
        return NULL;
    a->used = at + n;
    return a->base + at;
}

/* memcpy() that accepts n == 0 with NULL pointers (an empty array has no items). */
static void copy(void *dst, const void *src, size_t n)
{
    if (n)
        memcpy(dst, src, n);
}
static struct rule_val mk_int(int64_t i)
{
    return (struct rule_val){.type = RULE_INT, .u.i = i};
}

static struct rule_val mk_float(double f)
{
    return (struct rule_val){.type = RULE_FLOAT, .u.f = f};
}

static struct rule_val mk_str(const char *s, size_t len)
{
    return (struct rule_val){.type = RULE_STR, .len = (uint32_t)len, .u.s = s};
}

static const struct rule_val empty_str = {.type = RULE_STR, .len = 0, .u.s = ""};

bool rule_truthy(const struct rule_val *v)
{
    switch ((enum rule_type)v->type) {
    case RULE_INT: return v->u.i != 0;
    case RULE_FLOAT: return v->u.f != 0.0;
    case RULE_STR:
    case RULE_ARR: return v->len != 0;
    }
    return false;
}

void rule_str_to_number(const char *s, size_t len, struct rule_val *out)
{
    char buf[64];
    *out = mk_int(0);
    if (len == 0 || len >= sizeof(buf))
        return;
    memcpy(buf, s, len);
    buf[len] = 0;
    if (buf[0] == ' ' || buf[0] == '\t' || buf[0] == '\n')
        return; /* strtoll would skip it; "integer, then float" means the whole text */
    char *end;
    errno = 0;
    long long i = strtoll(buf, &end, 10);
    if (*end == 0 && errno == 0) {
        *out = mk_int(i);
        return;
    }
    double d = strtod(buf, &end);
    if (*end == 0 && end != buf)
        *out = mk_float(d);
}

/* Number view of any value. */
static struct rule_val to_num(const struct rule_val *v)
{
    struct rule_val n;
    switch ((enum rule_type)v->type) {
    case RULE_INT:
    case RULE_FLOAT: return *v;
    case RULE_STR: rule_str_to_number(v->u.s, v->len, &n); return n;
    case RULE_ARR: break;
    }
    return mk_int(0);
}

static double as_f(const struct rule_val *n)
{
    return n->type == RULE_INT ? (double)n->u.i : n->u.f;
}

/* Shortest "%.Ng" that reads back as the same double. */
static int fmt_float(double f, char *buf, size_t cap)
{
    int n = 0;
    for (int prec = 1; prec <= 17; prec++) {
        n = snprintf(buf, cap, "%.*g", prec, f);
        if (strtod(buf, NULL) == f || isnan(f))
            break;
    }
    return n;
}

int rule_to_string(const struct rule_val *v, struct rule_arena *ar, struct rule_val *out)
{
    char buf[48];
    int n;
    switch ((enum rule_type)v->type) {
    case RULE_STR: *out = *v; return 0;
    case RULE_INT: n = snprintf(buf, sizeof(buf), "%lld", (long long)v->u.i); break;
    case RULE_FLOAT: n = fmt_float(v->u.f, buf, sizeof(buf)); break;
    case RULE_ARR: {
        /* "[a, b]" as rule_val_format writes it, but into the arena */
        size_t total = 2;
        struct rule_val parts[64];
        if (v->len > SV_ARRAY_LEN(parts))
            return RULE_E_ARENA;
        for (uint32_t i = 0; i < v->len; i++) {
            int rc = rule_to_string(&v->u.a[i], ar, &parts[i]);
            if (rc)
                return rc;
            total += parts[i].len + (i ? 2 : 0);
        }
        char *p = rule_arena_alloc(ar, total);
        if (!p)
            return RULE_E_ARENA;
        size_t o = 0;
        p[o++] = '[';
        for (uint32_t i = 0; i < v->len; i++) {
            if (i) {
                p[o++] = ',';
                p[o++] = ' ';
            }
            copy(p + o, parts[i].u.s, parts[i].len);
            o += parts[i].len;
        }
        p[o++] = ']';
        *out = mk_str(p, o);
        return 0;
    }
    default: return RULE_E_TYPE;
    }
    char *p = rule_arena_alloc(ar, (size_t)n);
    if (!p)
        return RULE_E_ARENA;
    memcpy(p, buf, (size_t)n);
    *out = mk_str(p, (size_t)n);
    return 0;
}

int rule_val_format(const struct rule_val *v, struct sv_buf *out)
{
    char buf[48];
    switch ((enum rule_type)v->type) {
    case RULE_INT: return sv_buf_printf(out, "%lld", (long long)v->u.i);
    case RULE_FLOAT: fmt_float(v->u.f, buf, sizeof(buf)); return sv_buf_puts(out, buf);
    case RULE_STR: return sv_buf_append(out, v->u.s, v->len);
    case RULE_ARR:
        if (sv_buf_putc(out, '['))
            return -ENOMEM;
        for (uint32_t i = 0; i < v->len; i++) {
            if ((i && sv_buf_puts(out, ", ")) || rule_val_format(&v->u.a[i], out))
                return -ENOMEM;
        }
        return sv_buf_putc(out, ']');
    }
    return -EINVAL;
}

bool rule_val_equal(const struct rule_val *a, const struct rule_val *b)
{
    if (a->type == RULE_ARR || b->type == RULE_ARR) {
        if (a->type != b->type || a->len != b->len)
            return false;
        for (uint32_t i = 0; i < a->len; i++) {
            if (!rule_val_equal(&a->u.a[i], &b->u.a[i]))
                return false;
        }
        return true;
    }
    if (a->type == RULE_STR && b->type == RULE_STR)
        return a->len == b->len && memcmp(a->u.s, b->u.s, a->len) == 0;
    struct rule_val x = to_num(a), y = to_num(b);
    if (x.type == RULE_INT && y.type == RULE_INT)
        return x.u.i == y.u.i;
    return as_f(&x) == as_f(&y);
}

/* -1, 0, 1; `*unordered` for NaN. */
static int compare(const struct rule_val *a, const struct rule_val *b, bool *unordered)
{
    *unordered = false;
    if (a->type == RULE_STR && b->type == RULE_STR) {
        size_t n = a->len < b->len ? a->len : b->len;
        int c = memcmp(a->u.s, b->u.s, n);
        if (c)
            return c < 0 ? -1 : 1;
        return a->len < b->len ? -1 : a->len > b->len;
    }
    struct rule_val x = to_num(a), y = to_num(b);
    if (x.type == RULE_INT && y.type == RULE_INT)
        return x.u.i < y.u.i ? -1 : x.u.i > y.u.i;
    double p = as_f(&x), q = as_f(&y);
    if (isnan(p) || isnan(q)) {
        *unordered = true;
        return 0;
    }
    return p < q ? -1 : p > q;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r))
        return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_mul(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
    return r;
}

static int new_array(struct rule_arena *ar, size_t n, struct rule_val **items)
{
    if (n > UINT32_MAX)
        return RULE_E_ARENA;
    *items = rule_arena_alloc(ar, (n ? n : 1) * sizeof(struct rule_val));
    return *items ? 0 : RULE_E_ARENA;
}

static bool array_has(const struct rule_val *arr, const struct rule_val *v)
{
    for (uint32_t i = 0; i < arr->len; i++) {
        if (rule_val_equal(&arr->u.a[i], v))
            return true;
    }
    return false;
}

static int op_add(const struct rule_val *a, const struct rule_val *b, struct rule_arena *ar,
                  struct rule_val *out)
{
    struct rule_val *items;
    int rc;
    if (a->type == RULE_ARR && b->type == RULE_ARR) {
        if ((rc = new_array(ar, (size_t)a->len + b->len, &items)))
            return rc;
        copy(items, a->u.a, a->len * sizeof(*items));
        copy(items + a->len, b->u.a, b->len * sizeof(*items));
        *out = (struct rule_val){.type = RULE_ARR, .len = a->len + b->len, .u.a = items};
        return 0;
    }
    if (a->type == RULE_ARR || b->type == RULE_ARR) {
        /* array + value and value + array both append the value */
        const struct rule_val *arr = a->type == RULE_ARR ? a : b;
        const struct rule_val *v = a->type == RULE_ARR ? b : a;
        if ((rc = new_array(ar, (size_t)arr->len + 1, &items)))
            return rc;
        copy(items, arr->u.a, arr->len * sizeof(*items));
        items[arr->len] = *v;
        *out = (struct rule_val){.type = RULE_ARR, .len = arr->len + 1, .u.a = items};
        return 0;
    }
    if (a->type == RULE_STR || b->type == RULE_STR) {
        struct rule_val x, y;
        if ((rc = rule_to_string(a, ar, &x)) || (rc = rule_to_string(b, ar, &y)))
            return rc;
        char *p = rule_arena_alloc(ar, (size_t)x.len + y.len);
        if (!p)
            return RULE_E_ARENA;
        copy(p, x.u.s, x.len);
        copy(p + x.len, y.u.s, y.len);
        *out = mk_str(p, (size_t)x.len + y.len);
        return 0;
    }
    if (a->type == RULE_INT && b->type == RULE_INT)
        *out = mk_int(sat_add(a->u.i, b->u.i));
    else
        *out = mk_float(as_f(a) + as_f(b));
    return 0;
}

static int op_sub(const struct rule_val *a, const struct rule_val *b, struct rule_arena *ar,
                  struct rule_val *out)
{
    if (a->type == RULE_ARR) {
        struct rule_val *items;
        int rc = new_array(ar, a->len, &items);
        if (rc)
            return rc;
        uint32_t n = 0;
        for (uint32_t i = 0; i < a->len; i++) {
            bool drop =
                b->type == RULE_ARR ? array_has(b, &a->u.a[i]) : rule_val_equal(&a->u.a[i], b);
            if (!drop)
                items[n++] = a->u.a[i];
        }
        *out = (struct rule_val){.type = RULE_ARR, .len = n, .u.a = items};
        return 0;
    }
    struct rule_val x = to_num(a), y = to_num(b);
    if (x.type == RULE_INT && y.type == RULE_INT)
        *out = mk_int(sat_sub(x.u.i, y.u.i));
    else
        *out = mk_float(as_f(&x) - as_f(&y));
    return 0;
}

int rule_binary(int op, const struct rule_val *a, const struct rule_val *b, struct rule_arena *ar,
                struct rule_val *out)
{
    struct rule_val x, y;
    bool un;
    int c;
    switch ((enum rule_binop)op) {
    case BIN_ADD: return op_add(a, b, ar, out);
    case BIN_SUB: return op_sub(a, b, ar, out);
    case BIN_MUL:
        x = to_num(a);
        y = to_num(b);
        if (x.type == RULE_INT && y.type == RULE_INT)
            *out = mk_int(sat_mul(x.u.i, y.u.i));
        else
            *out = mk_float(as_f(&x) * as_f(&y));
        return 0;
    case BIN_DIV:
        x = to_num(a);
        y = to_num(b);
        *out = mk_float(as_f(&y) != 0.0 ? as_f(&x) / as_f(&y) : 0.0);
        return 0;
    case BIN_EQ: *out = mk_int(rule_val_equal(a, b)); return 0;
    case BIN_NE: *out = mk_int(!rule_val_equal(a, b)); return 0;
    case BIN_LT:
        c = compare(a, b, &un);
        *out = mk_int(!un && c < 0);
        return 0;
    case BIN_LE:
        c = compare(a, b, &un);
        *out = mk_int(!un && c <= 0);
        return 0;
    case BIN_GT:
        c = compare(a, b, &un);
        *out = mk_int(!un && c > 0);
        return 0;
    case BIN_GE:
        c = compare(a, b, &un);
        *out = mk_int(!un && c >= 0);
        return 0;
    case BIN_XOR: *out = mk_int(rule_truthy(a) != rule_truthy(b)); return 0;
    case BIN_AND: *out = mk_int(rule_truthy(a) && rule_truthy(b)); return 0;
    case BIN_OR: *out = mk_int(rule_truthy(a) || rule_truthy(b)); return 0;
    }
    return RULE_E_ARG;
}

int rule_negate(const struct rule_val *a, struct rule_arena *ar, struct rule_val *out)
{
    (void)ar;
    struct rule_val x = to_num(a);
    if (x.type == RULE_INT)
        *out = mk_int(x.u.i == INT64_MIN ? INT64_MAX : -x.u.i);
    else
        *out = mk_float(-x.u.f);
    return 0;
}

/* Byte offset of UTF-8 character `n` in s (len if past the end). */
static size_t utf8_skip(const char *s, size_t len, int64_t n)
{
    size_t o = 0;
    while (o < len && n > 0) {
        o++;
        while (o < len && ((unsigned char)s[o] & 0xc0) == 0x80)
            o++;
        n--;
    }
    return o;
}

int rule_index(const struct rule_val *a, const struct rule_val *i, struct rule_val *out)
{
    struct rule_val n = to_num(i);
    struct rule_val r = empty_str; /* `out` may alias `a` */
    if (n.type == RULE_FLOAT && !(n.u.f >= 0 && n.u.f < 4e9)) {
        *out = r;
        return 0;
    }
    int64_t idx = n.type == RULE_INT ? n.u.i : (int64_t)n.u.f;
    if (idx >= 0 && a->type == RULE_ARR) {
        if ((uint64_t)idx < a->len)
            r = a->u.a[idx];
    } else if (idx >= 0 && a->type == RULE_STR) {
        size_t from = utf8_skip(a->u.s, a->len, idx);
        size_t to = utf8_skip(a->u.s + from, a->len - from, 1);
        r = mk_str(a->u.s + from, to);
    }
    *out = r;
    return 0;
}

int64_t rule_parse_duration(const char *s, size_t len)
{
    size_t i = 0;
    int64_t n = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (n > INT64_MAX / 10 - 10)
            return -1;
        n = n * 10 + (s[i++] - '0');
    }
    if (i == 0)
        return -1;
    const char *u = s + i;
    size_t ul = len - i;
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
                 {"h", 3600000}, {"d", 86400000}, {"w", 604800000}};
    for (size_t k = 0; k < SV_ARRAY_LEN(units); k++) {
        if (strlen(units[k].unit) == ul && memcmp(units[k].unit, u, ul) == 0)
            return n > INT64_MAX / units[k].ms ? -1 : n * units[k].ms;
    }
    return -1;
}

/* --- functions -------------------------------------------------------------- */

#define FN(name)                                                                                   \
    static int fn_##name(const struct rule_val *args, struct rule_arena *ar, struct rule_val *out)

/* String view of argument i (converted into the arena when not a string). */
#define STR_ARG(var, i)                                                                            \
    struct rule_val var;                                                                           \
    do {                                                                                           \
        int rc_ = rule_to_string(&args[i], ar, &var);                                              \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static int trim_impl(const struct rule_val *args, struct rule_arena *ar, struct rule_val *out,
                     bool start, bool end)
{
    STR_ARG(s, 0);
    size_t a = 0, b = s.len;
    while (start && a < b && is_space(s.u.s[a]))
        a++;
    while (end && b > a && is_space(s.u.s[b - 1]))
        b--;
    *out = mk_str(s.u.s + a, b - a);
    return 0;
}

FN(trim)
{
    return trim_impl(args, ar, out, true, true);
}

FN(trim_start)
{
    return trim_impl(args, ar, out, true, false);
}

FN(trim_end)
{
    return trim_impl(args, ar, out, false, true);
}

FN(len)
{
    if (args[0].type == RULE_ARR) {
        *out = mk_int(args[0].len);
        return 0;
    }
    STR_ARG(s, 0);
    *out = mk_int(s.len);
    return 0;
}

static int map_case(const struct rule_val *args, struct rule_arena *ar, struct rule_val *out,
                    bool up)
{
    STR_ARG(s, 0);
    char *p = rule_arena_alloc(ar, s.len);
    if (!p && s.len)
        return RULE_E_ARENA;
    for (uint32_t i = 0; i < s.len; i++) {
        char c = s.u.s[i];
        if (up && c >= 'a' && c <= 'z')
            c = (char)(c - 32);
        else if (!up)
            c = lower(c);
        p[i] = c;
    }
    *out = mk_str(s.len ? p : "", s.len);
    return 0;
}

FN(to_lowercase)
{
    return map_case(args, ar, out, false);
}

FN(to_uppercase)
{
    return map_case(args, ar, out, true);
}

static int count_class(const struct rule_val *args, struct rule_arena *ar, int64_t *n, int cls)
{
    STR_ARG(s, 0);
    *n = 0;
    for (uint32_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.u.s[i];
        switch (cls) {
        case 'U': *n += c >= 'A' && c <= 'Z'; break;
        case 'L': *n += c >= 'a' && c <= 'z'; break;
        case 'D': *n += c >= '0' && c <= '9'; break;
        case 'S': *n += is_space((char)c); break;
        case 'C': *n += (c & 0xc0) != 0x80; break;
        default: break;
        }
    }
    return 0;
}

#define COUNT_FN(name, cls)                                                                        \
    FN(name)                                                                                       \
    {                                                                                              \
        int64_t n = 0;                                                                             \
        int rc = count_class(args, ar, &n, cls);                                                   \
        *out = mk_int(n);                                                                          \
        return rc;                                                                                 \
    }
COUNT_FN(count_spaces, 'S')
COUNT_FN(count_uppercase, 'U')
COUNT_FN(count_lowercase, 'L')
COUNT_FN(count_chars, 'C')

FN(has_digits)
{
    int64_t n = 0;
    int rc = count_class(args, ar, &n, 'D');
    *out = mk_int(n > 0);
    return rc;
}

/* Every letter is upper (lower) case; text without letters qualifies. */
FN(is_uppercase)
{
    int64_t n = 0;
    int rc = count_class(args, ar, &n, 'L');
    *out = mk_int(n == 0);
    return rc;
}

FN(is_lowercase)
{
    int64_t n = 0;
    int rc = count_class(args, ar, &n, 'U');
    *out = mk_int(n == 0);
    return rc;
}

static bool mem_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (lower(a[i]) != lower(b[i]))
            return false;
    }
    return true;
}

static bool find(const struct rule_val *h, const struct rule_val *n, bool icase)
{
    if (n->len > h->len)
        return false;
    for (size_t i = 0; i + n->len <= h->len; i++) {
        if (icase ? mem_ieq(h->u.s + i, n->u.s, n->len) : memcmp(h->u.s + i, n->u.s, n->len) == 0)
            return true;
    }
    return false;
}

static int contains_impl(const struct rule_val *args, struct rule_arena *ar, struct rule_val *out,
                         bool icase)
{
    STR_ARG(needle, 1);
    if (args[0].type == RULE_ARR) {
        /* membership */
        for (uint32_t i = 0; i < args[0].len; i++) {
            const struct rule_val *e = &args[0].u.a[i];
            bool hit;
            if (icase && e->type == RULE_STR)
                hit = e->len == needle.len && mem_ieq(e->u.s, needle.u.s, needle.len);
            else
                hit = rule_val_equal(e, &args[1]);
            if (hit) {
                *out = mk_int(1);
                return 0;
            }
        }
        *out = mk_int(0);
        return 0;
    }
    STR_ARG(hay, 0);
    *out = mk_int(find(&hay, &needle, icase));
    return 0;
}

FN(contains)
{
    return contains_impl(args, ar, out, false);
}

FN(contains_ignore_case)
{
    return contains_impl(args, ar, out, true);
}

FN(eq_ignore_case)
{
    STR_ARG(a, 0);
    STR_ARG(b, 1);
    *out = mk_int(a.len == b.len && mem_ieq(a.u.s, b.u.s, a.len));
    return 0;
}

FN(starts_with)
{
    STR_ARG(a, 0);
    STR_ARG(b, 1);
    *out = mk_int(b.len <= a.len && memcmp(a.u.s, b.u.s, b.len) == 0);
    return 0;
}

FN(ends_with)
{
    STR_ARG(a, 0);
    STR_ARG(b, 1);
    *out = mk_int(b.len <= a.len && memcmp(a.u.s + a.len - b.len, b.u.s, b.len) == 0);
    return 0;
}

/* strip_prefix/strip_suffix give "" when the text does not have the affix. */
FN(strip_prefix)
{
    STR_ARG(a, 0);
    STR_ARG(b, 1);
    if (b.len <= a.len && memcmp(a.u.s, b.u.s, b.len) == 0)
        *out = mk_str(a.u.s + b.len, a.len - b.len);
    else
        *out = empty_str;
    return 0;
}

FN(strip_suffix)
{
    STR_ARG(a, 0);
    STR_ARG(b, 1);
    if (b.len <= a.len && memcmp(a.u.s + a.len - b.len, b.u.s, b.len) == 0)
        *out = mk_str(a.u.s, a.len - b.len);
    else
        *out = empty_str;
    return 0;
}

FN(substring)
{
    STR_ARG(s, 0);
    struct rule_val from = to_num(&args[1]), n = to_num(&args[2]);
    int64_t f = from.type == RULE_INT ? from.u.i : (int64_t)from.u.f;
    int64_t l = n.type == RULE_INT ? n.u.i : (int64_t)n.u.f;
    if (f < 0)
        f = 0;
    if (l < 0)
        l = 0;
    size_t a = utf8_skip(s.u.s, s.len, f);
    size_t b = utf8_skip(s.u.s + a, s.len - a, l);
    *out = mk_str(s.u.s + a, b);
    return 0;
}

/* Splits s at every sep (at most `max` pieces; 0 = no limit); `rev` lists the
 * pieces from the end. An empty separator leaves the text whole. */
static int split_impl(const struct rule_val *s, const struct rule_val *sep, size_t max, bool rev,
                      struct rule_arena *ar, struct rule_val *out)
{
    size_t n = 1;
    if (sep->len) {
        for (size_t i = 0; i + sep->len <= s->len;) {
            if (memcmp(s->u.s + i, sep->u.s, sep->len) == 0) {
                n++;
                i += sep->len;
            } else {
                i++;
            }
        }
    }
    if (max && n > max)
        n = max;
    struct rule_val *items;
    int rc = new_array(ar, n, &items);
    if (rc)
        return rc;
    if (!rev) {
        size_t start = 0, k = 0;
        for (size_t i = 0; sep->len && k + 1 < n && i + sep->len <= s->len;) {
            if (memcmp(s->u.s + i, sep->u.s, sep->len) == 0) {
                items[k++] = mk_str(s->u.s + start, i - start);
                i += sep->len;
                start = i;
            } else {
                i++;
            }
        }
        items[k] = mk_str(s->u.s + start, s->len - start);
    } else {
        size_t end = s->len, k = 0;
        for (size_t i = s->len; sep->len && k + 1 < n && i >= sep->len;) {
            if (memcmp(s->u.s + i - sep->len, sep->u.s, sep->len) == 0) {
                items[k++] = mk_str(s->u.s + i, end - i);
                i -= sep->len;
                end = i;
            } else {
                i--;
            }
        }
        items[k] = mk_str(s->u.s, end);
    }
    *out = (struct rule_val){.type = RULE_ARR, .len = (uint32_t)n, .u.a = items};
    return 0;
}

FN(split)
{
    STR_ARG(s, 0);
    STR_ARG(sep, 1);
    return split_impl(&s, &sep, 0, false, ar, out);
}

FN(rsplit)
{
    STR_ARG(s, 0);
    STR_ARG(sep, 1);
    return split_impl(&s, &sep, 0, true, ar, out);
}

FN(split_n)
{
    STR_ARG(s, 0);
    STR_ARG(sep, 1);
    struct rule_val n = to_num(&args[2]);
    int64_t max = n.type == RULE_INT ? n.u.i : (int64_t)n.u.f;
    if (max <= 0) {
        *out = (struct rule_val){.type = RULE_ARR, .len = 0, .u.a = NULL};
        return 0;
    }
    return split_impl(&s, &sep, (size_t)max, false, ar, out);
}

/* [before, after] at the first (last) separator; [] when there is none. */
static int split_once_impl(const struct rule_val *args, struct rule_arena *ar, struct rule_val *out,
                           bool rev)
{
    STR_ARG(s, 0);
    STR_ARG(sep, 1);
    *out = (struct rule_val){.type = RULE_ARR, .len = 0, .u.a = NULL};
    if (sep.len > s.len)
        return 0;
    for (size_t k = 0; k + sep.len <= s.len; k++) {
        size_t i = rev ? s.len - sep.len - k : k;
        if (memcmp(s.u.s + i, sep.u.s, sep.len) == 0) {
            struct rule_val *items;
            int rc = new_array(ar, 2, &items);
            if (rc)
                return rc;
            items[0] = mk_str(s.u.s, i);
            items[1] = mk_str(s.u.s + i + sep.len, s.len - i - sep.len);
            *out = (struct rule_val){.type = RULE_ARR, .len = 2, .u.a = items};
            return 0;
        }
    }
    return 0;
}

FN(split_once)
{
    return split_once_impl(args, ar, out, false);
}

FN(rsplit_once)
{
    return split_once_impl(args, ar, out, true);
}

FN(lines)
{
    STR_ARG(s, 0);
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++)
        n += s.u.s[i] == '\n';
    if (s.len && s.u.s[s.len - 1] != '\n')
        n++;
    struct rule_val *items;
    int rc = new_array(ar, n, &items);
    if (rc)
        return rc;
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= s.len && k < n; i++) {
        if (i == s.len || s.u.s[i] == '\n') {
            size_t end = i;
            if (end > start && s.u.s[end - 1] == '\r')
                end--;
            items[k++] = mk_str(s.u.s + start, end - start);
            start = i + 1;
        }
    }
    *out = (struct rule_val){.type = RULE_ARR, .len = (uint32_t)n, .u.a = items};
    return 0;
}

FN(split_words)
{
    STR_ARG(s, 0);
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++)
        n += !is_space(s.u.s[i]) && (i == 0 || is_space(s.u.s[i - 1]));
    struct rule_val *items;
    int rc = new_array(ar, n, &items);
    if (rc)
        return rc;
    size_t k = 0;
    for (size_t i = 0; i < s.len;) {
        while (i < s.len && is_space(s.u.s[i]))
            i++;
        size_t st = i;
        while (i < s.len && !is_space(s.u.s[i]))
            i++;
        if (i > st)
            items[k++] = mk_str(s.u.s + st, i - st);
    }
    *out = (struct rule_val){.type = RULE_ARR, .len = (uint32_t)n, .u.a = items};
    return 0;
}

FN(count)
{
    (void)ar;
    if (args[0].type == RULE_ARR)
        *out = mk_int(args[0].len);
    else
        *out = mk_int(!(args[0].type == RULE_STR && args[0].len == 0));
    return 0;
}

/* Order for sort(): numbers before strings before arrays; numbers numerically,
 * strings bytewise. */
static int sort_cmp(const struct rule_val *a, const struct rule_val *b)
{
    int ra = a->type == RULE_STR ? 1 : a->type == RULE_ARR ? 2 : 0;
    int rb = b->type == RULE_STR ? 1 : b->type == RULE_ARR ? 2 : 0;
    if (ra != rb)
        return ra < rb ? -1 : 1;
    if (ra == 2)
        return a->len < b->len ? -1 : a->len > b->len;
    bool un;
    return compare(a, b, &un);
}

FN(sort)
{
    if (args[0].type != RULE_ARR) {
        *out = args[0];
        return 0;
    }
    bool desc = rule_truthy(&args[1]);
    uint32_t n = args[0].len;
    struct rule_val *items;
    int rc = new_array(ar, n, &items);
    if (rc)
        return rc;
    copy(items, args[0].u.a, n * sizeof(*items));
    /* insertion sort: stable, no allocation, arrays here are small */
    for (uint32_t i = 1; i < n; i++) {
        struct rule_val v = items[i];
        uint32_t j = i;
        while (j > 0) {
            int c = sort_cmp(&items[j - 1], &v);
            if (desc ? c >= 0 : c <= 0)
                break;
            items[j] = items[j - 1];
            j--;
        }
        items[j] = v;
    }
    *out = (struct rule_val){.type = RULE_ARR, .len = n, .u.a = items};
    return 0;
}

FN(dedup)
{
    if (args[0].type != RULE_ARR) {
        *out = args[0];
        return 0;
    }
    struct rule_val *items;
    int rc = new_array(ar, args[0].len, &items);
    if (rc)
        return rc;
    uint32_t n = 0;
    for (uint32_t i = 0; i < args[0].len; i++) {
        struct rule_val sofar = {.type = RULE_ARR, .len = n, .u.a = items};
        if (!array_has(&sofar, &args[0].u.a[i]))
            items[n++] = args[0].u.a[i];
    }
    *out = (struct rule_val){.type = RULE_ARR, .len = n, .u.a = items};
    return 0;
}

static bool is_empty_val(const struct rule_val *v)
{
    return (v->type == RULE_STR || v->type == RULE_ARR) && v->len == 0;
}

/* Drops empty strings and empty arrays. */
FN(winnow)
{
    if (args[0].type != RULE_ARR) {
        *out = args[0];
        return 0;
    }
    struct rule_val *items;
    int rc = new_array(ar, args[0].len, &items);
    if (rc)
        return rc;
    uint32_t n = 0;
    for (uint32_t i = 0; i < args[0].len; i++) {
        if (!is_empty_val(&args[0].u.a[i]))
            items[n++] = args[0].u.a[i];
    }
    *out = (struct rule_val){.type = RULE_ARR, .len = n, .u.a = items};
    return 0;
}

FN(is_intersect)
{
    (void)ar;
    const struct rule_val *a = &args[0], *b = &args[1];
    struct rule_val one_a = {.type = RULE_ARR, .len = 1, .u.a = a};
    struct rule_val one_b = {.type = RULE_ARR, .len = 1, .u.a = b};
    if (a->type != RULE_ARR)
        a = &one_a;
    if (b->type != RULE_ARR)
        b = &one_b;
    for (uint32_t i = 0; i < a->len; i++) {
        if (array_has(b, &a->u.a[i])) {
            *out = mk_int(1);
            return 0;
        }
    }
    *out = mk_int(0);
    return 0;
}

FN(is_empty)
{
    (void)ar;
    *out = mk_int(is_empty_val(&args[0]));
    return 0;
}

FN(is_number)
{
    (void)ar;
    *out = mk_int(args[0].type == RULE_INT || args[0].type == RULE_FLOAT);
    return 0;
}

/* local@domain: one '@' split at the last one, both sides non-empty, no spaces,
 * and a dot inside the domain. */
static bool email_split(const struct rule_val *s, size_t *at)
{
    size_t pos = SIZE_MAX;
    for (size_t i = 0; i < s->len; i++) {
        if (is_space(s->u.s[i]) || (unsigned char)s->u.s[i] < 0x20)
            return false;
        if (s->u.s[i] == '@')
            pos = i;
    }
    if (pos == SIZE_MAX || pos == 0 || pos + 1 >= s->len)
        return false;
    const char *d = s->u.s + pos + 1;
    size_t dl = s->len - pos - 1;
    if (!memchr(d, '.', dl) || d[0] == '.' || d[dl - 1] == '.')
        return false;
    *at = pos;
    return true;
}

FN(is_email)
{
    STR_ARG(s, 0);
    size_t at;
    *out = mk_int(email_split(&s, &at));
    return 0;
}

FN(email_part)
{
    STR_ARG(s, 0);
    STR_ARG(part, 1);
    *out = empty_str;
    const char *at = NULL;
    for (size_t i = 0; i < s.len; i++) {
        if (s.u.s[i] == '@')
            at = s.u.s + i;
    }
    if (!at)
        return 0;
    if (part.len == 5 && memcmp(part.u.s, "local", 5) == 0)
        *out = mk_str(s.u.s, (size_t)(at - s.u.s));
    else if (part.len == 6 && memcmp(part.u.s, "domain", 6) == 0)
        *out = mk_str(at + 1, s.len - (size_t)(at - s.u.s) - 1);
    else
        return RULE_E_ARG;
    return 0;
}

/* 4 or 6 for an IP address literal, else 0. */
static int ip_parse(const struct rule_val *s, unsigned char bin[16])
{
    char buf[64];
    if (s->type != RULE_STR || s->len == 0 || s->len >= sizeof(buf))
        return 0;
    memcpy(buf, s->u.s, s->len);
    buf[s->len] = 0;
    if (inet_pton(AF_INET, buf, bin) == 1)
        return 4;
    if (inet_pton(AF_INET6, buf, bin) == 1)
        return 6;
    return 0;
}

FN(is_ip_addr)
{
    (void)ar;
    unsigned char b[16];
    *out = mk_int(ip_parse(&args[0], b) != 0);
    return 0;
}

FN(is_ipv4_addr)
{
    (void)ar;
    unsigned char b[16];
    *out = mk_int(ip_parse(&args[0], b) == 4);
    return 0;
}

FN(is_ipv6_addr)
{
    (void)ar;
    unsigned char b[16];
    *out = mk_int(ip_parse(&args[0], b) == 6);
    return 0;
}

/* "192.0.2.1" -> "1.2.0.192"; IPv6 -> 32 nibbles, least significant first. */
FN(ip_reverse_name)
{
    unsigned char b[16];
    int fam = ip_parse(&args[0], b);
    char buf[72];
    int n = 0;
    if (fam == 4) {
        n = snprintf(buf, sizeof(buf), "%u.%u.%u.%u", b[3], b[2], b[1], b[0]);
    } else if (fam == 6) {
        static const char hex[] = "0123456789abcdef";
        for (int i = 15; i >= 0; i--) {
            buf[n++] = hex[b[i] & 15];
            buf[n++] = '.';
            buf[n++] = hex[b[i] >> 4];
            buf[n++] = i ? '.' : 0;
        }
        n--;
    } else {
        *out = empty_str;
        return 0;
    }
    char *p = rule_arena_alloc(ar, (size_t)n);
    if (!p)
        return RULE_E_ARENA;
    memcpy(p, buf, (size_t)n);
    *out = mk_str(p, (size_t)n);
    return 0;
}

/* --- hash(value, 'md5' | 'sha1' | 'sha256' | 'sha512') ---------------------------------- */

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static uint32_t ror(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

/* Feeds message + Merkle-Damgard padding to `block` in 64-byte blocks; `be`
 * chooses the length's byte order (MD5 little-endian, SHA big-endian). */
static void md_pad(const unsigned char *m, size_t len, bool be,
                   void (*block)(uint32_t *, const unsigned char *), uint32_t *st)
{
    size_t i = 0;
    for (; i + 64 <= len; i += 64)
        block(st, m + i);
    unsigned char tail[128] = {0};
    size_t r = len - i;
    copy(tail, m + i, r);
    tail[r] = 0x80;
    size_t tl = r + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int k = 0; k < 8; k++)
        tail[be ? tl - 1 - k : tl - 8 + k] = (unsigned char)(bits >> (8 * k));
    block(st, tail);
    if (tl == 128)
        block(st, tail + 64);
}

static void md5_block(uint32_t *st, const unsigned char *p)
{
    static const uint32_t K[64] = {
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391};
    static const int S[16] = {7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21};
    uint32_t w[16];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) % 16;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) % 16;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) % 16;
        }
        uint32_t t = d;
        d = c;
        c = b;
        b = b + rol(a + f + K[i] + w[g], S[(i / 16) * 4 + i % 4]);
        a = t;
    }
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void sha1_block(uint32_t *st, const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = be32(p + 4 * i);
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
    st[4] += e;
}

static void sha256_block(uint32_t *st, const unsigned char *p)
{
    static const uint32_t K[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = be32(p + 4 * i);
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 =
            h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
    st[4] += e;
    st[5] += f;
    st[6] += g;
    st[7] += h;
}

/* SHA-512 (FIPS 180-4, section 6.4): 1024-bit blocks, 64-bit words, 80 rounds,
 * a 128-bit big-endian length in the padding. Kept here because sched/ must not
 * depend on the TLS library. */
static uint64_t ror64(uint64_t x, int n)
{
    return (x >> n) | (x << (64 - n));
}

static uint64_t be64(const unsigned char *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void sha512_block(uint64_t *st, const unsigned char *p)
{
    static const uint64_t K[80] = {
        0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
        0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
        0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
        0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
        0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
        0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
        0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
        0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
        0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
        0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
        0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
        0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
        0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
        0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
        0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
        0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
        0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
        0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
        0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
        0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817};
    uint64_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = be64(p + 8 * i);
    for (int i = 16; i < 80; i++) {
        uint64_t s0 = ror64(w[i - 15], 1) ^ ror64(w[i - 15], 8) ^ (w[i - 15] >> 7);
        uint64_t s1 = ror64(w[i - 2], 19) ^ ror64(w[i - 2], 61) ^ (w[i - 2] >> 6);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint64_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
    for (int i = 0; i < 80; i++) {
        uint64_t t1 =
            h + (ror64(e, 14) ^ ror64(e, 18) ^ ror64(e, 41)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint64_t t2 = (ror64(a, 28) ^ ror64(a, 34) ^ ror64(a, 39)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
    st[4] += e;
    st[5] += f;
    st[6] += g;
    st[7] += h;
}

/* Hashes m into st[8] (as 16 big-endian 32-bit words, the layout hash() prints). */
static void sha512(const unsigned char *m, size_t len, uint32_t *out)
{
    uint64_t st[8] = {0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b,
                      0xa54ff53a5f1d36f1, 0x510e527fade682d1, 0x9b05688c2b3e6c1f,
                      0x1f83d9abfb41bd6b, 0x5be0cd19137e2179};
    size_t i = 0;
    for (; i + 128 <= len; i += 128)
        sha512_block(st, m + i);
    unsigned char tail[256] = {0};
    size_t r = len - i;
    copy(tail, m + i, r);
    tail[r] = 0x80;
    size_t tl = r + 17 <= 128 ? 128 : 256;
    uint64_t bits = (uint64_t)len * 8; /* the high 64 bits of the length stay 0 */
    for (int k = 0; k < 8; k++)
        tail[tl - 1 - k] = (unsigned char)(bits >> (8 * k));
    sha512_block(st, tail);
    if (tl == 256)
        sha512_block(st, tail + 128);
    for (int k = 0; k < 8; k++) {
        out[2 * k] = (uint32_t)(st[k] >> 32);
        out[2 * k + 1] = (uint32_t)st[k];
    }
}

/* Returns the digest words of `algo` ("md5", "sha1", "sha256", "sha512"), or 0 if unknown. */
int rule_hash_words(const char *algo, size_t len)
{
    if (len == 3 && memcmp(algo, "md5", 3) == 0)
        return 4;
    if (len == 4 && memcmp(algo, "sha1", 4) == 0)
        return 5;
    if (len == 6 && memcmp(algo, "sha256", 6) == 0)
        return 8;
    if (len == 6 && memcmp(algo, "sha512", 6) == 0)
        return 16;
    return 0;
}

FN(hash)
{
    STR_ARG(s, 0);
    STR_ARG(algo, 1);
    int words = rule_hash_words(algo.u.s, algo.len);
    uint32_t st[16];
    if (words == 4) {
        static const uint32_t iv[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
        memcpy(st, iv, sizeof(iv));
        md_pad((const unsigned char *)s.u.s, s.len, false, md5_block, st);
    } else if (words == 5) {
        static const uint32_t iv[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
        memcpy(st, iv, sizeof(iv));
        md_pad((const unsigned char *)s.u.s, s.len, true, sha1_block, st);
    } else if (words == 8) {
        static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
        memcpy(st, iv, sizeof(iv));
        md_pad((const unsigned char *)s.u.s, s.len, true, sha256_block, st);
    } else if (words == 16) {
        sha512((const unsigned char *)s.u.s, s.len, st);
    } else {
        return RULE_E_ARG;
    }
    char *p = rule_arena_alloc(ar, (size_t)words * 8);
    if (!p)
        return RULE_E_ARENA;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < words * 4; i++) {
        uint32_t wv = st[i / 4];
        unsigned byte =
            words == 4 ? (wv >> (8 * (i % 4))) & 0xff : (wv >> (24 - 8 * (i % 4))) & 0xff;
        p[2 * i] = hex[byte >> 4];
        p[2 * i + 1] = hex[byte & 15];
    }
    *out = mk_str(p, (size_t)words * 8);
    return 0;
}

/* --- the function table ------------------------------------------------------ */

static const struct rule_fn fns[] = {
/* sort, dedup and winnow give their argument back unchanged when it is no array */
#define PURE(name, n, ret)                                                                         \
    {                                                                                              \
#name, n, FN_PURE, RULE_ST_##ret, fn_##name                                                \
    }
    PURE(trim, 1, STR),
    PURE(trim_start, 1, STR),
    PURE(trim_end, 1, STR),
    PURE(len, 1, INT),
    PURE(to_lowercase, 1, STR),
    PURE(to_uppercase, 1, STR),
    PURE(is_uppercase, 1, INT),
    PURE(is_lowercase, 1, INT),
    PURE(has_digits, 1, INT),
    PURE(count_spaces, 1, INT),
    PURE(count_uppercase, 1, INT),
    PURE(count_lowercase, 1, INT),
    PURE(count_chars, 1, INT),
    PURE(contains, 2, INT),
    PURE(contains_ignore_case, 2, INT),
    PURE(eq_ignore_case, 2, INT),
    PURE(starts_with, 2, INT),
    PURE(ends_with, 2, INT),
    PURE(lines, 1, ARR),
    PURE(substring, 3, STR),
    PURE(strip_prefix, 2, STR),
    PURE(strip_suffix, 2, STR),
    PURE(split, 2, ARR),
    PURE(rsplit, 2, ARR),
    PURE(split_once, 2, ARR),
    PURE(rsplit_once, 2, ARR),
    PURE(split_n, 3, ARR),
    PURE(split_words, 1, ARR),
    PURE(count, 1, INT),
    PURE(sort, 2, ANY),
    PURE(dedup, 1, ANY),
    PURE(winnow, 1, ANY),
    PURE(is_intersect, 2, INT),
    PURE(is_email, 1, INT),
    PURE(email_part, 2, STR),
    PURE(is_empty, 1, INT),
    PURE(is_number, 1, INT),
    PURE(is_ip_addr, 1, INT),
    PURE(is_ipv4_addr, 1, INT),
    PURE(is_ipv6_addr, 1, INT),
    PURE(ip_reverse_name, 1, STR),
    PURE(hash, 2, STR),
#undef PURE
    {"matches", 2, FN_MATCHES, RULE_ST_INT, NULL},
    {"if_then", 3, FN_IF_THEN, RULE_ST_ANY, NULL},
    {"is_local_domain", 2, FN_LOOKUP, RULE_ST_ANY, NULL},
    {"is_local_address", 2, FN_LOOKUP, RULE_ST_ANY, NULL},
    {"key_get", 2, FN_LOOKUP, RULE_ST_ANY, NULL},
    {"key_exists", 2, FN_LOOKUP, RULE_ST_ANY, NULL},
    {"key_set", 3, FN_LOOKUP, RULE_ST_ANY, NULL},
    {"counter_incr", 3, FN_LOOKUP, RULE_ST_ANY, NULL},
    {"counter_get", 2, FN_LOOKUP, RULE_ST_ANY, NULL},
    {"dns_query", 2, FN_LOOKUP, RULE_ST_ANY, NULL},
};

const struct rule_fn *rule_fn_find(const char *name, size_t len, int *id)
{
    for (size_t i = 0; i < SV_ARRAY_LEN(fns); i++) {
        if (strlen(fns[i].name) == len && memcmp(fns[i].name, name, len) == 0) {
            *id = (int)i;
            return &fns[i];
        }
    }
    return NULL;
}

const struct rule_fn *rule_fn_get(int id)
{
    return id >= 0 && (size_t)id < SV_ARRAY_LEN(fns) ? &fns[id] : NULL;
}
