#!/usr/bin/env bash
# Stop the services that infra/local/up.sh started (by recorded PID, SIGTERM then SIGKILL).
# Usage: infra/local/down.sh [--only dask,mlflow,prefect] [--state-dir DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${SWEEPNET_PYTHON:-$root/.venv/bin/python}"
cd "$root"
exec "$py" -m app services down "$@"
