#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the tests and prints the line that hands its URL to
# them: `eval "$(scripts/test_postgres.sh)"` then `cargo test`. `scripts/test_postgres.sh stop`
# stops it. The cluster is our own (initdb under $COCREATE_TEST_PG_DIR, default
# /tmp/cocreate-test-pg), owned by the `postgres` user, listening on 127.0.0.1 only, so a test can
# restart it (tests/postgres_chaos.rs) without touching a system cluster.
# Needs PostgreSQL 15 or later (Debian's `postgresql` package, installed here when missing and
# running as root).
set -euo pipefail
dir="${COCREATE_TEST_PG_DIR:-/tmp/cocreate-test-pg}"
port="${COCREATE_TEST_PG_PORT:-55432}"

bindir=""
for candidate in /usr/lib/postgresql/*/bin; do
    [ -x "$candidate/initdb" ] && bindir="$candidate"
done
if [ -z "$bindir" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
        for candidate in /usr/lib/postgresql/*/bin; do
            [ -x "$candidate/initdb" ] && bindir="$candidate"
        done
    fi
fi
if [ -z "$bindir" ]; then
    echo "test_postgres.sh: PostgreSQL is not installed (Debian: apt-get install postgresql)" >&2
    exit 1
fi

# As root, the cluster runs as `postgres` (PostgreSQL refuses to run as root).
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "${1:-start}" = stop ]; then
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    fi
    exit 0
fi

if [ ! -f "$dir/data/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >&2
fi
if ! as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >&2
fi
echo "export COCREATE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres"
echo "export COCREATE_TEST_PG_BIN=$bindir"
echo "export COCREATE_TEST_PG_DATA=$dir/data"
