"""``ecr-oci policy render``: admission policies for ECR images, filled for one registry and deployment.

    $ ecr-oci policy render --key cosign.pub --registry ecr.example.org --deployment sage-prod \\
          --format kyverno > clusterpolicy.yaml
    $ ecr-oci policy render --key cosign.pub --registry ecr.example.org --deployment sage-prod \\
          --format containers -o rendered
    wrote rendered/policy.json
    wrote rendered/registries.d/ecr.yaml

Thin by design (STYLE §10): the command reads the key file, calls
:func:`ecr_oci.policy.render_policy` and prints or writes what it returns. Bad input (key,
registry, deployment, a multi-file format without ``-o``) is an :class:`ecr_oci.errors.Error`
with exit status 2, which :mod:`ecr_oci.cli.main` prints as one line.
"""

from __future__ import annotations

from pathlib import Path

import click

from ecr_oci.cli.main import cli
from ecr_oci.cli.options import read_key_file
from ecr_oci.errors import PolicyInputError
from ecr_oci.policy import DEFAULT_NAME, FORMATS, PolicyFormat, render_policy, write_rendered


@cli.group()
def policy() -> None:
    """Admission policies that admit only signed, approved ECR images."""


@policy.command()
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The ECR public key (cosign.pub: PEM, ECDSA P-256).",
)
@click.option("--registry", required=True, help="Registry host[:port] whose images the policy covers.")
@click.option(
    "--deployment",
    required=True,
    help="Deployment the images must be approved for, as `ecr-oci approve --deployment` names it.",
)
@click.option(
    "--format",
    "policy_format",
    required=True,
    type=click.Choice(FORMATS),
    help="kyverno: ClusterPolicy; policy-controller: ClusterImagePolicy; containers: policy.json "
    "and registries.d/ecr.yaml for podman and CRI-O nodes.",
)
@click.option(
    "--name",
    default=DEFAULT_NAME,
    show_default=True,
    help="metadata.name of the Kubernetes policy (a DNS label).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the files into this directory (created if needed) instead of printing.",
)
def render(
    key_path: Path,
    registry: str,
    deployment: str,
    policy_format: PolicyFormat,
    name: str,
    output: Path | None,
) -> None:
    """Fill a policy template for images of REGISTRY approved for DEPLOYMENT.

    Prints the policy when it is one file and -o is not given; writes the files into -o DIR
    otherwise (containers is two files: policy.json and registries.d/ecr.yaml). Every policy
    works offline: no transparency log, no certificate-transparency check, no keyless.
    policies/README.md says how to apply each one.

    \b
    Examples:
      ecr-oci policy render --key cosign.pub --registry ecr.example.org \\
          --deployment sage-prod --format kyverno | kubectl apply -f -
      ecr-oci policy render --key cosign.pub --registry ecr.example.org \\
          --deployment sage-prod --format containers -o rendered
    """
    public_key_pem = read_key_file(key_path)
    files = render_policy(
        policy_format,
        public_key_pem=public_key_pem,
        registry=registry,
        deployment=deployment,
        name=name,
        key_source=str(key_path),
    )
    if output is None:
        if len(files) != 1:
            raise PolicyInputError(
                f"--format {policy_format} renders {len(files)} files ({', '.join(files)}): "
                "pass -o DIR to write them"
            )
        (content,) = files.values()
        click.echo(content.decode("utf-8"), nl=False)
        return
    for path in write_rendered(files, output):
        click.echo(f"wrote {path}")
