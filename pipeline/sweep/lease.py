"""One run of a sweep at a time: a lease file beside the tracking store, in the sweep store.

Two runs of the same sweep (overlapping cron firings, two terminals) would otherwise mark each other's live
children KILLED and close each other's parent. The lease is ``<store>/leases/<sweep key>.lease`` under an
exclusive ``flock``: the operating system drops the lock when its process dies however it dies, so a stale
lease (holder dead) is taken over without guessing from timestamps. The file names the holder (host, pid,
since) for the refusal message; a clean release empties it, so a taker-over can tell that the previous
holder died. It protects runs that share the sweep store (one host, or a shared filesystem with flock).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


class LeaseHeld(RuntimeError):
    """Another live process holds the sweep's lease."""


@dataclass
class Lease:
    """A held lease: the open locked file, who holds it, and the dead holder it replaced (or ``None``)."""

    path: Path
    fd: int
    holder: dict
    previous: dict | None = None


_HELD: dict[str, Lease] = {}


def lease_path(store_dir: str | Path, key: str) -> Path:
    return Path(store_dir).resolve() / "leases" / f"{key}.lease"


def acquire(store_dir: str | Path, key: str, name: str = "", wait: float = 0.0, poll: float = 0.5) -> Lease:
    """Take the lease of sweep ``key``; wait up to ``wait`` seconds for a live holder.

    Re-entrant within one process (a plan this process abandoned, e.g. after an interruption, does not
    block its next run).

    Raises
    ------
    LeaseHeld
        When another live process still holds it after ``wait`` seconds; the message names it.
    """
    path = lease_path(store_dir, key)
    if str(path) in _HELD:
        return _HELD[str(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LeaseHeld(_busy_message(name or key, _read(path), path, wait)) from None
            time.sleep(poll)
    previous = _read(path)
    holder = {"host": socket.gethostname(), "pid": os.getpid(),
              "since": datetime.now(timezone.utc).isoformat(timespec="seconds"), "sweep": name}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    os.fsync(fd)
    held = Lease(path, fd, holder, previous or None)
    _HELD[str(path)] = held
    return held


def release(held: Lease | None) -> None:
    """Empty the lease file (a clean end) and unlock it; harmless if already released."""
    if held is None or _HELD.get(str(held.path)) is not held:
        return
    del _HELD[str(held.path)]
    try:
        os.ftruncate(held.fd, 0)
        fcntl.flock(held.fd, fcntl.LOCK_UN)
    finally:
        os.close(held.fd)


def held_lease(store_dir: str | Path, key: str) -> Lease | None:
    """The lease this process holds for sweep ``key``, if any."""
    return _HELD.get(str(lease_path(store_dir, key)))


def describe(holder: dict | None) -> str:
    if not holder:
        return "an unknown process"
    return f"{holder.get('host', '?')} pid {holder.get('pid', '?')}"


def _read(path: Path) -> dict | None:
    try:
        text = path.read_text()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def _busy_message(name: str, holder: dict | None, path: Path, wait: float) -> str:
    since = f" since {holder.get('since')}" if holder else ""
    waited = f" (waited {wait:g} s)" if wait > 0 else ""
    return (f"sweep {name!r} is already running: {describe(holder)} holds its lease{since}{waited} ({path}). "
            "Let that run finish, stop it, or wait for it (`sweepnet sweep --wait SECONDS`); a lease whose process "
            "died is taken over automatically.")
