/* common: small pieces every module shares (logging, growable buffers).
 * No dependencies beyond libc, so any module may link it. */
#ifndef SALVO_COMMON_H
#define SALVO_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define SV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* 32-bit FNV-1a of n bytes: hash table slots, and which worker owns a domain. */
static inline uint32_t sv_hash32(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* 64-bit FNV-1a of n bytes: where a hash stands for its key (index lookups, a
 * chunk's paid rate buckets), 32 bits would collide too often. */
static inline uint64_t sv_hash64(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

#define SV_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* --- logging -------------------------------------------------------------
 * One line per call on stderr: "2026-11-23T17:40:01.123Z warn  message".
 * A line is written with a single write(2), so threads never interleave. */
enum sv_log_level { SV_LOG_ERROR, SV_LOG_WARN, SV_LOG_INFO, SV_LOG_DEBUG, SV_LOG_TRACE };

void sv_log_set_level(enum sv_log_level level);
enum sv_log_level sv_log_get_level(void);
/* Parses "error|warn|info|debug|trace"; returns 0 or -1 for an unknown name. */
int sv_log_level_parse(const char *name, enum sv_log_level *out);
void sv_log(enum sv_log_level level, const char *fmt, ...) SV_PRINTF(2, 3);
void sv_vlog(enum sv_log_level level, const char *fmt, va_list ap) SV_PRINTF(2, 0);

#define sv_error(...) sv_log(SV_LOG_ERROR, __VA_ARGS__)
#define sv_warn(...)  sv_log(SV_LOG_WARN, __VA_ARGS__)
#define sv_info(...)  sv_log(SV_LOG_INFO, __VA_ARGS__)
#define sv_debug(...)                                                                              \
    do {                                                                                           \
        if (sv_log_get_level() >= SV_LOG_DEBUG)                                                    \
            sv_log(SV_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

/* --- growable byte buffer ------------------------------------------------
 * Always NUL-terminated after a successful append (ptr may be NULL while empty).
 * Functions return 0, or -ENOMEM with the buffer unchanged. */
struct sv_buf {
    char *ptr;
    size_t len;
    size_t cap;
};

int sv_buf_reserve(struct sv_buf *b, size_t extra);
int sv_buf_append(struct sv_buf *b, const void *data, size_t len);
int sv_buf_puts(struct sv_buf *b, const char *s);
int sv_buf_putc(struct sv_buf *b, char c);
int sv_buf_printf(struct sv_buf *b, const char *fmt, ...) SV_PRINTF(2, 3);
void sv_buf_reset(struct sv_buf *b); /* len = 0, keeps memory */
void sv_buf_free(struct sv_buf *b);  /* NULL-safe */

#endif
