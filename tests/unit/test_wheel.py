"""The wheel ships the package, its ``py.typed`` marker and the ``mediatypes/`` and ``policies/`` folders.

Builds with ``python -m build`` (isolated: it fetches the pinned hatchling) into a temporary folder.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from ecr_oci.mediatypes import spec_folder
from ecr_oci.policy import TEMPLATES, policies_folder

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_mediatypes_and_py_typed(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = tmp_path.glob("ecr_oci-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    assert "ecr_oci/py.typed" in names
    assert "ecr_oci/__init__.py" in names

    # The service's Alembic migrations (applied at start and by `ecr-oci db upgrade`) live in the
    # package, including the non-Python template Alembic needs.
    migrations = ROOT / "ecr_oci" / "server" / "db" / "migrations"
    expected = {
        str(p.relative_to(ROOT))
        for p in migrations.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert {
        "ecr_oci/server/db/migrations/env.py",
        "ecr_oci/server/db/migrations/script.py.mako",
        "ecr_oci/server/db/migrations/versions/0001_index_schema.py",
    } <= expected
    assert expected - names == set(), f"migrations not in the wheel: {sorted(expected - names)}"
    shipped = "ecr_oci/_shipped/mediatypes/"
    source = ROOT / "mediatypes"
    expected = {str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()}
    assert {"README.md", "bundle.schema.json", "examples/bundle.json"} <= expected
    missing = {name for name in expected if shipped + name not in names}
    assert missing == set(), f"not in the wheel: {sorted(missing)}"
    for schema in source.glob("*.schema.json"):
        assert shipped + schema.name in names

    # The admission-policy templates that `ecr-oci policy render` reads (ecr_oci.policy.policies_folder).
    shipped = "ecr_oci/_shipped/policies/"
    source = ROOT / "policies"
    expected = {str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()}
    templates = {template for pairs in TEMPLATES.values() for template, _ in pairs}
    assert templates | {"README.md"} <= expected
    missing = {name for name in expected if shipped + name not in names}
    assert missing == set(), f"not in the wheel: {sorted(missing)}"


def test_policies_folder_finds_the_source_checkout() -> None:
    folder = policies_folder()
    assert folder == ROOT / "policies"
    assert (folder / "kyverno" / "clusterpolicy.yaml.tmpl").is_file()


def test_spec_folder_finds_the_source_checkout() -> None:
    folder = spec_folder()
    assert folder == ROOT / "mediatypes"
    assert (folder / "README.md").is_file()
    assert sorted(folder.glob("*.schema.json"))
