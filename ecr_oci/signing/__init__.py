"""Signing: cosign-compatible keys, simple-signing payloads, signatures stored as cosign stores them.

    >>> from ecr_oci.signing.keys import generate_key_pair
    >>> generate_key_pair(b"pw").public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    True

Modules by what the user does: :mod:`~ecr_oci.signing.keys` (key files), :mod:`~ecr_oci.signing.sign`,
:mod:`~ecr_oci.signing.verify`; :mod:`~ecr_oci.signing.simplesigning` (the payload) and
:mod:`~ecr_oci.signing.store` (the ``sha256-<hex>.sig`` manifest) are the formats underneath.
"""
