"""Load ``DIR/ecr.yaml``: parse, validate, map every error to file, line and field, fill ``source``.

    >>> from pathlib import Path
    >>> import tempfile
    >>> from ecr_oci.bundle.starter import write_starter
    >>> directory = Path(tempfile.mkdtemp()) / "hello"
    >>> _ = write_starter(directory, namespace="waggle", name="hello")
    >>> loaded = load_spec(directory, git=False)
    >>> loaded.spec.repository, loaded.spec.code.target
    ('waggle/hello', '/app')

Why line numbers: an author fixes ``ecr.yaml`` in an editor, so each :class:`BundleSpecError`
says ``hello/ecr.yaml:7: metadata.version: '1.0' is not a semantic version; use ... 0.1.0``. The
YAML is composed once into a node tree whose marks give the line of every key and list item; a
pydantic error's ``loc`` is looked up in that map (a missing key points at its parent). Only the
first error in file order is raised, with the count of the others, because the first is usually
the cause of the rest.
"""

from __future__ import annotations

import json
import reprlib
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ecr_oci.bundle.spec import BundleSpec, Source
from ecr_oci.digest import Digest
from ecr_oci.errors import BundleSpecError

SPEC_FILE = "ecr.yaml"
#: ``ecr.yaml`` is a description, not data; a larger file is a mistake (or an attack on the parser).
MAX_SPEC_BYTES = 1024 * 1024
#: An initial profile is a small JSON document (issue 6); anything bigger is refused unread.
MAX_PROFILE_BYTES = 16 * 1024 * 1024
_GIT_TIMEOUT_S = 20.0
_ROLES = ("code", "model", "data", "profile")

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec and where it came from; ``raw`` is the exact file, for ``ecrYamlDigest``."""

    spec: BundleSpec
    directory: Path
    path: Path
    raw: bytes

    @property
    def ecr_yaml_digest(self) -> Digest:
        """Digest of the exact ``ecr.yaml`` bytes, recorded in the bundle config."""
        return Digest.of(self.raw)

    def resolve(self, relative: str) -> Path:
        """``code.path`` etc. as a path on disk (already checked to stay inside ``directory``)."""
        return self.directory / relative


def load_spec(directory: Path, *, git: bool = True) -> LoadedSpec:
    """Read and validate ``directory/ecr.yaml`` and the paths it references.

    With ``git`` (the default), ``metadata.source`` is completed from the git work tree the
    directory is in (see :func:`git_source`). Raises :class:`BundleSpecError` naming file, line
    and field, with how to fix it.
    """
    directory = Path(directory)
    path = directory / SPEC_FILE
    raw = _read_spec_file(directory, path)
    text = _decode(raw, path)
    node, data = _parse_yaml(text, path)
    index = _index_yaml(node, path)
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise BundleSpecError(
            f"the file must be a mapping (apiVersion: ..., kind: Bundle, metadata: ...), but it is "
            f"{kind}; run `ecr-oci init` in an empty folder to see a complete example",
            file=str(path),
            line=node.start_mark.line + 1 if node is not None else 1,
        )
    try:
        spec = BundleSpec.model_validate(data)
    except ValidationError as err:
        raise _first_error([_from_pydantic(detail, index) for detail in err.errors()], path) from None
    _check_paths(spec, directory, path, index.lines)
    if git:
        spec = _fill_source(spec, directory)
    return LoadedSpec(spec=spec, directory=directory, path=path, raw=raw)


# --- reading and parsing -----------------------------------------------------------------------


def _read_spec_file(directory: Path, path: Path) -> bytes:
    if not directory.exists():
        raise BundleSpecError(
            "bundle directory does not exist; create one with `ecr-oci init DIR`",
            file=str(directory),
        )
    if not directory.is_dir():
        raise BundleSpecError(
            "is not a directory; pass the bundle directory that holds ecr.yaml",
            file=str(directory),
        )
    try:
        info = path.stat()
    except FileNotFoundError:
        raise BundleSpecError(
            f"no {SPEC_FILE} in {directory}; write a commented starter with `ecr-oci init {directory}`",
            file=str(path),
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise BundleSpecError(f"{SPEC_FILE} must be a regular file", file=str(path))
    too_big = BundleSpecError(
        f"{SPEC_FILE} is larger than {MAX_SPEC_BYTES // 1024} KiB; it describes the bundle, keep "
        "data and long texts in files it references",
        file=str(path),
    )
    if info.st_size > MAX_SPEC_BYTES:
        raise too_big
    with path.open("rb") as handle:  # read at most one byte past the limit: the file may grow
        raw = handle.read(MAX_SPEC_BYTES + 1)
    if len(raw) > MAX_SPEC_BYTES:
        raise too_big
    return raw


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise BundleSpecError(
            "is not UTF-8 text; save the file as UTF-8",
            file=str(path),
            line=raw[: err.start].count(b"\n") + 1,
        ) from None


def _parse_yaml(text: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """Compose the node tree (for line numbers) and construct the data from the same parse."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        return node, data
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = ": ".join(part for part in (err.context, err.problem) if part)
        raise BundleSpecError(
            f"YAML syntax error: {problem}; fix the indentation/quoting near this line "
            "(strings containing ': ' or '#' need quotes)",
            file=str(path),
            line=mark.line + 1 if mark is not None else None,
        ) from None
    except yaml.YAMLError as err:
        raise BundleSpecError(f"YAML error: {err}", file=str(path)) from None
    except RecursionError:
        raise BundleSpecError(
            "YAML is nested too deeply; ecr.yaml has at most a few levels", file=str(path)
        ) from None
    finally:
        loader.dispose()


@dataclass
class _YamlIndex:
    """Where each key path (``("inputs", 0, "id")``) is: its 1-based line, and for scalars the text
    as written (so a message can say ``yes`` rather than ``True``)."""

    lines: dict[Loc, int]
    texts: dict[Loc, str]


def _index_yaml(root: yaml.Node | None, path: Path) -> _YamlIndex:
    """Index the line of every key and list item, and the source text of every scalar.

    Raises on duplicate keys: PyYAML silently keeps the last one, which hides edits that do nothing.
    Nodes reached twice through YAML aliases are walked once (alias bombs stay cheap).
    """
    lines: dict[Loc, int] = {(): 1 if root is None else root.start_mark.line + 1}
    texts: dict[Loc, str] = {}
    visited: set[int] = set()
    stack: list[tuple[yaml.Node, Loc]] = [] if root is None else [(root, ())]
    while stack:
        node, at = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            texts[at] = node.value
        elif isinstance(node, yaml.MappingNode):
            first_seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key, line = key_node.value, key_node.start_mark.line + 1
                if key in first_seen and key != "<<":
                    raise BundleSpecError(
                        f"key {key!r} appears twice (first on line {first_seen[key]}); keep one of them",
                        file=str(path),
                        line=line,
                        field=_field_name((*at, key)),
                    )
                first_seen[key] = line
                lines[(*at, key)] = line
                stack.append((value_node, (*at, key)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*at, index)] = item.start_mark.line + 1
                stack.append((item, (*at, index)))
    return _YamlIndex(lines, texts)


# --- pydantic errors → BundleSpecError ---------------------------------------------------------


def _field_name(loc: Sequence[str | int]) -> str | None:
    """``("inputs", 0, "id")`` → ``inputs[0].id``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or None


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int:
    """The line of ``loc`` or, for a key that is missing, of its nearest ancestor."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


_short_repr = reprlib.Repr()
_short_repr.maxstring = 60
_short_repr.maxother = 60
_short_repr.maxlist = _short_repr.maxdict = 4
_short_repr.maxlevel = 2


def _from_pydantic(detail: ErrorDetails, index: _YamlIndex) -> BundleSpecError:
    # Dict-key errors carry a synthetic "[key]" part; union members would carry type names.
    loc: Loc = tuple(p for p in detail["loc"] if not (isinstance(p, str) and p.startswith("[")))
    kind, value = detail["type"], detail.get("input")
    written = index.texts.get(loc)
    shown = _short_repr.repr(value)
    if written is not None and isinstance(value, bool | int | float) and written != str(value):
        shown = f"{written} (which YAML reads as {value!r})"
    if kind == "missing":
        message = (
            f"required key {loc[-1]!r} is missing; add it (run `ecr-oci init` in an empty folder "
            "for a commented example of every key)"
        )
    elif kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = get_close_matches(str(loc[-1]), allowed, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        message = f"unknown key {loc[-1]!r}; {guess}allowed here: {', '.join(allowed)}"
    elif kind in ("value_error", "assertion_error"):
        message = detail["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    elif kind == "string_type" and isinstance(value, bool | int | float):
        text = written if written is not None else str(value)
        kind_name = {"bool": "a bool", "int": "an int", "float": "a float"}[type(value).__name__]
        message = f'expected text but YAML reads {text} as {kind_name}; put the value in quotes: "{text}"'
    elif kind == "string_type":
        message = f"expected text, got {shown}"
    elif kind == "list_type":
        message = f"expected a list (e.g. [a, b], or one '- item' per line), got {shown}"
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        message = f"expected a mapping ('key: value' lines), got {shown}"
    elif kind == "too_short":
        message = 'must list at least one item, e.g. ["/bin/sh", "/app/run.sh"]'
    elif kind in ("bool_type", "bool_parsing"):
        message = f"expected true or false, got {shown}"
    elif kind == "literal_error":
        message = f"{detail['msg'].replace('Input should be', 'must be')}, got {shown}"
    else:
        message = f"{detail['msg']}, got {shown}"
    field = _field_name(loc)
    # ``file`` is filled in by _first_error, which knows the path.
    return BundleSpecError(message, file="", line=_line_for(loc, index.lines), field=field)


def _first_error(errors: list[BundleSpecError], path: Path) -> BundleSpecError:
    """The first error in file order, saying how many others there are."""
    ordered = sorted(errors, key=lambda e: e.line or 0)  # stable: ties keep pydantic's order
    first = ordered[0]
    more = len(ordered) - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return BundleSpecError(first.message + suffix, file=str(path), line=first.line, field=first.field)


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` down to the interesting type."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation


def _allowed_keys(loc: Loc) -> list[str]:
    """The keys the model at ``loc`` accepts (for "did you mean" hints)."""
    current: Any = BundleSpec
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = get_args(current)
            current = args[0] if get_origin(current) is list and args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (f for n, f in current.model_fields.items() if part in (n, f.alias)),
                None,
            )
            current = field.annotation if field is not None else None
        else:
            current = None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


# --- referenced paths --------------------------------------------------------------------------


def _check_paths(spec: BundleSpec, directory: Path, path: Path, lines: dict[Loc, int]) -> None:
    """Each ``*.path`` must exist inside the directory (through symlinks too), of the right type."""
    root = directory.resolve()
    errors: list[BundleSpecError] = []
    for role in _ROLES:
        section = getattr(spec, role)
        if section is None:
            continue
        relative: str = section.path
        loc: Loc = (role, "path")
        try:
            _check_one(role, relative, directory, root)
        except _PathProblem as problem:
            errors.append(
                BundleSpecError(str(problem), file="", line=_line_for(loc, lines), field=f"{role}.path")
            )
    if errors:
        raise _first_error(errors, path)


class _PathProblem(Exception):
    """Internal: what is wrong with one referenced path (becomes a BundleSpecError)."""


def _check_one(role: str, relative: str, directory: Path, root: Path) -> None:
    candidate = directory / relative
    if not candidate.is_symlink() and not candidate.exists():
        raise _PathProblem(
            f"{relative!r} does not exist in {directory}; create it or correct the path "
            "(paths are relative to the folder that holds ecr.yaml)"
        )
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):  # missing target, or a loop (RuntimeError before 3.13)
        raise _PathProblem(
            f"{relative!r} is a broken symlink (or a symlink loop); point it at a file in the bundle"
        ) from None
    if not resolved.is_relative_to(root):
        raise _PathProblem(
            f"{relative!r} resolves to {resolved}, outside the bundle directory (a symlink?); "
            "copy the files into the directory instead of linking to them"
        )
    mode = resolved.stat().st_mode
    if role == "profile":
        if not stat.S_ISREG(mode):
            raise _PathProblem(f"{relative!r} must be a JSON file")
        _check_profile_json(relative, resolved)
    elif not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise _PathProblem(f"{relative!r} must be a directory or a regular file")


def _check_profile_json(relative: str, resolved: Path) -> None:
    if resolved.stat().st_size > MAX_PROFILE_BYTES:
        raise _PathProblem(
            f"{relative!r} is larger than {MAX_PROFILE_BYTES // 2**20} MiB; a profile is a summary"
        )
    try:
        document = json.loads(resolved.read_bytes())
    except json.JSONDecodeError as err:
        raise _PathProblem(
            f"{relative!r} is not valid JSON (line {err.lineno} column {err.colno}: {err.msg}); "
            "fix the JSON, e.g. check it with `python -m json.tool`"
        ) from None
    except UnicodeDecodeError:
        raise _PathProblem(f"{relative!r} is not UTF-8 JSON; save it as UTF-8") from None
    if not isinstance(document, dict):
        raise _PathProblem(f"{relative!r} must hold a JSON object ({{...}}), not {type(document).__name__}")


# --- source from git ---------------------------------------------------------------------------


def _fill_source(spec: BundleSpec, directory: Path) -> BundleSpec:
    """Complete ``metadata.source`` from git: a missing url; a missing commit (with ``dirty``)."""
    given = spec.metadata.source or Source()
    if given.url is not None and given.commit is not None:
        return spec
    found = git_source(directory)
    if found is None:
        return spec
    update: dict[str, Any] = {}
    if given.url is None and found.url is not None:
        update["url"] = found.url
    if given.commit is None and found.commit is not None:
        # ``dirty`` describes the tree at that commit, so it comes only with a commit from git.
        update["commit"], update["dirty"] = found.commit, found.dirty
    if not update:
        return spec
    source = given.model_copy(update=update)
    return spec.model_copy(update={"metadata": spec.metadata.model_copy(update={"source": source})})


def git_source(directory: Path) -> Source | None:
    """Commit, remote URL (credentials removed) and dirtiness of the work tree around ``directory``.

    ``None`` when git is missing, the directory is not in a work tree, or it has no commit yet.
    ``commit`` is the last commit that changed the bundle directory (``HEAD`` when none did): in a
    repository holding many plugins, an unrelated commit must not change a bundle's image (its
    ``org.opencontainers.image.revision`` label), or re-pushing an unchanged version would be
    refused as "other content"; that commit still rebuilds the directory exactly. ``dirty`` is true
    when ``git status`` lists changes (untracked files included) under the directory — files that
    would go into the bundle but are not in the commit.
    """
    if _git(directory, "rev-parse", "--is-inside-work-tree") != "true":
        return None
    commit = _git(directory, "log", "-1", "--format=%H", "--", ".") or _git(directory, "rev-parse", "HEAD")
    if commit is None:
        return None
    remote = _git(directory, "config", "--get", "remote.origin.url")
    status = _git(directory, "status", "--porcelain", "--", ".")
    try:
        return Source.model_validate(
            {
                "url": clean_remote_url(remote) if remote else None,
                "commit": commit,
                "dirty": None if status is None else bool(status),
            }
        )
    except ValidationError:
        return None


def _git(directory: Path, *args: str) -> str | None:
    """Run one read-only git command; its stripped stdout, or ``None`` on any failure."""
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def clean_remote_url(remote: str) -> str | None:
    """A git remote as a browsable https URL without credentials, or ``None`` for local remotes.

        >>> clean_remote_url("https://user:token@github.com/waggle-sensor/plugin.git")
        'https://github.com/waggle-sensor/plugin.git'
        >>> clean_remote_url("git@github.com:waggle-sensor/plugin.git")
        'https://github.com/waggle-sensor/plugin.git'

    SSH and git:// remotes are rewritten to https on the same host (best effort: the URL is for
    people and the bundle config, not for cloning); file paths say nothing to a reader elsewhere.
    """
    remote = remote.strip()
    if "://" in remote:
        parts = urlsplit(remote)
        if parts.scheme not in ("http", "https", "ssh", "git", "git+ssh") or not parts.hostname:
            return None
        scheme = parts.scheme if parts.scheme in ("http", "https") else "https"
        try:
            port = f":{parts.port}" if parts.port and scheme == parts.scheme else ""
        except ValueError:  # a port that is not a number
            return None
        return f"{scheme}://{parts.hostname}{port}{parts.path}"
    head, sep, tail = remote.partition(":")
    if sep and "/" not in head and tail and not tail.startswith("//"):
        host = head.rsplit("@", 1)[-1]
        if host:
            return f"https://{host}/{tail.lstrip('/')}"
    return None
