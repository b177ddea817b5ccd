"""``develop``: RAW development options (applied by the reader) and, for other inputs, conversion to linear."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal, Optional, Union

from pydantic import Field, field_validator

from ... import color
from ...errors import InputError
from ...image import Encoding, Image
from ...io import RawOptions
from ...noise import NoiseProfile
from ..base import Context, Stage
from ..options import _Strict
from ..registry import register_step

__all__ = ["NoiseOptions", "DevelopOptions", "DevelopStage"]


class NoiseOptions(_Strict):
    """A Poisson-Gaussian noise model ``var(x) = a * x + b`` given in the pipeline (:mod:`restore.noise`).

    ``x`` is the black-subtracted raw signal normalised to [0, 1] (0 = black level, 1 = white level).
    """

    a: float = Field(ge=0, allow_inf_nan=False)  # photon-noise gain, normalised units
    b: float = Field(allow_inf_nan=False)  # signal-independent variance at black, normalised units squared


class DevelopOptions(_Strict):
    """RAW development (ignored for non-RAW inputs except ``output``)."""

    white_balance: Union[Literal["auto", "camera", "daylight", "gray-world", "none"], list[float]] = "auto"
    demosaic: Literal["ahd", "dcb", "dht", "aahd", "vng", "ppg", "linear", "learned"] = "ahd"
    output: Literal["linear-rec709", "camera", "cfa"] = "linear-rec709"  # cfa: the RAW's mosaic, undeveloped
    half_size: bool = False
    noise: Optional[NoiseOptions] = None  # None: estimated from the RAW file when a stage needs it

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
    accepts_cfa = True  # it is what makes the mosaic (output: cfa), passed on as read

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
        if image.encoding.cfa:  # a mosaic from an earlier ``develop: {output: cfa}`` (e.g. denoised since)
            return self._with_noise(image) if self.opts.output == "cfa" else self._develop_mosaic(image)
        if image.meta.source_format == "raw":
            return self._with_noise(image)
        if self.opts.output == "camera":
            return image
        if self.opts.output == "cfa":
            raise InputError(image.meta.source, "develop output: cfa needs a camera RAW input (a mosaic)")
        return color.convert(image, Encoding("linear", "rec709", image.encoding.referred))

    def _develop_mosaic(self, image: Image) -> Image:
        """Develop a CFA mosaic image as the reader develops a RAW file (:func:`restore.io.read_raw`, LibRaw).

        The mosaic goes through a temporary CFA DNG (:func:`restore.io.dng.write_dng`: the source's black and
        white levels, CFA pattern, white balance and colour matrices; values rounded to whole DN), read back
        with this step's options, so a denoised mosaic develops exactly like the original file.  The result
        keeps the original ``meta.source`` and noise profile.

        Raises:
            InputError: the mosaic cannot be written as a DNG or developed.
        """
        import tempfile
        from pathlib import Path

        from ...io import read_raw
        from ...io.dng import write_dng

        with tempfile.TemporaryDirectory(prefix="restore-develop-") as tmp:
            path = Path(tmp) / "mosaic.dng"
            try:
                write_dng(image, path)
                out = read_raw(path, self.raw_options)
            except InputError as e:  # OutputError included; named after the source, not the temporary file
                raise InputError(image.meta.source, f"develop: cannot develop the mosaic: {e.problem}") from None
            except ValueError as e:
                raise InputError(image.meta.source, f"develop: cannot develop the mosaic: {str(e).splitlines()[0]}") from None
        meta = replace(out.meta, source=image.meta.source, noise_profile=image.meta.noise_profile)
        return replace(out, meta=meta)

    def _with_noise(self, image: Image) -> Image:
        """A RAW image with the pipeline's noise model recorded in ``meta.noise_profile`` (unchanged without one)."""
        n = self.opts.noise
        if n is None:
            return image
        m = image.meta
        span = None
        if m.white_level is not None and m.black_level:
            span = float(m.white_level) - sum(m.black_level) / len(m.black_level)
        profile = NoiseProfile(a=n.a, b=n.b, source="pipeline", scale_dn=span)
        return replace(image, meta=replace(m, noise_profile=profile))
