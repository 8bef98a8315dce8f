"""Signing: cosign-compatible keys, signatures and attestations, stored as cosign stores them.

    >>> from ecr_oci.signing.keys import generate_key_pair
    >>> generate_key_pair(b"pw").public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    True

Modules by what the user does:

- :mod:`~ecr_oci.signing.keys`: cosign key files (generate, load, encrypt), ECDSA P-256 sign/verify;
- :mod:`~ecr_oci.signing.sign` and :mod:`~ecr_oci.signing.verify`: image signatures (``.sig``);
- :mod:`~ecr_oci.signing.attest`: in-toto attestations (``.att``), written and verified;
- :mod:`~ecr_oci.signing.approval`: approvals of a digest for a deployment (one predicate type per
  deployment), on top of ``attest``;
- :mod:`~ecr_oci.signing.provenance`: the SLSA v1 provenance predicate ``push --sign-key`` attests.

The formats underneath: :mod:`~ecr_oci.signing.simplesigning` (the signed payload),
:mod:`~ecr_oci.signing.dsse` (DSSE envelopes and in-toto statements),
:mod:`~ecr_oci.signing.store` (the ``sha256-<hex>.sig``/``.att`` manifests) and
:mod:`~ecr_oci.signing.sigstore_bundle` (the optional sigstore bundle v0.3 referrer).
"""
