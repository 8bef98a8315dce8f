"""Admission decisions for Kubernetes Pods: signed by a trusted key and, per namespace, approved.

    >>> policy = AdmissionPolicy(registry="127.0.0.1:5000", trusted_keys=())
    >>> controller = AdmissionController(policy, client=lambda: RegistryClient("127.0.0.1:5000"))
    >>> body = b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",'
    >>> body += b' "request": {"uid": "u1", "kind": {"group": "apps", "kind": "Deployment"}}}'
    >>> answer = controller.review(body).response
    >>> answer.allowed, answer.status.message if answer.status else None
    (False, 'only Pods are checked (got apps/Deployment): point the webhook rules at pods')

What :meth:`AdmissionController.review` does with an ``AdmissionReview`` (admission.k8s.io/v1) of
a Pod (``POST /admission/validate``, issue 5): for every image of ``containers``,
``initContainers`` and ``ephemeralContainers``

1. parse it as Kubernetes does (``busybox`` is ``docker.io/library/busybox``); images matching an
   ``admission_exempt_images`` prefix are allowed unchecked (with a warning); images of another
   registry than the service's are denied;
2. resolve the tag to a digest with one ``HEAD`` to the registry, *on every review* (an image given
   by digest is used as is). Tags move — catching "the tag now points at an unapproved image" is
   the point of the check — and a ``HEAD`` costs about a millisecond, so the tag is never cached;
3. require a valid signature (:func:`~ecr_oci.signing.verify.verify_image`) by one of the trusted
   keys and, when the namespace is mapped to a deployment (``admission_deployments``), a valid,
   unexpired approval for it (:func:`~ecr_oci.signing.approval.verify_approval`) by one of them.

Step 3 is cached by (digest, deployment, trusted-key set) for ``admission_cache_ttl`` seconds, and
never past the expiry of the approval that allowed it. What a digest is cannot change, only its
signatures and approvals can; the TTL bounds how long a removed approval still admits. Registry
failures deny (``failurePolicy: Fail`` would too) and are not cached.

A review that cannot be answered — not JSON, or no ``request.uid`` — raises
:class:`~ecr_oci.server.services.errors.InvalidInputError` (the route makes it a 400); any other
malformed review (wrong kind, no containers, a garbage image reference) is a denial naming why.
Nothing here speaks HTTP: the route passes the body in and the answer's JSON out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ecr_oci.digest import Digest
from ecr_oci.errors import InvalidReferenceError, NotFound, RegistryError, VerificationError
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference
from ecr_oci.server.services.errors import InvalidInputError
from ecr_oci.signing.approval import verify_approval
from ecr_oci.signing.keys import load_public_key
from ecr_oci.signing.verify import verify_image

__all__ = [
    "ADMISSION_API_VERSION",
    "AdmissionController",
    "AdmissionPolicy",
    "AdmissionRequest",
    "AdmissionResponse",
    "AdmissionReview",
    "AdmissionReviewAnswer",
    "DecisionCache",
    "ImageDecision",
    "normalize_image",
]

log = logging.getLogger("ecr_oci.server.admission")

ADMISSION_API_VERSION: Literal["admission.k8s.io/v1"] = "admission.k8s.io/v1"
#: The largest review read (the API server's own request limit is 3 MiB).
MAX_REVIEW_BYTES = 3 << 20
#: The reason for an image without a signature *and* for one that does not exist: answers to the
#: cluster must not tell a private bundle from a missing one (nor carry its digest; the service's
#: log has the detail).
_UNSIGNED_MISSING = "not signed by a trusted key (no-signature), or no such image"
#: Room for reasons in ``status.message`` (kubectl prints it whole; keep it readable).
_MAX_MESSAGE = 4000
_MAX_REASON = 600


# --- the parts of AdmissionReview v1 read here (everything else is ignored) ---------------------


class _K8s(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class GroupVersionKind(_K8s):
    group: str = ""
    version: str = ""
    kind: str = ""


class Container(_K8s):
    name: str = Field(default="", max_length=253)
    image: str | None = None


class PodSpec(_K8s):
    containers: list[Container] = Field(default_factory=list)
    initContainers: list[Container] | None = None
    ephemeralContainers: list[Container] | None = None

    def all_containers(self) -> list[tuple[str, Container]]:
        """(kind, container) for every container, init and ephemeral container, in that order."""
        kinds = (
            ("container", self.containers),
            ("initContainer", self.initContainers or []),
            ("ephemeralContainer", self.ephemeralContainers or []),
        )
        return [(kind, c) for kind, containers in kinds for c in containers]


class ObjectMeta(_K8s):
    name: str | None = None
    namespace: str | None = None


class Pod(_K8s):
    metadata: ObjectMeta | None = None
    spec: PodSpec | None = None


class AdmissionRequest(_K8s):
    uid: str = Field(min_length=1, max_length=256)
    kind: GroupVersionKind
    namespace: str | None = None
    operation: str | None = None
    object: Pod | None = None


class AdmissionReview(_K8s):
    """The request half of ``AdmissionReview`` (admission.k8s.io/v1) for a Pod."""

    apiVersion: str
    kind: str
    request: AdmissionRequest


class AdmissionStatus(BaseModel):
    code: int
    message: str


class AdmissionResponse(BaseModel):
    uid: str
    allowed: bool
    status: AdmissionStatus | None = None
    warnings: list[str] | None = None


class AdmissionReviewAnswer(BaseModel):
    """The ``AdmissionReview`` the webhook answers with (only ``response`` set)."""

    apiVersion: Literal["admission.k8s.io/v1"] = ADMISSION_API_VERSION
    kind: Literal["AdmissionReview"] = "AdmissionReview"
    response: AdmissionResponse

    @classmethod
    def allow(cls, uid: str, warnings: list[str] | None = None) -> AdmissionReviewAnswer:
        return cls(response=AdmissionResponse(uid=uid, allowed=True, warnings=warnings or None))

    @classmethod
    def deny(cls, uid: str, message: str) -> AdmissionReviewAnswer:
        status = AdmissionStatus(code=403, message=_clip(message, _MAX_MESSAGE))
        return cls(response=AdmissionResponse(uid=uid, allowed=False, status=status))


# --- policy, decisions and their cache -----------------------------------------------------------


@dataclass(frozen=True)
class AdmissionPolicy:
    """What the webhook enforces; :meth:`from_files` reads the trusted keys (``cosign.pub`` PEMs)."""

    registry: str
    trusted_keys: tuple[ec.EllipticCurvePublicKey, ...]
    deployments: Mapping[str, str] = field(default_factory=dict)
    exempt_images: tuple[str, ...] = ()
    cache_ttl: float = 30.0
    cache_size: int = 10_000

    @classmethod
    def from_files(
        cls,
        *,
        registry: str,
        trusted_key_files: Iterable[Path],
        deployments: Mapping[str, str],
        exempt_images: Iterable[str] = (),
        cache_ttl: float = 30.0,
    ) -> AdmissionPolicy:
        """Raises :class:`~ecr_oci.errors.KeyFileError` for a key file that is not a cosign public key
        (and ``OSError`` for one that cannot be read): the service must not start half-configured."""
        keys = tuple(load_public_key(path.read_bytes(), source=str(path)) for path in trusted_key_files)
        return cls(
            registry=registry,
            trusted_keys=keys,
            deployments=dict(deployments),
            exempt_images=tuple(exempt_images),
            cache_ttl=cache_ttl,
        )

    @property
    def key_set_id(self) -> str:
        """SHA-256 over the sorted DER public keys: part of every cache key."""
        ders = sorted(
            key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            for key in self.trusted_keys
        )
        return hashlib.sha256(b"".join(ders)).hexdigest()

    def is_exempt(self, image: str) -> bool:
        """Whether the normalized ``image`` matches an exempt prefix, on a name boundary.

        A prefix ending in ``/`` covers everything under it; otherwise it names one repository (or
        image) and matches it with any tag or digest: ``docker.io/library/busybox`` covers
        ``…/busybox:1.36`` but not ``…/busybox-evil``.
        """
        for prefix in self.exempt_images:
            if prefix.endswith("/") and image.startswith(prefix):
                return True
            if image == prefix or any(image.startswith(prefix + sep) for sep in (":", "@", "/")):
                return True
        return False


@dataclass(frozen=True)
class ImageDecision:
    """One image's verdict; ``reason`` says why it was denied (or what admitted it)."""

    allowed: bool
    reason: str
    warning: str | None = None


CacheKey = tuple[Digest, str | None, str]


class DecisionCache:
    """Decisions by (digest, deployment, key set), each until its own deadline; LRU-bounded.

    Thread-safe (the route runs reviews in worker threads).
    """

    def __init__(self, *, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[CacheKey, tuple[datetime, ImageDecision]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key: CacheKey, now: datetime) -> ImageDecision | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            until, decision = found
            if now >= until:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return decision

    def put(self, key: CacheKey, decision: ImageDecision, until: datetime) -> None:
        with self._lock:
            self._entries[key] = (until, decision)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every decision (``benchmarks/admission.py`` measures cold reviews this way)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def normalize_image(image: str) -> Reference:
    """A container image as Kubernetes reads it, with the registry made explicit.

    >>> str(normalize_image("busybox:1.36"))
    'docker.io/library/busybox:1.36'
    >>> str(normalize_image("127.0.0.1:5000/waggle/hello:0.1.0"))
    '127.0.0.1:5000/waggle/hello:0.1.0'

    No tag and no digest means ``:latest``, as the kubelet pulls it. Raises
    :class:`~ecr_oci.errors.InvalidReferenceError` for anything that is not a reference.
    """
    text = image.strip()
    if not text or len(text) > 1024 or text != image:
        raise InvalidReferenceError(f"invalid image reference {image[:200]!r}")
    first, sep, _ = text.partition("/")
    if not sep or not ("." in first or ":" in first or first == "localhost"):
        text = f"docker.io/{text}" if sep else f"docker.io/library/{text}"
    ref = Reference.parse(text)
    if ref.tag is None and ref.digest is None:
        ref = ref.with_tag("latest")
    return ref


@dataclass(frozen=True)
class _Checked:
    """A verification verdict, and until when it may be reused (``None``: do not cache)."""

    decision: ImageDecision
    approval_expires: datetime | None = None
    cacheable: bool = True


class AdmissionController:
    """Answers admission reviews; one per app (``create_app`` makes it).

    ``client()`` returns the service's registry client (kept open by the caller and shared across
    reviews); ``clock`` is the time approvals are judged at (tests pass a fixed one).
    """

    def __init__(
        self,
        policy: AdmissionPolicy,
        *,
        client: Callable[[], RegistryClient],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.policy = policy
        self.cache = DecisionCache(max_entries=policy.cache_size)
        self._client = client
        self._clock = clock
        self._key_set = policy.key_set_id

    # -- the review ---------------------------------------------------------------------------------

    def review(self, body: bytes) -> AdmissionReviewAnswer:
        """The answer to one ``AdmissionReview`` body (see the module docstring).

        Raises :class:`InvalidInputError` only when there is no ``request.uid`` to answer to.
        """
        if len(body) > MAX_REVIEW_BYTES:
            raise InvalidInputError(f"the review is over {MAX_REVIEW_BYTES} bytes")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise InvalidInputError("the body is not JSON (expected an AdmissionReview)") from None
        uid = _uid_of(data)
        if uid is None:
            raise InvalidInputError("the AdmissionReview has no request.uid to answer to")
        try:
            review = AdmissionReview.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "review"
            return AdmissionReviewAnswer.deny(uid, f"malformed AdmissionReview: {where}: {first['msg']}")
        return self._review(review)

    def _review(self, review: AdmissionReview) -> AdmissionReviewAnswer:
        request = review.request
        uid = request.uid
        if review.apiVersion != ADMISSION_API_VERSION or review.kind != "AdmissionReview":
            return AdmissionReviewAnswer.deny(
                uid,
                f"expected an AdmissionReview of {ADMISSION_API_VERSION} (got {review.kind} of "
                f"{review.apiVersion}): set admissionReviewVersions: [v1]",
            )
        gvk = request.kind
        if gvk.kind != "Pod" or gvk.group != "":
            return AdmissionReviewAnswer.deny(
                uid,
                f"only Pods are checked (got {'/'.join(p for p in (gvk.group, gvk.kind) if p)}): "
                "point the webhook rules at pods",
            )
        if request.operation in ("DELETE", "CONNECT"):
            return AdmissionReviewAnswer.allow(uid)  # nothing new runs
        pod = request.object
        containers = pod.spec.all_containers() if pod is not None and pod.spec is not None else []
        if not containers:
            return AdmissionReviewAnswer.deny(uid, "the pod has no containers to check")
        namespace = request.namespace or (pod.metadata.namespace if pod and pod.metadata else None)
        deployment = self.policy.deployments.get(namespace) if namespace else None
        decided: dict[str, ImageDecision] = {}
        failures: list[str] = []
        warnings: list[str] = []
        for kind, container in containers:
            label = f"{kind} {container.name!r}"
            if not container.image:
                failures.append(f"{label}: no image")
                continue
            decision = decided.get(container.image)
            if decision is None:
                decision = decided[container.image] = self.decide(container.image, deployment=deployment)
                if decision.warning:
                    warnings.append(decision.warning)
            if not decision.allowed:
                failures.append(
                    f"{label} ({_clip(container.image, 300)}): {_clip(decision.reason, _MAX_REASON)}"
                )
        if failures:
            return AdmissionReviewAnswer.deny(uid, "; ".join(failures))
        return AdmissionReviewAnswer.allow(uid, warnings)

    # -- one image -----------------------------------------------------------------------------------

    def decide(self, image: str, *, deployment: str | None) -> ImageDecision:
        """The verdict for one image reference in a namespace mapped to ``deployment`` (or none)."""
        try:
            ref = normalize_image(image)
        except InvalidReferenceError as err:
            return ImageDecision(False, f"invalid image reference: {err}")
        name = str(ref)
        if self.policy.is_exempt(name):
            return ImageDecision(
                True, "exempt", warning=f"{name} admitted unverified (admission_exempt_images)"
            )
        if ref.registry != self.policy.registry:
            return ImageDecision(
                False,
                f"not in the ECR registry {self.policy.registry}: only its signed images are admitted",
            )
        if not self.policy.trusted_keys:
            return ImageDecision(False, "no trusted keys are configured (admission_trusted_keys)")
        client = self._client()
        try:
            digest = ref.digest or client.manifest_digest(ref.repository, ref.identifier)
        except NotFound:
            # the same words as an unsigned image: a denial must not tell a cluster user that a
            # private bundle exists (the webhook reads with the service's own access)
            return ImageDecision(False, _UNSIGNED_MISSING)
        except RegistryError as err:
            log.warning("admission: cannot resolve %s: %s", name, err)
            return ImageDecision(False, f"the registry failed while resolving {name}; try again")
        key: CacheKey = (digest, deployment, self._key_set)
        now = self._clock()
        cached = self.cache.get(key, now)
        if cached is not None:
            return cached
        pinned = Reference(registry=ref.registry, repository=ref.repository, digest=digest)
        checked = self._check(client, pinned, deployment=deployment, now=now)
        if checked.cacheable and self.policy.cache_ttl > 0:
            until = now + timedelta(seconds=self.policy.cache_ttl)
            if checked.approval_expires is not None:
                until = min(until, checked.approval_expires)
            self.cache.put(key, checked.decision, until)
        return checked.decision

    def _check(
        self, client: RegistryClient, ref: Reference, *, deployment: str | None, now: datetime
    ) -> _Checked:
        try:
            try:  # any trusted key will do; the signatures are read once for all of them
                verify_image(client, ref, self.policy.trusted_keys)
            except VerificationError as err:
                log.info("admission: %s denied: %s", ref, err)  # the detail, with digests, for operators
                if err.reason == "no-signature":
                    return _Checked(ImageDecision(False, _UNSIGNED_MISSING))
                return _Checked(ImageDecision(False, f"not signed by a trusted key ({err.reason})"))
            if deployment is None:
                return _Checked(ImageDecision(True, "signed"))
            try:  # by any trusted key, read once for all of them
                approved = verify_approval(
                    client, ref, self.policy.trusted_keys, deployment=deployment, now=now
                )
            except VerificationError as err:
                log.info("admission: %s not approved for %s: %s", ref, deployment, err)
                return _Checked(
                    ImageDecision(False, f"no valid approval for deployment {deployment!r} ({err.reason})")
                )
        except NotFound:
            return _Checked(ImageDecision(False, _UNSIGNED_MISSING), cacheable=False)
        except RegistryError as err:
            log.warning("admission: cannot verify %s: %s", ref, err)
            return _Checked(
                ImageDecision(False, "the registry failed while verifying the image; try again"),
                cacheable=False,
            )
        # the newest approval's expiry bounds how long the verdict is cached (None: no expiry)
        return _Checked(
            ImageDecision(True, f"signed and approved for {deployment}"), approved.approval.expires
        )


def _uid_of(data: Any) -> str | None:
    """``request.uid`` when it is a usable string, else None (there is nothing to answer to)."""
    request = data.get("request") if isinstance(data, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    if isinstance(uid, str) and 0 < len(uid) <= 256:
        return uid
    return None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
