"""The ``sweepnet`` command line.

Each subcommand lives in its own module under ``app.commands`` with a ``register(subparsers)``
function; this file only wires them together. ``python -m app ...`` is the same command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMAND_MODULES = ("app.commands.train", "app.commands.data", "app.commands.show", "app.commands.features",
                      "app.commands.sweep", "app.commands.services", "app.commands.predict")

DESCRIPTION = """\
sweepnet: feed-forward networks on Numba kernels, swept over Dask with Prefect, tracked in MLflow.

Start with:
  sweepnet train examples/xor.yaml        # the lab's h2o XOR call, predictions printed
  sweepnet gradcheck examples/xor.yaml    # backprop vs numerical gradient
  sweepnet sweep examples/sweeps/xor_census.yaml   # a real sweep on a local Dask cluster
  sweepnet ui                             # open the MLflow UI on 127.0.0.1
  sweepnet predict models:/xor-init-census@champion rows.csv   # the sweep's best model on new rows
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweepnet", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
