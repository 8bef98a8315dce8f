"""The error family of ecr-oci: one root, one subclass per failure a user can act on.

    >>> from ecr_oci.errors import Error, NotFound
    >>> issubclass(NotFound, Error)
    True

The CLI catches only :class:`Error`, prints ``str(err)`` as one line and exits with ``err.exit_code``;
``--verbose`` shows the traceback. Messages say what failed, where, and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence


class Error(Exception):
    """Root of every error ecr-oci raises on purpose."""

    #: Process exit status the CLI uses for this failure (1 = generic, 2 = usage/input).
    exit_code: int = 1

    def diagnostics(self) -> str:
        """A longer, multi-line explanation for ``--verbose``; defaults to the message."""
        return str(self)


class BundleSpecError(Error):
    """``ecr.yaml`` (or the directory it describes) is invalid.

    Carries the file, the 1-based line (when known) and the dotted field path, so the message reads
    ``hello/ecr.yaml:12: metadata.version: '1.0' is not semver (e.g. 1.0.0); fix: ...``.
    """

    exit_code = 2

    def __init__(self, message: str, *, file: str, line: int | None = None, field: str | None = None) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        prefix = f"{where}: {field}: " if field else f"{where}: "
        super().__init__(prefix + message)


class UnsafeArchiveError(Error):
    """An archive entry would escape the target directory, is a device, or exceeds a size limit."""

    exit_code = 2


class InputTooLargeError(Error):
    """Input exceeds a configured size limit (archive bombs, oversize manifests)."""

    exit_code = 2


class InvalidReferenceError(Error):
    """An image reference or digest string could not be parsed."""

    exit_code = 2


class RegistryError(Error):
    """The registry answered with an error, or could not be reached.

    ``status`` is the HTTP status (``None`` when the connection failed), ``codes`` the registry's error
    codes from the distribution-spec error body (``MANIFEST_BLOB_UNKNOWN`` …), ``url`` has secrets
    removed (see :func:`ecr_oci.oci.redact.redact_url`).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        codes: Sequence[str] = (),
    ) -> None:
        self.url = url
        self.status = status
        self.codes = tuple(codes)
        code_text = f" [{', '.join(self.codes)}]" if self.codes else ""
        status_text = f"HTTP {status}" if status is not None else "connection failed"
        super().__init__(f"{message}: {status_text}{code_text} ({url})")


class AuthError(RegistryError):
    """Credentials were missing or refused (401/403, token endpoint failure)."""


class NotFound(RegistryError):
    """The repository, tag, manifest or blob does not exist (or is not visible to the caller)."""


class DigestMismatchError(Error):
    """Content did not hash to the digest it was fetched or pushed by; nothing was written."""


class ImmutableVersionError(Error):
    """The version tag already exists with different content; pass ``--force`` to move it."""

    exit_code = 3


class VerificationError(Error):
    """A signature, attestation or digest check failed; the message says exactly why.

    ``reason`` is a stable machine-readable word for ``--json`` output and scripts: ``no-signature``,
    ``wrong-key``, ``digest-mismatch``, ``identity-mismatch``, ``malformed``, ``expired``,
    ``wrong-deployment``, ``no-attestation``, ``wrong-type``.
    """

    exit_code = 4

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(message)

    #: How far a check got before it failed, in the order the checks run: nothing found; found but
    #: unreadable; readable but not by this key; by this key but of another kind, about another
    #: image or repository, for another deployment; or all of that and expired.
    PROGRESS = (
        ("no-signature", "no-attestation"),
        ("malformed",),
        ("wrong-key",),
        ("wrong-type",),
        ("digest-mismatch", "identity-mismatch"),
        ("wrong-deployment",),
        ("expired",),
    )

    @classmethod
    def furthest(cls, failures: Sequence[VerificationError]) -> VerificationError:
        """The failure that got furthest (the one to report when every candidate failed: the
        signature by the right key that names another image says more than the wrong keys).
        The first of equals wins; ``failures`` must not be empty."""
        return max(failures, key=lambda err: _PROGRESS_RANK.get(err.reason, 0))


#: ``VerificationError.PROGRESS`` as reason → rank (built once: ``furthest`` runs per review).
_PROGRESS_RANK = {reason: i for i, reasons in enumerate(VerificationError.PROGRESS) for reason in reasons}


class KeyFileError(Error):
    """A key file could not be used: wrong password, corrupted or unsupported key."""

    exit_code = 2


class PolicyInputError(Error):
    """An admission policy cannot be rendered with these arguments (deployment, policy name, format,
    output); see :func:`ecr_oci.policy.render_policy`.

    Registry and key problems raise :class:`InvalidReferenceError` and :class:`KeyFileError`, the
    errors the rest of ecr-oci uses for them.
    """

    exit_code = 2
