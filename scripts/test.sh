#!/usr/bin/env bash
# Set up everything the tests need (from the lock file) and run lint + tests.
# Usage: ./scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet "uv==0.13.8"
fi
# PostgreSQL server binaries for tests/test_history_store.py, which starts its own
# throwaway cluster (initdb + pg_ctl on a free loopback port); Debian's package.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "test.sh: no PostgreSQL server binaries (apt-get install postgresql):" \
      "the PostgreSQL history-store tests will be skipped (they fail when CI is set)" >&2
  fi
fi
# Chromium for tests/test_report_browser.py (the report opened in a real headless
# browser), with a font that has the Vietnamese letters for the screenshot, and
# LibreOffice Calc for tests/test_xlsx.py (a real spreadsheet application reads
# the workbooks); Debian's packages. The tests fail without them. The package
# lists are refreshed only when the install from the current ones fails.
# Redis (Debian's redis-server) is the Celery broker of tests/test_cluster.py's local
# cluster (pipelines/deploy/local_cluster.py), which also uses PostgreSQL's binaries.
missing_pkgs=""
command -v redis-server >/dev/null 2>&1 || missing_pkgs="redis-server"
command -v chromium >/dev/null 2>&1 || missing_pkgs="$missing_pkgs chromium fonts-dejavu-core"
command -v soffice >/dev/null 2>&1 || missing_pkgs="$missing_pkgs libreoffice-calc-nogui"
if [ -n "$missing_pkgs" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends $missing_pkgs >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing_pkgs >/dev/null; }
  else
    echo "test.sh: missing $missing_pkgs (apt-get install them): the browser and" \
      "spreadsheet tests will fail" >&2
  fi
fi
uv sync --frozen --quiet
uv run --frozen ruff check .
uv run --frozen pytest "$@"
