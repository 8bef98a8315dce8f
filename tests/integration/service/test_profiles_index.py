"""Performance profiles through a real ``ecr-oci serve`` and registry (issue 6): bundles pushed,
profiles attached with the library (referrers of the platform manifest), indexed from the
registry's notifications, then searched, sorted, shown, and removed again; on SQLite and PostgreSQL.

Two bundles (``fast`` 0.1.0 and 0.2.0, ``slow`` 0.1.0) and two devices:

=============  ============================  =========================
version        nx (inference_ms p95, RSS)    cpu (p95, RSS)
=============  ============================  =========================
fast 0.1.0     40 ms, 1 GiB                  900 ms, 512 MiB
fast 0.2.0     60 ms, 1 GiB (slower on nx)   -
slow 0.1.0     400 ms, 3 GiB                 150 ms, 256 MiB
=============  ============================  =========================
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from ecr_oci.bundle.push import push_bundle
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci import referrers
from ecr_oci.oci.models import EMPTY_CONFIG_DIGEST, Descriptor, Manifest
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.profile.attach import AttachedProfile, attach_profile, platform_subject
from ecr_oci.profile.model import Profile
from ecr_oci.reference import Reference
from ecr_oci.server.db.engine import make_engine, session_factory
from ecr_oci.server.db.models import ManifestRow
from ecr_oci.server.services.profiles import refresh_summaries
from tests.fixtures.service import ServiceEnv
from tests.fixtures.tools import wait_until
from tests.integration.conftest import set_version, write_bundle
from tests.integration.service.test_service_index import reconcile

pytestmark = pytest.mark.integration

GiB = 1 << 30
MiB = 1 << 20


def _api(env: ServiceEnv, path: str, **params: Any) -> httpx.Response:
    return httpx.get(env.service.url + path, params=params, timeout=30)


def _profile(device: str, p95: float, rss: int, *, created: str) -> Profile:
    return Profile.model_validate(
        {
            "created": created,
            "device": {"name": device, "arch": "linux/amd64", "cpu": "test cpu", "cpu_cores": 4},
            "software": {"runtime": "process"},
            "measures": {"wall_s": 10.0, "cpu_s": 8.0, "peak_rss_bytes": rss, "exit_status": 0},
            "metrics": {"inference_ms": {"p50": p95 / 2, "p95": p95, "p99": p95 * 1.5, "count": 100}},
        }
    )


class Catalog:
    """What this module pushed: the two repositories, the word in their descriptions, the
    attached profiles by (repository, version, device)."""

    def __init__(self, word: str, fast: str, slow: str) -> None:
        self.word = word
        self.fast = fast
        self.slow = slow
        self.attached: dict[tuple[str, str, str], AttachedProfile] = {}


def _measured(env: ServiceEnv, repository: str) -> list[tuple[str, str, int]]:
    ns, name = repository.split("/")
    response = _api(env, f"/api/v1/bundles/{ns}/{name}/profiles")
    if response.status_code != 200:
        return []
    return sorted(
        (v["version"], d["device"], d["runs"]) for v in response.json()["versions"] for d in v["measured"]
    )


#: (device, inference_ms p95, peak RSS) measured per version
Plan = dict[str, list[tuple[str, float, int]]]
FAST: Plan = {"0.1.0": [("nx", 40.0, GiB), ("cpu", 900.0, 512 * MiB)], "0.2.0": [("nx", 60.0, GiB)]}
SLOW: Plan = {"0.1.0": [("nx", 400.0, 3 * GiB), ("cpu", 150.0, 256 * MiB)]}


def _push_profiled(
    env: ServiceEnv,
    directory: Path,
    plan: Plan,
    attached: dict[tuple[str, str, str], AttachedProfile],
    *,
    word: str | None = None,
) -> str:
    """Push the bundle ``waggle/<directory name>`` once per version of ``plan`` (its description
    holding ``word``, if given), attach that version's profiles into ``attached``, wait until the
    service has indexed them all; return the repository."""
    host, name = env.registry.host, directory.name
    repository = f"waggle/{name}"
    write_bundle(directory, base=env.base, name=name)
    if word is not None:
        spec = directory / "ecr.yaml"
        spec.write_text(
            re.sub(r"(?m)^  description: .*$", f'  description: "{word} profiled."', spec.read_text())
        )
    with RegistryClient(host, insecure=True) as client:
        for version, measured in plan.items():
            set_version(directory, version)
            push_bundle(directory, registry=host, connect=lambda _host: client)
            for device, p95, rss in measured:
                reference = Reference.parse(f"{host}/{repository}:{version}")
                profile = _profile(device, p95, rss, created=f"2026-05-01T00:00:0{len(attached)}Z")
                attached[(repository, version, device)] = attach_profile(client, reference, profile)
    want = sorted((v, d, 1) for r, v, d in attached if r == repository)
    wait_until(lambda: _measured(env, repository) == want, what=f"{repository}'s profiles indexed")
    return repository


@pytest.fixture(scope="module")
def catalog(service_env: ServiceEnv, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    work = tmp_path_factory.mktemp("profiles")
    word = f"perfword{uuid.uuid4().hex[:6]}"
    attached: dict[tuple[str, str, str], AttachedProfile] = {}
    fast = _push_profiled(service_env, work / f"prof-fast-{uuid.uuid4().hex[:6]}", FAST, attached, word=word)
    slow = _push_profiled(service_env, work / f"prof-slow-{uuid.uuid4().hex[:6]}", SLOW, attached, word=word)
    catalog = Catalog(word, fast, slow)
    catalog.attached = attached
    return catalog


def _hits(env: ServiceEnv, catalog: Catalog, **params: Any) -> list[str]:
    response = _api(env, "/api/v1/search", q=catalog.word, **params)
    assert response.status_code == 200, response.text
    return [f"{i['repository'].split('/')[1].split('-')[1]}:{i['version']}" for i in response.json()["items"]]


def test_filters_select_the_right_versions(service_env: ServiceEnv, catalog: Catalog) -> None:
    hits = lambda **p: _hits(service_env, catalog, sort="name", **p)  # noqa: E731
    assert hits() == ["fast:0.1.0", "fast:0.2.0", "slow:0.1.0"]
    assert hits(device="nx") == ["fast:0.1.0", "fast:0.2.0", "slow:0.1.0"]
    assert hits(device="cpu") == ["fast:0.1.0", "slow:0.1.0"]
    assert hits(device="nx", max_metric="inference_ms:p95<200") == ["fast:0.1.0", "fast:0.2.0"]
    # slow is fast on cpu, but not on nx
    assert hits(device="cpu", max_metric="inference_ms:p95<200") == ["slow:0.1.0"]
    assert hits(max_metric="inference_ms:p95<200") == ["fast:0.1.0", "fast:0.2.0", "slow:0.1.0"]
    # thresholds either side of fast 0.2.0's 60 ms
    assert hits(device="nx", max_metric="inference_ms:p95<60") == ["fast:0.1.0"]
    assert hits(device="nx", max_metric="inference_ms:p95<=60") == ["fast:0.1.0", "fast:0.2.0"]
    assert hits(max_rss="2GiB", device="nx") == ["fast:0.1.0", "fast:0.2.0"]
    assert hits(max_rss=str(300 * MiB)) == ["slow:0.1.0"]
    # both bounds must hold on one device: fast is quick on nx and light on cpu, not both
    assert hits(max_rss="600MiB", max_metric=["inference_ms:p95<100"]) == []
    assert hits(max_rss="600MiB", max_metric=["inference_ms:p95<200", "inference_ms:p50<100"]) == [
        "slow:0.1.0"
    ]


def test_sort_by_metric(service_env: ServiceEnv, catalog: Catalog) -> None:
    by_p95 = lambda **p: _hits(service_env, catalog, sort="metric:inference_ms:p95", **p)  # noqa: E731
    assert by_p95() == ["fast:0.1.0", "fast:0.2.0", "slow:0.1.0"]  # best device each: 40, 60, 150
    assert by_p95(device="cpu") == ["slow:0.1.0", "fast:0.1.0"]
    assert by_p95(device="nx") == ["fast:0.1.0", "fast:0.2.0", "slow:0.1.0"]
    first = _api(
        service_env, "/api/v1/search", q=catalog.word, sort="metric:inference_ms:p95", limit=2
    ).json()
    rest = _api(
        service_env,
        "/api/v1/search",
        q=catalog.word,
        sort="metric:inference_ms:p95",
        limit=2,
        cursor=first["next_cursor"],
    ).json()
    assert [i["version"] for i in first["items"] + rest["items"]] == ["0.1.0", "0.2.0", "0.1.0"]
    assert rest["next_cursor"] is None


def test_detail_per_device_and_history_across_versions(service_env: ServiceEnv, catalog: Catalog) -> None:
    ns, name = catalog.fast.split("/")
    detail = _api(service_env, f"/api/v1/bundles/{ns}/{name}").json()
    by_version = {v["version"]: {p["device"]: p for p in v["profiles"]} for v in detail["versions"]}
    assert set(by_version["0.1.0"]) == {"nx", "cpu"} and set(by_version["0.2.0"]) == {"nx"}
    nx = by_version["0.1.0"]["nx"]
    assert nx["runs"] == 1 and nx["arch"] == "linux/amd64"
    assert nx["median"]["metrics"]["inference_ms"]["p95"] == 40.0
    assert nx["median"]["peak_rss_bytes"] == GiB and nx["latest"]["wall_s"] == 10.0
    assert nx["median"]["gpu_memory_peak_bytes"] is None  # not measured: absent, not zero
    assert nx["latest"]["manifest_digest"] == str(catalog.attached[(catalog.fast, "0.1.0", "nx")].digest)
    assert nx["platform_digest"] == str(catalog.attached[(catalog.fast, "0.1.0", "nx")].subject)
    one = _api(service_env, f"/api/v1/bundles/{ns}/{name}/versions/0.2.0").json()
    assert [p["device"] for p in one["profiles"]] == ["nx"]
    profiles = _api(service_env, f"/api/v1/bundles/{ns}/{name}/profiles").json()
    history = {d["device"]: d["versions"] for d in profiles["devices"]}
    # did 0.2 get slower than 0.1 on nx? one request
    nx_p95 = [
        (v["version"], v["measured"][0]["median"]["metrics"]["inference_ms"]["p95"]) for v in history["nx"]
    ]
    assert nx_p95 == [("0.1.0", 40.0), ("0.2.0", 60.0)]
    assert [v["version"] for v in history["cpu"]] == ["0.1.0"]
    assert all(v["declared"] is None for v in profiles["versions"])  # the example ships no profile


def test_cli_search_flags_and_show_profiles(service_env: ServiceEnv, catalog: Catalog) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ecr_oci", *args, "--service", service_env.service.url],
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = cli(
        "search",
        catalog.word,
        "--device",
        "nx",
        "--max-rss",
        "2GiB",
        "--max-metric",
        "inference_ms:p95<200",
        "--sort",
        "metric:inference_ms:p95",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert [(i["repository"], i["version"]) for i in json.loads(out.stdout)["items"]] == [
        (catalog.fast, "0.1.0"),
        (catalog.fast, "0.2.0"),
    ]
    bad = cli("search", catalog.word, "--max-metric", "inference_ms:p90<1")
    assert bad.returncode == 2 and "BAD_PARAMETER" in bad.stderr
    show = cli("show", catalog.fast)
    assert show.returncode == 0, show.stderr
    assert "DEVICE" in show.stdout and "inference_ms=40" in show.stdout
    shown = json.loads(cli("show", catalog.fast, "--json").stdout)
    assert {p["device"] for v in shown["versions"] for p in v["profiles"]} == {"nx", "cpu"}


@pytest.mark.parametrize(
    "params",
    [
        {"max_metric": "inference_ms:p95>1"},
        {"max_metric": "inference_ms"},
        {"max_rss": "lots"},
        {"sort": "metric:inference_ms"},
        {"device": " "},
    ],
)
def test_bad_performance_filters_are_400_json(service_env: ServiceEnv, params: dict[str, str]) -> None:
    response = _api(service_env, "/api/v1/search", **params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BAD_PARAMETER"


def test_malformed_profile_is_indexed_but_not_aggregated(service_env: ServiceEnv, tmp_path: Path) -> None:
    host = service_env.registry.host
    # a repository of its own, profiled as ``slow`` but outside the catalog's search word: the
    # runs added here change no other test's results
    repository = _push_profiled(service_env, tmp_path / f"prof-lone-{uuid.uuid4().hex[:6]}", SLOW, {})
    with RegistryClient(host, insecure=True) as client:
        subject, _ = platform_subject(client, Reference.parse(f"{host}/{repository}:0.1.0"), "linux/amd64")
        garbage = client.push_blob_bytes(repository, b'{"measures": {"wall_s": "slow"}, ')
        client.push_blob_bytes(repository, b"{}")
        manifest = Manifest(
            artifactType=MediaType.PROFILE,
            config=Descriptor(mediaType=MediaType.OCI_EMPTY, digest=EMPTY_CONFIG_DIGEST, size=2),
            layers=[garbage.model_copy(update={"mediaType": MediaType.PROFILE})],
            subject=subject,
            annotations={"org.waggle-sensor.ecr.profile.device": "nx"},
        )
        pushed = referrers.attach(client, repository, manifest)
    ns, name = repository.split("/")

    def listed() -> bool:
        found = _api(service_env, f"/api/v1/referrers/{ns}/{name}/{subject.digest}").json()
        return any(r["digest"] == str(pushed.digest) and r["kind"] == "profile" for r in found["items"])

    wait_until(listed, what="the malformed profile referrer indexed")
    assert _measured(service_env, repository) == [("0.1.0", "cpu", 1), ("0.1.0", "nx", 1)]
    # indexing goes on: a later good profile is aggregated
    with RegistryClient(host, insecure=True) as client:
        attach_profile(
            client,
            Reference.parse(f"{host}/{repository}:0.1.0"),
            _profile("nx", 500.0, 3 * GiB, created="2026-06-01T00:00:00Z"),
        )
    wait_until(lambda: ("0.1.0", "nx", 2) in _measured(service_env, repository), what="a second nx run")
    nx = next(
        d
        for d in _api(service_env, f"/api/v1/bundles/{ns}/{name}/profiles").json()["versions"][0]["measured"]
        if d["device"] == "nx"
    )
    assert nx["median"]["metrics"]["inference_ms"]["p95"] == 450.0  # median of 400 and 500
    assert nx["latest"]["metrics"]["inference_ms"]["p95"] == 500.0


def test_reconcile_indexes_profiles_and_forgets_deleted_ones(
    service_env: ServiceEnv, catalog: Catalog
) -> None:
    repository = catalog.fast
    attached = catalog.attached[(repository, "0.2.0", "nx")]
    # what the other tests of this module left (they may run before or after this one)
    measured_before = _measured(service_env, repository)
    hits_before = _hits(service_env, catalog, device="nx", sort="name")
    assert ("0.2.0", "nx", 1) in measured_before and "fast:0.2.0" in hits_before
    # a lost notification: the index forgot the profile; reconcile finds it again (Indexer.store)
    engine = make_engine(service_env.database_url)
    try:
        with session_factory(engine).begin() as session:
            row = session.scalar(select(ManifestRow).where(ManifestRow.digest == str(attached.digest)))
            assert row is not None and row.kind == "profile"
            session.execute(delete(ManifestRow).where(ManifestRow.id == row.id))
            refresh_summaries(session, row.repository_id, [str(attached.subject)])
        assert ("0.2.0", "nx", 1) not in _measured(service_env, repository)
        report = reconcile(service_env)
        assert report["errors"] == []
        assert ("0.2.0", "nx", 1) in _measured(service_env, repository)
    finally:
        engine.dispose()
    # deleted from the registry: gone from the index (notification, and reconcile agrees)
    with RegistryClient(service_env.registry.host, insecure=True) as client:
        client.delete_manifest(repository, attached.digest)
    wait_until(
        lambda: ("0.2.0", "nx", 1) not in _measured(service_env, repository),
        what="the deleted profile forgotten",
    )
    assert reconcile(service_env)["errors"] == []
    assert _measured(service_env, repository) == [m for m in measured_before if m != ("0.2.0", "nx", 1)]
    assert _hits(service_env, catalog, device="nx", sort="name") == [
        h for h in hits_before if h != "fast:0.2.0"
    ]
