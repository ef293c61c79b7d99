#!/usr/bin/env bash
# Load figures for the HTTP API: wrk against a release build on loopback.
# Prints requests/s and latency percentiles for /healthz (the server alone),
# GET a chat, GET history and a 64 KiB upload, one after the other on one server;
# then GET a chat against /healthz in alternating slices of SLICE (default 2s),
# ROUNDS (default 8) pairs, so a change in the machine's speed during the run
# falls on both: each pair's ratio, and their median.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench-http: needs wrk (apt-get install wrk)" >&2; exit 1; }
duration=${DURATION:-10s}
connections=${CONNECTIONS:-16}

echo "== building (release)" >&2
cargo build --release --quiet --bin chatstore
work=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
base="http://127.0.0.1:$port"
RUST_LOG=warn target/release/chatstore --data-dir "$work/data" serve --addr "127.0.0.1:$port" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

user=0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a
curl -sf -X PUT -H "X-User-Id: $user" "$base/v1/workspace" >/dev/null
chat=$(curl -sf -X POST -H "X-User-Id: $user" "$base/v1/chats" | sed -E 's/.*"chat_id":"([^"]+)".*/\1/')
head -c 1024 /dev/zero | tr '\0' 'h' | curl -sf -X PUT -H "X-User-Id: $user" --data-binary @- "$base/v1/chats/$chat/history"

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
echo "== GET /v1/chats/{id} against /healthz, $rounds pairs of $slice slices, $connections connections"
rate() { wrk -t2 -c"$connections" -d"$slice" "$@" | awk '/Requests\/sec/ {print $2}'; }
ratios=()
for round in $(seq "$rounds"); do
    healthz=$(rate "$base/healthz")
    chat_rate=$(rate -H "X-User-Id: $user" "$base/v1/chats/$chat")
    ratio=$(awk -v c="$chat_rate" -v h="$healthz" 'BEGIN {printf "%.3f", c / h}')
    echo "pair $round: /healthz $healthz requests/s, chat $chat_rate requests/s = ${ratio}x"
    ratios+=("$ratio")
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{r[NR] = $1} END {m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2; printf "chat against /healthz: median %.3fx, range %.3f-%.3fx over %d pairs\n", m, r[1], r[NR], NR}'
