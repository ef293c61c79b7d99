#!/usr/bin/env bash
# Load figures for the HTTP API: wrk against a release build on loopback.
# Prints requests/s and latency percentiles for /healthz (the server alone),
# GET a chat, GET history and a 64 KiB upload, one after the other on one server;
# then GET a chat against /healthz in alternating slices of SLICE (default 2s),
# ROUNDS (default 8) pairs, so a change in the machine's speed during the run
# falls on both: each pair's ratio, and their median.
#
# CHATSTORE names a `chatstore` binary to serve instead of this checkout's
# release build. VS names another one: a server of it runs beside, and a
# chat is read from both in alternating pairs of slices (this build's rate
# over the other's).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench-http: needs wrk (apt-get install wrk)" >&2; exit 1; }
duration=${DURATION:-10s}
connections=${CONNECTIONS:-16}

echo "== building (release)" >&2
[ -n "${CHATSTORE:-}" ] || cargo build --release --quiet --bin chatstore
work=$(mktemp -d)
trap 'kill $(cat "$work/pids") 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
user=0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a

# Serves a data directory of its own with binary $1 on port $2, with the
# user's workspace and a chat whose history is 1 KiB; prints the chat's id.
start() {
    RUST_LOG=warn "$1" --data-dir "$work/data-$2" serve --addr "127.0.0.1:$2" >&2 &
    echo $! >> "$work/pids"
    local base="http://127.0.0.1:$2" chat
    for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
    curl -sf -X PUT -H "X-User-Id: $user" "$base/v1/workspace" >/dev/null
    chat=$(curl -sf -X POST -H "X-User-Id: $user" "$base/v1/chats" | sed -E 's/.*"chat_id":"([^"]+)".*/\1/')
    head -c 1024 /dev/zero | tr '\0' 'h' | curl -sf -X PUT -H "X-User-Id: $user" --data-binary @- "$base/v1/chats/$chat/history"
    echo "$chat"
}
port=$((20000 + RANDOM % 20000))
base="http://127.0.0.1:$port"
chat=$(start "${CHATSTORE:-target/release/chatstore}" "$port")

cat > "$work/upload.lua" <<LUA
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["X-User-Id"] = "$user"
LUA

echo "== GET /healthz, $connections connections, $duration"
wrk -t2 -c"$connections" -d"$duration" --latency "$base/healthz"
echo "== GET /v1/chats/{id}, $connections connections, $duration"
wrk -t2 -c"$connections" -d"$duration" --latency -H "X-User-Id: $user" "$base/v1/chats/$chat"
echo "== GET /v1/chats/{id}/history (1 KiB), $connections connections, $duration"
wrk -t2 -c"$connections" -d"$duration" --latency -H "X-User-Id: $user" "$base/v1/chats/$chat/history"
echo "== POST /v1/chats/{id}/files?name=bench.bin (64 KiB, replacing), $connections connections, $duration"
wrk -t2 -c"$connections" -d"$duration" --latency -s "$work/upload.lua" "$base/v1/chats/$chat/files?name=bench.bin"

slice=${SLICE:-2s}
rounds=${ROUNDS:-8}
rate() { wrk -t2 -c"$connections" -d"$slice" "$@" | awk '/Requests\/sec/ {print $2}'; }
# Alternates slices of two requests, `rounds` pairs: each pair's rates and
# the ratio of the first to the second, then their median. The requests are
# the arrays `first` and `second` (wrk's arguments); $1 and $2 name them.
alternate() {
    local ratios=() round a b ratio
    for round in $(seq "$rounds"); do
        a=$(rate "${first[@]}")
        b=$(rate "${second[@]}")
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", a / b}')
        echo "pair $round: $1 $a requests/s, $2 $b requests/s = ${ratio}x"
        ratios+=("$ratio")
    done
    printf '%s\n' "${ratios[@]}" | sort -n | awk -v what="$1 against $2" '{r[NR] = $1} END {m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2; printf "%s: median %.3fx, range %.3f-%.3fx over %d pairs\n", what, m, r[1], r[NR], NR}'
}

echo "== GET /v1/chats/{id} against /healthz, $rounds pairs of $slice slices, $connections connections"
first=(-H "X-User-Id: $user" "$base/v1/chats/$chat")
second=("$base/healthz")
alternate chat /healthz

[ -n "${VS:-}" ] || exit 0
other_port=$((port + 1))
other_chat=$(start "$VS" "$other_port")
echo "== GET /v1/chats/{id}, this build against $VS, $rounds pairs of $slice slices, $connections connections"
second=(-H "X-User-Id: $user" "http://127.0.0.1:$other_port/v1/chats/$other_chat")
alternate "this build" "the other"
