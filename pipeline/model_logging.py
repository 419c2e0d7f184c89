"""MLflow models, dataset inputs and the Model Registry for sweep children (the calls ``pipeline.tracking``
does not make itself: it stays the adapter for runs, params, metrics and artifacts).

* :func:`log_model` turns a child's weights file into an MLflow *logged model* (``pipeline.mlflow_model``'s
  flavour) linked to the child as its output: the runs table's Models column, ``runs:/RUN_ID/model`` and
  ``models:/m-...`` all reach it. It calls the client directly (create, upload, finalize, link) rather than
  ``mlflow.pyfunc.log_model``, which would also need an active run and copy every metric of the run.
* :func:`dataset_input` is the child's dataset as a metadata-only MLflow dataset (name, digest, source,
  schema): one ``log_inputs`` call, no data uploaded.
* :func:`register_champion` registers the best child's model under the sweep's name with the alias
  ``champion`` (``models:/NAME@champion``).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

from pipeline import mlflow_model

MODEL_NAME = "model"
CHAMPION = "champion"
TAG_MODEL_ID = "sweepnet.model_id"
LOG_MODEL_CHOICES = ("best", "all", "none")


def log_model(tracking_uri: str, experiment_id: str, run_id: str, weights_path: str | Path,
              meta: dict | None = None, example=None) -> str:
    """Log the model file ``weights_path`` as the MLflow model ``model`` of run ``run_id``; return its
    ``model_id`` (also set as the run's ``sweepnet.model_id`` tag).

    ``meta``/``example``: see :func:`pipeline.mlflow_model.save` (default: what the model file carries).
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    from pipeline.tracking import client

    c = client(tracking_uri)
    logged = c.create_logged_model(experiment_id, name=MODEL_NAME, source_run_id=run_id,
                                   tags={"sweepnet.flavor": mlflow_model.FLAVOR})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / MODEL_NAME
            info = Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id, run_id=run_id,
                         model_id=logged.model_id)
            mlflow_model.save(folder, weights_path, meta, example, mlflow_model=info)
            c.log_model_artifacts(logged.model_id, str(folder))
        c.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        c.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    c.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    c.set_tag(run_id, TAG_MODEL_ID, logged.model_id)
    return logged.model_id


def logged_model_id(tracking_uri: str, run_id: str) -> str | None:
    """The READY sweepnet model of a run (``None`` when it has none)."""
    from pipeline.tracking import client

    run = client(tracking_uri).get_run(run_id)
    return run.data.tags.get(TAG_MODEL_ID)


def dataset_input(data_config: dict | None, digest: str, meta: dict | None = None, context: str = "training"):
    """The trial's dataset as an ``mlflow.entities.DatasetInput`` (metadata only: nothing is uploaded).

    Parameters
    ----------
    data_config : dict
        The ``data:`` section of the trial config (``source`` names a built-in, generator or file).
    digest : str
        sweepnet's data digest (source contents + data spec); the first 16 hex digits are the MLflow digest.
    meta : dict, optional
        ``LoadedData.meta``: adds the schema (one double column per feature) and the row counts.
    """
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.types import ColSpec, Schema
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    data_config = data_config or {}
    source_text = str(data_config.get("source", "unknown"))
    schema = None
    if meta and meta.get("n_features"):
        names = meta.get("feature_names") or [f"x{i}" for i in range(int(meta["n_features"]))]
        schema = Schema([ColSpec("double", str(n)) for n in names])
    dataset = MetaDataset(_source(source_text), name=_dataset_name(source_text), digest=(digest or "none")[:16],
                          schema=schema)
    entity = dataset._to_mlflow_entity()
    if meta:
        profile = {k: meta.get(k) for k in ("n_train", "n_valid", "n_test", "n_features", "image_shape", "source")}
        entity = Dataset(entity.name, entity.digest, entity.source_type, entity.source, entity.schema,
                         json.dumps(profile, default=str))
    return DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])


def _dataset_name(source: str) -> str:
    return Path(source.split("?")[0]).name or source[:60]


def _source(source: str):
    """A file dataset as a local-file source (its path); built-ins and generators as a code source."""
    from mlflow.data.code_dataset_source import CodeDatasetSource

    path = Path(source).expanduser()
    if path.exists():
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        with warnings.catch_warnings():  # two registered "local" sources match; both are the same class
            warnings.simplefilter("ignore", UserWarning)
            return resolve_dataset_source(str(path.resolve()))  # mlflow's "local" source (a file path)
    return CodeDatasetSource({"sweepnet.data.source": source})


def register_champion(tracking_uri: str, name: str, run_id: str, model_id: str,
                      alias: str = CHAMPION) -> Any:
    """Register ``model_id`` (logged by run ``run_id``) under ``name`` and point ``alias`` at it; a model
    already registered there is not registered twice. Returns the ``ModelVersion``."""
    from mlflow.exceptions import MlflowException

    from pipeline.tracking import client

    c = client(tracking_uri)
    try:
        c.create_registered_model(name, description=f"sweepnet sweep {name}: the best child's model is "
                                                    f"`@{alias}`")
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # the sqlite registry keeps no model_id column: the version carries it as a tag
    version = next((v for v in c.search_model_versions(f"name = '{name}'")
                    if v.run_id == run_id and v.tags.get(TAG_MODEL_ID) == model_id), None)
    if version is None:
        # the artifact location, not "models:/m-...": the sqlalchemy registry resolves that through the
        # process's global tracking URI (not this client's), which may be another store
        source = c.get_logged_model(model_id).artifact_location
        version = c.create_model_version(name, source=source, run_id=run_id, model_id=model_id,
                                         tags={TAG_MODEL_ID: model_id})
    c.set_registered_model_alias(name, alias, version.version)
    return version


def champion_from_run(tracking_uri: str, experiment_id: str, name: str, run_id: str) -> tuple[str, Any]:
    """The best child's model registered as ``models:/NAME@champion``; logged first from the child's weights
    (``model/weights.npz``) when the child has none yet (``log_model: best``). Returns (model_id, version).

    Raises
    ------
    FileNotFoundError
        When the child has neither a logged model nor a weights artifact (``child_per: config`` children
        keep no weights; see :func:`pipeline.sweep.champion`).
    """
    from pipeline.tracking import client

    model_id = logged_model_id(tracking_uri, run_id)
    if model_id is None:
        c = client(tracking_uri)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                weights = c.download_artifacts(run_id, "model/weights.npz", tmp)
            except Exception as err:  # noqa: BLE001 - MlflowException or OSError, both mean "no weights"
                raise FileNotFoundError(f"run {run_id} has no model/weights.npz artifact ({err})") from None
            model_id = log_model(tracking_uri, experiment_id, run_id, weights)
    return model_id, register_champion(tracking_uri, name, run_id, model_id)
