"""Pure parts of the service: classification, the indexer's DB side (order-independent), settings,
migrations matching the models, and the JSON error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from ecr_oci.mediatypes import MediaType
from ecr_oci.server.db import accounts  # noqa: F401 - the account tables are part of the schema
from ecr_oci.server.db.engine import make_engine, session_factory
from ecr_oci.server.db.migrate import current_revision, head_revision, upgrade
from ecr_oci.server.db.models import Base, ManifestRow, Version
from ecr_oci.server.services.index import (
    Classified,
    FetchedManifest,
    Indexer,
    classify,
    is_version_tag,
    repository_row,
    requirement_name,
    tag_subject,
)
from ecr_oci.server.settings import Settings, SettingsError

IMAGE = "sha256:" + "1" * 64
BUNDLE = "sha256:" + "2" * 64
OTHER = "sha256:" + "3" * 64


@pytest.mark.parametrize(
    ("media_type", "document", "tag", "kind"),
    [
        (MediaType.OCI_MANIFEST, {"artifactType": MediaType.BUNDLE, "config": {}}, None, "bundle"),
        (MediaType.OCI_MANIFEST, {"config": {"mediaType": MediaType.BUNDLE_CONFIG}}, None, "bundle"),
        (MediaType.OCI_MANIFEST, {"artifactType": MediaType.PROFILE, "config": {}}, None, "profile"),
        (
            MediaType.OCI_MANIFEST,
            {"artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"},
            None,
            "sigstore-bundle",
        ),
        (
            MediaType.OCI_MANIFEST,
            {"config": {"mediaType": MediaType.OCI_CONFIG}, "layers": []},
            f"sha256-{'a' * 64}.sig",
            "signature",
        ),
        (
            MediaType.OCI_MANIFEST,
            {
                "config": {"mediaType": MediaType.OCI_CONFIG},
                "layers": [{"mediaType": MediaType.DSSE_ENVELOPE}],
            },
            None,
            "attestation",
        ),
        (MediaType.OCI_INDEX, {"manifests": []}, f"sha256-{'a' * 64}", "fallback-index"),
        (MediaType.OCI_INDEX, {"manifests": []}, "1.0.0", "index"),
        (
            MediaType.DOCKER_MANIFEST,
            {"config": {"mediaType": MediaType.DOCKER_CONFIG}, "layers": []},
            "1.0.0",
            "image",
        ),
        (MediaType.OCI_MANIFEST, {"config": {"mediaType": "application/x-other"}}, None, "other"),
    ],
)
def test_classify(media_type: str, document: dict[str, Any], tag: str | None, kind: str) -> None:
    assert classify(media_type, document, tag).kind == kind


def test_signature_subject_comes_from_the_tag() -> None:
    classified = classify(MediaType.OCI_MANIFEST, {"layers": []}, f"sha256-{'b' * 64}.att")
    assert (classified.kind, classified.subject_digest) == ("attestation", "sha256:" + "b" * 64)
    assert tag_subject(f"sha256-{'b' * 64}.{'c' * 32}") == ("sha256:" + "b" * 64, "c" * 32)


def test_version_tags_and_requirement_names() -> None:
    assert is_version_tag("1.0.0-rc.1") and not is_version_tag("v1") and not is_version_tag("latest")
    assert requirement_name("torch==2.1; python_version>'3'") == "torch"


def _fetched(digest: str, kind: str, details: dict[str, Any], subject: str | None = None) -> FetchedManifest:
    return FetchedManifest(
        "waggle/x", digest, MediaType.OCI_MANIFEST, 10, Classified(kind, None, subject, None, {}), details
    )


def _bundle_config() -> dict[str, Any]:
    return {
        "spec": {
            "metadata": {
                "namespace": "waggle",
                "name": "x",
                "version": "1.0.0",
                "description": "A thing",
                "keywords": ["Alpha", "beta"],
                "authors": [{"name": "Ann"}],
                "license": "MIT",
            },
            "runtime": {"requirements": ["PyTorch>=2"]},
        },
        "layers": [{"role": "code", "mediaType": MediaType.CODE_TAR_GZIP, "digest": OTHER, "size": 5}],
        "created": "2024-01-01T00:00:00Z",
    }


@pytest.mark.parametrize("bundle_first", [True, False])
def test_version_links_whichever_arrives_first(bundle_first: bool) -> None:
    engine = make_engine("sqlite://")
    upgrade(engine)
    sessions = session_factory(engine, write=True)
    indexer = Indexer(None)  # type: ignore[arg-type]  # store() never touches the registry
    image = _fetched(
        IMAGE,
        "image",
        {
            "platforms": [{"os": "linux", "architecture": "arm64", "digest": IMAGE}],
            "base_layers": [{"mediaType": "x", "digest": BUNDLE, "size": 7}],
        },
    )
    bundle = _fetched(BUNDLE, "bundle", {"config": _bundle_config()}, subject=IMAGE)
    steps = [(bundle, None), (image, "1.0.0")] if bundle_first else [(image, "1.0.0"), (bundle, None)]
    for fetched, tag in steps * 2:  # twice: replays change nothing
        with sessions.begin() as session:
            indexer.store(session, fetched, tag=tag)
    with sessions() as session:
        version = session.scalars(select(Version)).one()
        assert (version.image_digest, version.bundle_digest) == (IMAGE, BUNDLE)
        assert version.description == "A thing"
        assert [r.keyword for r in version.keyword_rows] == ["alpha", "beta"]
        assert [r.name for r in version.requirement_rows] == ["pytorch"]
        assert version.total_size == 12
        found = session.execute(text("SELECT rowid FROM version_search WHERE version_search MATCH 'alpha'"))
        assert [row[0] for row in found] == [version.id]
    with sessions.begin() as session:
        indexer.forget_manifest(session, "waggle/x", IMAGE)
    with sessions() as session:
        assert session.scalars(select(Version)).all() == []
        assert [m.digest for m in session.scalars(select(ManifestRow))] == [BUNDLE]
    engine.dispose()


def test_migrations_match_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    # the FTS table is created by the migration on purpose and has no model
    diff = [d for d in diff if not (d[0] == "remove_table" and d[1].name.startswith("version_search"))]
    assert diff == []
    engine.dispose()


def test_settings_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ecr.toml"
    config.write_text('registry = "r:1"\nport = 9000\nnotification_secret = "s"\n')
    monkeypatch.setenv("ECR_PORT", "9001")
    settings = Settings.load(config, host="0.0.0.0")
    assert (settings.registry, settings.port, settings.host) == ("r:1", 9001, "0.0.0.0")
    assert settings.notification_secret is not None and "s" not in repr(settings.notification_secret)
    config.write_text("port = [")
    with pytest.raises(SettingsError, match="not valid TOML"):
        Settings.load(config)
    config.write_text("unknown = 1")
    with pytest.raises(SettingsError, match="invalid settings"):
        Settings.load(config)


def _index_rows(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    """What the index holds, without ids and times (they differ between two ways of writing)."""
    queries = {
        "manifest": "SELECT digest, kind, subject_digest, details FROM manifest ORDER BY digest",
        "tag": "SELECT name, digest FROM tag ORDER BY name",
        "version": "SELECT tag, image_digest, bundle_digest, description, keywords_text, authors_text, "
        "total_size, created FROM version ORDER BY tag",
        "platform": "SELECT v.tag, p.os, p.architecture, p.digest FROM platform p "
        "JOIN version v ON v.id = p.version_id ORDER BY v.tag, p.id",
        "layer": "SELECT v.tag, l.role, l.digest, l.size FROM layer l JOIN version v ON v.id = l.version_id "
        "ORDER BY v.tag, l.id",
        "keyword": "SELECT v.tag, k.keyword FROM version_keyword k JOIN version v ON v.id = k.version_id "
        "ORDER BY 1, 2",
        "requirement": "SELECT v.tag, r.name, r.spec FROM version_requirement r "
        "JOIN version v ON v.id = r.version_id ORDER BY 1, 2",
        "search": "SELECT v.tag FROM version_search s JOIN version v ON v.id = s.rowid "
        "WHERE version_search MATCH 'thing' ORDER BY 1",
    }
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(text(sql))] for name, sql in queries.items()}


def test_a_batch_writes_what_one_by_one_writes() -> None:
    """``store_many`` (the worker's set-based write) gives the rows that storing each manifest in
    turn gives: images and an index under version tags, a bundle for one of them, a tag move."""
    index_details = {
        "platforms": [
            {"os": "linux", "architecture": "amd64", "digest": IMAGE},
            {"os": "linux", "architecture": "arm64", "variant": "v8", "digest": OTHER},
        ],
        "base_layers": [{"mediaType": "x", "digest": OTHER, "size": 3}],
    }
    image_details = {
        "platforms": [{"os": "linux", "architecture": "arm64", "digest": IMAGE}],
        "base_layers": [],
    }
    second = "sha256:" + "4" * 64
    steps: list[tuple[FetchedManifest, str | None]] = [
        (_fetched(IMAGE, "image", image_details), "1.0.0"),
        (_fetched(BUNDLE, "bundle", {"config": _bundle_config()}, subject=IMAGE), None),
        (_fetched(second, "index", index_details), "2.0.0"),
        (_fetched(OTHER, "image", image_details), "latest"),
    ]
    moves = [("waggle/x", "1.1.0", IMAGE), ("waggle/x", "latest", second)]  # a new tag, a moved one
    rows = []
    for batched in (False, True):
        engine = make_engine("sqlite://")
        upgrade(engine)
        sessions = session_factory(engine, write=True)
        indexer = Indexer(None)  # type: ignore[arg-type]  # storing never reads the registry
        with sessions.begin() as session:
            indexer.store_many(session, steps[:1])  # something indexed before the batch
        with sessions.begin() as session:
            if batched:
                indexer.store_many(session, steps[1:3])
                indexer.store_many(session, steps[3:], tags=moves)
            else:
                for fetched, tag in steps[1:]:
                    indexer.store(session, fetched, tag=tag)
                repo = repository_row(session, "waggle/x")
                for _, tag, digest in moves:
                    indexer.set_tag(session, repo, tag, digest)
        rows.append(_index_rows(engine))
    assert rows[0] == rows[1]
    assert [v[:3] for v in rows[1]["version"]] == [
        ("1.0.0", IMAGE, BUNDLE),
        ("1.1.0", IMAGE, BUNDLE),
        ("2.0.0", second, None),
    ]
    assert rows[1]["search"] == [("1.0.0",), ("1.1.0",)]


def test_errors_are_json_without_tracebacks() -> None:
    from ecr_oci.server.app import create_app

    app = create_app(
        Settings(
            database_url="sqlite://", notification_secret="s", reconcile_interval=0, reconcile_on_start=False
        )
    )

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail")

    async def call(
        method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        request = {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        with contextlib.suppress(RuntimeError):  # Starlette re-raises after the 500, for the log
            await app(request, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return status, json.loads(data)

    status, body = asyncio.run(call("GET", "/boom"))
    assert status == 500 and body == {"error": {"code": "INTERNAL", "message": "internal server error"}}
    status, body = asyncio.run(call("GET", "/nope"))
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    status, body = asyncio.run(call("POST", "/events", b"{}", {"Authorization": "Bearer x"}))
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"
    status, body = asyncio.run(call("POST", "/events", b"{", {"Authorization": "Bearer s"}))
    assert status == 400 and body["error"]["code"] == "MALFORMED_NOTIFICATION"
    status, body = asyncio.run(call("POST", "/events", b'{"events": []}', {"Authorization": "Bearer s"}))
    assert status == 202 and body == {"received": 0, "queued": 0}


def test_blob_cache_is_a_bounded_lru() -> None:
    from ecr_oci.server.services.index import BlobCache

    cache = BlobCache(max_entries=2, max_item=4)
    cache.put(("r", "a"), b"1")
    cache.put(("r", "b"), b"2")
    assert cache.get(("r", "a")) == b"1"  # a is now the most recent
    cache.put(("r", "c"), b"3")
    assert cache.get(("r", "b")) is None and cache.get(("r", "a")) == b"1"
    cache.put(("r", "big"), b"12345")  # over max_item: not kept
    assert cache.get(("r", "big")) is None
    assert cache.get(("other", "a")) is None  # per repository
