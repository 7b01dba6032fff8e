/* `salvo enqueue` and `salvo queue`: the operator's side of the Redis queue.
 * Everything about Redis itself is in redisq/; this file parses arguments, reads
 * and validates input files, and prints. A campaign CSV is read twice: the first
 * pass validates every line (nothing is written if any line is bad), the second
 * streams the recipients into the queue, so memory does not grow with the file. */
#include "engine.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "rq.h"

#define MAX_SHOWN_ERRORS 20
#define MAX_BODY         ((size_t)64 << 20)

/* --- shared ---------------------------------------------------------------- */

/* Matches "--name VALUE" and "--name=VALUE"; advances *i past the value. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != 0)
        return 0;
    if (*i + 1 >= argc) {
        *val = NULL;
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

/* Loads the config and connects; on failure prints one line and returns the exit
 * code (1 for a bad config or URL, 2 when Redis cannot be used). `read_only` for the
 * commands that only look (stats, list, show): they then work on a replica and on a
 * Redis at maxmemory, when an operator most needs them, and create no keys. */
static int open_queue(const char *conf_path, bool read_only, struct rq **out)
{
    *out = NULL;
    struct eng_conf conf;
    int rc = eng_conf_load_or_report(conf_path, &conf);
    if (rc)
        return rc;
    /* SALVO_REDIS_URL overrides redis.url (tests, one-off commands). */
    const char *env = getenv("SALVO_REDIS_URL");
    const char *url = env && *env ? env : conf.redis_url;
    struct rq_opts o = {.url = url,
                        .queue = conf.queue_name,
                        .password = conf.redis_password,
                        .retention_ms = conf.retention_ms,
                        .read_only = read_only};
    struct rq *q;
    rc = rq_new(&o, &q);
    if (rc) {
        rc = eng_fail(rc == -ENOMEM ? EXIT_RUNTIME : EXIT_USER, "%s", rq_error(q));
        rq_free(q);
        eng_conf_free(&conf);
        return rc;
    }
    eng_conf_free(&conf);
    if (rq_connect(q)) {
        rc = eng_fail(EXIT_RUNTIME, "%s", rq_error(q));
        rq_free(q);
        return rc;
    }
    *out = q;
    return 0;
}

static int redis_fail(struct rq *q)
{
    int rc = eng_fail(EXIT_RUNTIME, "%s", rq_error(q));
    rq_free(q);
    return rc;
}

/* A Redis failure after the message was created: say how to clean up. */
static int incomplete(struct rq *q, uint64_t id)
{
    return eng_fail(EXIT_RUNTIME, "%s (message %llu is incomplete: salvo queue cancel %llu)",
                    rq_error(q), (unsigned long long)id, (unsigned long long)id);
}

static int read_all(FILE *f, const char *name, struct sv_buf *out)
{
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        if (out->len + n > MAX_BODY)
            return eng_fail(EXIT_USER, "%s: larger than %zu MiB", name, MAX_BODY >> 20);
        if (sv_buf_append(out, buf, n))
            return eng_fail(EXIT_RUNTIME, "%s: out of memory", name);
    }
    if (ferror(f))
        return eng_fail(EXIT_USER, "%s: read error: %s", name, strerror(errno));
    /* A message is text without NUL (RFC 5322 2.1; 8BITMIME, RFC 6152, allows 8-bit
     * bytes but still no NUL): SMTP cannot carry it, so refuse it here, not at DATA. */
    const char *nul = out->len ? memchr(out->ptr, 0, out->len) : NULL;
    if (nul)
        return eng_fail(EXIT_USER, "%s: byte %zu: message contains a NUL byte", name,
                        (size_t)(nul - out->ptr) + 1);
    return 0;
}

/* --- errors of a file, at most MAX_SHOWN_ERRORS shown -------------------------- */

struct errs {
    size_t count;
};

static void SV_PRINTF(4, 5)
    err_at(struct errs *e, const char *file, size_t line, const char *fmt, ...)
{
    if (e->count++ >= MAX_SHOWN_ERRORS)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s:%zu: %s\n", file, line, msg);
}

static void errs_finish(const struct errs *e)
{
    if (e->count > MAX_SHOWN_ERRORS)
        fprintf(stderr, "... and %zu more\n", e->count - MAX_SHOWN_ERRORS);
}

/* Strips spaces around `s` in place (the string keeps its start); returns s. */
static char *trim(char *s)
{
    size_t lead = strspn(s, " ");
    if (lead)
        memmove(s, s + lead, strlen(s + lead) + 1);
    size_t l = strlen(s);
    while (l && s[l - 1] == ' ')
        s[--l] = 0;
    return s;
}

/* --- templates ------------------------------------------------------------------ */

struct tpl_check {
    const char *file;
    char **cols; /* owned: the header's column names, trimmed */
    size_t ncols;
    size_t email_col;
    struct errs *errs;
    /* columns the template uses, in order of first use (indexes into the header) */
    size_t *used;
    size_t nused;
    bool any;
};

static int tpl_visit(void *arg, const char *name, size_t len, size_t line)
{
    struct tpl_check *t = arg;
    t->any = true;
    if (len == 5 && strncmp(name, "email", 5) == 0)
        return 0;
    for (size_t i = 0; i < t->ncols; i++) {
        const char *col = t->cols[i];
        if (strlen(col) == len && strncmp(col, name, len) == 0) {
            for (size_t k = 0; k < t->nused; k++)
                if (t->used[k] == i)
                    return 0;
            t->used[t->nused++] = i;
            return 0;
        }
    }
    struct sv_buf cols = {0};
    for (size_t i = 0; i < t->ncols; i++)
        sv_buf_printf(&cols, "%s%s", i ? ", " : "", t->cols[i]);
    err_at(t->errs, t->file, line, "unknown placeholder {{%.*s}}: the CSV has no such column (%s)",
           (int)len, name, cols.ptr ? cols.ptr : "");
    sv_buf_free(&cols);
    return 0;
}

/* --- progress bar ----------------------------------------------------------------- */

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(size_t done, size_t total, bool final)
{
    static double last;
    double now = mono_s();
    if (!final && now - last < 0.2)
        return;
    last = now;
    int pct = total ? (int)(done * 100 / total) : 100;
    char bar[31];
    for (int i = 0; i < 30; i++)
        bar[i] = i < pct * 30 / 100 ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\renqueue [%s] %3d%% %zu/%zu recipients%s", bar, pct, done, total,
            final ? "\n" : "");
    fflush(stderr);
}

/* --- enqueue ---------------------------------------------------------------------- */

static const char enqueue_usage[] =
    "usage: salvo enqueue [-c FILE] --from ADDR --to ADDR[,ADDR...] [FILE|-]\n"
    "       salvo enqueue [-c FILE] --from ADDR --recipients CSV --template FILE\n"
    "                     [--campaign NAME]\n"
    "\n"
    "Queues one message (RFC 5322 text from FILE or stdin) for the --to recipients, or\n"
    "a campaign: one template, one recipient per CSV line. The CSV has a header line;\n"
    "the `email` column is required, the others are fields: {{column}} in the template\n"
    "(headers and body) is replaced per recipient ({{email}} by the address). Every\n"
    "line is checked before anything is written; errors are reported as file:line.\n"
    "Prints the message id on stdout.\n"
    "\n"
    "  -c FILE           config file (else $SALVO_CONFIG, ./salvo.toml, the default)\n"
    "  --from ADDR       envelope sender\n"
    "  --to LIST         comma-separated recipients of a single message\n"
    "  --recipients CSV  the campaign's recipients (a file: it is read twice)\n"
    "  --template FILE   the campaign's message template\n"
    "  --campaign NAME   a name for `salvo queue stats --campaign NAME`\n"
    "Environment: SALVO_REDIS_URL overrides redis.url.\n"
    "Exit: 0 ok, 1 bad input (nothing enqueued), 2 Redis failure.\n";

struct enq_args {
    const char *conf, *from, *to, *csv, *tpl, *campaign, *file;
};

static int enqueue_single(const struct enq_args *a)
{
    const char *why;
    if (rq_addr_check(a->from, &why))
        return eng_fail(EXIT_USER, "--from: malformed address '%s': %s", a->from, why);
    /* Validate every recipient before touching Redis. */
    char *list = strdup(a->to);
    if (!list)
        return eng_fail(EXIT_RUNTIME, "out of memory");
    size_t nto = 0, bad = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t l = strlen(t);
        while (l && t[l - 1] == ' ')
            t[--l] = 0;
        if (rq_addr_check(t, &why)) {
            fprintf(stderr, "salvo: --to: malformed address '%s': %s\n", t, why);
            bad++;
        }
        nto++;
    }
    free(list);
    if (bad)
        return EXIT_USER;
    if (nto == 0)
        return eng_fail(EXIT_USER, "--to: no recipients");

    const char *name = a->file && strcmp(a->file, "-") != 0 ? a->file : "(stdin)";
    FILE *f = strcmp(name, "(stdin)") == 0 ? stdin : fopen(a->file, "rb");
    if (!f)
        return eng_fail(EXIT_USER, "%s: %s", a->file, strerror(errno));
    struct sv_buf body = {0};
    int rc = read_all(f, name, &body);
    if (f != stdin)
        fclose(f);
    if (rc) {
        sv_buf_free(&body);
        return rc;
    }
    if (body.len == 0) {
        sv_buf_free(&body);
        return eng_fail(EXIT_USER, "%s: empty message", name);
    }

    struct rq *q;
    if ((rc = open_queue(a->conf, false, &q))) {
        sv_buf_free(&body);
        return rc;
    }
    struct rq_msg_spec spec = {.from = a->from, .body = body.ptr, .body_len = body.len};
    struct rq_enq *e;
    uint64_t id;
    rc = rq_enq_begin(q, &spec, &e, &id);
    sv_buf_free(&body);
    if (rc)
        return redis_fail(q);
    list = strdup(a->to);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && !rc;
         t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t l = strlen(t);
        while (l && t[l - 1] == ' ')
            t[--l] = 0;
        rc = rq_enq_add(e, t, NULL);
    }
    free(list);
    if (rc || rq_enq_end(e)) {
        if (rc)
            rq_enq_free(e);
        rc = incomplete(q, id);
        rq_free(q);
        return rc;
    }
    printf("%llu\n", (unsigned long long)id);
    rq_free(q);
    return EXIT_OK;
}

/* Pass 1: checks the header, the template's placeholders and every line. */
static int campaign_validate(const struct enq_args *a, FILE *f, struct rq_csv *c,
                             const struct sv_buf *tpl, struct tpl_check *tc, size_t *ncols,
                             size_t *nrcpt)
{
    struct errs errs = {0};
    tc->errs = &errs;
    *nrcpt = 0;
    int got = rq_csv_next(c);
    if (got < 0)
        return eng_fail(EXIT_RUNTIME, "out of memory");
    if (got == 0)
        return eng_fail(EXIT_USER, "%s: empty file (expected a header line with an 'email' column)",
                        a->csv);
    /* The header: names trimmed, unique, one of them `email`. */
    size_t hline = rq_csv_line(c), bl, bc;
    unsigned char bb;
    if (rq_csv_error(c) || rq_csv_utf8_error(c, &bl, &bc, &bb))
        return eng_fail(EXIT_USER, "%s:%zu: bad header: %s", a->csv, hline,
                        rq_csv_error(c) ? rq_csv_error(c) : "not valid UTF-8");
    size_t nf = rq_csv_nfields(c);
    tc->email_col = SIZE_MAX;
    for (size_t i = 0; i < nf; i++) {
        char *col = trim(rq_csv_field(c, i));
        if (!*col)
            err_at(&errs, a->csv, hline, "empty column name (column %zu)", i + 1);
        for (size_t k = 0; k < i; k++)
            if (strcmp(rq_csv_field(c, k), col) == 0)
                err_at(&errs, a->csv, hline, "duplicate column '%s'", col);
        if (strcasecmp(col, "email") == 0)
            tc->email_col = i;
    }
    if (tc->email_col == SIZE_MAX)
        err_at(&errs, a->csv, hline, "no 'email' column in the header");
    *ncols = nf;
    tc->cols = calloc(nf, sizeof(*tc->cols));
    tc->used = calloc(nf + 1, sizeof(*tc->used));
    if (!tc->cols || !tc->used)
        return eng_fail(EXIT_RUNTIME, "out of memory");
    for (size_t i = 0; i < nf; i++)
        if (!(tc->cols[tc->ncols++] = strdup(rq_csv_field(c, i))))
            return eng_fail(EXIT_RUNTIME, "out of memory");
    /* The template may use only the columns ({{email}} is always there). */
    rq_placeholders(tpl->ptr, tpl->len, tpl_visit, tc);
    /* Records. */
    while ((got = rq_csv_next(c)) == 1) {
        size_t line = rq_csv_line(c);
        if (rq_csv_error(c)) {
            err_at(&errs, a->csv, line, "%s", rq_csv_error(c));
            continue;
        }
        if (rq_csv_utf8_error(c, &bl, &bc, &bb)) {
            err_at(&errs, a->csv, bl, "not valid UTF-8 (byte 0x%02X at column %zu)", bb, bc);
            continue;
        }
        if (rq_csv_nfields(c) != *ncols) {
            err_at(&errs, a->csv, line, "expected %zu fields, found %zu", *ncols,
                   rq_csv_nfields(c));
            continue;
        }
        if (tc->email_col != SIZE_MAX) {
            const char *why, *addr = trim(rq_csv_field(c, tc->email_col));
            if (!*addr) {
                err_at(&errs, a->csv, line, "empty email");
                continue;
            }
            if (rq_addr_check(addr, &why)) {
                err_at(&errs, a->csv, line, "malformed address '%s': %s", addr, why);
                continue;
            }
        }
        bool bad = false;
        for (size_t k = 0; k < tc->nused && !bad; k++) {
            /* A line break would let a value add headers to the message. */
            if ((bad = strpbrk(rq_csv_field(c, tc->used[k]), "\r\n") != NULL))
                err_at(&errs, a->csv, line, "value of '%s' contains a line break",
                       tc->cols[tc->used[k]]);
        }
        if (bad)
            continue;
        (*nrcpt)++;
    }
    if (got < 0)
        return eng_fail(EXIT_RUNTIME, "out of memory");
    if (ferror(f))
        return eng_fail(EXIT_USER, "%s: read error: %s", a->csv, strerror(errno));
    if (errs.count) {
        errs_finish(&errs);
        return eng_fail(EXIT_USER, "%s: %zu error%s; nothing was enqueued", a->csv, errs.count,
                        errs.count == 1 ? "" : "s");
    }
    if (*nrcpt == 0)
        return eng_fail(EXIT_USER, "%s: no recipients (only a header)", a->csv);
    return 0;
}

static int enqueue_campaign(const struct enq_args *a)
{
    const char *why;
    if (rq_addr_check(a->from, &why))
        return eng_fail(EXIT_USER, "--from: malformed address '%s': %s", a->from, why);
    if (strcmp(a->csv, "-") == 0)
        return eng_fail(EXIT_USER, "--recipients: needs a file (it is read twice), not stdin");
    FILE *tf = fopen(a->tpl, "rb");
    if (!tf)
        return eng_fail(EXIT_USER, "%s: %s", a->tpl, strerror(errno));
    struct sv_buf tpl = {0};
    int rc = read_all(tf, a->tpl, &tpl);
    fclose(tf);
    if (rc) {
        sv_buf_free(&tpl);
        return rc;
    }
    if (tpl.len == 0) {
        sv_buf_free(&tpl);
        return eng_fail(EXIT_USER, "%s: empty template", a->tpl);
    }
    FILE *f = fopen(a->csv, "rb");
    struct rq_csv *c = NULL;
    if (!f || rq_csv_new(f, &c)) {
        rc = f ? eng_fail(EXIT_RUNTIME, "out of memory")
               : eng_fail(EXIT_USER, "%s: %s", a->csv, strerror(errno));
        if (f)
            fclose(f);
        sv_buf_free(&tpl);
        return rc;
    }
    struct tpl_check tc = {.file = a->tpl};
    size_t ncols = 0, nrcpt = 0;
    struct rq *q = NULL;
    struct rq_enq *e = NULL;
    const char **names = NULL, **values = NULL;
    rc = campaign_validate(a, f, c, &tpl, &tc, &ncols, &nrcpt);
    if (rc)
        goto out;

    /* Pass 2: the header again (for the column names), then the recipients. */
    int got = rq_csv_rewind(c) ? -1 : rq_csv_next(c);
    names = calloc(tc.nused + 1, sizeof(*names));
    values = calloc(tc.nused + 1, sizeof(*values));
    if (got != 1 || !names || !values) {
        rc = eng_fail(EXIT_RUNTIME, "%s: changed while being read", a->csv);
        goto out;
    }
    for (size_t k = 0; k < tc.nused; k++)
        names[k] = tc.cols[tc.used[k]];
    if ((rc = open_queue(a->conf, false, &q)))
        goto out;
    struct rq_msg_spec spec = {.from = a->from,
                               .body = tpl.ptr,
                               .body_len = tpl.len,
                               .personalised = tc.any,
                               .fields = names,
                               .nfields = tc.nused,
                               .campaign = a->campaign};
    uint64_t id;
    if ((rc = rq_enq_begin(q, &spec, &e, &id))) {
        /* Rebinding the name would orphan the old campaign's name lookups. */
        if (rc == -EEXIST)
            rc = eng_fail(EXIT_USER,
                          "--campaign: '%s' already exists (message %llu); nothing was "
                          "enqueued, choose another name",
                          a->campaign, (unsigned long long)id);
        else
            rc = eng_fail(EXIT_RUNTIME, "%s", rq_error(q));
        goto out;
    }
    bool tty = isatty(2);
    size_t done = 0;
    while ((got = rq_csv_next(c)) == 1) {
        if (rq_csv_error(c) || rq_csv_nfields(c) != ncols) {
            rc = eng_fail(EXIT_RUNTIME,
                          "%s:%zu: changed while being read; message %llu is "
                          "incomplete (cancel it with: salvo queue cancel %llu)",
                          a->csv, rq_csv_line(c), (unsigned long long)id, (unsigned long long)id);
            goto out;
        }
        for (size_t k = 0; k < tc.nused; k++)
            values[k] = rq_csv_field(c, tc.used[k]);
        if (rq_enq_add(e, trim(rq_csv_field(c, tc.email_col)), values)) {
            rc = incomplete(q, id);
            goto out;
        }
        if (tty && (++done & 1023) == 0)
            progress(done, nrcpt, false);
    }
    rc = rq_enq_end(e);
    e = NULL;
    if (rc) {
        rc = incomplete(q, id);
        goto out;
    }
    if (tty)
        progress(nrcpt, nrcpt, true);
    printf("%llu\n", (unsigned long long)id);
    rc = EXIT_OK;
out:
    rq_enq_free(e);
    rq_free(q);
    for (size_t k = 0; k < tc.ncols; k++)
        free(tc.cols[k]);
    free(tc.cols);
    free(names);
    free(values);
    free(tc.used);
    rq_csv_free(c);
    fclose(f);
    sv_buf_free(&tpl);
    return rc;
}

int cmd_enqueue(int argc, char **argv)
{
    struct enq_args a = {0};
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(enqueue_usage, stdout);
            return EXIT_OK;
        }
        if ((m = opt_value(argc, argv, &i, "-c", &v)) ||
            (m = opt_value(argc, argv, &i, "--config", &v))) {
            a.conf = v;
        } else if ((m = opt_value(argc, argv, &i, "--from", &v))) {
            a.from = v;
        } else if ((m = opt_value(argc, argv, &i, "--to", &v))) {
            a.to = v;
        } else if ((m = opt_value(argc, argv, &i, "--recipients", &v))) {
            a.csv = v;
        } else if ((m = opt_value(argc, argv, &i, "--template", &v))) {
            a.tpl = v;
        } else if ((m = opt_value(argc, argv, &i, "--campaign", &v))) {
            a.campaign = v;
        } else if (argv[i][0] == '-' && argv[i][1] != 0) {
            return eng_fail(EXIT_USER, "enqueue: unknown option '%s'; see salvo enqueue --help",
                            argv[i]);
        } else if (!a.file) {
            a.file = argv[i];
            continue;
        } else {
            return eng_fail(EXIT_USER, "enqueue: more than one message file ('%s', '%s')", a.file,
                            argv[i]);
        }
        if (m < 0)
            return eng_fail(EXIT_USER, "enqueue: %s needs a value", argv[i]);
    }
    if (!a.from)
        return eng_fail(EXIT_USER, "enqueue: --from ADDR is required; see salvo enqueue --help");
    if (a.to && (a.csv || a.tpl))
        return eng_fail(EXIT_USER, "enqueue: use either --to or --recipients/--template");
    if (a.to) {
        if (a.campaign)
            return eng_fail(EXIT_USER, "enqueue: --campaign goes with --recipients");
        return enqueue_single(&a);
    }
    if (!a.csv || !a.tpl)
        return eng_fail(EXIT_USER, "enqueue: give --to, or both --recipients and --template; see "
                                   "salvo enqueue --help");
    if (a.file)
        return eng_fail(EXIT_USER, "enqueue: '%s': a campaign takes its body from --template",
                        a.file);
    return enqueue_campaign(&a);
}

/* --- queue ------------------------------------------------------------------------- */

static const char queue_usage[] =
    "usage: salvo queue stats  [-c FILE] [--json] [--campaign ID|NAME]\n"
    "       salvo queue list   [-c FILE] [--limit N]\n"
    "       salvo queue show   ID|NAME [-c FILE]\n"
    "       salvo queue retry  ID|NAME [-c FILE] [--dead]\n"
    "       salvo queue cancel ID|NAME [-c FILE]\n"
    "\n"
    "stats   recipients ready, scheduled (waiting to retry), inflight (claimed by a\n"
    "        process), delivered, bounced, dead (expired or cancelled)\n"
    "list    the newest messages and campaigns with their counts\n"
    "show    one message: sender, campaign, size, counts\n"
    "retry   make the message's scheduled retries ready now; with --dead, also its\n"
    "        dead letters (bounced, expired, poison): back to ready with retry_num 0\n"
    "cancel  every recipient not yet final becomes dead with reason \"cancelled\"\n"
    "Environment: SALVO_REDIS_URL overrides redis.url.\n"
    "Exit: 0 ok, 1 bad arguments or unknown id, 2 Redis failure.\n";

static void fmt_time(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int lookup(struct rq *q, const char *arg, uint64_t *id)
{
    int rc = rq_msg_lookup(q, arg, id);
    if (rc == -ENOENT) {
        rc = eng_fail(EXIT_USER, "no message or campaign '%s' in this queue", arg);
        rq_free(q);
        return rc;
    }
    return rc ? redis_fail(q) : 0;
}

static const char *msg_state(const struct rq_msg_info *m)
{
    return m->cancelled ? "cancelled" : m->open ? "enqueueing" : m->done ? "done" : "pending";
}

static int queue_stats(struct rq *q, const char *campaign, bool json)
{
    uint64_t id = 0;
    int rc;
    if (campaign && (rc = lookup(q, campaign, &id)))
        return rc;
    struct rq_stats st;
    if (rq_stats_get(q, id, &st))
        return redis_fail(q);
    if (json) {
        printf("{");
        if (id)
            printf("\"message\": %llu, ", (unsigned long long)id);
        printf("\"ready\": %lld, \"scheduled\": %lld, \"inflight\": %lld, \"delivered\": %lld, "
               "\"bounced\": %lld, \"dead\": %lld, \"duplicates\": %lld, \"reclaimed\": %lld}\n",
               (long long)st.ready, (long long)st.scheduled, (long long)st.inflight,
               (long long)st.delivered, (long long)st.bounced, (long long)st.dead,
               (long long)st.duplicates, (long long)st.reclaimed);
    } else {
        printf("ready      %lld\nscheduled  %lld\ninflight   %lld\ndelivered  %lld\n"
               "bounced    %lld\ndead       %lld\n",
               (long long)st.ready, (long long)st.scheduled, (long long)st.inflight,
               (long long)st.delivered, (long long)st.bounced, (long long)st.dead);
        if (st.duplicates || st.reclaimed)
            printf("duplicates %lld\nreclaimed  %lld\n", (long long)st.duplicates,
                   (long long)st.reclaimed);
    }
    rq_free(q);
    return EXIT_OK;
}

static int queue_list(struct rq *q, size_t limit)
{
    uint64_t *ids;
    size_t n;
    if (rq_msg_list(q, limit, &ids, &n))
        return redis_fail(q);
    printf("%-8s %-20s %-10s %-16s %8s %8s %9s %7s %6s\n", "ID", "CREATED", "STATE", "CAMPAIGN",
           "TOTAL", "PENDING", "DELIVERED", "BOUNCED", "DEAD");
    for (size_t i = 0; i < n; i++) {
        struct rq_msg_info m;
        int rc = rq_msg_info_get(q, ids[i], &m);
        if (rc == -ENOENT)
            continue;
        if (rc) {
            free(ids);
            return redis_fail(q);
        }
        char when[32];
        fmt_time(m.created_ms, when, sizeof(when));
        printf("%-8llu %-20s %-10s %-16s %8lld %8lld %9lld %7lld %6lld\n", (unsigned long long)m.id,
               when, msg_state(&m), *m.campaign ? m.campaign : "-", (long long)m.total,
               (long long)(m.st.ready + m.st.scheduled + m.st.inflight), (long long)m.st.delivered,
               (long long)m.st.bounced, (long long)m.st.dead);
        rq_msg_info_free(&m);
    }
    free(ids);
    rq_free(q);
    return EXIT_OK;
}

static int queue_show(struct rq *q, const char *arg)
{
    uint64_t id;
    int rc = lookup(q, arg, &id);
    if (rc)
        return rc;
    struct rq_msg_info m;
    if (rq_msg_info_get(q, id, &m))
        return redis_fail(q);
    char when[32];
    fmt_time(m.created_ms, when, sizeof(when));
    printf("id         %llu\nfrom       %s\ncampaign   %s\ncreated    %s\nstate      %s\n"
           "body       %zu bytes%s\nrecipients %lld\nready      %lld\nscheduled  %lld\n"
           "inflight   %lld\ndelivered  %lld\nbounced    %lld\ndead       %lld\n",
           (unsigned long long)m.id, m.from, *m.campaign ? m.campaign : "-", when, msg_state(&m),
           m.body_len, m.personalised ? " (template)" : "", (long long)m.total,
           (long long)m.st.ready, (long long)m.st.scheduled, (long long)m.st.inflight,
           (long long)m.st.delivered, (long long)m.st.bounced, (long long)m.st.dead);
    rq_msg_info_free(&m);
    rq_free(q);
    return EXIT_OK;
}

static int queue_retry_cancel(struct rq *q, const char *arg, bool cancel, bool dead)
{
    uint64_t id;
    int rc = lookup(q, arg, &id);
    if (rc)
        return rc;
    int64_t n = 0;
    if (cancel) {
        if (rq_msg_cancel(q, id, &n))
            return redis_fail(q);
        printf("message %llu: %lld recipient%s cancelled\n", (unsigned long long)id, (long long)n,
               n == 1 ? "" : "s");
    } else {
        struct rq_msg_info m;
        if (rq_msg_info_get(q, id, &m))
            return redis_fail(q);
        bool cancelled = m.cancelled;
        rq_msg_info_free(&m);
        if (cancelled) {
            rq_free(q);
            return eng_fail(EXIT_USER, "message %llu was cancelled; nothing to retry",
                            (unsigned long long)id);
        }
        if (rq_msg_retry_now(q, id, &n))
            return redis_fail(q);
        printf("message %llu: %lld recipient%s ready now\n", (unsigned long long)id, (long long)n,
               n == 1 ? "" : "s");
        if (dead) {
            int rc2 = rq_msg_revive_dead(q, id, &n);
            if (rc2 == -ENODATA || rc2 == -ECANCELED) {
                rq_free(q);
                return eng_fail(EXIT_USER, "message %llu: %s; its dead letters cannot be retried",
                                (unsigned long long)id,
                                rc2 == -ENODATA ? "its body was dropped when its last "
                                                  "recipient became final (enqueue it again)"
                                                : "it was cancelled");
            }
            if (rc2)
                return redis_fail(q);
            printf("message %llu: %lld dead recipient%s ready again (retry_num 0)\n",
                   (unsigned long long)id, (long long)n, n == 1 ? "" : "s");
        }
    }
    rq_free(q);
    return EXIT_OK;
}

int cmd_queue(int argc, char **argv)
{
    const char *sub = NULL, *conf = NULL, *campaign = NULL, *arg = NULL, *limit_s = NULL;
    bool json = false, dead = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m = 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(queue_usage, stdout);
            return EXIT_OK;
        }
        if ((m = opt_value(argc, argv, &i, "-c", &v)) ||
            (m = opt_value(argc, argv, &i, "--config", &v)))
            conf = v;
        else if ((m = opt_value(argc, argv, &i, "--campaign", &v)))
            campaign = v;
        else if ((m = opt_value(argc, argv, &i, "--limit", &v)))
            limit_s = v;
        else if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--dead") == 0)
            dead = true;
        else if (argv[i][0] == '-' && argv[i][1] != 0)
            return eng_fail(EXIT_USER, "queue: unknown option '%s'; see salvo queue --help",
                            argv[i]);
        else if (!sub)
            sub = argv[i];
        else if (!arg)
            arg = argv[i];
        else
            return eng_fail(EXIT_USER, "queue: unexpected argument '%s'", argv[i]);
        if (m < 0)
            return eng_fail(EXIT_USER, "queue: %s needs a value", argv[i]);
    }
    if (!sub) {
        fputs(queue_usage, stderr);
        return EXIT_USER;
    }
    bool stats = strcmp(sub, "stats") == 0, list = strcmp(sub, "list") == 0;
    bool show = strcmp(sub, "show") == 0, retry = strcmp(sub, "retry") == 0,
         cancel = strcmp(sub, "cancel") == 0;
    if (!stats && !list && !show && !retry && !cancel)
        return eng_fail(EXIT_USER,
                        "queue: unknown subcommand '%s' (stats, list, show, retry, "
                        "cancel)",
                        sub);
    if ((stats || list) && arg)
        return eng_fail(EXIT_USER, "queue %s: unexpected argument '%s'", sub, arg);
    if ((show || retry || cancel) && !arg)
        return eng_fail(EXIT_USER, "queue %s: needs a message id or campaign name", sub);
    if ((json || campaign) && !stats)
        return eng_fail(EXIT_USER, "queue %s: --json and --campaign go with 'stats'", sub);
    if (dead && !retry)
        return eng_fail(EXIT_USER, "queue %s: --dead goes with 'retry'", sub);
    size_t limit = 50;
    if (limit_s) {
        char *end;
        long l = strtol(limit_s, &end, 10);
        if (!list || *end || l <= 0 || l > 100000)
            return eng_fail(EXIT_USER, "queue: --limit takes 1..100000 and goes with 'list'");
        limit = (size_t)l;
    }
    struct rq *q;
    int rc = open_queue(conf, stats || list || show, &q);
    if (rc)
        return rc;
    if (stats)
        return queue_stats(q, campaign, json);
    if (list)
        return queue_list(q, limit);
    if (show)
        return queue_show(q, arg);
    return queue_retry_cancel(q, arg, cancel, dead);
}
