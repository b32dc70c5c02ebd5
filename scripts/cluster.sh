#!/usr/bin/env bash
# A local distributed Airflow (Celery executor, shared object storage) on loopback:
#
#   ./scripts/cluster.sh up            # PostgreSQL, Redis, S3 server, API server, scheduler,
#                                      # DAG processor, two Celery workers (about 1-2 min)
#   ./scripts/cluster.sh run [DATE]    # registry refresh, then the reconciliation of DATE
#                                      # (default 2026-11-28), both through the REST API
#   ./scripts/cluster.sh status        # which processes run, which workers answer
#   ./scripts/cluster.sh down          # stop everything, remove the cluster's folder
#
# Everything lives in .cluster/ (override: CLUSTER_DIR=/path). Needs Debian's
# postgresql and redis-server (installed here with apt-get when run as root) and the
# project's environment (uv sync). See docs/deployment.md, "Scaling out".
set -euo pipefail
cd "$(dirname "$0")/.."
command="${1:-status}"
shift || true
if [ "$command" = up ]; then
  missing=""
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    || missing="postgresql"
  command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; }
    else
      echo "cluster.sh: install $missing (apt-get install $missing)" >&2
      exit 1
    fi
  fi
  if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet "uv==0.13.8"
  fi
  uv sync --frozen --quiet
fi
exec uv run --frozen python -m pipelines.deploy.local_cluster "$command" "$@" \
  --dir "${CLUSTER_DIR:-$PWD/.cluster}"
