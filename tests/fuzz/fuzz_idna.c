/* common/idna: Punycode decoding of arbitrary bytes never crashes, and what
 * decodes re-encodes to the same string (digits are case-insensitive); domain
 * conversion of arbitrary bytes never crashes, and an accepted domain's A-label
 * form decodes to a form that converts back to the same A-labels. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "idna.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    uint32_t cp[128];
    size_t n = 128;
    if (sv_punycode_decode(in, size, cp, &n) == 0) {
        char out[1024];
        size_t on = sizeof(out);
        if (sv_punycode_encode(cp, n, out, &on) != 0 || on != size ||
            strncasecmp(out, in, size) != 0) {
            fprintf(stderr, "punycode round trip: '%.*s' -> '%.*s'\n", (int)size, in, (int)on, out);
            abort();
        }
    }
    char a[512], u[1024], a2[512];
    const char *why;
    sv_idna_domain(in, size, SV_IDNA_MAPPED, u, sizeof(u), &why);
    sv_idna_domain(in, size, SV_IDNA_UNICODE, u, sizeof(u), &why);
    if (sv_idna_domain(in, size, SV_IDNA_ASCII, a, sizeof(a), &why) == 0) {
        if (strlen(a) > SV_IDNA_DOMAIN_MAX)
            abort();
        if (sv_idna_domain(a, strlen(a), SV_IDNA_UNICODE, u, sizeof(u), &why) != 0 ||
            sv_idna_domain(u, strlen(u), SV_IDNA_ASCII, a2, sizeof(a2), &why) != 0 ||
            strcmp(a, a2) != 0) {
            fprintf(stderr, "idna round trip: '%s' -> '%s' -> '%s'\n", a, u, a2);
            abort();
        }
    }
    return 0;
}
