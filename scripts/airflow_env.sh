# shellcheck shell=bash
# Source this file to run simrecon's embedded Airflow from this checkout:
#
#     source scripts/airflow_env.sh
#     airflow dags test subscriber_reconciliation 2026-11-28
#
# It sets up the "embedded default" deployment: Airflow's metadata in SQLite
# under <repo>/.airflow (gitignored), DAGs from <repo>/dags, no example DAGs,
# Airflow's own logging at WARNING while simrecon's one-line task summaries
# stay at INFO. scripts/demo.sh and the DAG run tests use it, so all three run
# Airflow the same way. A real deployment configures Airflow itself instead
# (see docs/deployment.md).
#
# Overrides (set before sourcing):
#   SIMRECON_AIRFLOW_HOME  where Airflow keeps its SQLite DB, config and logs
#                          (default <repo>/.airflow; the tests use a temp dir)
#   SIMRECON_CONFIG        run configuration (default <repo>/config/simrecon.yaml,
#                          read by the DAG's tasks)
#   SIMRECON_AIRFLOW_LOG_LEVEL  Airflow's log level (default WARNING)
#   SIMRECON_AUTO_APPROVE  1 (default here) approves publication at once; 0 waits
#                          for a person in the Airflow UI (Required Actions)
#   SIMRECON_TASK_RETRIES  retries per task (default here 0: a one-off run
#                          fails fast instead of waiting 2 minutes for a
#                          retry; the DAG's own default, for scheduled runs, is 1)

SIMRECON_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SIMRECON_ROOT

# The project's virtualenv (made by `uv sync`) provides `airflow`.
if [[ -d "$SIMRECON_ROOT/.venv/bin" ]]; then
    export PATH="$SIMRECON_ROOT/.venv/bin:$PATH"
fi
# The tasks import `pipelines`; normally the editable install provides it, the
# repo root on PYTHONPATH keeps a stale install from breaking a demo run.
export PYTHONPATH="$SIMRECON_ROOT${PYTHONPATH:+:$PYTHONPATH}"

export AIRFLOW_HOME="${SIMRECON_AIRFLOW_HOME:-$SIMRECON_ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$SIMRECON_ROOT/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# Explicit, so a shell already pointed at another Airflow DB is not touched.
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"

export SIMRECON_TASK_RETRIES="${SIMRECON_TASK_RETRIES:-0}"
# The embedded demo and the tests approve publication automatically; a real
# deployment leaves this unset so compliance approves in the Airflow UI.
export SIMRECON_AUTO_APPROVE="${SIMRECON_AUTO_APPROVE:-1}"

export AIRFLOW__LOGGING__LOGGING_LEVEL="${SIMRECON_AIRFLOW_LOG_LEVEL:-WARNING}"
# The DAG logs its summaries on the "simrecon.dag" structlog logger. (Only
# structlog loggers honour namespace_levels in Airflow 3.3; stdlib ones, such
# as the "No tasks to run" warnings of `dags test`, follow logging_level.)
export AIRFLOW__LOGGING__NAMESPACE_LEVELS="simrecon=INFO"
export AIRFLOW__LOGGING__COLORED_CONSOLE_LOG=False
# Two harmless warnings Airflow 3.3 prints on every CLI call: no graphviz (only
# needed for `--save-dagrun`), and a starlette deprecation in its in-process
# API client.
_simrecon_quiet='ignore:Could not import graphviz,ignore:Using `httpx` with'
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}$_simrecon_quiet"
unset _simrecon_quiet
