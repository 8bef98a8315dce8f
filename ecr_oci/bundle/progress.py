"""Where long transfers report progress: the CLI draws bars, library callers may pass nothing.

>>> class Quiet:
...     def start(self, label: str, total: int) -> None: ...
...     def advance(self, amount: int) -> None: ...
...     def finish(self) -> None: ...
>>> isinstance(Quiet(), ProgressSink)
True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class ProgressSink(Protocol):
    """One transfer at a time: ``start`` (label, total bytes), ``advance`` by bytes, ``finish``."""

    def start(self, label: str, total: int) -> None: ...
    def advance(self, amount: int) -> None: ...
    def finish(self) -> None: ...
