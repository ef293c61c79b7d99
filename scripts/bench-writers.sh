#!/usr/bin/env bash
# Many writers: 64 KiB uploads over HTTP from 16 workspaces at once and from
# one, against what the disk itself does in the same run (16 threads and one
# writing and fsyncing 64 KiB files in the same directory tree, and 16
# replacing such files durably and at once) and against the floor under any
# upload over HTTP (a bare server that only writes, or durably replaces,
# each body: host/http/examples/bare-upload.rs, with the same load); then the
# 16-workspace rate while another workspace streams 1 GiB uploads; then the
# upload latency in a workspace of many chats and files against one of 10,
# and in that one of 10 before and after the other grew.
#
#   scripts/bench-writers.sh                 # SQLite metadata
#   METADATA=memory scripts/bench-writers.sh # metadata in the server's memory
#
# DURATION (default 10s) per wrk run; BIG (default 1024, MiB) for the
# streamed upload; CHATS (10000) and FILES (100000) for the big workspace;
# CHATSTORE, a `chatstore` binary to serve instead of this checkout's
# release build; VS, another one: at the end, a server of it on a data
# directory of its own, and the 16 workspaces' uploads alternated between
# the two in PAIRS (default 4) pairs of runs (this build's rate over the
# other's).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench-writers: needs wrk (apt-get install wrk)" >&2; exit 1; }
duration=${DURATION:-10s}
seconds=${duration%s}
big_mib=${BIG:-1024}
many_chats=${CHATS:-10000}
many_files=${FILES:-100000}

echo "== building (release)" >&2
[ -n "${CHATSTORE:-}" ] || cargo build --release --quiet --bin chatstore
cargo build --release --quiet -p chatstore-http --example bare-upload
bin=${CHATSTORE:-target/release/chatstore}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/chatstore-bench.XXXXXX")
port=$((20000 + RANDOM % 20000))
base="http://127.0.0.1:$port"
metadata_args=()
[ -n "${METADATA:-}" ] && metadata_args=(--metadata "$METADATA")
RUST_LOG=warn "$bin" --data-dir "$work/data" "${metadata_args[@]}" \
    serve --addr "127.0.0.1:$port" --max-concurrent 64 &
server=$!
floor=
other_server=
trap 'kill $server $floor $other_server 2>/dev/null; wait $server $floor $other_server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

# Users, each with a workspace and a chat: 16 writers, one for the big
# upload, one for the big workspace, one for the small one.
# Users, each with a workspace and a chat, on the server at $1, written
# as "user chat" lines to $2.
make_users() {
python3 - "$1" "$2" <<'PY'
import http.client, json, sys, uuid
base, path = sys.argv[1], sys.argv[2]
host = base.split("//")[1]
conn = http.client.HTTPConnection(host)
def call(method, path, user):
    conn.request(method, path, headers={"X-User-Id": user})
    r = conn.getresponse()
    body = r.read()
    assert r.status < 300, (method, path, r.status, body)
    return json.loads(body) if body else None
users = []
for _ in range(19):
    user = str(uuid.uuid4())
    call("PUT", "/v1/workspace", user)
    users.append((user, call("POST", "/v1/chats", user)["chat_id"]))
with open(path, "w") as f:
    for user, chat in users:
        f.write(f"{user} {chat}\n")
PY
}
make_users "$base" "$work/users"
mapfile -t users < "$work/users"
writers=("${users[@]:0:16}")
big_user=${users[16]}
many_user=${users[17]}
few_user=${users[18]}

# A wrk script that rotates its requests over the given "user chat" pairs.
upload_script() {
    {
        echo 'local pairs = {'
        for pair in "$@"; do
            set -- $pair
            echo "  {\"$1\", \"$2\"},"
        done
        echo '}'
        cat <<'LUA'
local body = string.rep("x", 65536)
local i = 0
request = function()
  i = i + 1
  local pair = pairs[(i % #pairs) + 1]
  return wrk.format("POST", "/v1/chats/" .. pair[2] .. "/files?name=bench" .. (i % 4) .. ".bin",
    { ["X-User-Id"] = pair[1], ["Content-Type"] = "application/octet-stream" }, body)
end
LUA
    } > "$work/upload.lua"
}

# The same load for the bare server: 16 writers, 4 names each, in `mode`.
floor_script() {
    cat > "$work/upload.lua" <<LUA
local mode = "$1"
LUA
    cat >> "$work/upload.lua" <<'LUA'
local body = string.rep("x", 65536)
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/" .. mode .. "/w" .. (i % 16) .. "/bench" .. (math.floor(i / 16) % 4) .. ".bin",
    { ["Content-Type"] = "application/octet-stream" }, body)
end
LUA
}

# Requests/s of a wrk run with the upload script against `$1` (chatstore by
# default); a non-2xx answer fails it.
wrk_rate() {
    local out
    out=$(wrk -t2 -c16 -d"$duration" --latency -s "$work/upload.lua" "${1:-$base}")
    echo "$out" >&2
    if echo "$out" | grep -q "Non-2xx"; then echo "bench-writers: some uploads failed" >&2; exit 1; fi
    echo "$out" | awk '/Requests\/sec/ {print $2}'
}

# Files/s the disk gives to `threads` writers of 64 KiB files with fsync:
# `plain` writes each file in place; `replace` replaces it durably and at
# once, the least any store that never shows half a file must do (write a
# new file, fsync it, rename it over the old one, fsync the directory).
disk_rate() {
    python3 - "$work/disk" "$1" "$seconds" "$2" <<'PY'
import os, sys, threading, time
root, threads, seconds, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
os.makedirs(root, exist_ok=True)
body = b"x" * 65536
counts = [0] * threads
stop = time.monotonic() + seconds
def writer(n):
    here = os.path.join(root, f"{mode}-{n}")
    os.makedirs(here, exist_ok=True)
    directory = os.open(here, os.O_RDONLY)
    i = 0
    while time.monotonic() < stop:
        path = os.path.join(here, f"{i % 4}.bin")
        new = path + ".new" if mode == "replace" else path
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, body)
        os.fsync(fd)
        os.close(fd)
        if mode == "replace":
            os.rename(new, path)
            os.fsync(directory)
        counts[n] += 1
        i += 1
    os.close(directory)
ts = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
print(f"{sum(counts) / seconds:.0f}")
PY
}

echo "== the disk: 16 threads writing and fsyncing 64 KiB files, $duration" >&2
disk16=$(disk_rate 16 plain)
echo "== the disk: 1 thread, $duration" >&2
disk1=$(disk_rate 1 plain)
echo "== the disk: 16 threads replacing 64 KiB files durably, $duration" >&2
replace16=$(disk_rate 16 replace)

floor_port=$((port + 1))
target/release/examples/bare-upload "127.0.0.1:$floor_port" "$work/floor" &
floor=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$floor_port/" && break; sleep 0.1; done
echo "== the floor: a bare server writing each 64 KiB body and fsyncing it, 16 connections, $duration" >&2
floor_script plain
floor16=$(wrk_rate "http://127.0.0.1:$floor_port")
echo "== the floor: a bare server replacing a file durably with each body, $duration" >&2
floor_script replace
floor_replace16=$(wrk_rate "http://127.0.0.1:$floor_port")
kill $floor; wait $floor 2>/dev/null || true
floor=
rm -rf "$work/floor"

echo "== 16 workspaces uploading 64 KiB at once, 16 connections, $duration" >&2
upload_script "${writers[@]}"
ws16=$(wrk_rate)
echo "== 1 workspace uploading 64 KiB, 16 connections, $duration" >&2
upload_script "${writers[0]}"
ws1=$(wrk_rate)

head -c $((big_mib << 20)) /dev/zero > "$work/big.bin"
# One streamed upload of the big file by the big user: its seconds, from curl.
big_upload() {
    set -- $big_user
    nice -n 19 curl -sf -o /dev/null -w '%{time_total}\n' -X POST -H "X-User-Id: $1" \
        -H "Content-Type: application/octet-stream" -T "$work/big.bin" "$base/v1/chats/$2/files?name=big.bin"
}
echo "== a ${big_mib} MiB upload alone, three times" >&2
sync
big_alone=$(for _ in 1 2 3; do big_upload; done | sort -n | sed -n 2p)
echo "== 16 workspaces again while another streams ${big_mib} MiB uploads" >&2
( while :; do big_upload >> "$work/big.times" || exit 1; done ) &
streamer=$!
upload_script "${writers[@]}"
ws16_streaming=$(wrk_rate)
# The loop waits for its curl before it takes the signal: stop both.
kill $streamer 2>/dev/null; pkill -P $streamer 2>/dev/null || true; wait $streamer 2>/dev/null || true
big_beside=$(sort -n "$work/big.times" | awk '{t[NR] = $1} END {if (NR) print t[int((NR + 1) / 2)]; else print "nan"}')
big_count=$(wc -l < "$work/big.times")
rm -f "$work/big.bin"

# Gives the user's workspace `chats` more chats and `files` small files
# over them, with `threads` clients.
fill_workspace() {
    python3 - "$base" "${1%% *}" "$2" "$3" "$4" <<'PY'
import http.client, json, sys, threading
base, user, chats, files, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
host = base.split("//")[1]
failed = []
def fill():
    created = []
    def make(n):
        conn = http.client.HTTPConnection(host)
        for _ in range(n):
            conn.request("POST", "/v1/chats", headers={"X-User-Id": user})
            r = conn.getresponse()
            body = r.read()
            if r.status != 201:
                failed.append((r.status, body))
                return
            created.append(json.loads(body)["chat_id"])
    each = [chats // threads + (i < chats % threads) for i in range(threads)]
    ts = [threading.Thread(target=make, args=(n,)) for n in each]
    for t in ts: t.start()
    for t in ts: t.join()
    if failed:
        sys.exit(f"bench-writers: creating a chat failed: {failed[0]}")
    def upload(k):
        conn = http.client.HTTPConnection(host)
        for i in range(k, files, threads):
            chat = created[i % len(created)]
            conn.request("POST", f"/v1/chats/{chat}/files?name=f{i}.txt", body=b"a small file\n",
                         headers={"X-User-Id": user})
            r = conn.getresponse(); body = r.read()
            if r.status != 201:
                failed.append((r.status, body))
                return
            if k == 0 and i % 10000 == 0:
                print(f"   {i}/{files} files", file=sys.stderr, flush=True)
    ts = [threading.Thread(target=upload, args=(k,)) for k in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    if failed:
        sys.exit(f"bench-writers: an upload failed: {failed[0]}")
fill()
PY
}
# The p50 of 1 KiB uploads, one connection, each to a new name in the
# user's chat (`tag` keeps runs apart), once the disk has settled. On an
# ext4 without a journal, creating a file skips every inode freed in the
# last seconds, or minutes while their inode table is unwritten: runs that
# replaced files would slow the runs after them. So these uploads make new
# names, and each run starts after `sync` and a few seconds' rest, when
# the earlier runs' writes are on the disk.
latency() {
    sync
    sleep 6
    set -- $1 "$2"
    cat > "$work/one.lua" <<LUA
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/v1/chats/$2/files?name=latency-$3-" .. i .. ".bin",
    { ["X-User-Id"] = "$1", ["Content-Type"] = "application/octet-stream" },
    string.rep("x", 1024))
end
LUA
    local out
    out=$(wrk -t1 -c1 -d"$duration" --latency -s "$work/one.lua" "$base")
    echo "$out" >&2
    if echo "$out" | grep -q "Non-2xx"; then echo "bench-writers: some uploads failed" >&2; exit 1; fi
    echo "$out" | awk '$1 == "50%" {print $2}'
}
echo "== a workspace of 10 chats, alone" >&2
fill_workspace "$few_user" 9 90 1
p50_alone=$(latency "$few_user" alone)
echo "== a workspace of $many_chats chats and $many_files files, and the one of 10 chats" >&2
fill_workspace "$many_user" "$many_chats" "$many_files" 8
p50_many=$(latency "$many_user" many)
p50_few=$(latency "$few_user" few)

python3 - "$disk16" "$disk1" "$replace16" "$floor16" "$floor_replace16" "$ws16" "$ws1" "$ws16_streaming" "$p50_many" "$p50_few" "$p50_alone" "$big_alone" "$big_beside" "$big_count" "$big_mib" <<'PY'
import sys
def ms(t):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if t.endswith(unit) and not (unit == "s" and t.endswith(("us", "ms"))):
            return float(t[: -len(unit)]) * f
    raise ValueError(t)
d16, d1, r16, f16, fr16, w16, w1, ws = map(float, sys.argv[1:9])
many, few, alone = ms(sys.argv[9]), ms(sys.argv[10]), ms(sys.argv[11])
big_alone, big_beside, big_count, big_mib = float(sys.argv[12]), float(sys.argv[13]), int(sys.argv[14]), sys.argv[15]
print(f"disk, 16 writers:            {d16:8.0f} files/s   (1 writer: {d1:.0f})")
print(f"disk, 16 durable replaces:   {r16:8.0f} files/s = {r16 / d16:.2f}x the 16 writers")
print(f"bare HTTP, write + fsync:    {f16:8.0f} uploads/s = {f16 / d16:.2f}x the disk's 16 writers")
print(f"bare HTTP, durable replace:  {fr16:8.0f} uploads/s = {fr16 / d16:.2f}x the disk's 16 writers")
print(f"16 workspaces uploading:     {w16:8.0f} uploads/s = {w16 / d16:.2f}x the disk's 16 writers, {w16 / r16:.2f}x its replaces, {w16 / fr16:.2f}x the bare replace")
print(f"1 workspace uploading:       {w1:8.0f} uploads/s; 16 workspaces = {w16 / w1:.2f}x one")
print(f"16 beside a streamed upload: {ws:8.0f} uploads/s = {ws / w16:.2f}x without it")
print(f"the {big_mib} MiB upload:     {big_alone:.2f} s alone, {big_beside:.2f} s beside the 16 (median of {big_count}) = {big_beside / big_alone:.2f}x its time alone")
print(f"1 KiB upload p50: {many:.2f} ms in the big workspace, {few:.2f} ms in one of 10 chats = {many / few:.2f}x")
print(f"                  {few:.2f} ms in the one of 10 chats, {alone:.2f} ms before the big one grew = {few / alone:.2f}x")
PY

[ -n "${VS:-}" ] || exit 0
other_port=$((port + 2))
other="http://127.0.0.1:$other_port"
RUST_LOG=warn "$VS" --data-dir "$work/other" "${metadata_args[@]}" \
    serve --addr "127.0.0.1:$other_port" --max-concurrent 64 &
other_server=$!
for _ in $(seq 100); do curl -sf "$other/healthz" >/dev/null && break; sleep 0.1; done
make_users "$other" "$work/other-users"
mapfile -t other_users < "$work/other-users"
echo "== 16 workspaces uploading 64 KiB, this build against $VS, ${PAIRS:-4} pairs of $duration" >&2
ratios=()
for round in $(seq "${PAIRS:-4}"); do
    upload_script "${writers[@]}"
    this=$(wrk_rate)
    upload_script "${other_users[@]:0:16}"
    that=$(wrk_rate "$other")
    ratio=$(awk -v a="$this" -v b="$that" 'BEGIN {printf "%.3f", a / b}')
    echo "pair $round: this build $this uploads/s, the other $that uploads/s = ${ratio}x"
    ratios+=("$ratio")
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{r[NR] = $1} END {m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2; printf "16 workspaces, this build against the other: median %.3fx, range %.3f-%.3fx over %d pairs\n", m, r[1], r[NR], NR}'
