"""One module per ``sweepnet`` subcommand, each with ``register(subparsers)``; see :mod:`app.cli`."""

__all__ = []  # nothing here is imported by name: app.cli loads the modules by their names
