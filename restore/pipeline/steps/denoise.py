"""``denoise``: Intel Open Image Denoise on linear HDR radiance."""

from __future__ import annotations

from typing import Literal

from ...errors import RestoreError
from ...image import Image
from ..base import Context, Stage
from ..options import _Strict
from ..registry import register_step

__all__ = ["DenoiseOptions", "DenoiseStage"]


class DenoiseOptions(_Strict):
    """Denoise linear HDR radiance with Intel Open Image Denoise (``pyoidn``)."""

    method: Literal["oidn"] = "oidn"



@register_step("denoise", options=DenoiseOptions, order=100)
class DenoiseStage(Stage):
    """Intel Open Image Denoise on linear HDR radiance (``pip install pyoidn``)."""

    kind = "denoise"

    def __init__(self, opts: DenoiseOptions):
        self.opts = opts

    def prepare(self) -> None:
        """Check that ``pyoidn`` is installed.

        Raises:
            RestoreError: it is not.
        """
        try:
            import pyoidn  # noqa: F401
        except ImportError:
            raise RestoreError("denoise: method oidn needs the pyoidn package (pip install pyoidn)") from None

    def __call__(self, image: Image, ctx: Context) -> Image:
        from ...hdr.denoise import denoise_oidn

        if image.encoding.transfer != "linear":
            raise RestoreError("denoise (oidn) works on linear HDR radiance; put it after merge")
        out = image.pixels.copy()
        out[..., :3] = denoise_oidn(image.color)
        return image.with_pixels(out)
