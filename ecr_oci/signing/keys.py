"""Key pairs in cosign's file formats: make, load, sign bytes, check signatures.

    >>> from ecr_oci.signing.keys import (
    ...     generate_key_pair, load_private_key, load_public_key, sign_bytes, verify_bytes)
    >>> pair = generate_key_pair(b"secret")
    >>> key = load_private_key(pair.private_pem, b"secret", source="cosign.key")
    >>> public = load_public_key(pair.public_pem, source="cosign.pub")
    >>> verify_bytes(public, b"payload", sign_bytes(key, b"payload"))

Formats (REFERENCE.md "Signatures", checked against cosign v2.6.1 ``pkg/cosign/keys.go`` and
go-securesystemslib v0.9.1 ``encrypted/encrypted.go``):

- public key: PEM ``PUBLIC KEY`` holding the PKIX ``SubjectPublicKeyInfo``;
- private key: PEM ``ENCRYPTED SIGSTORE PRIVATE KEY`` (older cosign: ``ENCRYPTED COSIGN PRIVATE KEY``)
  whose body is the JSON ``{"kdf": {"name": "scrypt", "params": {"N", "r", "p"}, "salt"}, "cipher":
  {"name": "nacl/secretbox", "nonce"}, "ciphertext"}`` (byte fields in standard base64); the ciphertext
  is NaCl secretbox over the PKCS#8 DER key, under a 32-byte scrypt key of the password.

Only ECDSA P-256 with SHA-256 is supported: it is what cosign generates and what every verifier in
REFERENCE.md accepts. The library takes the password as bytes; reading it is the CLI's job.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ecr_oci.errors import KeyFileError, VerificationError

__all__ = [
    "PRIVATE_KEY_PEM_TYPES",
    "KeyPair",
    "PublicKeys",
    "encrypt_private_key",
    "generate_key_pair",
    "load_private_key",
    "load_public_key",
    "public_key_list",
    "public_key_pem",
    "sign_bytes",
    "verify_bytes",
]

#: PEM labels cosign reads for encrypted private keys; the first is what cosign v2 writes.
PRIVATE_KEY_PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
PUBLIC_KEY_PEM_TYPE = "PUBLIC KEY"

_SALT_SIZE = 32
_KEY_SIZE = 32
_NONCE_SIZE = nacl.secret.SecretBox.NONCE_SIZE  # 24
# The scrypt cost we write: go-securesystemslib's "legacy" level, the one every cosign release reads.
_WRITE_PARAMS = {"N": 32768, "r": 8, "p": 1}
# The levels go-securesystemslib accepts (legacy, standard, OWASP). Anything else is refused, as cosign
# does; it also stops a crafted file from asking for gigabytes of scrypt memory.
_ACCEPTED_PARAMS = ({"N": 32768, "r": 8, "p": 1}, {"N": 65536, "r": 8, "p": 1}, {"N": 131072, "r": 8, "p": 1})


#: One public key, or several of which any will do (the admission webhook's trusted keys).
PublicKeys: TypeAlias = ec.EllipticCurvePublicKey | Sequence[ec.EllipticCurvePublicKey]


def public_key_list(keys: PublicKeys) -> list[ec.EllipticCurvePublicKey]:
    """``keys`` as a list; ``ValueError`` when it is empty (nothing could ever verify)."""
    found = [keys] if isinstance(keys, ec.EllipticCurvePublicKey) else list(keys)
    if not found:
        raise ValueError("verification needs at least one public key")
    return found


@dataclass(frozen=True)
class KeyPair:
    """A freshly generated key pair, as the bytes of ``cosign.key`` and ``cosign.pub``."""

    private_pem: bytes
    public_pem: bytes


def generate_key_pair(password: bytes) -> KeyPair:
    """Make an ECDSA P-256 key pair in cosign's file formats, the private key encrypted with ``password``.

    An empty password is allowed (cosign allows it too); the CLI asks for confirmation.
    """
    private_key = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(
        private_pem=encrypt_private_key(private_key, password),
        public_pem=public_key_pem(private_key.public_key()),
    )


def encrypt_private_key(key: PrivateKeyTypes, password: bytes) -> bytes:
    """The ``ENCRYPTED SIGSTORE PRIVATE KEY`` PEM of any key (cosign ``import-key-pair`` does this).

    Only P-256 keys load back (:func:`load_private_key`); other types are written for tests and
    for telling users clearly why such a key is refused.
    """
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt = os.urandom(_SALT_SIZE)
    nonce = os.urandom(_NONCE_SIZE)
    box = nacl.secret.SecretBox(_derive_key(password, salt, **_WRITE_PARAMS))
    document = {
        "kdf": {"name": "scrypt", "params": dict(_WRITE_PARAMS), "salt": _b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(box.encrypt(der, nonce).ciphertext),
    }
    return _pem_encode(PRIVATE_KEY_PEM_TYPES[0], json.dumps(document, separators=(",", ":")).encode())


def load_private_key(data: bytes, password: bytes, *, source: str) -> ec.EllipticCurvePrivateKey:
    """Decrypt a cosign private key file (``ENCRYPTED SIGSTORE/COSIGN PRIVATE KEY``).

    ``source`` names the file in messages. Raises :class:`KeyFileError` (one line, says how to fix)
    when the file is not such a PEM, is corrupted, the password is wrong, or the key is not ECDSA P-256.
    """
    label, body = _pem_decode(data, source=source, expected=PRIVATE_KEY_PEM_TYPES)
    document = _parse_envelope(body, source=source)
    try:
        salt = base64.b64decode(document["kdf"]["salt"], validate=True)
        nonce = base64.b64decode(document["cipher"]["nonce"], validate=True)
        ciphertext = base64.b64decode(document["ciphertext"], validate=True)
    except (binascii.Error, TypeError) as err:
        raise KeyFileError(f"{source}: corrupted key file (bad base64 in the {label} block)") from err
    if len(nonce) != _NONCE_SIZE or not salt:
        raise KeyFileError(f"{source}: corrupted key file (bad salt or nonce size)")
    params = document["kdf"]["params"]
    box = nacl.secret.SecretBox(_derive_key(password, salt, N=params["N"], r=params["r"], p=params["p"]))
    try:
        der = box.decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError as err:
        raise KeyFileError(
            f"{source}: cannot decrypt the private key: wrong password (set COSIGN_PASSWORD) "
            "or a corrupted key file"
        ) from err
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, UnsupportedAlgorithm) as err:
        raise KeyFileError(f"{source}: corrupted key file (the decrypted key is not PKCS#8)") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(
            f"{source}: unsupported key type {_kind(key)}: only ECDSA P-256 is supported; "
            "make one with `ecr-oci keygen` or `cosign generate-key-pair`"
        )
    _check_curve(key.curve, source=source)
    return key


def load_public_key(data: bytes, *, source: str) -> ec.EllipticCurvePublicKey:
    """Load a PEM ``PUBLIC KEY`` (PKIX), as ``cosign.pub``.

    Raises :class:`KeyFileError` when the file is not such a PEM or the key is not ECDSA P-256.
    """
    _pem_decode(data, source=source, expected=(PUBLIC_KEY_PEM_TYPE,))
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as err:
        raise KeyFileError(f"{source}: corrupted public key (PEM PUBLIC KEY does not parse)") from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyFileError(
            f"{source}: unsupported public key type {_kind(key)}: only ECDSA P-256 is supported"
        )
    _check_curve(key.curve, source=source)
    return key


def public_key_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    """The PEM ``PUBLIC KEY`` bytes of ``key`` (what ``cosign.pub`` holds)."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def sign_bytes(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-SHA256 signature over ``data``, ASN.1 DER encoded (cosign's signature encoding)."""
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify_bytes(public_key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> None:
    """Check a DER ECDSA-SHA256 ``signature`` over ``data``; returns only if it is valid.

    Raises :class:`VerificationError` (reason ``wrong-key``) when the signature was not made by this key
    over these bytes — a different key, tampered data and a garbled signature all look the same here.
    """
    try:
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError) as err:
        raise VerificationError(
            "the signature does not verify with the given public key", reason="wrong-key"
        ) from err


def _derive_key(password: bytes, salt: bytes, *, N: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=_KEY_SIZE, n=N, r=r, p=p).derive(password)


def _parse_envelope(body: bytes, *, source: str) -> dict[str, Any]:
    """Parse and shape-check the encrypted-key JSON; the scrypt parameters must be a known level."""
    try:
        document = json.loads(body)
        kdf, cipher = document["kdf"], document["cipher"]
        params = {"N": kdf["params"]["N"], "r": kdf["params"]["r"], "p": kdf["params"]["p"]}
        names = (kdf["name"], cipher["name"])
        fields = (kdf["salt"], cipher["nonce"], document["ciphertext"])
    except (ValueError, KeyError, TypeError) as err:
        raise KeyFileError(f"{source}: corrupted key file (the encrypted key is not cosign's JSON)") from err
    if names != ("scrypt", "nacl/secretbox"):
        raise KeyFileError(f"{source}: unsupported key encryption {names[0]}/{names[1]}")
    if params not in _ACCEPTED_PARAMS or not all(isinstance(f, str) for f in fields):
        raise KeyFileError(f"{source}: corrupted key file (unsupported scrypt parameters {params})")
    return dict(document)


def _kind(key: object) -> str:
    """``RSA``, ``Ed25519`` … from cryptography's class names (``RSAPrivateKey``)."""
    return type(key).__name__.removesuffix("PrivateKey").removesuffix("PublicKey").lstrip("_")


def _check_curve(curve: ec.EllipticCurve, *, source: str) -> None:
    if not isinstance(curve, ec.SECP256R1):
        raise KeyFileError(
            f"{source}: unsupported key curve {curve.name}: only ECDSA P-256 is supported; "
            "make one with `ecr-oci keygen` or `cosign generate-key-pair`"
        )


def _pem_decode(data: bytes, *, source: str, expected: tuple[str, ...]) -> tuple[str, bytes]:
    """Return the label and decoded body of the first PEM block; check the label is one we expect."""
    text = data.decode("ascii", errors="replace")
    begin = text.find("-----BEGIN ")
    head_end = text.find("-----", begin + 11) if begin >= 0 else -1
    if begin < 0 or head_end < 0:
        raise KeyFileError(f"{source}: not a PEM file (expected a {expected[0]} block)")
    label = text[begin + 11 : head_end]
    end_marker = f"-----END {label}-----"
    end = text.find(end_marker, head_end)
    if label not in expected:
        raise KeyFileError(
            f"{source}: unsupported PEM block {label!r}: expected {' or '.join(expected)} "
            "(cosign's key format; make one with `ecr-oci keygen`)"
        )
    if end < 0:
        raise KeyFileError(f"{source}: corrupted key file (no {end_marker!r} line)")
    body = "".join(text[head_end + 5 : end].split())
    try:
        return label, base64.b64decode(body, validate=True)
    except binascii.Error as err:
        raise KeyFileError(f"{source}: corrupted key file (bad base64 in the {label} block)") from err


def _pem_encode(label: str, body: bytes) -> bytes:
    encoded = base64.b64encode(body).decode()
    lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    return ("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n").encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
