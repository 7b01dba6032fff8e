/* Settings whose value is an expression: the key table (type, default, allowed
 * variables), the if/then/else list form with its load errors, and the typed
 * conversion of a result (with fallback to the default at run time). */
#include "rule_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- variables ---------------------------------------------------------------- */

static const char *const var_names[] = {
#define RULE_VAR_NAME(id, name) name,
    RULE_VARS(RULE_VAR_NAME)
#undef RULE_VAR_NAME
};

static const char *const last_errors[] = {"none",        "dns",  "unexpected-reply", "connection",
                                          "tls",         "dane", "mta-sts",          "rate",
                                          "concurrency", "io"};

const char *const *rule_last_error_values(size_t *n)
{
    *n = SV_ARRAY_LEN(last_errors);
    return last_errors;
}

int rule_var_find(const char *name)
{
    for (int i = 0; i < RULE_VAR_COUNT; i++) {
        if (strcmp(var_names[i], name) == 0)
            return i;
    }
    return -1;
}

const char *rule_var_name(int var)
{
    return var >= 0 && var < RULE_VAR_COUNT ? var_names[var] : NULL;
}

static bool var_is_number(int var)
{
    switch (var) {
    case RULE_VAR_PRIORITY:
    case RULE_VAR_RETRY_NUM:
    case RULE_VAR_NOTIFY_NUM:
    case RULE_VAR_EXPIRES_IN:
    case RULE_VAR_QUEUE_AGE:
    case RULE_VAR_SIZE: return true;
    default: return false;
    }
}

enum rule_stype rule_var_stype(int var)
{
    if (var_is_number(var))
        return RULE_ST_INT;
    return var == RULE_VAR_RECIPIENTS ? RULE_ST_ARR : RULE_ST_STR;
}

void rule_vars_init(struct rule_vars *vars)
{
    for (int i = 0; i < RULE_VAR_COUNT; i++) {
        if (var_is_number(i))
            vars->v[i] = (struct rule_val){.type = RULE_INT, .u.i = 0};
        else
            vars->v[i] = (struct rule_val){.type = RULE_STR, .len = 0, .u.s = ""};
    }
    vars->v[RULE_VAR_LAST_ERROR] = (struct rule_val){.type = RULE_STR, .len = 4, .u.s = "none"};
    vars->v[RULE_VAR_RECIPIENTS] = (struct rule_val){.type = RULE_ARR, .len = 0, .u.a = NULL};
}

int rule_vars_set_text(struct rule_vars *vars, int var, const char *text)
{
    size_t len = strlen(text);
    if (var < 0 || var >= RULE_VAR_COUNT || len > UINT32_MAX)
        return -EINVAL;
    if (var_is_number(var)) {
        struct rule_val n;
        int64_t ms = rule_parse_duration(text, len);
        rule_str_to_number(text, len, &n);
        if (ms >= 0 && (var == RULE_VAR_EXPIRES_IN || var == RULE_VAR_QUEUE_AGE))
            n = (struct rule_val){.type = RULE_INT, .u.i = ms};
        else if (n.type != RULE_INT || (n.u.i == 0 && strcmp(text, "0") != 0))
            return -EINVAL;
        vars->v[var] = n;
        return 0;
    }
    if (var == RULE_VAR_LAST_ERROR) {
        size_t i;
        for (i = 0; i < SV_ARRAY_LEN(last_errors); i++) {
            if (strcmp(text, last_errors[i]) == 0)
                break;
        }
        if (i == SV_ARRAY_LEN(last_errors))
            return -EINVAL;
    }
    if (var == RULE_VAR_RECIPIENTS) {
        /* a comma-separated list, kept in a small static table: this is for the CLI */
        static struct rule_val items[64];
        uint32_t n = 0;
        const char *p = text;
        while (*p && n < SV_ARRAY_LEN(items)) {
            const char *c = strchr(p, ',');
            size_t l = c ? (size_t)(c - p) : strlen(p);
            items[n++] = (struct rule_val){.type = RULE_STR, .len = (uint32_t)l, .u.s = p};
            p += l + (c ? 1 : 0);
        }
        vars->v[var] = (struct rule_val){.type = RULE_ARR, .len = n, .u.a = items};
        return 0;
    }
    vars->v[var] = (struct rule_val){.type = RULE_STR, .len = (uint32_t)len, .u.s = text};
    return 0;
}

/* --- the setting table ------------------------------------------------------------ */

#define V(id) (1u << RULE_VAR_##id)
/* Before an MX is chosen (per message/domain), once an MX host is chosen, and once
 * connected (the addresses are known). */
#define VARS_MSG (RULE_VARS_ALL & ~(V(MX) | V(REMOTE_IP) | V(LOCAL_IP)))
#define VARS_MX  (VARS_MSG | V(MX))
#define VARS_IP  RULE_VARS_ALL
#define MIN(n)   ((int64_t)(n)*60000)

struct rule_setting {
    const char *key;
    enum rule_kind kind;
    uint32_t vars;
    int64_t def_i;
    const char *def_s;
    const int64_t *def_list;
    size_t def_n;
};

static const char *const tls_consts[] = {"optional", "require",  "disable",
                                         "required", "disabled", NULL};
static const char *const ip_consts[] = {"ipv4_only", "ipv6_only", "ipv4_then_ipv6",
                                        "ipv6_then_ipv4", NULL};
static const int64_t def_retry[] = {MIN(2), MIN(5), MIN(10), MIN(15), MIN(30), MIN(60), MIN(120)};
static const int64_t def_notify[] = {MIN(1440), MIN(3 * 1440)};

static const struct rule_setting settings[] = {
    {"queue.outbound.tls.starttls", RULE_K_TLS_MODE, VARS_IP, RULE_TLS_OPTIONAL, NULL, NULL, 0},
    {"queue.outbound.tls.allow-invalid-certs", RULE_K_BOOL, VARS_IP, 0, NULL, NULL, 0},
    {"queue.outbound.tls.dane", RULE_K_TLS_MODE, VARS_MX, RULE_TLS_OPTIONAL, NULL, NULL, 0},
    {"queue.outbound.tls.mta-sts", RULE_K_TLS_MODE, VARS_MSG, RULE_TLS_OPTIONAL, NULL, NULL, 0},
    {"queue.outbound.hostname", RULE_K_STRING, VARS_IP, 0, "localhost", NULL, 0},
    {"queue.outbound.next-hop", RULE_K_RELAY, VARS_MSG, 0, NULL, NULL, 0},
    {"queue.outbound.ip-strategy", RULE_K_IP_STRATEGY, VARS_MX, RULE_IP_V4_THEN_V6, NULL, NULL, 0},
    {"queue.outbound.limits.mx", RULE_K_INT, VARS_MSG, 5, NULL, NULL, 0},
    {"queue.outbound.limits.multihomed", RULE_K_INT, VARS_MX, 2, NULL, NULL, 0},
    {"queue.outbound.timeouts.connect", RULE_K_DURATION, VARS_MX, MIN(5), NULL, NULL, 0},
    {"queue.outbound.timeouts.greeting", RULE_K_DURATION, VARS_IP, MIN(5), NULL, NULL, 0},
    {"queue.outbound.timeouts.tls", RULE_K_DURATION, VARS_IP, MIN(3), NULL, NULL, 0},
    {"queue.outbound.timeouts.ehlo", RULE_K_DURATION, VARS_IP, MIN(5), NULL, NULL, 0},
    {"queue.outbound.timeouts.mail-from", RULE_K_DURATION, VARS_IP, MIN(5), NULL, NULL, 0},
    {"queue.outbound.timeouts.rcpt-to", RULE_K_DURATION, VARS_IP, MIN(5), NULL, NULL, 0},
    {"queue.outbound.timeouts.data", RULE_K_DURATION, VARS_IP, MIN(10), NULL, NULL, 0},
    {"queue.outbound.timeouts.mta-sts", RULE_K_DURATION, VARS_MSG, MIN(10), NULL, NULL, 0},
    {"queue.schedule.retry", RULE_K_DURATION_LIST, VARS_MSG, 0, NULL, def_retry,
     SV_ARRAY_LEN(def_retry)},
    {"queue.schedule.notify", RULE_K_DURATION_LIST, VARS_MSG, 0, NULL, def_notify,
     SV_ARRAY_LEN(def_notify)},
    {"queue.schedule.expire", RULE_K_DURATION, VARS_MSG, 5 * MIN(1440), NULL, NULL, 0},
    /* Stalwart 0.13+: an expression names a TLS strategy; each strategy is a table */
    {"queue.strategy.tls", RULE_K_STRING, VARS_MX, 0, "default", NULL, 0},
    {"queue.tls.*.starttls", RULE_K_TLS_MODE, VARS_IP, RULE_TLS_OPTIONAL, NULL, NULL, 0},
    {"queue.tls.*.allow-invalid-certs", RULE_K_BOOL, VARS_IP, 0, NULL, NULL, 0},
    {"queue.tls.*.dane", RULE_K_TLS_MODE, VARS_MX, RULE_TLS_OPTIONAL, NULL, NULL, 0},
    {"queue.tls.*.mta-sts", RULE_K_TLS_MODE, VARS_MSG, RULE_TLS_OPTIONAL, NULL, NULL, 0},
    {"queue.tls.*.timeout.tls", RULE_K_DURATION, VARS_IP, MIN(3), NULL, NULL, 0},
    {"queue.tls.*.timeout.mta-sts", RULE_K_DURATION, VARS_MSG, MIN(10), NULL, NULL, 0},
};

static const char *const setting_names[] = {
    "queue.outbound.tls.starttls",
    "queue.outbound.tls.allow-invalid-certs",
    "queue.outbound.tls.dane",
    "queue.outbound.tls.mta-sts",
    "queue.outbound.hostname",
    "queue.outbound.next-hop",
    "queue.outbound.ip-strategy",
    "queue.outbound.limits.mx",
    "queue.outbound.limits.multihomed",
    "queue.outbound.timeouts.connect",
    "queue.outbound.timeouts.greeting",
    "queue.outbound.timeouts.tls",
    "queue.outbound.timeouts.ehlo",
    "queue.outbound.timeouts.mail-from",
    "queue.outbound.timeouts.rcpt-to",
    "queue.outbound.timeouts.data",
    "queue.outbound.timeouts.mta-sts",
    "queue.schedule.retry",
    "queue.schedule.notify",
    "queue.schedule.expire",
    "queue.strategy.tls",
    "queue.tls.*.starttls",
    "queue.tls.*.allow-invalid-certs",
    "queue.tls.*.dane",
    "queue.tls.*.mta-sts",
    "queue.tls.*.timeout.tls",
    "queue.tls.*.timeout.mta-sts",
};
_Static_assert(SV_ARRAY_LEN(setting_names) == SV_ARRAY_LEN(settings), "one name per setting");

/* Length of the dotted-key segment at `s`: up to the next '.', a quoted segment
 * ("a.b") up to its closing quote. */
static size_t segment_len(const char *s)
{
    if (*s == '"') {
        const char *q = strchr(s + 1, '"');
        return q ? (size_t)(q - s) + 1 : strlen(s);
    }
    return strcspn(s, ".");
}

/* `pattern` matches `key` segment by segment; '*' matches any one segment. */
static bool key_match(const char *pattern, const char *key)
{
    for (;;) {
        size_t pl = strcspn(pattern, "."), kl = segment_len(key);
        if (!(pl == 1 && *pattern == '*') && (pl != kl || memcmp(pattern, key, pl) != 0))
            return false;
        pattern += pl;
        key += kl;
        if (!*pattern || !*key)
            return !*pattern && !*key;
        if (*pattern != '.' || *key != '.')
            return false;
        pattern++;
        key++;
    }
}

const struct rule_setting *rule_setting_find(const char *key)
{
    for (size_t i = 0; i < SV_ARRAY_LEN(settings); i++) {
        if (key_match(settings[i].key, key))
            return &settings[i];
    }
    return NULL;
}

const char *const *rule_setting_names(size_t *n)
{
    *n = SV_ARRAY_LEN(setting_names);
    return setting_names;
}

const char *rule_setting_key(const struct rule_setting *s)
{
    return s->key;
}

enum rule_kind rule_setting_kind(const struct rule_setting *s)
{
    return s->kind;
}

uint32_t rule_setting_vars(const struct rule_setting *s)
{
    return s->vars;
}

static const char *const *setting_consts(const struct rule_setting *s)
{
    switch (s->kind) {
    case RULE_K_TLS_MODE: return tls_consts;
    case RULE_K_IP_STRATEGY: return ip_consts;
    case RULE_K_BOOL:
    case RULE_K_INT:
    case RULE_K_DURATION:
    case RULE_K_STRING:
    case RULE_K_RELAY:
    case RULE_K_DURATION_LIST: break;
    }
    return NULL;
}

void rule_setting_default(const struct rule_setting *s, struct rule_result *out)
{
    *out = (struct rule_result){.kind = s->kind,
                                .i = s->def_i,
                                .s = s->def_s,
                                .len = s->def_s ? strlen(s->def_s) : 0,
                                .list = s->def_list,
                                .n = s->def_n};
}

/* --- typed conversion ----------------------------------------------------------------- */

static bool str_is(const struct rule_val *v, const char *w)
{
    return v->type == RULE_STR && v->len == strlen(w) && memcmp(v->u.s, w, v->len) == 0;
}

static int to_duration(const struct rule_val *v, int64_t *ms)
{
    switch ((enum rule_type)v->type) {
    case RULE_INT: *ms = v->u.i; return v->u.i >= 0 ? 0 : RULE_E_TYPE;
    case RULE_FLOAT:
        if (!(v->u.f >= 0 && v->u.f < 9e18))
            return RULE_E_TYPE;
        *ms = (int64_t)v->u.f;
        return 0;
    case RULE_STR: {
        *ms = rule_parse_duration(v->u.s, v->len);
        if (*ms >= 0)
            return 0;
        struct rule_val n;
        rule_str_to_number(v->u.s, v->len, &n);
        if (n.type == RULE_INT && n.u.i >= 0 && v->len && v->u.s[0] >= '0' && v->u.s[0] <= '9') {
            *ms = n.u.i;
            return 0;
        }
        return RULE_E_TYPE;
    }
    case RULE_ARR: break;
    }
    return RULE_E_TYPE;
}

static int convert(const struct rule_setting *s, const struct rule_val *v, struct rule_arena *ar,
                   struct rule_result *out)
{
    *out = (struct rule_result){.kind = s->kind};
    switch (s->kind) {
    case RULE_K_TLS_MODE:
        if (str_is(v, "require") || str_is(v, "required"))
            out->i = RULE_TLS_REQUIRE;
        else if (str_is(v, "optional"))
            out->i = RULE_TLS_OPTIONAL;
        else if (str_is(v, "disable") || str_is(v, "disabled"))
            out->i = RULE_TLS_DISABLE;
        else
            return RULE_E_TYPE;
        return 0;
    case RULE_K_BOOL:
        if (v->type == RULE_INT || v->type == RULE_FLOAT)
            out->i = rule_truthy(v);
        else if (str_is(v, "true") || str_is(v, "false"))
            out->i = str_is(v, "true");
        else
            return RULE_E_TYPE;
        return 0;
    case RULE_K_INT: {
        struct rule_val n = *v;
        if (v->type == RULE_STR)
            rule_str_to_number(v->u.s, v->len, &n);
        if (n.type == RULE_FLOAT && n.u.f == (double)(int64_t)n.u.f)
            n = (struct rule_val){.type = RULE_INT, .u.i = (int64_t)n.u.f};
        if (n.type != RULE_INT || n.u.i < 0 || (v->type == RULE_STR && !v->len))
            return RULE_E_TYPE;
        out->i = n.u.i;
        return 0;
    }
    case RULE_K_DURATION: return to_duration(v, &out->i);
    case RULE_K_STRING:
        if (v->type != RULE_STR || v->len == 0)
            return RULE_E_TYPE;
        out->s = v->u.s;
        out->len = v->len;
        return 0;
    case RULE_K_RELAY:
        if ((v->type == RULE_INT && v->u.i == 0) || str_is(v, "false")) {
            out->s = NULL;
            return 0;
        }
        if (v->type != RULE_STR || v->len == 0)
            return RULE_E_TYPE;
        out->s = v->u.s;
        out->len = v->len;
        return 0;
    case RULE_K_IP_STRATEGY:
        for (int i = 0; ip_consts[i]; i++) {
            if (str_is(v, ip_consts[i])) {
                out->i = i;
                return 0;
            }
        }
        return RULE_E_TYPE;
    case RULE_K_DURATION_LIST: {
        const struct rule_val *items = v;
        size_t n = 1;
        if (v->type == RULE_ARR) {
            items = v->u.a;
            n = v->len;
        }
        if (n == 0)
            return RULE_E_TYPE;
        int64_t *list = rule_arena_alloc(ar, n * sizeof(*list));
        if (!list)
            return RULE_E_ARENA;
        for (size_t i = 0; i < n; i++) {
            if (to_duration(&items[i], &list[i]))
                return RULE_E_TYPE;
        }
        out->list = list;
        out->n = n;
        return 0;
    }
    }
    return RULE_E_TYPE;
}

static const char *expected(const struct rule_setting *s)
{
    switch (s->kind) {
    case RULE_K_TLS_MODE: return "optional, require or disable";
    case RULE_K_BOOL: return "true or false";
    case RULE_K_INT: return "a non-negative integer";
    case RULE_K_DURATION: return "a duration such as 90s, 5m, 1h or 5d";
    case RULE_K_STRING: return "a non-empty string";
    case RULE_K_RELAY: return "a relay name or false";
    case RULE_K_IP_STRATEGY: return "ipv4_only, ipv6_only, ipv4_then_ipv6 or ipv6_then_ipv4";
    case RULE_K_DURATION_LIST: return "a list of durations such as \"[2m, 5m, 1h]\"";
    }
    return "?";
}

int rule_eval_setting(struct rule_program *p, const struct rule_vars *vars, struct rule_result *out)
{
    struct rule_val v;
    if (!p->setting) {
        *out = (struct rule_result){.kind = RULE_K_STRING};
        return RULE_E_TYPE; /* a bare expression has no type to convert to */
    }
    int rc = rule_eval(p, vars, &v);
    if (rc == 0 && p->ktyped && p->ret_k != UINT32_MAX) {
        /* a constant result (RETK): converted once at load */
        *out = p->ktyped[p->ret_k];
        rc = p->ktyped_rc[p->ret_k];
    } else if (rc == 0) {
        rc = convert(p->setting, &v, &p->arena, out);
    }
    if (rc)
        rule_setting_default(p->setting, out);
    return rc;
}

int rule_result_format(const struct rule_result *r, struct sv_buf *out)
{
    static const char *const tls[] = {"optional", "require", "disable"};
    switch (r->kind) {
    case RULE_K_TLS_MODE: return sv_buf_puts(out, tls[r->i]);
    case RULE_K_BOOL: return sv_buf_puts(out, r->i ? "true" : "false");
    case RULE_K_INT:
    case RULE_K_DURATION: return sv_buf_printf(out, "%lld", (long long)r->i);
    case RULE_K_STRING: return sv_buf_append(out, r->s, r->len);
    case RULE_K_RELAY: return r->s ? sv_buf_append(out, r->s, r->len) : sv_buf_puts(out, "false");
    case RULE_K_IP_STRATEGY: return sv_buf_puts(out, ip_consts[r->i]);
    case RULE_K_DURATION_LIST:
        if (sv_buf_putc(out, '['))
            return -ENOMEM;
        for (size_t i = 0; i < r->n; i++) {
            if (sv_buf_printf(out, "%s%lld", i ? ", " : "", (long long)r->list[i]))
                return -ENOMEM;
        }
        return sv_buf_putc(out, ']');
    }
    return -EINVAL;
}

/* --- compiling a setting ---------------------------------------------------------------- */

/* Where byte `off` of an expression written as TOML value `v` is in the file; the
 * config parser maps offsets in a string's decoded text back through escapes and
 * line breaks. Numbers and booleans are reported where they start. */
static struct cfg_pos expr_pos(const struct cfg_value *v, size_t off)
{
    return v->type == CFG_STRING ? cfg_string_pos(v, off) : v->pos;
}

/* Whether no value of static type `t` converts to the setting's kind (see convert()). */
static bool never_converts(const struct rule_setting *s, enum rule_stype t)
{
    bool number = t == RULE_ST_INT || t == RULE_ST_FLOAT || t == RULE_ST_NUM;
    switch (s->kind) {
    case RULE_K_TLS_MODE:
    case RULE_K_IP_STRATEGY:
    case RULE_K_STRING: return number || t == RULE_ST_ARR;
    case RULE_K_RELAY: return t == RULE_ST_FLOAT || t == RULE_ST_ARR; /* 0 means "no relay" */
    case RULE_K_BOOL:
    case RULE_K_INT:
    case RULE_K_DURATION: return t == RULE_ST_ARR;
    case RULE_K_DURATION_LIST: return false; /* one value is a list of one */
    }
    return false;
}

static const char *stype_name(enum rule_stype t)
{
    switch (t) {
    case RULE_ST_INT: return "an integer";
    case RULE_ST_FLOAT: return "a float";
    case RULE_ST_NUM: return "a number";
    case RULE_ST_STR: return "a string";
    case RULE_ST_ARR: return "an array";
    case RULE_ST_ANY: break;
    }
    return "a value of any type";
}

static void describe(const struct rule_val *v, char *buf, size_t cap)
{
    struct sv_buf b = {0};
    if (v->type == RULE_STR)
        sv_buf_putc(&b, '\'');
    rule_val_format(v, &b);
    if (v->type == RULE_STR)
        sv_buf_putc(&b, '\'');
    snprintf(buf, cap, "%s", b.ptr ? b.ptr : "?");
    sv_buf_free(&b);
}

static bool hostname_like(const char *s, size_t len)
{
    if (!len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* Compiles one TOML value as an expression leaving its value on the stack (or, as
 * a condition, as jumps taken when false); when `typed`, a constant result must
 * convert to the setting's type. Returns 0 or -1 (error reported). */
static int compile_value(struct rule_unit *u, const struct rule_setting *s,
                         const struct cfg_value *v, bool typed, struct cfg_diag *diag,
                         bool *constant, struct rule_val *kval, bool cond)
{
    struct rule_error err;
    bool is_const = false;
    struct rule_val k = {0};
    char num[64];
    const char *src;
    size_t len;
    switch (v->type) {
    case CFG_STRING:
        src = v->u.str.ptr;
        len = v->u.str.len;
        break;
    case CFG_BOOL:
        src = v->u.boolean ? "true" : "false";
        len = strlen(src);
        break;
    case CFG_INTEGER:
        len = (size_t)snprintf(num, sizeof(num), "%lld", (long long)v->u.integer);
        src = num;
        break;
    case CFG_FLOAT:
        if (v->u.flt < 0 || v->u.flt != v->u.flt || v->u.flt > 1e15) {
            cfg_error(diag, v->pos, "%s: expected %s, got %g", s->key, expected(s), v->u.flt);
            return -1;
        }
        len = (size_t)snprintf(num, sizeof(num), "%.6f", v->u.flt);
        src = num;
        break;
    case CFG_DATETIME:
    case CFG_DATETIME_LOCAL:
    case CFG_DATE_LOCAL:
    case CFG_TIME_LOCAL:
    case CFG_ARRAY:
    case CFG_TABLE:
    default:
        cfg_error(diag, v->pos,
                  "%s: expected an expression (a string), a number or a boolean, "
                  "got %s",
                  s->key, cfg_type_name(v->type));
        return -1;
    }
    int (*comp)(struct rule_unit *, const char *, size_t, struct rule_error *, bool *,
                struct rule_val *) = cond ? rule_unit_cond : rule_unit_expr;
    if (comp(u, src, len, &err, &is_const, &k)) {
        /* "mta.example.com" or "relay1" for a text setting is the text itself */
        bool literal = !cond && v->type == CFG_STRING && hostname_like(src, len) &&
                       (s->kind == RULE_K_STRING || s->kind == RULE_K_RELAY) &&
                       strstr(err.msg, "not available") == NULL;
        if (!literal && !cond && v->type == CFG_STRING && setting_consts(s) &&
            hostname_like(src, len) && strncmp(err.msg, "unknown variable", 16) == 0) {
            /* starttls = "maybe": a wrong value, not a typo'd variable */
            cfg_error(diag, expr_pos(v, 0), "%s: expected %s, got '%.*s'", s->key, expected(s),
                      (int)len, src);
            return -1;
        }
        if (!literal) {
            cfg_error(diag, expr_pos(v, err.offset), "%s: %s", s->key, err.msg);
            return -1;
        }
        /* compile the text as a quoted string constant */
        struct sv_buf q = {0};
        sv_buf_putc(&q, '\'');
        sv_buf_append(&q, src, len);
        sv_buf_putc(&q, '\'');
        int rc = q.ptr ? comp(u, q.ptr, q.len, &err, &is_const, &k) : -1;
        sv_buf_free(&q);
        if (rc) {
            /* offsets count the quote added in front */
            cfg_error(diag, expr_pos(v, err.offset ? err.offset - 1 : 0), "%s: %s", s->key,
                      err.msg);
            return -1;
        }
    }
    if (typed && !is_const) {
        /* A result whose type is known at load time and can never convert would
         * make every evaluation fall back to the default: say so now. A result of
         * unknown type (an array item, sort() of a variable, if_then() with mixed
         * branches, ...) stays dynamic: rule_eval_setting() converts it at run
         * time and the caller logs the fallback. */
        enum rule_stype t = rule_unit_result_type(u);
        if (never_converts(s, t)) {
            size_t at = 0;
            while (v->type == CFG_STRING && at < len &&
                   (src[at] == ' ' || src[at] == '\t' || src[at] == '\n' || src[at] == '\r'))
                at++;
            cfg_error(diag, expr_pos(v, at), "%s: expected %s, but this expression always gives %s",
                      s->key, expected(s), stype_name(t));
            return -1;
        }
    }
    if (typed && is_const) {
        struct rule_result r;
        _Alignas(16) char buf[RULE_ARENA_SIZE / 4];
        struct rule_arena ar = {.base = buf, .used = 0, .cap = sizeof(buf)};
        if (convert(s, &k, &ar, &r)) {
            char got[96];
            describe(&k, got, sizeof(got));
            cfg_error(diag, v->type == CFG_STRING ? expr_pos(v, 0) : v->pos,
                      "%s: expected %s, got %s", s->key, expected(s), got);
            return -1;
        }
    }
    if (constant)
        *constant = is_const;
    if (kval)
        *kval = k;
    return 0;
}

static bool is_rule_list(const struct cfg_value *v)
{
    if (v->type != CFG_ARRAY)
        return false;
    for (size_t i = 0; i < v->u.array.len; i++) {
        if (v->u.array.items[i]->type == CFG_TABLE)
            return true;
    }
    return false;
}

static void compile_list(struct rule_unit *u, const struct rule_setting *s,
                         const struct cfg_value *v, struct cfg_diag *diag)
{
    size_t n = v->u.array.len;
    /* each entry's condition as compiled: [start, start + len) of the unit's code,
     * so spellings that compile alike ("(a) && (b)", "a && b") count as the same */
    struct span {
        size_t start, len;
        bool ok;
    } *conds = calloc(n ? n : 1, sizeof(*conds));
    const struct cfg_entry *else_seen = NULL;
    size_t always_true = 0; /* 1-based entry whose condition is constant true */
    bool have_if = false;
    if (n == 0)
        cfg_error(diag, v->pos, "%s: empty rule list", s->key);
    for (size_t i = 0; i < n; i++) {
        const struct cfg_value *item = v->u.array.items[i];
        if (item->type != CFG_TABLE) {
            cfg_error(diag, item->pos,
                      "%s: a rule entry is a table: { if = \"...\", then = ... } or "
                      "{ else = ... }",
                      s->key);
            continue;
        }
        const struct cfg_entry *e_if = NULL, *e_then = NULL, *e_else = NULL;
        bool bad = false;
        for (size_t j = 0; j < item->u.table.len; j++) {
            const struct cfg_entry *e = &item->u.table.items[j];
            if (strcmp(e->key, "if") == 0)
                e_if = e;
            else if (strcmp(e->key, "then") == 0)
                e_then = e;
            else if (strcmp(e->key, "else") == 0)
                e_else = e;
            else {
                cfg_error(diag, e->key_pos,
                          "%s: unknown property '%s' in a rule entry (expected 'if', 'then' or "
                          "'else')",
                          s->key, e->key);
                bad = true;
            }
        }
        if (else_seen) {
            if (e_else)
                cfg_error(diag, e_else->key_pos, "%s: more than one 'else' entry", s->key);
            else
                cfg_error(diag, else_seen->key_pos,
                          "%s: 'else' before an 'if' entry: 'else' must be the last entry", s->key);
            continue;
        }
        if (bad)
            continue;
        if (e_else) {
            else_seen = e_else;
            if (e_if) {
                cfg_error(diag, e_else->key_pos,
                          "%s: 'else' cannot be combined with 'if' in one entry", s->key);
                continue;
            }
            if (e_then) {
                cfg_error(diag, e_then->key_pos, "%s: 'then' is not allowed in the 'else' entry",
                          s->key);
                continue;
            }
            if (always_true)
                cfg_warn(diag, e_else->key_pos,
                         "%s: the 'else' entry can never match: the condition of entry %zu is "
                         "always true",
                         s->key, always_true);
            if (i > 0 && rule_unit_uses_regex(u))
                rule_unit_emit(u, OP_CLRCAP, 0, 0);
            if (compile_value(u, s, e_else->value, true, diag, NULL, NULL, false) == 0)
                rule_unit_emit(u, OP_RET, 0, 0);
            continue;
        }
        if (!e_if) {
            if (e_then)
                cfg_error(diag, e_then->key_pos, "%s: 'then' without 'if'", s->key);
            else
                cfg_error(diag, item->pos, "%s: empty rule entry", s->key);
            continue;
        }
        have_if = true;
        if (!e_then) {
            cfg_error(diag, e_if->key_pos, "%s: 'if' without 'then'", s->key);
            continue;
        }
        const struct cfg_value *cv = e_if->value;
        if (always_true)
            cfg_warn(diag, cv->pos,
                     "%s: entry %zu can never match: the condition of entry %zu is always true",
                     s->key, i + 1, always_true);
        if (i > 0 && rule_unit_uses_regex(u))
            rule_unit_emit(u, OP_CLRCAP, 0, 0);
        bool kc = false;
        struct rule_val kv;
        size_t start = rule_unit_here(u);
        if (compile_value(u, s, cv, false, diag, &kc, &kv, true))
            continue;
        if (conds) {
            conds[i] = (struct span){start, rule_unit_here(u) - start, true};
            for (size_t j = 0; j < i; j++) {
                if (conds[j].ok &&
                    rule_unit_same_code(u, conds[j].start, conds[j].len, start, conds[i].len)) {
                    cfg_warn(diag, cv->pos,
                             "%s: entry %zu can never match: entry %zu has the same condition",
                             s->key, i + 1, j + 1);
                    break;
                }
            }
        }
        if (kc && rule_truthy(&kv) && !always_true)
            always_true = i + 1;
        if (compile_value(u, s, e_then->value, true, diag, NULL, NULL, false) == 0)
            rule_unit_emit(u, OP_RET, 0, 0);
        rule_unit_patch_false(u, rule_unit_here(u));
    }
    if (have_if && !else_seen)
        cfg_error(diag, v->pos, "%s: missing 'else' entry: end the list with { else = ... }",
                  s->key);
    free(conds);
}

struct rule_program *rule_compile_setting(const struct rule_setting *s, const struct cfg_value *v,
                                          struct cfg_diag *diag)
{
    size_t errors0 = diag->errors;
    struct rule_unit *u = rule_unit_new(s->vars, setting_consts(s), s->key);
    if (!u) {
        cfg_error(diag, v->pos, "%s: out of memory", s->key);
        return NULL;
    }
    if (is_rule_list(v)) {
        compile_list(u, s, v, diag);
    } else if (v->type == CFG_ARRAY && s->kind == RULE_K_DURATION_LIST) {
        /* retry = ["2m", "5m"]: each item is an expression giving one duration */
        struct rule_setting one = *s;
        one.kind = RULE_K_DURATION;
        for (size_t i = 0; i < v->u.array.len; i++)
            compile_value(u, &one, v->u.array.items[i], true, diag, NULL, NULL, false);
        if (v->u.array.len == 0)
            cfg_error(diag, v->pos, "%s: expected %s, got an empty list", s->key, expected(s));
        rule_unit_emit(u, OP_ARRAY, 0, (int)v->u.array.len);
        rule_unit_emit(u, OP_RET, 0, 0);
    } else if (v->type == CFG_ARRAY || v->type == CFG_TABLE) {
        cfg_error(diag, v->pos,
                  "%s: expected a value or a list of { if = \"...\", then = ... } entries ending "
                  "with { else = ... }",
                  s->key);
    } else if (compile_value(u, s, v, true, diag, NULL, NULL, false) == 0) {
        rule_unit_emit(u, OP_RET, 0, 0);
    }
    if (diag->errors == errors0 && rule_unit_here(u) > RULE_MAX_CODE)
        cfg_error(diag, v->pos, "%s: rules too large (more than %d instructions)", s->key,
                  RULE_MAX_CODE);
    if (diag->errors != errors0) {
        rule_unit_free(u);
        return NULL;
    }
    struct rule_program *p = rule_unit_finish(u, s);
    if (!p) {
        cfg_error(diag, v->pos, "%s: out of memory (or the rules are too large)", s->key);
        return NULL;
    }
    if (s->kind != RULE_K_DURATION_LIST && p->nk) {
        /* scalar results need no memory: convert every constant once */
        p->ktyped = calloc(p->nk, sizeof(*p->ktyped));
        p->ktyped_rc = calloc(p->nk, sizeof(*p->ktyped_rc));
        if (!p->ktyped || !p->ktyped_rc) {
            free(p->ktyped);
            free(p->ktyped_rc);
            p->ktyped = NULL;
            p->ktyped_rc = NULL;
        }
        for (size_t i = 0; p->ktyped && i < p->nk; i++) {
            p->ktyped_rc[i] = convert(s, &p->k[i], &p->arena, &p->ktyped[i]);
            if (p->ktyped_rc[i])
                rule_setting_default(s, &p->ktyped[i]);
        }
    }
    return p;
}
