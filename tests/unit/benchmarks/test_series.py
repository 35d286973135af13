"""benchmarks/series.py: the series counts it reports stay bounded whatever sizes jobs have."""

from __future__ import annotations

import random

from benchmarks import series


def test_twenty_sizes_make_four_resolution_classes_of_generation_series() -> None:
    node = series.node_after_jobs(random.Random(1))
    # 4 classes x 1 tier x (16 buckets + +Inf + sum + count)
    assert series.generation_series(node) == 4 * 19
    assert series.raw_size_series() == 20 * 19


def test_what_jobs_export_stays_under_the_worst_case() -> None:
    rng = random.Random(1)
    worst = series.series(series.node_worst_case().registry)
    assert series.series(series.node_after_jobs(rng).registry) < worst
    small, large = series.coordinator_worst_case(4), series.coordinator_worst_case(40)
    assert series.series(large.registry) - series.series(small.registry) == 2 * 36  # 2 per node
    assert series.series(series.coordinator_after_jobs(rng).registry) < series.series(small.registry)
