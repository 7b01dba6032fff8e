#!/bin/sh
# Redis queue figures for BENCHMARKS.md, side by side on one fresh redis-server
# (AOF on, appendfsync everysec, loopback):
#   1. raw XADD throughput: redis-benchmark -P 64 (one XADD = one stream entry)
#   2. salvo enqueue of a 1 M-recipient campaign (validate + enqueue, both passes)
#   3. Redis memory per queued recipient, without and with personalisation
# Usage: redisq/bench.sh [path/to/salvo] [recipients]   (default build/dev, 1000000)
set -eu
SALVO=${1:-build/dev/engine/salvo}
N=${2:-1000000}
SALVO=$(realpath "$SALVO")
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'redis-cli -p $PORT shutdown nosave >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$DIR" --appendonly yes \
    --appendfsync everysec --save '' --daemonize yes --logfile "$DIR/redis.log" >/dev/null
until redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; do sleep 0.1; done
export SALVO_REDIS_URL="redis://127.0.0.1:$PORT/0"
unset SALVO_CONFIG

echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $(nproc) cores, $N recipients"

# 1. Raw XADD, 64 pipelined, 50 clients (redis-benchmark's default), 60-byte value.
redis-benchmark -p "$PORT" -P 64 -n 2000000 -q XADD bench:raw '*' j \
    "123456	example.com	0	1	firstname.lastname12345@x" | tr '\r' '\n' | tail -1
redis-cli -p "$PORT" del bench:raw >/dev/null

# 2. Campaign CSVs: 500 domains, a name column used by one template and not the other.
awk -v n="$N" 'BEGIN { print "email,first"; for (i = 0; i < n; i++)
    printf "firstname.lastname%d@domain%d.example,Name%d\n", i, i % 500, i % 997 }' > "$DIR/r.csv"
printf 'Subject: Our news\r\n\r\nThe same text for everyone.\r\n' > "$DIR/plain.eml"
printf 'Subject: Hello {{first}}\r\n\r\nDear {{first}}, our news.\r\n' > "$DIR/pers.eml"

run() { # $1 = template, $2 = label
    before=$(redis-cli -p "$PORT" info memory | awk -F: '/^used_memory:/ {print $2+0}')
    start=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$DIR/rss" "$SALVO" enqueue --from news@sender.example \
        --recipients "$DIR/r.csv" --template "$1" --campaign "$2" >/dev/null
    end=$(date +%s.%N)
    after=$(redis-cli -p "$PORT" info memory | awk -F: '/^used_memory:/ {print $2+0}')
    awk -v s="$start" -v e="$end" -v n="$N" -v b="$before" -v a="$after" -v rss="$(cat "$DIR/rss")" \
        -v l="$2" 'BEGIN { printf "salvo enqueue (%s): %.2f s, %.0f recipients/s, %.1f bytes of Redis memory per recipient, peak RSS %.1f MiB\n",
        l, e - s, n / (e - s), (a - b) / n, rss / 1024 }'
}
run "$DIR/plain.eml" plain
run "$DIR/pers.eml" personalised
redis-cli -p "$PORT" info memory | grep -E '^used_memory_human'
