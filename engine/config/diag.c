/* Diagnostics: collected errors and warnings with positions. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cfg_diag_init(struct cfg_diag *d)
{
    memset(d, 0, sizeof(*d));
}

void cfg_diag_free(struct cfg_diag *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->len; i++) {
        free(d->items[i].msg);
        free((char *)d->items[i].pos.file);
    }
    free(d->items);
    memset(d, 0, sizeof(*d));
}

void cfg_diag_add(struct cfg_diag *d, enum cfg_severity sev, struct cfg_pos pos, const char *fmt,
                  ...)
{
    if (sev == CFG_ERROR)
        d->errors++; /* counted even if we cannot store the text */
    if (d->len == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        struct cfg_diag_entry *p = realloc(d->items, cap * sizeof(*p));
        if (!p)
            return;
        d->items = p;
        d->cap = cap;
    }
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char *msg = strdup(buf);
    /* The entry keeps its own copy of the file name: a failed parse frees the
     * document whose name the position borrowed. */
    char *file = pos.file ? strdup(pos.file) : NULL;
    if (!msg || (pos.file && !file)) {
        free(msg);
        free(file);
        return;
    }
    pos.file = file;
    d->items[d->len++] = (struct cfg_diag_entry){.severity = sev, .pos = pos, .msg = msg};
}

void cfg_diag_print(const struct cfg_diag *d, void *stdio_file)
{
    FILE *out = stdio_file;
    for (size_t i = 0; i < d->len; i++) {
        const struct cfg_diag_entry *e = &d->items[i];
        const char *file = e->pos.file ? e->pos.file : "salvo";
        const char *sev = e->severity == CFG_WARNING ? "warning: " : "";
        if (e->pos.line)
            fprintf(out, "%s:%u:%u: %s%s\n", file, e->pos.line, e->pos.col, sev, e->msg);
        else
            fprintf(out, "%s: %s%s\n", file, sev, e->msg);
    }
}
