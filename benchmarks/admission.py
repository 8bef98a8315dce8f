"""``python -m benchmarks.admission [--cold 200] [--warm 2000]``: admission webhook latency (issue 5).

    $ .venv/bin/python -m benchmarks.admission

A fresh local registry gets one small image, signed and approved for a deployment with a fresh
key (ecr-oci's own signing library). The ECR service (``create_app``, served by uvicorn on a free
loopback port, SQLite) is configured to trust that key and to map namespace ``bench-ns`` to the
deployment. One keep-alive HTTP client then POSTs Pod ``AdmissionReview`` bodies to
``/admission/validate``, one after another, and times each round trip:

- **cold**: the decision cache is emptied before each review (the image's tag is resolved, its
  signature and its approval are read and verified: seven registry requests);
- **warm, by tag**: cached verdict; the tag is still resolved with one ``HEAD`` per review (tags
  are never cached, so a moved tag is caught at once);
- **warm, by digest**: cached verdict, no registry request.

Target (issue 5): p99 ≤ 25 ms warm. The results go to docs/benchmarks.md between
``<!-- admission-bench:start -->`` and ``<!-- admission-bench:end -->``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.images import push_tiny_image
from benchmarks.machine import describe_machine
from benchmarks.measure import percentile
from benchmarks.report import say, verdict, write_section

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START = "<!-- admission-bench:start -->"
END = "<!-- admission-bench:end -->"
TARGET_WARM_P99_MS = 25.0
NAMESPACE, DEPLOYMENT = "bench-ns", "bench"


@dataclass(frozen=True)
class Latency:
    case: str
    samples: list[float]  # milliseconds

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 0.99)


def _push_signed_image(host: str, key_pem: bytes) -> tuple[str, str]:
    """One small image as bench/plugin:1.0, signed and approved for :data:`DEPLOYMENT`;
    returns (by tag, by digest)."""
    from ecr_oci.oci.registry import RegistryClient
    from ecr_oci.reference import Reference
    from ecr_oci.signing.approval import approve_image
    from ecr_oci.signing.keys import load_private_key
    from ecr_oci.signing.sign import sign_image

    key = load_private_key(key_pem, b"", source="bench.key")
    with RegistryClient(host, insecure=True) as client:
        digest, _ = push_tiny_image(client, "bench/plugin", "1.0")
        ref = Reference.parse(f"{host}/bench/plugin:1.0")
        sign_image(client, ref, key)
        now = datetime.now(UTC)
        approve_image(client, ref, key, deployment=DEPLOYMENT, now=now, expires=now + timedelta(days=1))
    return str(ref), f"{host}/bench/plugin@{digest}"


#: The bearer token the webhook requires (the API server would send it).
TOKEN = "bench-apiserver-token"  # noqa: S105 - a throwaway local secret


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    from ecr_oci.devenv import free_port
    from ecr_oci.devenv._process import wait_for

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout=30, interval=0.02)
    if not server.started:
        raise RuntimeError("the service did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _review(image: str) -> bytes:
    request = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": NAMESPACE,
        "operation": "CREATE",
        "object": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "plugin", "namespace": NAMESPACE},
            "spec": {"containers": [{"name": "plugin", "image": image}]},
        },
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


def _measure(
    http: Any, case: str, image: str, count: int, before: Callable[[], None] | None = None
) -> Latency:
    samples = []
    for _ in range(count):
        if before is not None:
            before()
        body = _review(image)
        start = time.perf_counter()
        response = http.post(
            "/admission/validate",
            content=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        )
        elapsed = (time.perf_counter() - start) * 1000
        answer = response.json()["response"]
        if not answer["allowed"]:
            raise RuntimeError(f"{case}: denied: {answer['status']['message']}")
        samples.append(elapsed)
    return Latency(case, samples)


def run(cold: int, warm: int) -> list[Latency]:
    import httpx

    from ecr_oci.devenv import LocalRegistry
    from ecr_oci.server.app import create_app
    from ecr_oci.server.settings import Settings
    from ecr_oci.signing.keys import generate_key_pair

    with tempfile.TemporaryDirectory(prefix="ecr-admission-bench-") as tmp:
        work = Path(tmp)
        pair = generate_key_pair(b"")
        (work / "bench.pub").write_bytes(pair.public_pem)
        with LocalRegistry(work / "registry") as registry:
            say(f"registry on {registry.host}; pushing, signing and approving one image")
            by_tag, by_digest = _push_signed_image(registry.host, pair.private_pem)
            settings = Settings(
                database_url=f"sqlite:///{work / 'ecr.db'}",
                registry=registry.host,
                registry_insecure=True,
                reconcile_on_start=False,
                reconcile_interval=0,
                admission_trusted_keys=[work / "bench.pub"],
                admission_deployments={NAMESPACE: DEPLOYMENT},
                admission_cache_ttl=600,
                admission_token=TOKEN,
            )
            app = create_app(settings)
            with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
                clear = app.state.admission.cache.clear
                _measure(http, "warm-up", by_tag, 20, before=clear)
                say(f"service on {url}; {cold} cold and {warm} warm reviews per case")
                results = [
                    _measure(http, "cold (cache emptied), by tag", by_tag, cold, before=clear),
                    _measure(http, "cold (cache emptied), by digest", by_digest, cold, before=clear),
                ]
                _measure(http, "prime", by_tag, 1)
                results.append(_measure(http, "warm, by tag (1 HEAD per review)", by_tag, warm))
                results.append(_measure(http, "warm, by digest (no registry request)", by_digest, warm))
    return results


def markdown(results: Sequence[Latency], machine: dict[str, str], command: str) -> str:
    lines = [
        "## Admission webhook: review latency",
        "",
        f"`{command}` (see its docstring): Pod AdmissionReviews POSTed one at a time over one keep-alive "
        "HTTP connection to `/admission/validate` of the service under uvicorn on loopback; one image, "
        "signed and approved, in a local registry; the namespace needs the approval.",
        "",
        "| case | reviews | p50 | p99 | max | target p99 | |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        warm = result.case.startswith("warm")
        p99 = result.p99
        cell = verdict(p99 <= TARGET_WARM_P99_MS) if warm else ""
        target = f"≤ {TARGET_WARM_P99_MS:.0f} ms" if warm else "—"
        lines.append(
            f"| {result.case} | {len(result.samples)} | {result.p50:.2f} ms | {p99:.2f} ms | "
            f"{max(result.samples):.2f} ms | {target} | {cell} |"
        )
    lines += [
        "",
        "A cold review reads the tag, the image by digest (twice: signature, then approval), the `.sig` "
        "manifest and payload, and the `.att` manifest and envelope; a warm one by tag costs one `HEAD`.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | `{v}` |" for k, v in machine.items()),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.admission", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--cold", type=int, default=200, help="reviews per cold case")
    parser.add_argument("--warm", type=int, default=2000, help="reviews per warm case")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOCS.name}")
    args = parser.parse_args(argv)
    results = run(args.cold, args.warm)
    print(f"{'case':<42} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for r in results:
        print(f"{r.case:<42} {len(r.samples):>5} {r.p50:>8.2f} {r.p99:>8.2f} {max(r.samples):>8.2f}")
    warm_p99 = max(r.p99 for r in results if r.case.startswith("warm"))
    print(
        f"warm p99 {warm_p99:.2f} ms (target ≤ {TARGET_WARM_P99_MS:.0f} ms): "
        f"{verdict(warm_p99 <= TARGET_WARM_P99_MS)}"
    )
    if not args.no_write:
        command = "python -m benchmarks.admission" + (" " + " ".join(argv) if argv else "")
        write_section(
            DOCS, markdown(results, describe_machine({}), command), start_marker=START, end_marker=END
        )
        say(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
