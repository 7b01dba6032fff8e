/* config: private types shared by the TOML parser and the value tree. */
#ifndef SALVO_TOML_INT_H
#define SALVO_TOML_INT_H

#include "config.h"

/* How a table came to be; the TOML 1.0 redefinition rules are checked on these. */
enum {
    NODE_EXPLICIT = 1u << 0, /* defined by a [header]: no second [header], no dotted keys */
    NODE_IMPLICIT = 1u << 1, /* created as a parent of a [a.b] header: [a] may still come */
    NODE_DOTTED = 1u << 2,   /* created or extended by dotted keys in section `section` */
    NODE_FROZEN = 1u << 3,   /* inline table or static array: immutable once closed */
    NODE_AOT = 1u << 4,      /* array created by [[header]]: may be appended to */
};

/* Every value the parser allocates is a node; the public part comes first so a
 * struct cfg_value * converts back with a cast. */
struct cfg_node {
    struct cfg_value v;
    unsigned flags;
    uint32_t section; /* for NODE_DOTTED: the section (header) whose keys touched it */
    /* Tables with many keys get a hash index (open addressing; slot = entry index
     * + 1, 0 = empty) so loading stays linear; small tables are searched in order. */
    uint32_t *index;
    size_t index_cap; /* a power of two, at least twice the entry count; 0 = none */
    /* CFG_STRING values: an owned copy of the token as written, quotes included, so
     * cfg_string_pos() can map a decoded offset back to the source (NULL = unknown). */
    char *raw;
    size_t raw_len;
};

#define CFG_NODE(val) ((struct cfg_node *)(val))

/* Allocates a zeroed value of type `t` (returns owned, NULL on ENOMEM). */
struct cfg_value *cfg_value_new(enum cfg_type t, struct cfg_pos pos);
/* Frees a value and everything below it. NULL-safe. */
void cfg_value_free(struct cfg_value *v);
/* Appends an entry, copying the key; takes `value`. Returns 0 or -ENOMEM (value not taken). */
int cfg_table_add(struct cfg_value *table, const char *key, size_t key_len, struct cfg_pos key_pos,
                  struct cfg_value *value);
/* Finds a key that may contain NUL bytes. Returns borrowed entry or NULL. */
struct cfg_entry *cfg_table_find_n(const struct cfg_value *table, const char *key, size_t len);
/* Appends to an array; takes `item`. Returns 0 or -ENOMEM (item not taken). */
int cfg_array_push(struct cfg_value *array, struct cfg_value *item);

/* --- the parser's state, shared by the scanner (toml_lex.c) and toml.c ------- */

struct parser {
    const char *file;
    const char *src;
    size_t len;
    size_t pos;
    struct cfg_diag *diag;
    bool failed;
    int depth;
    uint32_t section;      /* current [header] section (or inline table) */
    uint32_t next_section; /* counter for new sections */
    /* cfg_lex_pos cache: the line that starts at line_off is number `line`. */
    size_t cache_off, cache_line_off;
    uint32_t cache_line;
    struct sv_buf scratch; /* string bodies while they are unescaped */
};

/* Position of byte offset `off`. Cheap when offsets only move forward (the cache
 * scans from the last call); a step back rescans from the start. */
struct cfg_pos cfg_lex_pos(struct parser *p, size_t off);
/* Records the parse's one error at byte offset `at` (later calls are ignored). */
void cfg_lex_error(struct parser *p, size_t at, const char *fmt, ...) SV_PRINTF(3, 4);
void cfg_lex_oom(struct parser *p);
/* Names the character at `at` for a message: 'x', newline, end of file, ... */
const char *cfg_lex_describe(const struct parser *p, size_t at, char *buf, size_t size);
/* Rejects input that is not UTF-8 (overlong forms, surrogates, > U+10FFFF). */
bool cfg_lex_check_utf8(struct parser *p);
/* At '#': skips to the end of the line, rejecting control characters. */
void cfg_lex_skip_comment(struct parser *p);
/* Skips whitespace, newlines and comments (inside arrays). */
void cfg_lex_skip_ws_nl(struct parser *p);
/* After a key/value pair or header: only whitespace and a comment, then a newline. */
void cfg_lex_expect_eol(struct parser *p, const char *after);
/* Parses any of the four string kinds at p->pos into p->scratch. */
bool cfg_lex_string(struct parser *p);
/* Returns the scratch buffer as an owned, NUL-terminated string (len set). */
char *cfg_lex_scratch_dup(struct parser *p, size_t *len);
/* A bare value at p->pos: boolean, integer, float, inf/nan or date/time, into v. */
bool cfg_lex_scalar(struct parser *p, struct cfg_value *v);

static inline int cfg_lex_peek(const struct parser *p, size_t ahead)
{
    return p->pos + ahead < p->len ? (unsigned char)p->src[p->pos + ahead] : -1;
}

static inline bool cfg_lex_at_newline(const struct parser *p)
{
    return cfg_lex_peek(p, 0) == '\n' || (cfg_lex_peek(p, 0) == '\r' && cfg_lex_peek(p, 1) == '\n');
}

static inline void cfg_lex_skip_newline(struct parser *p)
{
    p->pos += cfg_lex_peek(p, 0) == '\r' ? 2 : 1;
}

static inline void cfg_lex_skip_ws(struct parser *p)
{
    while (cfg_lex_peek(p, 0) == ' ' || cfg_lex_peek(p, 0) == '\t')
        p->pos++;
}

static inline bool cfg_lex_bare_key_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static inline bool cfg_lex_is_control(int c)
{
    return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f;
}

#endif
