"""Performance filters (issue 6): parsing, aggregation and the search over profile summaries, on a
real database made by the migrations (SQLite and PostgreSQL). Runs go in as the indexer writes them
(a ``profile`` manifest row with the profile in ``details``, then :func:`sync_profile` and
:func:`refresh_summaries`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ecr_oci.mediatypes import MediaType
from ecr_oci.server.db.engine import make_engine, session_factory
from ecr_oci.server.db.migrate import upgrade
from ecr_oci.server.db.models import ManifestRow, ProfileRun, ProfileSummary, Version
from ecr_oci.server.services import search as svc
from ecr_oci.server.services.errors import InvalidInputError
from ecr_oci.server.services.profiles import (
    MetricBound,
    MetricSort,
    PerformanceFilters,
    parse_bytes,
    refresh_summaries,
    sync_profile,
)
from ecr_oci.server.services.visibility import Visibility
from tests.unit.server.test_search import add_version, digest

ALL = Visibility.everything()
GiB = 1 << 30


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1048576", 1048576),
        ("2GiB", 2 * GiB),
        ("2Gi", 2 * GiB),
        ("2gib", 2 * GiB),
        ("512MiB", 512 << 20),
        ("1.5GiB", 3 * GiB // 2),
        ("2GB", 2_000_000_000),
        ("512M", 512_000_000),
        ("10K", 10_000),
        (" 3 KiB ", 3072),
        ("100B", 100),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "2XB", "-1", "2 GiB and more", "i", "2i", "1e3", "9" * 30])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_bytes(text)
    assert caught.value.code == "BAD_PARAMETER"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("inference_ms:p95<200", MetricBound("inference_ms", "p95", "<", 200.0)),
        ("inference_ms:p50<=12.5", MetricBound("inference_ms", "p50", "<=", 12.5)),
        (" fps.decode-ms:p99 < 1e3 ", MetricBound("fps.decode-ms", "p99", "<", 1000.0)),
        ("x:p95<-1", MetricBound("x", "p95", "<", -1.0)),
    ],
)
def test_metric_bounds(text: str, expected: MetricBound) -> None:
    bound = MetricBound.parse(text)
    assert bound == expected
    assert MetricBound.parse(bound.text) == bound  # the canonical text parses back exactly


@pytest.mark.parametrize(
    "text",
    [
        "inference_ms",
        "inference_ms:p95",
        "inference_ms:p90<200",
        "inference_ms:p95>200",
        "inference_ms:p95<",
        "inference_ms:p95<abc",
        ":p95<200",
        "inference ms:p95<200",
        "inference_ms:p95<200;drop",
        "x" * 200 + ":p95<1",
        "inference_ms:p95<1e999",
    ],
)
def test_bad_metric_bounds(text: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        MetricBound.parse(text)
    assert caught.value.code == "BAD_PARAMETER"
    assert len(str(caught.value)) < 300


def test_metric_sort() -> None:
    assert MetricSort.parse("metric:inference_ms:p95") == MetricSort("inference_ms", "p95")
    assert MetricSort.parse("name") is None
    for bad in ["metric:", "metric:inference_ms", "metric:inference_ms:p90", "metric::p95"]:
        with pytest.raises(InvalidInputError):
            MetricSort.parse(bad)


def test_performance_filters_are_canonical() -> None:
    a = PerformanceFilters.parse(device=" nx ", max_rss="1KiB", max_metric=["b:p95<2", "a:p50<=1", "b:p95<2"])
    assert a == PerformanceFilters("nx", 1024, (MetricBound.parse("a:p50<=1"), MetricBound.parse("b:p95<2")))
    assert not PerformanceFilters.parse(device=None, max_rss=None, max_metric=[])
    with pytest.raises(InvalidInputError):
        PerformanceFilters.parse(device=" ", max_rss=None, max_metric=[])
    with pytest.raises(InvalidInputError):
        PerformanceFilters.parse(device=None, max_rss=None, max_metric=[f"m{i}:p95<1" for i in range(9)])


# --- aggregation and search ------------------------------------------------------------------------


def add_profile(
    session: Session,
    version: Version,
    n: int,
    *,
    device: str,
    inference_p95: float | None = None,
    rss: int | None = None,
    wall: float | None = None,
    created: str = "2026-05-01T00:00:00Z",
    platform: int = 0,
) -> ManifestRow:
    """A profile referrer of ``version``'s ``platform``-th platform manifest, stored as the indexer does."""
    profile: dict[str, Any] = {"created": created, "device": {"name": device, "arch": "linux/amd64"}}
    measures = {k: v for k, v in {"peak_rss_bytes": rss, "wall_s": wall}.items() if v is not None}
    if measures:
        profile["measures"] = measures
    if inference_p95 is not None:
        profile["metrics"] = {
            "inference_ms": {
                "p50": inference_p95 / 2,
                "p95": inference_p95,
                "p99": inference_p95 * 2,
                "count": 10,
            }
        }
    row = ManifestRow(
        repository_id=version.repository_id,
        digest=digest(n, "profile" + version.name + version.tag),
        media_type=str(MediaType.OCI_MANIFEST),
        artifact_type=str(MediaType.PROFILE),
        subject_digest=version.platforms[platform].digest,
        size=400,
        annotations={},
        kind="profile",
        details={"profile": profile},
    )
    session.add(row)
    session.flush()
    refresh_summaries(session, row.repository_id, sync_profile(session, row))
    return row


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """fast-a on nx: 50 ms, 1 GiB; on cpu: 900 ms. slow-b on nx: 300 ms (median of 3 runs: 300),
    3 GiB. multi (two platforms): nx on its arm64 platform 100 ms. none: no profile."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('profiles')}/index.db"
    else:
        url = request.getfixturevalue("postgres").create_database()  # tests/fixtures/service.py
    eng = make_engine(url)
    upgrade(eng)
    with session_factory(eng)() as session:
        a = add_version(session, "perf/fast-a", "0.1.0", description="perfdemo")
        b = add_version(session, "perf/slow-b", "0.1.0", description="perfdemo")
        m = add_version(
            session, "perf/multi", "0.1.0", description="perfdemo", platforms=("linux/amd64", "linux/arm64")
        )
        add_version(session, "perf/none", "0.1.0", description="perfdemo")
        add_profile(session, a, 1, device="nx", inference_p95=50, rss=GiB, wall=10)
        add_profile(session, a, 2, device="cpu", inference_p95=900, rss=GiB // 2, wall=60)
        for i, p95 in enumerate([280, 300, 5000]):  # median 300: one outlier run does not decide
            add_profile(
                session, b, 10 + i, device="nx", inference_p95=p95, rss=3 * GiB, created=f"2026-05-0{i + 1}"
            )
        add_profile(session, m, 1, device="nx", inference_p95=100, rss=2 * GiB, platform=1)
        session.commit()
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as s:
        yield s


def hits(session: Session, sort: str = "name", **filters: Any) -> list[str]:
    query = svc.SearchQuery(text="perfdemo", filters=svc.SearchFilters(**filters), sort=sort)
    return [i.repository for i in svc.search(session, query, visible=ALL).items]


def test_summaries_are_medians_with_the_latest_run_apart(session: Session) -> None:
    summary = session.scalar(
        select(ProfileSummary)
        .join(Version, Version.repository_id == ProfileSummary.repository_id)
        .where(Version.name == "perf/slow-b")
    )
    assert summary is not None
    assert summary.runs == 3 and summary.device == "nx"
    assert summary.metrics["inference_ms"] == {"p50": 150.0, "p95": 300.0, "p99": 600.0, "count": 30}
    assert summary.latest["metrics"]["inference_ms"]["p95"] == 5000.0
    assert summary.latest_created == "2026-05-03"


def test_device_rss_and_metric_filters(session: Session) -> None:
    assert hits(session) == ["perf/fast-a", "perf/multi", "perf/none", "perf/slow-b"]
    assert hits(session, device="nx") == ["perf/fast-a", "perf/multi", "perf/slow-b"]
    assert hits(session, device="cpu") == ["perf/fast-a"]
    assert hits(session, device="jetson") == []
    assert hits(session, max_rss="2GiB") == ["perf/fast-a", "perf/multi"]
    assert hits(session, max_rss=str(2 * GiB - 1)) == ["perf/fast-a"]
    assert hits(session, max_metric=("inference_ms:p95<300",)) == ["perf/fast-a", "perf/multi"]
    assert hits(session, max_metric=("inference_ms:p95<=300",)) == [
        "perf/fast-a",
        "perf/multi",
        "perf/slow-b",
    ]
    assert hits(session, max_metric=("inference_ms:p95<100",)) == ["perf/fast-a"]
    assert hits(session, max_metric=("inference_ms:p99<=200",)) == ["perf/fast-a", "perf/multi"]
    assert hits(session, max_metric=("other_ms:p95<1e9",)) == []


def test_all_filters_must_hold_on_one_device(session: Session) -> None:
    # fast-a is fast on nx and light on cpu, but not both on one device
    assert hits(session, device="cpu", max_metric=("inference_ms:p95<200",)) == []
    assert hits(session, max_rss="600MiB", max_metric=("inference_ms:p95<200",)) == []
    assert hits(session, max_rss="600MiB", max_metric=("inference_ms:p95<1000",)) == ["perf/fast-a"]


def test_sort_by_metric_best_device_first_and_pages(session: Session) -> None:
    assert hits(session, sort="metric:inference_ms:p95") == ["perf/fast-a", "perf/multi", "perf/slow-b"]
    assert hits(session, sort="metric:inference_ms:p95", device="cpu") == ["perf/fast-a"]
    assert hits(session, sort="metric:inference_ms:p50", max_rss="1GiB") == ["perf/fast-a"]
    seen, cursor = [], None
    while True:
        query = svc.SearchQuery(text="perfdemo", sort="metric:inference_ms:p95", limit=1, cursor=cursor)
        page = svc.search(session, query, visible=ALL)
        seen += [i.repository for i in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["perf/fast-a", "perf/multi", "perf/slow-b"]
    other = svc.SearchQuery(text="perfdemo", sort="metric:inference_ms:p99", limit=1, cursor=cursor or "")
    with pytest.raises(InvalidInputError):
        svc.search(session, other, visible=ALL)


@pytest.mark.parametrize(
    "filters",
    [
        {"max_rss": "lots"},
        {"max_metric": ("inference_ms:p95>1",)},
        {"device": ""},
    ],
)
def test_bad_filters_are_bad_parameter(session: Session, filters: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError) as caught:
        hits(session, **filters)
    assert caught.value.code == "BAD_PARAMETER"
    with pytest.raises(InvalidInputError):
        hits(session, sort="metric:nope")


def test_detail_shows_per_device_summaries_and_history(session: Session) -> None:
    detail = svc.bundle_detail(session, "perf", "fast-a", visible=ALL)
    devices = {p.device: p for p in detail.versions[0].profiles}
    assert set(devices) == {"cpu", "nx"}
    assert devices["nx"].median.metrics["inference_ms"].p95 == 50.0
    assert devices["nx"].median.peak_rss_bytes == GiB and devices["nx"].runs == 1
    assert devices["nx"].median.gpu_memory_peak_bytes is None  # not measured: absent, not zero
    history = svc.bundle_profiles(session, "perf", "slow-b", visible=ALL)
    assert [d.device for d in history.devices] == ["nx"]
    assert [v.version for v in history.devices[0].versions] == ["0.1.0"]
    assert history.versions[0].declared is None


def test_forgetting_a_run_reaggregates(engine: Engine) -> None:
    with session_factory(engine)() as session:
        version = session.scalar(select(Version).where(Version.name == "perf/none"))
        assert version is not None
        row = add_profile(session, version, 1, device="tx2", inference_p95=10)
        assert hits(session, device="tx2") == ["perf/none"]
        row.details = {"profile_error": "garbage"}  # re-indexed as invalid: no run, no summary
        refresh_summaries(session, row.repository_id, sync_profile(session, row))
        assert hits(session, device="tx2") == []
        assert session.scalar(select(ProfileRun).where(ProfileRun.manifest_id == row.id)) is None
        session.rollback()


def test_metric_sort_with_every_filter(session: Session) -> None:
    assert hits(
        session,
        sort="metric:inference_ms:p95",
        device="nx",
        max_rss="2GiB",
        max_metric=("inference_ms:p95<200", "inference_ms:p50<=50"),
    ) == ["perf/fast-a", "perf/multi"]
    assert hits(session, sort="metric:inference_ms:p99", max_metric=("inference_ms:p95<60",)) == [
        "perf/fast-a"
    ]
