"""The test harness works: real registry, base images, podman, containerd, umoci, Go tools."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ecr_oci.devenv import LocalRegistry, free_port
from ecr_oci.devenv.registry import GO_RUNTIME_DEFAULTS, _parse_log_line

pytestmark = pytest.mark.integration


def test_registry_answers_v2(registry: LocalRegistry) -> None:
    response = httpx.get(f"{registry.url}/v2/", trust_env=False)
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert registry.host == f"127.0.0.1:{registry.port}"
    assert registry.is_running() and registry.pid


def test_base_image_is_linux_amd64(base_image: str, base_image_pinned: str, skopeo) -> None:
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{base_image}"))
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")
    assert info["Digest"] == base_image_pinned.partition("@")[2]
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{base_image}"))
    # umoci leaves the optional mediaType out of the manifest; the registry serves it as OCI
    assert raw["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config = json.loads(skopeo("inspect", "--config", "--tls-verify=false", f"docker://{base_image}"))
    assert config["config"]["Entrypoint"] == ["/bin/sh"]


def test_base_index_has_two_platforms(base_index: str, base_image_pinned: str, skopeo) -> None:
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{base_index}"))
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}": m for m in raw["manifests"]}
    assert set(platforms) == {"linux/amd64", "linux/arm64"}
    # amd64 is exactly the plain base image (reproducible build); arm64 differs (marker + arch)
    assert platforms["linux/amd64"]["digest"] == base_image_pinned.partition("@")[2]
    assert platforms["linux/arm64"]["digest"] != platforms["linux/amd64"]["digest"]
    arm = json.loads(
        skopeo("inspect", "--override-arch", "arm64", "--tls-verify=false", f"docker://{base_index}")
    )
    assert arm["Architecture"] == "arm64"


def test_podman_runs_the_base_image(podman, base_image: str) -> None:
    podman.pull(base_image)
    assert podman.run_image(base_image, "-c", "echo hello from podman") == "hello from podman\n"
    # the ulimits from containers.conf apply (the default raise fails without CAP_SYS_RESOURCE)
    assert podman.run_image(base_image, "-c", "ulimit -n").strip() == "1024"


def test_containerd_pulls_and_runs_the_base_image(containerd, base_image: str) -> None:
    containerd.pull(base_image)
    assert base_image in containerd.images()
    out = containerd.run(base_image, "harness-echo", "/bin/echo", "hello from containerd")
    assert out == "hello from containerd\n"


def test_containerd_pulls_one_platform_of_the_index(containerd, base_index: str) -> None:
    containerd.pull(base_index, platform="linux/arm64")
    assert base_index in containerd.images()


def test_umoci_unpacks_a_skopeo_copy(unpack_image, base_image: str) -> None:
    bundle = unpack_image(base_image)
    assert (bundle / "rootfs" / "bin" / "busybox").is_file()
    assert (bundle / "rootfs" / "bin" / "sh").is_symlink()
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/sh"]


def test_umoci_unpacks_the_arm64_twin_with_its_marker(unpack_image, base_index: str) -> None:
    bundle = unpack_image(base_index, platform_arch="arm64")
    assert "linux/arm64" in (bundle / "rootfs" / "etc" / "ecr-oci-platform").read_text()


def test_go_tools_are_built_and_talk_to_the_registry(tool, base_image: str) -> None:
    crane = subprocess.run(
        [tool("crane"), "manifest", "--insecure", base_image],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert json.loads(crane.stdout)["schemaVersion"] == 2
    oras = subprocess.run(
        [tool("oras"), "manifest", "fetch", "--plain-http", base_image],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert oras.stdout.strip() == crane.stdout.strip()


def test_bytes_served_counts_what_a_pull_downloaded(
    registry: LocalRegistry, base_image: str, skopeo, tmp_path: Path
) -> None:
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{base_image}")
    manifest = json.loads(raw)
    blobs = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    offset = registry.log_offset()
    skopeo("copy", "--src-tls-verify=false", f"docker://{base_image}", f"oci:{tmp_path}/l:x")
    served = registry.bytes_served(offset)
    # blobs + the manifest (maybe twice) + /v2/ pings; nothing else is this large
    assert blobs <= served <= blobs + 3 * len(raw) + 1024, (served, blobs)
    gets = [r for r in registry.responses(offset) if r.method == "GET" and "/blobs/" in r.path]
    assert sum(r.written for r in gets) == blobs


def test_log_lines_of_both_formatters_parse() -> None:
    json_line = (
        '{"http.request.method":"GET","http.request.uri":"/v2/a/blobs/sha256:ab?x=1",'
        '"http.response.status":200,"http.response.written":1234,"level":"info",'
        '"msg":"response completed"}'
    )
    text_line = (
        'time="2026-11-24T20:24:53Z" level=info msg="response completed" '
        "http.request.method=GET http.request.uri=/v2/ "
        'http.response.contenttype="application/json; charset=utf-8" '
        "http.response.status=200 http.response.written=2"
    )
    parsed = _parse_log_line(json_line)
    assert parsed is not None and (parsed.written, parsed.path) == (1234, "/v2/a/blobs/sha256:ab")
    parsed = _parse_log_line(text_line)
    assert parsed is not None and (parsed.method, parsed.status, parsed.written) == ("GET", 200, 2)
    assert _parse_log_line('127.0.0.1 - - [24/Nov/2026] "GET /v2/ HTTP/1.1" 200 2 "" ""') is None


def test_killed_registry_restarts_with_its_store(registry_factory) -> None:
    reg = registry_factory(log_formatter="text")
    blob = b"harness blob"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with httpx.Client(base_url=reg.url, trust_env=False) as client:
        started = client.post("/v2/harness/blobs/uploads/")
        assert started.status_code == 202
        location = started.headers["Location"]
        separator = "&" if "?" in location else "?"
        done = client.put(f"{location}{separator}digest={digest}", content=blob)
        assert done.status_code == 201
    pid = reg.pid
    reg.kill()
    assert not reg.is_running()
    reg.restart()
    assert reg.pid != pid and reg.is_running()
    head = httpx.head(f"{reg.url}/v2/harness/blobs/{digest}", trust_env=False)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == len(blob)
    assert reg.bytes_served(0) >= 2  # the text formatter's lines are read as well


def test_fresh_registry_is_empty_and_not_the_session_one(
    fresh_registry: LocalRegistry, registry: LocalRegistry
) -> None:
    assert fresh_registry.port != registry.port
    catalog = httpx.get(f"{fresh_registry.url}/v2/_catalog", trust_env=False).json()
    assert catalog["repositories"] == []


def test_detached_registry_is_found_again_and_stopped_by_its_pid(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg").start(detach=True)
    try:
        again = LocalRegistry.attach(tmp_path / "reg")
        assert again.pid == reg.pid and again.is_running()
        # a recorded PID that is not our registry is never signalled
        bogus = LocalRegistry.attach(tmp_path / "reg")
        bogus._pid = 1
        assert not bogus.is_running()
        again.stop()
        assert not reg.is_running()
        assert not (tmp_path / "reg" / "registry.json").exists()
    finally:
        reg.stop()


def test_dev_cli_starts_and_stops_a_background_registry(tmp_path: Path) -> None:
    state = tmp_path / "state"

    def dev(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ecr_oci", "dev", *args, "--state-dir", str(state)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    port = str(free_port())
    started = dev("registry", "start", "--port", port)
    try:
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{port}" in started.stdout
        assert dev("registry", "status").returncode == 0
        assert httpx.get(f"http://127.0.0.1:{port}/v2/", trust_env=False).status_code == 200
    finally:
        stopped = dev("registry", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    assert dev("registry", "status").returncode == 1


def test_registry_runs_with_the_go_runtime_defaults_unless_overridden(registry_factory, monkeypatch) -> None:
    """Blob reads allocate 4 MiB each in distribution 2.8: the registry we start collects laxer
    (``GO_RUNTIME_DEFAULTS``); an operator's own GOGC still wins."""

    def environ(reg: LocalRegistry) -> dict[str, str]:
        raw = Path(f"/proc/{reg.pid}/environ").read_bytes().split(b"\0")
        return dict(item.decode().split("=", 1) for item in raw if b"=" in item)

    for name in GO_RUNTIME_DEFAULTS:  # a runner that exports its own would win (by design)
        monkeypatch.delenv(name, raising=False)
    started = environ(registry_factory())
    assert {k: started[k] for k in GO_RUNTIME_DEFAULTS} == GO_RUNTIME_DEFAULTS
    monkeypatch.setenv("GOGC", "150")
    assert environ(registry_factory())["GOGC"] == "150"
