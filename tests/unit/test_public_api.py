"""The exported API is one list; changing it is a deliberate act (STYLE: httpx habit)."""

from __future__ import annotations

import ecr_oci
from ecr_oci.errors import Error


def test_public_api_is_pinned():
    assert sorted(ecr_oci.__all__) == [
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
    for name in ecr_oci.__all__:
        assert getattr(ecr_oci, name) is not None


def test_every_exported_error_is_under_the_one_root():
    errors = [getattr(ecr_oci, n) for n in ecr_oci.__all__ if n.endswith(("Error", "NotFound"))]
    assert errors and all(issubclass(e, Error) for e in errors)
