"""``sweepnet predict MODEL DATA [--out FILE]`` and ``sweepnet serve MODEL``: use a trained model.

MODEL is a model file (``sweepnet train --out model.npz``), an MLflow model folder, ``runs:/RUN_ID/model`` (a
sweep child's model) or ``models:/NAME@ALIAS`` (``models:/SWEEP@champion``: a sweep's best model). The
``runs:/`` and ``models:/`` URIs are looked up in ``MLFLOW_TRACKING_URI``, else in the sweep store's sqlite file
(``--store``, as ``sweepnet ui``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

_PREDICT = """\
Predict with a model on a CSV or Parquet file whose columns are the model's features (by name; other
columns are ignored). Classifiers give one probability column per class and the predicted label
(`predict`); regression gives `prediction`; autoencoders their reconstruction.

  sweepnet train examples/xor.yaml --out xor.npz && sweepnet predict xor.npz rows.csv
  sweepnet predict models:/xor-init-census@champion rows.parquet --out predictions.csv
  sweepnet predict runs:/RUN_ID/model rows.csv --store .sweepnet
"""

_SERVE = """\
Serve a model over HTTP on 127.0.0.1 with `mlflow models serve --env-manager local` (this Python
environment; no virtualenv is built). POST rows to /invocations:

  sweepnet serve models:/xor-init-census@champion --port 5001
  curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
       -d '{"dataframe_split": {"columns": ["x1", "x2"], "data": [[0, 1], [1, 1]]}}'

Bad rows (missing columns, wrong width, NaN) get HTTP 400 with a message naming the problem.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="predict with a model file, runs:/ or models:/ URI on CSV/Parquet",
                              description=_PREDICT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model .npz, MLflow model folder, runs:/RUN_ID/model or models:/NAME@ALIAS")
    p.add_argument("data", help="a .csv or .parquet file with the model's feature columns")
    p.add_argument("--out", help="write the predictions here (.csv or .parquet) instead of printing them")
    p.add_argument("--store", default=".sweepnet", help="sweep store for runs:/ and models:/ URIs when "
                   "MLFLOW_TRACKING_URI is unset (default: %(default)s)")
    p.add_argument("--rows", type=int, default=20, help="rows to print without --out (default: %(default)s)")
    p.set_defaults(func=cmd_predict)

    s = subparsers.add_parser("serve", help="serve a model over HTTP on 127.0.0.1 (mlflow models serve)",
                              description=_SERVE, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", help="model .npz, MLflow model folder, runs:/RUN_ID/model or models:/NAME@ALIAS")
    s.add_argument("--store", default=".sweepnet", help="sweep store for runs:/ and models:/ URIs when "
                   "MLFLOW_TRACKING_URI is unset (default: %(default)s)")
    s.add_argument("--port", type=int, default=5001, help="port (default: %(default)s)")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s, this machine only)")
    s.set_defaults(func=cmd_serve)


def tracking_uri(store: str) -> str:
    from pipeline.tracking import default_tracking_uri

    return default_tracking_uri(store)


def is_model_file(reference: str) -> bool:
    return reference.endswith(".npz") and "://" not in reference and ":/" not in reference


class Predictor:
    """A model behind one interface: ``features``, ``task`` and ``predict(frame) -> DataFrame``."""

    def __init__(self, reference: str, store: str):
        from mlflow.exceptions import MlflowException

        from pipeline.mlflow_model import SweepnetPyfunc

        self.reference = reference
        if is_model_file(reference):
            self.model = SweepnetPyfunc.from_weights(reference)  # FileNotFoundError/ValueError say what is wrong
            self.features, self.task = self.model.features, self.model.spec["task"]
            return
        import mlflow
        import mlflow.pyfunc

        if reference.startswith(("runs:/", "models:/")):
            mlflow.set_tracking_uri(tracking_uri(store))
        elif not Path(reference, "MLmodel").is_file():
            raise FileNotFoundError(f"model {reference!r} is not a .npz file, an MLflow model folder, runs:/RUN_ID/model "
                                    "or models:/NAME@ALIAS")
        try:
            self.model = mlflow.pyfunc.load_model(reference)
        except MlflowException as err:
            raise ValueError(f"cannot load model {reference!r} from {mlflow.get_tracking_uri()}: {err.message}") from None
        schema = self.model.metadata.get_input_schema()
        self.features = schema.input_names() if schema is not None else []
        self.task = self.model.metadata.flavors.get("sweepnet", {}).get("task", "unknown")

    def select(self, frame, source: str):
        """The feature columns of ``frame`` in the model's order; ValueError naming what is missing."""
        names = [str(c) for c in frame.columns]
        missing = [f for f in self.features if f not in names]
        if missing:
            width = (f"; it has {len(names)} column(s) but the model takes {len(self.features)}"
                     if len(names) != len(self.features) else "")
            raise ValueError(f"{source} is missing the model's feature column(s) {_short(missing)}{width}. "
                             f"Its columns: {_short(names)}; the model's features: {_short(self.features)}")
        frame = frame.copy()
        frame.columns = names
        return frame[self.features]

    def predict(self, frame):
        """Predictions as a DataFrame; classifiers get the predicted label first (``predict``)."""
        from mlflow.exceptions import MlflowException

        try:
            out = self.model.predict(frame)
        except MlflowException as err:
            raise ValueError(f"the model refused the rows: {err.message}") from None
        if self.task == "classification":
            out.insert(0, "predict", out.idxmax(axis=1))
        return out


def _short(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def read_table(path: str):
    """A CSV or Parquet file as a DataFrame."""
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    if file.suffix == ".csv":
        return pd.read_csv(file)
    if file.suffix == ".parquet":
        return pd.read_parquet(file)
    raise ValueError(f"data file {path}: give a .csv or .parquet file (got {file.suffix or 'no suffix'!r})")


def cmd_predict(args: argparse.Namespace) -> int:
    if args.out and Path(args.out).suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out {args.out}: write .csv or .parquet")
    predictor = Predictor(args.model, args.store)
    rows = predictor.select(read_table(args.data), args.data)
    out = predictor.predict(rows)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        if args.out.endswith(".csv"):
            out.to_csv(args.out, index=False)
        else:
            out.to_parquet(args.out, index=False)
        print(f"{len(out)} predictions ({predictor.task}) written to {args.out}")
        return 0
    print(out.head(args.rows).to_string(index=False))
    if len(out) > args.rows:
        print(f"... {len(out) - args.rows} more rows; --out FILE writes them all")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # mlflow starts `uvicorn` through the shell: this environment's bin directory goes first on PATH
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(args.store),
           "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    model = args.model
    if is_model_file(model):  # an MLflow model folder for the file, next to it in a temporary directory
        from pipeline import mlflow_model

        folder = Path(tempfile.mkdtemp(prefix="sweepnet-serve-")) / "model"
        mlflow_model.save(folder, model)
        model = str(folder)
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe) if exe.exists() else shutil.which("mlflow") or "mlflow", "models", "serve", "-m", model,
           "--env-manager", "local", "--host", args.host, "--port", str(args.port), "--workers", "1"]
    print(f"serving {args.model} on http://{args.host}:{args.port}/invocations (Ctrl-C stops it)", flush=True)
    os.execve(cmd[0], cmd, env)  # the server replaces this process: signals reach it directly
    return 0  # not reached
