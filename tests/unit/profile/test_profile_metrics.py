"""Plugin metric lines and nearest-rank percentiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecr_oci.profile.metrics import MetricSamples, parse_metric_line, percentile, summarize


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 0.50) == 50
    assert percentile(values, 0.95) == 95
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7.5], 0.95) == 7.5
    assert percentile([3, 1, 2], 0.5) == 2  # order of arrival does not matter


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match="not in"):
        percentile([1], 0)


def test_slow_frame_every_tenth_is_the_p95() -> None:
    """The cpu-burner's pattern: 9 frames of 50 ms then one of 100 ms."""
    values = [100.0 if i % 10 == 9 else 50.0 for i in range(100)]
    summary = summarize(values)
    assert (summary.p50, summary.p95, summary.p99, summary.count) == (50.0, 100.0, 100.0, 100)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"metric": "inference_ms", "value": 12.3}', ("inference_ms", 12.3, None)),
        ('  {"metric": "fps", "value": 30, "unit": "1/s"}\n', ("fps", 30.0, "1/s")),
        ("inference took 12 ms", None),
        ('{"metric": "x"}', None),
        ('{"metric": "x", "value": "12"}', None),
        ('{"metric": "x", "value": true}', None),
        ('{"metric": "x", "value": NaN}', None),
        ('{"metric": "", "value": 1}', None),
        ('{"value": 1}', None),
        ("[1, 2]", None),
        ('{"metric": "x", "value": 1', None),
    ],
)
def test_parse_metric_line(line: str, expected: tuple[str, float, str | None] | None) -> None:
    assert parse_metric_line(line) == expected


def test_samples_mix_logs_and_metrics_and_read_a_file(tmp_path: Path) -> None:
    samples = MetricSamples()
    samples.feed_lines(
        ["starting", '{"metric": "a", "value": 1}', '{"metric": "b", "value": 5, "unit": "ms"}']
    )
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"metric": "a", "value": 3}\nnoise\n{"metric": "a", "value": 2}\n')
    samples.feed_file(path)
    samples.feed_file(tmp_path / "absent")  # a plugin that wrote no file adds nothing
    summaries = samples.summaries()
    assert sorted(summaries) == ["a", "b"]
    assert samples.values("a") == [1.0, 3.0, 2.0]
    assert (summaries["a"].p50, summaries["a"].p99, summaries["a"].count) == (2.0, 3.0, 3)
    assert summaries["b"].unit == "ms"
