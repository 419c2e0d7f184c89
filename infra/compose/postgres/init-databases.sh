#!/bin/sh
# Runs once, on an empty data volume: POSTGRES_DB (mlflow) exists already; add Prefect's.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE DATABASE prefect OWNER "$POSTGRES_USER";
SQL
