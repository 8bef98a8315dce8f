"""The profile model held against ``mediatypes/profile.schema.json``, and malformed profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from ecr_oci.mediatypes import MediaType, ProfileAnnotation, spec_folder
from ecr_oci.profile.attach import profile_annotations
from ecr_oci.profile.device import describe_device, oci_platform
from ecr_oci.profile.model import Profile, ProfileError, load_profile, parse_profile

SCHEMA = json.loads((spec_folder() / "profile.schema.json").read_text())
EXAMPLE = json.loads((spec_folder() / "examples" / "profile.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)


def schema_errors(document: Any) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(document)]


def test_schema_covers_the_profile_media_type() -> None:
    assert SCHEMA["x-media-types"] == [MediaType.PROFILE.value]


def test_example_round_trips_through_the_model() -> None:
    assert Profile.model_validate(EXAMPLE).to_json() == EXAMPLE


def test_model_output_validates_against_the_schema() -> None:
    profile = Profile.model_validate(EXAMPLE)
    assert schema_errors(profile.to_json()) == []
    assert schema_errors(Profile().to_json()) == []


def _schema_keys(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: _schema_keys(value) for key, value in schema.get("properties", {}).items()}


def test_schema_and_model_name_the_same_fields() -> None:
    keys = _schema_keys(SCHEMA)
    assert set(keys) == set(Profile.model_fields)
    for section in ("device", "workload", "measures"):
        annotation = Profile.model_fields[section].annotation
        model = next(a for a in annotation.__args__ if a is not type(None))  # type: ignore[union-attr]
        assert set(keys[section]) == set(model.model_fields), section


def test_this_machines_device_validates() -> None:
    device = describe_device(name="unit-test")
    document = Profile(device=device).to_json()
    assert schema_errors(document) == []
    assert "hostname" not in json.dumps(document)
    assert device.arch == oci_platform()


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"measures": {"wall_s": "slow"}}, "measures.wall_s"),
        ({"measures": {"peak_rss_bytes": -1}}, "measures.peak_rss_bytes"),
        ({"measures": {"joules": "many"}}, "measures.joules"),
        ({"metrics": {"inference_ms": {"p95": "fast"}}}, "metrics.inference_ms.p95"),
        ({"metrics": {"inference_ms": {"count": 2.5}}}, "metrics.inference_ms.count"),
        ({"device": {"cpu_cores": 0}}, "device.cpu_cores"),
        ({"software": {"kernel": 6}}, "software.kernel"),
        ({"workload": {"args": "--fast"}}, "workload.args"),
    ],
)
def test_malformed_profiles_name_the_field_and_the_schema_agrees(document: Any, field: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(json.dumps(document).encode(), source="bad.json")
    assert caught.value.field == field
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith(f"bad.json: {field}: ")
    assert "\n" not in str(caught.value)
    assert schema_errors(document) != []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not JSON (line 1 column 2"),
        (b"[1]", "must hold a JSON object, not list"),
        (b"\xff\xfe", "not"),
        (b" " * (1 << 20) + b"{}", "larger than 1 MiB"),
    ],
)
def test_unreadable_profiles(data: bytes, message: str) -> None:
    with pytest.raises(ProfileError, match=r"^p\.json: ") as caught:
        parse_profile(data, source="p.json")
    assert message in str(caught.value)


def test_load_profile_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"absent\.json: cannot read it"):
        load_profile(tmp_path / "absent.json")


def test_annotations_carry_the_key_figures() -> None:
    annotations = profile_annotations(Profile.model_validate(EXAMPLE))
    assert annotations[ProfileAnnotation.DEVICE] == "xavier-nx-lab-3"
    assert annotations[ProfileAnnotation.ARCH] == "linux/arm64"
    assert annotations[ProfileAnnotation.PEAK_RSS_BYTES] == "734003200"
    assert annotations[ProfileAnnotation.WALL_S] == "600.4"
    assert annotations["org.waggle-sensor.ecr.profile.metric.inference_ms.p95"] == "58"
    assert annotations["org.opencontainers.image.created"] == "2025-06-02T14:03:11Z"


def test_absent_figures_make_no_annotations() -> None:
    assert profile_annotations(Profile.model_validate({"device": {"arch": "linux/amd64"}})) == {
        ProfileAnnotation.ARCH.value: "linux/amd64"
    }
