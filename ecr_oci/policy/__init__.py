"""Admission policies that let only signed, approved ECR images run (issue 3, ``policies/``).

    >>> from ecr_oci.policy import FORMATS, TEMPLATES
    >>> FORMATS
    ('kyverno', 'policy-controller', 'containers')
    >>> [target for _, target in TEMPLATES["containers"]]
    ['policy.json', 'registries.d/ecr.yaml']

The templates live in the repository's ``policies/`` folder (shipped in the wheel); :func:`render_policy`
fills them for one registry, deployment and cosign public key. ``policies/README.md`` explains each
policy, its offline settings and how to apply it.
"""

from __future__ import annotations

from ecr_oci.errors import PolicyInputError
from ecr_oci.policy.render import (
    DEFAULT_NAME,
    FORMATS,
    TEMPLATES,
    PolicyFormat,
    check_deployment,
    check_dns_label,
    check_registry,
    policies_folder,
    render_policy,
    write_rendered,
)

__all__ = [
    "DEFAULT_NAME",
    "FORMATS",
    "TEMPLATES",
    "PolicyFormat",
    "PolicyInputError",
    "check_deployment",
    "check_dns_label",
    "check_registry",
    "policies_folder",
    "render_policy",
    "write_rendered",
]
