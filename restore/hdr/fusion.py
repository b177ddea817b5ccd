"""Exposure fusion: blend an exposure bracket directly into one display image.

Mertens, Kautz & Van Reeth 2007, "Exposure Fusion" (Pacific Graphics): each
pixel of each frame gets a weight from its local contrast (absolute Laplacian
of the grey image), saturation (standard deviation of R, G, B) and
well-exposedness (Gaussian around 0.5, sigma 0.2, per channel, multiplied),
each raised to a user exponent; the normalised weight maps blend the frames
with a Laplacian pyramid (Burt & Adelson).  No radiance map, no camera
response and no tone mapping are involved: input and output are
display-referred, sRGB-encoded.  The work is done by OpenCV's ``MergeMertens``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["fuse_mertens"]


def _weight(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"fuse_mertens: {name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"fuse_mertens: {name} must be a finite number >= 0, got {value!r}")
    return v


def _frame(i: int, f: np.ndarray) -> np.ndarray:
    a = np.asarray(f)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"fuse_mertens: frame {i} must be an (H, W, 3) RGB array, got shape {a.shape}")
    if a.dtype == np.uint8:
        # OpenCV scales every input by 1/255 (below), so 8-bit values go in as they are.
        return np.ascontiguousarray(a, dtype=np.float32)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"fuse_mertens: frame {i} must be float in [0, 1] or uint8, got dtype {a.dtype}")
    a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.ascontiguousarray(np.clip(a, 0.0, 1.0) * np.float32(255.0))


def fuse_mertens(
    frames: list[np.ndarray],
    contrast_weight: float = 1.0,
    saturation_weight: float = 1.0,
    exposure_weight: float = 1.0,
) -> np.ndarray:
    """Fuse an exposure bracket with Mertens et al. 2007 exposure fusion.

    Args:
        frames: At least 2 aligned frames of the same scene at different
            exposures, each ``(H, W, 3)`` display-referred sRGB-encoded RGB,
            float in [0, 1] (values outside are clipped, NaN counts as 0) or
            uint8 in [0, 255]; all the same size.  Order does not matter.
        contrast_weight: Exponent of the contrast measure (|Laplacian| of
            grey), >= 0 (0 = ignore).
        saturation_weight: Exponent of the saturation measure (standard
            deviation of R, G, B), >= 0.
        exposure_weight: Exponent of the well-exposedness measure
            (exp(-(v - 0.5)^2 / (2 * 0.2^2)) multiplied over the channels), >= 0.

    Returns:
        ``(H, W, 3)`` float32 sRGB-encoded display values in [0, 1] (the
        pyramid blend can over/undershoot slightly; it is clipped).

    Raises:
        ValueError: fewer than 2 frames, a frame not ``(H, W, 3)``, frames of
            different sizes, an unsupported dtype, or a negative / non-finite
            weight.

    Note:
        OpenCV 5.0's ``MergeMertens.process`` converts every input to float
        with a factor 1/255 whatever its depth, so float frames in [0, 1] are
        passed as [0, 255] floats (passing them unscaled silently computes the
        weights on values in [0, 1/255]).
    """
    if isinstance(frames, np.ndarray) or not isinstance(frames, Sequence):
        raise ValueError("fuse_mertens: frames must be a list of (H, W, 3) arrays")
    if len(frames) < 2:
        raise ValueError(f"fuse_mertens: need at least 2 frames, got {len(frames)}")
    wc = _weight("contrast_weight", contrast_weight)
    ws = _weight("saturation_weight", saturation_weight)
    we = _weight("exposure_weight", exposure_weight)
    imgs = [_frame(i, f) for i, f in enumerate(frames)]
    shape = imgs[0].shape
    for i, a in enumerate(imgs[1:], start=1):
        if a.shape != shape:
            raise ValueError(f"fuse_mertens: frame {i} has shape {a.shape}, frame 0 has {shape}; frames must match")
    merge = cv2.createMergeMertens(contrast_weight=wc, saturation_weight=ws, exposure_weight=we)
    out = merge.process(imgs)
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0).astype(np.float32)
