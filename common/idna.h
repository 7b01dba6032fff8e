/* Internationalised domain names: Punycode (RFC 3492) and the IDNA conversions of
 * a domain between its UTF-8 form and its A-labels ("xn--...", RFC 5890/5891).
 *
 * Without Unicode data tables this is not full UTS #46 processing: ASCII is
 * lower-cased and the upper-case letters of Latin-1, Latin Extended-A, Latin
 * Extended Additional, Greek, Cyrillic and Armenian are mapped to lower case, as
 * are full-width Latin letters and digits and the ideographic full stops; other
 * input must already be lower case and in NFC. Code points that are cheap to
 * recognise as disallowed (controls, spaces, punctuation, symbols, private use,
 * emoji, ...) are refused; unassigned code points and the bidi rules (RFC 5893)
 * are not checked. */
#ifndef SALVO_IDNA_H
#define SALVO_IDNA_H

#include <stddef.h>
#include <stdint.h>

/* Longest domain in A-label form (octets, no trailing dot), and the longest label. */
#define SV_IDNA_DOMAIN_MAX 253
#define SV_IDNA_LABEL_MAX  63

/* Encodes n code points as Punycode (no "xn--" prefix), lower-case basic code
 * points as they are. *outlen: in, the room in out; out, the length written (no
 * NUL is added). Returns 0, -EINVAL for a code point over U+10FFFF or a surrogate,
 * or -EOVERFLOW (does not fit, or RFC 3492 6.4 overflow). */
int sv_punycode_encode(const uint32_t *in, size_t n, char *out, size_t *outlen);

/* Decodes n bytes of Punycode (no prefix). *outlen: in, the room in out (code
 * points); out, the count decoded. Returns 0, -EINVAL for malformed input (a
 * non-basic byte, a bad digit, a truncated number, a surrogate or a code point
 * over U+10FFFF) or -EOVERFLOW (RFC 3492 6.4 overflow, or no room). */
int sv_punycode_decode(const char *in, size_t n, uint32_t *out, size_t *outlen);

enum sv_idna_form {
    SV_IDNA_ASCII,   /* every non-ASCII label as its A-label: for DNS and ASCII SMTP */
    SV_IDNA_MAPPED,  /* the input after case mapping; A-labels given stay A-labels */
    SV_IDNA_UNICODE, /* every A-label decoded: for display */
};

/* Checks the domain in[0..len) (UTF-8; labels separated by '.', U+3002, U+FF0E or
 * U+FF61) and writes it in `form` into out (NUL-terminated, cap bytes). An ASCII
 * label is only lower-cased (its letters, digits and hyphens are checked); an
 * "xn--" label must be a valid A-label. Returns 0, or -EINVAL with *why set to a
 * static reason, or -ENOSPC when out is too small. */
int sv_idna_domain(const char *in, size_t len, enum sv_idna_form form, char *out, size_t cap,
                   const char **why);

#endif
