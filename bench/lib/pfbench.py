"""A private Postfix 3.7 instance (Debian's `postfix` package) used as a relay to
salvo-sink, and Postfix's smtp-source / smtp-sink as the loopback ceiling.

The instance has its own config, queue and data directories under the benchmark's
temporary directory; the system's Postfix (/etc/postfix) is neither changed nor
started. It listens on 127.0.0.1:<free port> only, delivers nothing locally
(mydestination empty, local_transport = error) and relays everything to
relayhost = [127.0.0.1]:<sink port>, so it never sends anywhere else."""

import os
import shutil
import smtplib
import subprocess
import threading
import time

from benchlib import apt_install, die, free_port, log, render, wait_port, Progress

POSTFIX_BIN = "/usr/sbin/postfix"


def ensure_postfix():
    """Debian's postfix with "No configuration" (nothing is configured or started
    system-wide by this; we only use our private instance)."""
    if os.path.exists(POSTFIX_BIN) and os.path.exists("/usr/sbin/smtp-source"):
        return
    subprocess.run(["debconf-set-selections"], input=(
        "postfix postfix/main_mailer_type select No configuration\n"), text=True, check=False)
    if not apt_install("postfix"):
        die("compare-postfix: cannot install postfix", 2)
    # The package may start the system instance; it is not ours to run.
    subprocess.run(["postfix", "stop"], capture_output=True)


class Postfix:
    def __init__(self, bench, sink_port, concurrency=50, tls_ca=None, name="postfix"):
        self.base = bench.path(name)
        self.conf = os.path.join(self.base, "etc")
        self.queue = os.path.join(self.base, "spool")
        self.data = os.path.join(self.base, "data")
        for d in (self.conf, self.queue, self.data):
            os.makedirs(d)
        # Postfix's daemons (user postfix) must reach their directories.
        os.chmod(bench.dir, 0o755)
        shutil.chown(self.data, "postfix", "postfix")
        shutil.copy("/etc/postfix/master.cf", self.conf)
        self.port = free_port()
        self.sink_port = sink_port
        self.tls = tls_ca is not None
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "myhostname": "postfix.bench.test",
            "mydomain": "bench.test",
            "myorigin": "postfix.bench.test",
            "mydestination": "",
            "local_recipient_maps": "",
            "local_transport": "error:5.1.1 local delivery is disabled (benchmark)",
            "alias_maps": "",
            "alias_database": "",
            "relay_domains": "",
            "relayhost": "[127.0.0.1]:%d" % sink_port,
            "smtp_host_lookup": "native",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtpd_recipient_restrictions": "",
            "default_destination_concurrency_limit": str(concurrency),
            "smtp_destination_concurrency_limit": str(concurrency),
            "default_process_limit": str(max(100, concurrency * 2)),
            "defer_transports": "smtp",
            "maillog_file": os.path.join(self.base, "maillog"),
            "maillog_file_prefixes": self.base,
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtputf8_enable": "no",
            "readme_directory": "no",
            "smtpd_banner": "$myhostname ESMTP",
            "smtp_tls_security_level": "none",
        }
        if self.tls:
            settings.update({
                "smtp_tls_security_level": "encrypt",
                "smtp_tls_CAfile": tls_ca,
                "smtp_tls_session_cache_database": "btree:%s/smtp_scache" % self.data,
                "smtp_tls_loglevel": "0",
                # Without this Postfix opens a new connection per TLS message (its
                # connection cache keeps plaintext sessions only); with it, tlsproxy
                # holds the TLS state and connections are reused.
                "smtp_tls_connection_reuse": "yes",
            })
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in settings.items():
                f.write("%s = %s\n" % (k, v))
        self.postconf("-F", "*/*/chroot = n")
        if self.tls:
            self.postconf("-M", "tlsproxy/unix = tlsproxy unix - - n - 0 tlsproxy")
        # Our smtpd on a loopback port instead of *:25.
        self.postconf("-X", "-M", "smtp/inet")
        self.postconf("-M", "127.0.0.1:%d/inet = 127.0.0.1:%d inet n - n - - smtpd"
                      % (self.port, self.port))
        self.run(["postfix", "-c", self.conf, "check"])
        self.run(["postfix", "-c", self.conf, "start"])
        if not wait_port(self.port, 20):
            die("compare-postfix: Postfix smtpd did not come up on 127.0.0.1:%d (see %s/maillog)"
                % (self.port, self.base), 2)

    def run(self, argv):
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            die("compare-postfix: %s failed: %s" % (" ".join(argv), (r.stderr + r.stdout).strip()[-500:]), 2)
        return r.stdout

    def postconf(self, *args):
        return self.run(["postconf", "-c", self.conf] + list(args))

    def queue_count(self, dirs=("incoming", "active", "deferred", "hold", "maildrop")):
        n = 0
        for d in dirs:
            for _, _, files in os.walk(os.path.join(self.queue, d)):
                n += len(files)
        return n

    def inject(self, tpl, n, k, threads=4):
        """Submits n personalised messages (the same text salvo renders) to our smtpd,
        `threads` SMTP sessions in parallel; one recipient per message."""
        errors = []
        prog = Progress("postfix: enqueue", n)
        counter = [0]
        lock = threading.Lock()

        def worker(start):
            try:
                s = smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.bench.test")
                for i in range(start, n, threads):
                    rcpt = "user%d@d%d.bench.test" % (i, i % k)
                    s.sendmail("news@sender.bench.test", [rcpt], render(tpl, i, k).encode())
                    with lock:
                        counter[0] += 1
                s.quit()
            except (smtplib.SMTPException, OSError) as e:
                errors.append(str(e))

        ts = [threading.Thread(target=worker, args=(j,)) for j in range(threads)]
        for t in ts:
            t.start()
        while any(t.is_alive() for t in ts):
            prog.update(counter[0])
            time.sleep(0.2)
        prog.done()
        for t in ts:
            t.join()
        if errors:
            die("compare-postfix: injecting into Postfix failed: %s" % errors[0], 2)

    def wait_deferred(self, n, timeout=600):
        """Waits until all n messages sit in the deferred queue (qmgr saw them)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if (self.queue_count(("deferred",)) >= n
                    and self.queue_count(("incoming", "active", "maildrop")) == 0):
                return
            time.sleep(0.2)
        die("compare-postfix: messages did not reach the deferred queue (%d of %d)"
            % (self.queue_count(("deferred",)), n), 2)

    def release(self):
        """Removes defer_transports, reloads, flushes: the timed part starts here."""
        self.postconf("-e", "defer_transports =")
        self.run(["postfix", "-c", self.conf, "reload"])
        self.run(["postqueue", "-c", self.conf, "-f"])

    def cpu_sample(self, track):
        """Adds the CPU seconds so far of the master and each of its children to
        `track` ({pid: [at first sight, latest]}). Called every 50 ms while delivering:
        a process that exits between two samples loses at most that much of its CPU
        time, so the sum is a close lower bound. Processes seen first after the start
        count from zero."""
        from benchlib import cpu_ticks
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                master = int(f.read().strip())
        except (OSError, ValueError):
            return
        pids = [master]
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open("/proc/%s/stat" % pid) as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == master:
                    pids.append(int(pid))
        first = not track
        for pid in pids:
            t = cpu_ticks(pid)
            if pid in track:
                track[pid][1] = max(track[pid][1], t)
            else:
                track[pid] = [t if first else 0.0, t]

    def stop(self):
        subprocess.run(["postfix", "-c", self.conf, "stop"], capture_output=True)
        subprocess.run(["postfix", "-c", self.conf, "abort"], capture_output=True)


def run_postfix(bench, sink, tpl, n, k, concurrency=50, tls_ca=None, inject_threads=4):
    """Preload n messages (deferred), release, time until the sink has them all and
    the queue is empty. Returns a dict of figures."""
    pf = Postfix(bench, sink.port, concurrency, tls_ca, name="postfix-tls" if tls_ca else "postfix")
    try:
        t0 = time.monotonic()
        pf.inject(tpl, n, k, inject_threads)
        pf.wait_deferred(n)
        load_s = time.monotonic() - t0
        before = sink.stats()
        load0 = loadavg()
        cpu_track = {}
        pf.cpu_sample(cpu_track)
        prog = Progress("postfix: deliver", n)
        start = time.monotonic()
        pf.release()
        done_at = None
        while True:
            st = sink.stats()
            got = st["transactions"] - before["transactions"]
            prog.update(got)
            pf.cpu_sample(cpu_track)
            if got >= n and done_at is None:
                done_at = time.monotonic()
            if done_at is not None and pf.queue_count() == 0:
                break
            if time.monotonic() - start > 1800:
                die("compare-postfix: Postfix did not finish in 30 minutes", 2)
            time.sleep(0.05)
        empty_at = time.monotonic()
        prog.done()
        after = sink.stats()
        pf.cpu_sample(cpu_track)
        cpu = sum(b - a for a, b in cpu_track.values())
        from benchlib import SINK_KEYS, delta
        d = delta(after, before, SINK_KEYS)
        secs = empty_at - start
        return {
            "engine": "postfix", "tls": bool(tls_ca), "loadavg_at_start": load0, "messages": n, "domains": k,
            "preload_s": round(load_s, 2),
            "seconds": round(secs, 3),
            "seconds_to_last_delivery": round(done_at - start, 3),
            "msgs_per_s": round(d["transactions"] / secs, 1),
            "recipients_per_s": round(d["recipients"] / secs, 1),
            "sink": d,
            "cpu_s_per_1000_lower_bound": round(cpu / (n / 1000.0), 3),
            "processes_seen": len(cpu_track),
            "maillog": os.path.join(pf.base, "maillog"),
        }
    finally:
        pf.stop()


def run_ceiling(bench, port, n, size=5000, sessions=50, reps=3):
    """smtp-source -d (connections reused) -> the sink on `port`: the plain SMTP
    ceiling. `reps` runs (a run of 20,000 takes about a second, so one run is at the
    mercy of whatever else the machine does); the median is the figure."""
    argv = ["/usr/sbin/smtp-source", "-d", "-s", str(sessions), "-m", str(n), "-l", str(size),
            "-f", "news@sender.bench.test", "-t", "user@d0.bench.test", "127.0.0.1:%d" % port]
    rates = []
    for _ in range(reps):
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True)
        secs = time.monotonic() - t0
        if r.returncode != 0:
            die("compare-postfix: smtp-source failed: " + r.stderr.strip()[-300:], 2)
        rates.append(round(n / secs, 1))
    return {"command": " ".join(argv[:-1] + ["127.0.0.1:PORT"]), "messages": n,
            "runs_msgs_per_s": rates, "msgs_per_s": sorted(rates)[len(rates) // 2],
            "loadavg": loadavg()}


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def start_smtp_sink(bench):
    port = free_port()
    # -u: unprivileged when started as root; 1000 = listen backlog.
    bench.spawn(["/usr/sbin/smtp-sink", "-u", "nobody", "127.0.0.1:%d" % port, "1000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(port):
        die("compare-postfix: smtp-sink did not start", 2)
    log("smtp-sink on 127.0.0.1:%d" % port)
    return port
