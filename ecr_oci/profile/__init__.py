"""Performance profiles (issue 6, DESIGN.md §5): measure a bundle on a device, attach the profile.

    >>> from ecr_oci.profile import RunRequest, profile_directory          # doctest: +SKIP
    >>> profile = profile_directory(Path("examples/memory-hog"), RunRequest(duration=10))  # doctest: +SKIP
    >>> attach_profile(client, Reference.parse("HOST/waggle/memory-hog:0.1.0"), profile)   # doctest: +SKIP

Modules by domain: :mod:`.model` (the document and its loader), :mod:`.metrics` (plugin metric lines
and percentiles), :mod:`.sampling` (``/proc``), :mod:`.device` (what the machine is; GPU; energy),
:mod:`.run` (the process and podman runtimes), :mod:`.attach` (referrers).
"""

from __future__ import annotations

from ecr_oci.profile.attach import (
    AttachedProfile,
    PlatformMismatchError,
    ProfileEntry,
    attach_profile,
    list_profiles,
)
from ecr_oci.profile.model import Profile, ProfileError, load_profile, parse_profile
from ecr_oci.profile.run import Podman, ProfileRunError, RunRequest, profile_directory, profile_image

__all__ = [
    "AttachedProfile",
    "PlatformMismatchError",
    "Podman",
    "Profile",
    "ProfileEntry",
    "ProfileError",
    "ProfileRunError",
    "RunRequest",
    "attach_profile",
    "list_profiles",
    "load_profile",
    "parse_profile",
    "profile_directory",
    "profile_image",
]
