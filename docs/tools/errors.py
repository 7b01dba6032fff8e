#!/usr/bin/env python3
"""Lists every error/warning format string the programs print, grouped by component,
as the markdown of docs/operator-guide.md's message catalogue (everything after the
MARKER line). It mirrors tests/test_deploy_docs.c's scan (same functions, same
folders). From the repository root:

    python3 docs/tools/errors.py                                   # print the catalogue
    python3 docs/tools/errors.py --update docs/operator-guide.md   # rewrite it in place

--update keeps the text before MARKER and every note already written after a message
that still exists (`- `` message `` — note`); new messages get a seed note from NOTES
when one fits, else none: write one by hand."""
import glob, re, sys

# (dir, only this file or None, call, string literals before the format); an entry
# with a file replaces the dir-wide entry of the same call there. Same table as
# tests/test_deploy_docs.c.
EMITTERS = [("engine", None, "eng_fail", 0), ("engine", None, "fprintf(stderr,", 0),
            ("engine", None, "cfg_error", 0), ("engine", None, "cfg_warn", 0),
            ("engine", None, "err_at", 0), ("engine", None, "sv_error", 0),
            ("engine", None, "sv_warn", 0), ("engine", None, "fail", 0),
            ("engine", "cmd_tls.c", "fail", 1), ("engine", None, "finish_err", 0),
            ("engine/config", None, "cfg_error", 0), ("engine/config", None, "cfg_lex_error", 0),
            ("sched", None, "cfg_error", 0), ("sched", None, "cfg_warn", 0), ("sched", None, "fail", 0),
            ("redisq", None, "rq_fail", 0), ("redisq", None, "sv_error", 0),
            ("redisq", None, "sv_warn", 0), ("tls", None, "tls_conn_fail", 0),
            ("tls", None, "snprintf(err, errlen,", 0), ("bench/sink", None, "sv_error", 0),
            ("bench/sink", None, "sv_warn", 0), ("bench/sink", None, "die", 0),
            ("bench/sink", None, "FAIL", 0)]

SECTIONS = [
    ("engine/main.c engine/cli.c", "salvo (any command)"),
    ("engine/cmd_run.c engine/runner*.c engine/worker*.c engine/ring*.c", "salvo run"),
    ("engine/deliver*.c engine/smtp*.c engine/pool*.c", "Delivery attempts (salvo run's log and the events' reply text)"),
    ("engine/dns*.c", "DNS (salvo run's log and the events' reply text)"),
    ("engine/cmd_config.c", "salvo config"),
    ("engine/conf.c", "Configuration: keys and values (config check, and every command that loads the config)"),
    ("engine/config/toml.c engine/config/toml_lex.c", "Configuration: TOML syntax"),
    ("sched/rule_setting.c sched/rule_compile.c", "Configuration: expressions and rule lists (queue.* keys, salvo rules --expr)"),
    ("engine/cmd_queue.c", "salvo enqueue, salvo queue"),
    ("redisq/rq.c redisq/rq_admin.c redisq/rq_enq.c redisq/rq_job.c redisq/rq_csv.c redisq/rq_limit.c", "Redis (enqueue, queue, run): after `salvo: ` and the server address"),
    ("engine/cmd_rules.c", "salvo rules"),
    ("engine/cmd_tls.c", "salvo tls probe"),
    ("tls/conn.c", "TLS client: handshake and verification (tls probe; run's events)"),
    ("tls/server.c", "TLS certificates (salvo-sink --tls-cert/--tls-key, SIGHUP reload)"),
    ("bench/sink/sink_main.c bench/sink/sink_conn.c bench/sink/sink_fault.c", "salvo-sink"),
    ("bench/sink/sink_load.c", "salvo-sink-load (benchmark client)"),
]


def unescape(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            c = s[i + 1]
            if c == "x":
                j = i + 2
                while j < len(s) and s[j] in "0123456789abcdefABCDEF":
                    j += 1
                out.append("?")
                i = j
                continue
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(c, c))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def call_format(s, i, skip):
    depth, group = 0, 0
    while i < len(s):
        c = s[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return None
        elif c == "'":
            i += 1
            if s[i] == "\\":
                i += 1
            while s[i] != "'":
                i += 1
        elif c == '"':
            lit = ""
            while True:
                j = i + 1
                while s[j] != '"':
                    if s[j] == "\\":
                        lit += s[j:j + 2]
                        j += 2
                    else:
                        lit += s[j]
                        j += 1
                i = j + 1
                m = re.match(r'\s*"', s[i:])
                if not m:
                    break
                i += m.end() - 1
            if group == skip:
                return unescape(lit)
            group += 1
            continue
        i += 1
    return None


def shown(fmt):
    fmt = fmt.replace("\r", "").strip("\n")
    fmt = re.sub(r"%[-+ #0-9.*]*(?:ll|l|hh|h|z|j|t)?[a-zA-Z]", "…", fmt.replace("%%", "\0"))
    return fmt.replace("\0", "%").replace("\n", " ")


def collect():
    found = {}
    for d, only, name, skip in EMITTERS:
        for f in sorted(glob.glob(d + "/*.c")):
            base = f.rsplit("/", 1)[1]
            if only and base != only:
                continue
            if not only and any(e[0] == d and e[1] == base and e[2] == name for e in EMITTERS):
                continue
            s = open(f).read()
            pat = r"(?<![A-Za-z0-9_])" + re.escape(name) + ("" if "(" in name else r"\(")
            for m in re.finditer(pat, s):
                o = m.start() + name.index("(") if "(" in name else m.end() - 1
                fmt = call_format(s, o, skip)
                if fmt is None or not re.search(r"[A-Za-z]{3}", fmt):
                    continue
                found.setdefault(f, [])
                if shown(fmt) not in found[f]:
                    found[f].append(shown(fmt))
    return found


# Seed notes: the first message containing the key gets the note.
NOTES = {
    "'run' is not implemented yet": "this build predates the delivery engine; `enqueue`/`queue` work, delivery needs a newer build.",
    "unknown key '…' (did you mean": "a typo or a key from another MTA; the suggestion is the nearest known key. Every key: `deploy/salvo.example.toml`.",
    "TLS to Redis is not supported": "hiredis 0.14 has no TLS. Use `redis://` on a private network, a `unix://` socket, or an stunnel/spiped tunnel.",
    "must start with redis:// or unix://": "write the scheme: `redis://HOST:6379/0` or `unix:///run/redis/redis.sock`.",
    "is readable by every user": "`chmod o-r FILE` (or `chmod 0640`, group `salvo`): the file holds `redis.password`.",
    "is out of range (0 = one per core": "`server.workers.threads`: 0 means one per online core.",
    "is not an IP address, IP:port": "`resolver.nameservers` takes addresses, not names: `\"127.0.0.1:53\"`, `\"[::1]:53\"`.",
    "missing 'address'": "every `[remote.NAME]` used by `next-hop` needs `address = \"host\"`.",
    "expected …, found …": "the key exists but takes another TOML type (e.g. `threads = \"4\"` instead of `4`).",
    "missing 'else' entry": "a rule list ends with `{ else = VALUE }`: the value when no condition matches.",
    "'else' before an 'if' entry": "move `{ else = ... }` to the end of the list.",
    "can never match: entry": "warning: an earlier entry has the same condition; delete or change one.",
    "unknown variable": "the variable does not exist or is not known yet at this point (e.g. `mx` in `next-hop`, `remote_ip` before connecting). `salvo rules --help` lists them.",
    "is not available": "the variable is not known when this setting is evaluated (e.g. `mx` for `next-hop`).",
    "no 'email' column in the header": "the CSV's first line must name the columns, one of them `email`.",
    "unknown placeholder {{": "the template uses a `{{name}}` that is not a CSV column (typo, or a missing column).",
    "nothing was enqueued": "the summary after the listed CSV errors: fix them and run again; Redis was not touched.",
    "expected … fields, found …": "a line has more or fewer fields than the header: an unquoted comma, or a missing value.",
    "not valid UTF-8": "the CSV is not UTF-8 (often Latin-1 from a spreadsheet): `iconv -f latin1 -t utf-8`.",
    "contains a line break": "a value used by the template holds a line break, which could add headers to the message: clean the data.",
    "malformed address '…': …": "the reason says what is wrong (no `@`, bad domain, too long...).",
    "is incomplete: salvo queue cancel": "Redis failed after the message was created: the recipients written so far will be delivered; cancel it and enqueue again, or leave it.",
    "needs a file (it is read twice), not stdin": "save the CSV to a file: it is validated in a first pass and enqueued in a second.",
    "no message or campaign '…' in this queue": "check the id (`salvo queue list`) and that `redis.queue`/`SALVO_REDIS_URL` point at the right queue.",
    "cannot connect": "Redis is not running or not reachable at `redis.url` (or `$SALVO_REDIS_URL`): `redis-cli -u URL ping`.",
    "authentication required": "Redis wants a password (NOAUTH): put it in the URL or `redis.password`.",
    "authentication failed": "WRONGPASS: the password (or user) is wrong.",
    "read-only replica": "READONLY: `redis.url` points at a replica; use the primary.",
    "maxmemory reached": "Redis OOM: raise `maxmemory` (and use `maxmemory-policy noeviction`: evicting queue keys loses mail) or let the queue drain.",
    "still loading its dataset": "Redis is loading its AOF/RDB after a restart: wait; `salvo run` retries by itself.",
    "cannot persist (MISCONF)": "Redis cannot write its snapshot/AOF (disk full, permissions) and refuses writes: fix the disk, see the Redis log.",
    "bad queue name": "`redis.queue`: letters, digits, `-`, `_`, `.`; no spaces or braces.",
    "malformed payload, dropped as dead": "a job in Redis was not written by salvo (or was edited by hand); it is kept in the dead stream for inspection.",
    "claimed … times without an outcome": "dead letter: this job crashed or stalled every process that claimed it; look at the message (`salvo queue show`) and the logs of the processes that died.",
    "certificate … expired on": "renew the certificate (`certbot renew`); salvo-sink refuses to start with it rather than serve it.",
    "cannot read key": "the service user cannot read the key. With certbot the key lives in `archive/` as root-only: use the deploy hook (`SALVO_CERT_DIR`, group `salvo`), not permissions on `live/`.",
    "cannot read certificate": "the path is wrong or unreadable by the service user; see the certbot section.",
    "does not match certificate": "the key and certificate are from different pairs (e.g. a renewed `fullchain.pem` with an old key): use the files of one certbot lineage.",
    "is encrypted (a passphrase cannot be asked for)": "decrypt it once: `openssl pkey -in key.pem -out key.plain.pem` (mode 0640).",
    "reload failed, keeping the current certificates": "SIGHUP found a bad file; the old certificates are still served. The reason names the file.",
    "peer certificate was not verified": "the receiver's certificate does not chain to a trusted CA or does not match the host name; under the seed rules the next attempt allows it.",
    "STARTTLS required but not offered by": "the receiver has no STARTTLS and the attempt's `starttls` is `require`: a temporary `tls` failure; under the seed rules plaintext is allowed from retry 2, under `require` it stays scheduled and bounces at expiry.",
    "TLS handshake with … failed": "the receiver's TLS is broken or refuses ours (`last_error = tls`): `salvo tls probe --connect HOST:25 --servername HOST --starttls` shows why.",
    "sent data after its 220 reply to STARTTLS": "the receiver (or something in the path) injected data before the TLS handshake (CVE-2011-0411 class): the attempt is dropped, never continued in plaintext.",
    "domain does not exist (NXDOMAIN)": "the recipient domain does not exist: bounced.",
    "null MX: the domain accepts no mail": "the domain publishes `MX 0 .` (RFC 7505): bounced without trying.",
    "MX lookup timed out": "the resolver did not answer in time (temporary, retried): check `resolver.nameservers` and the resolver's health.",
    "cannot pin to core": "warning: pinning failed (CPU quota, cpuset, container): the worker runs unpinned. Set `server.workers.pin = false` to silence it.",
    "reports not written: their jobs will be delivered again": "Redis failed while salvo held outcomes: after the lease those jobs are delivered again (counted as duplicates). Keep Redis healthy and persistent.",
    "timed out after": "the receiver did not accept the TCP connection in `queue.outbound.timeouts.connect`: a firewall, a wrong MX, or the receiver throttling; retried.",
    "stopped at once (signal": "a second SIGTERM/SIGINT skipped the graceful stop: jobs in flight are reclaimed after the lease (at-least-once; duplicates possible).",
    "verify": "the certificate check failed; `salvo tls probe --insecure` shows what the server presents.",
}


MARKER = "<!-- message catalogue: docs/tools/errors.py --update; notes are hand-written -->"


def sections(found):
    """SECTIONS with their files expanded (globs allowed), then every other file
    that prints messages under "Other messages"."""
    seen, out = set(), []
    for files, title in SECTIONS:
        fs = [f for pat in files.split() for f in sorted(glob.glob(pat))]
        fs = [f for f in fs if f not in seen]
        seen.update(fs)
        out.append((fs, title))
    rest = sorted(f for f in found if f not in seen)
    if rest:
        out.append((rest, "Other messages"))
    return out


def main():
    notes = {}
    update = len(sys.argv) == 3 and sys.argv[1] == "--update"
    guide = sys.argv[2] if update else None
    if guide:  # reuse the notes already in the guide
        for line in open(guide):
            m = re.match(r"- `` (.*) `` — (.*)", line.rstrip("\n"))
            if m:
                notes[m.group(1)] = m.group(2)
    for k in [k for k, v in NOTES.items() if v in notes.values()]:
        del NOTES[k]  # already used in the guide
    found = collect()
    out = []
    print = lambda *a: out.append(" ".join(a) + "\n")  # noqa: E731
    for files, title in sections(found):
        msgs = [m for f in files for m in found.get(f, [])]
        if not msgs:
            continue
        print(f"### {title}\n")
        for m in msgs:
            note = notes.get(m)
            if note is None:
                for k, v in list(NOTES.items()):
                    if k in m:
                        note = v
                        del NOTES[k]
                        break
            print(f"- `` {m} ``" + (f" — {note}" if note else ""))
        print()
    text = "".join(out)
    if guide:
        head = open(guide).read()
        if MARKER not in head:
            sys.exit(f"{guide}: no marker line {MARKER}")
        head = head[: head.index(MARKER) + len(MARKER)] + "\n\n"
        open(guide, "w").write(head + text)
    else:
        sys.stdout.write(text)


main()
