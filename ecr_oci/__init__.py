"""ecr-oci: the Edge Code Repository for Waggle plugins, on a standard OCI registry.

    >>> import ecr_oci
    >>> ecr_oci.Reference.parse("127.0.0.1:5000/waggle/hello-sensor:0.1.0").tag
    '0.1.0'

The public API is this list; ``tests/unit/test_public_api.py`` pins it. Everything else is internal.
"""

from __future__ import annotations

from ecr_oci.bundle.config import BundleConfig
from ecr_oci.bundle.inspect import Inspection, inspect_reference
from ecr_oci.bundle.pull import PullResult, pull_bundle, resolve_bundle
from ecr_oci.bundle.push import PushResult, push_bundle
from ecr_oci.bundle.spec import BundleSpec
from ecr_oci.bundle.spec_loader import LoadedSpec, load_spec
from ecr_oci.digest import Digest
from ecr_oci.errors import (
    AuthError,
    BundleSpecError,
    DigestMismatchError,
    Error,
    ImmutableVersionError,
    InputTooLargeError,
    InvalidReferenceError,
    NotFound,
    RegistryError,
    UnsafeArchiveError,
    VerificationError,
)
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.auth import Credentials, load_docker_config
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.policy.render import render_policy
from ecr_oci.reference import Reference
from ecr_oci.signing.approval import approve_image, verify_approval
from ecr_oci.signing.attest import attest_image, verify_attestation
from ecr_oci.signing.keys import generate_key_pair, load_private_key, load_public_key
from ecr_oci.signing.sign import sign_image
from ecr_oci.signing.verify import verify_image

__all__ = [
    "AuthError",
    "BundleConfig",
    "BundleSpec",
    "BundleSpecError",
    "Credentials",
    "Digest",
    "DigestMismatchError",
    "Error",
    "ImmutableVersionError",
    "InputTooLargeError",
    "Inspection",
    "InvalidReferenceError",
    "LoadedSpec",
    "MediaType",
    "NotFound",
    "PullResult",
    "PushResult",
    "Reference",
    "RegistryClient",
    "RegistryError",
    "UnsafeArchiveError",
    "VerificationError",
    "approve_image",
    "attest_image",
    "generate_key_pair",
    "inspect_reference",
    "load_docker_config",
    "load_private_key",
    "load_public_key",
    "load_spec",
    "pull_bundle",
    "push_bundle",
    "render_policy",
    "resolve_bundle",
    "sign_image",
    "verify_approval",
    "verify_attestation",
    "verify_image",
]
