"""ecr-oci: the Edge Code Repository for Waggle plugins, on a standard OCI registry.

    >>> import ecr_oci
    >>> ecr_oci.Reference.parse("127.0.0.1:5000/waggle/hello-sensor:0.1.0").tag
    '0.1.0'

The public API is ``__all__``; ``tests/unit/test_public_api.py`` pins it. Everything else is internal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Where each public name lives. Imported on first use (PEP 562): the CLI's start-up, which a no-op
#: push pays, does not load the signing or service stacks.
_EXPORTS: dict[str, str] = {
    "AuthError": "ecr_oci.errors",
    "BundleConfig": "ecr_oci.bundle.config",
    "BundleSpec": "ecr_oci.bundle.spec",
    "BundleSpecError": "ecr_oci.errors",
    "Credentials": "ecr_oci.oci.auth",
    "Digest": "ecr_oci.digest",
    "DigestMismatchError": "ecr_oci.errors",
    "Error": "ecr_oci.errors",
    "ImmutableVersionError": "ecr_oci.errors",
    "InputTooLargeError": "ecr_oci.errors",
    "Inspection": "ecr_oci.bundle.inspect",
    "InvalidReferenceError": "ecr_oci.errors",
    "LoadedSpec": "ecr_oci.bundle.spec_loader",
    "MediaType": "ecr_oci.mediatypes",
    "NotFound": "ecr_oci.errors",
    "Profile": "ecr_oci.profile.model",
    "ProfileError": "ecr_oci.profile.model",
    "PullResult": "ecr_oci.bundle.pull",
    "PushResult": "ecr_oci.bundle.push",
    "Reference": "ecr_oci.reference",
    "RegistryClient": "ecr_oci.oci.registry",
    "RegistryError": "ecr_oci.errors",
    "RunRequest": "ecr_oci.profile.run",
    "UnsafeArchiveError": "ecr_oci.errors",
    "VerificationError": "ecr_oci.errors",
    "approve_image": "ecr_oci.signing.approval",
    "attach_profile": "ecr_oci.profile.attach",
    "attest_image": "ecr_oci.signing.attest",
    "generate_key_pair": "ecr_oci.signing.keys",
    "inspect_reference": "ecr_oci.bundle.inspect",
    "list_profiles": "ecr_oci.profile.attach",
    "load_docker_config": "ecr_oci.oci.auth",
    "load_private_key": "ecr_oci.signing.keys",
    "load_public_key": "ecr_oci.signing.keys",
    "load_spec": "ecr_oci.bundle.spec_loader",
    "profile_directory": "ecr_oci.profile.run",
    "profile_image": "ecr_oci.profile.run",
    "pull_bundle": "ecr_oci.bundle.pull",
    "push_bundle": "ecr_oci.bundle.push",
    "render_policy": "ecr_oci.policy.render",
    "resolve_bundle": "ecr_oci.bundle.pull",
    "sign_image": "ecr_oci.signing.sign",
    "verify_approval": "ecr_oci.signing.approval",
    "verify_attestation": "ecr_oci.signing.attest",
    "verify_image": "ecr_oci.signing.verify",
}

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
    "Profile",
    "ProfileError",
    "PullResult",
    "PushResult",
    "Reference",
    "RegistryClient",
    "RegistryError",
    "RunRequest",
    "UnsafeArchiveError",
    "VerificationError",
    "approve_image",
    "attach_profile",
    "attest_image",
    "generate_key_pair",
    "inspect_reference",
    "list_profiles",
    "load_docker_config",
    "load_private_key",
    "load_public_key",
    "load_spec",
    "profile_directory",
    "profile_image",
    "pull_bundle",
    "push_bundle",
    "render_policy",
    "resolve_bundle",
    "sign_image",
    "verify_approval",
    "verify_attestation",
    "verify_image",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ecr_oci' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
