#!/usr/bin/env bash
# Large content through the `chatstore` command and the HTTP server, side by
# side with `cp` + `sync` of the same file on the same disk, in one run:
# wall time and peak resident memory of each process (GNU time), for a
# 1 GiB upload and download with default settings.
#   SIZE_MIB=1024 scripts/bench-content.sh
# CHATSTORE names a `chatstore` binary to run instead of this checkout's
# release build (another build, to compare).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${SIZE_MIB:-1024}
timer=/usr/bin/time
[ -x "$timer" ] || { echo "bench-content: needs GNU time (apt-get install time)" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench-content: needs curl" >&2; exit 1; }

echo "== building (release)" >&2
[ -n "${CHATSTORE:-}" ] || cargo build --release --quiet --bin chatstore
bin=$(realpath "${CHATSTORE:-target/release/chatstore}")
work=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
server=
trap '[ -n "$server" ] && kill $server 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

head -c $((size_mib << 20)) /dev/urandom > "$work/source.bin"
sync "$work/source.bin"
user=0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a
data="$work/data"
cs() { "$bin" --data-dir "$data" "$@"; }
cs workspace ensure --user $user >/dev/null
chat=$(cs chat create --user $user | sed -nE 's/.*"chat_id": "([^"]+)".*/\1/p')

# Runs a command under GNU time; prints "seconds peak-KiB".
measure() { "$timer" -f '%e %M' -o "$work/time" "$@" >/dev/null; cat "$work/time"; }

echo "== $size_mib MiB through the CLI (three rounds, side by side)"
baseline=$(measure "$bin" --data-dir "$data" workspace get --user $user | cut -d' ' -f2)
for round in 1 2 3; do
  copy=$(measure sh -c "cp '$work/source.bin' '$work/copy.bin' && sync '$work/copy.bin'" | cut -d' ' -f1)
  rm -f "$work/copy.bin"
  # A new name each round, as cp makes a new file; the last round's is removed after.
  read -r put put_kib < <(measure "$bin" --data-dir "$data" file put --user $user --chat "$chat" --name "cli-$round.bin" --file "$work/source.bin")
  file=$(cs file list --user $user --chat "$chat" | sed -nE 's/.*"file_id": "([^"]+)".*/\1/p' | tail -1)
  read -r get get_kib < <(measure "$bin" --data-dir "$data" file get --user $user --chat "$chat" --file-id "$file" --output "$work/out.bin")
  cmp -s "$work/source.bin" "$work/out.bin" || { echo "bench-content: the download differs" >&2; exit 1; }
  rm -f "$work/out.bin"
  cs file delete --user $user --chat "$chat" --file-id "$file" >/dev/null
  echo "round $round: cp+sync ${copy}s; file put ${put}s ($(awk "BEGIN{printf \"%.2f\", $copy/$put}")x cp+sync), peak RSS $((put_kib / 1024)) MiB (+$(((put_kib - baseline) / 1024)) MiB over a command that reads nothing); file get ${get}s ($(awk "BEGIN{printf \"%.2f\", $copy/$get}")x cp+sync: it syncs its output too), peak RSS $((get_kib / 1024)) MiB (+$(((get_kib - baseline) / 1024)) MiB)"
done

echo "== $size_mib MiB through HTTP (three rounds, side by side)"
port=$((20000 + RANDOM % 20000))
base="http://127.0.0.1:$port"
RUST_LOG=warn "$bin" --data-dir "$data" serve --addr "127.0.0.1:$port" &
server=$!
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b - a}'; }
peak() { sed -nE 's/^VmHWM:\s+([0-9]+) kB/\1/p' /proc/$server/status; }
rss() { sed -nE 's/^VmRSS:\s+([0-9]+) kB/\1/p' /proc/$server/status; }
# The server's minor page faults so far.
faults() { awk '{print $10}' /proc/$server/stat; }
idle=$(rss)
for round in 1 2 3; do
  start=$(date +%s.%N); cp "$work/source.bin" "$work/copy.bin"; sync "$work/copy.bin"; copy=$(elapsed "$start"); rm -f "$work/copy.bin"
  faults=$(faults)
  start=$(date +%s.%N)
  curl -sf -X POST -T "$work/source.bin" -H "X-User-Id: $user" "$base/v1/chats/$chat/files?name=http-$round.bin" > "$work/put.json"
  put=$(elapsed "$start")
  faults=$(( $(faults) - faults ))
  file=$(sed -nE 's/.*"file_id":"([^"]+)".*/\1/p' "$work/put.json")
  start=$(date +%s.%N)
  curl -sf -H "X-User-Id: $user" "$base/v1/chats/$chat/files/$file/content" -o "$work/out.bin"
  get=$(elapsed "$start")
  cmp -s "$work/source.bin" "$work/out.bin" || { echo "bench-content: the download differs" >&2; exit 1; }
  rm -f "$work/out.bin"
  curl -sf -X DELETE -H "X-User-Id: $user" "$base/v1/chats/$chat/files/$file"
  echo "round $round: cp+sync ${copy}s; PUT ${put}s ($(awk "BEGIN{printf \"%.2f\", $copy/$put}")x cp+sync); GET ${get}s; server peak RSS $(( $(peak) / 1024 )) MiB (+$(( ($(peak) - idle) / 1024 )) MiB over idle), $faults page faults in the PUT"
done
