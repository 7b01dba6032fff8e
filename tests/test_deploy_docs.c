/* deploy/salvo.example.toml and docs/operator-guide.md kept honest:
 *  - `salvo config check -c deploy/salvo.example.toml` exits 0 with no warnings;
 *  - the example with its "#key = value" lines uncommented still loads cleanly, and
 *    has a key for every plain key of engine/conf.c's schema and every expression
 *    setting sched knows (so a new key without a documented line fails here);
 *  - every error message the product prints (its format string's longest literal
 *    fragment) appears in the operator guide's troubleshooting section. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine.h"
#include "salvo_sched.h"
#include "testutil.h"

static const char *src_dir(void)
{
    const char *s = getenv("SALVO_SOURCE_DIR");
    return s && *s ? s : ".";
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct sv_buf b = {0};
    char tmp[8192];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        sv_buf_append(&b, tmp, n);
    fclose(f);
    if (sv_buf_putc(&b, '\0'))
        return NULL;
    return b.ptr;
}

static char *path_in_src(const char *rel)
{
    struct sv_buf b = {0};
    sv_buf_printf(&b, "%s/%s", src_dir(), rel);
    return b.ptr;
}

/* --- the example config ------------------------------------------------------------ */

static void example_checks_clean(void **state)
{
    (void)state;
    char *path = path_in_src("deploy/salvo.example.toml");
    const char *argv[] = {tu_salvo_bin(), "config", "check", "-c", path, NULL};
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 30, &r), 0);
    if (r.status != 0 || r.err_len != 0)
        fprintf(stderr, "config check said:\n%s", r.err);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.err_len, 0); /* not even a warning */
    char want[4096];
    snprintf(want, sizeof(want), "%s: ok\n", path);
    assert_string_equal(r.out, want);
    tu_result_free(&r);
    free(path);
}

/* Collects the dotted path of every non-table value under `t`. */
static void leaves(const struct cfg_value *t, const char *prefix, char ***out, size_t *n)
{
    for (size_t i = 0; i < t->u.table.len; i++) {
        const struct cfg_entry *e = &t->u.table.items[i];
        struct sv_buf p = {0};
        sv_buf_printf(&p, "%s%s%s", prefix, *prefix ? "." : "", e->key);
        if (e->value->type == CFG_TABLE) {
            leaves(e->value, p.ptr, out, n);
            sv_buf_free(&p);
        } else {
            *out = realloc(*out, (*n + 1) * sizeof(**out));
            assert_non_null(*out);
            (*out)[(*n)++] = p.ptr;
        }
    }
}

/* `pattern` ('*' = any one segment) matches dotted `path` exactly. */
static bool pattern_match(const char *pattern, const char *path)
{
    for (;;) {
        size_t pl = strcspn(pattern, "."), sl = strcspn(path, ".");
        if (!(pl == 1 && *pattern == '*') && (pl != sl || memcmp(pattern, path, pl) != 0))
            return false;
        pattern += pl;
        path += sl;
        if (!*pattern || !*path)
            return !*pattern && !*path;
        pattern++;
        path++;
    }
}

/* The plain keys, read from engine/conf.c's schema table (it is static there):
 * the lines `{"redis.url", CFG_STRING, store_redis_url},` of `schema[] = {`. */
static size_t schema_keys(char ***out)
{
    char *path = path_in_src("engine/conf.c");
    char *text = slurp(path);
    assert_non_null(text);
    char *p = strstr(text, "schema_key schema[] = {");
    assert_non_null(p);
    char *end = strstr(p, "\n};");
    assert_non_null(end);
    size_t n = 0;
    *out = NULL;
    while ((p = strstr(p, "{\"")) != NULL && p < end) {
        p += 2;
        size_t len = strcspn(p, "\"");
        *out = realloc(*out, (n + 1) * sizeof(**out));
        assert_non_null(*out);
        (*out)[n++] = strndup(p, len);
        p += len;
    }
    free(text);
    free(path);
    return n;
}

static void example_covers_every_key(void **state)
{
    (void)state;
    char *path = path_in_src("deploy/salvo.example.toml");
    char *text = slurp(path);
    assert_non_null(text);
    /* "#key = value" (no blank after '#') is a setting left out on purpose. */
    struct sv_buf un = {0};
    for (char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        bool off = line[0] == '#' && len > 1 && !isspace((unsigned char)line[1]) && line[1] != '#';
        sv_buf_append(&un, line + off, len - off);
        sv_buf_putc(&un, '\n');
        line += len + (line[len] == '\n');
    }
    char *dir = tu_mkdtemp();
    char *file = tu_write_file(dir, "all.toml", un.ptr);
    assert_non_null(file);
    chmod(file, 0600); /* redis.password is set: no "readable by every user" warning */

    struct eng_conf c;
    struct cfg_diag d;
    cfg_diag_init(&d);
    int rc = eng_conf_load(file, &c, &d);
    if (d.len)
        cfg_diag_print(&d, stderr);
    assert_int_equal(rc, 0);
    assert_int_equal(d.len, 0);
    assert_int_equal(c.n_remotes, 1);
    assert_int_equal(c.n_nameservers, 2);
    assert_non_null(c.redis_password);

    char **have = NULL;
    size_t nhave = 0;
    leaves(c.doc->root, "", &have, &nhave);

    char **plain = NULL;
    size_t nplain = schema_keys(&plain);
    assert_true(nplain >= 11); /* the parse above found the table */
    size_t nrules = 0;
    const char *const *rules = rule_setting_names(&nrules);
    assert_true(nrules >= 27);

    size_t missing = 0;
    for (size_t i = 0; i < nplain + nrules; i++) {
        const char *want = i < nplain ? plain[i] : rules[i - nplain];
        bool found = false;
        for (size_t j = 0; j < nhave && !found; j++)
            found = pattern_match(want, have[j]);
        if (!found) {
            fprintf(stderr, "deploy/salvo.example.toml: no line for key '%s'\n", want);
            missing++;
        }
    }
    assert_int_equal(missing, 0);

    /* [[queue.limiter.outbound]]: every field conf.c knows (its static
     * limit_fields[] list) is in the example's limiter table. */
    assert_int_equal(c.n_limiters, 1);
    const struct cfg_value *lims = cfg_get(c.doc->root, "queue.limiter.outbound");
    assert_non_null(lims);
    assert_int_equal(lims->type, CFG_ARRAY);
    char *conf_src = path_in_src("engine/conf.c"), *conf_text = slurp(conf_src);
    assert_non_null(conf_text);
    char *f = strstr(conf_text, "limit_fields[] = {");
    assert_non_null(f);
    char *fend = strchr(f, '}');
    size_t nfields = 0;
    while ((f = strchr(f, '"')) != NULL && f < fend) {
        size_t len = strcspn(f + 1, "\"");
        char *name = strndup(f + 1, len);
        if (!cfg_table_find(lims->u.array.items[0], name)) {
            fprintf(stderr, "deploy/salvo.example.toml: no line for queue.limiter.outbound.%s\n",
                    name);
            missing++;
        }
        free(name);
        nfields++;
        f += len + 2;
    }
    assert_int_equal(nfields, 6);
    assert_int_equal(missing, 0);
    free(conf_text);
    free(conf_src);

    for (size_t i = 0; i < nhave; i++)
        free(have[i]);
    free(have);
    for (size_t i = 0; i < nplain; i++)
        free(plain[i]);
    free(plain);
    eng_conf_free(&c);
    cfg_diag_free(&d);
    free(file);
    tu_rmtree(dir);
    free(dir);
    sv_buf_free(&un);
    free(text);
    free(path);
}

/* --- every error message is in the operator guide --------------------------------- */

/* Calls whose format string is an error or warning an operator can see: in every .c
 * file of `dir` (or only in `file`), the call `name(` — or `name` itself when it holds
 * the '(' and the leading arguments, as "snprintf(err, errlen," — and how many
 * string-literal arguments come before the format (cmd_tls.c's fail(r, KIND, FMT)).
 * An entry with a `file` replaces the dir-wide entry of the same name for that file.
 * docs/tools/errors.py has the same table. */
struct emitter {
    const char *dir;
    const char *file;
    const char *name;
    int skip;
};
static const struct emitter emitters[] = {
    {"engine", NULL, "eng_fail", 0},
    {"engine", NULL, "fprintf(stderr,", 0},
    {"engine", NULL, "cfg_error", 0},
    {"engine", NULL, "cfg_warn", 0},
    {"engine", NULL, "err_at", 0},
    {"engine", NULL, "sv_error", 0},
    {"engine", NULL, "sv_warn", 0},
    {"engine", NULL, "fail", 0},
    {"engine", "cmd_tls.c", "fail", 1},
    {"engine", NULL, "finish_err", 0},
    {"engine/config", NULL, "cfg_error", 0},
    {"engine/config", NULL, "cfg_lex_error", 0},
    {"sched", NULL, "cfg_error", 0},
    {"sched", NULL, "cfg_warn", 0},
    {"sched", NULL, "fail", 0},
    {"redisq", NULL, "rq_fail", 0},
    {"redisq", NULL, "sv_error", 0},
    {"redisq", NULL, "sv_warn", 0},
    {"tls", NULL, "tls_conn_fail", 0},
    {"tls", NULL, "snprintf(err, errlen,", 0},
    {"bench/sink", NULL, "sv_error", 0},
    {"bench/sink", NULL, "sv_warn", 0},
    {"bench/sink", NULL, "die", 0},
    {"bench/sink", NULL, "FAIL", 0},
};

/* Is there an entry for exactly this file that replaces `em` there? */
static bool overridden(const struct emitter *em, const char *file)
{
    for (size_t i = 0; i < SV_ARRAY_LEN(emitters); i++) {
        const struct emitter *o = &emitters[i];
        if (!em->file && o->file && strcmp(o->dir, em->dir) == 0 &&
            strcmp(o->name, em->name) == 0 && strcmp(o->file, file) == 0)
            return true;
    }
    return false;
}

/* Reads a C string literal at *p (on the opening quote), appending its unescaped
 * text to `out`; leaves *p after the closing quote. */
static void read_literal(const char **p, struct sv_buf *out)
{
    const char *s = *p + 1;
    while (*s && *s != '"') {
        if (*s == '\\' && s[1]) {
            s++;
            char c = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s == 'r' ? '\r' : *s;
            if (*s == 'x') { /* \xNN: keep a placeholder byte */
                while (isxdigit((unsigned char)s[1]))
                    s++;
                c = '?';
            }
            sv_buf_putc(out, c);
        } else {
            sv_buf_putc(out, *s);
        }
        s++;
    }
    *p = *s ? s + 1 : s;
}

/* The format string of the call whose '(' is at `open`: the (skip+1)-th group of
 * adjacent literals inside the call's parentheses. Returns owned text or NULL. */
static char *call_format(const char *open, int skip)
{
    int depth = 0, group = 0;
    const char *p = open;
    while (*p) {
        if (*p == '(') {
            depth++;
        } else if (*p == ')') {
            if (--depth == 0)
                return NULL;
        } else if (*p == '\'') {
            p++;
            if (*p == '\\')
                p++;
            while (*p && *p != '\'')
                p++;
        } else if (*p == '"') {
            struct sv_buf lit = {0};
            read_literal(&p, &lit);
            for (;;) { /* adjacent literals concatenate */
                const char *q = p;
                while (isspace((unsigned char)*q))
                    q++;
                if (*q != '"')
                    break;
                p = q;
                read_literal(&p, &lit);
            }
            if (group++ == skip)
                return lit.ptr ? lit.ptr : strdup("");
            sv_buf_free(&lit);
            continue;
        }
        p++;
    }
    return NULL;
}

/* The longest literal run of a printf format between conversions, trimmed of
 * blanks, quotes and punctuation: the part an operator can grep for. */
static char *fragment(const char *fmt)
{
    struct sv_buf best = {0}, cur = {0};
    for (const char *s = fmt;; s++) {
        bool conv = *s == '%' && s[1] != '%';
        if (*s == '\0' || conv) {
            const char *t = cur.ptr ? cur.ptr : "";
            size_t a = 0, b = strlen(t);
            while (a < b && strchr(" :'\"(),;.\n[]", t[a]))
                a++;
            while (b > a && strchr(" :'\"(),;.\n[]", t[b - 1]))
                b--;
            if (b - a > best.len) {
                best.len = 0;
                sv_buf_append(&best, t + a, b - a);
            }
            cur.len = 0;
            if (cur.ptr)
                cur.ptr[0] = 0;
            if (!*s)
                break;
            s++;
            while (*s && strchr("-+ #0123456789.*lhzjt", *s))
                s++;
            if (!*s)
                break;
            continue;
        }
        if (*s == '%')
            s++;
        sv_buf_putc(&cur, *s);
    }
    sv_buf_free(&cur);
    return best.ptr;
}

static void guide_lists_every_error(void **state)
{
    (void)state;
    char *gpath = path_in_src("docs/operator-guide.md");
    char *guide = slurp(gpath);
    assert_non_null(guide);
    size_t checked = 0, missing = 0;
    for (size_t k = 0; k < SV_ARRAY_LEN(emitters); k++) {
        const struct emitter *em = &emitters[k];
        char *dpath = path_in_src(em->dir);
        DIR *d = opendir(dpath);
        assert_non_null(d);
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            size_t nl = strlen(de->d_name);
            if (nl < 3 || strcmp(de->d_name + nl - 2, ".c") != 0)
                continue;
            if (em->file ? strcmp(em->file, de->d_name) != 0 : overridden(em, de->d_name))
                continue;
            struct sv_buf fp = {0};
            sv_buf_printf(&fp, "%s/%s", dpath, de->d_name);
            char *text = slurp(fp.ptr);
            assert_non_null(text);
            size_t name_len = strlen(em->name);
            const char *paren = strchr(em->name, '(');
            for (char *p = strstr(text, em->name); p; p = strstr(p + 1, em->name)) {
                if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
                    continue;
                if (!paren && p[name_len] != '(')
                    continue;
                char *fmt = call_format(paren ? p + (paren - em->name) : p + name_len, em->skip);
                if (!fmt)
                    continue;
                char *frag = fragment(fmt);
                if (frag && strlen(frag) >= 8) {
                    checked++;
                    if (!strstr(guide, frag)) {
                        fprintf(stderr, "%s/%s: %s(\"%s\"): '%s' is not in %s\n", em->dir,
                                de->d_name, em->name, fmt, frag, "docs/operator-guide.md");
                        missing++;
                    }
                }
                free(frag);
                free(fmt);
            }
            free(text);
            sv_buf_free(&fp);
        }
        closedir(d);
        free(dpath);
    }
    fprintf(stderr, "%zu messages checked, %zu missing from the guide\n", checked, missing);
    if (missing)
        fprintf(stderr, "fix: python3 docs/tools/errors.py --update docs/operator-guide.md, then "
                        "write a cause/fix note for each new message\n");
    assert_true(checked > 150); /* the scan itself works */
    assert_int_equal(missing, 0);
    free(guide);
    free(gpath);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(example_checks_clean),
        cmocka_unit_test(example_covers_every_key),
        cmocka_unit_test(guide_lists_every_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
