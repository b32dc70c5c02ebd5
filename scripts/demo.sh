#!/usr/bin/env bash
# One reconciliation run over the bundled samples, through Airflow, from a
# fresh clone:
#
#     ./scripts/demo.sh              # run date = today
#     ./scripts/demo.sh 2026-11-28   # a given run date (YYYY-MM-DD)
#
# Installs the locked dependencies with uv, prepares an embedded Airflow
# (SQLite in .airflow/), runs the citizen_registry_refresh DAG (prepares the
# sharded registry snapshot; nothing to do when it already exists) and then the
# subscriber_reconciliation DAG once each in this process with `airflow dags
# test` (no scheduler, no API server), then prints where the report and
# correction lists are. Safe to run again: a second run
# for the same date rebuilds and replaces that date's run folder.
# Exit status: 0 when every telco was processed, non-zero otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUN_DATE="${1:-$(date +%F)}"
if ! [[ "$RUN_DATE" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]]; then
    echo "usage: $0 [YYYY-MM-DD]   (got '$RUN_DATE')" >&2
    exit 2
fi

say() { printf '\n==> %s\n' "$*"; }

# 1. uv, then the locked environment.
if command -v uv >/dev/null 2>&1; then
    UV=(uv)
else
    say "uv not found; installing it with pip"
    if ! python3 -m pip install --quiet uv; then
        echo "Could not install uv with pip; see https://docs.astral.sh/uv/ to install it." >&2
        exit 1
    fi
    UV=(python3 -m uv)
fi
say "Installing locked dependencies (uv sync --frozen)"
"${UV[@]}" sync --frozen --quiet

# 2. Embedded Airflow: SQLite metadata DB in .airflow/, DAGs from dags/.
# shellcheck source=scripts/airflow_env.sh
source "$ROOT/scripts/airflow_env.sh"
CONFIG="${SIMRECON_CONFIG:-$ROOT/config/simrecon.yaml}"
export SIMRECON_CONFIG="$CONFIG"
mkdir -p "$AIRFLOW_HOME"

say "Preparing Airflow's metadata DB ($AIRFLOW_HOME)"
if ! airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1; then
    tail -n 30 "$AIRFLOW_HOME/db-migrate.log" >&2
    echo "airflow db migrate failed; full log: $AIRFLOW_HOME/db-migrate.log" >&2
    exit 1
fi

# 3. The registry snapshot (prepared once, published as an Asset), then one
# reconciliation run; tasks executed in this process.
say "Running DAG citizen_registry_refresh for $RUN_DATE (config: $CONFIG)"
if ! airflow dags test citizen_registry_refresh "$RUN_DATE"; then
    echo "The registry refresh FAILED: the registry snapshot could not be prepared." >&2
    exit 1
fi
say "Running DAG subscriber_reconciliation for $RUN_DATE (config: $CONFIG)"
rc=0
airflow dags test subscriber_reconciliation "$RUN_DATE" || rc=$?

# 4. Where the outputs are (the run folder is published even when a telco
# failed: the other telcos' lists are in it).
RUN_DIR="$(python - "$CONFIG" "$RUN_DATE" <<'PY'
import sys

from pipelines.config import load_config

print(load_config(sys.argv[1]).output_path / sys.argv[2])
PY
)"

say "Outputs"
if [[ -d "$RUN_DIR" ]]; then
    echo "Run folder:       $RUN_DIR"
    [[ -f "$RUN_DIR/report.html" ]] && echo "Report:           $RUN_DIR/report.html"
    [[ -f "$RUN_DIR/manifest.json" ]] && echo "Manifest:         $RUN_DIR/manifest.json"
    shopt -s nullglob
    lists=("$RUN_DIR"/corrections/*.csv)
    shopt -u nullglob
    echo "Correction lists: ${#lists[@]}"
    for f in "${lists[@]}"; do
        echo "  $f"
    done
else
    echo "No run folder at $RUN_DIR: nothing was published."
fi

if [[ $rc -ne 0 ]]; then
    echo
    echo "DAG run FAILED (exit $rc). The failed tasks' errors are above;" >&2
    echo "Airflow's records are in $AIRFLOW_HOME (airflow.db, logs/)." >&2
    exit "$rc"
fi
echo
echo "DAG run succeeded."
