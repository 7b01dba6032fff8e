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

#endif
