"""Rendered admission policies parse, match the upstream schemas, work offline, refuse bad input.

The CRD schemas are copies kept in ``tests/policy_schemas`` (README there: where each comes from).
A CRD schema does not forbid unknown fields (the API server drops them silently), so besides
``jsonschema`` validation every rendered field must also be declared by the schema: a misspelt
``ignoreTlog`` would otherwise vanish on ``kubectl apply`` and the policy would go online.
"""

from __future__ import annotations

import base64
import doctest
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import ecr_oci.policy
import ecr_oci.policy.render
from ecr_oci.errors import InvalidReferenceError, KeyFileError, PolicyInputError
from ecr_oci.mediatypes import approval_type
from ecr_oci.policy import FORMATS, TEMPLATES, policies_folder, render_policy, write_rendered
from tests.fixtures.tools import need

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "tests" / "policy_schemas"
REGISTRY = "ecr.example.org:5000"
DEPLOYMENT = "sage-prod"
#: The engines judge every attestation of the type they look for: the policy must name this
#: deployment's own approval type, never the shared base.
APPROVAL_TYPE = approval_type(DEPLOYMENT)


def public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def pem() -> bytes:
    return public_pem(ec.generate_private_key(ec.SECP256R1()))


def render(fmt: str, pem: bytes, **kwargs: Any) -> dict[str, bytes]:
    args: dict[str, Any] = {"registry": REGISTRY, "deployment": DEPLOYMENT, **kwargs}
    return render_policy(fmt, public_key_pem=pem, **args)  # type: ignore[arg-type]


def load_crd(name: str) -> dict[str, Any]:
    crd: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return crd


KYVERNO_CRD = "kyverno.io_clusterpolicies.v1.json"
POLICY_CONTROLLER_CRD = "policy.sigstore.dev_clusterimagepolicies.v1beta1.json"


def undeclared_fields(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Fields of ``value`` that ``schema`` does not declare: what the API server would prune."""
    assert not schema.get("x-ecr-pruned"), (
        f"{path}: rendered, but its schema was pruned from tests/policy_schemas; copy it in"
    )
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                found += undeclared_fields(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += undeclared_fields(item, extra, f"{path}.{key}")
            else:
                found.append(f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += undeclared_fields(item, schema["items"], f"{path}[{index}]")
    return found


def check_against_crd(document: dict[str, Any], crd: dict[str, Any]) -> None:
    """What ``kubectl apply --validate=strict`` checks for a custom resource, from the CRD alone."""
    assert document["apiVersion"] == f"{crd['group']}/{crd['version']}"
    assert document["kind"] == crd["kind"]
    assert crd["served"] is True
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", document["metadata"]["name"])
    schema = crd["openAPIV3Schema"]
    jsonschema.Draft4Validator(schema).validate(document)
    assert undeclared_fields(document["spec"], schema["properties"]["spec"], "spec") == []


def walk(node: Any) -> list[tuple[str, Any]]:
    """Every (key, value) pair anywhere in a parsed document."""
    pairs: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            pairs.append((key, value))
            pairs += walk(value)
    elif isinstance(node, list):
        for item in node:
            pairs += walk(item)
    return pairs


# --- Kyverno ---------------------------------------------------------------------------------------


def test_kyverno_policy_matches_the_clusterpolicy_crd(pem: bytes) -> None:
    files = render("kyverno", pem)
    assert list(files) == ["clusterpolicy.yaml"]
    policy = yaml.safe_load(files["clusterpolicy.yaml"])
    check_against_crd(policy, load_crd(KYVERNO_CRD))
    assert policy["metadata"]["name"] == "ecr-signed-and-approved"


def test_kyverno_requires_signature_and_approval_for_the_deployment(pem: bytes) -> None:
    policy = yaml.safe_load(render("kyverno", pem)["clusterpolicy.yaml"])
    assert policy["spec"]["validationFailureAction"] == "Enforce"
    (rule,) = policy["spec"]["rules"]
    assert rule["match"] == {"any": [{"resources": {"kinds": ["Pod"]}}]}
    (verify,) = rule["verifyImages"]
    assert verify["imageReferences"] == [f"{REGISTRY}/*"]
    assert verify["type"] == "Cosign"
    assert (verify["mutateDigest"], verify["verifyDigest"], verify["required"]) == (True, True, True)
    assert verify["attestors"][0]["entries"][0]["keys"]["publicKeys"] == pem.decode()
    (attestation,) = verify["attestations"]
    assert attestation["type"] == APPROVAL_TYPE
    assert attestation["attestors"][0]["entries"][0]["keys"]["publicKeys"] == pem.decode()
    (condition,) = attestation["conditions"][0]["all"]
    assert (condition["key"], condition["operator"], condition["value"]) == (
        "{{ deployment }}",
        "Equals",
        DEPLOYMENT,
    )


def test_kyverno_works_offline(pem: bytes) -> None:
    """Every key entry skips Rekor and the CT log; nothing keyless or certificate-based."""
    policy = yaml.safe_load(render("kyverno", pem)["clusterpolicy.yaml"])
    keys = [value for key, value in walk(policy) if key == "keys"]
    assert len(keys) == 2  # the image signature and the approval attestation
    for entry in keys:
        assert entry["rekor"] == {"ignoreTlog": True}
        assert entry["ctlog"] == {"ignoreSCT": True}
    names = {key for key, _ in walk(policy)}
    assert not names & {"keyless", "certificates", "url", "roots", "kms", "secret"}


# --- sigstore policy-controller --------------------------------------------------------------------


def test_policy_controller_policy_matches_the_clusterimagepolicy_crd(pem: bytes) -> None:
    files = render("policy-controller", pem, name="sage-prod-images")
    assert list(files) == ["clusterimagepolicy.yaml"]
    policy = yaml.safe_load(files["clusterimagepolicy.yaml"])
    check_against_crd(policy, load_crd(POLICY_CONTROLLER_CRD))
    assert policy["metadata"]["name"] == "sage-prod-images"


def test_policy_controller_requires_both_authorities(pem: bytes) -> None:
    """One passing authority admits an image, and an authority with attestations checks no
    signature: so two authorities, and the CIP-level policy names both."""
    spec = yaml.safe_load(render("policy-controller", pem)["clusterimagepolicy.yaml"])["spec"]
    assert spec["images"] == [{"glob": f"{REGISTRY}/**"}]
    assert spec["mode"] == "enforce"
    signature, approval = spec["authorities"]
    assert "attestations" not in signature
    (attestation,) = approval["attestations"]
    assert attestation["predicateType"] == APPROVAL_TYPE
    assert attestation["policy"]["type"] == "rego"
    rego = attestation["policy"]["data"]
    assert f'input.predicate.deployment == "{DEPLOYMENT}"' in rego
    assert f'input.predicateType == "{APPROVAL_TYPE}"' in rego
    assert rego.startswith("package sigstore\n") and "default isCompliant = false" in rego

    cip = spec["policy"]
    assert cip["type"] == "rego"
    assert f"input.authorityMatches.{signature['name']}.signatures" in cip["data"]
    assert f"input.authorityMatches.{approval['name']}.attestations.{attestation['name']}" in cip["data"]


def test_policy_controller_works_offline(pem: bytes) -> None:
    spec = yaml.safe_load(render("policy-controller", pem)["clusterimagepolicy.yaml"])["spec"]
    for authority in spec["authorities"]:
        assert authority["key"] == {"hashAlgorithm": "sha256", "data": pem.decode()}
        assert not authority.keys() & {"ctlog", "keyless", "rfc3161timestamp", "source", "static"}
    for policy in (spec["policy"], spec["authorities"][1]["attestations"][0]["policy"]):
        assert set(policy) == {"type", "data"}  # inline: no remote URL, no ConfigMap


# --- containers policy.json + registries.d ---------------------------------------------------------


def test_containers_policy_matches_the_man_page_schema(pem: bytes) -> None:
    files = render("containers", pem)
    assert list(files) == ["policy.json", "registries.d/ecr.yaml"]
    policy = json.loads(files["policy.json"])
    schema = json.loads((SCHEMAS / "containers-policy.json.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(policy)

    assert policy["default"] == [{"type": "reject"}]
    assert list(policy["transports"]) == ["docker"]
    (requirement,) = policy["transports"]["docker"][REGISTRY]
    assert requirement["type"] == "sigstoreSigned"
    assert requirement["signedIdentity"] == {"type": "matchRepository"}
    # Offline: the key only (keyData, the base64 of cosign.pub); no Fulcio, no Rekor key.
    assert set(requirement) == {"type", "keyData", "signedIdentity"}
    assert base64.b64decode(requirement["keyData"], validate=True) == pem


def test_containers_registries_d_reads_sigstore_attachments(pem: bytes) -> None:
    text = render("containers", pem)["registries.d/ecr.yaml"]
    assert yaml.safe_load(text) == {"docker": {REGISTRY: {"use-sigstore-attachments": True}}}


def test_the_containers_schema_has_teeth(pem: bytes) -> None:
    schema = json.loads((SCHEMAS / "containers-policy.json.schema.json").read_text())
    policy = json.loads(render("containers", pem)["policy.json"])
    requirement = policy["transports"]["docker"][REGISTRY][0]
    for broken in (
        {**requirement, "keyPath": "/etc/cosign.pub"},  # both keyPath and keyData
        {**requirement, "rekorPublicKeyData": "eA=="},  # not in containers/image 5.23
        {**requirement, "signedIdentity": {"type": "matchRepo"}},
    ):
        policy["transports"]["docker"][REGISTRY] = [broken]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(policy, schema, cls=jsonschema.Draft7Validator)


def dir_image(directory: Path) -> Path:
    """A minimal ``dir:`` image (manifest + config, no layers), for skopeo to read."""
    directory.mkdir()
    rootfs = {"type": "layers", "diff_ids": []}
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": rootfs})
    digest = hashlib.sha256(config.encode()).hexdigest()
    (directory / digest).write_text(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{digest}",
            "size": len(config),
        },
        "layers": [],
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    (directory / "version").write_text("Directory Transport Version: 1.1\n")
    return directory


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("skopeo"), *args], capture_output=True, text=True, timeout=60, check=False)


def test_containers_image_loads_the_rendered_files(pem: bytes, tmp_path: Path) -> None:
    """The real containers/image (skopeo) parses both files; its policy parser is strict, so a
    file it loads has no field it does not know. Debian 12's build still parses sigstoreSigned
    (it refuses only when verifying: "Debian-local change: sigstore disabled")."""
    registry = "127.0.0.1:1"  # nothing listens there: registries.d is read before connecting
    write_rendered(render("containers", pem, registry=registry), tmp_path / "out")
    policy = tmp_path / "out" / "policy.json"
    source = dir_image(tmp_path / "image")

    # The default requirement is reached and applied: reject.
    result = skopeo("--policy", str(policy), "copy", f"dir:{source}", f"dir:{tmp_path / 'copy'}")
    assert result.returncode != 0
    assert "is rejected by policy" in result.stderr, result.stderr

    # Control: the same file with one unknown field does not even load.
    broken = json.loads(policy.read_text())
    broken["transports"]["docker"][registry][0]["keyDatum"] = "eA=="
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    result = skopeo("--policy", str(tmp_path / "broken.json"), "copy", f"dir:{source}", "dir:/nonexistent")
    assert "Unknown key" in result.stderr, result.stderr

    # registries.d parses (a YAML error would be reported here, before the connection).
    result = skopeo(
        "--policy",
        str(policy),
        "--registries.d",
        str(tmp_path / "out" / "registries.d"),
        "copy",
        "--src-tls-verify=false",
        f"docker://{registry}/waggle/hello:1",
        f"dir:{tmp_path / 'pulled'}",
    )
    assert result.returncode != 0
    assert "connection refused" in result.stderr, result.stderr
    assert "registries.d" not in result.stderr and "yaml" not in result.stderr.lower()


# --- the templates and the renderer ----------------------------------------------------------------


def test_every_template_is_rendered_and_parses_as_shipped() -> None:
    folder = policies_folder()
    assert folder == ROOT / "policies"
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*.tmpl")}
    listed = {template for pairs in TEMPLATES.values() for template, _ in pairs}
    assert on_disk == listed
    assert set(TEMPLATES) == set(FORMATS)
    for template in listed:
        text = (folder / template).read_text()
        parsed = json.loads(text) if template.endswith(".json.tmpl") else yaml.safe_load(text)
        assert parsed, template
    assert (folder / "README.md").is_file()


def test_yaml_files_name_their_template_and_key(pem: bytes) -> None:
    text = render("kyverno", pem)["clusterpolicy.yaml"].decode()
    assert text.startswith(
        "# Rendered by `ecr-oci policy render --format kyverno` from "
        "policies/kyverno/clusterpolicy.yaml.tmpl\n"
    )
    der = serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert hashlib.sha256(der).hexdigest() in text.splitlines()[2]


def test_the_key_is_written_as_a_block_scalar_and_normalised(pem: bytes) -> None:
    messy = b"\r\n".join(pem.splitlines()) + b"\r\n\r\n"
    text = render("policy-controller", messy)["clusterimagepolicy.yaml"].decode()
    assert "data: |\n        -----BEGIN PUBLIC KEY-----\n" in text
    assert "\r" not in text
    spec = yaml.safe_load(text)["spec"]
    assert spec["authorities"][0]["key"]["data"] == pem.decode()


def test_deployment_names_approvals_allow_render_exactly(pem: bytes) -> None:
    """The deployment lands in the condition and in the approval type, which is its own."""
    for deployment in ("Sage.Prod_2", "123", "a", "x" * 128):
        kyverno = yaml.safe_load(render("kyverno", pem, deployment=deployment)["clusterpolicy.yaml"])
        (attestation,) = kyverno["spec"]["rules"][0]["verifyImages"][0]["attestations"]
        assert attestation["conditions"][0]["all"][0]["value"] == deployment
        assert attestation["type"] == f"https://ecr.waggle-sensor.org/attestations/approval/v1/{deployment}"
        rendered = render("policy-controller", pem, deployment=deployment)["clusterimagepolicy.yaml"]
        cip = yaml.safe_load(rendered)
        (cip_attestation,) = cip["spec"]["authorities"][1]["attestations"]
        assert cip_attestation["predicateType"] == attestation["type"]
        rego = cip_attestation["policy"]["data"]
        assert f'input.predicate.deployment == "{deployment}"\n' in rego
        assert f'input.predicateType == "{attestation["type"]}"\n' in rego


def test_localhost_and_ip_registries(pem: bytes) -> None:
    for registry in ("localhost", "localhost:5000", "127.0.0.1:5000", "ecr.waggle-sensor.org"):
        policy = json.loads(render("containers", pem, registry=registry)["policy.json"])
        assert list(policy["transports"]["docker"]) == [registry]


def test_module_examples_run() -> None:
    for module in (ecr_oci.policy, ecr_oci.policy.render):
        assert doctest.testmod(module).failed == 0


# --- bad input ---------------------------------------------------------------------------------------


def test_a_key_that_is_not_pem(pem: bytes) -> None:
    with pytest.raises(KeyFileError, match="not a PEM file"):
        render("kyverno", b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI cosign")
    with pytest.raises(KeyFileError, match=r"cosign\.pub"):
        render("kyverno", b"", key_source="cosign.pub")


def test_an_rsa_key() -> None:
    rsa_pem = public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(KeyFileError, match=r"unsupported public key type .*RSA.*ECDSA P-256"):
        render("policy-controller", rsa_pem)


def test_a_p384_key_and_a_private_key() -> None:
    with pytest.raises(KeyFileError, match="P-256"):
        render("kyverno", public_pem(ec.generate_private_key(ec.SECP384R1())))
    private = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyFileError, match="PRIVATE KEY"):
        render("containers", private)


def test_a_corrupted_key(pem: bytes) -> None:
    corrupted = pem.replace(pem.splitlines()[1], b"A" * 64)
    with pytest.raises(KeyFileError, match="corrupted"):
        render("kyverno", corrupted)


@pytest.mark.parametrize(
    "registry",
    [
        "",
        "registry",  # no dot, no port: a Docker Hub namespace
        "https://ecr.example.org",
        "ecr.example.org/waggle",
        "ecr.example.org:5000/",
        "ecr example.org",
        "ecr.example.org:port",
        "[::1]:5000",
        "ecr.example.org/*",
        "ecr.example.org\n",
    ],
)
def test_a_bad_registry(pem: bytes, registry: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid registry") as info:
        render("kyverno", pem, registry=registry)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "deployment",
    ["", "-prod", "prod-", "sage prod", 'sage"prod', "sage*", "{{ deployment }}", "x" * 129, "ü", "prod\n"],
)
def test_a_bad_deployment(pem: bytes, deployment: str) -> None:
    with pytest.raises(PolicyInputError, match="invalid deployment") as info:
        render("policy-controller", pem, deployment=deployment)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("name", ["", "Ecr", "ecr_policy", "ecr.policy", "x" * 64, "ecr\n"])
def test_a_bad_policy_name(pem: bytes, name: str) -> None:
    with pytest.raises(PolicyInputError, match="invalid policy name"):
        render("kyverno", pem, name=name)


def test_an_unknown_format(pem: bytes) -> None:
    with pytest.raises(PolicyInputError, match="kyverno, policy-controller, containers"):
        render("opa", pem)


def test_the_crd_checks_have_teeth(pem: bytes) -> None:
    crd = load_crd(KYVERNO_CRD)
    policy = yaml.safe_load(render("kyverno", pem)["clusterpolicy.yaml"])
    keys = policy["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]["entries"][0]["keys"]
    keys["rekor"] = {"ignoreTLog": True}  # misspelt: the API server would drop it
    with pytest.raises(AssertionError):
        check_against_crd(policy, crd)
    keys["rekor"] = {"ignoreTlog": True}
    policy["spec"]["validationFailureAction"] = "Block"
    with pytest.raises(jsonschema.ValidationError):
        check_against_crd(policy, crd)
    policy["spec"]["validationFailureAction"] = "Enforce"
    policy["spec"]["rules"][0]["validate"] = {"message": "x"}  # pruned from our schema copy
    with pytest.raises(AssertionError, match="pruned"):
        check_against_crd(policy, crd)
