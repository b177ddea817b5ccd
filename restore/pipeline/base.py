"""What every stage shares: the :class:`Stage` interface, the per-input :class:`Context`, warm-up marks.

Each step's stage lives in its module under :mod:`restore.pipeline.steps`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..engine.results import WARMUP_BEGIN, WARMUP_END
from ..image import Image

__all__ = ["Context", "Stage", "warmup"]


@dataclass
class Context:
    """Per-input facts stages need (output folder, template fields, progress)."""

    out_dir: Path | None = None
    fields: dict = field(default_factory=dict)
    overwrite: bool = False
    tile_progress: Callable[[int, int], None] | None = None
    outputs: list[Path] = field(default_factory=list)
    device: str | None = None
    notes: list[str] = field(default_factory=list)
    stage_progress: Callable[[str], None] | None = None


@contextlib.contextmanager
def warmup(ctx: Context) -> Iterator[None]:
    """Mark a one-time warm-up (see :data:`restore.engine.results.WARMUP_BEGIN`): the worker's stall limit
    pauses while it runs."""
    if ctx.stage_progress:
        ctx.stage_progress(WARMUP_BEGIN)
    try:
        yield
    finally:
        if ctx.stage_progress:
            ctx.stage_progress(WARMUP_END)


class Stage:
    """Base class: ``__call__(image, ctx) -> image``.

    ``stack = True`` stages take a whole bracket (``list[Image]``) instead.
    """

    kind = "stage"
    stack = False
    #: Whether the stage takes raw CFA mosaics (``Encoding.cfa``, from ``develop: {output: cfa}``); a stage that
    #: does not is never handed one (resizing or colour-converting a mosaic would silently corrupt it).
    accepts_cfa = False

    def __call__(self, image: Image, ctx: Context) -> Image:  # pragma: no cover - interface
        raise NotImplementedError

    def prepare(self) -> None:
        """Load what the stage needs (models) before the first file; raise early."""
