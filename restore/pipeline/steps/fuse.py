"""``fuse``: Mertens exposure fusion of a bracket to one display image."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field

from ...image import SRGB, Image
from ..base import Context, Stage
from ..brackets import display_pixels, reference_index
from ..options import _Strict
from ..registry import register_step

__all__ = ["FuseOptions", "FuseStage"]


class FuseOptions(_Strict):
    """Mertens-Kautz-Van Reeth exposure fusion weights."""

    contrast: float = Field(1.0, ge=0)
    saturation: float = Field(1.0, ge=0)
    exposure: float = Field(1.0, ge=0)



@register_step("fuse", options=FuseOptions, reduces=True, order=80)
class FuseStage(Stage):
    """Mertens exposure fusion straight to a display-referred sRGB image."""

    kind = "fuse"
    stack = True

    def __init__(self, opts: FuseOptions):
        self.opts = opts

    def __call__(self, frames: list[Image], ctx: Context) -> Image:
        from ...hdr.fusion import fuse_mertens

        ref = reference_index(frames, "middle")
        out = fuse_mertens([display_pixels(f) for f in frames], contrast_weight=self.opts.contrast, saturation_weight=self.opts.saturation, exposure_weight=self.opts.exposure)
        meta = replace(frames[ref].meta, bit_depth=max(f.meta.bit_depth or 8 for f in frames) if all(f.meta.bit_depth in (8, 16) for f in frames) else 16)
        return Image(np.ascontiguousarray(out, dtype=np.float32), SRGB, meta)
