/* toml-test conformance: every case under $SALVO_SHARED_DIR/conformance/toml-test/
 * goes through a real `salvo config decode` process.
 *   valid/X.toml   -> exit 0, stdout JSON structurally equal to valid/X.json
 *   invalid/X.toml -> exit 1, nothing on stdout, one "X.toml:line:col: message" on stderr
 * Values compare the way toml-test compares them: floats numerically (nan and inf by
 * name), integers numerically, date-times after normalising 'T'/'Z' and the fraction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

/* --- a small JSON reader ------------------------------------------------------ */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
    enum jtype type;
    char *str; /* J_STR (may contain NUL, see len), J_NUM text */
    size_t len;
    bool b;
    struct jval **items; /* J_ARR items; J_OBJ values */
    char **keys;         /* J_OBJ keys */
    size_t *key_lens;
    size_t n;
};

struct jparser {
    const char *s;
    size_t pos, len;
    bool bad;
};

static void jfree(struct jval *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        jfree(v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_lens);
    free(v->str);
    free(v);
}

static void jws(struct jparser *p)
{
    while (p->pos < p->len && isspace((unsigned char)p->s[p->pos]))
        p->pos++;
}

static void put_utf8(char *out, size_t *o, unsigned cp)
{
    if (cp < 0x80) {
        out[(*o)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*o)++] = (char)(0xc0 | (cp >> 6));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xe0 | (cp >> 12));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        out[(*o)++] = (char)(0xf0 | (cp >> 18));
        out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    }
}

static unsigned hex4(struct jparser *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->pos < p->len ? p->s[p->pos++] : 0;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            p->bad = true;
    }
    return v;
}

/* At '"': returns the unescaped string (owned) and its length. */
static char *jstring(struct jparser *p, size_t *len)
{
    p->pos++;
    char *out = malloc(p->len - p->pos + 1); /* unescaping never grows */
    size_t o = 0;
    while (p->pos < p->len && p->s[p->pos] != '"') {
        char c = p->s[p->pos++];
        if (c != '\\') {
            out[o++] = c;
            continue;
        }
        char e = p->pos < p->len ? p->s[p->pos++] : 0;
        switch (e) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            unsigned cp = hex4(p);
            if (cp >= 0xd800 && cp < 0xdc00 && p->pos + 1 < p->len && p->s[p->pos] == '\\' &&
                p->s[p->pos + 1] == 'u') {
                p->pos += 2;
                unsigned lo = hex4(p);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            put_utf8(out, &o, cp);
            break;
        }
        default: p->bad = true;
        }
    }
    if (p->pos >= p->len)
        p->bad = true;
    p->pos++;
    out[o] = '\0';
    *len = o;
    return out;
}

static struct jval *jparse(struct jparser *p, int depth)
{
    jws(p);
    if (p->pos >= p->len || depth > 200) {
        p->bad = true;
        return NULL;
    }
    struct jval *v = calloc(1, sizeof(*v));
    char c = p->s[p->pos];
    if (c == '{' || c == '[') {
        bool obj = c == '{';
        v->type = obj ? J_OBJ : J_ARR;
        p->pos++;
        jws(p);
        if (p->pos < p->len && p->s[p->pos] == (obj ? '}' : ']')) {
            p->pos++;
            return v;
        }
        for (;;) {
            v->items = realloc(v->items, (v->n + 1) * sizeof(*v->items));
            if (obj) {
                v->keys = realloc(v->keys, (v->n + 1) * sizeof(*v->keys));
                v->key_lens = realloc(v->key_lens, (v->n + 1) * sizeof(*v->key_lens));
                jws(p);
                if (p->pos >= p->len || p->s[p->pos] != '"') {
                    p->bad = true;
                    v->keys[v->n] = NULL;
                    v->items[v->n++] = NULL;
                    return v;
                }
                v->keys[v->n] = jstring(p, &v->key_lens[v->n]);
                jws(p);
                if (p->pos >= p->len || p->s[p->pos] != ':')
                    p->bad = true;
                p->pos++;
            }
            v->items[v->n++] = jparse(p, depth + 1);
            if (p->bad)
                return v;
            jws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == (obj ? '}' : ']')) {
                p->pos++;
                return v;
            }
            p->bad = true;
            return v;
        }
    }
    if (c == '"') {
        v->type = J_STR;
        v->str = jstring(p, &v->len);
        return v;
    }
    if (strncmp(p->s + p->pos, "true", 4) == 0 || strncmp(p->s + p->pos, "false", 5) == 0) {
        v->type = J_BOOL;
        v->b = c == 't';
        p->pos += v->b ? 4 : 5;
        return v;
    }
    if (strncmp(p->s + p->pos, "null", 4) == 0) {
        p->pos += 4;
        return v;
    }
    size_t start = p->pos;
    while (p->pos < p->len && strchr("+-0123456789.eE", p->s[p->pos]))
        p->pos++;
    if (p->pos == start)
        p->bad = true;
    v->type = J_NUM;
    v->len = p->pos - start;
    v->str = strndup(p->s + start, v->len);
    return v;
}

/* Parses a whole JSON text; returns owned value or NULL. */
static struct jval *json_read(const char *s, size_t len)
{
    struct jparser p = {s, 0, len, false};
    struct jval *v = jparse(&p, 0);
    jws(&p);
    if (p.bad || p.pos != p.len) {
        jfree(v);
        return NULL;
    }
    return v;
}

/* --- toml-test comparison ------------------------------------------------------ */

static const struct jval *obj_get(const struct jval *o, const char *key, size_t klen)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->key_lens[i] == klen && memcmp(o->keys[i], key, klen) == 0)
            return o->items[i];
    return NULL;
}

/* A leaf is {"type": STRING, "value": STRING}. */
static bool is_leaf(const struct jval *v)
{
    if (v->type != J_OBJ || v->n != 2)
        return false;
    const struct jval *t = obj_get(v, "type", 4), *val = obj_get(v, "value", 5);
    return t && val && t->type == J_STR && val->type == J_STR;
}

/* "1987-07-05 17:45:56.600z" -> "1987-07-05T17:45:56.6Z" */
static void norm_datetime(const char *in, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; in[i] && o + 1 < size; i++) {
        char c = in[i];
        if (c == ' ' || c == 't')
            c = 'T';
        if (c == 'z')
            c = 'Z';
        out[o++] = c;
        if (c == '.') {
            size_t f = o;
            while (isdigit((unsigned char)in[i + 1]) && o + 1 < size)
                out[o++] = in[++i];
            while (o > f && out[o - 1] == '0')
                o--;
            if (o == f) /* ".000": no fraction at all */
                o--;
        }
    }
    out[o] = '\0';
}

static int float_class(const char *s, double *d)
{
    const char *b = (*s == '+' || *s == '-') ? s + 1 : s;
    if (strcmp(b, "nan") == 0)
        return 1;
    if (strcmp(b, "inf") == 0)
        return *s == '-' ? 2 : 3;
    char *end;
    *d = strtod(s, &end);
    return *end ? -1 : 0;
}

static bool leaf_equal(const struct jval *a, const struct jval *b)
{
    const struct jval *ta = obj_get(a, "type", 4), *tb = obj_get(b, "type", 4);
    const struct jval *va = obj_get(a, "value", 5), *vb = obj_get(b, "value", 5);
    if (strcmp(ta->str, tb->str) != 0)
        return false;
    const char *t = ta->str;
    if (strcmp(t, "float") == 0) {
        double da = 0, db = 0;
        int ca = float_class(va->str, &da), cb = float_class(vb->str, &db);
        return ca >= 0 && ca == cb && (ca != 0 || da == db);
    }
    if (strcmp(t, "integer") == 0) {
        char *ea, *eb;
        long long ia = strtoll(va->str, &ea, 10), ib = strtoll(vb->str, &eb, 10);
        return !*ea && !*eb && ia == ib;
    }
    if (strncmp(t, "datetime", 8) == 0 || strcmp(t, "date-local") == 0 ||
        strcmp(t, "time-local") == 0) {
        char na[128], nb[128];
        norm_datetime(va->str, na, sizeof(na));
        norm_datetime(vb->str, nb, sizeof(nb));
        return strcmp(na, nb) == 0;
    }
    return va->len == vb->len && memcmp(va->str, vb->str, va->len) == 0;
}

static bool json_equal(const struct jval *a, const struct jval *b)
{
    if (!a || !b)
        return false;
    bool la = is_leaf(a), lb = is_leaf(b);
    if (la || lb)
        return la && lb && leaf_equal(a, b);
    if (a->type != b->type || a->n != b->n)
        return false;
    if (a->type == J_ARR) {
        for (size_t i = 0; i < a->n; i++)
            if (!json_equal(a->items[i], b->items[i]))
                return false;
        return true;
    }
    if (a->type == J_OBJ) {
        for (size_t i = 0; i < a->n; i++) {
            const struct jval *o = obj_get(b, a->keys[i], a->key_lens[i]);
            if (!o || !json_equal(a->items[i], o))
                return false;
        }
        return true;
    }
    return false; /* bare JSON scalars never occur in toml-test output */
}

/* --- the runner ------------------------------------------------------------------ */

struct list {
    char **items;
    size_t n, cap;
};

static void list_add(struct list *l, char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->items = realloc(l->items, l->cap * sizeof(*l->items));
    }
    l->items[l->n++] = s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void collect(const char *dir, struct list *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            collect(path, out);
        } else {
            size_t n = strlen(path);
            if (n > 5 && strcmp(path + n - 5, ".toml") == 0)
                list_add(out, strdup(path));
        }
    }
    closedir(d);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0, r;
    do {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
        }
        r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
    } while (r > 0);
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* stderr must be exactly one line "PATH:LINE:COL: message\n". */
static bool one_positioned_error(const char *err, const char *path)
{
    size_t pl = strlen(path);
    if (strncmp(err, path, pl) != 0 || err[pl] != ':')
        return false;
    const char *s = err + pl + 1;
    for (int field = 0; field < 2; field++) {
        if (!isdigit((unsigned char)*s) || *s == '0')
            return false;
        while (isdigit((unsigned char)*s))
            s++;
        if (*s++ != ':')
            return false;
    }
    if (*s++ != ' ' || *s == '\n' || *s == '\0')
        return false;
    const char *nl = strchr(s, '\n');
    return nl && nl[1] == '\0';
}

static const char *rel(const char *path, const char *root)
{
    size_t n = strlen(root);
    return strncmp(path, root, n) == 0 ? path + n + 1 : path;
}

static void every_toml_test_case_passes(void **state)
{
    (void)state;
    const char *shared = getenv("SALVO_SHARED_DIR");
    assert_non_null(shared);
    char root[2048], dir[4096];
    snprintf(root, sizeof(root), "%s/conformance/toml-test", shared);
    struct list valid = {0}, invalid = {0};
    snprintf(dir, sizeof(dir), "%s/valid", root);
    collect(dir, &valid);
    snprintf(dir, sizeof(dir), "%s/invalid", root);
    collect(dir, &invalid);
    qsort(valid.items, valid.n, sizeof(char *), cmp_str);
    qsort(invalid.items, invalid.n, sizeof(char *), cmp_str);
    /* The suite is known to hold well over a hundred cases of each kind: an empty
     * or truncated checkout must not pass as "all cases passed". */
    assert_true(valid.n >= 100);
    assert_true(invalid.n >= 200);

    size_t valid_ok = 0, invalid_ok = 0;
    for (size_t i = 0; i < valid.n; i++) {
        const char *path = valid.items[i];
        const char *argv[] = {tu_salvo_bin(), "config", "decode", path, NULL};
        struct tu_result r;
        assert_int_equal(tu_run(argv, NULL, 20, &r), 0);
        char json_path[4096];
        snprintf(json_path, sizeof(json_path), "%.*s.json", (int)(strlen(path) - 5), path);
        size_t elen = 0;
        char *expected_text = read_all(json_path, &elen);
        struct jval *got = r.status == 0 ? json_read(r.out, r.out_len) : NULL;
        struct jval *want = expected_text ? json_read(expected_text, elen) : NULL;
        if (!want)
            printf("FAIL %s: cannot read expected %s\n", rel(path, root), json_path);
        else if (r.status != 0)
            printf("FAIL %s: exit %d: %s", rel(path, root), r.status, r.err);
        else if (!got)
            printf("FAIL %s: output is not JSON:\n%s\n", rel(path, root), r.out);
        else if (!json_equal(got, want))
            printf("FAIL %s: JSON differs from expected; got:\n%s\n", rel(path, root), r.out);
        else
            valid_ok++;
        jfree(got);
        jfree(want);
        free(expected_text);
        tu_result_free(&r);
    }
    for (size_t i = 0; i < invalid.n; i++) {
        const char *path = invalid.items[i];
        const char *argv[] = {tu_salvo_bin(), "config", "decode", path, NULL};
        struct tu_result r;
        assert_int_equal(tu_run(argv, NULL, 20, &r), 0);
        if (r.status != 1)
            printf("FAIL %s: exit %d (want 1); stdout:\n%s\n", rel(path, root), r.status, r.out);
        else if (r.out_len != 0)
            printf("FAIL %s: printed on stdout:\n%s\n", rel(path, root), r.out);
        else if (!one_positioned_error(r.err, path))
            printf("FAIL %s: stderr is not one 'file:line:col: message' line: %s\n",
                   rel(path, root), r.err);
        else
            invalid_ok++;
        tu_result_free(&r);
    }
    printf("toml-test valid:   %zu/%zu passed\n", valid_ok, valid.n);
    printf("toml-test invalid: %zu/%zu passed\n", invalid_ok, invalid.n);
    size_t nv = valid.n, ni = invalid.n;
    for (size_t i = 0; i < valid.n; i++)
        free(valid.items[i]);
    for (size_t i = 0; i < invalid.n; i++)
        free(invalid.items[i]);
    free(valid.items);
    free(invalid.items);
    assert_int_equal(valid_ok, nv);
    assert_int_equal(invalid_ok, ni);
}

/* The comparison itself must be able to fail: a wrong value, type, missing key
 * or extra array item makes two documents differ. */
static void comparison_detects_differences(void **state)
{
    (void)state;
    const char *base = "{\"a\": {\"type\": \"float\", \"value\": \"0.5\"}, \"b\": [{\"type\": "
                       "\"datetime\", \"value\": \"1987-07-05T17:45:56.600Z\"}]}";
    const char *same = "{\"b\": [{\"value\": \"1987-07-05 17:45:56.6z\", \"type\": "
                       "\"datetime\"}], \"a\": {\"type\": \"float\", \"value\": \"5e-1\"}}";
    const char *diff[] = {
        "{\"a\": {\"type\": \"float\", \"value\": \"0.25\"}, \"b\": [{\"type\": \"datetime\", "
        "\"value\": \"1987-07-05T17:45:56.600Z\"}]}",
        "{\"a\": {\"type\": \"integer\", \"value\": \"0.5\"}, \"b\": [{\"type\": \"datetime\", "
        "\"value\": \"1987-07-05T17:45:56.600Z\"}]}",
        "{\"a\": {\"type\": \"float\", \"value\": \"0.5\"}}",
        "{\"a\": {\"type\": \"float\", \"value\": \"0.5\"}, \"b\": [{\"type\": \"datetime\", "
        "\"value\": \"1987-07-05T17:45:56.600Z\"}, {\"type\": \"datetime\", \"value\": "
        "\"1987-07-05T17:45:56.600Z\"}]}",
        "{\"a\": {\"type\": \"float\", \"value\": \"0.5\"}, \"b\": [{\"type\": \"datetime\", "
        "\"value\": \"1987-07-05T17:45:56.060Z\"}]}",
    };
    struct jval *b = json_read(base, strlen(base)), *s = json_read(same, strlen(same));
    assert_non_null(b);
    assert_non_null(s);
    assert_true(json_equal(b, s));
    for (size_t i = 0; i < sizeof(diff) / sizeof(diff[0]); i++) {
        struct jval *d = json_read(diff[i], strlen(diff[i]));
        assert_non_null(d);
        assert_false(json_equal(b, d));
        jfree(d);
    }
    jfree(b);
    jfree(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(comparison_detects_differences),
        cmocka_unit_test(every_toml_test_case_passes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
