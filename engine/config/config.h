/* config: TOML 1.0 documents with source positions, and diagnostics.
 *
 * Every value and every key remembers where it was written (file, line, column),
 * so any later check — a bad expression, a bad value, an unknown key — can report
 * "salvo.toml:12:5: message". Pure code: no I/O except cfg_doc_load_file().
 */
#ifndef SALVO_CONFIG_H
#define SALVO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* --- positions and diagnostics ----------------------------------------- */

struct cfg_pos {
    const char *file; /* borrowed from the document (lives as long as it) */
    uint32_t line;    /* 1-based */
    uint32_t col;     /* 1-based, in bytes */
};

enum cfg_severity { CFG_ERROR, CFG_WARNING };

struct cfg_diag_entry {
    enum cfg_severity severity;
    struct cfg_pos pos; /* pos.file is the entry's own copy (outlives the document) */
    char *msg;
};

/* A list of errors and warnings, each printed as "file:line:col: message"
 * (warnings as "file:line:col: warning: message"). */
struct cfg_diag {
    struct cfg_diag_entry *items;
    size_t len, cap;
    size_t errors; /* count of CFG_ERROR entries */
};

void cfg_diag_init(struct cfg_diag *d);
void cfg_diag_free(struct cfg_diag *d); /* NULL-safe */
void cfg_diag_add(struct cfg_diag *d, enum cfg_severity sev, struct cfg_pos pos, const char *fmt,
                  ...) SV_PRINTF(4, 5);
#define cfg_error(d, pos, ...) cfg_diag_add((d), CFG_ERROR, (pos), __VA_ARGS__)
#define cfg_warn(d, pos, ...)  cfg_diag_add((d), CFG_WARNING, (pos), __VA_ARGS__)
/* Writes every entry, one per line, to the FILE* given (as void* to keep stdio out). */
void cfg_diag_print(const struct cfg_diag *d, void *stdio_file);

/* --- the TOML value tree ------------------------------------------------ */

enum cfg_type {
    CFG_STRING,
    CFG_INTEGER,
    CFG_FLOAT,
    CFG_BOOL,
    CFG_DATETIME,       /* offset date-time */
    CFG_DATETIME_LOCAL, /* local date-time */
    CFG_DATE_LOCAL,
    CFG_TIME_LOCAL,
    CFG_ARRAY,
    CFG_TABLE,
};

struct cfg_value;

/* One key of a table, in document order. */
struct cfg_entry {
    char *key;      /* one key segment, unescaped, NUL-terminated */
    size_t key_len; /* keys may contain NUL bytes ("\u0000") */
    struct cfg_pos key_pos;
    struct cfg_value *value;
};

struct cfg_value {
    enum cfg_type type;
    struct cfg_pos pos; /* where the value starts (for a table: its header or first key) */
    union {
        struct {
            char *ptr; /* NUL-terminated; may also contain NUL bytes, see len */
            size_t len;
        } str;           /* CFG_STRING; the datetime kinds keep their text here too, as toml-test
                            prints it: 'T' and 'Z' upper case, a space separator becomes 'T', a
                            fraction gets at least 3 digits */
        int64_t integer; /* CFG_INTEGER */
        double flt;      /* CFG_FLOAT */
        bool boolean;    /* CFG_BOOL */
        struct {
            struct cfg_value **items;
            size_t len, cap;
        } array; /* CFG_ARRAY */
        struct {
            struct cfg_entry *items;
            size_t len, cap;
        } table; /* CFG_TABLE */
    } u;
};

/* A parsed document; owns every value, key and the file name. */
struct cfg_doc {
    char *file;
    struct cfg_value *root; /* always a CFG_TABLE */
};

/* Parses TOML 1.0 from memory. `file` names the source in positions and errors.
 * Returns owned document, or NULL with one error (file:line:col) added to `diag`. */
struct cfg_doc *cfg_doc_parse(const char *file, const char *src, size_t len, struct cfg_diag *diag);
/* Reads and parses a file ("-" is stdin). I/O errors go to `diag` as "file: reason". */
struct cfg_doc *cfg_doc_load_file(const char *path, struct cfg_diag *diag);
void cfg_doc_free(struct cfg_doc *doc); /* NULL-safe */

/* Where byte `off` of a string value's decoded text (v->u.str.ptr) was written:
 * escapes (\\, \", \uXXXX, \UXXXXXXXX), multi-line strings and line-ending
 * backslashes are mapped back to their line and column. An offset inside one
 * escape's bytes gives the escape, one at or past the end the closing quote; a
 * value that is no string (or was not parsed from text) gives v->pos. Borrows v. */
struct cfg_pos cfg_string_pos(const struct cfg_value *v, size_t off);

/* Looks up a dotted path ("queue.outbound.tls.starttls") from a table; every
 * segment must be a plain key (no quoting). Returns borrowed value or NULL. */
const struct cfg_value *cfg_get(const struct cfg_value *table, const char *dotted);
/* Looks up one key in one table. Returns borrowed entry or NULL. */
const struct cfg_entry *cfg_table_find(const struct cfg_value *table, const char *key);

/* Writes the toml-test JSON encoding of `v` ({"type": "...", "value": "..."} leaves). */
int cfg_to_json(const struct cfg_value *v, struct sv_buf *out);

const char *cfg_type_name(enum cfg_type t); /* "string", "integer", ... (toml-test names) */

/* --- helpers for schema checks ------------------------------------------ */

/* Returns the candidate closest to `word` (Damerau-Levenshtein), or NULL when
 * none is within a distance that makes a useful "did you mean" suggestion. */
const char *cfg_suggest(const char *word, const char *const *candidates, size_t n);

#endif
