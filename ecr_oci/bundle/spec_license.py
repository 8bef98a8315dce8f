"""SPDX license expressions for ``metadata.license`` in ``ecr.yaml``.

    >>> normalize_license("mit or Apache-2.0")
    'MIT OR Apache-2.0'
    >>> normalize_license("GPL-2.0-only WITH Classpath-exception-2.0 AND LicenseRef-Weights")
    'GPL-2.0-only WITH Classpath-exception-2.0 AND LicenseRef-Weights'

Parsing and the license list come from ``license-expression`` (aboutcode, the library behind
ScanCode): it ships the whole SPDX license and exception index, so any SPDX id is accepted without
a hand-kept copy going stale. What stays here is our own layer on top: ``LicenseRef-<name>``
(which the library parses but does not know) is accepted, the common mistakes in ``_MISTAKES``
are refused with what to write instead, and every error says how to fix it.

Identifiers and operators are matched case-insensitively and written back canonically
(``mit or isc`` becomes ``MIT OR ISC``), as the library and PEP 639 tools do; the value stored in
the spec is the normalized one, so what gets published is always canonical. Unlike SPDX 2.3 the
library accepts ``+`` only where the index lists an ``-or-later`` id (``GPL-2.0+``), and it does
not know SPDX 3 ``AdditionRef-`` exceptions.
"""

from __future__ import annotations

import functools
import re

from license_expression import (
    PARSE_INVALID_EXCEPTION,
    PARSE_INVALID_SYMBOL_AS_EXCEPTION,
    ExpressionError,
    ExpressionParseError,
    Licensing,
    get_spdx_licensing,
)

#: Mistakes and deprecated ids people still write (lower case), with what to write instead. The
#: library would silently rewrite some of them (``GPL-3.0`` to ``GPL-3.0-only``); we ask instead.
_MISTAKES: dict[str, str] = {
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

# SPDX 2.3 annex D: idstring = 1*(ALPHA / DIGIT / "-" / ".")
_REF_RE = re.compile(r"^(?:DocumentRef-[A-Za-z0-9.-]+:)?LicenseRef-[A-Za-z0-9.-]+$")
_HOW = "write an SPDX expression such as MIT, Apache-2.0 or 'MIT OR Apache-2.0'"


#: Parses without a symbol table, so it yields the keys exactly as written (built once, ~7 µs).
_AS_WRITTEN = Licensing()


@functools.cache
def _spdx() -> Licensing:
    """The licensing built from the SPDX index the library ships; built once (~40 ms), then reused."""
    return get_spdx_licensing()


def normalize_license(text: str) -> str:
    """Check ``text`` is an SPDX expression and return it in canonical form.

    Raises ``ValueError`` (pydantic turns it into a field error) saying what is wrong and how to fix
    it. Whitespace is normalised, ``AND`` inside ``OR`` gets explicit parentheses and redundant
    ones are dropped.
    """
    licensing = _spdx()
    try:
        expression = licensing.parse(text, strict=True)
    except ExpressionParseError as err:
        raise ValueError(_parse_error(err, text)) from None
    except ExpressionError as err:
        raise ValueError(_invalid(text, f" ({err})")) from None
    except Exception:  # license-expression 30.4.4 raises IndexError on "()", AssertionError on "( AND"
        raise ValueError(_invalid(text, "")) from None
    if expression is None:
        raise ValueError(f"license is empty; {_HOW}")
    # the keys as written: the SPDX licensing has already mapped aliases to current ids
    for key in _AS_WRITTEN.license_keys(text):
        if key.lower() in _MISTAKES:
            raise ValueError(f"{key!r} is not a current SPDX license id; use {_MISTAKES[key.lower()]}")
    for key in licensing.unknown_license_keys(expression):
        if not _REF_RE.match(key):
            raise ValueError(_unknown(key))
    return str(expression)


def _parse_error(err: ExpressionParseError, text: str) -> str:
    token = err.token_string
    if err.error_code == PARSE_INVALID_SYMBOL_AS_EXCEPTION:
        return (
            f"{token!r} is not an SPDX license exception (https://spdx.org/licenses/exceptions-index.html); "
            "after WITH write one such as Classpath-exception-2.0 or LLVM-exception"
        )
    if err.error_code == PARSE_INVALID_EXCEPTION:
        return f"{token!r} is a license exception; it goes after WITH, as in GPL-2.0-only WITH {token}"
    return _invalid(text, f" ({err})")


def _invalid(text: str, reason: str) -> str:
    hint = "; check the parentheses" if text.count("(") != text.count(")") else ""
    return f"license {text!r} is not a valid SPDX expression{reason}{hint}; {_HOW}"


def _unknown(key: str) -> str:
    if key.endswith("+"):
        return (
            f"{key!r} is not an SPDX license id (https://spdx.org/licenses/): '+' (or later) works "
            f"only where SPDX lists an -or-later id; write {key.removesuffix('+')} without '+'"
        )
    name = re.sub(r"[^A-Za-z0-9.-]+", "-", key.removeprefix("LicenseRef-")).strip("-")
    return (
        f"{key!r} is not an SPDX license id (https://spdx.org/licenses/); {_HOW}, "
        f"or LicenseRef-{name} for a license that is not on the SPDX list"
    )
