"""The time-remaining estimate, on a simulated clock."""
import pytest

from training.jobs.eta import StepTimeEstimator


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.mark.parametrize("first_step", [0, 1])
def test_a_steady_job_is_estimated_within_a_quarter_and_nothing_is_shown_before_warm_up(first_step):
    clock = FakeClock()
    estimator = StepTimeEstimator(clock=clock)
    total, per_step, loading = 100, 2.0, 60.0
    clock.advance(loading)
    # The first report comes after model loading (and, for a trainer, after its first, slow step).
    assert estimator.report(first_step, total) is None
    clock.advance(3 * per_step)  # the first timed step is slow (warm-up: caches, first batch)
    assert estimator.report(first_step + 1, total) is None  # one report past warm-up: nothing timed yet
    for step in range(first_step + 2, 90):
        clock.advance(per_step)
        eta = estimator.report(step, total)
        actual = per_step * (total - step)
        assert eta is not None and abs(eta - actual) <= 0.25 * actual, (step, eta, actual)


def test_the_estimate_follows_the_measured_rate_not_the_time_since_the_start():
    clock = FakeClock()
    estimator = StepTimeEstimator(clock=clock)
    estimator.report(0, 10)
    clock.advance(500)  # a long model load before the first step
    estimator.report(1, 10)
    clock.advance(1)
    assert estimator.report(2, 10) == pytest.approx(8.0)


def test_a_new_total_or_a_restart_warms_up_again():
    clock = FakeClock()
    estimator = StepTimeEstimator(clock=clock)
    for step in range(0, 5):
        estimator.report(step, 10)
        clock.advance(1)
    assert estimator.remaining() is not None
    assert estimator.report(0, 40) is None  # the next phase of the job
    clock.advance(1)
    assert estimator.report(1, 40) is None
    clock.advance(1)
    assert estimator.report(2, 40) == pytest.approx(38.0)
    assert estimator.report(1, 40) is None  # resumed from an earlier step


def test_no_estimate_without_a_total_or_past_it():
    clock = FakeClock()
    estimator = StepTimeEstimator(clock=clock)
    for step in range(4):
        clock.advance(1)
        assert estimator.report(step, 0) is None


def test_a_job_that_reports_a_batch_at_once_is_estimated_from_whole_batches():
    """Generation and evaluation report each row of a batch in the same instant: the first batch's rows
    are not free steps (measured on the demo before this: 0.3 s shown at 2 of 16 rows, 62 s at 6 of 168)."""
    clock = FakeClock()
    estimator = StepTimeEstimator(clock=clock)
    total, batch, per_batch = 168, 6, 30.0
    estimator.report(0, total)
    clock.advance(120)  # model loading
    for step in range(1, batch + 1):  # the first batch: all its rows at once
        clock.advance(0.001)
        assert estimator.report(step, total) is None
    for done in range(2 * batch, total, batch):
        clock.advance(per_batch)
        for step in range(done - batch + 1, done + 1):
            clock.advance(0.001)
            eta = estimator.report(step, total)
        actual = per_batch / batch * (total - done)
        assert eta is not None and abs(eta - actual) <= 0.25 * actual, (done, eta, actual)
