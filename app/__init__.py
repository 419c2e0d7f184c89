"""The front door: the ``sweepnet`` command, local service supervision (``app.services``), entry points.

The only floor that parses argv or starts servers; it calls ``flows`` in-process.
"""

from app.cli import main

__all__ = [
    "main",
]
