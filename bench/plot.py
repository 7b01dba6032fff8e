#!/usr/bin/python3
"""plot.py: PNG of salvo's msgs/s vs number of recipients and vs worker threads, from
the JSON files of bench/salvo-bench (--json) and bench/compare-postfix (--json), with
gnuplot (Debian's gnuplot-nox, installed here if missing).

usage: bench/plot.py OUT.png RESULTS.json [RESULTS.json ...]

Left panel: msgs/s against recipients, one line per (TLS, worker threads, processes).
Right panel: msgs/s against worker threads (and processes) at the largest campaign,
with Postfix and the smtp-source -> smtp-sink ceiling as horizontal lines when a
compare-postfix file is given."""

import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

import benchlib  # noqa: E402


def salvo_results(doc):
    if "results" in doc:
        return doc["results"]
    out = []
    for res in doc.get("variants", {}).values():
        out += res.get("salvo") or []
    return out


def ok_rate(r):
    """msgs/s of a result: the median of its complete runs (a run stopped by the stall
    watchdog measures the watchdog, not salvo); None if no run completed."""
    reps = r.get("reps_msgs_per_s")
    if reps is None:
        return r["msgs_per_s"] if r.get("status") == "ok" else None
    ok = sorted(x for x, st in zip(reps, r["reps_status"]) if st == "ok" and x is not None)
    return ok[len(ok) // 2] if ok else None


def main():
    if len(sys.argv) < 3:
        benchlib.die(__doc__.split("\n\n")[1], 1)
    png, files = sys.argv[1], sys.argv[2:]
    rows, cmp_rows, postfix, ceiling = [], [], {}, None
    for fn in files:
        with open(fn) as f:
            doc = json.load(f)
        for r in salvo_results(doc):
            rate = ok_rate(r)
            if rate is not None:
                r = dict(r, msgs_per_s=rate)
                (rows if "results" in doc else cmp_rows).append(r)
        for v, res in doc.get("variants", {}).items():
            if res.get("postfix"):
                postfix[v] = res["postfix"]["msgs_per_s"]
        if doc.get("ceiling_smtp_sink"):
            ceiling = doc["ceiling_smtp_sink"]["msgs_per_s"]
    if not rows:
        rows = cmp_rows
    if not rows:
        benchlib.die("plot.py: no completed salvo runs in %s" % " ".join(files), 1)
    if not benchlib.apt_install("gnuplot-nox"):
        benchlib.die("plot.py: gnuplot is needed (apt-get install gnuplot-nox)", 2)

    bench = benchlib.Bench()
    try:
        series = {}
        for r in rows:
            key = ("STARTTLS" if r["tls"] else "plain", r["worker_threads"], r["processes"])
            series.setdefault(key, []).append((r["recipients"], r["msgs_per_s"]))
        nmax = max(r["recipients"] for r in rows)
        right = cmp_rows or [r for r in rows if r["recipients"] == nmax]
        nright = max(r["recipients"] for r in right)
        cmds = ["set terminal pngcairo size 1200,500 font ',10'" if has_cairo()
                else "set terminal png size 1200,500",
                "set output '%s'" % png, "set multiplot layout 1,2",
                "set grid", "set key top left", "set ylabel 'msgs/s'", "set yrange [0:*]",
                "set xlabel 'recipients'", "set title 'salvo: msgs/s vs campaign size'",
                "set format x '%.0s%c'"]
        plots = []
        for i, (key, pts) in enumerate(sorted(series.items())):
            fn = bench.path("s%d.dat" % i)
            with open(fn, "w") as f:
                for x, y in sorted(pts):
                    f.write("%d %f\n" % (x, y))
            plots.append("'%s' using 1:2 with linespoints title '%s, %d thr, %d proc'" % (
                fn, key[0], key[1], key[2]))
        cmds.append("plot " + ", ".join(plots))
        # Right: at the largest campaign, by threads x processes.
        fn = bench.path("threads.dat")
        labels = []
        with open(fn, "w") as f:
            for j, r in enumerate(sorted(right,
                                         key=lambda r: (r["tls"], r["processes"],
                                                        r["worker_threads"]))):
                lab = "%s %dt x %dp" % ("TLS" if r["tls"] else "plain", r["worker_threads"],
                                        r["processes"])
                f.write("%d \"%s\" %f\n" % (j, lab, r["msgs_per_s"]))
                labels.append(lab)
        cmds += ["set title 'salvo at %d recipients: worker threads x processes'" % nright,
                 "set xlabel ''", "set format x '%g'", "set key top right", "set style fill solid 0.6",
                 "set boxwidth 0.6", "set xrange [-0.6:%f]" % (len(labels) - 0.4),
                 "set xtics rotate by -30 font ',9'"]
        extra = []
        for v, y in sorted(postfix.items()):
            extra.append("%f with lines lw 2 title 'Postfix %s (%.0f)'" % (y, v, y))
        if ceiling:
            extra.append("%f with lines lw 2 dt 2 title 'smtp-source -> smtp-sink (%.0f)'"
                         % (ceiling, ceiling))
        cmds.append("plot '%s' using 1:3:xtic(2) with boxes title 'salvo'%s" % (
            fn, "".join(", " + e for e in extra)))
        cmds.append("unset multiplot")
        r = subprocess.run(["gnuplot"], input="\n".join(cmds) + "\n", text=True,
                           capture_output=True)
        if r.returncode != 0:
            benchlib.die("plot.py: gnuplot failed: " + r.stderr.strip()[-500:], 2)
    finally:
        bench.close()
    print(png)
    return 0


def has_cairo():
    r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" in (r.stdout + r.stderr)


if __name__ == "__main__":
    sys.exit(main())
