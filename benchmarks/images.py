"""A tiny runnable image pushed straight through the registry client, for the service benchmarks
(indexing, admission): one layer, an OCI config, an OCI manifest under a tag. Real bundles are not
needed there, and building them would dominate the set-up time."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["push_tiny_image"]

LAYER = b"layer-bytes"


def push_tiny_image(
    client: Any, repository: str, tag: str, *, env: list[str] | None = None, embed_config: bool = False
) -> tuple[Any, int]:
    """Push the image to ``repository:tag``; its manifest's digest and size. ``env`` makes the
    config (and so the manifest) differ between images of the same layer; ``embed_config`` puts
    the config inside the manifest too (OCI 1.1 ``data``), as ``ecr-oci push`` does."""
    from ecr_oci.digest import Digest
    from ecr_oci.mediatypes import MediaType
    from ecr_oci.oci.models import Descriptor, embedded

    layer = client.push_blob_bytes(repository, LAYER)
    config: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [str(layer.digest)]},
    }
    if env:
        config["config"] = {"Env": env}
    config_bytes = json.dumps(config).encode()
    config_desc: Descriptor = client.push_blob_bytes(repository, config_bytes).model_copy(
        update={"mediaType": str(MediaType.OCI_CONFIG)}
    )
    if embed_config:
        config_desc = embedded(config_desc, config_bytes)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": str(MediaType.OCI_MANIFEST),
            "config": config_desc.to_json_obj(),
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": str(layer.digest),
                    "size": layer.size,
                }
            ],
        }
    ).encode()
    client.put_manifest(repository, tag, manifest, str(MediaType.OCI_MANIFEST))
    return Digest.of(manifest), len(manifest)
