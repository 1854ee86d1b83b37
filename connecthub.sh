#!/usr/bin/env bash
# ConnectHub's one entry script.
#   ./connecthub.sh up [ARGS]    embedded mode on this machine (no Docker): `connecthub up ARGS`
#   ./connecthub.sh test [ARGS]  the whole test suite (installs what it needs): pytest ARGS
#   ./connecthub.sh build | start | stop | logs [SERVICE]          production (docker compose)
#   ./connecthub.sh dev-build | dev-start | dev-stop | dev-logs    development overlay
set -euo pipefail
cd "$(dirname "$0")"

VENV=${CONNECTHUB_VENV:-.venv}
PYTHON=${PYTHON:-python3}
COMPOSE=(docker compose -f docker-compose.yml)
COMPOSE_DEV=(docker compose -f docker-compose.yml -f docker-compose.dev.yml)

# Create the virtualenv and install ConnectHub (with EXTRAS) when pyproject.toml changed.
venv() {
  local extras=$1 stamp="$VENV/.installed-$1"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing ConnectHub into $VENV (log: $VENV/install.log) ..."
    if ! { "$VENV/bin/python" -m pip install --upgrade pip \
           && "$VENV/bin/python" -m pip install -e ".${extras:+[$extras]}"; } >"$VENV/install.log" 2>&1; then
      tail -n 30 "$VENV/install.log" >&2
      echo "installation failed; the whole log is $VENV/install.log" >&2
      exit 1
    fi
    touch "$stamp"
  fi
}

# Debian's Chromium for the browser tests (never a downloaded browser build).
chromium() {
  if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "installing Debian's chromium ..."
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "the browser tests need /usr/bin/chromium: sudo apt-get install chromium" >&2
      exit 1
    fi
  fi
}

# The tests' PostgreSQL (CONNECTHUB_TEST_PG, default the local server on 127.0.0.1:5432).
postgres() {
  if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null; then
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    fi
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  up)
    venv ""
    exec "$VENV/bin/connecthub" up "$@"
    ;;
  test)
    venv test
    chromium
    postgres
    "$VENV/bin/ruff" check .
    "$VENV/bin/lint-imports"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  build) "${COMPOSE[@]}" build "$@" ;;
  start) "${COMPOSE[@]}" up -d --build "$@" ;;
  stop) "${COMPOSE[@]}" down "$@" ;;
  logs) "${COMPOSE[@]}" logs -f "$@" ;;
  dev-build) "${COMPOSE_DEV[@]}" build "$@" ;;
  dev-start) "${COMPOSE_DEV[@]}" up -d "$@" ;;
  dev-stop) "${COMPOSE_DEV[@]}" down "$@" ;;
  dev-logs) "${COMPOSE_DEV[@]}" logs -f "$@" ;;
  *)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = help ] || exit 2
    ;;
esac
