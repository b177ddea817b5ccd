"""Shared helpers for the synthetic degradations (vectorised, cv2-based)."""

from __future__ import annotations

import cv2
import numpy as np


def as_float_rgb(img: np.ndarray) -> np.ndarray:
    """Validate and return a float32 (H, W, 3) copy-free view in [0, 1]."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB, got shape {img.shape}")
    return np.ascontiguousarray(img, dtype=np.float32)


def pick(value, rng: np.random.Generator, lo: float, hi: float) -> float:
    """``value`` if given, else uniform in [lo, hi) from ``rng``."""
    return float(rng.uniform(lo, hi)) if value is None else float(value)


def line_kernel(length: float, angle_deg: float, width: int = 1) -> np.ndarray:
    """Normalised motion-blur kernel: a line of ``length`` px at ``angle_deg`` (0 = vertical)."""
    length = max(1.0, float(length))
    k = int(np.ceil(length)) | 1
    ker = np.zeros((k, k), np.float32)
    c = k // 2
    a = np.deg2rad(angle_deg)
    dx, dy = np.sin(a) * (length - 1) / 2, np.cos(a) * (length - 1) / 2
    p0 = (int(round(c - dx * 16)), int(round(c - dy * 16)))
    p1 = (int(round(c + dx * 16)), int(round(c + dy * 16)))
    cv2.line(ker, p0, p1, 1.0, thickness=max(1, int(width)), lineType=cv2.LINE_AA, shift=4)
    s = ker.sum()
    if s <= 0:
        ker[c, c] = 1.0
        s = 1.0
    return ker / s


def gauss(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)


def luminance(img: np.ndarray) -> np.ndarray:
    return (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]).astype(np.float32)
