"""``develop``: RAW development options (applied by the reader) and, for other inputs, conversion to linear."""

from __future__ import annotations

import math
from typing import Literal, Union

from pydantic import field_validator

from ... import color
from ...image import Encoding, Image
from ...io import RawOptions
from ..base import Context, Stage
from ..options import _Strict
from ..registry import register_step

__all__ = ["DevelopOptions", "DevelopStage"]


class DevelopOptions(_Strict):
    """RAW development (ignored for non-RAW inputs except ``output``)."""

    white_balance: Union[Literal["auto", "camera", "daylight", "gray-world", "none"], list[float]] = "auto"
    demosaic: Literal["ahd", "dcb", "dht", "aahd", "vng", "ppg", "linear", "learned"] = "ahd"
    output: Literal["linear-rec709", "camera"] = "linear-rec709"
    half_size: bool = False

    @field_validator("white_balance")
    @classmethod
    def _multipliers(cls, v):
        if isinstance(v, list):
            if len(v) not in (3, 4):
                raise ValueError(f"white_balance multipliers: give 3 (R, G, B) or 4 (R, G, B, G2) numbers, not {len(v)}")
            bad = [x for x in v if not (math.isfinite(x) and 0 < x <= 100)]
            if bad:
                raise ValueError(f"white_balance multipliers must be finite numbers above 0 and at most 100, not {bad[0]!r}")
        return v


@register_step("develop", options=DevelopOptions, first=True, order=10)
class DevelopStage(Stage):
    """RAW development options (applied by the reader) and, for other inputs, conversion to linear."""

    kind = "develop"

    def __init__(self, opts: DevelopOptions):
        self.opts = opts
        wb = opts.white_balance
        self.raw_options = RawOptions(
            white_balance=tuple(wb) if isinstance(wb, list) else wb,
            demosaic=opts.demosaic,
            output=opts.output,
            half_size=opts.half_size,
        )

    def __call__(self, image: Image, ctx: Context) -> Image:
        if image.meta.source_format == "raw" or self.opts.output == "camera":
            return image
        return color.convert(image, Encoding("linear", "rec709", image.encoding.referred))
