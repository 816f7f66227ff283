"""Retention's pace: batches sized to what they take, and pauses that leave the database
to everything else most of the time."""

from __future__ import annotations

import pytest

from headrace.runner.retention import MIN_BATCH_RUNS, PrunePace
from headrace.store.admin import PRUNE_BATCH_RUNS


def test_slow_batches_shrink_and_fast_ones_grow_within_bounds() -> None:
    pace = PrunePace(batch_runs=200, target_seconds=0.02)
    pace.after(0.2)  # ten times too slow: halved at most
    assert pace.batch_runs == 100
    for _ in range(20):
        pace.after(1.0)
    assert pace.batch_runs == MIN_BATCH_RUNS
    for _ in range(20):
        pace.after(0.001)
    assert pace.batch_runs == PRUNE_BATCH_RUNS


@pytest.mark.parametrize("took", [0.001, 0.02, 0.3])
def test_pruning_holds_the_database_a_fifth_of_the_time_at_most(took: float) -> None:
    pace = PrunePace(share=0.2, min_pause_seconds=0.05)
    pause = pace.after(took)
    assert pause >= 0.05
    assert took / (took + pause) <= 0.2 + 1e-9
