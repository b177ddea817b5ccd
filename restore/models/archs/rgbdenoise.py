"""DenoiseUNet - a small noise-level-conditioned U-Net denoising display-referred RGB (JPEG/PNG/TIFF photos).

``restore``'s own architecture (no official upstream): the RGB denoiser of issue 19, trained by
``data_tools/train_denoise.py --task rgb-denoise`` on clean images run through a synthetic camera (Brooks et
al., CVPR 2019: unprocess to raw, Poisson-Gaussian noise of :mod:`restore.noise`, develop back to sRGB with
demosaicing), so its noise is a camera's: signal-dependent and spatially correlated, not white Gaussian.

Input ``(B, channels + 1, H, W)`` float32: the sRGB-encoded image in [0, 1] and one constant plane holding the
image's noise level ``sigma`` (:func:`restore.noise.estimate_sigma` of the whole image, or the model step's
``noise_sigma``), as FFDNet (Zhang, Zuo and Zhang, "FFDNet: Toward a fast and flexible solution for CNN-based
image denoising", IEEE TIP 27(9), 2018) takes its noise-level map.  As in FFDNet the image is first folded
into ``4 * channels`` half-resolution planes (``pixel_unshuffle(2)``; the map is 2x2-averaged), which quarters
the cost of every layer; the body is :class:`~restore.models.archs.rawdenoise.RawDenoiseUNet` with
``in_planes = 4 * channels`` and one sigma plane, whose output is the residual-corrected planes (a zero
``tail`` is the identity), unfolded with ``pixel_shuffle(2)``.  Output ``(B, channels, H, W)``, clamped to
[0, 1] by the model step.

H and W must be multiples of ``2 * 2**depth`` (16 at depth 3).  Receptive field 144 full-resolution pixels
(72 half-resolution): the declared context (80 px) makes tiles exact, tiles blend over 16 px.  Speed is the
RAW denoiser's per half-resolution pixel: one sRGB megapixel costs what one raw megapixel costs
(:mod:`~restore.models.archs.rawdenoise` measures 1.6-1.9 MP/s for that, 2 cores, fp32).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor, SizeRequirements, StateDict
from torch import Tensor, nn

from ._base import ArchInfo, SideInput, describe, register
from .rawdenoise import BLEND_OVERLAP, RawDenoiseUNet, _detect as _body_detect, infer_params as _body_params
from .rawdenoise import tile_context

__all__ = ["DenoiseUNet", "DenoiseArch", "NoiseLevel", "infer_params"]

PREFIX = "body."


class DenoiseUNet(nn.Module):
    """Noise-level-conditioned U-Net on 2x2-folded RGB (module docstring).

    Args:
        channels: Image channels (3 for RGB, 1 for grey).
        base: Width of the body's first level.
        depth: The body's 2x down-samplings (H, W multiples of ``2 * 2**depth``).
        blocks: The body's residual blocks per level (:class:`RawDenoiseUNet`).
    """

    def __init__(self, channels: int = 3, base: int = 32, depth: int = 3, blocks: Sequence[int] = ()) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"DenoiseUNet: channels must be >= 1, got {channels}")
        self.hyperparameters: dict[str, Any] = {"channels": channels, "base": base, "depth": depth}
        self.channels = channels
        self.body = RawDenoiseUNet(in_planes=4 * channels, base=base, depth=depth, sigma_channels=1, blocks=blocks)
        if any(self.body.blocks):
            self.hyperparameters["blocks"] = self.body.blocks

    @property
    def multiple(self) -> int:
        """What H and W must be multiples of (``2 * 2**depth``)."""
        return 2 * self.body.multiple

    def forward(self, x: Tensor) -> Tensor:
        """``(B, channels + 1, H, W)`` (image + noise-level plane) -> ``(B, channels, H, W)``."""
        c = self.channels
        if x.ndim != 4 or x.shape[1] != c + 1:
            raise ValueError(f"DenoiseUNet expects (B, {c + 1}, H, W) (image + noise-level plane), "
                             f"got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple or h == 0 or w == 0:
            raise ValueError(f"DenoiseUNet: H and W must be positive multiples of {self.multiple}, got {h}x{w}; "
                             f"pad bottom/right and crop the output")
        folded = F.pixel_unshuffle(x[:, :c], 2)
        sigma = F.avg_pool2d(x[:, c:], 2)
        return F.pixel_shuffle(self.body(torch.cat([folded, sigma], 1)), 2)


def infer_params(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor kwargs from the shapes of a ``body.``-prefixed state dict.

    Raises:
        KeyError: a required key is missing; ValueError: the body is not ``4 * channels`` planes + 1 sigma plane.
    """
    p = _body_params({k[len(PREFIX):]: v for k, v in state_dict.items() if k.startswith(PREFIX)})
    if p["in_planes"] % 4 or p["sigma_channels"] != 1:
        raise ValueError(f"DenoiseUNet body must take 4*channels planes + 1 sigma plane, got {p}")
    return {"channels": p["in_planes"] // 4, "base": p["base"], "depth": p["depth"],
            **({"blocks": p["blocks"]} if "blocks" in p else {})}


def _detect(state_dict: StateDict) -> bool:
    if not state_dict or not all(k.startswith(PREFIX) for k in state_dict):
        return False
    body = {k[len(PREFIX):]: v for k, v in state_dict.items()}
    if not _body_detect(body):
        return False
    try:
        infer_params(state_dict)
    except (KeyError, ValueError):
        return False
    return True


class DenoiseArch(Architecture[DenoiseUNet]):
    """spandrel architecture for :class:`DenoiseUNet`: every key is ``body.`` + a RawDenoiseUNet key, the body
    taking ``4 * channels`` planes and one sigma plane."""

    def __init__(self) -> None:
        super().__init__(id="DenoiseUNet", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[DenoiseUNet]:
        """Build a :class:`DenoiseUNet` from ``state_dict`` (strict load) and describe it.

        Raises:
            KeyError / RuntimeError / ValueError: for a state dict that is not DenoiseUNet's.
        """
        p = infer_params(state_dict)
        model = DenoiseUNet(**p)
        return describe(
            self,
            model,
            state_dict,
            tags=[f"{p['base']}base", f"depth{p['depth']}"],
            input_channels=p["channels"] + 1,
            output_channels=p["channels"],
            size_requirements=SizeRequirements(multiple_of=2 * 2 ** p["depth"]),
        )


class NoiseLevel(nn.Module):
    """Appends a constant noise-level plane: ``(B, C, H, W) -> (B, C + 1, H, W)``; ``sigma`` in 0..1 units."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"noise level must be a finite number >= 0, got {sigma}")
        self.sigma = float(sigma)

    def forward(self, x: Tensor) -> Tensor:
        """The image with its noise-level plane appended (same dtype and device)."""
        return torch.cat([x, torch.full_like(x[:, :1], self.sigma)], 1)


def _no_weights(value: Any) -> nn.Module:
    raise ValueError("the noise level is a number (noise_sigma), not weights")


def _level_from_image(image: Any, input_channels: int, pixels: Any, options: Mapping[str, Any]) -> nn.Module:
    from ...noise import estimate_sigma

    value = options.get("noise_sigma")
    return NoiseLevel(float(value) if value is not None else estimate_sigma(pixels[..., : input_channels - 1]))


#: The noise-level side input: the model step's ``noise_sigma``, else estimated from the whole image.
NOISE_LEVEL = SideInput(
    name="noise-level",
    option="noise_sigma",
    needed=lambda channels: True,
    load=_no_weights,
    build=lambda x, side: side(x),
    image_channels=3,
    missing="needs the image's noise level",
    what="noise level",
    from_image=_level_from_image,
)


DenoiseArch = register(  # type: ignore[misc]  # _base's pattern: the name now holds the instance
    DenoiseArch(),
    ArchInfo(
        task="denoise",
        input_encoding="srgb",
        output_range="clamped",
        overlap=2 * BLEND_OVERLAP,
        context=2 * tile_context(3),
        context_of=lambda m: 2 * tile_context(m.body.depth, m.body.blocks),
        whole_image=False,
        side_inputs=(NOISE_LEVEL,),
        notes=(
            "restore's own RGB denoiser for sRGB photos: 2x2-folded image + a constant noise-level plane "
            "(estimated from the whole image, or the model step's noise_sigma), FFDNet-style; body = "
            "RawDenoiseUNet; context 80 px makes tiles exact."
        ),
    ),
)
