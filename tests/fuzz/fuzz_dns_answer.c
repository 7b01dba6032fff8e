/* libFuzzer: the DNS response parser of engine/dns (bytes from the network).
 * Input: one byte choosing the query type (MX / A / AAAA), then the response for
 * "example.test". Besides not crashing, checks what the resolver relies on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint16_t types[] = {DNS_T_MX, DNS_T_A, DNS_T_AAAA};
    if (size < 1 || size > 65535 + 1)
        return 0;
    uint16_t qtype = types[data[0] % 3];
    struct dns_rrset rs;
    memset(&rs, 0xa5, sizeof(rs));
    uint32_t ttl = 0, soa_ttl = 0;
    if (dns_parse_answer(data + 1, (int)(size - 1), "example.test", qtype, &rs, &ttl, &soa_ttl) < 0)
        return 0;
    if (rs.n > DNS_MAX_RR)
        abort();
    for (size_t i = 0; i < rs.n; i++) {
        const char *name = rs.rr[i].name;
        size_t n = strnlen(name, sizeof(rs.rr[i].name));
        if (qtype == DNS_T_MX) {
            /* a terminated, lower-case name without the trailing dot */
            if (n > DNS_NAME_MAX || (n > 0 && name[n - 1] == '.'))
                abort();
            for (size_t k = 0; k < n; k++)
                if (name[k] >= 'A' && name[k] <= 'Z')
                    abort();
        }
    }
    return 0;
}
