#!/usr/bin/env bash
# Instruction counts per call, native vs component, under callgrind: the
# figures of `cargo bench --bench native` that do not move with the
# machine's load. Each side of each use case runs twice, with 0 and with N
# calls after the same set-up; the difference over N is one call.
#   CALLS=200 scripts/bench-native-callgrind.sh
# BENCH names a bench binary to count instead of this checkout's (another
# build's, to compare).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${CALLS:-200}
command -v valgrind >/dev/null || { echo "bench-native-callgrind: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
if [ -z "${BENCH:-}" ]; then
  echo "== building (bench profile)" >&2
  cargo bench -p chatstore-host --bench native --no-run --quiet 2>/dev/null
fi
bench=${BENCH:-$(ls -t target/release/deps/native-* | grep -v '\.d$' | head -1)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Instructions of one run of one side of one use case, `calls` times.
count() {
  valgrind --tool=callgrind --callgrind-out-file="$work/out" "$bench" --only "$1" --mode "$2" --calls "$3" 2>&1 |
    sed -nE 's/.*Collected : ([0-9]+).*/\1/p'
}
printf '%-28s %12s %12s %12s %7s\n' "use case (instructions/call)" native component + x
for case in get-workspace get-chat list-chats get-attachment list-attachments read-history read-attachment get-usage upload append-history; do
  n=$(( ($(count "$case" native "$calls") - $(count "$case" native 0)) / calls ))
  k=$(( ($(count "$case" component "$calls") - $(count "$case" component 0)) / calls ))
  printf '%-28s %12d %12d %12d %7s\n' "$case" "$n" "$k" $((k - n)) "$(awk "BEGIN{printf \"%.2f\", $k/$n}")"
done
