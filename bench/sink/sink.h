/* salvo-sink: a fast multi-threaded SMTP sink (the receiver for salvo's tests and
 * benchmarks). This header holds the sink's pure, I/O-free parts so that tests and
 * fuzz targets can link them without the server:
 *
 *   sink_cmd_*    SMTP command line parser (RFC 5321 section 4.1)
 *   sink_data_*   DATA stream scanner: dot-unstuffing, CRLF.CRLF across reads,
 *                 Message-ID extraction, unstuffed byte count
 *   sink_track_*  lock-free set of 64-bit (Message-ID, recipient) keys
 *   sink_fault_*  --fault SPEC parser
 *
 * Everything is prefixed sink_. The server itself lives in sink_main.c/sink_conn.c
 * and shares its private types through sink_srv.h. */
#ifndef SALVO_SINK_H
#define SALVO_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- SMTP command parser -------------------------------------------------- */

/* The longest command line we accept, CRLF included. RFC 5321 4.5.3.1.4 asks for
 * at least 512; ESMTP parameters and SMTPUTF8 addresses make that tight, so we take
 * Postfix's default. Longer lines get "500 5.5.2 Line too long". */
#define SINK_LINE_MAX 2048

enum sink_verb {
    SINK_VERB_UNKNOWN,
    SINK_VERB_HELO,
    SINK_VERB_EHLO,
    SINK_VERB_MAIL,
    SINK_VERB_RCPT,
    SINK_VERB_DATA,
    SINK_VERB_RSET,
    SINK_VERB_NOOP,
    SINK_VERB_QUIT,
    SINK_VERB_VRFY,
    SINK_VERB_HELP,
    SINK_VERB_STARTTLS,
};

/* Parse outcome; each maps to one reply in the server. */
enum sink_cmd_status {
    SINK_CMD_OK = 0,
    SINK_CMD_UNKNOWN = -1,  /* 500 5.5.2: not a command we know */
    SINK_CMD_SYNTAX = -2,   /* 501 5.5.4: known verb, bad arguments */
    SINK_CMD_BADPARAM = -3, /* 555 5.5.4: unknown or malformed MAIL/RCPT parameter */
    SINK_CMD_TOOLARGE = -4, /* 552 5.3.4: SIZE= overflows 64 bits */
};

enum sink_body { SINK_BODY_NONE, SINK_BODY_7BIT, SINK_BODY_8BITMIME };

/* Result of parsing one command line. Pointers borrow from the parsed line. */
struct sink_cmd {
    enum sink_verb verb;
    const char *arg; /* HELO/EHLO domain, VRFY/NOOP/HELP argument (may be NULL) */
    size_t arg_len;
    const char *path; /* MAIL/RCPT address without the angle brackets ("" for <>) */
    size_t path_len;
    uint64_t size; /* MAIL SIZE= value when has_size */
    bool has_size;
    bool smtputf8;
    enum sink_body body;
};

/* Parses one command line `line` of `len` bytes, CRLF already stripped (it may
 * contain NUL bytes; they make it a syntax error). Fills `out` (pointers borrow from
 * `line`) and returns SINK_CMD_OK or a negative enum sink_cmd_status. out->verb is set
 * whenever the verb was recognised, even on error. */
int sink_cmd_parse(const char *line, size_t len, struct sink_cmd *out);

/* --- DATA scanner ---------------------------------------------------------- */

#define SINK_MSGID_MAX 998 /* RFC 5322 line limit; longer Message-IDs are cut */
#define SINK_HDR_MAX   1024

/* Scanner state for one message; zero it with sink_data_begin(). */
struct sink_data {
    int state;             /* private: where in a line we are */
    uint64_t consumed;     /* bytes fed so far, terminator included once done */
    uint64_t dots_removed; /* leading dots removed by unstuffing */
    bool in_headers;       /* still before the first empty line */
    bool hdr_is_msgid;     /* the header being read (for folding) is Message-ID */
    bool have_msgid;
    size_t hdr_len; /* current header line (unstuffed, CRLF stripped, cut at SINK_HDR_MAX) */
    char hdr[SINK_HDR_MAX];
    size_t msgid_len;
    char msgid[SINK_MSGID_MAX];
};

/* Starts a message: right after the CRLF of the DATA command. */
void sink_data_begin(struct sink_data *d);

/* Feeds `len` bytes of the DATA stream. Returns how many were consumed; sets *done
 * when the terminating CRLF.CRLF ended the message (the bytes after it belong to the
 * next command and are not consumed). */
size_t sink_data_feed(struct sink_data *d, const char *buf, size_t len, bool *done);

/* The message's size after dot-unstuffing, without the final ".CRLF"
 * (RFC 5321 4.5.2). Valid once *done was set. */
uint64_t sink_data_bytes(const struct sink_data *d);

/* --- (Message-ID, recipient) set -------------------------------------------- */

/* 64-bit hash of `len` bytes; `seed` chains hashes. Not cryptographic: the keys are
 * our own test traffic, and 1 M keys collide with probability ~3e-8. */
uint64_t sink_hash(const void *data, size_t len, uint64_t seed);
/* Key of one (Message-ID, recipient) pair from their hashes. */
uint64_t sink_pair_key(uint64_t msgid_hash, uint64_t rcpt_hash);

struct sink_track;
/* Returns an owned set sized for `max_entries` keys (open addressing over a fixed
 * table twice that size, so inserts stay lock-free), or NULL on ENOMEM. */
struct sink_track *sink_track_new(size_t max_entries);
/* Inserts `key`, safe from any number of threads at once (CAS, no locks).
 * Returns 1 if the key is new, 0 if it was already there, -ENOSPC when the set
 * already holds max_entries keys and `key` is new. */
int sink_track_insert(struct sink_track *t, uint64_t key);
void sink_track_free(struct sink_track *t);

/* --- fault injection (--fault SPEC, see bench/README.md) ---------------------- */

/* Points of an SMTP session where a fault may strike. */
enum sink_stage {
    SINK_STAGE_GREETING,
    SINK_STAGE_EHLO, /* the reply to EHLO or HELO */
    SINK_STAGE_MAIL,
    SINK_STAGE_RCPT,
    SINK_STAGE_DATA, /* the reply to DATA (354); disconnect:data closes mid-message */
    SINK_STAGE_DOT,  /* the reply after the message's final "." */
    SINK_STAGE_COUNT
};

#define SINK_FAULT_MAX_RULES 16

struct sink_fault_match {
    char *pattern; /* owned; matched as a substring of the address */
    int code;
};

struct sink_faults {
    struct sink_fault_match rcpt[SINK_FAULT_MAX_RULES];
    int n_rcpt;
    struct sink_fault_match mail[SINK_FAULT_MAX_RULES];
    int n_mail;
    uint32_t data_every; /* 0 = off; else every Nth message gets data_code */
    int data_code;
    bool no_starttls;
    bool no_pipelining, no_smtputf8; /* leave the extension out of the EHLO reply */
    int greeting_code;               /* greeting:CODE: refuse service (RFC 5321 3.1), 0 = off */
    bool reset_idle;                 /* the idle timeout resets (TCP RST) instead of 421 + close */
    /* bit (1 << enum sink_stage) per stage */
    uint32_t disconnect, stall, multiline, longline, badcode;
    uint32_t delay_ms[SINK_STAGE_COUNT]; /* hold the reply at a stage this long (0 = no) */
};

/* Adds one --fault SPEC to `f`. Returns 0, or -EINVAL with a one-line reason in
 * err (which names the spec). */
int sink_fault_parse(struct sink_faults *f, const char *spec, char *err, size_t errlen);
/* Frees what sink_fault_parse allocated and zeroes `f` (NULL-safe). */
void sink_faults_free(struct sink_faults *f);
/* The reply code a rule list assigns to `addr` (first match wins), or 0. */
int sink_fault_match(const struct sink_fault_match *rules, int n, const char *addr, size_t len);
const char *sink_stage_name(enum sink_stage s);

#endif
