"""Credentials from a docker/podman auth file (``~/.docker/config.json`` format); secrets stay hidden."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ecr_oci.errors import AuthError
from ecr_oci.oci.auth import Credentials, load_docker_config


def write_config(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auth_field_is_base64_user_colon_password(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.json", {"auths": {"127.0.0.1:5000": {"auth": b64("alice:pw")}}})
    assert load_docker_config(path) == {"127.0.0.1:5000": Credentials("alice", "pw")}


def test_password_may_contain_colons(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.json", {"auths": {"reg.example": {"auth": b64("bob:a:b:c")}}})
    assert load_docker_config(path)["reg.example"] == Credentials("bob", "a:b:c")


def test_username_password_form(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.json",
        {"auths": {"reg.example:443": {"username": "carol", "password": "hunter2"}}},
    )
    assert load_docker_config(path) == {"reg.example:443": Credentials("carol", "hunter2")}


@pytest.mark.parametrize(
    "key",
    [
        "https://reg.example:5000",
        "http://reg.example:5000",
        "https://reg.example:5000/v1/",
        "reg.example:5000/",
    ],
)
def test_scheme_and_path_of_keys_are_dropped(tmp_path: Path, key: str) -> None:
    path = write_config(tmp_path / "config.json", {"auths": {key: {"auth": b64("u:p")}}})
    assert list(load_docker_config(path)) == ["reg.example:5000"]


def test_entries_without_usable_credentials_are_skipped(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.json",
        {
            "auths": {
                "helper.example": {},  # credsStore / credHelpers users have empty entries
                "broken.example": {"auth": "***not base64***"},
                "odd.example": "not an object",
                "ok.example": {"auth": b64("u:p")},
            },
            "credsStore": "desktop",
        },
    )
    assert load_docker_config(path) == {"ok.example": Credentials("u", "p")}


def test_missing_file_gives_no_credentials(tmp_path: Path) -> None:
    assert load_docker_config(tmp_path / "absent.json") == {}


def test_file_without_auths_gives_no_credentials(tmp_path: Path) -> None:
    assert load_docker_config(write_config(tmp_path / "config.json", {})) == {}
    assert load_docker_config(write_config(tmp_path / "config.json", {"auths": None})) == {}


def test_invalid_json_raises_auth_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"auths": {')
    with pytest.raises(AuthError, match=r"config\.json") as caught:
        load_docker_config(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("document", [[], "text", 42])
def test_json_that_is_not_an_object_raises_auth_error_naming_the_file(
    tmp_path: Path, document: object
) -> None:
    path = write_config(tmp_path / "config.json", document)
    with pytest.raises(AuthError, match=r"config\.json"):
        load_docker_config(path)


def test_credentials_repr_hides_the_password() -> None:
    credentials = Credentials("alice", "s3cret-pw")
    for text in (repr(credentials), str(credentials), f"{credentials}", repr([credentials])):
        assert "s3cret-pw" not in text
        assert "alice" in text
