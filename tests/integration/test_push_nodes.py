"""Push with ecr-oci, then prove with real clients that nodes can pull and run what we pushed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import push_json, set_version, write_bundle

pytestmark = pytest.mark.integration

EXPECTED_LINE = "hello from hello-sensor: model 262144 bytes (md5 d95d4226), interval 30s"


@pytest.fixture(scope="module")
def pushed(registry, base_image, tmp_path_factory, ecr_module):
    """hello-sensor 0.1.0 pushed once for the module's checks with real clients."""
    directory = write_bundle(tmp_path_factory.mktemp("b") / "hello", base=base_image, name="hello-nodes")
    return push_json(ecr_module, directory, registry.host)


def test_push_prints_image_bundle_and_sizes(pushed, registry):
    assert pushed["image"].startswith(f"{registry.host}/waggle/hello-nodes:0.1.0@sha256:")
    assert pushed["bundle"].startswith("sha256:") and pushed["bundle"] != pushed["imageDigest"]
    roles = {layer["role"]: layer for layer in pushed["layers"]}
    assert set(roles) == {"code", "model"}
    # 256 KiB of random bytes do not compress: stored as a plain tar slightly larger than the file
    assert roles["model"]["mediaType"] == "application/vnd.waggle.ecr.model.v1.tar"
    assert 262144 < roles["model"]["size"] <= 262144 + 10240  # headers + tar record padding
    assert roles["code"]["mediaType"] == "application/vnd.waggle.ecr.code.v1.tar+gzip"
    assert pushed["platforms"] == ["linux/amd64"]


def test_skopeo_sees_the_tag_at_the_pushed_digest(pushed, registry, skopeo):
    out = skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/waggle/hello-nodes:0.1.0")
    info = json.loads(out)
    assert info["Digest"] == pushed["imageDigest"]
    assert info["Architecture"] == "amd64"
    assert info["Labels"]["org.opencontainers.image.version"] == "0.1.0"
    assert len(info["Layers"]) >= 3  # base + model + code


def test_podman_pulls_and_runs_it(pushed, registry, podman):
    ref = f"{registry.host}/waggle/hello-nodes:0.1.0"
    podman.pull(ref)
    assert podman.run_image(ref).strip() == EXPECTED_LINE


def test_containerd_pulls_and_runs_it(pushed, registry, containerd):
    ref = f"{registry.host}/waggle/hello-nodes:0.1.0"
    containerd.pull(ref)
    assert containerd.run(ref, "hello-nodes-test").strip() == EXPECTED_LINE


def test_umoci_unpacks_the_files_where_ecr_yaml_put_them(pushed, registry, skopeo, tmp_path):
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{registry.host}/waggle/hello-nodes:0.1.0",
        f"oci:{tmp_path}/layout:v",
    )
    subprocess.run(
        ["umoci", "unpack", "--image", f"{tmp_path}/layout:v", str(tmp_path / "b")],
        check=True,
        capture_output=True,
    )
    rootfs = tmp_path / "b" / "rootfs"
    assert (rootfs / "app" / "run.sh").stat().st_mode & 0o111
    assert (rootfs / "models" / "weights.bin").stat().st_size == 262144
    assert (rootfs / "bin" / "busybox").exists()
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/sh", "/app/run.sh"]
    assert config["process"]["cwd"] == "/app"
    assert "GREETING=hello" in config["process"]["env"]


def test_oras_and_crane_see_the_bundle_referrer(pushed, registry, tool):
    ref = f"{registry.host}/waggle/hello-nodes:0.1.0"
    discovered = subprocess.run(
        [
            tool("oras"),
            "discover",
            "--plain-http",
            "--format",
            "json",
            "--artifact-type",
            "application/vnd.waggle.ecr.bundle.v1",
            ref,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    found = json.loads(discovered.stdout)
    digests = [m["digest"] for m in found.get("referrers", found.get("manifests", []))]
    assert pushed["bundle"] in digests
    manifest = subprocess.run(
        [tool("crane"), "manifest", "--insecure", f"{registry.host}/waggle/hello-nodes@{pushed['bundle']}"],
        check=True,
        capture_output=True,
        text=True,
    )
    bundle = json.loads(manifest.stdout)
    assert bundle["artifactType"] == "application/vnd.waggle.ecr.bundle.v1"
    assert bundle["subject"]["digest"] == pushed["imageDigest"]
    image = json.loads(
        subprocess.run(
            [tool("crane"), "manifest", "--insecure", ref], check=True, capture_output=True, text=True
        ).stdout
    )
    # one blob, two descriptors: the bundle's code and model layers are the image's top layers
    assert {d["digest"] for d in bundle["layers"]} == {d["digest"] for d in image["layers"][-2:]}


def test_code_only_update_moves_only_the_code_layer(registry, base_image, tmp_path, ecr, podman):
    directory = write_bundle(tmp_path / "b", base=base_image, name="hello-update")
    first = push_json(ecr, directory, registry.host)
    ref1 = f"{registry.host}/waggle/hello-update:0.1.0"
    podman.pull(ref1)
    run_sh = directory / "src" / "run.sh"
    run_sh.write_text(run_sh.read_text().replace("hello-sensor:", "hello-sensor v2:"))
    set_version(directory, "0.1.1")
    second = push_json(ecr, directory, registry.host)
    layers1 = {layer["role"]: layer for layer in first["layers"]}
    layers2 = {layer["role"]: layer for layer in second["layers"]}
    assert layers2["model"]["digest"] == layers1["model"]["digest"]
    assert layers2["model"]["uploaded"] is False
    assert layers2["code"]["uploaded"] is True
    # the registry received the new code layer plus small metadata, not the model
    assert second["bytesUploaded"] < layers2["code"]["size"] + 16 * 1024

    offset = registry.log_offset()
    ref2 = f"{registry.host}/waggle/hello-update:0.1.1"
    podman.pull(ref2)
    served = registry.bytes_served(offset)
    assert served < layers2["code"]["size"] + 16 * 1024, served
    assert "v2:" in podman.run_image(ref2)


def test_same_files_give_the_same_digest_anywhere(registry, base_image, tmp_path, ecr):
    one = write_bundle(tmp_path / "one", base=base_image, name="hello-repro")
    first = push_json(ecr, one, registry.host)
    two = write_bundle(tmp_path / "two", base=base_image, name="hello-repro")
    for path in two.rglob("*"):  # other mtimes and modes on the copy
        subprocess.run(["touch", "-d", "2001-01-01", str(path)], check=True)
    (two / "model" / "weights.bin").chmod(0o600)
    second = push_json(ecr, two, registry.host, "--no-cache")
    assert second["imageDigest"] == first["imageDigest"]
    assert second["unchanged"] is True and second["bytesUploaded"] == 0
    assert second["bundle"] == first["bundle"]


def test_versions_are_immutable_unless_forced(registry, base_image, tmp_path, ecr):
    directory = write_bundle(tmp_path / "b", base=base_image, name="hello-immutable")
    first = push_json(ecr, directory, registry.host)
    (directory / "src" / "run.sh").write_text("#!/bin/sh\necho changed\n")
    offset = registry.log_offset()
    refused = ecr("push", str(directory), "--registry", registry.host, "--insecure", check=False)
    assert refused.returncode == 3
    assert "already exists with other content" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    # refused before any upload: the registry saw reads only
    assert {r.method for r in registry.responses(offset)} <= {"GET", "HEAD"}
    forced = push_json(ecr, directory, registry.host, "--force")
    assert forced["imageDigest"] != first["imageDigest"]


def test_multiplatform_base_gives_an_index(registry, base_index, tmp_path, ecr, skopeo):
    directory = write_bundle(tmp_path / "b", base=base_index, name="hello-multi", platforms=None)
    result = push_json(ecr, directory, registry.host)
    assert result["imageMediaType"] == "application/vnd.oci.image.index.v1+json"
    assert sorted(result["platforms"]) == ["linux/amd64", "linux/arm64"]
    raw = json.loads(
        skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/waggle/hello-multi:0.1.0")
    )
    assert sorted(m["platform"]["architecture"] for m in raw["manifests"]) == ["amd64", "arm64"]
    arm = json.loads(
        skopeo(
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            "arm64",
            f"docker://{registry.host}/waggle/hello-multi:0.1.0",
        )
    )
    assert arm["Architecture"] == "arm64"


def test_inspect_shows_roles_platforms_and_referrers(pushed, registry, ecr_module):
    done = ecr_module("inspect", f"{registry.host}/waggle/hello-nodes:0.1.0", "--insecure", "--json")
    found = json.loads(done.stdout)
    assert found["digest"] == pushed["imageDigest"]
    assert found["bundle"]["digest"] == pushed["bundle"]
    assert {layer["role"] for layer in found["bundle"]["layers"]} == {"code", "model"}
    assert [r["artifactType"] for r in found["referrers"]] == ["application/vnd.waggle.ecr.bundle.v1"]
    text = ecr_module("inspect", f"{registry.host}/waggle/hello-nodes:0.1.0", "--insecure").stdout
    assert "waggle/hello-nodes 0.1.0" in text
    assert "model" in text and "linux/amd64" in text


def test_pull_writes_the_author_layout_back(pushed, registry, ecr_module, tmp_path):
    out = tmp_path / "copy"
    ecr_module("pull", f"{registry.host}/waggle/hello-nodes:0.1.0", "-o", str(out), "--insecure")
    original = Path(__file__).resolve().parents[2] / "examples" / "hello-sensor"
    assert (out / "src" / "run.sh").read_bytes() == (original / "src" / "run.sh").read_bytes()
    assert (out / "model" / "weights.bin").read_bytes() == (original / "model" / "weights.bin").read_bytes()
    validated = ecr_module("validate", str(out))
    assert "hello-nodes" in validated.stdout
    only = tmp_path / "only"
    ecr_module(
        "pull", f"{registry.host}/waggle/hello-nodes:0.1.0", "-o", str(only), "--insecure", "--only", "code"
    )
    assert (only / "src" / "run.sh").exists() and not (only / "model").exists()
