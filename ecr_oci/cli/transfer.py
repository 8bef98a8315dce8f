"""``ecr-oci push``, ``pull`` and ``inspect``: moving bundles to and from a registry."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ecr_oci.bundle.layer_cache import LayerCache
from ecr_oci.bundle.push import push_bundle
from ecr_oci.cli.main import cli
from ecr_oci.cli.options import (
    RegistryOptions,
    default_cache_path,
    echo_json,
    human_size,
    registry_options,
    source_date_epoch,
)
from ecr_oci.cli.progress import BarProgress
from ecr_oci.mediatypes import ROLES
from ecr_oci.reference import Reference

if TYPE_CHECKING:
    from ecr_oci.bundle.inspect import ReferrerNode


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--registry", required=True, help="Registry host[:port], e.g. 127.0.0.1:5000.")
@click.option("--force", is_flag=True, help="Move the version tag even if it has other content.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--no-cache", is_flag=True, help="Re-hash every file (ignore the layer cache).")
@click.option(
    "--sign-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sign the image and each platform manifest with this cosign.key "
    "(password from $COSIGN_PASSWORD or a prompt).",
)
@registry_options
def push(
    directory: Path,
    registry: str,
    force: bool,
    as_json: bool,
    no_cache: bool,
    sign_key: Path | None,
    insecure: bool,
    authfile: Path | None,
) -> None:
    """Build DIRECTORY's bundle and push it to REGISTRY as NS/NAME:VERSION.

    \b
    Validates ecr.yaml, builds reproducible layers (model, code, data), assembles the runnable
    image on the declared base image, pushes it tagged with the version, and attaches the bundle
    manifest as a referrer. Unchanged layers are not uploaded again.

    \b
    Example:
      ecr-oci push examples/hello-sensor --registry 127.0.0.1:5000 --insecure
      podman pull 127.0.0.1:5000/waggle/hello-sensor:0.1.0

    Versions are immutable: pushing the same version with other content fails (exit 3) unless
    --force. Set SOURCE_DATE_EPOCH to stamp files and the image with that time (default 0).
    """
    options = RegistryOptions(insecure=insecure, authfile=authfile)
    cache = None if no_cache else LayerCache(default_cache_path())
    signer, ci = None, None
    if sign_key:  # the signing stack loads only when used (start-up time counts in a no-op push)
        from ecr_oci.cli.signing import load_signing_key
        from ecr_oci.signing.provenance import ci_context_from_env

        signer, ci = load_signing_key(sign_key), ci_context_from_env(os.environ)
    with options.connector() as connect:
        result = push_bundle(
            directory,
            registry=registry,
            connect=connect,
            force=force,
            epoch=source_date_epoch(),
            cache=cache,
            progress=BarProgress(enabled=not as_json),
            signer=signer,
            ci=ci,
        )
    if as_json:
        echo_json(result.to_json_obj())
        return
    state = "unchanged" if result.unchanged else "pushed"
    click.echo(f"{state} {result.image_reference}")
    click.echo(f"  bundle    {result.bundle_digest}")
    click.echo(f"  platforms {', '.join(result.platforms)}")
    for layer in result.layers:
        note = "uploaded" if layer.uploaded else "already there"
        click.echo(f"  {layer.role:<9} {human_size(layer.size):>10}  {layer.digest}  ({note})")
    click.echo(f"  sent      {human_size(result.bytes_uploaded)}")
    if result.signed:
        click.echo(
            f"  signed    {len(result.signed)} manifest(s) with {sign_key}, and attested its SLSA provenance"
        )


@cli.command()
@click.argument("reference")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory to create (must not exist, or be empty).",
)
@click.option(
    "--only",
    default=",".join(ROLES),
    show_default=True,
    help="Comma-separated roles to fetch: code, model, data, profile.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@registry_options
def pull(
    reference: str, output: Path, only: str, as_json: bool, insecure: bool, authfile: Path | None
) -> None:
    """Fetch the bundle of REFERENCE into OUTPUT, laid out like the author's directory.

    \b
    Every blob is verified against its digest and every archive entry checked before anything
    is written; on any error OUTPUT is left untouched. ecr.yaml is written back.

    \b
    Example:
      ecr-oci pull 127.0.0.1:5000/waggle/hello-sensor:0.1.0 -o hello-copy --insecure --only code
    """
    from ecr_oci.bundle.pull import pull_bundle

    roles = {part.strip() for part in only.split(",") if part.strip()}
    unknown = roles - set(ROLES)
    if unknown:
        raise click.BadParameter(
            f"unknown role(s) {', '.join(sorted(unknown))}; use {', '.join(ROLES)}", param_hint="--only"
        )
    ref = Reference.parse(reference)
    bar = BarProgress(enabled=not as_json)
    with RegistryOptions(insecure=insecure, authfile=authfile).connector() as connect:
        result = pull_bundle(connect(ref.registry), ref, output, only=roles, progress=bar)
    if as_json:
        echo_json(result.to_json_obj())
        return
    click.echo(f"pulled {result.reference} (bundle {result.bundle_digest}) into {result.output}")
    for role, size in result.written.items():
        click.echo(f"  {role:<8} {human_size(size)}")


@cli.command()
@click.argument("reference")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@registry_options
def inspect(reference: str, as_json: bool, insecure: bool, authfile: Path | None) -> None:
    """Show what REFERENCE holds: metadata, platforms, layers with roles and sizes, referrers.

    \b
    Example:
      ecr-oci inspect 127.0.0.1:5000/waggle/hello-sensor:0.1.0 --insecure
    """
    from ecr_oci.bundle.inspect import inspect_reference

    ref = Reference.parse(reference)
    with RegistryOptions(insecure=insecure, authfile=authfile).connector() as connect:
        found = inspect_reference(connect(ref.registry), ref)
    if as_json:
        echo_json(found.to_json_obj())
        return
    click.echo(f"{found.reference}\n  digest     {found.digest}\n  mediaType  {found.media_type}")
    if found.bundle is not None:
        meta = found.bundle["spec"]["metadata"]
        click.echo(f"  bundle     {found.bundle['digest']}")
        click.echo(f"  name       {meta['namespace']}/{meta['name']} {meta['version']}")
        click.echo(f"  about      {meta['description']}")
        click.echo(f"  built      {found.bundle['created']}")
        for layer in found.bundle["layers"]:
            click.echo(f"  {layer['role']:<10} {human_size(layer['size']):>10}  {layer['digest']}")
    else:
        click.echo("  bundle     none (not pushed by ecr-oci)")
    click.echo("  platforms")
    for platform in found.platforms:
        click.echo(f"    {platform.platform:<14} {platform.digest}")
        _echo_tree(platform.referrers, "      ")
    click.echo("  referrers")
    _echo_tree(found.referrers, "    ")


def _echo_tree(nodes: list[ReferrerNode], indent: str) -> None:
    for node in nodes:
        click.echo(f"{indent}{node.artifact_type or '?'}  {node.digest}  ({human_size(node.size)})")
        _echo_tree(node.children, indent + "  ")
