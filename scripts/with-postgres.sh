#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL server:
#
#   scripts/with-postgres.sh cargo test --workspace
#
# Installs the distribution's PostgreSQL server if it is missing (Debian's
# `postgresql` package; that step needs root or sudo), creates a cluster
# under target/tmp/postgres owned by an unprivileged user, starts it on a
# loopback port, runs the command with CHATSTORE_TEST_POSTGRES set to a
# superuser URL (the PostgreSQL tests create one database each there), and
# stops the server when the command ends. PORT chooses the port (55432).
set -euo pipefail
cd "$(dirname "$0")/.."

port="${PORT:-55432}"
pg_user=chatstore-pg

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if [ -z "$(bindir)" ] || [ ! -x "$(bindir)/initdb" ]; then
    echo "== installing PostgreSQL (Debian package postgresql)" >&2
    if ! as_root true 2>/dev/null; then
        echo "error: PostgreSQL is not installed; run: sudo apt-get install postgresql" >&2
        exit 1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2 \
        || { as_root apt-get update -q >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2; }
fi
bin="$(bindir)"

# PostgreSQL refuses to run as root: run it as an unprivileged user.
run_as=()
if [ "$(id -u)" = 0 ]; then
    id "$pg_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user"
    run_as=(runuser -u "$pg_user" --)
fi

mkdir -p target/tmp
cluster="$(mktemp -d "$PWD/target/tmp/postgres.XXXXXX")"
[ ${#run_as[@]} -eq 0 ] || chown "$pg_user" "$cluster"
chmod 700 "$cluster"

stop() {
    "${run_as[@]}" "$bin/pg_ctl" -D "$cluster/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$cluster"
}
trap stop EXIT

echo "== starting PostgreSQL ($("$bin/postgres" --version)) on 127.0.0.1:$port" >&2
"${run_as[@]}" "$bin/initdb" -D "$cluster/data" -U postgres --auth=trust --no-sync -E UTF8 >"$cluster/initdb.log" 2>&1 \
    || { cat "$cluster/initdb.log" >&2; exit 1; }
# Sized for a test suite that runs many stores at once; fsync stays on so
# the figures measured against it are honest.
"${run_as[@]}" "$bin/pg_ctl" -D "$cluster/data" -l "$cluster/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $cluster -c max_connections=500 -c shared_buffers=128MB" \
    start >&2 || { cat "$cluster/server.log" >&2; exit 1; }

export CHATSTORE_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
"$@"
