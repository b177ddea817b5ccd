"""``tonemap``: tone map linear radiance to a display image."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import Field

from ... import color
from ...errors import RestoreError
from ...image import SRGB, Encoding, Image
from ..base import Context, Stage
from ..options import _Strict
from ..registry import register_step

__all__ = ["TonemapOptions", "TonemapStage"]


class TonemapOptions(_Strict):
    """Tone map linear radiance to a display image (sRGB-encoded, [0, 1]).

    ``params`` go to the operator: reinhard/reinhard-local ``key``, ``white``,
    ``phi``, ``eps``, ``saturation``; drago ``bias``, ``saturation``; mantiuk
    ``scale``, ``saturation``; aces ``exposure`` (EV).
    """

    operator: Literal["reinhard", "reinhard-local", "drago", "mantiuk", "aces"] = "reinhard"
    params: dict[str, float] = Field(default_factory=dict)



@register_step("tonemap", options=TonemapOptions, order=90)
class TonemapStage(Stage):
    """Tone map linear radiance to an sRGB-encoded display image in [0, 1] (alpha kept)."""

    kind = "tonemap"

    def __init__(self, opts: TonemapOptions):
        self.opts = opts

    def __call__(self, image: Image, ctx: Context) -> Image:
        from ...hdr.tonemap import tonemap

        lin = color.convert(image, Encoding("linear", "rec709", image.encoding.referred)) if (image.encoding.transfer != "linear" or image.encoding.primaries != "rec709") else image
        if lin.channels < 3:
            raise RestoreError("tone mapping needs RGB")
        try:
            disp = tonemap(lin.color, self.opts.operator, **self.opts.params)
        except ValueError as e:
            raise RestoreError(f"tonemap {self.opts.operator}: {e}") from None
        out = color.linear_to_srgb(np.clip(disp, 0, 1))
        if image.alpha is not None:
            out = np.concatenate([out, image.alpha], axis=2)
        meta = replace(image.meta, bit_depth=image.meta.bit_depth if image.meta.bit_depth in (8, 16) else 16)
        return Image(np.ascontiguousarray(out, dtype=np.float32), SRGB, meta)
