#!/usr/bin/env bash
# Set up everything the tests need (from the lock file) and run lint + tests.
# Usage: ./scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet "uv==0.13.8"
fi
uv sync --frozen --quiet
uv run --frozen ruff check .
uv run --frozen pytest "$@"
