"""``resize``: resize by a factor or to a size."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from ... import color
from ...errors import RestoreError
from ...image import Image
from ..base import Context, Stage
from ..options import _Strict
from ..registry import register_step

__all__ = ["ResizeOptions", "ResizeStage"]


class ResizeOptions(_Strict):
    """Resize by a factor or to a size (pixels); filtering in linear light unless ``linear: false``."""

    scale: float | None = Field(None, gt=0, le=16)
    width: int | None = Field(None, gt=0, le=100_000)
    height: int | None = Field(None, gt=0, le=100_000)
    filter: Literal["lanczos", "bicubic", "bilinear", "area", "nearest"] = "lanczos"
    linear: bool = True

    @model_validator(mode="after")
    def _one_target(self):
        if self.scale is None and self.width is None and self.height is None:
            raise ValueError("give scale, or width and/or height")
        if self.scale is not None and (self.width or self.height):
            raise ValueError("give either scale or width/height, not both")
        return self


_FILTERS = {
    "lanczos": cv2.INTER_LANCZOS4,
    "bicubic": cv2.INTER_CUBIC,
    "bilinear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
}


@register_step("resize", options=ResizeOptions, order=30)
class ResizeStage(Stage):
    """Resize (OpenCV); in linear light by default, alpha premultiplied while filtering."""

    kind = "resize"

    def __init__(self, opts: ResizeOptions):
        self.opts = opts

    def __call__(self, image: Image, ctx: Context) -> Image:
        o = self.opts
        h, w = image.height, image.width
        if o.scale is not None:
            nw, nh = max(1, round(w * o.scale)), max(1, round(h * o.scale))
        else:
            nw = o.width or max(1, round(w * o.height / h))
            nh = o.height or max(1, round(h * o.width / w))
        from ...io.limits import max_pixels

        if nw * nh > max_pixels():
            raise RestoreError(f"resize to {nw}x{nh} ({nw * nh / 1e6:.0f} MP) exceeds the limit of {max_pixels() / 1e6:.0f} MP "
                               "(set RESTORE_MAX_PIXELS to raise it)")
        px = image.pixels.copy()
        c = min(3, px.shape[2])
        srgb = image.encoding.transfer == "srgb" and o.linear
        if srgb:
            px[..., :c] = color.srgb_to_linear(px[..., :c])
        if image.has_alpha:
            px[..., :3] *= px[..., 3:4]
        out = cv2.resize(px, (nw, nh), interpolation=_FILTERS[o.filter])
        if out.ndim == 2:
            out = out[:, :, None]
        if image.has_alpha:
            a = np.clip(out[..., 3:4], 0, 1)
            out[..., :3] = np.where(a > 1e-6, out[..., :3] / np.maximum(a, 1e-6), 0.0)
            out[..., 3:4] = a
        if srgb:
            out[..., :c] = color.linear_to_srgb(out[..., :c])
        if image.encoding.referred == "display":
            out = np.clip(out, 0, 1)
        return image.with_pixels(out)
