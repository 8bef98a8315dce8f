"""Signing against a real registry with the real cosign (v2.6.1, ``make install``) as the peer.

Both directions (cosign verifies what ecr-oci signed, ecr-oci verifies what cosign signed, with key
files made by either), every negative case failing in **both** tools, a 10-platform index, idempotent
re-signing, ``push --sign-key``, and the CLI's lines, exit codes and ``--json``. cosign, its offline
flags and the key pairs are the shared fixtures of ``tests/fixtures/cosign.py``.
"""

from __future__ import annotations

import json
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.devenv import LocalRegistry
from ecr_oci.digest import Digest
from ecr_oci.errors import VerificationError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.models import Descriptor, Index, Manifest, Platform, RawManifest
from ecr_oci.oci.referrers import list_referrers
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference
from ecr_oci.signing import store
from ecr_oci.signing.keys import generate_key_pair, load_private_key, sign_bytes
from ecr_oci.signing.sign import sign_image
from ecr_oci.signing.sigstore_bundle import BUNDLE_MEDIA_TYPE
from ecr_oci.signing.simplesigning import SimpleSigning
from ecr_oci.signing.verify import verify_image
from tests.fixtures.cosign import PASSWORD, Cosign, KeyFiles
from tests.integration.conftest import Runner, make_runner, push_json, write_bundle

pytestmark = pytest.mark.integration


@pytest.fixture(params=["ecr-keys", "cosign-keys"])
def keys(request: pytest.FixtureRequest, ecr_keys: KeyFiles, cosign_keys: KeyFiles) -> KeyFiles:
    """Each test runs with ecr-oci's key files and with cosign's."""
    return ecr_keys if request.param == "ecr-keys" else cosign_keys


# -- images ---------------------------------------------------------------------------------------


def push_image(
    client: RegistryClient,
    repo: str,
    *,
    arch: str = "amd64",
    variant: str | None = None,
    tag: str | None = None,
    salt: str = "",
) -> RawManifest:
    """A small image (one layer of bytes, a config for ``linux/arch``); it need not run."""
    layer = client.push_blob_bytes(repo, f"layer {arch} {variant} {salt}".encode())
    config = {
        "architecture": arch,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [str(layer.digest)]},
    }
    if variant:
        config["variant"] = variant
    config_desc = client.push_blob_bytes(repo, json.dumps(config).encode())
    manifest = Manifest(
        config=config_desc.model_copy(update={"mediaType": MediaType.OCI_CONFIG}),
        layers=[layer.model_copy(update={"mediaType": MediaType.OCI_LAYER_TAR})],
    )
    data = manifest.to_bytes()
    raw = RawManifest(MediaType.OCI_MANIFEST, Digest.of(data), data)
    client.put_manifest(repo, tag or raw.digest, data, raw.media_type)
    return raw


TEN_PLATFORMS = [
    ("amd64", None),
    ("arm64", "v8"),
    ("arm", "v7"),
    ("arm", "v6"),
    ("386", None),
    ("ppc64le", None),
    ("s390x", None),
    ("riscv64", None),
    ("mips64le", None),
    ("loong64", None),
]


def push_index(client: RegistryClient, repo: str, tag: str) -> tuple[RawManifest, list[Digest]]:
    children = []
    for arch, variant in TEN_PLATFORMS:
        raw = push_image(client, repo, arch=arch, variant=variant)
        children.append(raw.descriptor(platform=Platform(os="linux", architecture=arch, variant=variant)))
    data = Index(manifests=children).to_bytes()
    client.put_manifest(repo, tag, data, MediaType.OCI_INDEX)
    return RawManifest(MediaType.OCI_INDEX, Digest.of(data), data), [c.digest for c in children]


def ref_of(client: RegistryClient, repo: str, digest: Digest) -> str:
    return f"{client.host}/{repo}@{digest}"


def sig_layers(client: RegistryClient, repo: str, digest: Digest) -> list[store.SignatureLayer]:
    found = store.read_signatures(client, repo, digest)
    return found.layers if found else []


# -- both directions ------------------------------------------------------------------------------


def test_cosign_verifies_what_ecr_signed(client, repo, keys: KeyFiles, cosign: Cosign):
    image = push_image(client, repo, tag="1.0")
    signed = sign_image(client, Reference.parse(f"{client.host}/{repo}:1.0"), keys.private_key())
    assert [s.digest for s in signed] == [image.digest] and signed[0].added
    done = cosign.verify(f"{client.host}/{repo}:1.0", keys)
    assert done.returncode == 0, done.stderr
    claims = json.loads(done.stdout)
    assert claims[0]["critical"]["image"]["docker-manifest-digest"] == str(image.digest)
    assert claims[0]["critical"]["identity"]["docker-reference"] == f"{client.host}/{repo}"


def test_ecr_verifies_what_cosign_signed(client, repo, keys: KeyFiles, cosign: Cosign):
    image = push_image(client, repo, tag="1.0")
    cosign.sign(ref_of(client, repo, image.digest), keys)
    ref = Reference.parse(f"{client.host}/{repo}:1.0")
    result = verify_image(client, ref, keys.public_key(), identity=f"{client.host}/{repo}")
    assert result.digest == image.digest
    assert result.docker_reference == f"{client.host}/{repo}"


def test_cosign_payload_is_what_we_would_sign(client, repo, cosign: Cosign):
    image = push_image(client, repo)
    done = cosign.run(
        "generate", "--allow-http-registry", "-a", "b=<&>", "-a", "a=1", ref_of(client, repo, image.digest)
    )
    assert done.returncode == 0, done.stderr
    ours = SimpleSigning(f"{client.host}/{repo}", image.digest, {"b": "<&>", "a": "1"})
    assert done.stdout.encode() == ours.to_bytes()


def test_ecr_and_cosign_signatures_share_one_manifest(
    client, repo, ecr_keys: KeyFiles, cosign_keys: KeyFiles, cosign: Cosign
):
    image = push_image(client, repo)
    ref = ref_of(client, repo, image.digest)
    cosign.sign(ref, cosign_keys)
    sign_image(client, Reference.parse(ref), ecr_keys.private_key())
    assert len(sig_layers(client, repo, image.digest)) == 2
    for key in (ecr_keys, cosign_keys):
        assert cosign.verify(ref, key).returncode == 0
        verify_image(client, Reference.parse(ref), key.public_key())


# -- every way it must fail, in both tools ---------------------------------------------------------


@dataclass
class Case:
    client: RegistryClient
    repo: str
    key: ec.EllipticCurvePrivateKey
    target: RawManifest  # the image that gets verified
    other: RawManifest  # another image in the same repository

    @property
    def identity(self) -> str:
        return f"{self.client.host}/{self.repo}"

    def sign(self, raw: RawManifest) -> None:
        sign_image(self.client, Reference.parse(ref_of(self.client, self.repo, raw.digest)), self.key)

    def put_sig(self, subject: Digest, layers: list[Descriptor]) -> None:
        config = self.client.push_blob_bytes(self.repo, store.config_bytes(layers))
        manifest = Manifest(
            config=config.model_copy(update={"mediaType": MediaType.OCI_CONFIG}), layers=layers
        )
        self.client.put_manifest(
            self.repo, store.signature_tag(subject), manifest.to_bytes(), MediaType.OCI_MANIFEST
        )

    def rewrite_layer(self, **update: object) -> None:
        """Sign the target, then replace fields of its signature layer."""
        self.sign(self.target)
        layer = sig_layers(self.client, self.repo, self.target.digest)[0].descriptor
        self.put_sig(self.target.digest, [layer.model_copy(update=update)])

    def with_annotation(self, value: str) -> None:
        self.rewrite_layer(annotations={store.SIGNATURE_ANNOTATION: value})


def tampered_payload(case: Case) -> None:
    case.sign(case.target)
    layer = sig_layers(case.client, case.repo, case.target.digest)[0]
    payload = case.client.get_blob(case.repo, layer.descriptor.digest)
    changed = payload.replace(b'"optional":null', b'"optional":{"approved":"yes"}')
    blob = case.client.push_blob_bytes(case.repo, changed)
    case.put_sig(
        case.target.digest, [layer.descriptor.model_copy(update={"digest": blob.digest, "size": blob.size})]
    )


def payload_for_another_digest(case: Case) -> None:
    payload = SimpleSigning(case.identity, case.other.digest).to_bytes()
    store.attach_signature(case.client, case.repo, case.target.digest, payload, sign_bytes(case.key, payload))


def signature_from_another_key(case: Case) -> None:
    stranger = generate_key_pair(b"")
    other_key = load_private_key(stranger.private_pem, b"", source="other.key")
    sign_image(case.client, Reference.parse(ref_of(case.client, case.repo, case.target.digest)), other_key)


def signature_moved_from_another_image(case: Case) -> None:
    case.sign(case.other)
    raw = case.client.get_manifest(case.repo, store.signature_tag(case.other.digest))
    case.client.put_manifest(case.repo, store.signature_tag(case.target.digest), raw.data, raw.media_type)


def truncated_signature(case: Case) -> None:
    case.sign(case.target)
    value = sig_layers(case.client, case.repo, case.target.digest)[0].signature or ""
    case.with_annotation(value[:40])


def garbage_signature(case: Case) -> None:
    case.with_annotation("this is not base64!")


def empty_signature(case: Case) -> None:
    case.with_annotation("")


def index_as_signature_manifest(case: Case) -> None:
    data = Index(manifests=[case.target.descriptor()]).to_bytes()
    case.client.put_manifest(case.repo, store.signature_tag(case.target.digest), data, MediaType.OCI_INDEX)


def layer_without_annotation(case: Case) -> None:
    case.rewrite_layer(annotations=None)


NEGATIVE = {
    "tampered-payload": (tampered_payload, "wrong-key"),
    "payload-for-another-digest": (payload_for_another_digest, "digest-mismatch"),
    "signature-from-another-key": (signature_from_another_key, "wrong-key"),
    "signature-moved-from-another-image": (signature_moved_from_another_image, "digest-mismatch"),
    "truncated-signature-annotation": (truncated_signature, "malformed"),
    "garbage-signature-annotation": (garbage_signature, "malformed"),
    "empty-signature-annotation": (empty_signature, "malformed"),
    "index-as-signature-manifest": (index_as_signature_manifest, "malformed"),
    "layer-without-annotation": (layer_without_annotation, "malformed"),
}


@pytest.mark.parametrize("name", list(NEGATIVE))
def test_fails_in_ecr_and_in_cosign(client, repo, ecr_keys: KeyFiles, cosign: Cosign, name: str):
    tamper, reason = NEGATIVE[name]
    target, other = push_image(client, repo, salt="target"), push_image(client, repo, salt="other")
    tamper(Case(client, repo, ecr_keys.private_key(), target, other))
    ref = ref_of(client, repo, target.digest)
    with pytest.raises(VerificationError) as caught:
        verify_image(client, Reference.parse(ref), ecr_keys.public_key())
    assert caught.value.reason == reason, str(caught.value)
    assert str(target.digest) in str(caught.value)
    done = cosign.verify(ref, ecr_keys)
    assert done.returncode != 0, f"cosign accepted {name}:\n{done.stdout}"
    assert "no matching signatures" in done.stderr, done.stderr  # rejected, not a setup failure


def test_unsigned_and_wrong_identity(client, repo, ecr_keys: KeyFiles):
    image = push_image(client, repo, tag="1.0")
    ref = Reference.parse(f"{client.host}/{repo}:1.0")
    with pytest.raises(VerificationError) as caught:
        verify_image(client, ref, ecr_keys.public_key())
    assert caught.value.reason == "no-signature"
    sign_image(client, ref, ecr_keys.private_key())
    with pytest.raises(VerificationError) as caught:
        verify_image(client, ref, ecr_keys.public_key(), identity=f"{client.host}/other/name")
    assert caught.value.reason == "identity-mismatch"
    assert verify_image(client, ref, ecr_keys.public_key()).digest == image.digest


def test_a_good_signature_among_bad_ones_verifies(client, repo, ecr_keys: KeyFiles, cosign: Cosign):
    target, other = push_image(client, repo, salt="t"), push_image(client, repo, salt="o")
    case = Case(client, repo, ecr_keys.private_key(), target, other)
    payload_for_another_digest(case)
    signature_from_another_key(case)
    case.sign(target)
    assert len(sig_layers(client, repo, target.digest)) == 3
    ref = ref_of(client, repo, target.digest)
    verify_image(client, Reference.parse(ref), ecr_keys.public_key())
    assert cosign.verify(ref, ecr_keys).returncode == 0


def test_any_of_several_keys_verifies_and_the_signatures_are_read_once(
    client, repo, registry: LocalRegistry, ecr_keys: KeyFiles, cosign_keys: KeyFiles
):
    """The admission webhook's trusted keys: one call for all of them, one read of the registry."""
    push_image(client, repo, tag="1.0")
    ref = Reference.parse(f"{client.host}/{repo}:1.0")
    sign_image(client, ref, ecr_keys.private_key())
    other = cosign_keys.public_key()
    with pytest.raises(VerificationError) as caught:
        verify_image(client, ref, [other])
    assert caught.value.reason == "wrong-key"

    def requests_for(keys: list[Any]) -> int:
        offset = registry.log_offset()
        assert verify_image(client, ref, keys).signature_layer
        return len([r for r in registry.responses(offset, settle=0.2) if f"/{repo}/" in r.path])

    with_several = requests_for([other, other, ecr_keys.public_key()])
    assert with_several > 0 and with_several == requests_for([ecr_keys.public_key()])
    with pytest.raises(ValueError, match="at least one public key"):
        verify_image(client, ref, [])


# -- indexes, idempotency, the bundle -------------------------------------------------------------


def test_ten_platform_index_signs_every_manifest_once(client, repo, ecr_keys: KeyFiles, cosign: Cosign):
    index, children = push_index(client, repo, "multi")
    ref = Reference.parse(f"{client.host}/{repo}:multi")
    signed = sign_image(client, ref, ecr_keys.private_key())
    assert [s.digest for s in signed] == [index.digest, *children]
    assert all(s.added for s in signed)
    again = sign_image(client, ref, ecr_keys.private_key())
    assert [s.digest for s in again] == [index.digest, *children]
    assert not any(s.added for s in again)
    for digest in [index.digest, *children]:
        assert len(sig_layers(client, repo, digest)) == 1, digest
        done = cosign.verify(ref_of(client, repo, digest), ecr_keys)
        assert done.returncode == 0, done.stderr
    assert cosign.verify(f"{client.host}/{repo}:multi", ecr_keys).returncode == 0


def test_resigning_after_cosign_signed_with_the_same_key_adds_nothing(
    client, repo, ecr_keys: KeyFiles, cosign: Cosign
):
    image = push_image(client, repo)
    cosign.sign(ref_of(client, repo, image.digest), ecr_keys)
    signed = sign_image(client, Reference.parse(ref_of(client, repo, image.digest)), ecr_keys.private_key())
    assert not signed[0].added
    assert len(sig_layers(client, repo, image.digest)) == 1


def test_bundle_format_is_verified_by_cosign(client, repo, ecr_keys: KeyFiles, cosign: Cosign):
    image = push_image(client, repo, tag="1.0")
    ref = Reference.parse(f"{client.host}/{repo}:1.0")
    signed = sign_image(client, ref, ecr_keys.private_key(), bundle_format=True)
    assert signed[0].bundle is not None
    done = cosign.verify_bundle(f"{client.host}/{repo}:1.0", ecr_keys)
    assert done.returncode == 0, done.stderr
    assert cosign.verify(f"{client.host}/{repo}:1.0", ecr_keys).returncode == 0  # the classic too
    again = sign_image(client, ref, ecr_keys.private_key(), bundle_format=True)
    assert again[0].bundle == signed[0].bundle
    found = list_referrers(client, repo, image.digest, artifact_type=BUNDLE_MEDIA_TYPE)
    assert [d.digest for d in found] == [signed[0].bundle]


def test_bundle_of_another_key_fails_in_cosign(
    client, repo, ecr_keys: KeyFiles, cosign_keys: KeyFiles, cosign: Cosign
):
    push_image(client, repo, tag="1.0")
    sign_image(
        client, Reference.parse(f"{client.host}/{repo}:1.0"), ecr_keys.private_key(), bundle_format=True
    )
    assert cosign.verify_bundle(f"{client.host}/{repo}:1.0", cosign_keys).returncode != 0


# -- push --sign-key and the CLI ------------------------------------------------------------------


@pytest.fixture
def ecr_signing(tmp_path: Path) -> Runner:
    """``ecr-oci`` as a process with ``COSIGN_PASSWORD`` set, run in ``tmp_path``."""
    run = make_runner(tmp_path / "home", env={"COSIGN_PASSWORD": PASSWORD})

    def in_tmp(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return run(*args, cwd=tmp_path, **kwargs)

    return in_tmp


def test_push_sign_key_signs_image_and_platforms(
    registry: LocalRegistry,
    base_index: str,
    tmp_path: Path,
    ecr_signing: Runner,
    ecr_keys: KeyFiles,
    cosign: Cosign,
):
    directory = write_bundle(tmp_path / "b", base=base_index, name="hello-signed", platforms=None)
    result = push_json(ecr_signing, directory, registry.host, "--sign-key", str(ecr_keys.private))
    assert len(result["platforms"]) == 2
    assert result["signed"][0] == result["imageDigest"] and len(result["signed"]) == 3
    ref = f"{registry.host}/waggle/hello-signed:0.1.0"
    done = cosign.verify(ref, ecr_keys)
    assert done.returncode == 0, done.stderr
    with RegistryClient(registry.host, insecure=True) as client:
        for digest in result["signed"][1:]:
            assert cosign.verify(f"{registry.host}/waggle/hello-signed@{digest}", ecr_keys).returncode == 0
            verify_image(client, Reference.parse(f"{ref}@{digest}"), ecr_keys.public_key())
    again = push_json(ecr_signing, directory, registry.host, "--sign-key", str(ecr_keys.private))
    assert again["unchanged"] is True and again["signed"] == result["signed"]


def test_cli_keygen_sign_verify(client, repo, tmp_path: Path, ecr_signing: Runner, cosign: Cosign):
    done = ecr_signing("keygen", "--output-key-prefix", "mine")
    assert "mine.key" in done.stdout and "mine.pub" in done.stdout
    assert stat.S_IMODE((tmp_path / "mine.key").stat().st_mode) == 0o600
    refused = ecr_signing("keygen", "--output-key-prefix", "mine", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "already exists" in refused.stderr

    image = push_image(client, repo, tag="1.0")
    ref = f"{client.host}/{repo}:1.0"
    signed = json.loads(ecr_signing("sign", ref, "--key", "mine.key", "--insecure", "--json").stdout)
    assert signed["signed"][0]["digest"] == str(image.digest) and signed["signed"][0]["added"]
    again = ecr_signing("sign", ref, "--key", "mine.key", "--insecure")
    assert again.stdout.startswith("already signed ")
    keys = KeyFiles(tmp_path / "mine.key", tmp_path / "mine.pub")
    assert cosign.verify(ref, keys).returncode == 0  # ecr-oci's key files work in cosign

    ok = ecr_signing("verify", ref, "--key", "mine.pub", "--insecure", "--json")
    assert json.loads(ok.stdout) | {
        "verified": True,
        "digest": str(image.digest),
        "reason": None,
    } == json.loads(ok.stdout)
    plain = ecr_signing(
        "verify", ref, "--key", "mine.pub", "--insecure", "--identity", f"{client.host}/{repo}"
    )
    assert plain.returncode == 0 and plain.stdout.startswith("verified ")


def test_cli_failures(
    client,
    repo,
    tmp_path: Path,
    ecr_signing: Runner,
    ecr_keys: KeyFiles,
    cosign_keys: KeyFiles,
    cosign: Cosign,
):
    image = push_image(client, repo, tag="1.0")
    ref = f"{client.host}/{repo}:1.0"
    unsigned = ecr_signing("verify", ref, "--key", str(ecr_keys.public), "--insecure", "--json", check=False)
    assert unsigned.returncode == 4
    assert json.loads(unsigned.stdout) | {
        "verified": False,
        "digest": str(image.digest),
        "reason": "no-signature",
    } == json.loads(unsigned.stdout)

    # cosign signs with its key (key file made by cosign, used by ecr-oci to verify below)
    cosign.sign(ref_of(client, repo, image.digest), cosign_keys)
    wrong = ecr_signing("verify", ref, "--key", str(ecr_keys.public), "--insecure", check=False)
    assert wrong.returncode == 4
    assert wrong.stderr.startswith("error: ") and wrong.stderr.strip().count("\n") == 0
    assert "another key" in wrong.stderr
    assert ecr_signing("verify", ref, "--key", str(cosign_keys.public), "--insecure").returncode == 0
    mismatch = ecr_signing(
        "verify",
        ref,
        "--key",
        str(cosign_keys.public),
        "--insecure",
        "--json",
        "--identity",
        "127.0.0.1:1/else/where",
        check=False,
    )
    assert mismatch.returncode == 4 and json.loads(mismatch.stdout)["reason"] == "identity-mismatch"

    bad_password = make_runner(tmp_path / "home2", env={"COSIGN_PASSWORD": "nope"})(
        "sign", ref, "--key", str(ecr_keys.private), "--insecure", check=False
    )
    assert bad_password.returncode == 2 and "wrong password" in bad_password.stderr
    assert "Traceback" not in bad_password.stderr and bad_password.stderr.count("\n") == 1

    missing = ecr_signing(
        "verify", f"{client.host}/{repo}:nope", "--key", str(ecr_keys.public), "--insecure", check=False
    )
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1

    not_a_key = tmp_path / "garbage.pub"
    not_a_key.write_text("hello")
    garbage = ecr_signing("verify", ref, "--key", str(not_a_key), "--insecure", check=False)
    assert garbage.returncode == 2 and "not a PEM file" in garbage.stderr

    with_private = ecr_signing("verify", ref, "--key", str(ecr_keys.private), "--insecure", check=False)
    assert with_private.returncode == 2 and "expected PUBLIC KEY" in with_private.stderr
