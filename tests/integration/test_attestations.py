"""Attestations with real peers: cosign v2.6 verifies what ecr-oci attests and the other way round,
and every tampering fails in both (REFERENCE.md "Signatures"; issue 3).

cosign runs offline: ``--tlog-upload=false`` when attesting, ``--insecure-ignore-tlog=true`` when
verifying, ``--allow-http-registry=true`` for the plain-HTTP test registry, and ``--trusted-root``
with an empty trusted root, without which ``verify-attestation`` tries to fetch sigstore's TUF root
from the internet (it goes on when that fails, but these tests stay on the loopback). Deployment and expiry of
approvals are ecr-oci's rules; cosign judges them only through a ``--policy`` (Rego or CUE, both
evaluated offline), which these tests use to show cosign refusing the same approvals.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.bundle.spec import Source
from ecr_oci.digest import Digest
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.models import Descriptor, Index, Manifest
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference
from ecr_oci.signing.approval import APPROVAL_TYPE, approve_image
from ecr_oci.signing.attest import PREDICATE_TYPE_ANNOTATION, attest_image, attestation_tag
from ecr_oci.signing.dsse import Envelope, Statement, Subject, sign_statement
from ecr_oci.signing.keys import generate_key_pair, load_private_key
from ecr_oci.signing.provenance import build_provenance, ci_context_from_env
from ecr_oci.signing.store import SIGNATURE_ANNOTATION, config_bytes
from tests.integration.conftest import Runner, make_runner, push_json, write_bundle

pytestmark = pytest.mark.integration

PASSWORD = "attest-test-password"  # a throwaway key for the tests
CUSTOM_TYPE = "https://example.com/ecr-oci-test/v1"
SLSA_TYPE = "https://slsa.dev/provenance/v1"
NOW = datetime.now(UTC).replace(microsecond=0)

ALLOW_PROD_REGO = """package signature

default allow = false

allow {
  input.predicate.deployment == "prod"
  not input.predicate.expires
}

allow {
  input.predicate.deployment == "prod"
  time.parse_rfc3339_ns(input.predicate.expires) > time.now_ns()
}
"""
ALLOW_PROD_CUE = 'predicate: deployment: "prod"\n'


@dataclass(frozen=True)
class Keys:
    folder: Path
    key: ec.EllipticCurvePrivateKey
    other: ec.EllipticCurvePrivateKey

    @property
    def private(self) -> str:
        return str(self.folder / "cosign.key")

    @property
    def public(self) -> str:
        return str(self.folder / "cosign.pub")

    @property
    def other_public(self) -> str:
        return str(self.folder / "other.pub")


CosignRun = Callable[..., subprocess.CompletedProcess[str]]
#: A trusted root with no authorities: key-based verification needs none, and it stops the TUF fetch.
EMPTY_TRUSTED_ROOT = '{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}'


@pytest.fixture(scope="module")
def cosign(tool: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory) -> CosignRun:
    """``cosign(*args, check=True)``: the real cosign, offline, with the key password set."""
    program = tool("cosign")
    home = tmp_path_factory.mktemp("cosign-home")
    (home / "trusted_root.json").write_text(EMPTY_TRUSTED_ROOT)
    env = {**os.environ, "HOME": str(home), "COSIGN_PASSWORD": PASSWORD, "COSIGN_YES": "true"}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [program, *args], capture_output=True, text=True, env=env, timeout=120, check=False,
            cwd=home,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"cosign {' '.join(args)} exited {done.returncode}\n{done.stderr}")
        return done

    return run


@pytest.fixture(scope="module")
def keys(cosign: CosignRun, tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """cosign.key/cosign.pub made by ``cosign generate-key-pair``; another pair made by ecr-oci."""
    folder = tmp_path_factory.mktemp("keys")
    cosign("generate-key-pair", "--output-key-prefix", str(folder / "cosign"))
    other = generate_key_pair(PASSWORD.encode())
    (folder / "other.pub").write_bytes(other.public_pem)
    return Keys(
        folder,
        load_private_key((folder / "cosign.key").read_bytes(), PASSWORD.encode(), source="cosign.key"),
        load_private_key(other.private_pem, PASSWORD.encode(), source="other.key"),
    )


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    """``ecr-oci`` as a process, with ``COSIGN_PASSWORD`` in its environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COSIGN_PASSWORD", PASSWORD)
        return make_runner(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def client(registry: Any) -> Iterator[RegistryClient]:
    with RegistryClient(registry.host, insecure=True) as made:
        yield made


@dataclass(frozen=True)
class Pushed:
    ref: Reference  # host/ns/name:version@digest
    result: dict[str, Any]
    directory: Path

    @property
    def text(self) -> str:
        return str(self.ref)

    @property
    def digest(self) -> Digest:
        assert self.ref.digest is not None
        return self.ref.digest


@pytest.fixture(scope="module")
def push_image(
    registry: Any, base_image: str, ecr: Runner, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Pushed]:
    """``push_image(name)``: hello-sensor pushed as waggle/NAME:0.1.0, a fresh digest per name."""

    def push(name: str) -> Pushed:
        directory = write_bundle(tmp_path_factory.mktemp("b") / name, base=base_image, name=name)
        result = push_json(ecr, directory, registry.host)
        return Pushed(Reference.parse(result["image"]), result, directory)

    return push


def cosign_verify(
    cosign: CosignRun, pushed: Pushed, public: str, predicate_type: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return cosign(
        "verify-attestation", "--key", public, "--type", predicate_type, "--trusted-root",
        "trusted_root.json", "--insecure-ignore-tlog=true", "--allow-http-registry=true", *extra,
        pushed.text, check=False,
    )


def cosign_statements(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The in-toto statements of the envelopes cosign printed (one JSON envelope per line)."""
    return [
        json.loads(base64.b64decode(json.loads(line)["payload"]))
        for line in done.stdout.splitlines()
        if line.strip()
    ]


def ecr_verify(ecr: Runner, pushed: Pushed, public: str, predicate_type: str, *extra: str) -> dict[str, Any]:
    done = ecr(
        "verify-attestation", pushed.text, "--key", public, "--type", predicate_type, "--insecure",
        "--json", *extra, check=False,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    assert (done.returncode == 0) == result["verified"], done.stderr
    if not result["verified"]:
        assert done.returncode == 4
    return result


def write_att(client: RegistryClient, pushed: Pushed, layers: list[tuple[bytes, str]]) -> None:
    """Replace the ``.att`` manifest of ``pushed`` with these (envelope bytes, annotated type)."""
    repository = pushed.ref.repository
    descriptors = []
    for data, predicate_type in layers:
        blob = client.push_blob_bytes(repository, data)
        descriptors.append(Descriptor(
            mediaType=MediaType.DSSE_ENVELOPE, digest=blob.digest, size=blob.size,
            annotations={SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: predicate_type},
        ))
    config = client.push_blob_bytes(repository, config_bytes(descriptors))
    manifest = Manifest(config=config.model_copy(update={"mediaType": MediaType.OCI_CONFIG}),
                        layers=descriptors)
    client.put_manifest(repository, attestation_tag(pushed.digest), manifest.to_bytes(),
                        manifest.mediaType)


def statement_about(pushed: Pushed, predicate_type: str, predicate: dict[str, Any],
                    digest: Digest | None = None) -> Statement:
    """A statement naming ``pushed``'s repository at ``digest`` (default: its own digest)."""
    subject = Subject(pushed.ref.repository_url_part, digest or pushed.digest)
    return Statement((subject,), predicate_type, predicate)


def att_layers(client: RegistryClient, pushed: Pushed) -> list[Descriptor]:
    raw = client.get_manifest(pushed.ref.repository, attestation_tag(pushed.digest))
    return raw.as_manifest().layers


# --- cosign verifies what ecr-oci attested -------------------------------------------------------


def test_cosign_verifies_a_custom_predicate_attested_by_ecr_oci(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys,
    client: RegistryClient, tmp_path: Path,
) -> None:
    pushed = push_image("att-custom")
    predicate = {"scanner": "test", "findings": [], "nested": {"ok": True, "n": 3}}
    (tmp_path / "predicate.json").write_text(json.dumps(predicate))
    args = ("attest", pushed.text, "--key", keys.private, "--predicate", str(tmp_path / "predicate.json"),
            "--type", CUSTOM_TYPE, "--insecure", "--json")
    first = json.loads(ecr(*args).stdout)
    assert first["added"] is True and first["digest"] == str(pushed.digest)
    assert first["tag"] == f"{pushed.digest.tag_form}.att"

    done = cosign_verify(cosign, pushed, keys.public, CUSTOM_TYPE)
    assert done.returncode == 0, done.stderr
    [statement] = cosign_statements(done)
    assert statement["predicate"] == predicate
    assert statement["subject"][0]["digest"] == {"sha256": pushed.digest.hex}

    # again: idempotent, no second layer
    again = json.loads(ecr(*args).stdout)
    assert again["added"] is False and again["layer"] == first["layer"]
    assert len(att_layers(client, pushed)) == 1
    assert ecr_verify(ecr, pushed, keys.public, CUSTOM_TYPE)["predicate"] == predicate


def test_cosign_verifies_slsa_provenance_built_from_a_push(
    push_image: Callable[[str], Pushed], cosign: CosignRun, keys: Keys, client: RegistryClient,
    base_image: str, ecr: Runner,
) -> None:
    pushed = push_image("att-provenance")
    base = Reference.parse(base_image)
    base_digest = client.manifest_digest(base.repository, base.identifier)
    layers = pushed.result["layers"]
    predicate = build_provenance(
        source=Source(url="https://github.com/waggle-sensor/hello-sensor.git", commit="ab" * 20),
        ecr_yaml_digest=Digest.of((pushed.directory / "ecr.yaml").read_bytes()),
        base_image=base,
        base_digest=base_digest,
        platforms=pushed.result["platforms"],
        compression={layer["role"]: MediaType(layer["mediaType"]).compression for layer in layers},
        source_date_epoch=0,
        builder_version="0.1.0",
        started_on=NOW,
        finished_on=NOW + timedelta(seconds=3),
        ci=ci_context_from_env({"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com",
                                "GITHUB_REPOSITORY": "waggle-sensor/hello-sensor", "GITHUB_RUN_ID": "7"}),
        bundle_digest=Digest.parse(pushed.result["bundle"]),
        layers={layer["role"]: Digest.parse(layer["digest"]) for layer in layers},
    )
    attest_image(client, pushed.ref, keys.key, predicate=predicate, predicate_type=SLSA_TYPE)

    for type_name in (SLSA_TYPE, "slsaprovenance1"):  # cosign's short name for the same URI
        done = cosign_verify(cosign, pushed, keys.public, type_name)
        assert done.returncode == 0, done.stderr
        [statement] = cosign_statements(done)
        assert statement["predicateType"] == SLSA_TYPE
        assert statement["predicate"] == predicate
    verified = ecr_verify(ecr, pushed, keys.public, SLSA_TYPE)
    dependencies = verified["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert dependencies[1]["digest"] == {"sha256": base_digest.hex}
    assert dependencies[0]["digest"] == {"gitCommit": "ab" * 20}


def test_cosign_verifies_an_approval_and_its_policy_accepts_it(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys, tmp_path: Path,
) -> None:
    pushed = push_image("att-approval")
    ecr("approve", pushed.text, "--key", keys.private, "--deployment", "prod", "--expires", "30d",
        "--note", "reviewed", "--insecure")
    verified = ecr_verify(ecr, pushed, keys.public, APPROVAL_TYPE, "--deployment", "prod")
    assert verified["approval"]["deployment"] == "prod"
    assert verified["approval"]["note"] == "reviewed"

    done = cosign_verify(cosign, pushed, keys.public, APPROVAL_TYPE)
    assert done.returncode == 0, done.stderr
    (tmp_path / "prod.rego").write_text(ALLOW_PROD_REGO)
    (tmp_path / "prod.cue").write_text(ALLOW_PROD_CUE)
    for policy in ("prod.rego", "prod.cue"):
        done = cosign_verify(cosign, pushed, keys.public, APPROVAL_TYPE, "--policy", str(tmp_path / policy))
        assert done.returncode == 0, (policy, done.stderr)


# --- ecr-oci verifies what cosign attested -------------------------------------------------------


def test_ecr_oci_verifies_what_cosign_attested_and_appends_beside_it(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys,
    client: RegistryClient, tmp_path: Path,
) -> None:
    pushed = push_image("att-from-cosign")
    predicate = {"from": "cosign", "list": [1, 2, 3]}
    (tmp_path / "p.json").write_text(json.dumps(predicate))
    approval = {"deployment": "prod", "approvedAt": "2025-01-01T00:00:00Z"}
    (tmp_path / "a.json").write_text(json.dumps(approval))
    for type_uri, path in ((CUSTOM_TYPE, "p.json"), (APPROVAL_TYPE, "a.json")):
        cosign("attest", "--key", keys.private, "--type", type_uri, "--predicate", str(tmp_path / path),
               "--tlog-upload=false", "--allow-http-registry=true", pushed.text)

    assert ecr_verify(ecr, pushed, keys.public, CUSTOM_TYPE)["predicate"] == predicate
    verified = ecr_verify(ecr, pushed, keys.public, APPROVAL_TYPE, "--deployment", "prod")
    assert verified["approval"] == approval

    # ecr-oci appends to cosign's manifest; both tools then see all three attestations
    attest_image(client, pushed.ref, keys.key, predicate={"from": "ecr-oci"}, predicate_type=SLSA_TYPE)
    assert [(layer.annotations or {})[PREDICATE_TYPE_ANNOTATION] for layer in att_layers(client, pushed)] == [
        CUSTOM_TYPE, APPROVAL_TYPE, SLSA_TYPE,
    ]
    for type_uri in (CUSTOM_TYPE, APPROVAL_TYPE, SLSA_TYPE):
        assert cosign_verify(cosign, pushed, keys.public, type_uri).returncode == 0, type_uri
    assert ecr_verify(ecr, pushed, keys.public, CUSTOM_TYPE)["predicate"] == predicate


# --- negative: each fails in ecr-oci and in cosign -----------------------------------------------


#: What cosign 2.6.1 says for each of our reasons (its verdict, not a network or usage error).
COSIGN_SAYS = {
    "wrong-key": ("accepted signatures do not match threshold",),
    "digest-mismatch": ("no matching subject digest found",),
    "malformed": ("unexpected end of JSON input", "no child with platform"),
    "wrong-type": ("none of the attestations matched the predicate type",),
    "no-attestation": ("no matching attestations", "none of the attestations matched the predicate type"),
}


def both_refuse(
    ecr: Runner, cosign: CosignRun, pushed: Pushed, public: str, predicate_type: str, reason: str,
    *ecr_extra: str,
) -> subprocess.CompletedProcess[str]:
    result = ecr_verify(ecr, pushed, public, predicate_type, *ecr_extra)
    assert result["verified"] is False
    assert result["reason"] == reason, result["message"]
    done = cosign_verify(cosign, pushed, public, predicate_type)
    assert done.returncode != 0, f"cosign accepted it:\n{done.stdout}"
    assert any(verdict in done.stderr for verdict in COSIGN_SAYS[reason]), done.stderr
    assert "TUF" not in done.stderr  # it stayed offline
    return done


def test_tampered_payload_fails(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys,
    client: RegistryClient,
) -> None:
    pushed = push_image("att-tampered")
    statement = statement_about(pushed, CUSTOM_TYPE, {"approved": False})
    envelope = sign_statement(statement, keys.key)
    changed = Statement(statement.subjects, CUSTOM_TYPE, {"approved": True}).to_bytes()
    tampered = Envelope(envelope.payload_type, changed, envelope.signatures)
    write_att(client, pushed, [(tampered.to_bytes(), CUSTOM_TYPE)])
    both_refuse(ecr, cosign, pushed, keys.public, CUSTOM_TYPE, "wrong-key")


def test_attestation_for_another_digest_fails(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys,
    client: RegistryClient,
) -> None:
    pushed = push_image("att-other-digest")
    statement = statement_about(pushed, CUSTOM_TYPE, {"a": 1}, Digest.of(b"another image"))
    write_att(client, pushed, [(sign_statement(statement, keys.key).to_bytes(), CUSTOM_TYPE)])
    both_refuse(ecr, cosign, pushed, keys.public, CUSTOM_TYPE, "digest-mismatch")


def test_attestation_by_another_key_fails(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys,
    client: RegistryClient,
) -> None:
    pushed = push_image("att-other-key")
    attest_image(client, pushed.ref, keys.other, predicate={"a": 1}, predicate_type=CUSTOM_TYPE)
    both_refuse(ecr, cosign, pushed, keys.public, CUSTOM_TYPE, "wrong-key")
    # the key that did sign it is accepted by both
    assert ecr_verify(ecr, pushed, keys.other_public, CUSTOM_TYPE)["verified"] is True
    assert cosign_verify(cosign, pushed, keys.other_public, CUSTOM_TYPE).returncode == 0


def test_attestation_moved_to_another_image_fails(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys,
    client: RegistryClient,
) -> None:
    source, target = push_image("att-moved-from"), push_image("att-moved-to")
    attest_image(client, source.ref, keys.key, predicate={"a": 1}, predicate_type=CUSTOM_TYPE)
    raw = client.get_manifest(source.ref.repository, attestation_tag(source.digest))
    for layer in raw.as_manifest().layers:  # blobs are per repository
        data = client.get_blob(source.ref.repository, layer.digest)
        client.push_blob_bytes(target.ref.repository, data)
    config = raw.as_manifest().config
    client.push_blob_bytes(target.ref.repository, client.get_blob(source.ref.repository, config.digest))
    client.put_manifest(target.ref.repository, attestation_tag(target.digest), raw.data, raw.media_type)
    both_refuse(ecr, cosign, target, keys.public, CUSTOM_TYPE, "digest-mismatch")


def test_malformed_envelope_fails(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys,
    client: RegistryClient,
) -> None:
    pushed = push_image("att-garbage")
    garbage = b'{"payloadType": "application/vnd.in-toto+json", "payload": "%%%"'
    write_att(client, pushed, [(garbage, CUSTOM_TYPE)])
    done = both_refuse(ecr, cosign, pushed, keys.public, CUSTOM_TYPE, "malformed")
    assert "unexpected end of JSON input" in done.stderr  # cosign cannot parse the envelope


def test_malformed_attestation_manifest_fails(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys,
    client: RegistryClient,
) -> None:
    pushed = push_image("att-index")
    index = Index(manifests=[])
    client.put_manifest(pushed.ref.repository, attestation_tag(pushed.digest), index.to_bytes(),
                        index.mediaType)
    done = both_refuse(ecr, cosign, pushed, keys.public, CUSTOM_TYPE, "malformed")
    assert "no child with platform" in done.stderr  # cosign takes the index for a multi-arch image
    # attesting replaces the garbage: it held no usable attestation
    attest_image(client, pushed.ref, keys.key, predicate={"a": 1}, predicate_type=CUSTOM_TYPE)
    assert ecr_verify(ecr, pushed, keys.public, CUSTOM_TYPE)["verified"] is True
    assert cosign_verify(cosign, pushed, keys.public, CUSTOM_TYPE).returncode == 0


def test_signed_statement_of_another_type_fails(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys,
    client: RegistryClient,
) -> None:
    """The layer annotation claims the approval type; the signed statement is of another type."""
    pushed = push_image("att-wrong-type")
    statement = statement_about(
        pushed, CUSTOM_TYPE, {"deployment": "prod", "approvedAt": "2025-01-01T00:00:00Z"}
    )
    write_att(client, pushed, [(sign_statement(statement, keys.key).to_bytes(), APPROVAL_TYPE)])
    both_refuse(ecr, cosign, pushed, keys.public, APPROVAL_TYPE, "wrong-type", "--deployment", "prod")


def test_no_attestation_fails(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys,
    client: RegistryClient,
) -> None:
    pushed = push_image("att-none")
    both_refuse(ecr, cosign, pushed, keys.public, CUSTOM_TYPE, "no-attestation")
    attest_image(client, pushed.ref, keys.key, predicate={"a": 1}, predicate_type=SLSA_TYPE)
    done = both_refuse(ecr, cosign, pushed, keys.public, CUSTOM_TYPE, "no-attestation")
    assert "none of the attestations matched the predicate type" in done.stderr


# --- approvals: expiry and deployment (cosign judges them through a policy) ---------------------


def test_expired_approval_fails(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys,
    client: RegistryClient, tmp_path: Path,
) -> None:
    pushed = push_image("att-expired")
    then = datetime(2024, 1, 1, tzinfo=UTC)
    approve_image(client, pushed.ref, keys.key, deployment="prod", now=then,
                  expires=then + timedelta(days=30))
    result = ecr_verify(ecr, pushed, keys.public, APPROVAL_TYPE, "--deployment", "prod")
    assert result["reason"] == "expired", result["message"]
    assert "2024-01-31T00:00:00Z" in result["message"]
    done = ecr("verify-attestation", pushed.text, "--key", keys.public, "--type", APPROVAL_TYPE,
               "--deployment", "prod", "--insecure", check=False)
    assert done.returncode == 4 and "expired" in done.stderr and "Traceback" not in done.stderr

    # cosign checks signature and subject only: without a policy it accepts the expired approval
    assert cosign_verify(cosign, pushed, keys.public, APPROVAL_TYPE).returncode == 0
    (tmp_path / "prod.rego").write_text(ALLOW_PROD_REGO)
    done = cosign_verify(cosign, pushed, keys.public, APPROVAL_TYPE, "--policy", str(tmp_path / "prod.rego"))
    assert done.returncode != 0 and "validation errors" in done.stderr

    # a fresh approval for the same deployment makes it valid again, in both
    ecr("approve", pushed.text, "--key", keys.private, "--deployment", "prod", "--expires", "2099-12-31",
        "--insecure")
    valid = ecr_verify(ecr, pushed, keys.public, APPROVAL_TYPE, "--deployment", "prod")
    assert valid["approval"]["expires"] == "2100-01-01T00:00:00Z"


def test_approval_for_another_deployment_fails(
    push_image: Callable[[str], Pushed], ecr: Runner, cosign: CosignRun, keys: Keys, tmp_path: Path,
) -> None:
    pushed = push_image("att-deployment")
    ecr("approve", pushed.text, "--key", keys.private, "--deployment", "dev", "--insecure")
    result = ecr_verify(ecr, pushed, keys.public, APPROVAL_TYPE, "--deployment", "prod")
    assert result["reason"] == "wrong-deployment"
    assert "approved for dev" in result["message"]
    assert ecr_verify(ecr, pushed, keys.public, APPROVAL_TYPE, "--deployment", "dev")["verified"]

    assert cosign_verify(cosign, pushed, keys.public, APPROVAL_TYPE).returncode == 0  # no policy
    (tmp_path / "prod.rego").write_text(ALLOW_PROD_REGO)
    (tmp_path / "prod.cue").write_text(ALLOW_PROD_CUE)
    for policy in ("prod.rego", "prod.cue"):
        done = cosign_verify(cosign, pushed, keys.public, APPROVAL_TYPE, "--policy", str(tmp_path / policy))
        assert done.returncode != 0, policy


def test_cli_refuses_bad_input_with_one_line(
    push_image: Callable[[str], Pushed], ecr: Runner, keys: Keys, tmp_path: Path,
) -> None:
    pushed = push_image("att-cli")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "object.json").write_text("{}")
    cases = [
        ("attest", pushed.text, "--key", keys.private, "--predicate", str(tmp_path / "list.json"),
         "--type", CUSTOM_TYPE, "--insecure"),
        ("attest", pushed.text, "--key", keys.private, "--predicate", str(tmp_path / "list.json"),
         "--type", "custom", "--insecure"),
        ("approve", pushed.text, "--key", keys.private, "--deployment", "bad name", "--insecure"),
        ("approve", pushed.text, "--key", keys.private, "--deployment", "prod", "--expires", "soon",
         "--insecure"),
        ("verify-attestation", pushed.text, "--key", keys.public, "--type", APPROVAL_TYPE, "--insecure"),
        ("attest", pushed.text, "--key", keys.public, "--predicate", str(tmp_path / "object.json"),
         "--type", CUSTOM_TYPE, "--insecure"),
    ]
    for args in cases:
        done = ecr(*args, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr
