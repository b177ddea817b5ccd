"""Bayer CFA mosaics as model input: packing to planes, and the noise-sigma map side input.

A model whose :attr:`ArchInfo.input_encoding <restore.models.archs.ArchInfo.input_encoding>` is
``"cfa-packed"`` takes a CFA mosaic :class:`~restore.image.Image` (``develop: {output: cfa}``: ``(H, W, 1)``
float32, 0 = black level, 1 = white level, values outside kept) as 4 half-resolution planes R, G1, G2, B
(G1 on the red row, G2 on the blue row; the order of ``data_tools.unprocess.pack_bayer``, which the
training data uses).  :func:`encode_for_model` gives the model step the planes ``(H/2, W/2, 4)`` and the
function mapping the model's planes back to the mosaic, so tiling, blending and the tiler's padding all
happen in the packed domain.  A mosaic with an odd height or width is padded by one row/column copied from
two rows/columns back (the same CFA colour) and cropped after.

X-Trans (6x6) mosaics are refused for now: their 36-cell pattern does not pack to 4 planes.

:class:`SigmaMap` is the side module of a noise-conditioned model
(:attr:`SideInput.from_image <restore.models.archs.SideInput.from_image>`): built per image from
:func:`restore.noise.noise_profile_for` (``a``, ``b``), it appends ``sqrt(max(a * max(x, 0) + b, 0))`` of
the noisy planes to them, exactly as ``data_tools.unprocess.sigma_map`` computes the training input.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..errors import RestoreError
from ..image import Image

__all__ = [
    "BAYER_OFFSETS",
    "PLANES",
    "bayer_offsets",
    "pack",
    "unpack",
    "encode_for_model",
    "SigmaMap",
    "sigma_side_module",
]

#: (row, column) in the 2x2 tile of R, G1 (red's row), G2 (blue's row), B, per Bayer pattern.
BAYER_OFFSETS: dict[str, tuple[tuple[int, int], ...]] = {
    "RGGB": ((0, 0), (0, 1), (1, 0), (1, 1)),
    "GRBG": ((0, 1), (0, 0), (1, 1), (1, 0)),
    "GBRG": ((1, 0), (1, 1), (0, 0), (0, 1)),
    "BGGR": ((1, 1), (1, 0), (0, 1), (0, 0)),
}
#: Planes of a packed Bayer mosaic.
PLANES = 4


def bayer_offsets(pattern: str | None, label: str = "the model") -> tuple[tuple[int, int], ...]:
    """The plane offsets of a Bayer ``pattern`` (``meta.cfa_pattern``).

    Raises:
        RestoreError: (one line) no pattern, an X-Trans pattern (not supported yet) or another layout.
    """
    p = str(pattern or "").upper()
    if p in BAYER_OFFSETS:
        return BAYER_OFFSETS[p]
    if len(p) == 36:
        raise RestoreError(f"{label} takes a 2x2 Bayer mosaic; X-Trans (6x6) mosaics are not supported yet")
    raise RestoreError(f"{label} takes a Bayer mosaic (RGGB, BGGR, GRBG, GBRG); the image's CFA pattern is {pattern!r}")


def pack(mosaic: np.ndarray, pattern: str | None, label: str = "the model") -> np.ndarray:
    """``(H, W)`` or ``(H, W, 1)`` Bayer mosaic -> float32 ``(ceil(H/2), ceil(W/2), 4)`` planes R, G1, G2, B.

    An odd side is padded with the row/column two back (same CFA colours); :func:`unpack` with the original
    shape crops it.

    Raises:
        RestoreError: not a Bayer pattern (:func:`bayer_offsets`), or not a 2-D mosaic.
    """
    offsets = bayer_offsets(pattern, label)
    m = np.asarray(mosaic, np.float32)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2 or m.shape[0] < 2 or m.shape[1] < 2:
        raise RestoreError(f"{label} takes a CFA mosaic (H, W, 1) of at least 2x2, got shape {np.shape(mosaic)}")
    if m.shape[0] % 2:
        m = np.concatenate([m, m[-2:-1]], axis=0)
    if m.shape[1] % 2:
        m = np.concatenate([m, m[:, -2:-1]], axis=1)
    return np.ascontiguousarray(np.stack([m[i::2, j::2] for i, j in offsets], axis=2))


def unpack(planes: np.ndarray, pattern: str | None, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Exact inverse of :func:`pack`: ``(h, w, 4)`` planes -> float32 ``(H, W, 1)`` mosaic (cropped to ``shape``).

    Raises:
        RestoreError: not a Bayer pattern; ValueError: ``planes`` is not ``(h, w, 4)``.
    """
    offsets = bayer_offsets(pattern)
    p = np.asarray(planes, np.float32)
    if p.ndim != 3 or p.shape[2] != PLANES:
        raise ValueError(f"planes must be (h, w, {PLANES}), got shape {p.shape}")
    out = np.empty((2 * p.shape[0], 2 * p.shape[1]), np.float32)
    for k, (i, j) in enumerate(offsets):
        out[i::2, j::2] = p[:, :, k]
    if shape is not None:
        out = out[: shape[0], : shape[1]]
    return np.ascontiguousarray(out[:, :, None])


def encode_for_model(image: Image, label: str = "the model") -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """A CFA mosaic image as a packed-CFA model's input, and the map from its output back to the mosaic.

    Args:
        image: A CFA :class:`~restore.image.Image` (``encoding.cfa``), ``meta.cfa_pattern`` a Bayer pattern.
        label: The model's name for messages.

    Returns:
        ``(planes (H/2, W/2, 4) float32, back)``; ``back((h, w, 4) planes) -> (H, W, 1)`` mosaic.

    Raises:
        RestoreError: (one line) an RGB image, an X-Trans or unknown pattern.
    """
    if not image.encoding.cfa:
        raise RestoreError(f"model {label!r} takes a raw CFA mosaic (develop: {{output: cfa}}), not {image.encoding} RGB")
    pattern = image.meta.cfa_pattern
    shape = (image.height, image.width)
    planes = pack(image.pixels, pattern, f"model {label!r}")
    return planes, lambda y: unpack(y, pattern, shape)


class SigmaMap(nn.Module):
    """Appends the per-pixel noise sigma of the packed planes: ``(B, P, h, w) -> (B, P + channels, h, w)``.

    ``sigma = sqrt(max(a * max(x, 0) + b, 0))`` per plane (``channels == P``), or of the planes' mean
    (``channels == 1``); ``channels == 0`` appends nothing.  ``a``, ``b``: the Poisson-Gaussian noise model in
    normalised raw units (:class:`restore.noise.NoiseProfile`).
    """

    def __init__(self, a: float, b: float, channels: int = PLANES) -> None:
        super().__init__()
        self.register_buffer("a", torch.tensor(float(a)), persistent=False)
        self.register_buffer("b", torch.tensor(float(b)), persistent=False)
        self.channels = int(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == 0:
            return x
        level = x if self.channels == x.shape[1] else x.mean(dim=1, keepdim=True)
        if level.shape[1] != self.channels:
            raise ValueError(f"sigma map: {self.channels} channels from {x.shape[1]} planes")
        a, b = self.a.to(x.dtype), self.b.to(x.dtype)
        sigma = torch.sqrt(torch.clamp(a * torch.clamp(level, min=0) + b, min=0))
        return torch.cat([x, sigma], dim=1)


def sigma_side_module(image: Image, input_channels: int, planes: int = PLANES) -> SigmaMap:
    """The :class:`SigmaMap` for ``image`` (its noise profile) and a network taking ``input_channels``.

    Raises:
        RestoreError: (one line, an ``InputError``) no noise profile can be had: the image was not read from a
            RAW file and the pipeline gives none (``develop: {noise: {a: ..., b: ...}}``).
    """
    from ..noise import noise_profile_for

    profile = noise_profile_for(image)
    return SigmaMap(profile.a, profile.b, channels=input_channels - planes)
