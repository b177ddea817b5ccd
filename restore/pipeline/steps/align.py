"""``align``: register a bracket to its reference frame."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import Field

from ...image import Image
from ..base import Context, Stage
from ..brackets import reference_index
from ..options import Reference, _Strict
from ..registry import register_step

__all__ = ["AlignOptions", "AlignStage"]


class AlignOptions(_Strict):
    """Align a bracket to its reference frame: ``mtb`` (Ward 2003 translation) or ``ecc`` (Evangelidis 2008)."""

    method: Literal["mtb", "ecc", "none"] = "mtb"
    reference: Reference = "middle"
    motion: Literal["translation", "euclidean", "affine", "homography"] = "homography"
    max_bits: int = Field(6, ge=1, le=10)



@register_step("align", options=AlignOptions, order=60)
class AlignStage(Stage):
    """Register a bracket to its reference frame; shifts go to ``meta.extra['align']``."""

    kind = "align"
    stack = True

    def __init__(self, opts: AlignOptions):
        self.opts = opts

    def __call__(self, frames: list[Image], ctx: Context) -> list[Image]:
        if self.opts.method == "none":
            return frames
        from ...hdr.align import align_ecc, align_mtb

        ref = reference_index(frames, self.opts.reference)
        pixels = [f.pixels for f in frames]
        if self.opts.method == "mtb":
            aligned, shifts = align_mtb(pixels, ref, max_bits=self.opts.max_bits)
            report = [list(map(int, s)) for s in shifts]
        else:
            aligned, mats = align_ecc(pixels, ref, motion=self.opts.motion)
            report = [np.asarray(m).round(4).tolist() for m in mats]
        ctx.notes.append(f"align ({self.opts.method}) to frame {ref}: {report}")
        out = []
        for f, px, r in zip(frames, aligned, report):
            meta = replace(f.meta, extra={**f.meta.extra, "align": {"method": self.opts.method, "reference": ref, "transform": r}})
            out.append(Image(np.ascontiguousarray(px, dtype=np.float32), f.encoding, meta))
        return out
