"""Live sweep progress for the terminal: done/total, failed, best so far, elapsed and ETA."""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Iterable

from pipeline.sweep.outcome import TrialOutcome


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"


class Progress:
    """Counts outcomes as chunks complete and prints a status line (throttled to ``every`` seconds).

    ``cached`` outcomes (finished by an earlier run) count as done but not in the ETA rate.
    """

    def __init__(self, total: int, objective: str, direction: str, stream: IO | None = None,
                 every: float = 1.0, label: str = "sweep") -> None:
        self.total, self.objective, self.direction = total, objective, direction
        self.stream = stream if stream is not None else sys.stderr
        self.every, self.label = every, label
        self.done = self.failed = self.cached = self.skipped = 0
        self.best = math.nan
        self.start = time.perf_counter()
        self._last = -math.inf

    def update(self, outcomes: Iterable[TrialOutcome], force: bool = False) -> None:
        """Count ``outcomes`` and maybe print."""
        for o in outcomes:
            self.done += 1
            status = o.status
            self.failed += status == "failed"
            self.cached += status == "cached"
            self.skipped += status == "skipped"
            value = o.objective
            if math.isfinite(value) and (math.isnan(self.best) or self._better(value)):
                self.best = value
        now = time.perf_counter()
        if force or now - self._last >= self.every or self.done == self.total:
            self._last = now
            print(self.line(), file=self.stream, flush=True)

    def _better(self, value: float) -> bool:
        return value < self.best if self.direction == "minimize" else value > self.best

    def line(self) -> str:
        """The current status line."""
        elapsed = time.perf_counter() - self.start
        ran = self.done - self.cached
        left = self.total - self.done
        eta = elapsed / ran * left if ran > 0 else math.inf
        best = f"{self.best:.4g}" if math.isfinite(self.best) else "-"
        extra = f", {self.cached} cached" if self.cached else ""
        extra += f", {self.skipped} skipped" if self.skipped else ""
        return (f"[{self.label}] {self.done}/{self.total} done, {self.failed} failed{extra}, "
                f"best {self.objective}={best}, elapsed {_clock(elapsed)}, ETA {_clock(eta if left else 0)}")
