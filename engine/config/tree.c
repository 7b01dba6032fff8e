/* config: the TOML value tree — allocation, lookup, and the toml-test JSON encoding. */
#include "toml_int.h"

#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cfg_value *cfg_value_new(enum cfg_type t, struct cfg_pos pos)
{
    struct cfg_node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->v.type = t;
    n->v.pos = pos;
    return &n->v;
}

void cfg_value_free(struct cfg_value *v)
{
    if (!v)
        return;
    switch (v->type) {
    case CFG_STRING:
        free(CFG_NODE(v)->raw);
        free(v->u.str.ptr);
        break;
    case CFG_DATETIME:
    case CFG_DATETIME_LOCAL:
    case CFG_DATE_LOCAL:
    case CFG_TIME_LOCAL: free(v->u.str.ptr); break;
    case CFG_ARRAY:
        for (size_t i = 0; i < v->u.array.len; i++)
            cfg_value_free(v->u.array.items[i]);
        free(v->u.array.items);
        break;
    case CFG_TABLE:
        for (size_t i = 0; i < v->u.table.len; i++) {
            free(v->u.table.items[i].key);
            cfg_value_free(v->u.table.items[i].value);
        }
        free(v->u.table.items);
        free(CFG_NODE(v)->index);
        break;
    case CFG_INTEGER:
    case CFG_FLOAT:
    case CFG_BOOL: break;
    }
    free(CFG_NODE(v));
}

enum { INDEX_MIN_KEYS = 16 };

static void index_put(struct cfg_node *n, size_t entry)
{
    const struct cfg_entry *e = &n->v.u.table.items[entry];
    size_t mask = n->index_cap - 1;
    size_t slot = (size_t)sv_hash64(e->key, e->key_len) & mask;
    while (n->index[slot])
        slot = (slot + 1) & mask;
    n->index[slot] = (uint32_t)(entry + 1);
}

/* Keeps the index in step after an append; without memory it is dropped and
 * lookups fall back to the linear search, which is still correct. */
static void index_update(struct cfg_node *n)
{
    size_t len = n->v.u.table.len;
    if (len < INDEX_MIN_KEYS || len > UINT32_MAX - 1)
        return;
    if (n->index && len * 2 <= n->index_cap) {
        index_put(n, len - 1);
        return;
    }
    size_t cap = 64;
    while (cap < len * 4)
        cap *= 2;
    free(n->index);
    n->index = calloc(cap, sizeof(*n->index));
    n->index_cap = n->index ? cap : 0;
    for (size_t i = 0; n->index && i < len; i++)
        index_put(n, i);
}

int cfg_table_add(struct cfg_value *table, const char *key, size_t key_len, struct cfg_pos key_pos,
                  struct cfg_value *value)
{
    if (table->u.table.len == table->u.table.cap) {
        size_t cap = table->u.table.cap ? table->u.table.cap * 2 : 4;
        struct cfg_entry *p = realloc(table->u.table.items, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        table->u.table.items = p;
        table->u.table.cap = cap;
    }
    char *k = malloc(key_len + 1);
    if (!k)
        return -ENOMEM;
    memcpy(k, key, key_len);
    k[key_len] = '\0';
    table->u.table.items[table->u.table.len++] =
        (struct cfg_entry){.key = k, .key_len = key_len, .key_pos = key_pos, .value = value};
    index_update(CFG_NODE(table));
    return 0;
}

struct cfg_entry *cfg_table_find_n(const struct cfg_value *table, const char *key, size_t len)
{
    if (!table || table->type != CFG_TABLE)
        return NULL;
    const struct cfg_node *n = CFG_NODE(table);
    if (n->index) {
        size_t mask = n->index_cap - 1;
        for (size_t slot = (size_t)sv_hash64(key, len) & mask; n->index[slot];
             slot = (slot + 1) & mask) {
            struct cfg_entry *e = &table->u.table.items[n->index[slot] - 1];
            if (e->key_len == len && memcmp(e->key, key, len) == 0)
                return e;
        }
        return NULL;
    }
    for (size_t i = 0; i < table->u.table.len; i++) {
        struct cfg_entry *e = &table->u.table.items[i];
        if (e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    }
    return NULL;
}

int cfg_array_push(struct cfg_value *array, struct cfg_value *item)
{
    if (array->u.array.len == array->u.array.cap) {
        size_t cap = array->u.array.cap ? array->u.array.cap * 2 : 4;
        struct cfg_value **p = realloc(array->u.array.items, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        array->u.array.items = p;
        array->u.array.cap = cap;
    }
    array->u.array.items[array->u.array.len++] = item;
    return 0;
}

void cfg_doc_free(struct cfg_doc *doc)
{
    if (!doc)
        return;
    cfg_value_free(doc->root);
    free(doc->file);
    free(doc);
}

const struct cfg_entry *cfg_table_find(const struct cfg_value *table, const char *key)
{
    return cfg_table_find_n(table, key, strlen(key));
}

const struct cfg_value *cfg_get(const struct cfg_value *table, const char *dotted)
{
    const struct cfg_value *cur = table;
    const char *s = dotted;
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t len = dot ? (size_t)(dot - s) : strlen(s);
        const struct cfg_entry *e = cfg_table_find_n(cur, s, len);
        if (!e)
            return NULL;
        if (!dot)
            return e->value;
        cur = e->value;
        s = dot + 1;
    }
}

const char *cfg_type_name(enum cfg_type t)
{
    switch (t) {
    case CFG_STRING: return "string";
    case CFG_INTEGER: return "integer";
    case CFG_FLOAT: return "float";
    case CFG_BOOL: return "bool";
    case CFG_DATETIME: return "datetime";
    case CFG_DATETIME_LOCAL: return "datetime-local";
    case CFG_DATE_LOCAL: return "date-local";
    case CFG_TIME_LOCAL: return "time-local";
    case CFG_ARRAY: return "array";
    case CFG_TABLE: return "table";
    }
    return "?";
}

/* --- JSON ------------------------------------------------------------------ */

static int json_string(struct sv_buf *out, const char *s, size_t len)
{
    int rc = sv_buf_putc(out, '"');
    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': rc = sv_buf_puts(out, "\\\""); break;
        case '\\': rc = sv_buf_puts(out, "\\\\"); break;
        case '\b': rc = sv_buf_puts(out, "\\b"); break;
        case '\f': rc = sv_buf_puts(out, "\\f"); break;
        case '\n': rc = sv_buf_puts(out, "\\n"); break;
        case '\r': rc = sv_buf_puts(out, "\\r"); break;
        case '\t': rc = sv_buf_puts(out, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7f)
                rc = sv_buf_printf(out, "\\u%04x", c);
            else
                rc = sv_buf_putc(out, (char)c);
        }
    }
    return rc ? rc : sv_buf_putc(out, '"');
}

/* Shortest text that reads back as the same double. */
static void format_float(double d, char *buf, size_t size)
{
    if (isnan(d)) {
        snprintf(buf, size, "nan");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, size, d < 0 ? "-inf" : "inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

static int indent(struct sv_buf *out, int depth)
{
    int rc = sv_buf_putc(out, '\n');
    for (int i = 0; i < depth && rc == 0; i++)
        rc = sv_buf_puts(out, "  ");
    return rc;
}

static int json_value(const struct cfg_value *v, struct sv_buf *out, int depth)
{
    char num[64] = "";
    const char *text = NULL;
    size_t text_len = 0;
    int rc = 0;
    switch (v->type) {
    case CFG_TABLE:
        if (v->u.table.len == 0)
            return sv_buf_puts(out, "{}");
        rc = sv_buf_putc(out, '{');
        for (size_t i = 0; i < v->u.table.len && rc == 0; i++) {
            const struct cfg_entry *e = &v->u.table.items[i];
            rc = indent(out, depth + 1);
            if (rc == 0)
                rc = json_string(out, e->key, e->key_len);
            if (rc == 0)
                rc = sv_buf_puts(out, ": ");
            if (rc == 0)
                rc = json_value(e->value, out, depth + 1);
            if (rc == 0 && i + 1 < v->u.table.len)
                rc = sv_buf_putc(out, ',');
        }
        if (rc == 0)
            rc = indent(out, depth);
        return rc ? rc : sv_buf_putc(out, '}');
    case CFG_ARRAY:
        if (v->u.array.len == 0)
            return sv_buf_puts(out, "[]");
        rc = sv_buf_putc(out, '[');
        for (size_t i = 0; i < v->u.array.len && rc == 0; i++) {
            rc = indent(out, depth + 1);
            if (rc == 0)
                rc = json_value(v->u.array.items[i], out, depth + 1);
            if (rc == 0 && i + 1 < v->u.array.len)
                rc = sv_buf_putc(out, ',');
        }
        if (rc == 0)
            rc = indent(out, depth);
        return rc ? rc : sv_buf_putc(out, ']');
    case CFG_STRING:
    case CFG_DATETIME:
    case CFG_DATETIME_LOCAL:
    case CFG_DATE_LOCAL:
    case CFG_TIME_LOCAL:
        text = v->u.str.ptr;
        text_len = v->u.str.len;
        break;
    case CFG_INTEGER: snprintf(num, sizeof(num), "%lld", (long long)v->u.integer); break;
    case CFG_FLOAT: format_float(v->u.flt, num, sizeof(num)); break;
    case CFG_BOOL: snprintf(num, sizeof(num), "%s", v->u.boolean ? "true" : "false"); break;
    }
    if (!text) {
        text = num;
        text_len = strlen(num);
    }
    rc = sv_buf_printf(out, "{\"type\": \"%s\", \"value\": ", cfg_type_name(v->type));
    if (rc == 0)
        rc = json_string(out, text, text_len);
    return rc ? rc : sv_buf_putc(out, '}');
}

int cfg_to_json(const struct cfg_value *v, struct sv_buf *out)
{
    int rc = json_value(v, out, 0);
    return rc ? rc : sv_buf_putc(out, '\n');
}

/* --- source positions inside strings --------------------------------------- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decoded length of the escape at raw[i] (a backslash) and its raw length. The
 * parser already validated the text, so a bad escape cannot occur here. */
static size_t escape_len(const char *raw, size_t i, size_t end, size_t *decoded)
{
    char c = i + 1 < end ? raw[i + 1] : 0;
    if (c != 'u' && c != 'U') {
        *decoded = 1;
        return 2;
    }
    size_t n = c == 'u' ? 4 : 8;
    uint32_t cp = 0;
    for (size_t k = 0; k < n && i + 2 + k < end; k++) {
        int h = hex_digit(raw[i + 2 + k]);
        cp = cp * 16 + (uint32_t)(h < 0 ? 0 : h);
    }
    *decoded = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    return 2 + n;
}

struct cfg_pos cfg_string_pos(const struct cfg_value *v, size_t off)
{
    const struct cfg_node *n = (const struct cfg_node *)v;
    struct cfg_pos pos = v->pos;
    if (v->type != CFG_STRING || !n->raw || n->raw_len < 2)
        return pos;
    const char *raw = n->raw;
    char q = raw[0];
    bool literal = q == '\'';
    bool multi = n->raw_len >= 6 && raw[1] == q && raw[2] == q;
    size_t i = multi ? 3 : 1, end = n->raw_len - (multi ? 3 : 1), d = 0;
    /* Walks the raw text keeping (line, col) of raw[i] and the decoded offset d
     * of the character that starts there. */
#define STEP_NEWLINE()                                                                             \
    do {                                                                                           \
        i += raw[i] == '\r' ? 2 : 1;                                                               \
        pos.line++;                                                                                \
        pos.col = 1;                                                                               \
    } while (0)
    pos.col += (uint32_t)i;
    if (multi && i < end && (raw[i] == '\n' || raw[i] == '\r'))
        STEP_NEWLINE(); /* trimmed: the newline right after the opening delimiter */
    while (i < end) {
        char c = raw[i];
        if (c == '\\' && multi && !literal) {
            size_t k = i + 1;
            while (k < end && (raw[k] == ' ' || raw[k] == '\t'))
                k++;
            if (k < end && (raw[k] == '\n' || raw[k] == '\r')) {
                /* line-ending backslash: it and the blank run after it decode to
                 * nothing, so the next character is the one at `off` */
                pos.col += (uint32_t)(k - i);
                i = k;
                while (i < end &&
                       (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r')) {
                    if (raw[i] == ' ' || raw[i] == '\t') {
                        i++;
                        pos.col++;
                    } else {
                        STEP_NEWLINE();
                    }
                }
                continue;
            }
        }
        if (d >= off)
            return pos;
        if (c == '\n' || (c == '\r' && i + 1 < end && raw[i + 1] == '\n')) {
            STEP_NEWLINE();
            d++;
            continue;
        }
        if (c == '\\' && !literal) {
            size_t dec, rl = escape_len(raw, i, end, &dec);
            if (off < d + dec)
                return pos; /* inside the bytes of one escape: the escape itself */
            d += dec;
            i += rl;
            pos.col += (uint32_t)rl;
            continue;
        }
        d++;
        i++;
        pos.col++;
    }
#undef STEP_NEWLINE
    return pos; /* at or past the end: the closing quote */
}
