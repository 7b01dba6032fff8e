/* engine/dns private: the record sets the resolver caches, and the cache's
 * internal API (the public side is eng_dns_cache_new/_free in dns.h). */
#ifndef SALVO_ENG_DNS_INT_H
#define SALVO_ENG_DNS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "dns.h"

#define DNS_T_A     1
#define DNS_T_CNAME 5
#define DNS_T_SOA   6
#define DNS_T_MX    15
#define DNS_T_AAAA  28

/* A record set is bounded: more records than this in one answer are dropped
 * (delivery uses at most a handful of MX hosts and addresses anyway). */
#define DNS_MAX_RR 16
/* Longest presentation-form name without the trailing dot (RFC 1035 §2.3.4). */
#define DNS_NAME_MAX 253

enum dns_rr_status {
    DNS_RR_OK,       /* n >= 1 records */
    DNS_RR_NODATA,   /* the name exists, no record of this type */
    DNS_RR_NXDOMAIN, /* the name does not exist */
};

struct dns_rr {
    uint16_t pref;               /* MX only */
    char name[DNS_NAME_MAX + 1]; /* MX target, lower case, "" = root */
    unsigned char addr[16];      /* A: 4 bytes, AAAA: 16 */
};

struct dns_rrset {
    enum dns_rr_status status;
    size_t n;
    struct dns_rr rr[DNS_MAX_RR];
};

/* Copies the live entry for (qtype, name) into *out. Returns 0, or -ENOENT when
 * there is none (or it has expired). Thread-safe. `name` is lower case. */
int dns_cache_get(struct eng_dns_cache *c, uint16_t qtype, const char *name, struct dns_rrset *out);
/* Stores a copy of *rs for ttl seconds (ttl 0: nothing is stored). Thread-safe. */
void dns_cache_put(struct eng_dns_cache *c, uint16_t qtype, const char *name,
                   const struct dns_rrset *rs, uint32_t ttl);

/* Parses a DNS response (RFC 1035 §4.1) to (qname, qtype): collects the records
 * of qtype owned by qname or by the end of its CNAME chain into rs (status is left
 * to the caller), with *ttl the smallest TTL used and *soa_ttl the RFC 2308 §5
 * negative TTL of an SOA in the authority section (DNS_NO_SOA without one). Returns 0, or
 * -1 when the message is malformed. Exposed for the fuzz target. */
#define DNS_NO_SOA UINT32_MAX
int dns_parse_answer(const unsigned char *buf, int len, const char *qname, uint16_t qtype,
                     struct dns_rrset *rs, uint32_t *ttl, uint32_t *soa_ttl);

#endif
