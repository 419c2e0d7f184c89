"""``sweepnet features CONFIG.yaml``: autoencoder features -> convolution + pooling -> classifier."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from app.commands.train import parse_override

EPILOG = """\
what it does
  1. takes a trained autoencoder (autoencoder.model: a .npz from `sweepnet train --out`,
     autoencoder.run_id: an MLflow run of a sweep trial, or autoencoder.train: a spec trained here,
     e.g. on random 8x8 patches of unlabelled images);
  2. folds its preprocessing (zca, standardize, ...) and input scaling into the first layer:
     W' = W T, b' = b - W T xbar (UFLDL's convolution trick);
  3. convolves every labelled image with the K features (valid windows), applies the hidden
     activation, pools (conv.pool, conv.mode mean|max, conv.stride, conv.remainder drop|partial);
  4. writes OUT/features.parquet, one row per image, one row group per shard (shard_rows);
  5. trains the classifier (default softmax regression: hidden: [], L-BFGS, l2 1e-4) on the pooled
     features and, with compare_raw (default), the same classifier on raw pixels;
  6. prints both test accuracies and the confusion matrix; writes OUT/metrics.json and
     OUT/classifier.npz (and OUT/autoencoder.npz when trained here).

self-taught learning (UFLDL): learn the autoencoder on whole images of digits 5-9, set
conv.pool: 1 and a patch equal to the image, then classify digits 0-4 (examples/self_taught.yaml).

examples
  sweepnet features examples/conv_pool.yaml
  sweepnet features examples/self_taught.yaml --set classifier.epochs=100
  sweepnet features examples/colour_conv.yaml --out runs/colour
  sweepnet features examples/conv_pool.yaml --flow --store .sweepnet   # shards on Dask, MLflow parent
"""


def register(subparsers) -> None:
    """Add the ``features`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "features", help="convolve + pool autoencoder features over labelled images, then classify",
        description="Self-taught learning with convolution and pooling (UFLDL): pooled autoencoder "
                    "features -> Parquet -> softmax/MLP classifier, compared with raw pixels.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="features YAML, e.g. examples/conv_pool.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], type=parse_override,
                        metavar="KEY=VALUE", help="override a config value (dotted key), repeatable")
    parser.add_argument("--out", help="output folder (default: the config's out, else runs/features/NAME)")
    parser.add_argument("--flow", action="store_true",
                        help="run it as a Prefect flow: one Dask task per image shard, tracked in MLflow as a "
                             "parent run (experiment NAME-features) with the metrics and confusion matrix")
    parser.add_argument("--store", default=".sweepnet",
                        help="with --flow: directory of the MLflow sqlite store and artifacts (default .sweepnet)")
    parser.add_argument("--dask-address", help="with --flow: an existing Dask scheduler (default: "
                                               "SWEEPNET_DASK_ADDRESS, else an embedded LocalCluster)")
    parser.add_argument("--workers", type=int, help="with --flow: worker processes of the embedded LocalCluster")
    parser.set_defaults(func=_run)


def _confusion_text(matrix, names) -> str:
    width = max(5, *(len(str(n)) for n in names))
    lines = [" " * width + " " + " ".join(f"{str(n):>{width}}" for n in names) + "   <- predicted"]
    for name, row in zip(names, matrix):
        lines.append(f"{str(name):>{width}} " + " ".join(f"{v:>{width}d}" for v in row))
    return "\n".join(lines)


def _run(args) -> int:
    from pipeline.config import ConfigError
    from pipeline.features import run_features

    overrides = dict(args.overrides)
    if args.out:
        overrides["out"] = args.out
    try:
        if args.flow:
            from pathlib import Path

            from app.commands.features_flow import run_features_flow

            summary = run_features_flow(args.config, overrides, Path(args.store), args.dask_address, args.workers)
        else:
            summary = run_features(args.config, overrides=overrides)
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    feats, raw = summary["features"], summary.get("raw_pixels")
    print("\n| inputs | n_inputs | train accuracy | test accuracy |\n|---|---|---|---|")
    print(f"| pooled features | {feats['n_inputs']} | {feats['train_accuracy']:.4f} | "
          f"{feats['test_accuracy']:.4f} |")
    if raw:
        print(f"| raw pixels | {raw['n_inputs']} | {raw['train_accuracy']:.4f} | {raw['test_accuracy']:.4f} |")
    names = summary.get("class_names") or summary["classes"]
    print(f"\nconfusion matrix (pooled features, test, {summary['n_test']} images):")
    print(_confusion_text(np.asarray(feats["confusion_matrix"]), names))
    print(f"\nwritten to {summary['out']}")
    if args.flow:
        from app.commands.features_flow import tracking_lines

        print(tracking_lines(summary))
    return 0
