"""Attestations with real peers: cosign v2.6 verifies what ecr-oci attests and the other way round,
and every tampering fails in both (REFERENCE.md "Signatures"; issue 3).

cosign runs offline (the shared ``cosign`` fixture, ``tests/fixtures/cosign.py``). Deployment and
expiry of approvals are ecr-oci's rules; cosign judges them only through a ``--policy`` (Rego or CUE,
both evaluated offline), which these tests use to show cosign accepting and refusing the same
approvals, with the Rego that ``ecr-oci policy render`` gives policy-controller and the one
``mediatypes/approval.md`` documents.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_oci.bundle.spec import Source
from ecr_oci.digest import Digest
from ecr_oci.errors import VerificationError
from ecr_oci.mediatypes import MediaType, approval_type, spec_folder
from ecr_oci.oci.models import Descriptor, Index, Manifest
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.policy import render_policy
from ecr_oci.reference import Reference
from ecr_oci.signing.approval import APPROVAL_TYPE, approve_image, verify_approval
from ecr_oci.signing.attest import PREDICATE_TYPE_ANNOTATION, attest_image, attestation_tag
from ecr_oci.signing.dsse import Envelope, Statement, Subject, sign_statement
from ecr_oci.signing.provenance import build_provenance, ci_context_from_env
from ecr_oci.signing.store import SIGNATURE_ANNOTATION, config_bytes
from tests.fixtures.cosign import PASSWORD, Cosign, KeyFiles
from tests.integration.conftest import Runner, make_runner, push_json, write_bundle

pytestmark = pytest.mark.integration

CUSTOM_TYPE = "https://example.com/ecr-oci-test/v1"
SLSA_TYPE = "https://slsa.dev/provenance/v1"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def ecr(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    """``ecr-oci`` as a process, with ``COSIGN_PASSWORD`` in its environment."""
    return make_runner(tmp_path_factory.mktemp("home"), env={"COSIGN_PASSWORD": PASSWORD})


@pytest.fixture(scope="module")
def keys(cosign_keys: KeyFiles) -> KeyFiles:
    """The key pair these tests sign with, made by cosign (``ecr_keys``, made by ecr-oci, is "another
    key" where a test needs one)."""
    return cosign_keys


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


def cosign_statements(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The in-toto statements of the envelopes cosign printed (one JSON envelope per line)."""
    return [
        json.loads(base64.b64decode(json.loads(line)["payload"]))
        for line in done.stdout.splitlines()
        if line.strip()
    ]


def ecr_approve(ecr: Runner, pushed: Pushed, key: KeyFiles, deployment: str, *extra: str) -> None:
    """``ecr-oci approve`` the image for ``deployment`` with ``key`` (``extra``: ``--expires`` …)."""
    ecr("approve", pushed.text, "--key", str(key.private), "--deployment", deployment, "--insecure", *extra)


def ecr_verify(
    ecr: Runner, pushed: Pushed, key: KeyFiles, predicate_type: str, *extra: str
) -> dict[str, Any]:
    done = ecr(
        "verify-attestation",
        pushed.text,
        "--key",
        str(key.public),
        "--type",
        predicate_type,
        "--insecure",
        "--json",
        *extra,
        check=False,
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
        descriptors.append(
            Descriptor(
                mediaType=MediaType.DSSE_ENVELOPE,
                digest=blob.digest,
                size=blob.size,
                annotations={SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: predicate_type},
            )
        )
    config = client.push_blob_bytes(repository, config_bytes(descriptors))
    manifest = Manifest(
        config=config.model_copy(update={"mediaType": MediaType.OCI_CONFIG}), layers=descriptors
    )
    client.put_manifest(repository, attestation_tag(pushed.digest), manifest.to_bytes(), manifest.mediaType)


def statement_about(
    pushed: Pushed, predicate_type: str, predicate: dict[str, Any], digest: Digest | None = None
) -> Statement:
    """A statement naming ``pushed``'s repository at ``digest`` (default: its own digest)."""
    subject = Subject(pushed.ref.repository_url_part, digest or pushed.digest)
    return Statement((subject,), predicate_type, predicate)


def signed(statement: Statement, key: KeyFiles) -> bytes:
    """The DSSE envelope of ``statement`` signed with ``key``, as stored in a layer."""
    return sign_statement(statement, key.private_key()).to_bytes()


def att_layers(client: RegistryClient, pushed: Pushed) -> list[Descriptor]:
    raw = client.get_manifest(pushed.ref.repository, attestation_tag(pushed.digest))
    return raw.as_manifest().layers


def att_types(client: RegistryClient, pushed: Pushed) -> list[str]:
    """The ``predicateType`` annotations of the ``.att`` layers, in order."""
    return [(layer.annotations or {})[PREDICATE_TYPE_ANNOTATION] for layer in att_layers(client, pushed)]


# --- cosign --policy files that admit an approval for one deployment -----------------------------


def rendered_rego(deployment: str, key: KeyFiles, registry: str) -> str:
    """The approval Rego that ``ecr-oci policy render --format policy-controller`` writes.

    policy-controller asks ``data.sigstore.isCompliant``, cosign's CLI ``data.signature.allow``:
    only the package and the rule are renamed, the conditions are the rendered ones.
    """
    files = render_policy(
        "policy-controller", public_key_pem=key.public.read_bytes(), registry=registry, deployment=deployment
    )
    spec = yaml.safe_load(files["clusterimagepolicy.yaml"])["spec"]
    attestations = [a for authority in spec["authorities"] for a in authority.get("attestations", [])]
    (rego,) = [attestation["policy"]["data"] for attestation in attestations]
    assert rego.startswith("package sigstore\n") and "isCompliant {" in rego
    return rego.replace("package sigstore\n", "package signature\n").replace("isCompliant", "allow")


def documented_rego(deployment: str) -> str:
    """The Rego of ``mediatypes/approval.md`` (type, deployment and expiry) for ``deployment``."""
    (rego,) = re.findall(r"```rego\n(.*?)```", (spec_folder() / "approval.md").read_text(), flags=re.DOTALL)
    assert rego.count("sage-production") == 4
    return rego.replace("sage-production", deployment)


def cosign_under_policies(
    cosign: Cosign, pushed: Pushed, key: KeyFiles, folder: Path, *, policy_for: str, predicate_type: str
) -> dict[str, subprocess.CompletedProcess[str]]:
    """``cosign verify-attestation --type PREDICATE_TYPE --policy P`` for each policy admitting
    approvals for ``policy_for``: the rendered Rego, the documented Rego, and CUE with the rendered
    policies' conditions (the type and the ``deployment`` field). Policy name → cosign's result."""
    cue = f'predicateType: "{approval_type(policy_for)}"\npredicate: deployment: "{policy_for}"\n'
    texts = {
        "rendered.rego": rendered_rego(policy_for, key, pushed.ref.registry),
        "documented.rego": documented_rego(policy_for),
        "conditions.cue": cue,
    }
    results = {}
    for name, text in texts.items():
        path = folder / f"{policy_for}-{name}"
        path.write_text(text)
        results[name] = cosign.verify_attestation(pushed.text, key, predicate_type, "--policy", str(path))
    return results


def policies_admit(
    cosign: Cosign, pushed: Pushed, key: KeyFiles, folder: Path, deployment: str
) -> list[dict[str, Any]]:
    """Every policy for ``deployment`` admits the image; the statements cosign judged."""
    judged = []
    results = cosign_under_policies(
        cosign, pushed, key, folder, policy_for=deployment, predicate_type=approval_type(deployment)
    )
    for name, done in results.items():
        assert done.returncode == 0, (deployment, name, done.stderr)
        judged.extend(cosign_statements(done))
    return judged


def policies_refuse(
    cosign: Cosign, pushed: Pushed, key: KeyFiles, folder: Path, *, policy_for: str, predicate_type: str
) -> None:
    """Every policy for ``policy_for`` refuses the approvals of ``predicate_type`` (the policy's
    verdict, not a missing attestation)."""
    results = cosign_under_policies(
        cosign, pushed, key, folder, policy_for=policy_for, predicate_type=predicate_type
    )
    for name, done in results.items():
        assert done.returncode != 0, (name, done.stdout)
        assert "validation errors" in done.stderr, (name, done.stderr)


# --- cosign verifies what ecr-oci attested -------------------------------------------------------


def test_cosign_verifies_a_custom_predicate_attested_by_ecr_oci(
    push_image, ecr, cosign, keys, client, tmp_path
) -> None:
    pushed = push_image("att-custom")
    predicate = {"scanner": "test", "findings": [], "nested": {"ok": True, "n": 3}}
    (tmp_path / "predicate.json").write_text(json.dumps(predicate))
    args = (
        "attest",
        pushed.text,
        "--key",
        str(keys.private),
        "--predicate",
        str(tmp_path / "predicate.json"),
        "--type",
        CUSTOM_TYPE,
        "--insecure",
        "--json",
    )
    first = json.loads(ecr(*args).stdout)
    assert first["added"] is True and first["digest"] == str(pushed.digest)
    assert first["tag"] == f"{pushed.digest.tag_form}.att"

    done = cosign.verify_attestation(pushed.text, keys, CUSTOM_TYPE)
    assert done.returncode == 0, done.stderr
    [statement] = cosign_statements(done)
    assert statement["predicate"] == predicate
    assert statement["subject"][0]["digest"] == {"sha256": pushed.digest.hex}

    # again: idempotent, no second layer
    again = json.loads(ecr(*args).stdout)
    assert again["added"] is False and again["layer"] == first["layer"]
    assert len(att_layers(client, pushed)) == 1
    assert ecr_verify(ecr, pushed, keys, CUSTOM_TYPE)["predicate"] == predicate


def test_cosign_verifies_slsa_provenance_built_from_a_push(
    push_image, cosign, keys, client, base_image, ecr
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
        ci=ci_context_from_env(
            {
                "GITHUB_ACTIONS": "true",
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_REPOSITORY": "waggle-sensor/hello-sensor",
                "GITHUB_RUN_ID": "7",
            }
        ),
        bundle_digest=Digest.parse(pushed.result["bundle"]),
        layers={layer["role"]: Digest.parse(layer["digest"]) for layer in layers},
    )
    attest_image(client, pushed.ref, keys.private_key(), predicate=predicate, predicate_type=SLSA_TYPE)

    for type_name in (SLSA_TYPE, "slsaprovenance1"):  # cosign's short name for the same URI
        done = cosign.verify_attestation(pushed.text, keys, type_name)
        assert done.returncode == 0, done.stderr
        [statement] = cosign_statements(done)
        assert statement["predicateType"] == SLSA_TYPE
        assert statement["predicate"] == predicate
    verified = ecr_verify(ecr, pushed, keys, SLSA_TYPE)
    dependencies = verified["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert dependencies[1]["digest"] == {"sha256": base_digest.hex}
    assert dependencies[0]["digest"] == {"gitCommit": "ab" * 20}


def test_cosign_verifies_an_approval_and_its_policy_accepts_it(
    push_image, ecr, cosign, keys, tmp_path
) -> None:
    pushed = push_image("att-approval")
    ecr_approve(ecr, pushed, keys, "prod", "--expires", "30d", "--note", "reviewed")
    verified = ecr_verify(ecr, pushed, keys, APPROVAL_TYPE, "--deployment", "prod")
    assert verified["predicateType"] == approval_type("prod") == f"{APPROVAL_TYPE}/prod"
    assert verified["approval"]["deployment"] == "prod"
    assert verified["approval"]["note"] == "reviewed"
    # the deployment's own type, given alone, is the same check
    assert ecr_verify(ecr, pushed, keys, approval_type("prod"))["approval"] == verified["approval"]

    done = cosign.verify_attestation(pushed.text, keys, approval_type("prod"))
    assert done.returncode == 0, done.stderr
    policies_admit(cosign, pushed, keys, tmp_path, "prod")


def test_approved_for_two_deployments_verifies_for_each(
    push_image, ecr, cosign, keys, client, tmp_path
) -> None:
    """The normal flow: approved for testbed, later also for production. Each deployment's check
    passes, in ecr-oci and in cosign under the policies' conditions, because each policy asks for
    its deployment's own type and so never judges the other approval."""
    pushed = push_image("att-two-deployments")
    for deployment in ("testbed", "production"):
        ecr_approve(ecr, pushed, keys, deployment)
    assert att_types(client, pushed) == [approval_type("testbed"), approval_type("production")]

    for deployment in ("testbed", "production"):
        verified = ecr_verify(ecr, pushed, keys, APPROVAL_TYPE, "--deployment", deployment)
        assert verified["approval"]["deployment"] == deployment, verified
        judged = policies_admit(cosign, pushed, keys, tmp_path, deployment)
        # one statement per policy: the other deployment's approval was not judged
        assert [statement["predicate"]["deployment"] for statement in judged] == [deployment] * 3

    # a deployment it is not approved for is refused by both
    refused = ecr_verify(ecr, pushed, keys, APPROVAL_TYPE, "--deployment", "field")
    assert refused["reason"] == "wrong-deployment"
    assert "approved for production, testbed, not for deployment 'field'" in refused["message"]
    assert refused["predicateType"] == approval_type("field")
    done = cosign.verify_attestation(pushed.text, keys, approval_type("field"))
    assert done.returncode != 0 and "none of the attestations matched" in done.stderr, done.stderr


def test_one_shared_type_would_refuse_an_image_approved_twice(
    push_image, cosign, keys, client, tmp_path
) -> None:
    """Why the type is per deployment: cosign (like Kyverno and policy-controller) applies the
    policy to every attestation of the type, so two approvals under one type fail both policies."""
    pushed = push_image("att-shared-type")
    shared = "https://example.com/ecr-oci-test/shared-approval/v1"
    statements = [
        statement_about(pushed, shared, {"deployment": name, "approvedAt": "2025-01-01T00:00:00Z"})
        for name in ("testbed", "production")
    ]
    write_att(client, pushed, [(signed(statement, keys), shared) for statement in statements])
    assert cosign.verify_attestation(pushed.text, keys, shared).returncode == 0  # no policy: fine
    for deployment in ("testbed", "production"):
        policy = tmp_path / f"{deployment}.cue"
        policy.write_text(f'predicate: deployment: "{deployment}"\n')
        done = cosign.verify_attestation(pushed.text, keys, shared, "--policy", str(policy))
        assert done.returncode != 0, f"cosign admitted {deployment} under a shared type:\n{done.stdout}"
        assert "validation errors" in done.stderr, done.stderr  # the policy refused, nothing else


# --- ecr-oci verifies what cosign attested -------------------------------------------------------


def test_ecr_oci_verifies_what_cosign_attested_and_appends_beside_it(
    push_image, ecr, cosign, keys, client, tmp_path
) -> None:
    pushed = push_image("att-from-cosign")
    predicate = {"from": "cosign", "list": [1, 2, 3]}
    (tmp_path / "p.json").write_text(json.dumps(predicate))
    approval = {"deployment": "prod", "approvedAt": "2025-01-01T00:00:00Z"}
    (tmp_path / "a.json").write_text(json.dumps(approval))
    for type_uri, path in ((CUSTOM_TYPE, "p.json"), (approval_type("prod"), "a.json")):
        cosign.attest(pushed.text, keys, type_uri, tmp_path / path)

    assert ecr_verify(ecr, pushed, keys, CUSTOM_TYPE)["predicate"] == predicate
    verified = ecr_verify(ecr, pushed, keys, APPROVAL_TYPE, "--deployment", "prod")
    assert verified["approval"] == approval

    # ecr-oci appends to cosign's manifest; both tools then see all three attestations
    key = keys.private_key()
    attest_image(client, pushed.ref, key, predicate={"from": "ecr-oci"}, predicate_type=SLSA_TYPE)
    assert att_types(client, pushed) == [CUSTOM_TYPE, approval_type("prod"), SLSA_TYPE]
    for type_uri in (CUSTOM_TYPE, approval_type("prod"), SLSA_TYPE):
        assert cosign.verify_attestation(pushed.text, keys, type_uri).returncode == 0, type_uri
    assert ecr_verify(ecr, pushed, keys, CUSTOM_TYPE)["predicate"] == predicate


# --- negative: each fails in ecr-oci and in cosign -----------------------------------------------


@dataclass(frozen=True)
class Case:
    """What a tampering needs: the image it targets and the means to write beside it."""

    client: RegistryClient
    pushed: Pushed
    keys: KeyFiles  # what the verifiers trust
    other_keys: KeyFiles  # another key pair (made by ecr-oci)
    push_image: Callable[[str], Pushed]

    def write(self, statement: Statement, *, claimed: str = CUSTOM_TYPE) -> None:
        """Make the ``.att`` manifest one layer: ``statement`` signed with the trusted key."""
        write_att(self.client, self.pushed, [(signed(statement, self.keys), claimed)])

    def attest(self, key: KeyFiles, predicate_type: str = CUSTOM_TYPE) -> None:
        attest_image(
            self.client, self.pushed.ref, key.private_key(), predicate={"a": 1}, predicate_type=predicate_type
        )


def tampered_payload(case: Case) -> None:
    statement = statement_about(case.pushed, CUSTOM_TYPE, {"approved": False})
    envelope = sign_statement(statement, case.keys.private_key())
    changed = Statement(statement.subjects, CUSTOM_TYPE, {"approved": True}).to_bytes()
    tampered = Envelope(envelope.payload_type, changed, envelope.signatures)
    write_att(case.client, case.pushed, [(tampered.to_bytes(), CUSTOM_TYPE)])


def statement_for_another_digest(case: Case) -> None:
    case.write(statement_about(case.pushed, CUSTOM_TYPE, {"a": 1}, Digest.of(b"another image")))


def attestation_by_another_key(case: Case) -> None:
    case.attest(case.other_keys)


def attestation_moved_from_another_image(case: Case) -> None:
    source, target = case.push_image("att-moved-source"), case.pushed
    attest_image(
        case.client, source.ref, case.keys.private_key(), predicate={"a": 1}, predicate_type=CUSTOM_TYPE
    )
    raw = case.client.get_manifest(source.ref.repository, attestation_tag(source.digest))
    manifest = raw.as_manifest()
    for descriptor in [*manifest.layers, manifest.config]:  # blobs are per repository
        data = case.client.get_blob(source.ref.repository, descriptor.digest)
        case.client.push_blob_bytes(target.ref.repository, data)
    case.client.put_manifest(target.ref.repository, attestation_tag(target.digest), raw.data, raw.media_type)


def malformed_envelope(case: Case) -> None:
    garbage = b'{"payloadType": "application/vnd.in-toto+json", "payload": "%%%"'
    write_att(case.client, case.pushed, [(garbage, CUSTOM_TYPE)])


def index_as_attestation_manifest(case: Case) -> None:
    index = Index(manifests=[])
    case.client.put_manifest(
        case.pushed.ref.repository, attestation_tag(case.pushed.digest), index.to_bytes(), index.mediaType
    )


def signed_statement_of_another_type(case: Case) -> None:
    """The layer annotation claims the type; the signed statement is of another."""
    case.write(statement_about(case.pushed, SLSA_TYPE, {"a": 1}), claimed=CUSTOM_TYPE)


def no_attestation_at_all(case: Case) -> None:
    pass


def attestations_of_other_types_only(case: Case) -> None:
    case.attest(case.keys, SLSA_TYPE)


#: name → (tampering, ecr-oci's reason, what cosign 2.6.1 says: its verdict, not a setup failure)
NEGATIVE: dict[str, tuple[Callable[[Case], None], str, str]] = {
    "tampered-payload": (tampered_payload, "wrong-key", "accepted signatures do not match threshold"),
    "statement-for-another-digest": (
        statement_for_another_digest,
        "digest-mismatch",
        "no matching subject digest found",
    ),
    "attestation-by-another-key": (
        attestation_by_another_key,
        "wrong-key",
        "accepted signatures do not match threshold",
    ),
    "attestation-moved-from-another-image": (
        attestation_moved_from_another_image,
        "digest-mismatch",
        "no matching subject digest found",
    ),
    "malformed-envelope": (malformed_envelope, "malformed", "unexpected end of JSON input"),
    # cosign takes an index under the tag for a multi-arch image and looks for a platform in it
    "index-as-attestation-manifest": (index_as_attestation_manifest, "malformed", "no child with platform"),
    "signed-statement-of-another-type": (
        signed_statement_of_another_type,
        "wrong-type",
        "none of the attestations matched the predicate type",
    ),
    "no-attestation-at-all": (no_attestation_at_all, "no-attestation", "no matching attestations"),
    "attestations-of-other-types-only": (
        attestations_of_other_types_only,
        "no-attestation",
        "none of the attestations matched the predicate type",
    ),
}


def both_refuse(
    ecr: Runner,
    cosign: Cosign,
    pushed: Pushed,
    key: KeyFiles,
    predicate_type: str,
    reason: str,
    cosign_says: str,
    *ecr_extra: str,
) -> None:
    """ecr-oci refuses with ``reason``, and cosign refuses the same type saying ``cosign_says``."""
    result = ecr_verify(ecr, pushed, key, predicate_type, *ecr_extra)
    assert result["verified"] is False
    assert result["reason"] == reason, result["message"]
    assert pushed.digest.hex in result["message"]  # it names the image
    done = cosign.verify_attestation(pushed.text, key, predicate_type)
    assert done.returncode != 0, f"cosign accepted it:\n{done.stdout}"
    assert cosign_says in done.stderr, done.stderr
    assert "TUF" not in done.stderr  # it stayed offline


def both_accept(ecr: Runner, cosign: Cosign, pushed: Pushed, key: KeyFiles, predicate_type: str) -> None:
    """ecr-oci and cosign both verify an attestation of ``predicate_type`` by ``key``."""
    result = ecr_verify(ecr, pushed, key, predicate_type)
    assert result["verified"] is True, result
    done = cosign.verify_attestation(pushed.text, key, predicate_type)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", list(NEGATIVE))
def test_fails_in_ecr_oci_and_in_cosign(name, push_image, ecr, cosign, keys, ecr_keys, client) -> None:
    tamper, reason, cosign_says = NEGATIVE[name]
    pushed = push_image(f"att-{name}")
    tamper(Case(client, pushed, keys, ecr_keys, push_image))
    both_refuse(ecr, cosign, pushed, keys, CUSTOM_TYPE, reason, cosign_says)


def test_another_key_is_accepted_with_its_own_public_key(push_image, ecr, cosign, ecr_keys, client) -> None:
    """The other side of "attestation-by-another-key": ecr-oci's key files, in both tools."""
    case = Case(client, push_image("att-ecr-key"), ecr_keys, ecr_keys, push_image)
    case.attest(ecr_keys)
    both_accept(ecr, cosign, case.pushed, ecr_keys, CUSTOM_TYPE)


def test_attesting_replaces_a_malformed_attestation_manifest(push_image, ecr, cosign, keys, client) -> None:
    """The garbage under the tag held no usable attestation, so writing one replaces it."""
    case = Case(client, push_image("att-repaired"), keys, keys, push_image)
    index_as_attestation_manifest(case)
    assert ecr_verify(ecr, case.pushed, keys, CUSTOM_TYPE)["reason"] == "malformed"
    case.attest(keys)
    both_accept(ecr, cosign, case.pushed, keys, CUSTOM_TYPE)


def test_approval_annotation_on_a_statement_of_another_type_fails(
    push_image, ecr, cosign, keys, client
) -> None:
    """The layer claims prod's approval type; the signed statement is of another type."""
    pushed = push_image("att-wrong-type")
    predicate = {"deployment": "prod", "approvedAt": "2025-01-01T00:00:00Z"}
    statement = statement_about(pushed, CUSTOM_TYPE, predicate)
    Case(client, pushed, keys, keys, push_image).write(statement, claimed=approval_type("prod"))
    says = NEGATIVE["signed-statement-of-another-type"][2]
    both_refuse(ecr, cosign, pushed, keys, APPROVAL_TYPE, "wrong-type", says, "--deployment", "prod")
    both_refuse(ecr, cosign, pushed, keys, approval_type("prod"), "wrong-type", says)


# --- approvals: expiry and deployment (cosign judges them through a policy) ---------------------


def test_expired_approval_fails(push_image, ecr, cosign, keys, client, tmp_path) -> None:
    pushed = push_image("att-expired")
    then = datetime(2024, 1, 1, tzinfo=UTC)
    approve_image(
        client, pushed.ref, keys.private_key(), deployment="prod", now=then, expires=then + timedelta(days=30)
    )
    result = ecr_verify(ecr, pushed, keys, APPROVAL_TYPE, "--deployment", "prod")
    assert result["reason"] == "expired", result["message"]
    assert "2024-01-31T00:00:00Z" in result["message"]
    done = ecr(
        "verify-attestation",
        pushed.text,
        "--key",
        str(keys.public),
        "--type",
        APPROVAL_TYPE,
        "--deployment",
        "prod",
        "--insecure",
        check=False,
    )
    assert done.returncode == 4 and "expired" in done.stderr and "Traceback" not in done.stderr

    # cosign checks signature and subject only: without a policy it accepts the expired approval,
    # and so do the admission policies (they cannot tell the time); the documented Rego refuses it
    assert cosign.verify_attestation(pushed.text, keys, approval_type("prod")).returncode == 0
    (tmp_path / "prod.rego").write_text(documented_rego("prod"))
    done = cosign.verify_attestation(
        pushed.text, keys, approval_type("prod"), "--policy", str(tmp_path / "prod.rego")
    )
    assert done.returncode != 0 and "validation errors" in done.stderr

    # a fresh approval for the same deployment makes it valid again, in both
    ecr_approve(ecr, pushed, keys, "prod", "--expires", "2099-12-31")
    valid = ecr_verify(ecr, pushed, keys, APPROVAL_TYPE, "--deployment", "prod")
    assert valid["approval"]["expires"] == "2100-01-01T00:00:00Z"


def test_approval_for_another_deployment_fails(push_image, ecr, cosign, keys, tmp_path) -> None:
    """An approval for dev does not satisfy prod: not in ecr-oci, not in cosign asking for prod's
    type, and not even when cosign is pointed at dev's type with prod's policy."""
    pushed = push_image("att-deployment")
    ecr_approve(ecr, pushed, keys, "dev")
    assert ecr_verify(ecr, pushed, keys, APPROVAL_TYPE, "--deployment", "dev")["verified"]

    says = "none of the attestations matched the predicate type"  # it has dev's type only
    both_refuse(ecr, cosign, pushed, keys, approval_type("prod"), "wrong-deployment", says)
    result = ecr_verify(ecr, pushed, keys, APPROVAL_TYPE, "--deployment", "prod")
    assert "approved for dev, not for deployment 'prod'" in result["message"]

    assert cosign.verify_attestation(pushed.text, keys, approval_type("dev")).returncode == 0  # no policy
    policies_refuse(cosign, pushed, keys, tmp_path, policy_for="prod", predicate_type=approval_type("dev"))


def test_approval_whose_type_and_deployment_disagree_fails(
    push_image, ecr, cosign, keys, client, tmp_path
) -> None:
    """Defence in depth: a statement of prod's type whose predicate names dev (made by hand, with
    the right key) is refused by ecr-oci and by the policies' conditions, not admitted by its type."""
    pushed = push_image("att-disagree")
    statement = statement_about(
        pushed, approval_type("prod"), {"deployment": "dev", "approvedAt": "2025-01-01T00:00:00Z"}
    )
    write_att(client, pushed, [(signed(statement, keys), approval_type("prod"))])
    result = ecr_verify(ecr, pushed, keys, APPROVAL_TYPE, "--deployment", "prod")
    assert result["reason"] == "wrong-deployment"
    assert "names deployment dev in its predicate" in result["message"]
    policies_refuse(cosign, pushed, keys, tmp_path, policy_for="prod", predicate_type=approval_type("prod"))


def test_cli_refuses_bad_input_with_one_line(push_image, ecr, keys, tmp_path) -> None:
    pushed = push_image("att-cli")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "object.json").write_text("{}")
    private, public = str(keys.private), str(keys.public)
    a_list, an_object = str(tmp_path / "list.json"), str(tmp_path / "object.json")
    cases = [  # command, key, more arguments
        ("attest", private, "--predicate", a_list, "--type", CUSTOM_TYPE),
        ("attest", private, "--predicate", a_list, "--type", "custom"),
        ("attest", public, "--predicate", an_object, "--type", CUSTOM_TYPE),
        ("approve", private, "--deployment", "bad name"),
        ("approve", private, "--deployment", "prod", "--expires", "soon"),
        ("verify-attestation", public, "--type", APPROVAL_TYPE),  # which deployment?
        ("verify-attestation", public, "--type", APPROVAL_TYPE, "--deployment", "bad/name"),
        ("verify-attestation", public, "--type", approval_type("prod"), "--deployment", "dev"),
        ("verify-attestation", public, "--type", CUSTOM_TYPE, "--deployment", "prod"),
    ]
    for command, key, *more in cases:
        done = ecr(command, pushed.text, "--key", key, "--insecure", *more, check=False)
        assert done.returncode == 2, (command, more, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.startswith(("Usage:", "error:")), done.stderr


def test_an_approval_by_any_of_several_keys_is_found_reading_once(
    push_image, ecr, keys, ecr_keys, client, registry
) -> None:
    """The admission webhook's trusted keys: one verify_approval for all of them, and the image's
    attestations read once, however many keys there are."""
    pushed = push_image("att-several-keys")
    ecr_approve(ecr, pushed, ecr_keys, "prod")
    now = datetime.now(UTC)
    with pytest.raises(VerificationError) as caught:
        verify_approval(client, pushed.ref, [keys.public_key()], deployment="prod", now=now)
    assert caught.value.reason == "wrong-key"

    def requests_for(public_keys: list[Any]) -> int:
        offset = registry.log_offset()
        approved = verify_approval(client, pushed.ref, public_keys, deployment="prod", now=now)
        assert approved.approval.deployment == "prod"
        return len([r for r in registry.responses(offset, settle=0.2) if "/att-several-keys/" in r.path])

    several = [keys.public_key(), keys.public_key(), ecr_keys.public_key()]
    with_several = requests_for(several)
    assert with_several > 0 and with_several == requests_for([ecr_keys.public_key()])
