#!/usr/bin/env bash
# CI: a local PostgreSQL for the storage tests. Installs Debian's `postgresql` if needed,
# starts a server that listens on 127.0.0.1 only, creates a user and a database, and prints
# the SQLAlchemy URL as the last (and only) line on stdout; everything else goes to stderr.
# Idempotent: a second run finds the server up and the user and database there.
#
#   export EVOTUNE_TEST_POSTGRES_URL="$(.ci/postgres.sh)"
#
# Settings (environment): EVOTUNE_PG_USER (evotune), EVOTUNE_PG_PASSWORD (evotune-ci: a
# test server reachable from this host only), EVOTUNE_PG_DB (evotune), EVOTUNE_PG_PORT
# (5432). Where Debian's cluster tools are missing, `initdb` + `pg_ctl` run a server in
# EVOTUNE_PG_DATA (/var/lib/postgresql/evotune-ci).
set -euo pipefail

PG_USER="${EVOTUNE_PG_USER:-evotune}"
PG_PASSWORD="${EVOTUNE_PG_PASSWORD:-evotune-ci}"
PG_DB="${EVOTUNE_PG_DB:-evotune}"
PG_PORT="${EVOTUNE_PG_PORT:-5432}"
PG_DATA="${EVOTUNE_PG_DATA:-/var/lib/postgresql/evotune-ci}"

log() { echo "postgres.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}

for name in PG_USER PG_DB; do
    [[ "${!name}" =~ ^[a-z_][a-z0-9_]*$ ]] || die "$name must be a plain lower-case identifier"
done
[[ "$PG_PORT" =~ ^[0-9]+$ ]] || die "EVOTUNE_PG_PORT must be a number"
# Goes into a URL and an SQL literal unescaped: keep it to characters safe in both.
[[ "$PG_PASSWORD" =~ ^[A-Za-z0-9._~-]+$ ]] || die "EVOTUNE_PG_PASSWORD may hold only A-Z a-z 0-9 . _ ~ -"

as_postgres() {
    # The server and its tools refuse to run as root: run them as the `postgres` user.
    if [[ "$(id -un)" == postgres ]]; then
        "$@"
    elif [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        sudo -n -u postgres -- "$@"
    fi
}

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo -n -- "$@"; fi
}

install_postgres() {
    if command -v pg_ctlcluster >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
        return
    fi
    log "installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq >&2
    # The package's own start is refused in containers (policy-rc.d); this script starts it.
    as_root apt-get install -y -qq postgresql >&2
}

pg_version() {
    # The newest installed major version.
    local versions
    versions="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -n)"
    [[ -n "$versions" ]] || die "no PostgreSQL under /usr/lib/postgresql after installing"
    echo "$versions" | tail -n 1
}

start_debian_cluster() {
    local version="$1" cluster=main
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -qx "$version $cluster"; then
        log "creating cluster $version/$cluster"
        as_root pg_createcluster --port "$PG_PORT" "$version" "$cluster" >&2
    fi
    # 127.0.0.1 only: nothing outside this host reaches the test server. A drop-in file
    # (Debian's postgresql.conf includes conf.d/) leaves the packaged config untouched.
    local dropin="/etc/postgresql/$version/$cluster/conf.d/evotune-ci.conf" changed=0
    local want="listen_addresses = '127.0.0.1'
port = $PG_PORT"
    if [[ "$(cat "$dropin" 2>/dev/null)" != "$want" ]]; then
        echo "$want" | as_root tee "$dropin" >/dev/null
        changed=1
    fi
    local status
    status="$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $4}')"
    if [[ "$status" != online ]]; then
        as_root pg_ctlcluster "$version" "$cluster" start >&2
    elif [[ "$changed" == 1 ]]; then
        as_root pg_ctlcluster "$version" "$cluster" restart >&2
    fi
}

start_initdb_server() {
    local bin="/usr/lib/postgresql/$1/bin"
    if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
        log "initdb in $PG_DATA"
        as_root mkdir -p "$PG_DATA"
        as_root chown postgres:postgres "$PG_DATA"
        as_postgres "$bin/initdb" -D "$PG_DATA" -U postgres --auth-local=peer \
            --auth-host=scram-sha-256 >&2
    fi
    as_root mkdir -p /var/run/postgresql
    as_root chown postgres:postgres /var/run/postgresql
    if ! as_postgres "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        as_postgres "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w start \
            -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=/var/run/postgresql" >&2
    fi
}

psql_admin() {
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -h /var/run/postgresql -d postgres "$@"
}

wait_ready() {
    local _
    for _ in $(seq 1 30); do
        if psql_admin -tAc "SELECT 1" >/dev/null 2>&1; then
            return
        fi
        sleep 1
    done
    die "the server did not answer on port $PG_PORT within 30 s"
}

create_user_and_db() {
    if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]]; then
        log "creating user $PG_USER"
        psql_admin -c "CREATE ROLE $PG_USER LOGIN"
    fi
    # Set every run, so that the printed URL is right whatever an earlier run used.
    psql_admin -c "ALTER ROLE $PG_USER PASSWORD '$PG_PASSWORD'"
    if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]]; then
        log "creating database $PG_DB"
        psql_admin -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
    fi
}

install_postgres
version="$(pg_version)"
if command -v pg_ctlcluster >/dev/null 2>&1; then
    start_debian_cluster "$version"
else
    start_initdb_server "$version"
fi
wait_ready
create_user_and_db
log "PostgreSQL $version up on 127.0.0.1:$PG_PORT, database $PG_DB"
echo "postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
