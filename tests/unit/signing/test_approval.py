"""The approval predicate: the model and ``mediatypes/approval.schema.json`` agree; expiry rules.

Verification against a registry (expired, wrong deployment, cosign's view) is in
``tests/integration/test_attestations.py``.
"""

from __future__ import annotations

import doctest
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jsonschema import Draft202012Validator

from ecr_oci import mediatypes
from ecr_oci.errors import VerificationError
from ecr_oci.mediatypes import PredicateType, approval_deployment, approval_type, spec_folder
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference
from ecr_oci.signing import approval as approval_module
from ecr_oci.signing.approval import APPROVAL_TYPE, Approval, approve_image, verify_approval

SCHEMA = json.loads((spec_folder() / "approval.schema.json").read_text())
EXAMPLE = json.loads((spec_folder() / "examples" / "approval.json").read_text())
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def schema_accepts(document: Any) -> bool:
    return not list(Draft202012Validator(SCHEMA).iter_errors(document))


def model_accepts(document: Any) -> bool:
    try:
        Approval.from_predicate(document)
    except VerificationError as err:
        assert err.reason == "malformed"
        return False
    return True


def test_module_examples_run() -> None:
    for module in (approval_module, mediatypes):  # mediatypes: approval_type and its inverse
        assert doctest.testmod(module).failed == 0


def test_type_is_in_the_enum_and_the_schema() -> None:
    assert APPROVAL_TYPE == PredicateType.APPROVAL == "https://ecr.waggle-sensor.org/attestations/approval/v1"
    assert SCHEMA["x-predicate-types"] == [APPROVAL_TYPE]


def test_each_deployment_has_its_own_type_as_the_schema_says() -> None:
    """Admission engines judge every attestation of a type: approvals for two deployments must not
    share one (mediatypes/approval.md)."""
    template = SCHEMA["x-predicate-type-template"]
    assert template == APPROVAL_TYPE + "/{deployment}"
    for name in ("sage-production", "testbed", "W0A1.dev_2", "x" * 128):
        predicate_type = approval_type(name)
        assert predicate_type == template.format(deployment=name)
        assert approval_deployment(predicate_type) == name
        assert Approval(deployment=name, approvedAt=NOW).predicate_type == predicate_type
    assert approval_type("testbed") != approval_type("production")
    assert approval_deployment(APPROVAL_TYPE) is None
    assert approval_deployment(APPROVAL_TYPE + "/a/b") is None
    assert approval_deployment("https://slsa.dev/provenance/v1") is None


@pytest.mark.parametrize("name", ["", "-prod", "prod/eu", "sage prod", "prod\n", "x" * 129])
def test_no_type_for_a_name_an_approval_cannot_carry(name: str) -> None:
    with pytest.raises(ValueError, match="invalid deployment"):
        approval_type(name)


def test_example_round_trips_through_the_model() -> None:
    assert Approval.from_predicate(EXAMPLE).to_predicate() == EXAMPLE


VALID = [
    {"deployment": "sage-production", "approvedAt": "2025-06-01T12:00:00Z"},
    {"deployment": "a", "approvedAt": "2025-06-01T12:00:00.123Z"},
    {
        "deployment": "W0A1.dev_2",
        "approvedAt": "2025-06-01T14:00:00+02:00",
        "expires": "2025-07-01T00:00:00Z",
    },
    {"deployment": "x" * 128, "approvedAt": "2025-06-01T12:00:00Z", "note": "", "approvedBy": "me"},
]
INVALID = [
    {"approvedAt": "2025-06-01T12:00:00Z"},
    {"deployment": "prod"},
    {"deployment": "prod", "approvedAt": "2025-06-01T12:00:00Z", "extra": True},
    {"deployment": "prod", "approvedAt": "2025-06-01"},
    {"deployment": "prod", "approvedAt": "2025-06-01T12:00:00"},
    {"deployment": "prod", "approvedAt": 1748779200},
    {"deployment": "prod", "approvedAt": "2025-06-01T12:00:00Z", "expires": "tomorrow"},
    {"deployment": "-prod", "approvedAt": "2025-06-01T12:00:00Z"},
    {"deployment": "prod/eu", "approvedAt": "2025-06-01T12:00:00Z"},
    {"deployment": "", "approvedAt": "2025-06-01T12:00:00Z"},
    {"deployment": "x" * 129, "approvedAt": "2025-06-01T12:00:00Z"},
    {"deployment": "prod", "approvedAt": "2025-06-01T12:00:00Z", "approvedBy": ""},
    {"deployment": "prod", "approvedAt": "2025-06-01T12:00:00Z", "note": 5},
    {"deployment": 7, "approvedAt": "2025-06-01T12:00:00Z"},
]


@pytest.mark.parametrize("document", VALID, ids=lambda d: json.dumps(d)[:60])
def test_model_and_schema_accept_the_same(document: dict[str, Any]) -> None:
    assert schema_accepts(document)
    assert model_accepts(document)


@pytest.mark.parametrize("document", INVALID, ids=lambda d: json.dumps(d)[:60])
def test_model_and_schema_refuse_the_same(document: dict[str, Any]) -> None:
    assert not schema_accepts(document)
    assert not model_accepts(document)


def test_model_fields_are_the_schema_properties() -> None:
    assert set(Approval.model_fields) == set(SCHEMA["properties"])
    required = {name for name, field in Approval.model_fields.items() if field.is_required()}
    assert required == set(SCHEMA["required"])


def test_times_are_written_in_utc() -> None:
    document = {"deployment": "prod", "approvedAt": "2025-06-01T14:00:00+02:00"}
    assert Approval.from_predicate(document).to_predicate()["approvedAt"] == "2025-06-01T12:00:00Z"


def test_malformed_message_names_the_field() -> None:
    with pytest.raises(VerificationError, match="expires"):
        Approval.from_predicate(
            {"deployment": "prod", "approvedAt": "2025-06-01T12:00:00Z", "expires": "soon"}
        )


def test_expiry_is_exclusive_and_absent_means_forever() -> None:
    expires = NOW + timedelta(days=1)
    approval = Approval(deployment="prod", approvedAt=NOW, expires=expires)
    assert approval.valid_at(NOW)
    assert approval.valid_at(expires - timedelta(seconds=1))
    assert not approval.valid_at(expires)
    assert Approval(deployment="prod", approvedAt=NOW).valid_at(NOW + timedelta(days=36500))


# approve_image and verify_approval check their arguments before any registry traffic: the
# client points at a port where nothing listens, so reaching the network would fail differently.
KEY = ec.generate_private_key(ec.SECP256R1())
REF = Reference.parse("127.0.0.1:1/waggle/hello:0.1.0")


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with RegistryClient("127.0.0.1:1", insecure=True, retries=0) as made:
        yield made


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"deployment": "no spaces"}, "deployment"),
        ({"expires": NOW}, "not after now"),
        ({"expires": NOW - timedelta(days=1)}, "not after now"),
        ({"now": datetime(2025, 6, 1)}, "time zone"),  # naive on purpose
        ({"approved_by": ""}, "approvedBy"),
    ],
)
def test_approve_refuses_bad_arguments(client: RegistryClient, changes: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"deployment": "prod", "now": NOW, **changes}
    with pytest.raises(ValueError, match=message):
        approve_image(client, REF, KEY, **arguments)


def test_verify_refuses_a_naive_now(client: RegistryClient) -> None:
    with pytest.raises(ValueError, match="time zone"):
        verify_approval(client, REF, KEY.public_key(), deployment="prod", now=datetime(2025, 6, 1))


def test_verify_refuses_a_deployment_no_approval_can_name(client: RegistryClient) -> None:
    with pytest.raises(ValueError, match="invalid deployment"):
        verify_approval(client, REF, KEY.public_key(), deployment="prod/eu", now=NOW)
