#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and Redis on loopback, and headless
# Chromium for the browser tests. Starts the services if they are installed but stopped,
# installs what is absent (apt-get), so the
# same command works on a fresh Debian machine. Exits non-zero if anything fails or could
# not run. Environment: ORDERSAGA_TEST_PG, ORDERSAGA_TEST_REDIS override the services.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m== %s\033[0m\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Waits until "$@" succeeds, up to $1 seconds.
wait_for() {
  local secs=$1; shift
  for _ in $(seq 1 $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if ! have pg_isready && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for 30 pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start" >&2; exit 1; }
  fi
  export ORDERSAGA_TEST_PG=${ORDERSAGA_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}
  if ! psql "$ORDERSAGA_TEST_PG" -qAtc 'SELECT 1' >/dev/null 2>&1; then
    # A fresh Debian install asks for a password on TCP: give the postgres role one,
    # through the local socket where peer authentication lets the postgres user in.
    log "setting a password for the postgres role (fresh install)"
    as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
    export ORDERSAGA_TEST_PG=postgres://postgres:postgres@127.0.0.1:5432/postgres
    psql "$ORDERSAGA_TEST_PG" -qAtc 'SELECT 1' >/dev/null
  fi
}

ensure_redis() {
  export ORDERSAGA_TEST_REDIS=${ORDERSAGA_TEST_REDIS:-redis://127.0.0.1:6379}
  have redis-server || { log "installing Redis"; apt_install redis-server; }
  if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    wait_for 15 sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG' || { echo "Redis did not start" >&2; exit 1; }
  fi
}

ensure_browser() {
  # Headless Chromium and its WebDriver for the browser tests; a CJK font so screenshots of
  # the Chinese pages are legible.
  if ! have chromium || ! have chromedriver; then
    log "installing Chromium and ChromeDriver"
    apt_install chromium chromium-driver fonts-wqy-zenhei
  fi
}

ensure_postgres
ensure_redis
ensure_browser

log "format and lints"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings

log "release build (the binary the README's first command runs; the smoke test starts it)"
cargo build --release --quiet
export ORDERSAGA_SMOKE_BIN=$PWD/target/release/ordersaga

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast --test-threads 4
else
  # Without nextest every test shares one process: the Prometheus recorder is
  # process-wide, so run them one at a time for exact metric deltas.
  cargo test --no-fail-fast -- --test-threads 1
fi
