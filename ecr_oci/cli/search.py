"""``ecr-oci search`` and ``ecr-oci show``: ask the ECR service's search API (``/api/v1``).

    $ ecr-oci search sensor --platform linux/arm64 --requirement pytorch
    $ ecr-oci show waggle/hello-sensor:0.1.0 --json
    $ ecr-oci search detector --device xavier-nx --max-rss 2GiB --max-metric 'inference_ms:p95<200' \
          --sort metric:inference_ms:p95

The service URL comes from ``--service`` or ``$ECR_SERVICE_URL``, default ``http://127.0.0.1:8000``
(``ecr-oci serve``'s default port); the caller's credentials from the auth files, as ``ecr-oci login
SERVICE_HOST`` stores them (``cli.service_api``): private bundles the caller may pull are found too,
others never. Answers are
parsed with the API's own response models (:mod:`ecr_oci.server.schemas`, pydantic only), so a
service that answers something else is an error here, not a confusing table.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import click

from ecr_oci.cli.main import cli
from ecr_oci.cli.options import authfile_option, echo_json, echo_table, human_size
from ecr_oci.cli.service_api import ServiceApi, ServiceApiError, service_credentials, service_option
from ecr_oci.server.schemas import BundleDetail, DeviceProfile, SearchPage, VersionDetail, VersionSummary

__all__ = ["search", "show"]


def _api(service_url: str, authfile: Path | None) -> ServiceApi:
    """The service with the caller's stored credentials (none: public bundles only)."""
    return ServiceApi(service_url, service_credentials(service_url, authfile))


_AUTHFILE = authfile_option(
    "Credentials file (docker config.json format; `ecr-oci login SERVICE` writes it). "
    "Default: podman's, then docker's. Without credentials only public bundles are found."
)


def _short(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


@cli.command()
@click.argument("text", required=False, default="")
@click.option("--platform", help="Only versions for this platform, e.g. linux/arm64.")
@click.option("--requirement", help="Only versions that require this package, e.g. pytorch.")
@click.option("--namespace", help="Only this namespace.")
@click.option("--keyword", help="Only versions with this keyword.")
@click.option("--license", "license_", metavar="SPDX", help="Only this license, e.g. MIT.")
@click.option("--signed-by", metavar="FPR", help="Only versions signed by this key (hex SHA-256 of it).")
@click.option("--device", metavar="NAME", help="Only versions profiled on this device.")
@click.option("--max-rss", metavar="SIZE", help="Peak RSS at most SIZE on that device, e.g. 2GiB.")
@click.option(
    "--max-metric",
    "max_metric",
    metavar="METRIC:STAT<N",
    multiple=True,
    help="A plugin metric bound, e.g. 'inference_ms:p95<200' (STAT p50|p95|p99; < or <=); repeatable. "
    "All performance filters must hold on one device.",
)
@click.option(
    "--sort",
    metavar="ORDER",
    default="relevance",
    show_default=True,
    help="relevance, name, created, or metric:METRIC:STAT (lowest first, e.g. metric:inference_ms:p95).",
)
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON page.")
@service_option
@_AUTHFILE
def search(
    text: str,
    platform: str | None,
    requirement: str | None,
    namespace: str | None,
    keyword: str | None,
    license_: str | None,
    signed_by: str | None,
    device: str | None,
    max_rss: str | None,
    max_metric: tuple[str, ...],
    sort: str,
    limit: int,
    as_json: bool,
    service_url: str,
    authfile: Path | None,
) -> None:
    """Search bundle versions for TEXT (every word must occur in name, description, keywords or
    authors) and filters.

    \b
    Example:
      ecr-oci search sensor --platform linux/arm64 --requirement pytorch
      ecr-oci search --device xavier-nx --max-metric 'inference_ms:p95<200' --sort metric:inference_ms:p95
    """
    page = _api(service_url, authfile).get(
        "/api/v1/search",
        {
            "q": text or None,
            "platform": platform,
            "requirement": requirement,
            "namespace": namespace,
            "keyword": keyword,
            "license": license_,
            "signed_by": signed_by,
            "device": device,
            "max_rss": max_rss,
            "max_metric": list(max_metric) or None,
            "sort": sort,
            "limit": limit,
        },
        SearchPage,
    )
    if as_json:
        echo_json(page.model_dump(mode="json"))
        return
    if not page.items:
        click.echo("no match", err=True)
        return
    echo_table(
        ("BUNDLE", "PLATFORMS", "LICENSE", "DESCRIPTION"),
        [
            (
                f"{i.repository}:{i.version}",
                ",".join(i.platforms) or "-",
                i.license or "-",
                _short(i.description, 60),
            )
            for i in page.items
        ],
    )
    if page.next_cursor:
        click.echo(f"(more than {limit}: narrow the search or raise --limit)", err=True)


def _split(ref: str) -> tuple[str, str, str | None]:
    path, _, version = ref.partition(":")
    namespace, _, name = path.partition("/")
    if not namespace or not name or "/" in name or (version == "" and ref.endswith(":")):
        raise ServiceApiError(
            f"{ref!r} is not NS/NAME[:VERSION], e.g. waggle/hello-sensor:0.1.0", exit_code=2
        )
    return namespace, name, version or None


@cli.command()
@click.argument("ref", metavar="NS/NAME[:VERSION]")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@service_option
@_AUTHFILE
def show(ref: str, as_json: bool, service_url: str, authfile: Path | None) -> None:
    """Show a bundle (its versions) or one version (platforms, layers, referrers, signatures).

    \b
    Example:
      ecr-oci show waggle/hello-sensor
      ecr-oci show waggle/hello-sensor:0.1.0 --json
    """
    namespace, name, version = _split(ref)
    api = _api(service_url, authfile)
    base = f"/api/v1/bundles/{quote(namespace, safe='')}/{quote(name, safe='')}"
    if version is None:
        detail = api.get(base, {}, BundleDetail)
        if as_json:
            echo_json(detail.model_dump(mode="json"))
            return
        if detail.latest is not None:
            _describe(detail.latest)
        click.echo()
        echo_table(
            ("VERSION", "CREATED", "SIZE", "PLATFORMS", "IMAGE DIGEST"),
            [
                (
                    v.version,
                    v.created or "-",
                    human_size(v.total_size),
                    ",".join(p.text for p in v.platforms) or "-",
                    v.image_digest,
                )
                for v in detail.versions
            ],
        )
        measured = [(v.version, p) for v in detail.versions for p in v.profiles]
        if measured:
            click.echo("\nmeasured profiles (median across runs, per device):")
            _profile_table(measured)
        return
    one = api.get(f"{base}/versions/{quote(version, safe='')}", {}, VersionDetail)
    if as_json:
        echo_json(one.model_dump(mode="json"))
        return
    _describe(one.summary)
    if one.source_url or one.source_commit:
        click.echo(f"source:       {one.source_url or '-'} {one.source_commit or ''}".rstrip())
    click.echo(f"image:        {one.summary.image_digest} ({one.image_media_type})")
    click.echo(f"bundle:       {one.summary.bundle_digest or '-'}")
    click.echo("\nplatforms:")
    echo_table(("PLATFORM", "DIGEST"), [(p.text, p.digest) for p in one.platforms])
    click.echo("\nlayers:")
    echo_table(("ROLE", "SIZE", "DIGEST"), [(la.role, human_size(la.size), la.digest) for la in one.layers])
    click.echo("\nreferrers:")
    echo_table(
        ("KIND", "ARTIFACT TYPE", "DIGEST"),
        [(r.kind, r.artifact_type or "-", r.digest) for r in one.referrers],
    )
    if one.profiles:
        click.echo("\nmeasured profiles (median across runs, per device):")
        _profile_table([(one.summary.version, p) for p in one.profiles])
    if one.declared_profile is not None:
        click.echo("\ndeclared profile (ecr.yaml `profile:`, not measured): see --json")
    if one.signatures:
        click.echo("\nsignatures (claimed keys; check with `ecr-oci verify`):")
        echo_table(
            ("KIND", "KEY", "SUBJECT"),
            [(s.kind, s.key_fingerprint or "-", s.subject_digest) for s in one.signatures],
        )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _profile_table(rows: list[tuple[str, DeviceProfile]]) -> None:
    """One line per (version, device): runs, wall time, peak RSS, each metric's p95."""
    echo_table(
        ("VERSION", "DEVICE", "ARCH", "RUNS", "WALL S", "PEAK RSS", "METRICS P95", "LATEST RUN"),
        [
            (
                version,
                p.device,
                p.arch or "-",
                str(p.runs),
                _number(p.median.wall_s),
                human_size(p.median.peak_rss_bytes),
                " ".join(f"{name}={_number(m.p95)}" for name, m in sorted(p.median.metrics.items())) or "-",
                p.latest.created or "-",
            )
            for version, p in rows
        ],
    )


def _describe(item: VersionSummary) -> None:
    click.echo(f"{item.repository}:{item.version}")
    click.echo(f"description:  {_short(item.description, 100) or '-'}")
    click.echo(f"license:      {item.license or '-'}")
    click.echo(f"keywords:     {', '.join(item.keywords) or '-'}")
    click.echo(f"authors:      {', '.join(a.name for a in item.authors) or '-'}")
    click.echo(f"requirements: {', '.join(item.requirements) or '-'}")
    click.echo(f"platforms:    {', '.join(item.platforms) or '-'}")
    click.echo(f"created:      {item.created or '-'}   size: {human_size(item.total_size)}")
