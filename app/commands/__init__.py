"""One module per ``sweepnet`` subcommand, each with ``register(subparsers)``; see :mod:`app.cli`."""
