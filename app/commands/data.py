"""``sweepnet data patches|images|inspect``: build and check Parquet image datasets.

Also ``python -m app data inspect PATH``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

_DESCRIPTION = """\
Build the Parquet datasets that autoencoders and classifiers train on, and check them.

Every dataset has one row per patch or image: a `pixels` column (FixedSizeList<float32>
of h*w*c values in (h, w, c) order), `source_id`, `row`/`col` (patch corner, -1 for whole
images) and, for labelled images, an int64 `label`. The file metadata records the shape,
channels, any preprocessing already applied, and how the file was made. Row groups are the
shards later stages fan out over. Use the file (or a directory of files) as `data.source`
in a training config.

  sweepnet data patches --source skimage-grey --size 8 --count 10000 --out data/patches8.parquet
  sweepnet data images --source mnist5k --out data/mnist5k.parquet
  sweepnet data inspect data/patches8.parquet
"""

_SOURCES = """\
patch sources (comma-separated): camera, moon, brick, grass, gravel (grey photos),
astronaut, coffee, chelsea, rocket (colour), china, flower (scikit-learn), the aliases
skimage-grey, skimage-colour, sklearn, or your PNG/JPEG files and folders.
"""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``data`` subcommand (``patches``, ``images``, ``inspect``) to ``subparsers``."""
    parser = subparsers.add_parser("data", help="build and inspect Parquet patch/image datasets",
                                   description=_DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="{patches,images,inspect}")

    patches = sub.add_parser("patches", help="sample random square patches from photos",
                             description="Sample random patches (UFLDL's sampleIMAGES) and write them.",
                             epilog=_SOURCES, formatter_class=argparse.RawDescriptionHelpFormatter)
    patches.add_argument("--source", default="skimage-grey", help="images to sample from (default: %(default)s)")
    patches.add_argument("--size", type=int, default=8, help="patch side in pixels (UFLDL: 8; the lab: 10)")
    patches.add_argument("--count", type=int, default=10000, help="number of patches (default: %(default)s)")
    patches.add_argument("--seed", type=int, default=0, help="sampling seed; same seed, same file")
    patches.add_argument("--colour", "--color", action="store_true",
                         help="RGB patches (h*w*3 values); default converts to grey")
    patches.add_argument("--whiten", action="store_true",
                         help="whiten whole images first (Olshausen-Field 1/f filter, like UFLDL's "
                              "IMAGES.mat); sparse autoencoders then learn edge detectors, not blobs")
    _add_common(patches)
    patches.set_defaults(func=_cmd_patches)

    images = sub.add_parser("images", help="write a labelled image set",
                            description="Write a labelled image dataset: digits (8x8), mnist5k (5,000 "
                                        "28x28 MNIST digits), lfw (200 25x25 faces vs non-faces), or a "
                                        "folder with one subfolder of PNG/JPEG files per label.",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    images.add_argument("--source", required=True, help="digits | mnist5k | lfw | FOLDER")
    images.add_argument("--colour", "--color", action="store_true", help="folders: read RGB instead of grey")
    _add_common(images)
    images.set_defaults(func=_cmd_images)

    inspect = sub.add_parser("inspect", help="show schema, rows, shards, metadata; validate",
                             description="Print a dataset's schema, row and shard counts and metadata, "
                                         "and validate it (types, shapes, NaN/inf). Exit 1 if invalid.")
    inspect.add_argument("path", help="a .parquet file or a directory of them")
    inspect.add_argument("--no-scan", action="store_true", help="skip reading every pixel (NaN/inf check)")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.set_defaults(func=_cmd_inspect)
    return parser


def _add_common(p: argparse.ArgumentParser) -> None:
    from pipeline.datasets.store import DEFAULT_ROWS_PER_GROUP

    p.add_argument("--preprocess", action="append", default=[], metavar="STEP",
                   choices=["ufldl_normalize", "standardize", "zca", "scale01"],
                   help="fit a step on all rows and store the result (repeatable, applied in order): "
                        "ufldl_normalize (UFLDL: each patch's mean removed, +-3 sd clip, [0.1, 0.9]), "
                        "standardize, zca (see --zca-epsilon), scale01. Default: raw pixels in [0, 1]; "
                        "steps can also go in the training config instead.")
    p.add_argument("--zca-epsilon", type=float, default=0.1, help="ZCA epsilon (default: %(default)s)")
    p.add_argument("--rows-per-group", type=int, default=DEFAULT_ROWS_PER_GROUP,
                   help="rows per row group = shard (default: %(default)s)")
    p.add_argument("--out", required=True, help="output .parquet file")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sweepnet")
    except PackageNotFoundError:
        return "dev"


def _steps(args) -> list[dict]:
    return [{"name": s, "epsilon": args.zca_epsilon} for s in args.preprocess]


def _write(what: str, writer, args: argparse.Namespace, **kwargs) -> int:
    """Run one dataset writer; report the file it wrote or the error (exit 1)."""
    from pipeline.datasets.checks import validate

    started = time.perf_counter()
    try:
        path = Path(writer(args.out, args.source, colour=args.colour, preprocessing=_steps(args),
                           rows_per_group=args.rows_per_group, created_by=f"sweepnet {_version()} data {what}",
                           **kwargs))
    except ValueError as err:
        _say(f"error: {err}")
        return 1
    report = validate(path, scan=False)
    size = path.stat().st_size / 1e6
    _say(f"wrote {path}: {report['rows']} rows of shape {report['shape']}, {report['shards']} shards, "
         f"{size:.2f} MB, {time.perf_counter() - started:.1f} s")
    return 0


def _cmd_patches(args: argparse.Namespace) -> int:
    from pipeline.datasets.writers import write_patches

    _say(f"sampling {args.count} {args.size}x{args.size} {'colour' if args.colour else 'grey'} patches "
         f"from {args.source} (seed {args.seed}) ...")
    return _write("patches", write_patches, args, size=args.size, count=args.count, seed=args.seed,
                  whiten=args.whiten)


def _cmd_images(args: argparse.Namespace) -> int:
    from pipeline.datasets.writers import write_images

    _say(f"reading labelled images from {args.source} ...")
    return _write("images", write_images, args)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from pipeline.datasets.checks import validate

    if not args.no_scan:
        _say(f"validating {args.path} (reading every pixel; --no-scan skips this) ...")
    try:
        report = validate(args.path, scan=not args.no_scan)
    except ValueError as err:
        print(f"INVALID: {err}")
        return 1
    report["valid"] = True
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    meta = report.pop("meta")
    print(f"dataset  {args.path}")
    print(f"files    {len(report['files'])}")
    print(f"rows     {report['rows']}")
    print(f"shards   {report['shards']} (row groups)")
    print(f"shape    {report['shape']} (h, w, c)")
    print("schema\n  " + report["schema"].replace("\n", "\n  "))
    print("metadata")
    for key in sorted(meta):
        value = meta[key]
        if key == "preprocessing":
            value = [step.get("name") for step in value] or "none (raw pixels)"
        print(f"  {key}: {value}")
    print("validation: OK" + (" (pixels not scanned)" if args.no_scan else " (types, shapes, NaN/inf)"))
    return 0
