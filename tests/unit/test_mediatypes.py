"""`mediatypes/` held against the `MediaType` enum; every example against its schema."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel
from referencing import Registry, Resource

from ecr_oci.bundle.spec import BundleSpec
from ecr_oci.bundle.spec_loader import load_spec
from ecr_oci.bundle.starter import write_starter
from ecr_oci.mediatypes import MediaType, PredicateType, spec_folder

FOLDER = spec_folder()
OURS = [m for m in MediaType if m.value.startswith("application/vnd.waggle.ecr.")]
OUR_PREDICATES = [p for p in PredicateType if p.is_ours]
SCHEMAS: dict[str, dict[str, Any]] = {
    p.name.removesuffix(".schema.json"): json.loads(p.read_text())
    for p in sorted(FOLDER.glob("*.schema.json"))
}
REGISTRY: Registry[Any] = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema)) for schema in SCHEMAS.values()
)
BASE_URI = "https://ecr.waggle-sensor.org/mediatypes/"


def short_name(media_type: str) -> str:
    """``application/vnd.waggle.ecr.model.v1.tar+zstd`` → ``model``; ``bundle.config`` stays."""
    return media_type.removeprefix("application/vnd.waggle.ecr.").split(".v1", 1)[0]


def validator(short: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMAS[short], registry=REGISTRY)


def example(short: str) -> Any:
    return json.loads((FOLDER / "examples" / f"{short}.json").read_text())


def errors(short: str, document: Any) -> list[str]:
    return [error.message for error in validator(short).iter_errors(document)]


def test_spec_folder_is_the_source_checkout() -> None:
    assert Path(__file__).resolve().parents[2] / "mediatypes" == FOLDER
    assert (FOLDER / "README.md").is_file()


@pytest.mark.parametrize("media_type", OURS, ids=str)
def test_every_media_type_has_a_schema_and_a_page(media_type: MediaType) -> None:
    short = short_name(media_type)
    assert media_type.value in SCHEMAS[short]["x-media-types"]
    page = (FOLDER / f"{short}.md").read_text()
    assert f"`{media_type.value}`" in page
    assert f"`{media_type.value}`" in (FOLDER / "README.md").read_text()


def test_every_listed_media_type_is_in_the_enum_once() -> None:
    listed = [t for schema in SCHEMAS.values() for t in schema.get("x-media-types", [])]
    assert sorted(listed) == sorted(m.value for m in OURS)
    for short, schema in SCHEMAS.items():
        if "x-media-types" in schema:
            assert {short_name(t) for t in schema["x-media-types"]} == {short}


@pytest.mark.parametrize("predicate_type", OUR_PREDICATES, ids=str)
def test_every_predicate_type_has_a_schema_and_a_page(predicate_type: PredicateType) -> None:
    """Predicate schemas list their types in ``x-predicate-types``; ``…/approval/v1`` → approval."""
    short = predicate_type.value.rstrip("/").split("/")[-2]
    assert predicate_type.value in SCHEMAS[short]["x-predicate-types"]
    assert f"`{predicate_type.value}`" in (FOLDER / f"{short}.md").read_text()
    assert f"`{predicate_type.value}`" in (FOLDER / "README.md").read_text()


def test_every_schema_lists_media_types_or_predicate_types_in_the_enums() -> None:
    listed = [t for schema in SCHEMAS.values() for t in schema.get("x-predicate-types", [])]
    assert sorted(listed) == sorted(p.value for p in OUR_PREDICATES)
    for short, schema in SCHEMAS.items():
        assert ("x-media-types" in schema) != ("x-predicate-types" in schema), short


@pytest.mark.parametrize("short", sorted(SCHEMAS))
def test_schema_is_valid_2020_12_with_its_id(short: str) -> None:
    schema = SCHEMAS[short]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{BASE_URI}{short}.schema.json"
    assert schema["title"] and schema["description"]


@pytest.mark.parametrize("short", sorted(SCHEMAS))
def test_example_validates_and_matches_the_page(short: str) -> None:
    document = example(short)
    assert errors(short, document) == []
    page = (FOLDER / f"{short}.md").read_text()
    fenced = re.findall(r"```json\n(.*?)\n```", page, flags=re.DOTALL)
    assert len(fenced) == 1, f"{short}.md needs exactly one fenced JSON example"
    assert json.loads(fenced[0]) == document


def test_readme_links_every_schema_and_page() -> None:
    readme = (FOLDER / "README.md").read_text()
    for short in SCHEMAS:
        assert f"]({short}.schema.json)" in readme
        assert f"]({short}.md)" in readme
    for link in re.findall(r"\]\(([^)#]+)\)", readme):
        assert (FOLDER / link).exists(), link


def test_no_stray_files() -> None:
    names = {p.name for p in FOLDER.iterdir() if p.is_file()}
    expected = {"README.md"} | {f"{s}.schema.json" for s in SCHEMAS} | {f"{s}.md" for s in SCHEMAS}
    assert names == expected
    assert {p.stem for p in (FOLDER / "examples").glob("*.json")} == set(SCHEMAS)


def test_layer_examples_use_the_media_types_they_cover() -> None:
    for short in ("code", "model", "data"):
        document = example(short)
        assert document["mediaType"] in SCHEMAS[short]["x-media-types"]
        assert MediaType(document["mediaType"]).role == short
        assert document["annotations"]["org.waggle-sensor.ecr.role"] == short


# --- the schemas refuse what they should --------------------------------------------------------


def bundle_with(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(example("bundle"))
    document.update(changes)
    return document


def test_bundle_requires_subject() -> None:
    document = bundle_with()
    del document["subject"]
    assert errors("bundle", document) == ["'subject' is a required property"]


def test_bundle_requires_exactly_one_code_layer() -> None:
    layers = example("bundle")["layers"]
    assert errors("bundle", bundle_with(layers=[layers[0], *layers])) != []
    assert errors("bundle", bundle_with(layers=layers[1:])) != []


def test_bundle_layer_role_must_match_media_type() -> None:
    layers = copy.deepcopy(example("bundle")["layers"])
    layers[0]["annotations"]["org.waggle-sensor.ecr.role"] = "model"
    assert errors("bundle", bundle_with(layers=layers)) != []


def test_bundle_layer_needs_a_role() -> None:
    layers = copy.deepcopy(example("bundle")["layers"])
    del layers[1]["annotations"]["org.waggle-sensor.ecr.role"]
    assert errors("bundle", bundle_with(layers=layers)) != []


def test_bundle_artifact_and_config_types_are_fixed() -> None:
    assert errors("bundle", bundle_with(artifactType="application/vnd.other")) != []
    config = dict(example("bundle")["config"], mediaType="application/vnd.oci.image.config.v1+json")
    assert errors("bundle", bundle_with(config=config)) != []


def test_code_descriptor_refuses_a_model_type_and_a_bad_digest() -> None:
    document = example("code")
    assert errors("code", dict(document, mediaType=MediaType.MODEL_TAR.value)) != []
    assert errors("code", dict(document, digest="sha256:abc")) != []


def test_bundle_config_refuses_unknown_keys_and_bad_times() -> None:
    document = example("bundle.config")
    assert errors("bundle.config", dict(document, extra=1)) != []
    assert errors("bundle.config", dict(document, created="yesterday")) != []
    assert errors("bundle.config", dict(document, schemaVersion=2)) != []


def test_profile_is_permissive_but_typed() -> None:
    assert errors("profile", {}) == []
    assert errors("profile", {"future": {"anything": 1}}) == []
    assert errors("profile", {"measures": {"wall_s": "slow"}}) != []
    assert errors("profile", {"metrics": {"latency": {"p50": "fast"}}}) != []


# --- the bundle config's ``spec`` against the pydantic model ------------------------------------


def spec_validator() -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"{BASE_URI}bundle.config.schema.json#/$defs/spec"}, registry=REGISTRY
    )


def test_example_spec_is_a_valid_bundle_spec() -> None:
    spec = example("bundle.config")["spec"]
    assert BundleSpec.model_validate(spec).to_json() == spec


def test_starter_spec_validates_against_the_config_schema(tmp_path: Path) -> None:
    write_starter(tmp_path, namespace="waggle", name="hello")
    spec = load_spec(tmp_path, git=False).spec.to_json()
    assert list(spec_validator().iter_errors(spec)) == []


def _schema_keys(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if schema.get("type") == "array":
        return _schema_keys(schema["items"], defs)
    props = schema.get("properties", {})
    return {key: _schema_keys(value, defs) for key, value in props.items()}


def _model_keys(model: type[BaseModel]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        nested: dict[str, Any] = {}
        stack: list[Any] = [field.annotation]
        while stack:
            kind = stack.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                nested = _model_keys(kind)
            stack.extend(getattr(kind, "__args__", ()))
        keys[field.alias or name] = nested
    return keys


def test_config_schema_spec_has_exactly_the_models_keys() -> None:
    schema = SCHEMAS["bundle.config"]
    assert _schema_keys(schema["$defs"]["spec"], schema["$defs"]) == _model_keys(BundleSpec)
