"""``sweepnet train`` and ``sweepnet gradcheck``."""

from __future__ import annotations

import argparse
import sys
import time

from pipeline.config import ModelSpec


def _fields_help() -> str:
    lines = ["model fields (h2o.deeplearning names; YAML under `model:`):"]
    for name, info in ModelSpec.model_fields.items():
        default = info.default_factory() if info.default_factory else info.default
        note = f" - {info.description}" if info.description else ""
        lines.append(f"  {name} (default {default!r}){note}")
    lines += ["", "data fields (YAML under `data:`): source (xor, digits, mnist5k, lfw, a .parquet file/dir or .csv),",
              "  features, target, train_rows, test_fraction, valid_fraction, split_seed, limit, labels,",
              "  preprocessing ([ufldl_normalize | standardize | zca | scale01]).",
              "", "example (examples/xor.yaml):",
              "  name: xor", "  model: {activation: Tanh, hidden: [2], epochs: 10000, distribution: gaussian}",
              "  data: {source: xor}"]
    return "\n".join(lines)


def parse_override(text: str):
    """argparse ``type=`` for ``--set KEY=VALUE`` (see :func:`pipeline.config.parse_override`)."""
    from pipeline.config import parse_override as parse

    try:
        return parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train one model from a YAML config", epilog=_fields_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one model, print a score table (and predictions for small data), optionally save it.")
    train.add_argument("config", help="YAML config with name/model/data sections")
    train.add_argument("--out", help="save the trained model here (.npz + JSON header, no pickle)")
    train.add_argument("--set", dest="overrides", action="append", type=parse_override, default=[],
                       metavar="KEY=VALUE", help="override a field, e.g. --set model.seed=3 (repeatable)")
    train.add_argument("--quiet", action="store_true", help="no progress lines")
    train.add_argument("--flow", action="store_true",
                       help="run it as a Prefect flow tracked in MLflow (a parent run and one child, as a sweep's "
                            "trial, with the model registered and links into the MLflow UI); see --store")
    train.add_argument("--store", default=".sweepnet",
                       help="with --flow: directory of the MLflow sqlite store, artifacts, summaries "
                            "(default: %(default)s; MLFLOW_TRACKING_URI wins when set)")
    train.set_defaults(func=_train)

    check = subparsers.add_parser(
        "gradcheck", help="compare backprop with a numerical gradient for a config",
        description="Two-sided numerical gradient (EPSILON 1e-4, UFLDL) vs backprop on a small instance of the "
                    "config (10 rows, <= 4 units per hidden layer, float64). Prints ||num-ana||/||num+ana||; "
                    "a correct gradient gives about 1e-9 or less.")
    check.add_argument("config")
    check.add_argument("--samples", type=int, default=10, help="training rows used (default 10)")
    check.add_argument("--max-hidden", type=int, default=4, help="cap on units per hidden layer (default 4)")
    check.add_argument("--tolerance", type=float, default=1e-6, help="exit 1 above this (default 1e-6)")
    check.set_defaults(func=_gradcheck)


def _progress_printer(start):
    def show(entry, total):
        metrics = "  ".join(f"{k}={v:.4g}" for k, v in entry.items()
                            if k.startswith(("training_", "validation_")) and not k.endswith("RMSE"))
        print(f"  epoch {entry['epoch']:>6}/{total}  {metrics}  ({time.perf_counter() - start:.1f}s)",
              file=sys.stderr, flush=True)
    return show


def _train(args) -> int:
    if args.flow:
        if args.out:
            raise ValueError("--out and --flow do not go together: with --flow the model is an MLflow model "
                             "(models:/NAME-train@champion); use `sweepnet predict` on it, or drop --flow")
        from pathlib import Path

        from app.commands.train_flow import run_train_flow

        return run_train_flow(args.config, list(args.overrides), Path(args.store))
    from pipeline.config import load_config
    from pipeline.datasets import load_data
    from pipeline.train import predictions_table, run_training

    cfg = load_config(args.config, dict(args.overrides))
    data = load_data(cfg.data)
    start = time.perf_counter()
    print(f"training {cfg.name}: {data.X_train.shape[0]} rows x {data.X_train.shape[1]} features", file=sys.stderr)
    result = run_training(cfg, progress=None if args.quiet else _progress_printer(start), data=data)
    elapsed = time.perf_counter() - start
    print(f"\n{cfg.name}: {result.metrics['epochs_run']:.0f} epochs in {elapsed:.2f}s")
    print(f"{'metric':<28}{'value':>14}")
    for key, value in result.metrics.items():
        print(f"{key:<28}{value:>14.6g}")
    if data.X_train.shape[0] <= 20:
        print("\npredictions on the training rows (h2o.predict):")
        print(predictions_table(result.model, data.X_train))
    if args.out:
        path = result.model.save(args.out, extra=_model_extra(result, data))
        print(f"\nmodel saved to {path}")
        if data.meta.get("image_shape"):
            _write_picture(result.model, path)
    return 0


def _write_picture(model, model_path) -> None:
    """A model trained on images or patches gets its first-layer feature picture beside it."""
    from pipeline.pictures import feature_inputs, localization_score, write_feature_picture

    W, shape, steps = feature_inputs(model)
    picture = write_feature_picture(W, shape, model_path.with_suffix(".png"), steps)
    print(f"feature picture: {picture} (localization score {localization_score(W, shape):.2f})")


def _model_extra(result, data) -> dict:
    """What the model file carries besides the model: config, data meta (feature names, fitted preprocessing)
    and an input example, so `sweepnet predict`/`serve` and MLflow take rows as the data source holds them."""
    from pipeline import mlflow_model

    meta = mlflow_model.file_meta(data.meta)
    example = mlflow_model.input_example(data.X_train, mlflow_model.fitted_steps(meta))
    return {"config": result.config, "data_meta": meta,
            "input_example": None if example is None else example.tolist()}


def _gradcheck(args) -> int:
    from pipeline.gradcheck import check_config

    value = check_config(args.config, n_samples=args.samples, max_hidden=args.max_hidden)
    verdict = "OK" if value < args.tolerance else "FAILED"
    print(f"relative difference ||num-ana||/||num+ana|| = {value:.3e}  ({verdict}, tolerance {args.tolerance:g})")
    return 0 if value < args.tolerance else 1
