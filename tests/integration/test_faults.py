"""Bad input and faults: a registry that refuses, hangs or dies mid-push; corrupt blobs on pull."""

from __future__ import annotations

import os
import socket
import threading
import time

import httpx
import pytest

from ecr_oci.bundle.push import push_bundle
from ecr_oci.devenv.registry import LocalRegistry
from ecr_oci.errors import RegistryError
from ecr_oci.oci.registry import RegistryClient
from tests.integration.conftest import write_bundle

pytestmark = pytest.mark.integration

MODEL_SIZE = 48 * 1024 * 1024


class _Trigger:
    """A progress sink that runs ``action`` once, when ``after`` bytes of the model went out."""

    def __init__(self, after: int, action) -> None:
        self.after = after
        self.action = action
        self.sent = 0
        self.fired = False
        self.label = ""

    def start(self, label: str, total: int) -> None:
        self.label = label

    def advance(self, amount: int) -> None:
        if self.label != "model":
            return
        self.sent += amount
        if not self.fired and self.sent >= self.after:
            self.fired = True
            self.action()

    def finish(self) -> None:
        pass


@pytest.fixture
def connect_small_chunks():
    """``connect`` factories whose clients upload in 4 MiB PATCH chunks; all closed afterwards."""
    opened: list[RegistryClient] = []

    def factory(**kwargs):
        def connect(host: str) -> RegistryClient:
            client = RegistryClient(
                host, insecure=True, chunk_size=4 << 20, monolithic_limit=1 << 20, **kwargs
            )
            opened.append(client)
            return client

        return connect

    yield factory
    for client in opened:
        client.close()


@pytest.fixture
def own_registry(tmp_path):
    registry = LocalRegistry(tmp_path / "registry").start()
    yield registry
    registry.stop()


@pytest.fixture
def big_bundle(tmp_path, base_image):
    return write_bundle(tmp_path / "big", base=base_image, name="big", model=os.urandom(MODEL_SIZE))


def _tags(registry: LocalRegistry, repository: str) -> list[str]:
    """Version tags (the ``sha256-…`` referrers fallback tags left out)."""
    response = httpx.get(f"{registry.url}/v2/{repository}/tags/list")
    tags = response.json().get("tags") or [] if response.status_code == 200 else []
    return [tag for tag in tags if not tag.startswith("sha256-")]


def test_registry_killed_mid_push_leaves_no_tag_and_rerun_completes(
    own_registry, big_bundle, tmp_path, skopeo, connect_small_chunks
):
    trigger = _Trigger(MODEL_SIZE // 3, own_registry.kill)
    with pytest.raises(RegistryError, match="cannot reach the registry"):
        push_bundle(
            big_bundle,
            registry=own_registry.host,
            connect=connect_small_chunks(retries=1, backoff=0.05),
            progress=trigger,
        )
    assert trigger.fired
    own_registry.restart()
    assert _tags(own_registry, "waggle/big") == []  # nothing half-pushed is tagged

    result = push_bundle(big_bundle, registry=own_registry.host, connect=connect_small_chunks())
    assert _tags(own_registry, "waggle/big") == ["0.1.0"]
    # every blob the tag points at exists and matches its digest: skopeo verifies while copying
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{own_registry.host}/waggle/big:0.1.0",
        f"oci:{tmp_path}/layout:v",
    )
    tagged = httpx.head(
        f"{own_registry.url}/v2/waggle/big/manifests/0.1.0",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert tagged.headers["Docker-Content-Digest"] == str(result.image_digest)


def test_upload_resumes_after_the_registry_restarts(own_registry, big_bundle, connect_small_chunks):
    def bounce() -> None:
        own_registry.kill()
        threading.Thread(target=own_registry.restart, daemon=True).start()

    trigger = _Trigger(MODEL_SIZE // 2, bounce)
    offset = own_registry.log_offset()
    result = push_bundle(
        big_bundle,
        registry=own_registry.host,
        connect=connect_small_chunks(retries=5, backoff=0.5),
        progress=trigger,
    )
    assert trigger.fired
    assert _tags(own_registry, "waggle/big") == ["0.1.0"]
    model = next(layer for layer in result.layers if layer.role == "model")
    assert model.uploaded
    # the client asked the upload session where it stood; distribution 2.8 either answers
    # (204 + Range: resume from there) or refuses a session cut mid-PATCH (404: start the blob over)
    statuses = [(r.method, r.status) for r in own_registry.responses(offset) if "/blobs/uploads/" in r.path]
    asked = [status for method, status in statuses if method == "GET"]
    assert asked and asked[0] in (204, 404), statuses
    if asked[0] == 404:
        assert statuses.count(("POST", 202)) >= 2, statuses


def test_refusing_registry_gives_one_line_and_no_tag(tmp_path, base_image, ecr):
    readonly = LocalRegistry(
        tmp_path / "ro", extra_config={"storage": {"maintenance": {"readonly": {"enabled": True}}}}
    ).start()
    try:
        directory = write_bundle(tmp_path / "b", base=base_image, name="refused")
        done = ecr("push", str(directory), "--registry", readonly.host, "--insecure", check=False)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "HTTP 405" in lines[0]
        assert _tags(readonly, "waggle/refused") == []
    finally:
        readonly.stop()


def test_unresponsive_registry_times_out_with_a_clear_error():
    with socket.socket() as server:  # accepts connections (backlog) but never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        host = f"127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        with (
            RegistryClient(host, insecure=True, timeout=0.5, retries=1, backoff=0.01) as client,
            pytest.raises(RegistryError, match=r"cannot reach the registry .*ReadTimeout"),
        ):
            client.ping()
        assert time.monotonic() - started < 5


def test_corrupt_blob_on_pull_writes_nothing(own_registry, base_image, tmp_path, ecr):
    directory = write_bundle(tmp_path / "b", base=base_image, name="corrupt")
    ecr("push", str(directory), "--registry", own_registry.host, "--insecure")
    code = next(
        p
        for p in (own_registry.storage_dir / "docker/registry/v2/blobs/sha256").rglob("data")
        if p.stat().st_size < 4096 and p.read_bytes()[:2] == b"\x1f\x8b"
    )
    code.write_bytes(b"\x1f\x8b" + os.urandom(code.stat().st_size - 2))
    out = tmp_path / "out"
    done = ecr("pull", f"{own_registry.host}/waggle/corrupt:0.1.0", "-o", str(out), "--insecure", check=False)
    assert done.returncode != 0
    assert "hashes to" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_symlink_out_of_the_bundle_is_refused_before_any_upload(own_registry, base_image, tmp_path, ecr):
    directory = write_bundle(tmp_path / "b", base=base_image, name="escape")
    (directory / "src" / "passwd").symlink_to("/etc/passwd")
    done = ecr("push", str(directory), "--registry", own_registry.host, "--insecure", check=False)
    assert done.returncode == 2
    assert "points outside" in done.stderr and "passwd" in done.stderr
    catalog = httpx.get(f"{own_registry.url}/v2/_catalog").json()
    assert catalog["repositories"] in (None, [])


def test_pull_into_a_non_empty_directory_is_refused(tmp_path, ecr, registry):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    done = ecr("pull", f"{registry.host}/waggle/nothing:0.1.0", "-o", str(out), "--insecure", check=False)
    assert done.returncode == 2 and "not empty" in done.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_pull_of_an_image_without_bundle_says_so(registry, base_image, tmp_path, ecr):
    done = ecr("pull", base_image, "-o", str(tmp_path / "x"), "--insecure", check=False)
    assert done.returncode == 1
    assert "has no ecr-oci bundle" in done.stderr
