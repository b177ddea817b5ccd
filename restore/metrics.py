"""PSNR and SSIM with BasicSR's conventions (the numbers SR papers report).

* Y channel: ITU-R BT.601 luma of 8-bit RGB as MATLAB's ``rgb2ycbcr``:
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)`` with R, G, B in [0, 1],
  i.e. Y in [16, 235].
* Border crop: ``crop_border`` pixels (= the SR scale) removed on every side.
* SSIM: Wang et al. 2004, 11x11 Gaussian window, sigma 1.5, K1 0.01,
  K2 0.03, L = 255, "valid" filtering, as BasicSR's ``calculate_ssim``.
* Both images are quantised to 8 bits first (as PNG outputs are).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["to_y", "psnr", "ssim"]


def to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma ``(H, W)`` float64 in [16, 235] from ``(H, W, 3)`` RGB (uint8, or float in [0, 1])."""
    x = np.asarray(rgb, dtype=np.float64)
    if np.asarray(rgb).dtype == np.uint8:
        x = x / 255.0
    return 16.0 + x[..., 0] * 65.481 + x[..., 1] * 128.553 + x[..., 2] * 24.966


def _prep(a: np.ndarray, crop: int, y: bool) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = np.floor(np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if y and a.ndim == 3 and a.shape[2] == 3:
        out = to_y(a)
    else:
        out = a.astype(np.float64)
    if crop:
        out = out[crop:-crop, crop:-crop, ...]
    return out


def psnr(a: np.ndarray, b: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (peak 255).

    Args:
        a, b: ``(H, W, 3)`` images, uint8 or float in [0, 1], same shape.
        crop_border: Pixels removed on each side (BasicSR: the SR scale).
        y_channel: Compare BT.601 Y (PSNR-Y) instead of RGB.

    Returns:
        PSNR in dB (``inf`` for identical images).

    Raises:
        ValueError: shape mismatch.
    """
    if np.shape(a) != np.shape(b):
        raise ValueError(f"shape mismatch {np.shape(a)} vs {np.shape(b)}")
    x, z = _prep(a, crop_border, y_channel), _prep(b, crop_border, y_channel)
    mse = np.mean((x - z) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _ssim_2d(x: np.ndarray, z: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    win = np.outer(k, k.transpose())
    mu1 = cv2.filter2D(x, -1, win)[5:-5, 5:-5]
    mu2 = cv2.filter2D(z, -1, win)[5:-5, 5:-5]
    s1 = cv2.filter2D(x * x, -1, win)[5:-5, 5:-5] - mu1**2
    s2 = cv2.filter2D(z * z, -1, win)[5:-5, 5:-5] - mu2**2
    s12 = cv2.filter2D(x * z, -1, win)[5:-5, 5:-5] - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    return float(m.mean())


def ssim(a: np.ndarray, b: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """Structural similarity (mean over channels), BasicSR conventions; arguments as :func:`psnr`."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"shape mismatch {np.shape(a)} vs {np.shape(b)}")
    x, z = _prep(a, crop_border, y_channel), _prep(b, crop_border, y_channel)
    if x.ndim == 2:
        return _ssim_2d(x, z)
    return float(np.mean([_ssim_2d(x[..., i], z[..., i]) for i in range(x.shape[2])]))
