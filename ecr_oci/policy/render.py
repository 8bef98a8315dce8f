"""Fill the shipped admission-policy templates (``policies/``) for one registry, deployment and key.

    >>> from cryptography.hazmat.primitives import serialization
    >>> from cryptography.hazmat.primitives.asymmetric import ec
    >>> pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    ...     serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    >>> files = render_policy("containers", public_key_pem=pem, registry="127.0.0.1:5000",
    ...                       deployment="sage-prod")
    >>> sorted(files)
    ['policy.json', 'registries.d/ecr.yaml']
    >>> import yaml
    >>> policy = yaml.safe_load(render_policy("kyverno", public_key_pem=pem,
    ...     registry="127.0.0.1:5000", deployment="sage-prod")["clusterpolicy.yaml"])
    >>> policy["spec"]["rules"][0]["verifyImages"][0]["imageReferences"]
    ['127.0.0.1:5000/*']

Why the templates are loaded and the values put into the parsed tree (then dumped again) rather than
substituted into the text: the public key is a multi-line PEM that must sit inside a YAML block
scalar at the right indentation, in templates where it appears at several depths. Putting it into the
tree and letting the YAML emitter write it (a ``|`` block scalar for every multi-line string) makes
the indentation correct by construction, keeps a deployment name such as ``123`` a string, and lets
a template stay plain, parseable YAML/JSON. The price is that the templates' comments do not survive;
each rendered YAML file starts with a header naming its template and ``policies/README.md`` instead.

Placeholders are ``string.Template`` fields (``${REGISTRY}``, ``${DEPLOYMENT}``, ``${NAME}``,
``${PUBLIC_KEY_PEM}``, ``${PUBLIC_KEY_BASE64}``, ``${APPROVAL_PREDICATE_TYPE}``: the approval type
of *this* deployment, ``…/approval/v1/<deployment>``), replaced in every string and mapping key of
the tree. Inputs are checked first, because they end up inside glob patterns, Rego string literals,
Kyverno conditions and a predicate-type URI: the registry must be a plain ``host[:port]``, the
deployment must match the approval predicate's ``deployment`` pattern (letters, digits, ``.``,
``_``, ``-``: nothing that needs quoting), the policy name must be a DNS label (Kubernetes object
names), and the key must be an ECDSA P-256 public key (cosign's). The key and deployment checks are
the ones :mod:`ecr_oci.signing` and :mod:`ecr_oci.mediatypes` apply, so a policy accepts exactly
what ``ecr-oci approve`` can write.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.errors import Error, InvalidReferenceError, PolicyInputError
from ecr_oci.mediatypes import approval_type, check_deployment_name
from ecr_oci.reference import Reference
from ecr_oci.signing.keys import load_public_key
from ecr_oci.signing.keys import public_key_pem as encode_public_key

PolicyFormat = Literal["kyverno", "policy-controller", "containers"]

#: The formats :func:`render_policy` knows, in the order the CLI lists them.
FORMATS: tuple[str, ...] = get_args(PolicyFormat)

#: ``metadata.name`` of the rendered Kubernetes policies unless the caller gives another.
DEFAULT_NAME = "ecr-signed-and-approved"

#: For each format: (template under ``policies/``, rendered file name) pairs.
TEMPLATES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "kyverno": (("kyverno/clusterpolicy.yaml.tmpl", "clusterpolicy.yaml"),),
    "policy-controller": (("policy-controller/clusterimagepolicy.yaml.tmpl", "clusterimagepolicy.yaml"),),
    "containers": (
        ("containers/policy.json.tmpl", "policy.json"),
        ("containers/registries.d/ecr.yaml.tmpl", "registries.d/ecr.yaml"),
    ),
}

# RFC 1123 label, as Kubernetes checks object names that must be DNS labels.
_DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
# What a host[:port] without IPv6 brackets may contain; checked with fullmatch, because the
# patterns above end in ``$``, which re.match also accepts before a trailing newline.
_HOST_PORT_CHARS = re.compile(r"[A-Za-z0-9.:-]+")


def policies_folder() -> Path:
    """The ``policies/`` folder: shipped in the wheel, or the repository's in a source checkout.

    The wheel carries it as ``ecr_oci/_shipped/policies`` (``pyproject.toml`` force-include), the
    same way :func:`ecr_oci.mediatypes.spec_folder` finds ``mediatypes/``.
    """
    package = Path(__file__).resolve().parent.parent
    shipped = package / "_shipped" / "policies"
    return shipped if shipped.is_dir() else package.parent / "policies"


def render_policy(
    format: PolicyFormat,
    *,
    public_key_pem: bytes,
    registry: str,
    deployment: str,
    name: str = DEFAULT_NAME,
    key_source: str = "public key",
) -> dict[str, bytes]:
    """Render the admission policy of ``format`` for images of ``registry``, approved for ``deployment``.

    Returns file name → content: one file for ``kyverno`` (``clusterpolicy.yaml``) and
    ``policy-controller`` (``clusterimagepolicy.yaml``), two for ``containers`` (``policy.json`` and
    ``registries.d/ecr.yaml``). ``name`` is the Kubernetes object name (unused by ``containers``);
    ``key_source`` names the key in error messages (the CLI passes the file name).

    Raises :class:`~ecr_oci.errors.KeyFileError` when ``public_key_pem`` is not a PEM public key of
    type ECDSA P-256, :class:`~ecr_oci.errors.InvalidReferenceError` when ``registry`` is not a plain
    ``host[:port]``, and :class:`~ecr_oci.errors.PolicyInputError` for an unknown format, a
    deployment name that an approval cannot carry, or a policy name that is not a DNS label.
    """
    if format not in TEMPLATES:
        raise PolicyInputError(f"unknown policy format {format!r}: use one of {', '.join(FORMATS)}")
    # Re-encoded, so stray whitespace or CRLF line ends in the file never reach a policy.
    key = load_public_key(public_key_pem, source=key_source)
    pem = encode_public_key(key)
    deployment = check_deployment(deployment)
    values = {
        "REGISTRY": check_registry(registry),
        "DEPLOYMENT": deployment,
        "NAME": check_dns_label(name, what="policy name"),
        "PUBLIC_KEY_PEM": pem.decode("ascii"),
        # containers-policy.json(5) sigstoreSigned keyData: base64 of the key file's bytes.
        "PUBLIC_KEY_BASE64": base64.b64encode(pem).decode("ascii"),
        # One approval type per deployment (ecr_oci.signing.approval): the engines judge every
        # attestation of the type they are given, so they must see this deployment's only.
        "APPROVAL_PREDICATE_TYPE": approval_type(deployment),
    }
    folder = policies_folder()
    rendered: dict[str, bytes] = {}
    for template, target in TEMPLATES[format]:
        path = folder / template
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise Error(f"policy template {path} is unreadable ({err.strerror}): reinstall ecr-oci") from None
        if target.endswith(".json"):
            tree = _fill(json.loads(text), values, template)
            rendered[target] = (json.dumps(tree, indent=2) + "\n").encode("utf-8")
        else:
            tree = _fill(yaml.safe_load(text), values, template)
            header = _header(format, template, values["REGISTRY"], deployment, key)
            rendered[target] = (header + _dump_yaml(tree, template)).encode("utf-8")
    return rendered


def write_rendered(files: Mapping[str, bytes], directory: Path) -> list[Path]:
    """Write :func:`render_policy`'s files under ``directory`` (created as needed); return the paths.

    Existing files are replaced: re-rendering is how a policy is updated.
    """
    written = []
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    return written


def check_registry(registry: str) -> str:
    """Return ``registry`` if it is a plain ``host[:port]`` as image references start with.

    The host rules are :class:`~ecr_oci.reference.Reference`'s (a dot, a port or ``localhost``, so
    it cannot be mistaken for a Docker Hub namespace). IPv6 literals are refused: how each engine's
    image glob treats ``[...]`` is unchecked, and a pattern that silently matches nothing would
    leave the registry's images outside the policy.
    """
    try:
        parsed: Reference | None = Reference.parse(f"{registry}/ecr-oci/policy")
    except InvalidReferenceError:
        parsed = None
    if parsed is None or parsed.registry != registry or not _HOST_PORT_CHARS.fullmatch(registry):
        raise InvalidReferenceError(
            f"invalid registry {registry!r}: give the host[:port] that image references start "
            "with: a name with a dot, a port, or localhost (e.g. 127.0.0.1:5000, ecr.example.org); "
            "no scheme, path or IPv6 literal"
        )
    return registry


def check_deployment(deployment: str) -> str:
    """Return ``deployment`` if an approval can name it (``mediatypes/approval.schema.json``).

    The name is compared exactly by the policies, sits inside a Rego string literal and a Kyverno
    condition, and ends the approval predicate type (a URI); the pattern (letters, digits, ``.``,
    ``_``, ``-``) keeps quotes, ``*``/``?`` wildcards, ``{{ }}`` and ``/`` out of all of them.
    """
    try:
        return check_deployment_name(deployment)
    except ValueError as err:
        raise PolicyInputError(f"{err}, as approvals name it") from None


def check_dns_label(value: str, *, what: str) -> str:
    """Return ``value`` if it is an RFC 1123 DNS label (lower-case, digits, ``-``, at most 63).

    Kubernetes requires it of the policies' ``metadata.name`` (and Kyverno of rule names).
    """
    if not _DNS_LABEL.fullmatch(value):
        raise PolicyInputError(
            f"invalid {what} {value!r}: use a DNS label, 1-63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (e.g. sage-prod)"
        )
    return value


def _fill(node: Any, values: Mapping[str, str], template: str) -> Any:
    """``node`` with every ``${PLACEHOLDER}`` in its strings and mapping keys replaced."""
    if isinstance(node, dict):
        return {_fill(key, values, template): _fill(item, values, template) for key, item in node.items()}
    if isinstance(node, list):
        return [_fill(item, values, template) for item in node]
    if isinstance(node, str):
        try:
            return string.Template(node).substitute(values)
        except (KeyError, ValueError) as err:
            raise Error(f"policy template {template}: bad placeholder {err} in {node[:60]!r}") from None
    return node


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (PEM keys, Rego) as ``|`` block scalars, and mappings in order."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _represent_str)


def _dump_yaml(tree: Any, template: str) -> str:
    text = yaml.dump(tree, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 16)
    # The emitter falls back to a quoted scalar when a block scalar cannot hold a string exactly;
    # either way the text must read back as the same tree.
    if yaml.safe_load(text) != tree:
        raise Error(f"policy template {template}: the rendered YAML does not read back the same")
    return text


def _header(
    format: str, template: str, registry: str, deployment: str, key: ec.EllipticCurvePublicKey
) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return (
        f"# Rendered by `ecr-oci policy render --format {format}` from policies/{template}\n"
        f"# registry: {registry}  deployment: {deployment}\n"
        f"# public key: sha256:{hashlib.sha256(der).hexdigest()} (of its DER SubjectPublicKeyInfo)\n"
        "# Re-render rather than edit; what each field does: policies/README.md\n"
    )
