/* libFuzzer target for the TOML parser: any input must either parse (and then
 * encode to JSON) or fail with exactly one positioned error — never crash, leak
 * or read out of bounds. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* cfg_string_pos() on every string value: positions only move forward with the
 * offset, stay inside the input, and a plain character decodes from itself. */
static void check_string_positions(const struct cfg_value *v, const uint8_t *data, size_t size)
{
    if (v->type == CFG_ARRAY) {
        for (size_t i = 0; i < v->u.array.len; i++)
            check_string_positions(v->u.array.items[i], data, size);
        return;
    }
    if (v->type == CFG_TABLE) {
        for (size_t i = 0; i < v->u.table.len; i++)
            check_string_positions(v->u.table.items[i].value, data, size);
        return;
    }
    if (v->type != CFG_STRING)
        return;
    uint32_t line = 0, col = 0;
    size_t at = 0, at_line = 1; /* byte offset of the start of line `at_line` */
    for (size_t off = 0; off <= v->u.str.len && off < 512; off++) {
        struct cfg_pos p = cfg_string_pos(v, off);
        assert(p.line > line || (p.line == line && p.col >= col));
        line = p.line;
        col = p.col;
        while (at_line < line) {
            while (at < size && data[at] != '\n')
                at++;
            assert(at < size);
            at++;
            at_line++;
        }
        size_t byte = at + col - 1;
        assert(byte < size);
        char c = (char)data[byte];
        if (off < v->u.str.len && c != '\\' && v->u.str.ptr[off] != '\n')
            assert(c == v->u.str.ptr[off]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cfg_diag diag;
    cfg_diag_init(&diag);
    struct cfg_doc *doc = cfg_doc_parse("fuzz.toml", (const char *)data, size, &diag);
    if (doc) {
        assert(diag.errors == 0);
        check_string_positions(doc->root, data, size);
        struct sv_buf out = {0};
        int rc = cfg_to_json(doc->root, &out);
        assert(rc == 0 && out.len > 0);
        sv_buf_free(&out);
        cfg_doc_free(doc);
    } else {
        /* One error, with a real position. */
        assert(diag.errors == 1 && diag.len == 1);
        assert(diag.items[0].pos.line >= 1 && diag.items[0].pos.col >= 1);
    }
    cfg_diag_free(&diag);
    return 0;
}
