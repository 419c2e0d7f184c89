#!/usr/bin/env bash
# Start local Dask / MLflow / Prefect services on 127.0.0.1 and print the env exports.
# Usage: eval "$(infra/local/up.sh [--dask-workers N] [--only dask,mlflow,prefect] [--mlflow-auth])"
# Thin wrapper over `sweepnet services up`; run `infra/local/up.sh --help` for every option.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${SWEEPNET_PYTHON:-$root/.venv/bin/python}"
cd "$root"
exec "$py" -m app services up "$@"
