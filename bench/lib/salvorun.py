"""One salvo delivery run against salvo-sink: private Redis, config, enqueue,
`salvo run --drain` (1 or more processes), figures."""

import json
import os
import re
import subprocess
import threading
import time

from benchlib import (SINK_KEYS, Measured, Progress, Redis, delta, die, log, percentile)

PENDING = "pending engine"


def write_config(path, redis_url, sink_port, threads, tls, ca=None, extra=(), dns_port=None,
                 route="next-hop", relay="ip", log_level="warn"):
    """route "next-hop": [remote.sink] at 127.0.0.1 (relay "ip"; with TLS the
    certificate is not verified, allow-invalid-certs = true: what Postfix's
    `encrypt` level does) or at sink.bench.test (relay "name": resolved by our
    dnsmasq, certificate verified against the test CA). route "mx": MX lookups via
    dnsmasq, queue.outbound.mx-port = the sink's port, verified."""
    lines = [
        "# written by bench/salvo-bench",
        "[redis]",
        'url = "%s"' % redis_url,
        'queue = "bench"',
        "",
        "[server.workers]",
        "threads = %d" % threads,
        "",
        "[log]",
        'level = "%s"' % log_level,
        "",
        "[queue.outbound]",
        ('mx-port = %d' % sink_port) if route == "mx" else 'next-hop = "sink"',
        "",
        "[queue.outbound.tls]",
        'starttls = "%s"' % ("require" if tls else "disable"),
    ]
    if tls and route == "next-hop" and relay == "ip":
        lines.append("allow-invalid-certs = true")
    if ca:
        lines.append('ca-file = "%s"' % ca)
    lines += [
        "",
        "[remote.sink]",
        'address = "%s"' % ("127.0.0.1" if relay == "ip" else "sink.bench.test"),
        "port = %d" % sink_port,
        'protocol = "smtp"',
        "",
    ]
    if dns_port:
        lines += ["[resolver]", 'nameservers = ["127.0.0.1:%d"]' % dns_port, ""]
    lines += list(extra)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def salvo_env():
    env = dict(os.environ)
    env.pop("SALVO_REDIS_URL", None)
    env.pop("SALVO_CONFIG", None)
    return env


def engine_available(salvo):
    """False while `salvo run` is the placeholder of the pre-engine tree."""
    with open(salvo, "rb") as f:
        return b"'run' is not implemented yet" not in f.read()


def run(bench, salvo, sink, **kw):
    """Returns a dict of figures (see bench/README.md, "salvo-bench"); the run's
    redis-server is stopped afterwards."""
    redis = Redis(bench)
    try:
        return _run(bench, salvo, sink, redis, **kw)
    finally:
        redis.stop()


def run_reps(bench, salvo, sink, reps=1, **kw):
    """`reps` runs of the same case (each on a fresh Redis); returns the run with the
    median msgs/s, with every run's msgs/s in `reps_msgs_per_s`. A run of 20,000
    messages lasts about a second on this machine, so one run is at the mercy of
    whatever else runs at that moment."""
    runs = []
    for i in range(reps):
        kw2 = dict(kw, tag="%s-%d" % (kw.get("tag", "run"), i))
        r = run(bench, salvo, sink, **kw2)
        runs.append(r)
        if r["status"] == PENDING:
            return r
    done = [r for r in runs if "msgs_per_s" in r]
    if not done:
        return runs[-1]
    bad = [r for r in runs if r["status"] != "ok"]
    done.sort(key=lambda r: r["msgs_per_s"])
    med = dict(done[len(done) // 2])
    med["reps_msgs_per_s"] = [r.get("msgs_per_s") for r in runs]
    med["reps_status"] = [r["status"] for r in runs]
    med["failed_runs"] = [{k: r.get(k) for k in ("run_output", "stalled", "queue_stats", "sink",
                                                 "not_delivered_sample", "exit_codes")}
                          for r in bad]
    if bad:
        med["status"] = bad[0]["status"] + " (in %d of %d runs)" % (len(bad), len(runs))
    return med


def _run(bench, salvo, sink, redis, *, n, k, size, personalised, tls, threads=2, processes=1,
        ca=None, extra=(), enqueue_only=False, timeout=1800, label=None, tag="run",
        dns_port=None, route="next-hop", relay="ip", perf=None, stall=60, monitor=False,
        log_level="warn"):
    from benchlib import make_campaign
    conf = bench.path("salvo-%s.toml" % tag)
    # queue.outbound.tls.ca-file (the test CA, strict verification) came with the
    # engine; a build without it would refuse the key.
    with open(salvo, "rb") as f:
        exe = f.read()
    knows_ca = b"queue.outbound.tls.ca-file" in exe
    # `salvo run --progress`: one line per second per process, shown live under the bar.
    knows_progress = b"--no-progress" in exe
    write_config(conf, redis.url, sink.port, threads, tls, ca if knows_ca else None, extra,
                 dns_port, route, relay, log_level)
    env = salvo_env()
    r = subprocess.run([salvo, "config", "check", "-c", conf], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        die("salvo-bench: config rejected: " + (r.stderr + r.stdout).strip(), 1)
    csv, tpl = make_campaign(bench, n, k, size, personalised)
    res = {
        "engine": "salvo", "label": label or "", "recipients": n, "domains": k,
        "template_bytes": os.path.getsize(tpl), "personalised": personalised, "tls": tls,
        "worker_threads": threads, "processes": processes, "config": conf,
        "route": route if route == "mx" else "next-hop (%s)" % relay,
    }

    # Enqueue (timed on its own; not part of the delivery figures).
    with open(bench.path("enqueue.out"), "w+") as of, open(bench.path("enqueue.err"), "w+") as ef:
        m = Measured([salvo, "enqueue", "-c", conf, "--from", "news@sender.bench.test",
                      "--recipients", csv, "--template", tpl, "--campaign", "bench"],
                     env=env, stdout=of, stderr=ef)
        m.wait()
        of.seek(0)
        ef.seek(0)
        out, err = of.read(), ef.read()
    if m.rc != 0:
        die("salvo-bench: salvo enqueue failed (%d): %s" % (m.rc, err.strip()), 2)
    res["enqueue"] = {"seconds": round(m.wall, 3), "recipients_per_s": round(n / m.wall),
                      "peak_rss_mib": round(m.maxrss_kb / 1024, 1)}
    res["message_id"] = out.strip()
    if enqueue_only:
        res["status"] = "enqueue only"
        return res
    if not engine_available(salvo):
        res["status"] = PENDING
        return res

    from pfbench import loadavg
    res["loadavg_at_start"] = loadavg()
    sink_before = sink.stats()
    from benchlib import cpu_ticks
    sink_cpu0, redis_cpu0 = cpu_ticks(sink.proc.pid), cpu_ticks(redis.proc.pid)
    mon = Monitor(redis.port) if monitor else None
    top0, calls0 = redis.command_counts()
    start_ms = time.time() * 1000.0
    procs = []
    for i in range(processes):
        lf = open(bench.path("salvo-run-%s-%d.log" % (tag, i)), "w+")
        argv = [salvo, "run", "-c", conf, "--drain"] + (["--progress"] if knows_progress else [])
        if perf and i == 0:
            argv = ["perf", "record", "-F", "999", "-g", "-q", "-o", perf, "--"] + argv
            res["perf"] = perf
        procs.append((Measured(argv, env=env,
                               stdout=lf, stderr=subprocess.STDOUT), lf))
    expected = n  # transactions: one per recipient when personalised
    stop = threading.Event()
    first_last = {}

    def progress():
        # Also a watchdog: no new recipient at the sink for `stall` seconds while salvo
        # still runs (e.g. everything deferred for a retry minutes away) ends the run
        # with SIGTERM (salvo's graceful stop), so a broken run cannot eat the session.
        pr = Progress("salvo%s: deliver" % (" (TLS)" if tls else ""), n)
        last, last_t = -1, time.monotonic()
        while not stop.is_set():
            st = sink.stats()
            got = st["recipients"] - sink_before["recipients"]
            pr.update(got, progress_display([last_progress(lf.name) for _, lf in procs]))
            now = time.monotonic()
            if got != last:
                last, last_t = got, now
            elif now - last_t > stall:
                first_last["stalled"] = got
                for p, _ in procs:
                    if p.proc.poll() is None:
                        p.proc.terminate()
                break
            if got >= n and "all" not in first_last:
                first_last["all"] = now
            stop.wait(0.25)
        pr.done()

    th = threading.Thread(target=progress, daemon=True)
    th.start()
    rcs = [p.wait(timeout) for p, _ in procs]
    stop.set()
    th.join()
    top1, calls1 = redis.command_counts()
    if mon:
        res.update(mon.stop(n))
    sink_after = sink.stats()
    res["sink_cpu_s"] = round(cpu_ticks(sink.proc.pid) - sink_cpu0, 2)
    res["redis_cpu_s"] = round(cpu_ticks(redis.proc.pid) - redis_cpu0, 2)
    d = delta(sink_after, sink_before, SINK_KEYS)
    wall = max(p.wall for p, _ in procs)
    cpu = sum(p.cpu for p, _ in procs)
    logs = []
    for p, lf in procs:
        final = last_progress(lf.name)
        if final:
            log(final)
        lf.seek(0)
        # The progress lines stay in the log file, not in the report.
        logs.append("\n".join(l for l in lf.read().strip().splitlines()
                              if not PROGRESS_RE.match(l))[-2000:])
        lf.close()
    res["exit_codes"] = rcs
    if "stalled" in first_last:
        res["stalled"] = "no progress for %d s at %d of %d recipients: stopped (SIGTERM)" % (
            stall, first_last["stalled"], n)
    if "all" in first_last:
        res["seconds_to_last_delivery"] = round(first_last["all"] - procs[0][0].t0, 3)
    res["run_output"] = logs
    for line in "\n".join(logs).splitlines():
        m = re.search(r"stopped: (\d+) redis round trips \(([\d.]+) per recipient", line)
        if m:
            res.setdefault("redis_round_trips", []).append(int(m.group(1)))
            res.setdefault("redis_round_trips_per_rcpt", []).append(float(m.group(2)))
    res["seconds"] = round(wall, 3)
    res["messages"] = d["transactions"]
    res["msgs_per_s"] = round(d["transactions"] / wall, 1)
    res["recipients_per_s"] = round(d["recipients"] / wall, 1)
    res["sink"] = d
    res["connections"] = d["connections"]
    res["tls_full"] = d["tls_handshakes_full"]
    res["tls_resumed"] = d["tls_handshakes_resumed"]
    if d["transactions"]:
        res["tls_full_per_msg"] = round(d["tls_handshakes_full"] / d["transactions"], 5)
    hs = d["tls_handshakes_full"] + d["tls_handshakes_resumed"]
    if hs:
        res["tls_resumed_share"] = round(d["tls_handshakes_resumed"] / hs, 4)
    # Our own two INFO calls are in the difference; take them out.
    res["redis_cmds_per_rcpt"] = round((calls1 - calls0 - 2) / n, 4)
    res["redis_client_cmds_note"] = ("commandstats calls, including commands run inside "
                                     "Lua scripts (Redis 7 counts both)")
    res["cpu_s"] = round(cpu, 3)
    res["cpu_s_per_1000_msgs"] = round(cpu / (max(1, d["transactions"]) / 1000.0), 4)
    res["peak_rss_mib"] = round(max(p.maxrss_kb for p, _ in procs) / 1024, 1)
    # Latency: the events stream has one entry per recipient outcome with `at` (ms);
    # the engine records no per-transaction start time, so what is measurable is the
    # time from the start of `salvo run` to each recipient's delivered event.
    lat = events_latency(redis, start_ms)
    res.update(lat)
    qs = subprocess.run([salvo, "queue", "stats", "-c", conf, "--json"], capture_output=True,
                        text=True, env=env)
    try:
        res["queue_stats"] = json.loads(qs.stdout)
    except ValueError:
        res["queue_stats"] = qs.stdout.strip() or qs.stderr.strip()
    ok = ("stalled" not in first_last and all(rc == 0 for rc in rcs) and d["recipients"] == n and d["duplicates"] == 0)
    res["status"] = "ok" if ok else "INCOMPLETE (see exit_codes, sink, queue_stats)"
    if not ok:
        res["not_delivered_sample"] = failure_sample(redis)
    return res


PROGRESS_RE = re.compile(r"salvo\[\d+\]: [\d,]+ delivered ")


def last_progress(path):
    """The latest `salvo[PID]: N delivered (N/s), ...` line of a run's log, or None."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        if PROGRESS_RE.match(line):
            return line.strip()
    return None


PROGRESS_FIELDS = re.compile(
    r"(salvo\[\d+\]): ([\d,]+) delivered \(([\d,]+)/s\), ([\d,]+) deferred, ([\d,]+) bounced, "
    r"queue ([\d,?]+) \(([\d,?]+) in flight\), TLS resumed (\S+)")


def progress_display(lines):
    """Short lines for a terminal: per process its deliveries, rate and TLS
    resumption (deferred/bounced when not 0), then the shared queue once."""
    out, queue = [], None
    for line in lines:
        m = PROGRESS_FIELDS.match(line or "")
        if not m:
            continue
        who, dlv, rate, dfr, bnc, q, fl, tls = m.groups()
        extra = "".join(", %s %s" % (v, k) for v, k in ((dfr, "deferred"), (bnc, "bounced"))
                        if v != "0")
        out.append("%s: %s delivered (%s/s)%s, TLS resumed %s" % (who, dlv, rate, extra, tls))
        queue = "queue: %s waiting, %s in flight" % (q, fl)
    return out + ([queue] if queue else [])


class Monitor:
    """Counts the commands clients send during the run with Redis MONITOR, which
    marks the ones a Lua script runs ("[0 lua]"): commands sent by salvo per
    recipient, an upper bound on its round trips per recipient (a pipelined batch
    is one round trip and several commands). MONITOR costs Redis time: a run with
    it is for this figure, not for msgs/s."""

    def __init__(self, port):
        import socket
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
        self.f = self.sock.makefile("rb")
        assert self.f.readline().startswith(b"+OK")
        self.counts = {"client": 0, "lua": 0}
        self.by_cmd = {}
        self.th = threading.Thread(target=self._read, daemon=True)
        self.th.start()

    def _read(self):
        import re
        rx = re.compile(rb'^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]*)"')
        for line in self.f:
            m = rx.match(line)
            if not m:
                continue
            who = "lua" if m.group(1) == b"lua" else "client"
            cmd = m.group(2).decode(errors="replace").lower()
            if who == "client" and cmd == "info":
                continue  # the harness's own
            self.counts[who] += 1
            if who == "client":
                self.by_cmd[cmd] = self.by_cmd.get(cmd, 0) + 1

    def stop(self, n):
        time.sleep(0.2)
        import socket
        self.sock.shutdown(socket.SHUT_RDWR)
        self.th.join(timeout=5)
        self.sock.close()
        return {"client_cmds_per_rcpt": round(self.counts["client"] / n, 4),
                "client_cmds": self.by_cmd, "script_cmds": self.counts["lua"]}


def failure_sample(redis, count=5):
    """The last few non-delivered events (type, reply, TLS facts): why a run failed."""
    out = []
    try:
        for _, fields in redis.cmd("XREVRANGE", "salvo:{bench}:events", "+", "-"):
            f = {k.decode(): v.decode(errors="replace") for k, v in zip(fields[::2], fields[1::2])}
            if f.get("t") != "delivered":
                out.append({k: f.get(k) for k in ("t", "reply", "tls", "r")})
                if len(out) >= count:
                    break
    except Exception as e:  # noqa: BLE001 - diagnostic only
        out.append({"error": str(e)})
    return out


def events_latency(redis, start_ms):
    """Two latencies from the events stream (one entry per recipient outcome):
    `at` - run start = when each recipient was delivered, counted from the start
    of `salvo run`; `ms` = how long the delivering attempt took (MAIL FROM, or the
    connection when a new one was opened, to the final reply)."""
    key = "salvo:{bench}:events"
    ats, attempt = [], []
    last = "-"
    while True:
        try:
            batch = redis.cmd("XRANGE", key, last, "+", "COUNT", 10000)
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            return {"latency_note": "events stream unreadable: %s" % e}
        if not batch:
            break
        for eid, fields in batch:
            f = dict(zip(fields[::2], fields[1::2]))
            if f.get(b"t") == b"delivered" and b"at" in f:
                ats.append(float(f[b"at"]) - start_ms)
                if b"ms" in f:
                    attempt.append(float(f[b"ms"]))
        last = "(" + batch[-1][0].decode()
        if len(batch) < 10000:
            break
    if not ats:
        return {"latency_note": "no delivered events with a time stamp in %s" % key}
    ats.sort()
    res = {"delivered_events": len(ats),
           "delivery_time_p50_ms": round(percentile(ats, 50), 1),
           "delivery_time_p99_ms": round(percentile(ats, 99), 1),
           "latency_note": "delivery time: from the start of `salvo run` to each "
                           "recipient's delivered event (`at`); attempt: the duration "
                           "of the delivering SMTP attempt (`ms`)"}
    if attempt:
        attempt.sort()
        res["attempt_p50_ms"] = round(percentile(attempt, 50), 1)
        res["attempt_p99_ms"] = round(percentile(attempt, 99), 1)
    return res
