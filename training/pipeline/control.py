"""The one run-control object every long-running pipeline function takes.

A caller (the job runtime, the command line, a test) says how it wants to hear
about a run and how it asks the run to stop, in one object passed the same way
to every long-running function: ``train_sft(config, control)``,
``generate_candidates(config, control)``, ``train_reward_model(config, control)``
and so on. ``control=None`` is a run nobody watches and nobody stops.

- ``progress(step, total, loss)``: called as work is done (``loss`` is None
  outside training);
- ``should_stop()``: asked at every safe point; True ends the run early, with
  what is done kept, so a rerun resumes;
- ``log(message)``: messages a person watching the run should read (a resumed
  checkpoint, a damaged one set aside);
- ``metrics(step, values)``: a trainer's logged metrics at each logging step.

The job runtime's ``JobRun`` has these four methods, so a stage passes its run
through ``RunControl.of(run)``; plain Python callers build one from callables.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ProgressHook = Callable[[int, int, "float | None"], None]
StopCheck = Callable[[], bool]
LogHook = Callable[[str], None]
MetricsHook = Callable[[int, dict], None]


@dataclass(frozen=True)
class RunControl:
    on_progress: ProgressHook | None = None
    stop_check: StopCheck | None = None
    on_log: LogHook | None = None
    on_metrics: MetricsHook | None = None

    @classmethod
    def of(cls, run) -> "RunControl":
        """From any object with ``progress``, ``should_stop``, ``log`` and ``metrics`` methods (a job's run)."""
        return cls(on_progress=run.progress, stop_check=run.should_stop, on_log=run.log, on_metrics=run.metrics)

    def progress(self, step: int, total: int, loss: float | None = None) -> None:
        if self.on_progress is not None:
            self.on_progress(step, total, loss)

    def should_stop(self) -> bool:
        return self.stop_check is not None and bool(self.stop_check())

    def log(self, message: str) -> None:
        if self.on_log is not None:
            self.on_log(message)

    def metrics(self, step: int, values: dict) -> None:
        if self.on_metrics is not None:
            self.on_metrics(step, values)


UNWATCHED = RunControl()


def run_control(control: RunControl | None) -> RunControl:
    """``control`` or the unwatched one, so a function can call its methods without checking for None."""
    return UNWATCHED if control is None else control
