"""Denoising of linear HDR radiance with Intel Open Image Denoise (``pyoidn``, Apache-2.0).

OIDN's ``RT`` filter in HDR mode, colour only (no albedo/normal: those exist
for renders, not photographs).  OIDN expects radiance in roughly the range a
renderer produces; it is scale-aware in HDR mode, so values are passed as
they are.
"""

from __future__ import annotations

import numpy as np

__all__ = ["denoise_oidn"]


def denoise_oidn(radiance: np.ndarray, quality: str = "high") -> np.ndarray:
    """Denoise linear HDR RGB radiance.

    Args:
        radiance: ``(H, W, 3)`` float32, linear, >= 0 (negatives are clipped to 0).
        quality: ``"high"``, ``"balanced"`` or ``"fast"``.

    Returns:
        ``(H, W, 3)`` float32 denoised radiance.

    Raises:
        ImportError: pyoidn is not installed (``pip install pyoidn``).
        ValueError: wrong shape.
    """
    import pyoidn

    if radiance.ndim != 3 or radiance.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) radiance, got {radiance.shape}")
    x = np.ascontiguousarray(np.maximum(np.nan_to_num(radiance, nan=0.0, posinf=65504.0), 0.0), dtype=np.float32)
    return np.asarray(pyoidn.denoise(x, hdr=True, quality=quality), dtype=np.float32)
