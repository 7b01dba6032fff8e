"""Shared pieces of bench/salvo-bench and bench/compare-postfix (Debian's python3,
standard library only): free ports, a private redis-server with a tiny RESP client,
salvo-sink with its counters, test certificates, the campaign (CSV + template), and
running a process while recording its CPU time and peak RSS (wait4).

Every server started here listens on 127.0.0.1 only and lives in a temporary
directory that is removed at the end (Bench.close)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg, code=1):
    log(msg)
    sys.exit(code)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def machine():
    """nproc, CPU model, load average: printed beside every figure."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = "%.0f GiB" % (kb / 1048576)
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "memory": mem, "loadavg": load,
            "kernel": os.uname().release}


class Bench:
    """Owns the temporary directory and every process started; close() stops them."""

    def __init__(self, keep=False):
        self.dir = tempfile.mkdtemp(prefix="salvo-bench.")
        self.procs = []
        self.keep = keep

    def path(self, name):
        return os.path.join(self.dir, name)

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    p.terminate()
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.keep:
            log("kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- Redis


class RedisError(Exception):
    pass


class Redis:
    """A private redis-server (AOF on, appendfsync everysec, like redisq/bench.sh) and a
    minimal synchronous RESP2 client for the few commands the benchmarks need."""

    def __init__(self, bench):
        self.port = free_port()
        d = tempfile.mkdtemp(prefix="redis.", dir=bench.dir)
        self.proc = bench.spawn(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", d,
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--logfile", os.path.join(d, "redis.log")],
            stdout=subprocess.DEVNULL)
        if not wait_port(self.port):
            die("salvo-bench: redis-server did not start (see %s/redis.log)" % d, 2)
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.rf = self.sock.makefile("rb")
        self.url = "redis://127.0.0.1:%d/0" % self.port

    def stop(self):
        """SHUTDOWN NOSAVE and reap: one run's server does not linger into the next."""
        try:
            self.cmd("SHUTDOWN", "NOSAVE")
        except (RedisError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.rf.readline()
        if not line:
            raise RedisError("connection closed")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rf.read(n + 2)[:-2]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RedisError("bad reply %r" % line)

    def info(self, section):
        text = self.cmd("INFO", section).decode()
        d = {}
        for line in text.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                d[k] = v
        return d

    def command_counts(self):
        """(commands processed as client requests, calls of all commands including the
        ones run inside Lua scripts). Redis 7 counts script-internal calls in
        commandstats but not in total_commands_processed."""
        top = int(self.info("stats")["total_commands_processed"])
        calls = 0
        for k, v in self.info("commandstats").items():
            m = re.search(r"calls=(\d+)", v)
            if m:
                calls += int(m.group(1))
        return top, calls


# ---------------------------------------------------------------- DNS


class Dnsmasq:
    """dnsmasq on 127.0.0.1:<free port> answering A sink.bench.test -> 127.0.0.1 (the
    next-hop relay's name: salvo verifies the certificate against the relay's name,
    and an IP literal is matched against no SAN), and MX dI.bench.test ->
    mxI.bench.test (preference 10), A mxI.bench.test -> 127.0.0.1 for the K campaign
    domains: the "MX via DNS" route (queue.outbound.mx-port points at the sink)."""

    def __init__(self, bench, k):
        self.port = free_udp_tcp_port()
        d = tempfile.mkdtemp(prefix="dnsmasq.", dir=bench.dir)
        conf = os.path.join(d, "dnsmasq.conf")
        with open(conf, "w") as f:
            f.write("local=/bench.test/\nlocal-ttl=3600\n")
            f.write("host-record=sink.bench.test,127.0.0.1\n")
            for i in range(k):
                f.write("mx-host=d%d.bench.test,mx%d.bench.test,10\n" % (i, i))
                f.write("host-record=mx%d.bench.test,127.0.0.1\n" % i)
        argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                "--bind-interfaces", "--listen-address=127.0.0.1", "--pid-file=",
                "--port=%d" % self.port, "--conf-file=" + conf,
                "--log-facility=" + os.path.join(d, "dnsmasq.log")] + (["--log-queries"] if os.environ.get("BENCH_DNS_LOG") else [])
        if os.geteuid() == 0:
            argv.append("--user=root")  # "nobody" could not read our temp dir
        self.proc = bench.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            die("salvo-bench: dnsmasq did not start", 2)


def free_udp_tcp_port():
    for _ in range(100):
        p = free_port()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            u.close()
    die("salvo-bench: no free port", 2)


# ---------------------------------------------------------------- certificates

CERT_SCRIPT = r"""
set -e
cd "$1"
key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1.key"; }
key ca
openssl req -x509 -new -key ca.key -subj '/CN=salvo bench CA' -days 30 -out ca.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
key sink
printf '[ext]\nsubjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
  "DNS:$2,DNS:*.bench.test,IP:127.0.0.1" > sink.cnf
openssl req -new -key sink.key -subj "/CN=$2" -out sink.csr
openssl x509 -req -in sink.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile sink.cnf -extensions ext -out sink.pem
"""


def make_certs(bench, name="sink.bench.test"):
    """EC P-256 CA + leaf for `name`, *.bench.test (the MX hosts) and 127.0.0.1 (as
    tests/test_tls_helpers.c).
    Returns (ca, cert, key) paths."""
    d = bench.path("certs")
    os.makedirs(d, exist_ok=True)
    r = subprocess.run(["sh", "-c", CERT_SCRIPT, "sh", d, name], capture_output=True, text=True)
    if r.returncode != 0:
        die("salvo-bench: openssl failed: " + r.stderr.strip()[-300:], 2)
    return (os.path.join(d, "ca.pem"), os.path.join(d, "sink.pem"), os.path.join(d, "sink.key"))


# ---------------------------------------------------------------- salvo-sink


class Sink:
    """salvo-sink on 127.0.0.1:<free port>; counters via SIGUSR1 + --stats FILE."""

    def __init__(self, bench, binary, threads=2, tls=None, track=True, name="sink"):
        self.stats_file = bench.path(name + ".stats.json")
        self.log_file = bench.path(name + ".log")
        argv = [binary, "--listen", "127.0.0.1:0", "--threads", str(threads), "--log-level",
                "info", "--stats", self.stats_file, "--hostname", "sink.bench.test"]
        if tls:
            argv += ["--tls-cert", tls[1], "--tls-key", tls[2]]
        if not track:
            argv.append("--no-track")
        self.lf = open(self.log_file, "w+")
        self.proc = bench.spawn(argv, stdout=subprocess.DEVNULL, stderr=self.lf)
        self.port = None
        end = time.monotonic() + 10
        while time.monotonic() < end and self.port is None:
            if self.proc.poll() is not None:
                break
            with open(self.log_file) as f:
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
            else:
                time.sleep(0.05)
        if self.port is None:
            with open(self.log_file) as f:
                die("salvo-bench: salvo-sink did not start: " + f.read().strip()[-400:], 2)
        self.lock = threading.Lock()

    def stats(self):
        with self.lock:
            try:
                os.unlink(self.stats_file)
            except FileNotFoundError:
                pass
            self.proc.send_signal(signal.SIGUSR1)
            end = time.monotonic() + 5
            while time.monotonic() < end:
                try:
                    with open(self.stats_file) as f:
                        return json.loads(f.read())
                except (FileNotFoundError, ValueError):
                    time.sleep(0.01)
            die("salvo-bench: salvo-sink wrote no counters", 2)


def cpu_ticks(pid):
    """utime + stime of a running process, in seconds (/proc/PID/stat)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def delta(after, before, keys):
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}


SINK_KEYS = ("connections", "transactions", "recipients", "bytes", "pairs", "duplicates",
             "tls_handshakes_full", "tls_handshakes_resumed", "tls_handshakes_failed",
             "mail_rejected", "rcpt_rejected", "data_rejected")


# ---------------------------------------------------------------- campaign

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Ken", "Dennis", "Radia",
         "Frances", "John", "Margaret", "Niklaus", "Leslie", "Tony", "Sophie"]


def domains(k):
    return ["d%d.bench.test" % i for i in range(k)]


def recipient(i, k):
    return "user%d@d%d.bench.test" % (i, i % k)


def make_campaign(bench, n, k, size, personalised):
    """CSV (email,first,code) + template of about `size` bytes after rendering.
    Returns (csv_path, template_path)."""
    csv_path = bench.path("campaign.csv")
    with open(csv_path, "w") as f:
        f.write("email,first,code\n")
        for i in range(n):
            f.write("%s,%s,C%08d\n" % (recipient(i, k), FIRST[i % len(FIRST)], i))
    tpl = template(size, personalised)
    tpl_path = bench.path("template.eml")
    with open(tpl_path, "wb") as f:
        f.write(tpl.encode())
    return csv_path, tpl_path


def template(size, personalised, tag=None):
    """`tag` (default: random) makes the Message-IDs of each run unique, so one
    salvo-sink can count duplicates over several runs."""
    tag = tag or os.urandom(4).hex()
    if personalised:
        head = ("Message-ID: <bench.{{code}}." + tag + "@sender.bench.test>\r\n"
                "From: News <news@sender.bench.test>\r\nTo: {{first}} <{{email}}>\r\n"
                "Subject: {{first}}, your code {{code}}\r\nMIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                "Dear {{first}},\r\n\r\nyour personal code is {{code}}.\r\n\r\n")
    else:
        head = ("Message-ID: <bench.campaign." + tag + "@sender.bench.test>\r\n"
                "From: News <news@sender.bench.test>\r\nTo: undisclosed-recipients:;\r\n"
                "Subject: Our news\r\nMIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n\r\nDear reader,\r\n\r\n")
    line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem.\r\n"
    body = head
    # Rendered, the placeholders grow by a few bytes; aim at `size` for the rendered text.
    while len(body) + len(line) <= size - 40:
        body += line
    return body + "-- \r\nsalvo bench\r\n"


def render(tpl, i, k):
    """The message `salvo enqueue` would produce for recipient i (for Postfix)."""
    vals = {"email": recipient(i, k), "first": FIRST[i % len(FIRST)], "code": "C%08d" % i}
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: vals[m.group(1)], tpl)


# ---------------------------------------------------------------- processes


class Measured:
    """Runs a process; on wait() records wall time, CPU seconds (user + sys of the
    process and its waited-for children) and peak RSS, through wait4()."""

    def __init__(self, argv, env=None, stdout=None, stderr=None):
        self.argv = argv
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=stderr)
        self.rc = None

    def wait(self, timeout=None):
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if end is not None and time.monotonic() > end:
                self.proc.kill()
                pid, status, ru = os.wait4(self.proc.pid, 0)
                break
            time.sleep(0.01)
        self.wall = time.monotonic() - self.t0
        self.rc = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.rc
        self.cpu = ru.ru_utime + ru.ru_stime
        self.user, self.sys = ru.ru_utime, ru.ru_stime
        self.maxrss_kb = ru.ru_maxrss
        return self.rc


def apt_install(*pkgs):
    """Installs Debian packages the benchmarks need (idempotent, quiet)."""
    missing = [p for p in pkgs if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
        text=True).stdout.strip() != "install ok installed"]
    if not missing:
        return True
    log("installing %s ..." % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing,
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        log("apt-get install %s failed: %s" % (" ".join(missing), r.stderr.strip()[-300:]))
        return False
    return True


class Progress:
    """A progress bar on stderr when it is a terminal (silent otherwise), optionally
    with more lines under it (e.g. the latest `salvo run --progress` line of each
    process), redrawn in place."""

    def __init__(self, label, total):
        self.label, self.total = label, total
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.below = 0  # lines drawn under the bar last time

    def update(self, done, extra=()):
        if not self.tty or not self.total:
            return
        frac = min(1.0, done / self.total)
        el = time.monotonic() - self.t0
        bar = "#" * int(frac * 30)
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        out = ["\x1b[%dA" % self.below] if self.below else []
        out.append("\r\x1b[K" + ("%-22s [%-30s] %6d/%d %7.0f/s" % (
            self.label, bar, done, self.total, done / el if el > 0 else 0))[:width])
        for line in extra:
            out.append("\n\r\x1b[K" + ("  " + line)[:width])  # cut: a wrapped line breaks the redraw
        sys.stderr.write("".join(out))
        sys.stderr.flush()
        self.below = len(extra)

    def done(self):
        if self.tty:
            up = "\x1b[%dA" % self.below if self.below else ""
            sys.stderr.write(up + "\r\x1b[J")
            sys.stderr.flush()
            self.below = 0


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


def md_table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)
