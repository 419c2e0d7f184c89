"""``sweepnet show MODEL --out PNG``: draw a trained model's first-layer features."""

from __future__ import annotations

import argparse
import sys

_DESCRIPTION = """\
Draw what each first-layer hidden unit responds to. For unit i with incoming weights W_i,
the input x with ||x|| <= 1 that activates it most is x = W_i / ||W_i||; each such x is
reshaped to the training images' (h, w, c), contrast-normalised and tiled into a grid
(UFLDL's display_network), grey or colour. Trained on whitened (ZCA) data, the features are
mapped back to pixel space: --mode filter draws W_i*T (UFLDL's W*ZCAWhite, sharp edges),
--mode preimage draws T^-1 x (the pixel patch that whitens to x). The model's own input
scaling (standardize) is undone the same way.

The image shape and preprocessing come from the model file (saved by `sweepnet train`
from the dataset); pass --image-shape for models trained on other data. A sparse
autoencoder on natural-image patches should show localized, oriented edge detectors;
the printed localization score is the share of such filters (random weights: ~0).

  sweepnet show runs/sparse_ae/model.npz --out features.png
"""


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``show`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser("show", help="write a PNG of a model's first-layer features",
                                   description=_DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model file written by `sweepnet train` (.npz)")
    parser.add_argument("--out", required=True, help="output PNG path")
    parser.add_argument("--layer", type=int, default=0,
                        help="hidden layer to draw; only 0 (the first, connected to pixels) is supported")
    parser.add_argument("--mode", choices=["filter", "preimage"], default="filter",
                        help="how whitened features map to pixels (default: %(default)s)")
    parser.add_argument("--image-shape", metavar="H,W,C",
                        help="input image shape if the model file does not record it, e.g. 8,8,1")
    parser.add_argument("--scale", type=int, default=None, help="integer upscaling of the PNG")
    parser.set_defaults(func=_cmd_show)
    return parser


def _parse_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"--image-shape {text!r}; write H,W,C with positive integers, e.g. 8,8,1 or 8,8,3.")
    return shape


def _cmd_show(args: argparse.Namespace) -> int:
    from pipeline.pictures import feature_inputs, localization_score, write_feature_picture

    try:
        from pipeline.model import DeepLearningModel  # lazy: the engine is heavy to import

        model = DeepLearningModel.load(args.model)
        shape = _parse_shape(args.image_shape) if args.image_shape else None
        W, shape, steps = feature_inputs(model, args.layer, shape)
        path = write_feature_picture(W, shape, args.out, steps, mode=args.mode, scale=args.scale)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    score = localization_score(W, shape)
    print(f"wrote {path}: {len(W)} features of {shape[0]}x{shape[1]}x{shape[2]} "
          f"({'preprocessing: ' + ', '.join(s['name'] for s in steps) if steps else 'raw pixels'})")
    print(f"localization score (share of localized, oriented filters): {score:.2f}")
    return 0
