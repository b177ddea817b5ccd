"""``convert``: change the colour encoding."""

from __future__ import annotations

from typing import Literal

from ... import color
from ...image import Encoding, Image
from ..base import Context, Stage
from ..options import _Strict
from ..registry import register_step

__all__ = ["ConvertOptions", "ConvertStage"]


class ConvertOptions(_Strict):
    """Change the colour encoding (``referred`` changes only with a tone-mapping stage)."""

    transfer: Literal["linear", "srgb"] | None = None
    primaries: Literal["rec709", "rec2020", "ap0", "ap1", "xyz"] | None = None


@register_step("convert", options=ConvertOptions, order=40)
class ConvertStage(Stage):
    """Convert to the given transfer function and/or primaries (the rest of the encoding kept)."""

    kind = "convert"

    def __init__(self, opts: ConvertOptions):
        self.opts = opts

    def __call__(self, image: Image, ctx: Context) -> Image:
        e = image.encoding
        return color.convert(image, Encoding(self.opts.transfer or e.transfer, self.opts.primaries or e.primaries, e.referred))
