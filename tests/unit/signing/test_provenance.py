"""SLSA v1 provenance built from what push knows; CI context read from a given environment."""

from __future__ import annotations

import doctest
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ecr_oci.bundle.spec import Source
from ecr_oci.digest import Digest
from ecr_oci.reference import Reference
from ecr_oci.signing import provenance
from ecr_oci.signing.provenance import (
    BUILD_TYPE,
    PREDICATE_TYPE,
    CIContext,
    build_provenance,
    ci_context_from_env,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SPEC = Digest.of(b"apiVersion: ...")
BASE = Digest.of(b"base index")
STARTED = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
FINISHED = STARTED + timedelta(seconds=42)
GITHUB = {
    "CI": "true",
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "waggle-sensor/plugin-hello",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_RUN_ATTEMPT": "2",
}


def make(**changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "source": Source(url="https://github.com/waggle-sensor/plugin-hello.git", commit=COMMIT),
        "ecr_yaml_digest": SPEC,
        "base_image": Reference.parse("127.0.0.1:5000/base/busybox:1.36"),
        "base_digest": BASE,
        "platforms": ["linux/amd64", "linux/arm64"],
        "compression": {"code": "gzip", "model": None},
        "source_date_epoch": 1700000000,
        "builder_version": "0.1.0",
        "started_on": STARTED,
        "finished_on": FINISHED,
        "ci": ci_context_from_env(GITHUB),
    }
    arguments.update(changes)
    return build_provenance(**arguments)


def test_module_examples_run() -> None:
    assert doctest.testmod(provenance).failed == 0


def test_predicate_type_is_slsa_v1() -> None:
    assert PREDICATE_TYPE == "https://slsa.dev/provenance/v1"
    assert BUILD_TYPE == "https://ecr.waggle-sensor.org/buildtypes/push/v1"


def test_full_predicate_from_github_actions() -> None:
    assert make() == {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "spec": {"path": "ecr.yaml", "digest": {"sha256": SPEC.hex}},
                "baseImage": "127.0.0.1:5000/base/busybox:1.36",
                "platforms": ["linux/amd64", "linux/arm64"],
                "sourceDateEpoch": 1700000000,
            },
            "internalParameters": {"compression": {"code": "gzip", "model": "none"}},
            "resolvedDependencies": [
                {
                    "name": "source",
                    "uri": "git+https://github.com/waggle-sensor/plugin-hello.git",
                    "digest": {"gitCommit": COMMIT},
                },
                {
                    "name": "base-image",
                    "uri": "oci://127.0.0.1:5000/base/busybox:1.36",
                    "digest": {"sha256": BASE.hex},
                },
            ],
        },
        "runDetails": {
            "builder": {
                "id": "https://ecr.waggle-sensor.org/builders/ecr-oci/github-actions",
                "version": {"ecr-oci": "0.1.0"},
            },
            "metadata": {
                "invocationId": "https://github.com/waggle-sensor/plugin-hello/actions/runs/9876543210"
                "/attempts/2",
                "startedOn": "2025-06-01T12:00:00Z",
                "finishedOn": "2025-06-01T12:00:42Z",
            },
        },
    }


def test_slsa_v1_shape() -> None:
    """The fields SLSA v1 requires are present and typed as the spec says (version is a map)."""
    predicate = make()
    definition, run = predicate["buildDefinition"], predicate["runDetails"]
    assert set(predicate) == {"buildDefinition", "runDetails"}
    assert isinstance(definition["buildType"], str) and isinstance(definition["externalParameters"], dict)
    assert isinstance(run["builder"]["id"], str)
    assert all(isinstance(v, str) for v in run["builder"]["version"].values())
    for dependency in definition["resolvedDependencies"]:
        assert set(dependency) <= {"name", "uri", "digest", "annotations"}
        assert "uri" in dependency or "digest" in dependency
    json.dumps(predicate)  # plain JSON


def test_pure_same_inputs_same_output() -> None:
    assert make() == make()


def test_local_build_has_no_invocation_id() -> None:
    predicate = make(ci=None)
    assert predicate["runDetails"]["builder"]["id"] == "https://ecr.waggle-sensor.org/builders/ecr-oci/local"
    assert "invocationId" not in predicate["runDetails"]["metadata"]
    assert make(ci=None, invocation_id="run-1")["runDetails"]["metadata"]["invocationId"] == "run-1"


def test_dirty_source_is_flagged() -> None:
    source = Source(url="https://github.com/x/y.git", commit=COMMIT, dirty=True)
    [dependency, _] = make(source=source)["buildDefinition"]["resolvedDependencies"]
    assert dependency["annotations"] == {"dirty": True}


def test_source_without_url_keeps_the_commit_and_no_source_has_no_entry() -> None:
    [dependency, _] = make(source=Source(commit=COMMIT))["buildDefinition"]["resolvedDependencies"]
    assert dependency == {"name": "source", "digest": {"gitCommit": COMMIT}}
    dependencies = make(source=None)["buildDefinition"]["resolvedDependencies"]
    assert [d["name"] for d in dependencies] == ["base-image"]


def test_pinned_base_and_bundle_path() -> None:
    pinned = Reference.parse(f"127.0.0.1:5000/base/busybox@{BASE}")
    predicate = make(base_image=pinned, bundle_path="plugins/hello/")
    external = predicate["buildDefinition"]["externalParameters"]
    assert external["baseImage"] == f"127.0.0.1:5000/base/busybox@{BASE}"
    assert external["spec"]["path"] == "plugins/hello/ecr.yaml"
    assert external["bundlePath"] == "plugins/hello"
    base = predicate["buildDefinition"]["resolvedDependencies"][1]
    assert base["uri"] == "oci://127.0.0.1:5000/base/busybox"


def test_byproducts_list_bundle_and_layers() -> None:
    bundle, code = Digest.of(b"bundle"), Digest.of(b"code")
    byproducts = make(bundle_digest=bundle, layers={"code": code})["runDetails"]["byproducts"]
    assert byproducts == [
        {
            "name": "bundle",
            "digest": {"sha256": bundle.hex},
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
        },
        {"name": "layer/code", "digest": {"sha256": code.hex}},
    ]
    assert "byproducts" not in make()["runDetails"]


def test_times_are_utc_and_must_have_a_zone() -> None:
    east = datetime(2025, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert make(started_on=east)["runDetails"]["metadata"]["startedOn"] == "2025-06-01T12:00:00Z"
    with pytest.raises(ValueError, match="no time zone"):
        make(finished_on=datetime(2025, 6, 1))  # naive: the point of the test


def test_github_context() -> None:
    ci = ci_context_from_env(GITHUB)
    assert ci == CIContext(
        "github-actions",
        "https://github.com/waggle-sensor/plugin-hello/actions/runs/9876543210",
        "https://github.com/waggle-sensor/plugin-hello/actions/runs/9876543210/attempts/2",
    )
    without_attempt = {k: v for k, v in GITHUB.items() if k != "GITHUB_RUN_ATTEMPT"}
    assert ci_context_from_env(without_attempt) == CIContext("github-actions", ci.run_url, ci.run_url)
    broken = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "1"}
    assert ci_context_from_env(broken) == CIContext("github-actions")


def test_gitlab_context() -> None:
    env = {"CI": "true", "GITLAB_CI": "true", "CI_JOB_URL": "https://gitlab.com/w/p/-/jobs/77"}
    assert ci_context_from_env(env) == CIContext(
        "gitlab-ci", "https://gitlab.com/w/p/-/jobs/77", "https://gitlab.com/w/p/-/jobs/77"
    )
    assert ci_context_from_env({"GITLAB_CI": "true"}) == CIContext("gitlab-ci")


@pytest.mark.parametrize("value", ["true", "1", "TRUE", "yes"])
def test_generic_ci(value: str) -> None:
    assert ci_context_from_env({"CI": value}) == CIContext("ci")


@pytest.mark.parametrize("env", [{}, {"CI": "false"}, {"CI": ""}, {"GITHUB_ACTIONS": "false"}])
def test_no_ci(env: dict[str, str]) -> None:
    assert ci_context_from_env(env) is None
