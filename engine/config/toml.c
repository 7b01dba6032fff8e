/* TOML 1.0 parser: placeholder until the parser lands. */
#include "config.h"

#include <stdlib.h>

struct cfg_doc *cfg_doc_parse(const char *file, const char *src, size_t len, struct cfg_diag *diag)
{
    (void)src;
    (void)len;
    cfg_error(diag, ((struct cfg_pos){file, 1, 1}), "TOML parser not implemented yet");
    return NULL;
}

struct cfg_doc *cfg_doc_load_file(const char *path, struct cfg_diag *diag)
{
    return cfg_doc_parse(path, "", 0, diag);
}

void cfg_doc_free(struct cfg_doc *doc)
{
    free(doc);
}

const struct cfg_value *cfg_get(const struct cfg_value *table, const char *dotted)
{
    (void)table;
    (void)dotted;
    return NULL;
}

const struct cfg_entry *cfg_table_find(const struct cfg_value *table, const char *key)
{
    (void)table;
    (void)key;
    return NULL;
}

int cfg_to_json(const struct cfg_value *v, struct sv_buf *out)
{
    (void)v;
    (void)out;
    return -1;
}

const char *cfg_type_name(enum cfg_type t)
{
    (void)t;
    return "?";
}
