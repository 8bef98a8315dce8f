"""The search service against a real database made by the migrations (SQLite, and PostgreSQL).

Rows go in through the models, as the indexer writes them; the queries are the service's own.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ecr_oci.server.db.engine import make_engine, session_factory
from ecr_oci.server.db.migrate import upgrade
from ecr_oci.server.db.models import (
    Event,
    Layer,
    ManifestRow,
    Platform,
    Repository,
    Signature,
    Version,
    VersionKeyword,
    VersionRequirement,
)
from ecr_oci.server.services import search as svc
from ecr_oci.server.services.errors import InvalidInputError, NotFoundError
from ecr_oci.server.services.index import requirement_name
from ecr_oci.server.services.visibility import Visibility

ALL = Visibility.everything()
KEY_A = "a" * 64
KEY_B = "b" * 64


def digest(n: int, salt: str = "") -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(f"{salt}{n}".encode()).hexdigest()


def add_version(
    session: Session,
    name: str,
    tag: str,
    *,
    description: str = "",
    keywords: tuple[str, ...] = (),
    requirements: tuple[str, ...] = (),
    platforms: tuple[str, ...] = ("linux/amd64",),
    license: str | None = "MIT",
    created: str | None = "2026-01-01T00:00:00Z",
    authors: tuple[str, ...] = ("Waggle Team",),
    signed_by: str | None = None,
) -> Version:
    """A version row as the indexer writes it (denormalised text, keyword and requirement rows)."""
    repo = session.scalar(select(Repository).where(Repository.name == name))
    if repo is None:
        repo = Repository(name=name, namespace=name.split("/", 1)[0])
        session.add(repo)
        session.flush()
    image = digest(hash((name, tag)) & 0xFFFFFF, "image")
    version = Version(
        repository_id=repo.id,
        name=name,
        namespace=repo.namespace,
        tag=tag,
        image_digest=image,
        image_media_type="application/vnd.oci.image.index.v1+json",
        bundle_digest=digest(1, name + tag),
        description=description,
        license=license,
        keywords=list(keywords),
        authors=[{"name": a, "email": None} for a in authors],
        requirements=list(requirements),
        keywords_text=" ".join(keywords),
        authors_text=" ".join(authors),
        total_size=1000,
        created=created,
        config={"schemaVersion": 1},
    )
    version.keyword_rows = [VersionKeyword(keyword=k.lower()) for k in sorted(set(keywords))]
    version.requirement_rows = [VersionRequirement(name=requirement_name(r), spec=r) for r in requirements]
    for i, text in enumerate(platforms):
        os_, arch, *variant = text.split("/")
        version.platforms.append(
            Platform(
                os=os_, architecture=arch, variant=variant[0] if variant else None, digest=digest(i, image)
            )
        )
    version.layers = [
        Layer(
            role="code",
            media_type="application/vnd.oci.image.layer.v1.tar+gzip",
            digest=digest(7, image),
            size=123,
        )
    ]
    session.add(version)
    session.flush()
    if signed_by:
        sig = ManifestRow(
            repository_id=repo.id,
            digest=digest(2, image),
            media_type="application/vnd.oci.image.manifest.v1+json",
            subject_digest=image,
            size=500,
            annotations={},
            kind="signature",
        )
        session.add(sig)
        session.flush()
        session.add(
            Signature(
                repository_id=repo.id,
                manifest_id=sig.id,
                subject_digest=image,
                manifest_digest=sig.digest,
                layer_digest=digest(3, image),
                kind="cosign",
                predicate_type="",
                key_fingerprint=signed_by,
            )
        )
    return version


def _fill(session: Session) -> None:
    add_version(
        session,
        "waggle/hello-sensor",
        "0.1.0",
        description="Hello-world edge plugin: prints a reading computed from its model file.",
        keywords=("example", "hello", "sensor"),
        requirements=("busybox>=1.36",),
        created="2026-01-01T00:00:00Z",
        signed_by=KEY_A,
    )
    add_version(
        session,
        "waggle/hello-sensor",
        "0.2.0",
        description="Hello-world edge plugin, now for arm64 too.",
        keywords=("example", "hello", "sensor"),
        requirements=("busybox>=1.36",),
        platforms=("linux/amd64", "linux/arm64"),
        created="2026-02-01T00:00:00Z",
    )
    add_version(
        session,
        "sage/bird-detector",
        "1.0.0",
        description="Detects birds in camera images with a YOLO model.",
        keywords=("vision", "birds"),
        requirements=("pytorch>=2.0", "opencv-python"),
        platforms=("linux/arm64", "linux/arm/v7"),
        license="Apache-2.0",
        created="2026-03-01T00:00:00Z",
        authors=("Ada Lovelace",),
        signed_by=KEY_B,
    )
    add_version(
        session,
        "sage/cloud-cover",
        "0.3.1",
        description="Estimates cloud cover from sky camera images.",
        keywords=("vision", "weather"),
        requirements=("pytorch-lightning>=2",),
        license="BSD-3-Clause",
        created=None,
    )
    for i in range(25):
        add_version(
            session,
            "bulk/sensor-" + f"{i:02d}",
            "1.0.0",
            description=f"Bulk sensor number {i}",
            keywords=("bulk",),
            created=f"2025-01-{i + 1:02d}T00:00:00Z",
        )
    repo_id = session.scalar(select(Repository.id).where(Repository.name == "waggle/hello-sensor"))
    assert repo_id is not None
    v1 = session.scalar(select(Version).where(Version.tag == "0.1.0"))
    assert v1 is not None
    session.add(
        ManifestRow(
            repository_id=repo_id,
            digest=digest(9, "bundle"),
            media_type="application/vnd.oci.image.manifest.v1+json",
            artifact_type="application/vnd.waggle.ecr.bundle.v1",
            subject_digest=v1.image_digest,
            size=700,
            annotations={"org.opencontainers.image.version": "0.1.0"},
            kind="bundle",
        )
    )
    from datetime import UTC, datetime

    for i, dig in enumerate([v1.image_digest] * 3 + [digest(99)]):
        session.add(
            Event(
                event_id=f"e{i}",
                action="pull",
                repository="waggle/hello-sensor",
                digest=dig,
                timestamp=datetime(2026, 5, 1, 0, i, tzinfo=UTC),
            )
        )
    session.commit()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One filled database per backend for the whole module (the tests only read)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('search')}/index.db"
    else:
        url = request.getfixturevalue("postgres").create_database()  # tests/fixtures/service.py
    eng = make_engine(url)
    upgrade(eng)
    with session_factory(eng)() as session:
        _fill(session)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as s:
        yield s


def names(page: Any) -> list[str]:
    return [f"{i.repository}:{i.version}" for i in page.items]


def run(session: Session, text: str | None = None, **kw: Any) -> Any:
    filters = svc.SearchFilters(
        **{k: kw.pop(k) for k in list(kw) if k in svc.SearchFilters.__dataclass_fields__}
    )
    return svc.search(session, svc.SearchQuery(text=text, filters=filters, **kw), visible=ALL)


def test_text_search_finds_words_in_description_keywords_and_authors(session: Session) -> None:
    assert names(run(session, "birds camera")) == ["sage/bird-detector:1.0.0"]
    assert names(run(session, "LOVELACE")) == ["sage/bird-detector:1.0.0"]
    assert set(names(run(session, "weather"))) == {"sage/cloud-cover:0.3.1"}
    assert len(run(session, "hello").items) == 2


def test_name_hits_rank_above_description_hits(session: Session) -> None:
    add = run(session, "sensor", limit=100)
    first = add.items[0]
    assert first.repository.startswith(("waggle/hello-sensor", "bulk/sensor"))
    assert all(i.score is not None for i in add.items)
    scores = [i.score for i in add.items]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    "hostile",
    [
        '"',
        '""',
        "*",
        "NEAR(",
        "NEAR(hello sensor, 2)",
        "-",
        "-hello",
        "hello OR",
        "AND",
        "hello AND",
        "title:hello",
        "^hello",
        "hello*",
        "(",
        ")",
        "'",
        "\\",
        "\x00",
        "💥",
        "a" * 5000,
        " ".join(["w"] * 500),
        'hello " sensor',
        "{hello}",
        "hello:*",
        "!!!",
        "%",
        "_",
    ],
)
def test_hostile_text_never_breaks_the_query(session: Session, hostile: str) -> None:
    text = hostile[: svc.MAX_QUERY_LENGTH]
    page = run(session, text)
    assert isinstance(page.items, list)


def test_punctuation_is_not_syntax(session: Session) -> None:
    # '-hello' is the word hello, not "NOT hello"; NEAR( is the word near (no hit)
    assert len(run(session, "-hello").items) == 2
    assert run(session, "NEAR(hello").items == []
    assert run(session, "***").items == []


def test_too_long_text_is_refused(session: Session) -> None:
    with pytest.raises(InvalidInputError) as err:
        run(session, "x" * (svc.MAX_QUERY_LENGTH + 1))
    assert err.value.code == "BAD_PARAMETER"


def test_filters(session: Session) -> None:
    assert names(run(session, platform="linux/arm64", sort="name")) == [
        "sage/bird-detector:1.0.0",
        "waggle/hello-sensor:0.2.0",
    ]
    assert names(run(session, platform="linux/arm/v7")) == ["sage/bird-detector:1.0.0"]
    assert names(run(session, platform="linux/arm/v6")) == []
    # a requirement name matches its specs, not other packages that start with it
    assert names(run(session, requirement="pytorch")) == ["sage/bird-detector:1.0.0"]
    assert names(run(session, requirement="PyTorch>=2")) == ["sage/bird-detector:1.0.0"]
    assert names(run(session, requirement="pytorch>=3")) == []
    assert names(run(session, requirement="pytorch-lightning")) == ["sage/cloud-cover:0.3.1"]
    assert names(run(session, namespace="sage", sort="name")) == [
        "sage/bird-detector:1.0.0",
        "sage/cloud-cover:0.3.1",
    ]
    assert names(run(session, keyword="Vision", sort="name")) == [
        "sage/bird-detector:1.0.0",
        "sage/cloud-cover:0.3.1",
    ]
    assert names(run(session, license="apache-2.0")) == ["sage/bird-detector:1.0.0"]
    assert names(run(session, signed_by=KEY_A)) == ["waggle/hello-sensor:0.1.0"]
    assert names(run(session, signed_by="sha256:" + KEY_B.upper())) == ["sage/bird-detector:1.0.0"]
    assert names(run(session, "hello", platform="linux/arm64")) == ["waggle/hello-sensor:0.2.0"]


def test_postgresql_plans_each_search_for_its_values(postgres: Any) -> None:
    """A generic plan (psycopg prepares a statement run 5 times) ignores how selective a filter's
    value is; at 100k versions one made "keyword + namespace" 7x slower (benchmarks.service)."""
    engine = make_engine(postgres.create_database())  # tests/fixtures/service.py
    try:
        upgrade(engine)
        plan_cache_mode = select(func.current_setting("plan_cache_mode"))
        with session_factory(engine)() as session:
            for _ in range(6):  # past psycopg's prepare threshold
                run(session, keyword="vision", namespace="sage")
                assert session.scalar(plan_cache_mode) == "force_custom_plan"
            session.commit()
            assert session.scalar(plan_cache_mode) == "auto"  # that transaction only
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "bad",
    [
        {"platform": "linux"},
        {"platform": "linux//arm64"},
        {"platform": "a/b/c/d"},
        {"requirement": ">=2"},
        {"signed_by": "xyz"},
        {"limit": 0},
        {"limit": 101},
        {"sort": "random"},
    ],
)
def test_bad_parameters(session: Session, bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError) as err:
        run(session, **bad)
    assert err.value.code == "BAD_PARAMETER"


@pytest.mark.parametrize(
    ("sort", "text"),
    [("relevance", "sensor"), ("name", None), ("created", None), ("name", "sensor"), ("created", "bulk")],
)
def test_cursor_walks_every_row_once(session: Session, sort: str, text: str | None) -> None:
    full = run(session, text, sort=sort, limit=100)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = run(session, text, sort=sort, limit=4, cursor=cursor)
        seen += names(page)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == names(full)
    assert len(seen) == len(set(seen)) and pages > 1
    if sort == "name":
        repos = [n.split(":")[0] for n in seen]
        assert repos == sorted(repos)
    if sort == "created" and text is None:  # newest first; no build time: last on SQLite, first on PostgreSQL
        dated = [n for n in seen if n != "sage/cloud-cover:0.3.1"]
        assert dated[0] == "sage/bird-detector:1.0.0"
        nulls_at = -1 if session.get_bind().dialect.name == "sqlite" else 0
        assert seen[nulls_at] == "sage/cloud-cover:0.3.1"


def _b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "abc",
        _b64([1, 2]),
        _b64({"v": 1, "s": "name", "k": 5, "i": 1}),
        _b64({"v": 1, "s": "name", "k": "x", "i": "1"}),
        _b64({"v": 2, "s": "name", "k": "x", "i": 1}),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        _b64({"v": 1, "s": "rank", "k": "NaN", "i": 1}),
    ],
)
def test_bad_cursor(session: Session, cursor: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        run(session, sort="name", cursor=cursor)
    assert err.value.code == "BAD_CURSOR"


def test_cursor_of_another_query_is_refused(session: Session) -> None:
    cursor = run(session, sort="name", limit=2).next_cursor
    assert cursor
    with pytest.raises(InvalidInputError, match="another query"):
        run(session, sort="name", limit=2, cursor=cursor, namespace="sage")
    with pytest.raises(InvalidInputError, match="another query"):
        run(session, sort="created", limit=2, cursor=cursor)


def test_visibility_filters_everything(session: Session) -> None:
    only = Visibility.only(namespaces={"sage"})
    page = svc.search(session, svc.SearchQuery(text="hello"), visible=only)
    assert page.items == []
    assert len(svc.search(session, svc.SearchQuery(), visible=only).items) == 2
    with pytest.raises(NotFoundError):
        svc.bundle_detail(session, "waggle", "hello-sensor", visible=only)
    with pytest.raises(NotFoundError):
        svc.referrers(session, "waggle/hello-sensor", digest(1), visible=only)


def test_bundle_and_version_detail(session: Session) -> None:
    detail = svc.bundle_detail(session, "waggle", "hello-sensor", visible=ALL)
    assert [v.version for v in detail.versions] == ["0.2.0", "0.1.0"]
    assert detail.latest is not None and detail.latest.version == "0.2.0"
    assert [p.architecture for p in detail.versions[0].platforms] == ["amd64", "arm64"]
    version = svc.version_detail(session, "waggle", "hello-sensor", "0.1.0", visible=ALL)
    assert version.layers[0].role == "code"
    assert [r.kind for r in version.referrers] == ["signature", "bundle"]
    assert version.signatures[0].key_fingerprint == KEY_A
    assert version.summary.authors[0].name == "Waggle Team"
    with pytest.raises(NotFoundError):
        svc.version_detail(session, "waggle", "hello-sensor", "9.9.9", visible=ALL)
    with pytest.raises(NotFoundError):
        svc.bundle_detail(session, "nope", "nothing", visible=ALL)


def test_referrers_and_oci_index(session: Session) -> None:
    version = svc.version_detail(session, "waggle", "hello-sensor", "0.1.0", visible=ALL)
    image = version.summary.image_digest
    found = svc.referrers(session, "waggle/hello-sensor", image, visible=ALL)
    assert len(found.items) == 2
    only = svc.referrers(
        session,
        "waggle/hello-sensor",
        image,
        visible=ALL,
        artifact_type="application/vnd.waggle.ecr.bundle.v1",
    )
    index = svc.oci_referrers_index(only).model_dump(exclude_none=True)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert index["manifests"][0]["artifactType"] == "application/vnd.waggle.ecr.bundle.v1"
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.version": "0.1.0"}
    assert svc.referrers(session, "waggle/hello-sensor", digest(12345), visible=ALL).items == []
    with pytest.raises(InvalidInputError) as err:
        svc.referrers(session, "waggle/hello-sensor", "sha256:nothex", visible=ALL)
    assert err.value.code == "DIGEST_INVALID"


def test_activity_counts_pulls_per_version(session: Session) -> None:
    summary = svc.activity(session, "waggle", "hello-sensor", visible=ALL)
    assert {p.version: p.pulls for p in summary.pulls} == {"0.1.0": 3, "0.2.0": 0}
    assert len(summary.recent) == 4
    assert summary.recent[0].timestamp > summary.recent[-1].timestamp


def test_relevance_ranks_a_bounded_candidate_set(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the newest RANK_CANDIDATES matches (SQLite: plus the newest name/keyword hits) are
    ranked; the cursor walks exactly that set, best first."""
    every = run(session, "sensor", sort="created", limit=100)
    assert len(every.items) > 6
    monkeypatch.setattr(svc, "RANK_CANDIDATES", 3)
    ranked = run(session, "sensor", limit=100)
    got = names(ranked)
    sqlite = session.get_bind().dialect.name == "sqlite"
    assert 3 <= len(got) <= (6 if sqlite else 3)
    newest_ids = session.scalars(
        select(Version.id).where(Version.id.in_(svc_ids(session, every))).order_by(Version.id.desc()).limit(3)
    ).all()
    newest = {f"{v.name}:{v.tag}" for v in session.scalars(select(Version).where(Version.id.in_(newest_ids)))}
    assert newest <= set(got)
    scores = [i.score for i in ranked.items]
    assert scores == sorted(scores, reverse=True)
    seen: list[str] = []
    cursor = None
    while True:
        page = run(session, "sensor", limit=2, cursor=cursor)
        seen += names(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == got
    filtered = run(session, "sensor", limit=100, platform="linux/arm64")
    assert filtered.items and all("linux/arm64" in i.platforms for i in filtered.items)


def svc_ids(session: Session, page: Any) -> list[int]:
    wanted = {(i.repository, i.version) for i in page.items}
    rows = session.execute(select(Version.id, Version.name, Version.tag)).all()
    return [vid for vid, name, tag in rows if (name, tag) in wanted]
