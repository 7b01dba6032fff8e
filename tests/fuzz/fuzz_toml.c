/* libFuzzer target for the TOML parser: any input must either parse (and then
 * encode to JSON) or fail with exactly one positioned error — never crash, leak
 * or read out of bounds. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cfg_diag diag;
    cfg_diag_init(&diag);
    struct cfg_doc *doc = cfg_doc_parse("fuzz.toml", (const char *)data, size, &diag);
    if (doc) {
        assert(diag.errors == 0);
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
