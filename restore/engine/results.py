"""What an item came to: :class:`FileResult`, a batch's :class:`RunReport`, and the one mapping from an
exception to a failed result (:func:`failure_result`)."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RestoreError

__all__ = ["FileResult", "RunReport", "failure_result", "WARMUP_BEGIN", "WARMUP_END"]

#: Progress labels around a one-time warm-up (timing thread counts, measuring a memory curve, compiling
#: kernels for a new tile shape): the stall limit does not run meanwhile (warm-ups are not the file's fault,
#: and what they measure is cached), a bound of 15 minutes does.
WARMUP_BEGIN, WARMUP_END = "warm-up:begin", "warm-up:end"

log = logging.getLogger("restore")


@dataclass
class FileResult:
    """Outcome of one item (a file, or a bracket keyed by its first file).

    Attributes:
        input: The file (a bracket's first file).
        status: ``done``, ``skipped`` or ``failed``.
        outputs: Files written (done) or already there (skipped).
        error: One line naming the file and the problem (failed), or why it was skipped.
        seconds: Wall time of the attempt.
        notes: Lines for the user about this item (thread count, tiles used, alignment ...).
    """

    input: Path
    status: str
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class RunReport:
    """Results of a batch; ``interrupted``: a signal stopped it before every item was reached;
    ``worker_restarts``: workers replaced on the way (stalls, crashes, lost Ray nodes)."""

    results: list[FileResult] = field(default_factory=list)
    interrupted: bool = False
    worker_restarts: int = 0

    def count(self, status: str) -> int:
        """Number of results with this status."""
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[FileResult]:
        """The failed results, in order."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        """Nothing failed."""
        return not self.failed


def failure_result(path: Path, e: BaseException, *, what: str | None = None, seconds: float = 0.0) -> FileResult | None:
    """The one mapping of an exception to a failed :class:`FileResult` (None: not ours to catch).

    A :class:`RestoreError` keeps its message (prefixed with ``what``, the
    file or bracket, unless it names it already); MemoryError becomes "out of
    memory"; any other Exception (a library's error, a bug) its type and first
    line, with the traceback in the debug log.  KeyboardInterrupt and
    SystemExit are not caught (None).
    """
    what = what or str(path)
    if isinstance(e, RestoreError):
        msg = str(e)
        named = msg.startswith("bracket ") if what.startswith("bracket ") else str(path) in msg
        return FileResult(path, "failed", error=msg if named else f"{what}: {msg}", seconds=seconds)
    if isinstance(e, MemoryError):
        return FileResult(path, "failed", error=f"{what}: out of memory", seconds=seconds)
    if isinstance(e, Exception):
        log.debug("%s", "".join(traceback.format_exception(e)))
        first = str(e).splitlines()[0] if str(e) else ""
        return FileResult(path, "failed", error=f"{what}: {type(e).__name__}: {first}", seconds=seconds)
    return None
