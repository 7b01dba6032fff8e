/* config: a TOML 1.0 parser (https://toml.io/en/v1.0.0), recursive descent over
 * the whole input held in memory: keys, tables, arrays and the redefinition rules.
 * The scanner (toml_lex.c) provides strings, numbers, dates and positions.
 *
 * The first error stops the parse: TOML gives no safe way to resynchronise, and
 * a second message after a syntax error is usually noise.
 */
#include "toml_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Arrays and inline tables nest by recursion; this bounds the C stack. */
enum { MAX_DEPTH = 128 };

/* One segment of a dotted key. */
struct key_seg {
    char *s; /* owned, NUL-terminated */
    size_t len;
    size_t at;          /* byte offset in the source (for errors) */
    struct cfg_pos pos; /* the same as a position, computed while scanning forward */
};

struct key {
    struct key_seg *segs;
    size_t n, cap;
};

/* Renders a dotted key for messages, quoting segments that are not bare. */
static const char *key_name(const struct key *k, size_t n, char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        const struct key_seg *s = &k->segs[i];
        bool bare = s->len > 0;
        for (size_t j = 0; j < s->len; j++) {
            char c = s->s[j];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-'))
                bare = false;
        }
        int w = snprintf(buf + o, size - o, bare ? "%s%.*s" : "%s\"%.*s\"", i ? "." : "",
                         (int)s->len, s->s);
        if (w < 0)
            break;
        o += (size_t)w;
    }
    return buf;
}

static void key_free(struct key *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->segs[i].s);
    free(k->segs);
    memset(k, 0, sizeof(*k));
}

/* --- keys -------------------------------------------------------------------- */

static bool key_push(struct parser *p, struct key *k, const char *s, size_t len, size_t at,
                     struct cfg_pos pos)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        struct key_seg *segs = realloc(k->segs, cap * sizeof(*segs));
        if (!segs) {
            cfg_lex_oom(p);
            return false;
        }
        k->segs = segs;
        k->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        cfg_lex_oom(p);
        return false;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    k->segs[k->n++] = (struct key_seg){copy, len, at, pos};
    return true;
}

/* Parses a (possibly dotted) key at p->pos; `what` names the context for errors. */
static bool parse_key(struct parser *p, struct key *k, const char *what)
{
    for (;;) {
        size_t at = p->pos;
        struct cfg_pos pos = cfg_lex_pos(p, at);
        int c = cfg_lex_peek(p, 0);
        if (c == '"' || c == '\'') {
            if (cfg_lex_peek(p, 1) == c && cfg_lex_peek(p, 2) == c) {
                cfg_lex_error(p, at, "multi-line strings cannot be used as keys");
                return false;
            }
            if (!cfg_lex_string(p))
                return false;
            if (!key_push(p, k, p->scratch.ptr ? p->scratch.ptr : "", p->scratch.len, at, pos))
                return false;
        } else if (cfg_lex_bare_key_char(c)) {
            while (cfg_lex_bare_key_char(cfg_lex_peek(p, 0)))
                p->pos++;
            if (!key_push(p, k, p->src + at, p->pos - at, at, pos))
                return false;
        } else {
            char d[48];
            cfg_lex_error(p, at, "expected %s, found %s", k->n ? "a key after '.'" : what,
                          cfg_lex_describe(p, at, d, sizeof(d)));
            return false;
        }
        cfg_lex_skip_ws(p);
        if (cfg_lex_peek(p, 0) != '.')
            return true;
        p->pos++;
        cfg_lex_skip_ws(p);
    }
}

/* --- values ------------------------------------------------------------------ */

static struct cfg_value *parse_value(struct parser *p);
static bool parse_keyval(struct parser *p, struct cfg_value *table);

static struct cfg_value *new_value(struct parser *p, enum cfg_type t, struct cfg_pos pos)
{
    struct cfg_value *v = cfg_value_new(t, pos);
    if (!v)
        cfg_lex_oom(p);
    return v;
}

/* Marks an inline table (and the dotted-key tables inside it) immutable. */
static void freeze(struct cfg_value *v)
{
    struct cfg_node *n = CFG_NODE(v);
    if (n->flags & NODE_FROZEN)
        return;
    n->flags |= NODE_FROZEN;
    if (v->type == CFG_TABLE)
        for (size_t i = 0; i < v->u.table.len; i++)
            if (v->u.table.items[i].value->type == CFG_TABLE)
                freeze(v->u.table.items[i].value);
}

static struct cfg_value *parse_array(struct parser *p)
{
    size_t at = p->pos;
    struct cfg_value *arr = new_value(p, CFG_ARRAY, cfg_lex_pos(p, at));
    if (!arr)
        return NULL;
    CFG_NODE(arr)->flags = NODE_FROZEN;
    p->pos++;
    for (;;) {
        cfg_lex_skip_ws_nl(p);
        if (p->failed)
            goto fail;
        if (cfg_lex_peek(p, 0) == ']')
            break;
        struct cfg_value *item = parse_value(p);
        if (!item)
            goto fail;
        if (cfg_array_push(arr, item) != 0) {
            cfg_value_free(item);
            cfg_lex_oom(p);
            goto fail;
        }
        cfg_lex_skip_ws_nl(p);
        if (p->failed)
            goto fail;
        if (cfg_lex_peek(p, 0) == ',') {
            p->pos++;
            continue;
        }
        if (cfg_lex_peek(p, 0) == ']')
            break;
        char d[48];
        if (p->pos >= p->len)
            cfg_lex_error(p, at, "unterminated array: no closing ']' before end of file");
        else
            cfg_lex_error(p, p->pos, "expected ',' or ']' in array, found %s",
                          cfg_lex_describe(p, p->pos, d, sizeof(d)));
        goto fail;
    }
    p->pos++;
    return arr;
fail:
    cfg_value_free(arr);
    return NULL;
}

static struct cfg_value *parse_inline_table(struct parser *p)
{
    size_t at = p->pos;
    struct cfg_value *t = new_value(p, CFG_TABLE, cfg_lex_pos(p, at));
    if (!t)
        return NULL;
    uint32_t saved = p->section;
    p->section = ++p->next_section;
    p->pos++;
    cfg_lex_skip_ws(p);
    if (cfg_lex_peek(p, 0) != '}') {
        for (;;) {
            if (!parse_keyval(p, t))
                goto fail;
            cfg_lex_skip_ws(p);
            if (cfg_lex_peek(p, 0) == '}')
                break;
            char d[48];
            if (cfg_lex_peek(p, 0) != ',') {
                if (p->pos >= p->len)
                    cfg_lex_error(p, at,
                                  "unterminated inline table: no closing '}' before end of file");
                else if (cfg_lex_at_newline(p))
                    cfg_lex_error(p, p->pos,
                                  "newline in an inline table (TOML 1.0 inline tables are "
                                  "one line; use a [table] instead)");
                else
                    cfg_lex_error(p, p->pos, "expected ',' or '}' in inline table, found %s",
                                  cfg_lex_describe(p, p->pos, d, sizeof(d)));
                goto fail;
            }
            p->pos++;
            cfg_lex_skip_ws(p);
            if (cfg_lex_peek(p, 0) == '}') {
                cfg_lex_error(p, p->pos, "trailing comma in inline table");
                goto fail;
            }
        }
    }
    p->pos++;
    p->section = saved;
    freeze(t);
    return t;
fail:
    p->section = saved;
    cfg_value_free(t);
    return NULL;
}

static struct cfg_value *parse_value(struct parser *p)
{
    size_t at = p->pos;
    int c = cfg_lex_peek(p, 0);
    if (p->depth >= MAX_DEPTH) {
        cfg_lex_error(p, at, "arrays and inline tables nested too deeply (more than %d levels)",
                      MAX_DEPTH);
        return NULL;
    }
    struct cfg_value *v = NULL;
    p->depth++;
    if (c == '[') {
        v = parse_array(p);
    } else if (c == '{') {
        v = parse_inline_table(p);
    } else if (c == '"' || c == '\'') {
        struct cfg_pos pos = cfg_lex_pos(p, at); /* before the body: positions only move forward */
        if (cfg_lex_string(p) && (v = new_value(p, CFG_STRING, pos)) != NULL) {
            v->u.str.ptr = cfg_lex_scratch_dup(p, &v->u.str.len);
            /* the token as written, for cfg_string_pos() on a later error path */
            struct cfg_node *n = CFG_NODE(v);
            n->raw_len = p->pos - at;
            n->raw = malloc(n->raw_len + 1);
            if (n->raw) {
                memcpy(n->raw, p->src + at, n->raw_len);
                n->raw[n->raw_len] = '\0';
            } else {
                cfg_lex_oom(p);
                free(v->u.str.ptr);
                v->u.str.ptr = NULL;
            }
        }
        if (v && !v->u.str.ptr) {
            cfg_value_free(v);
            v = NULL;
        }
    } else {
        v = new_value(p, CFG_BOOL, cfg_lex_pos(p, at));
        if (v && !cfg_lex_scalar(p, v)) {
            cfg_value_free(v);
            v = NULL;
        }
    }
    p->depth--;
    return v;
}

/* --- tables and key/value pairs ------------------------------------------------ */

static bool add_entry(struct parser *p, struct cfg_value *table, const struct key_seg *seg,
                      struct cfg_value *v)
{
    if (cfg_table_add(table, seg->s, seg->len, seg->pos, v) != 0) {
        cfg_lex_oom(p);
        return false;
    }
    return true;
}

/* Creates an empty table under `seg` with the given flags. Returns borrowed or NULL. */
static struct cfg_value *add_table(struct parser *p, struct cfg_value *parent,
                                   const struct key_seg *seg, struct cfg_pos pos, unsigned flags)
{
    struct cfg_value *t = new_value(p, CFG_TABLE, pos);
    if (!t)
        return NULL;
    CFG_NODE(t)->flags = flags;
    CFG_NODE(t)->section = p->section;
    if (!add_entry(p, parent, seg, t)) {
        cfg_value_free(t);
        return NULL;
    }
    return t;
}

static const char *a_type(enum cfg_type t)
{
    switch (t) {
    case CFG_STRING: return "a string";
    case CFG_INTEGER: return "an integer";
    case CFG_FLOAT: return "a float";
    case CFG_BOOL: return "a boolean";
    case CFG_DATETIME: return "a date-time";
    case CFG_DATETIME_LOCAL: return "a local date-time";
    case CFG_DATE_LOCAL: return "a local date";
    case CFG_TIME_LOCAL: return "a local time";
    case CFG_ARRAY: return "an array";
    case CFG_TABLE: return "a table";
    }
    return "a value";
}

/* key = value, into `table` (dotted keys create or extend sub-tables). */
static bool parse_keyval(struct parser *p, struct cfg_value *table)
{
    struct key k = {0};
    char name[256], d[48];
    if (!parse_key(p, &k, "a key"))
        goto fail;
    if (k.n > MAX_DEPTH) {
        cfg_lex_error(p, k.segs[0].at, "key has too many dotted parts (more than %d)", MAX_DEPTH);
        goto fail;
    }
    if (cfg_lex_peek(p, 0) != '=') {
        cfg_lex_error(p, p->pos, "expected '=' after key '%s', found %s",
                      key_name(&k, k.n, name, sizeof(name)),
                      cfg_lex_describe(p, p->pos, d, sizeof(d)));
        goto fail;
    }
    p->pos++;
    cfg_lex_skip_ws(p);
    struct cfg_value *v = parse_value(p);
    if (!v)
        goto fail;
    struct cfg_value *t = table;
    for (size_t i = 0; i + 1 < k.n; i++) {
        struct key_seg *s = &k.segs[i];
        struct cfg_entry *e = cfg_table_find_n(t, s->s, s->len);
        if (!e) {
            t = add_table(p, t, s, s->pos, NODE_DOTTED);
            if (!t)
                goto fail_v;
            continue;
        }
        struct cfg_node *n = CFG_NODE(e->value);
        key_name(&k, i + 1, name, sizeof(name));
        if (e->value->type != CFG_TABLE) {
            cfg_lex_error(p, s->at, "cannot add key '%s': '%s' is already %s (defined at line %u)",
                          key_name(&k, k.n, name, sizeof(name)), s->s, a_type(e->value->type),
                          e->key_pos.line);
            goto fail_v;
        }
        if (n->flags & NODE_FROZEN) {
            cfg_lex_error(p, s->at, "cannot add keys to inline table '%s' (defined at line %u)",
                          name, e->key_pos.line);
            goto fail_v;
        }
        if ((n->flags & NODE_EXPLICIT) || ((n->flags & NODE_DOTTED) && n->section != p->section)) {
            cfg_lex_error(
                p, s->at,
                "cannot add keys to table '%s' with dotted keys: it was defined at line %u", name,
                e->value->pos.line);
            goto fail_v;
        }
        n->flags |= NODE_DOTTED;
        n->section = p->section;
        t = e->value;
    }
    struct key_seg *last = &k.segs[k.n - 1];
    const struct cfg_entry *dup = cfg_table_find_n(t, last->s, last->len);
    if (dup) {
        cfg_lex_error(p, last->at, "duplicate key '%s' (first defined at line %u, column %u)",
                      key_name(&k, k.n, name, sizeof(name)), dup->key_pos.line, dup->key_pos.col);
        goto fail_v;
    }
    if (!add_entry(p, t, last, v))
        goto fail_v;
    key_free(&k);
    return true;
fail_v:
    cfg_value_free(v);
fail:
    key_free(&k);
    return false;
}

/* [a.b.c] or [[a.b.c]]: returns the table that following keys go into. */
static struct cfg_value *parse_header(struct parser *p, struct cfg_value *root)
{
    size_t at = p->pos;
    struct cfg_pos hpos = cfg_lex_pos(p, at);
    bool aot = cfg_lex_peek(p, 1) == '[';
    const char *what = aot ? "array of tables" : "table";
    struct key k = {0};
    char name[256], d[48];
    struct cfg_value *result = NULL;
    p->pos += aot ? 2 : 1;
    cfg_lex_skip_ws(p);
    if (!parse_key(p, &k, aot ? "a key after '[['" : "a key after '['"))
        goto out;
    if (k.n > MAX_DEPTH) {
        cfg_lex_error(p, k.segs[0].at, "key has too many dotted parts (more than %d)", MAX_DEPTH);
        goto out;
    }
    if (cfg_lex_peek(p, 0) != ']' || (aot && cfg_lex_peek(p, 1) != ']')) {
        cfg_lex_error(p, p->pos, "expected '%s' to close the %s header, found %s", aot ? "]]" : "]",
                      what,
                      cfg_lex_describe(p, aot && cfg_lex_peek(p, 0) == ']' ? p->pos + 1 : p->pos, d,
                                       sizeof(d)));
        goto out;
    }
    p->pos += aot ? 2 : 1;
    p->section = ++p->next_section;
    key_name(&k, k.n, name, sizeof(name));

    struct cfg_value *t = root;
    for (size_t i = 0; i + 1 < k.n; i++) {
        struct key_seg *s = &k.segs[i];
        struct cfg_entry *e = cfg_table_find_n(t, s->s, s->len);
        if (!e) {
            t = add_table(p, t, s, s->pos, NODE_IMPLICIT);
            if (!t)
                goto out;
            continue;
        }
        struct cfg_value *v = e->value;
        char pname[256];
        key_name(&k, i + 1, pname, sizeof(pname));
        if (v->type == CFG_TABLE && (CFG_NODE(v)->flags & NODE_FROZEN)) {
            cfg_lex_error(p, s->at, "cannot define %s '%s': '%s' is an inline table (line %u)",
                          what, name, pname, e->key_pos.line);
            goto out;
        }
        if (v->type == CFG_TABLE) {
            t = v;
        } else if (v->type == CFG_ARRAY && (CFG_NODE(v)->flags & NODE_AOT)) {
            t = v->u.array.items[v->u.array.len - 1];
        } else {
            cfg_lex_error(p, s->at, "cannot define %s '%s': '%s' is already %s (line %u)", what,
                          name, pname, a_type(v->type), e->key_pos.line);
            goto out;
        }
    }
    struct key_seg *last = &k.segs[k.n - 1];
    struct cfg_entry *e = cfg_table_find_n(t, last->s, last->len);
    if (aot) {
        struct cfg_value *arr;
        if (!e) {
            arr = new_value(p, CFG_ARRAY, hpos);
            if (!arr)
                goto out;
            CFG_NODE(arr)->flags = NODE_AOT;
            if (!add_entry(p, t, last, arr)) {
                cfg_value_free(arr);
                goto out;
            }
        } else if (e->value->type == CFG_ARRAY && (CFG_NODE(e->value)->flags & NODE_AOT)) {
            arr = e->value;
        } else {
            cfg_lex_error(
                p, last->at, "cannot define array of tables '%s': it is already %s%s (line %u)",
                name, e->value->type == CFG_ARRAY ? "a static " : "",
                e->value->type == CFG_ARRAY ? "array" : a_type(e->value->type), e->key_pos.line);
            goto out;
        }
        struct cfg_value *elem = new_value(p, CFG_TABLE, hpos);
        if (!elem)
            goto out;
        if (cfg_array_push(arr, elem) != 0) {
            cfg_value_free(elem);
            cfg_lex_oom(p);
            goto out;
        }
        result = elem;
        goto out;
    }
    if (!e) {
        result = add_table(p, t, last, hpos, NODE_EXPLICIT);
        goto out;
    }
    struct cfg_value *v = e->value;
    unsigned f = CFG_NODE(v)->flags;
    if (v->type == CFG_TABLE && (f & NODE_IMPLICIT) &&
        !(f & (NODE_EXPLICIT | NODE_DOTTED | NODE_FROZEN))) {
        CFG_NODE(v)->flags = NODE_EXPLICIT;
        v->pos = hpos;
        result = v;
        goto out;
    }
    if (v->type == CFG_TABLE)
        cfg_lex_error(p, last->at, "table '%s' is already defined (line %u)", name,
                      e->key_pos.line);
    else if (v->type == CFG_ARRAY && (f & NODE_AOT))
        cfg_lex_error(p, last->at,
                      "cannot define table '%s': it is already an array of tables (line %u)", name,
                      e->key_pos.line);
    else
        cfg_lex_error(p, last->at, "cannot define table '%s': it is already %s (line %u)", name,
                      a_type(v->type), e->key_pos.line);
out:
    key_free(&k);
    return result;
}

static void parse_document(struct parser *p, struct cfg_value *root)
{
    struct cfg_value *cur = root;
    /* A UTF-8 byte order mark is allowed at the very start only. */
    if (p->len >= 3 && memcmp(p->src, "\xEF\xBB\xBF", 3) == 0)
        p->pos = 3;
    while (!p->failed) {
        cfg_lex_skip_ws(p);
        int c = cfg_lex_peek(p, 0);
        if (c < 0)
            break;
        if (c == '#') {
            cfg_lex_skip_comment(p);
            continue;
        }
        if (cfg_lex_at_newline(p)) {
            cfg_lex_skip_newline(p);
            continue;
        }
        if (c == '[') {
            struct cfg_value *t = parse_header(p, root);
            if (!t)
                break;
            cur = t;
            cfg_lex_expect_eol(p, "the table header");
        } else {
            if (!parse_keyval(p, cur))
                break;
            cfg_lex_expect_eol(p, "the value");
        }
    }
}

struct cfg_doc *cfg_doc_parse(const char *file, const char *src, size_t len, struct cfg_diag *diag)
{
    struct cfg_doc *doc = calloc(1, sizeof(*doc));
    if (!doc || !(doc->file = strdup(file ? file : "<input>"))) {
        free(doc);
        cfg_error(diag, ((struct cfg_pos){file, 0, 0}), "out of memory");
        return NULL;
    }
    struct parser p = {.file = doc->file, .src = src, .len = len, .diag = diag, .cache_line = 1};
    doc->root = cfg_value_new(CFG_TABLE, (struct cfg_pos){doc->file, 1, 1});
    if (!doc->root)
        cfg_lex_oom(&p);
    else if (cfg_lex_check_utf8(&p))
        parse_document(&p, doc->root);
    sv_buf_free(&p.scratch);
    if (p.failed) {
        cfg_doc_free(doc);
        return NULL;
    }
    return doc;
}

struct cfg_doc *cfg_doc_load_file(const char *path, struct cfg_diag *diag)
{
    bool is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "<stdin>" : path;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    struct sv_buf b = {0};
    int err = 0;
    if (!f) {
        err = errno;
    } else {
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
            if (sv_buf_append(&b, chunk, n) != 0) {
                err = ENOMEM;
                break;
            }
        }
        if (!err && ferror(f))
            err = errno ? errno : EIO;
        if (!is_stdin)
            fclose(f);
    }
    if (err) {
        /* Position-less: printed as "salvo: cannot read FILE: reason". */
        cfg_error(diag, ((struct cfg_pos){NULL, 0, 0}), "cannot read %s: %s", name, strerror(err));
        sv_buf_free(&b);
        return NULL;
    }
    struct cfg_doc *doc = cfg_doc_parse(name, b.ptr ? b.ptr : "", b.len, diag);
    sv_buf_free(&b);
    return doc;
}
