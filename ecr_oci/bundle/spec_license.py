"""SPDX license expressions for ``metadata.license`` in ``ecr.yaml``.

    >>> normalize_license("mit OR Apache-2.0")
    'MIT OR Apache-2.0'
    >>> normalize_license("(GPL-2.0-only WITH Classpath-exception-2.0) AND LicenseRef-Weights")
    '(GPL-2.0-only WITH Classpath-exception-2.0) AND LicenseRef-Weights'

Why a small embedded list and not the full SPDX license list: the full list has ~700
identifiers and changes every quarter, so a copy here would be large and always a little stale,
and a dependency (``license-expression``) would grow every install for a check whose job is only
to catch typos (``Apache2``, ``GPLv3``) before a bundle is published. The common identifiers
below cover nearly every plugin; anything else is written ``LicenseRef-<name>`` (the SPDX way to
name a license that is not on the list), which is always accepted. The grammar is SPDX 2.3 annex
D: identifiers (optionally ``+``) joined by ``AND``/``OR``, ``WITH`` an exception, and
parentheses; operators are case-sensitive, identifiers are matched case-insensitively and written
back in their canonical case.
"""

from __future__ import annotations

import re

#: Common SPDX license identifiers (canonical case); the module docstring says why not all.
COMMON_LICENSES: tuple[str, ...] = (
    "0BSD", "AFL-3.0", "AGPL-3.0-only", "AGPL-3.0-or-later", "Apache-1.1", "Apache-2.0",
    "APSL-2.0", "Artistic-2.0", "Beerware", "BlueOak-1.0.0", "BSD-1-Clause", "BSD-2-Clause",
    "BSD-2-Clause-Patent", "BSD-3-Clause", "BSD-3-Clause-Clear", "BSD-3-Clause-LBNL",
    "BSD-4-Clause", "BSL-1.0", "CAL-1.0", "CC-BY-1.0", "CC-BY-2.0", "CC-BY-2.5", "CC-BY-3.0",
    "CC-BY-4.0", "CC-BY-NC-4.0", "CC-BY-NC-ND-4.0", "CC-BY-NC-SA-4.0", "CC-BY-ND-4.0",
    "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-PDDC", "CC0-1.0", "CDDL-1.0", "CDDL-1.1",
    "CDLA-Permissive-2.0", "CDLA-Sharing-1.0", "CECILL-2.1", "CECILL-B", "CECILL-C", "curl",
    "ECL-2.0", "EFL-2.0",
    "EPL-1.0", "EPL-2.0", "EUPL-1.1", "EUPL-1.2", "FTL", "GFDL-1.3-only", "GFDL-1.3-or-later",
    "GPL-1.0-or-later", "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later",
    "HPND", "ICU", "IJG", "ImageMagick", "Info-ZIP", "Intel", "IPL-1.0", "ISC", "JSON",
    "LGPL-2.0-only", "LGPL-2.0-or-later", "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only",
    "LGPL-3.0-or-later", "libpng-2.0", "Libpng", "LPPL-1.3c", "MIT", "MIT-0", "MIT-CMU",
    "MPL-1.1", "MPL-2.0", "MPL-2.0-no-copyleft-exception", "MS-PL", "MS-RL", "MulanPSL-2.0",
    "NCSA", "ODbL-1.0", "ODC-By-1.0", "OFL-1.1", "OGL-UK-3.0", "OpenSSL", "OSL-3.0", "PDDL-1.0",
    "PHP-3.01", "PostgreSQL", "PSF-2.0", "Python-2.0", "Ruby", "SGI-B-2.0", "SSPL-1.0",
    "Unicode-3.0", "Unicode-DFS-2016", "Unlicense", "UPL-1.0", "Vim", "W3C", "WTFPL", "X11",
    "Zlib", "ZPL-2.1",
)  # fmt: skip

#: Common SPDX license exceptions (the right-hand side of ``WITH``).
COMMON_EXCEPTIONS: tuple[str, ...] = (
    "Autoconf-exception-3.0", "Bison-exception-2.2", "Classpath-exception-2.0",
    "Font-exception-2.0", "GCC-exception-2.0", "GCC-exception-3.1", "LLVM-exception",
    "Linux-syscall-note", "OpenJDK-assembly-exception-1.0", "Qt-GPL-exception-1.0",
    "Qt-LGPL-exception-1.1", "Swift-exception", "u-boot-exception-2.0",
    "Universal-FOSS-exception-1.0",
)  # fmt: skip

#: Deprecated identifiers people still write, with what to write instead.
_DEPRECATED: dict[str, str] = {
    "gpl-2.0": "GPL-2.0-only or GPL-2.0-or-later",
    "gpl-2.0+": "GPL-2.0-or-later",
    "gpl-3.0": "GPL-3.0-only or GPL-3.0-or-later",
    "gpl-3.0+": "GPL-3.0-or-later",
    "lgpl-2.1": "LGPL-2.1-only or LGPL-2.1-or-later",
    "lgpl-2.1+": "LGPL-2.1-or-later",
    "lgpl-3.0": "LGPL-3.0-only or LGPL-3.0-or-later",
    "lgpl-3.0+": "LGPL-3.0-or-later",
    "agpl-3.0": "AGPL-3.0-only or AGPL-3.0-or-later",
    "apache2": "Apache-2.0",
    "apache 2.0": "Apache-2.0",
    "gplv2": "GPL-2.0-only",
    "gplv3": "GPL-3.0-only",
    "bsd": "BSD-3-Clause or BSD-2-Clause",
}

_LICENSES = {name.lower(): name for name in COMMON_LICENSES}
_EXCEPTIONS = {name.lower(): name for name in COMMON_EXCEPTIONS}
_TOKEN_RE = re.compile(r"\s*(\(|\)|[A-Za-z0-9.+:-]+)")
_REF_RE = re.compile(r"^(?:DocumentRef-[A-Za-z0-9.-]+:)?LicenseRef-[A-Za-z0-9.-]+$")
_ADDITION_REF_RE = re.compile(r"^(?:DocumentRef-[A-Za-z0-9.-]+:)?AdditionRef-[A-Za-z0-9.-]+$")
_HOW = "write an SPDX expression such as MIT, Apache-2.0 or 'MIT OR Apache-2.0'"


def normalize_license(text: str) -> str:
    """Check ``text`` is a plausible SPDX expression and return it with canonical identifier case.

    Raises ``ValueError`` (pydantic turns it into a field error) saying what is wrong and how to fix
    it. Whitespace is normalised to single spaces around operators.
    """
    if text.strip().lower() in _DEPRECATED:
        raise ValueError(_not_current(text.strip()))
    tokens = _tokenize(text)
    parser = _Parser(tokens, text)
    result = parser.expression()
    if parser.pos != len(tokens):
        raise ValueError(_unexpected(tokens[parser.pos], text))
    return result


def _not_current(token: str) -> str:
    return f"{token!r} is not a current SPDX identifier; use {_DEPRECATED[token.lower()]}"


def _unexpected(token: str, text: str) -> str:
    if token.lower() in ("and", "or", "with"):
        return f"SPDX operators are upper-case: write {token.upper()!r} in license {text!r}"
    return f"unexpected {token!r} in license {text!r}; {_HOW}"


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if not match:
            raise ValueError(f"unexpected character {text[pos:].lstrip()[:1]!r} in license; {_HOW}")
        tokens.append(match.group(1))
        pos = match.end()
    if not tokens:
        raise ValueError(f"license is empty; {_HOW}")
    return tokens


class _Parser:
    """Recursive descent over ``or-expr := and-expr (OR and-expr)*``; ``AND`` binds tighter."""

    def __init__(self, tokens: list[str], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def expression(self) -> str:
        parts = [self._and()]
        while self._peek() == "OR":
            self.pos += 1
            parts.append(self._and())
        return " OR ".join(parts)

    def _and(self) -> str:
        parts = [self._with()]
        while self._peek() == "AND":
            self.pos += 1
            parts.append(self._with())
        return " AND ".join(parts)

    def _with(self) -> str:
        left = self._atom()
        if self._peek() == "WITH":
            self.pos += 1
            left += " WITH " + self._exception()
        return left

    def _atom(self) -> str:
        token = self._peek()
        if token is None:
            raise ValueError(f"license {self.text!r} ends too early; {_HOW}")
        self.pos += 1
        if token == "(":  # noqa: S105 -- a parser token, not a password
            inner = self.expression()
            if self._peek() != ")":
                raise ValueError(f"missing ')' in license {self.text!r}")
            self.pos += 1
            return f"({inner})"
        if token in (")", "AND", "OR", "WITH") or token.lower() in ("and", "or", "with"):
            raise ValueError(_unexpected(token, self.text))
        return _license_id(token)

    def _exception(self) -> str:
        token = self._peek()
        if token is None:
            raise ValueError(f"license {self.text!r}: WITH needs an exception after it")
        self.pos += 1
        if _ADDITION_REF_RE.match(token):
            return token
        try:
            return _EXCEPTIONS[token.lower()]
        except KeyError:
            raise ValueError(
                f"{token!r} is not a known SPDX license exception; use one such as "
                "Classpath-exception-2.0 or LLVM-exception, or AdditionRef-<name>"
            ) from None


def _license_id(token: str) -> str:
    if _REF_RE.match(token):
        return token
    plus = token.endswith("+")
    base = token.removesuffix("+")
    canonical = _LICENSES.get(base.lower())
    if canonical is None:
        if token.lower() in _DEPRECATED:
            raise ValueError(_not_current(token))
        raise ValueError(
            f"{token!r} is not a common SPDX license identifier (https://spdx.org/licenses/); "
            f"{_HOW}, or LicenseRef-{base} for a license that is not on the SPDX list"
        )
    return canonical + ("+" if plus else "")
