"""sweepnet models as MLflow ``pyfunc`` models: saved as data files, loaded by this module, no pickle.

A saved model is a folder (what ``mlflow.pyfunc.save_model`` writes) whose ``MLmodel`` names two flavours,
``python_function`` (``loader_module: pipeline.mlflow_model``) and ``sweepnet``, and whose ``sweepnet/``
data folder holds three files:

``weights.npz``
    The model exactly as :meth:`pipeline.model.DeepLearningModel.save` wrote it (flat parameters, layout,
    JSON header with the spec, the model's own input scaler and target encoder).
``spec.json``
    Task, feature names (the input columns, in order), output columns, class labels, dataset digest/source.
``preprocessing.json``
    The dataset's fitted preprocessing steps (``pipeline.datasets.preprocess``), applied to the input rows
    before the network, so the model takes rows as the data source holds them.

``predict`` takes a DataFrame with the feature columns (or a 2-D array of that width) and returns a
DataFrame: **class probabilities** for classifiers (one column per class, named by the class label, in the
model's class order; the predicted label is the column with the largest value), **values** for regression
(``prediction``, or ``prediction_0``, ... for several targets), the **reconstruction** for autoencoders
(one column per feature, in the space after the dataset's preprocessing). Bad input raises
``MlflowException`` with ``INVALID_PARAMETER_VALUE`` (HTTP 400 from ``mlflow models serve``) naming the
problem: missing columns, wrong width, non-numeric or NaN/inf values.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

FLAVOR = "sweepnet"
FORMAT_VERSION = 1
DATA_DIR = "sweepnet"
WEIGHTS, SPEC, PREPROCESSING = "weights.npz", "spec.json", "preprocessing.json"
EXAMPLE_ROWS = 3
PREDICTION_KIND = {"classification": "class probabilities", "regression": "values",
                   "autoencoder": "reconstruction"}
_REQUIREMENTS = ("mlflow", "numpy", "numba", "scipy", "pandas", "pydantic", "pyyaml", "pyarrow")


@functools.lru_cache(maxsize=None)
def _pinned() -> tuple[str, ...]:
    out = []
    for name in _REQUIREMENTS:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return tuple(out)


def pip_requirements() -> list[str]:
    """Pinned requirements of the loader (given explicitly: MLflow's inference would import and probe)."""
    return list(_pinned())


# ---------------------------------------------------------------------------------------------- describing
def describe(model, meta: dict | None = None) -> tuple[dict, list[dict]]:
    """``(spec, preprocessing)`` of a fitted :class:`DeepLearningModel` trained on data with ``meta``.

    ``meta`` is ``LoadedData.meta`` (or the ``data_meta`` a model file carries); without it the features are
    named ``x0``, ``x1``, ... and no preprocessing is applied.
    """
    meta = meta or {}
    n = int(model.sizes_[0])
    names = meta.get("feature_names") or [f"x{i}" for i in range(n)]
    if len(names) != n:
        names = [f"x{i}" for i in range(n)]
    task = model.task_
    if task == "classification":
        outputs = [label_name(c) for c in model.classes_]
    elif task == "regression":
        k = int(model.sizes_[-1])
        outputs = ["prediction"] if k == 1 else [f"prediction_{i}" for i in range(k)]
    else:
        outputs = [str(f) for f in names]
    spec = {"format": "sweepnet-pyfunc", "version": FORMAT_VERSION, "task": task,
            "prediction": PREDICTION_KIND[task], "features": [str(f) for f in names], "outputs": outputs,
            "classes": model.classes_ if task == "classification" else None,
            "data": {k: meta.get(k) for k in ("digest", "source", "image_shape")}}
    return spec, fitted_steps(meta)


_FILE_META = ("digest", "source", "image_shape", "n_features", "feature_names", "classes", "class_names",
              "preprocessing")


def file_meta(meta: dict) -> dict:
    """The part of ``LoadedData.meta`` a model file keeps (JSON-able): enough to name the features and
    to apply the fitted preprocessing to new rows."""
    out = {k: meta.get(k) for k in _FILE_META}
    out["spec"] = {"preprocessing": (meta.get("spec") or {}).get("preprocessing")}
    return out


def label_name(label) -> str:
    """A class label as a column name: ``3.0`` (float labels of a numeric target) -> ``"3"``."""
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def fitted_steps(meta: dict) -> list[dict]:
    """The preprocessing steps ``load_data`` fitted (the spec's), not those a Parquet dataset was written with:
    the model takes rows as the source holds them."""
    steps = list(meta.get("preprocessing") or [])
    declared = (meta.get("spec") or {}).get("preprocessing")
    return steps[len(steps) - len(declared):] if declared is not None and len(declared) <= len(steps) else steps


def input_example(X_train, steps: list[dict], rows: int = EXAMPLE_ROWS):
    """The first training rows mapped back through the fitted steps (rows as the source holds them); the
    preprocessed rows when a step has no inverse (``ufldl_normalize``). ``None`` without training rows."""
    from pipeline.datasets import preprocess

    if X_train is None or len(X_train) == 0:
        return None
    X = np.asarray(X_train[:rows], dtype=np.float64)
    try:
        for params in reversed(steps):
            X = preprocess.inverse(params, X)
    except ValueError:
        X = np.asarray(X_train[:rows], dtype=np.float64)
    return X


def signature(spec: dict):
    """Column signature: one double input per feature, one double output per output column."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("double", f) for f in spec["features"]]),
                          outputs=Schema([ColSpec("double", o) for o in spec["outputs"]]))


# ---------------------------------------------------------------------------------------------- saving
def write_data_dir(folder: Path, weights_path: str | Path, spec: dict, steps: list[dict]) -> Path:
    """The ``sweepnet/`` data folder: the weights file copied, spec and preprocessing as JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights_path, folder / WEIGHTS)
    (folder / SPEC).write_text(json.dumps(spec, indent=1))
    (folder / PREPROCESSING).write_text(json.dumps(steps))
    return folder


def save(path: str | Path, weights_path: str | Path, meta: dict | None = None, example=None,
         mlflow_model=None) -> Path:
    """Write an MLflow model folder at ``path`` for the model file ``weights_path``.

    Parameters
    ----------
    path : path
        A folder that does not exist yet.
    weights_path : path
        A ``.npz`` written by :meth:`DeepLearningModel.save`.
    meta : dict, optional
        The data meta of the training set; default: the ``data_meta`` the model file carries (``sweepnet
        train --out`` and sweeps save it).
    example : ndarray of shape (n_rows, n_features), optional
        Input example in the source's space; default: the one the model file carries, if any.
    mlflow_model : mlflow.models.Model, optional
        For a logged model (carries its ``model_id`` and run).
    """
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import Model

    from pipeline.model import DeepLearningModel

    model = DeepLearningModel.load(weights_path)
    extra = getattr(model, "extra_", {}) or {}
    meta = meta if meta is not None else extra.get("data_meta") or {}
    spec, steps = describe(model, meta)
    if example is None and extra.get("input_example") is not None:
        example = np.asarray(extra["input_example"], dtype=np.float64)
    mlflow_model = mlflow_model or Model()
    mlflow_model.add_flavor(FLAVOR, format_version=FORMAT_VERSION, data=f"data/{DATA_DIR}", task=spec["task"],
                            prediction=spec["prediction"])
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data_dir(Path(tmp) / DATA_DIR, weights_path, spec, steps)
        frame = None if example is None else pd.DataFrame(np.asarray(example)[:EXAMPLE_ROWS],
                                                          columns=spec["features"])
        mlflow.pyfunc.save_model(str(path), loader_module=__name__, data_path=str(data), mlflow_model=mlflow_model,
                                 signature=signature(spec), input_example=frame,
                                 pip_requirements=pip_requirements())
    return Path(path)


# ---------------------------------------------------------------------------------------------- loading
def _load_pyfunc(data_path: str) -> SweepnetPyfunc:
    """MLflow's entry point (``loader_module``): the ``sweepnet/`` data folder -> a predictor."""
    return SweepnetPyfunc.from_dir(data_path)


def _bad(message: str):
    from mlflow.exceptions import MlflowException

    return MlflowException.invalid_parameter_value(message)


class SweepnetPyfunc:
    """A loaded sweepnet model behind MLflow's ``predict(model_input, params=None)``.

    Parameters
    ----------
    model : DeepLearningModel
    spec : dict
        See :func:`describe`.
    steps : list of dict
        Fitted preprocessing steps.
    """

    def __init__(self, model, spec: dict, steps: list[dict]):
        self.model, self.spec, self.steps = model, spec, steps

    @classmethod
    def from_dir(cls, data_path: str | Path) -> SweepnetPyfunc:
        from pipeline.model import DeepLearningModel

        folder = Path(data_path)
        spec = json.loads((folder / SPEC).read_text())
        if spec.get("format") != "sweepnet-pyfunc" or spec.get("version", 0) > FORMAT_VERSION:
            raise ValueError(f"{folder / SPEC} is not a sweepnet pyfunc spec this version reads "
                             f"(format={spec.get('format')!r}, version={spec.get('version')!r}); upgrade sweepnet.")
        return cls(DeepLearningModel.load(folder / WEIGHTS), spec, json.loads((folder / PREPROCESSING).read_text()))

    @classmethod
    def from_weights(cls, weights_path: str | Path) -> SweepnetPyfunc:
        """The same predictor straight from a model file (no MLflow involved)."""
        from pipeline.model import DeepLearningModel

        model = DeepLearningModel.load(weights_path)
        spec, steps = describe(model, (getattr(model, "extra_", {}) or {}).get("data_meta"))
        return cls(model, spec, steps)

    @property
    def features(self) -> list[str]:
        return list(self.spec["features"])

    def matrix(self, model_input) -> np.ndarray:
        """The input as float64 rows of the model's features, or ``MlflowException`` (400) naming the problem."""
        import pandas as pd

        from pipeline.model import first_nonfinite

        features = self.features
        if isinstance(model_input, dict):
            model_input = pd.DataFrame(model_input)
        if isinstance(model_input, pd.DataFrame):
            named = [str(c) for c in model_input.columns]
            if set(features) <= set(named):
                model_input = model_input[[model_input.columns[named.index(f)] for f in features]]
            elif list(model_input.columns) != list(range(model_input.shape[1])):  # real names, some missing
                missing = [f for f in features if f not in named]
                raise _bad(f"input is missing column(s) {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
                           f"the model's features are {_names(features)}")
            try:
                X = model_input.to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise _bad(f"input columns must be numbers ({err}); the model's features are "
                           f"{_names(features)}") from None
        else:
            try:
                X = np.asarray(model_input, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise _bad(f"input must be numbers ({err})") from None
        if X.ndim == 1 and X.size == len(features):
            X = X.reshape(1, -1)
        if X.ndim != 2 or X.shape[1] != len(features):
            raise _bad(f"input has shape {X.shape}, so {X.shape[-1] if X.ndim else 0} column(s); the model takes "
                       f"{len(features)} feature(s): {_names(features)}")
        if X.shape[0] == 0:
            raise _bad("input has no rows; send at least one")
        found = first_nonfinite(X)
        if found:
            raise _bad(f"input holds {found[0]} NaN/inf value(s), first at row {found[1]}, column "
                       f"{features[found[2]]!r}; impute or drop those rows")
        return X

    def predict_array(self, X: np.ndarray) -> np.ndarray:
        """Outputs of shape (n_samples, n_outputs) for validated rows (see module docstring)."""
        from pipeline.datasets import preprocess

        Xp = preprocess.apply_all(self.steps, X) if self.steps else X
        task = self.spec["task"]
        if task == "classification":
            return self.model.predict_proba(Xp)
        out = np.asarray(self.model.predict(Xp), dtype=np.float64)
        return out.reshape(len(Xp), -1)

    def predict(self, model_input, params=None):
        """A DataFrame with the output columns (``spec["outputs"]``), one row per input row."""
        import pandas as pd

        out = self.predict_array(self.matrix(model_input))
        index = model_input.index if isinstance(model_input, pd.DataFrame) else None
        return pd.DataFrame(out, columns=self.spec["outputs"], index=index)


def _names(features: list[str]) -> str:
    return ", ".join(features[:8]) + (f", ... ({len(features)} in all)" if len(features) > 8 else "")
