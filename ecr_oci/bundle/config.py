"""The bundle config blob (``application/vnd.waggle.ecr.bundle.config.v1+json``).

    >>> BundleConfig.model_json_schema()["title"]
    'BundleConfig'

It is what the index, ``inspect`` and ``pull`` read: the validated ``ecr.yaml`` plus what push
computed (image digest, platforms, layer roles and digests, source commit, build time). Its JSON
Schema is ``mediatypes/bundle.config.schema.json``; a unit test holds the two together.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ecr_oci.bundle.spec import BundleSpec, Source
from ecr_oci.digest import Digest

#: Annotation on layer descriptors (image and bundle manifests) naming the bundle role.
ROLE_ANNOTATION = "org.waggle-sensor.ecr.role"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ImageRef(_Frozen):
    mediaType: str
    digest: Digest
    size: int


class PlatformImage(_Frozen):
    os: str
    architecture: str
    variant: str | None = None
    digest: Digest = Field(description="digest of this platform's image manifest")


class LayerRecord(_Frozen):
    role: str = Field(pattern="^(code|model|data|profile)$")
    mediaType: str
    digest: Digest
    size: int
    diffID: Digest | None = Field(default=None, description="digest of the uncompressed tar")
    files: int | None = None
    path: str | None = Field(default=None, description="path in the author's directory")
    target: str | None = Field(default=None, description="absolute path in the runnable image")


class Builder(_Frozen):
    name: str = "ecr-oci"
    version: str


class BundleConfig(_Frozen):
    schemaVersion: int = 1
    spec: BundleSpec
    image: ImageRef
    platforms: list[PlatformImage]
    layers: list[LayerRecord]
    source: Source | None = None
    created: str = Field(description="RFC 3339 build time")
    builder: Builder
    ecrYamlDigest: Digest

    def layer(self, role: str) -> LayerRecord | None:
        return next((layer for layer in self.layers if layer.role == role), None)
