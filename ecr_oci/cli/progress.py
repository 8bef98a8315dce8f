"""Progress bars for long transfers (tqdm on stderr; silent when stderr is not a terminal)."""

from __future__ import annotations

from typing import Never

from tqdm import tqdm


class BarProgress:
    """A :class:`ecr_oci.bundle.push.ProgressSink` drawing one bar per blob worth showing."""

    #: Blobs smaller than this finish before a bar could be read; they get none.
    MIN_BAR_BYTES = 4 * 1024 * 1024

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._bar: tqdm[Never] | None = None

    def start(self, label: str, total: int) -> None:
        self.finish()
        if self._enabled and total >= self.MIN_BAR_BYTES:
            self._bar = tqdm(
                total=total,
                desc=label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=False,
                disable=None,
            )

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.update(amount)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
