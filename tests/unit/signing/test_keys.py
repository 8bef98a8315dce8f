"""Key files in cosign's formats: round trips, both directions with the real cosign, clear errors."""

from __future__ import annotations

import base64
import doctest
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ecr_oci.errors import KeyFileError, VerificationError
from ecr_oci.signing import keys
from ecr_oci.signing.keys import (
    encrypt_private_key,
    generate_key_pair,
    load_private_key,
    load_public_key,
    public_key_pem,
    sign_bytes,
    verify_bytes,
)

PASSWORD = b"correct horse"


def cosign_run(cosign: str, *args: str, cwd: Path, password: str = "correct horse") -> str:
    env = {**os.environ, "COSIGN_PASSWORD": password, "HOME": str(cwd)}
    done = subprocess.run(
        [cosign, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"cosign {' '.join(args)}: {done.stderr}"
    return done.stdout


def cosign_sign_blob(cosign: str, key: str, cwd: Path) -> bytes:
    """``cosign sign-blob`` over ``cwd/blob``: the DER signature."""
    args = ["sign-blob", "--key", key, "--tlog-upload=false", "-y", "--output-signature", "blob.sig"]
    cosign_run(cosign, *args, "blob", cwd=cwd)
    return base64.b64decode((cwd / "blob.sig").read_bytes())


def cosign_verify_blob(cosign: str, public: str, signature: bytes, cwd: Path) -> None:
    (cwd / "check.sig").write_bytes(base64.b64encode(signature))
    args = ["verify-blob", "--key", public, "--insecure-ignore-tlog=true", "--signature", "check.sig"]
    cosign_run(cosign, *args, "blob", cwd=cwd)


def pem_body(pem: bytes) -> dict[str, object]:
    lines = pem.decode().strip().splitlines()
    document: dict[str, object] = json.loads(base64.b64decode("".join(lines[1:-1])))
    return document


def test_doctests() -> None:
    assert doctest.testmod(keys).failed == 0


def test_round_trip() -> None:
    pair = generate_key_pair(PASSWORD)
    key = load_private_key(pair.private_pem, PASSWORD, source="k.key")
    public = load_public_key(pair.public_pem, source="k.pub")
    assert public_key_pem(key.public_key()) == pair.public_pem
    verify_bytes(public, b"payload", sign_bytes(key, b"payload"))


def test_private_key_file_format() -> None:
    """REFERENCE.md: scrypt N=32768 r=8 p=1, 32-byte salt, 24-byte nonce, PKCS#8 inside."""
    pem = generate_key_pair(PASSWORD).private_pem
    assert pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert pem.endswith(b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert all(len(line) <= 64 for line in pem.splitlines())
    body = pem_body(pem)
    assert list(body) == ["kdf", "cipher", "ciphertext"]
    kdf, cipher = body["kdf"], body["cipher"]
    assert isinstance(kdf, dict) and isinstance(cipher, dict)
    assert kdf["name"] == "scrypt" and kdf["params"] == {"N": 32768, "r": 8, "p": 1}
    assert len(base64.b64decode(kdf["salt"])) == 32
    assert cipher["name"] == "nacl/secretbox" and len(base64.b64decode(cipher["nonce"])) == 24


def test_public_key_is_pkix_pem() -> None:
    pem = generate_key_pair(PASSWORD).public_pem
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert isinstance(serialization.load_pem_public_key(pem), ec.EllipticCurvePublicKey)


def test_older_cosign_label_loads() -> None:
    pem = generate_key_pair(PASSWORD).private_pem.replace(b"SIGSTORE", b"COSIGN")
    assert isinstance(load_private_key(pem, PASSWORD, source="old.key"), ec.EllipticCurvePrivateKey)


def test_empty_password() -> None:
    pair = generate_key_pair(b"")
    load_private_key(pair.private_pem, b"", source="k.key")


def test_verify_bytes_wrong_key_and_tampered_data() -> None:
    key = load_private_key(generate_key_pair(PASSWORD).private_pem, PASSWORD, source="k")
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    signature = sign_bytes(key, b"data")
    for public, data, sig in (
        (other, b"data", signature),
        (key.public_key(), b"datA", signature),
        (key.public_key(), b"data", b"garbage"),
    ):
        with pytest.raises(VerificationError) as caught:
            verify_bytes(public, data, sig)
        assert caught.value.reason == "wrong-key"


# -- errors: one line that says how to fix -------------------------------------------------------


def assert_one_line(err: KeyFileError, *words: str) -> None:
    message = str(err)
    assert "\n" not in message and message.startswith("k.key: ")
    for word in words:
        assert word in message


def test_wrong_password() -> None:
    pem = generate_key_pair(PASSWORD).private_pem
    with pytest.raises(KeyFileError) as caught:
        load_private_key(pem, b"wrong", source="k.key")
    assert_one_line(caught.value, "wrong password", "COSIGN_PASSWORD")
    assert caught.value.exit_code == 2


def _corrupt_body(pem: bytes, change: Callable[[dict[str, object]], object]) -> bytes:
    body = pem_body(pem)
    change(body)
    encoded = base64.b64encode(json.dumps(body).encode()).decode()
    return (
        f"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{encoded}\n"
        "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n".encode()
    )


def _flip_ciphertext(body: dict[str, object]) -> None:
    raw = bytearray(base64.b64decode(str(body["ciphertext"])))
    raw[-1] ^= 1
    body["ciphertext"] = base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("corrupt", "words"),
    [
        (lambda pem: pem[: len(pem) // 2], ["END"]),
        (lambda pem: b"not a key at all\n", ["not a PEM"]),
        (lambda pem: pem.replace(pem.splitlines()[3], b"!!!!" + pem.splitlines()[3][4:]), ["base64"]),
        (lambda pem: _corrupt_body(pem, _flip_ciphertext), ["wrong password", "corrupted key file"]),
        (lambda pem: _corrupt_body(pem, lambda b: b.pop("cipher")), ["corrupted"]),
        (
            lambda pem: _corrupt_body(pem, lambda b: b["kdf"].update(name="pbkdf2")),  # type: ignore[union-attr]
            ["unsupported key encryption"],
        ),
        (
            lambda pem: _corrupt_body(pem, lambda b: b["kdf"]["params"].update(N=1 << 24)),  # type: ignore[index]
            ["unsupported scrypt parameters"],
        ),
        (
            lambda pem: pem.replace(b"ENCRYPTED SIGSTORE PRIVATE KEY", b"EC PRIVATE KEY"),
            ["unsupported PEM block 'EC PRIVATE KEY'"],
        ),
    ],
    ids=[
        "truncated",
        "not-pem",
        "bad-base64",
        "flipped-bit",
        "no-cipher",
        "other-kdf",
        "huge-scrypt-cost",
        "plain-ec-pem",
    ],
)
def test_corrupted_private_key(corrupt: Callable[[bytes], bytes], words: list[str]) -> None:
    pem = corrupt(generate_key_pair(PASSWORD).private_pem)
    with pytest.raises(KeyFileError) as caught:
        load_private_key(pem, PASSWORD, source="k.key")
    assert_one_line(caught.value, *words)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: rsa.generate_private_key(65537, 2048), ["unsupported key type RSA", "P-256"]),
        (lambda: ec.generate_private_key(ec.SECP384R1()), ["unsupported key curve secp384r1"]),
        (ed25519.Ed25519PrivateKey.generate, ["unsupported key type Ed25519"]),
    ],
    ids=["rsa", "p384", "ed25519"],
)
def test_unsupported_private_key(make: Callable[[], keys.PrivateKeyTypes], words: list[str]) -> None:
    key = make()
    with pytest.raises(KeyFileError) as caught:
        load_private_key(encrypt_private_key(key, PASSWORD), PASSWORD, source="k.key")
    assert_one_line(caught.value, *words)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyFileError) as caught:
        load_public_key(public, source="k.key")
    assert_one_line(caught.value, "unsupported")


def test_private_key_given_as_public_key() -> None:
    with pytest.raises(KeyFileError) as caught:
        load_public_key(generate_key_pair(PASSWORD).private_pem, source="k.key")
    assert_one_line(caught.value, "expected PUBLIC KEY")


# -- the real cosign, both directions -----------------------------------------------------------


def test_cosign_keys_work_here(tool: Callable[[str], str], tmp_path: Path) -> None:
    cosign = tool("cosign")
    cosign_run(cosign, "generate-key-pair", cwd=tmp_path)
    key = load_private_key((tmp_path / "cosign.key").read_bytes(), PASSWORD, source="cosign.key")
    public = load_public_key((tmp_path / "cosign.pub").read_bytes(), source="cosign.pub")
    assert public_key_pem(key.public_key()) == (tmp_path / "cosign.pub").read_bytes()
    # cosign signs a blob; we verify its signature with its public key
    (tmp_path / "blob").write_bytes(b"hello")
    verify_bytes(public, b"hello", cosign_sign_blob(cosign, "cosign.key", tmp_path))


@pytest.mark.parametrize("label", [b"SIGSTORE", b"COSIGN"])
def test_our_keys_work_in_cosign(tool: Callable[[str], str], tmp_path: Path, label: bytes) -> None:
    cosign = tool("cosign")
    pair = generate_key_pair(PASSWORD)
    (tmp_path / "ecr.key").write_bytes(pair.private_pem.replace(b"SIGSTORE", label))
    (tmp_path / "ecr.pub").write_bytes(pair.public_pem)
    (tmp_path / "blob").write_bytes(b"hello")
    # cosign decrypts our private key and signs; cosign and we verify with our public key
    signature = cosign_sign_blob(cosign, "ecr.key", tmp_path)
    cosign_verify_blob(cosign, "ecr.pub", signature, tmp_path)
    verify_bytes(load_public_key(pair.public_pem, source="ecr.pub"), b"hello", signature)
    # and cosign verifies what we signed
    key = load_private_key(pair.private_pem, PASSWORD, source="ecr.key")
    cosign_verify_blob(cosign, "ecr.pub", sign_bytes(key, b"hello"), tmp_path)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: rsa.generate_private_key(65537, 2048), ["unsupported key type RSA"]),
        (lambda: ec.generate_private_key(ec.SECP384R1()), ["unsupported key curve secp384r1"]),
    ],
    ids=["rsa", "p384"],
)
def test_cosign_imported_unsupported_keys_are_refused(
    tool: Callable[[str], str],
    tmp_path: Path,
    make: Callable[[], keys.PrivateKeyTypes],
    words: list[str],
) -> None:
    """``cosign import-key-pair`` wraps RSA and P-384 keys in its format: we refuse them clearly."""
    cosign = tool("cosign")
    private = make().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "plain.pem").write_bytes(private)
    cosign_run(cosign, "import-key-pair", "--key", "plain.pem", "--output-key-prefix", "k", cwd=tmp_path)
    with pytest.raises(KeyFileError) as caught:
        load_private_key((tmp_path / "k.key").read_bytes(), PASSWORD, source="k.key")
    assert_one_line(caught.value, *words)
