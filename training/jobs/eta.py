"""Time-remaining estimates from the measured time per step.

Plain Python with an injectable clock, so the estimate is tested with a
simulated one. Warm-up is left out of the rate: the clock starts at the first
report after the job's first reported step, so model loading and the first
step (compilation, caches, the first batch) never inflate it."""
from __future__ import annotations

import time
from collections.abc import Callable


# Reports closer together than this came out of one batch (generation and evaluation report every row of a
# batch at once): the timing starts after the batch, or one batch's rows would look like free steps.
BURST_SECONDS = 0.5


class StepTimeEstimator:
    """Feed it (step, total) reports; `remaining()` is seconds left, or None
    until at least one step has been timed after warm-up."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._total: int | None = None
        self._first_step: int | None = None  # the step of the first report (loading happened before it)
        self._anchor: tuple[float, int] | None = None  # (time, step) where the timing starts
        self._latest: tuple[float, int] | None = None

    def report(self, step: int, total: int) -> float | None:
        now = self._clock()
        if total != self._total or (self._latest is not None and step < self._latest[1]):
            # A new phase (another total) or a restart from an earlier step: warm up again.
            self._total, self._first_step, self._anchor = total, step, None
        self._latest = (now, step)
        if self._anchor is None and step > max(self._first_step, 0):
            self._anchor = (now, step)
        elif self._anchor is not None and now - self._anchor[0] < BURST_SECONDS:
            self._anchor = (now, step)  # the rest of the first timed batch: not yet a measured step
        return self.remaining()

    def seconds_per_step(self) -> float | None:
        if self._anchor is None or self._latest is None or self._latest[1] <= self._anchor[1]:
            return None
        return (self._latest[0] - self._anchor[0]) / (self._latest[1] - self._anchor[1])

    def remaining(self) -> float | None:
        rate = self.seconds_per_step()
        if rate is None or not self._total or self._latest[1] > self._total:
            return None
        return rate * (self._total - self._latest[1])
