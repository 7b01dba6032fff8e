#!/bin/sh
# Checks the deploy/ files that cannot run here (no systemd as PID 1, no Docker
# engine) as far as the machine allows:
#   - systemd units: `systemd-analyze verify` (no running systemd needed) prints
#     nothing, with ExecStart pointed at the binaries just built;
#   - Dockerfile: every apt package it installs exists in this Debian's archive;
#   - compose.yaml parses, its services and mounted files exist, and the mounted
#     config passes `salvo config check`;
#   - the compose demo campaign passes enqueue's validation (it then fails only at
#     connecting to Redis: exit 2).
# Usage: deploy_check.sh SOURCE_DIR SALVO_BIN SINK_BIN. Exit 77 (skipped) when no
# tool for any check is installed.
set -eu
src=$1 salvo=$2 sink=$3
fail=0 ran=0
bad() { echo "FAIL: $*" >&2; fail=1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if command -v systemd-analyze >/dev/null 2>&1; then
    ran=1
    for u in salvo.service salvo@.service salvo-sink.service; do
        name=$u
        [ "$u" = salvo@.service ] && name=salvo@check.service
        sed -e "s|/usr/local/bin/salvo-sink|$sink|g" -e "s|/usr/local/bin/salvo |$salvo |g" \
            "$src/deploy/$u" >"$tmp/$name"
    done
    out=$(cd "$tmp" && systemd-analyze verify --man=no ./salvo.service ./salvo@check.service \
        ./salvo-sink.service 2>&1) || bad "systemd-analyze verify failed: $out"
    [ -z "$out" ] || bad "systemd-analyze verify: $out"
    grep -q '^ExecStart=/usr/local/bin/salvo run -c /etc/salvo/salvo.toml$' \
        "$src/deploy/salvo.service" || bad "salvo.service: ExecStart is not the documented one"
fi

# Only where the package lists are present (apt-get update has run).
if command -v apt-cache >/dev/null 2>&1 && apt-cache show libc6 >/dev/null 2>&1; then
    ran=1
    # Package names: the continuation lines after each `apt-get install ... \`, up to
    # the next line that starts with &&.
    # shellcheck disable=SC1003
    pkgs=$(awk '/^ *&&/ {on=0} on {print} /apt-get install/ {on=1}' "$src/deploy/Dockerfile" |
        tr -d '\\' | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | sort -u)
    n=$(echo "$pkgs" | wc -w)
    # One apt-cache call for all (it is slow on a loaded machine; with several names
    # it succeeds if any exists, so compare the names it found).
    # shellcheck disable=SC2086
    known=$(apt-cache show $pkgs 2>/dev/null | awk '/^Package:/ {print $2}' | sort -u)
    for p in $pkgs; do
        echo "$known" | grep -qx "$p" || bad "Dockerfile: no Debian package '$p'"
    done
    [ "$n" -ge 12 ] || bad "Dockerfile: found only $n package names (parser broken?)"

    # The runtime stage (after the last FROM) must install the package of every shared
    # library the binaries link (the C library and compiler runtimes come with the
    # base image or as dependencies; sanitizer runtimes only exist in test builds).
    if command -v ldd >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
        # shellcheck disable=SC1003
        runtime=$(awk '/^FROM/ {buf=""} {buf=buf"\n"$0} END {print buf}' "$src/deploy/Dockerfile" |
            awk '/^ *&&/ {on=0} on {print} /apt-get install/ {on=1}' |
            tr -d '\\' | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | sort -u)
        libs=$(ldd "$salvo" "$sink" | awk '/=>/ {print $3}' | sort -u)
        # dpkg knows a file by the path it shipped (/lib/... or /usr/lib/..., usrmerge):
        # ask for both spellings, in one call (dpkg -S is slow); "package[:arch]: path".
        # shellcheck disable=SC2086,SC2046
        owners=$(dpkg -S $libs $(for l in $libs; do readlink -f "$l"; done) 2>/dev/null || true)
        for l in $libs; do
            r=$(readlink -f "$l")
            pkg=$(echo "$owners" |
                awk -v a="$l" -v b="$r" '$2 == a || $2 == b {sub(/:.*/, "", $1); print $1; exit}')
            case "$pkg" in
                '') bad "$l (linked by salvo or salvo-sink) belongs to no Debian package" ;;
                libc6 | libgcc-s1 | libstdc++6 | libasan* | libubsan* | libtsan* | liblsan*) ;;
                *) echo "$runtime" | grep -qx "$pkg" ||
                    bad "Dockerfile: runtime stage lacks $pkg ($l, linked by salvo or salvo-sink)" ;;
            esac
        done
    fi
fi

if command -v python3 >/dev/null 2>&1 && python3 -c 'import yaml' 2>/dev/null; then
    ran=1
    python3 - "$src/deploy" <<'PY' || bad "compose.yaml"
import os, sys, yaml
d = sys.argv[1]
c = yaml.safe_load(open(os.path.join(d, "compose.yaml")))
s = c["services"]
for name in ("redis", "salvo", "sink"):
    assert name in s, "no service " + name
assert "--appendonly" in s["redis"]["command"], "redis without AOF"
assert s["salvo"]["deploy"]["replicas"] >= 2, "fewer than 2 salvo workers"
for svc in s.values():
    for v in svc.get("volumes", []):
        host = v.split(":")[0]
        if host.startswith("."):
            assert os.path.exists(os.path.join(d, host)), "missing mounted file " + host
    b = svc.get("build")
    if b:
        assert os.path.exists(os.path.join(d, b["context"], b["dockerfile"])), "no Dockerfile"
PY
fi

# The config compose mounts, and its demo campaign (validated before any Redis use).
ran=1
"$salvo" config check -c "$src/deploy/compose.salvo.toml" >/dev/null 2>"$tmp/err" ||
    bad "compose.salvo.toml: $(cat "$tmp/err")"
[ ! -s "$tmp/err" ] || bad "compose.salvo.toml warns: $(cat "$tmp/err")"
rc=0
SALVO_REDIS_URL=redis://127.0.0.1:1/0 "$salvo" enqueue -c "$src/deploy/compose.salvo.toml" \
    --from news@example.com --recipients "$src/deploy/demo/recipients.csv" \
    --template "$src/deploy/demo/template.eml" >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" -eq 2 ] || bad "demo campaign: expected exit 2 (valid input, no Redis), got $rc: $(cat "$tmp/err")"

[ "$ran" -eq 1 ] || exit 77
exit $fail
