"""Create (or re-password) the non-admin MLflow user the pipeline logs as; run once by the mlflow-users service.

Reads the admin credentials from MLFLOW_TRACKING_USERNAME/PASSWORD (this one-shot container only) and the
pipeline user's from SWEEPNET_PIPELINE_USERNAME/PASSWORD. Idempotent: a rerun only resets the password.
"""

import os
import sys

from mlflow.exceptions import RestException
from mlflow.server.auth.client import AuthServiceClient

uri = os.environ["MLFLOW_TRACKING_URI"]
user = os.environ["SWEEPNET_PIPELINE_USERNAME"]
password = os.environ["SWEEPNET_PIPELINE_PASSWORD"]
client = AuthServiceClient(uri)
try:
    client.create_user(user, password)
    print(f"created MLflow user {user}")
except RestException as err:
    if err.error_code != "RESOURCE_ALREADY_EXISTS":
        sys.exit(f"could not create MLflow user {user}: {err}")
    client.update_user_password(user, password)
    print(f"MLflow user {user} exists; password updated")
