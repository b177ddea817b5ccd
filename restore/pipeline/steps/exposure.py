"""``exposure``: exposure compensation in stops."""

from __future__ import annotations

from pydantic import Field

from ... import color
from ...image import Encoding, Image
from ..base import Context, Stage
from ..options import _Strict
from ..registry import register_step

__all__ = ["ExposureOptions", "ExposureStage"]


class ExposureOptions(_Strict):
    """Exposure compensation in stops (EV) on linear light."""

    ev: float = Field(..., ge=-20, le=20)


@register_step("exposure", options=ExposureOptions, order=50)
class ExposureStage(Stage):
    """Scale linear light by ``2**ev`` (the image's encoding kept)."""

    kind = "exposure"

    def __init__(self, opts: ExposureOptions):
        self.opts = opts

    def __call__(self, image: Image, ctx: Context) -> Image:
        e = image.encoding
        lin = color.convert(image, Encoding("linear", e.primaries, e.referred)) if e.transfer != "linear" else image
        out = color.apply_exposure(lin, self.opts.ev)
        return color.convert(out, e) if e.transfer != "linear" else out
