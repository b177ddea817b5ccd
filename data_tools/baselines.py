"""Classical (non-learned) baselines for deraining, dehazing and raindrop removal.

Used by ``benchmarks/starter_eval.py`` as the reference the starters must beat
and available to a pipeline stage.  Every function takes and returns float32
RGB (H, W, 3) in [0, 1].

* :func:`dehaze_dcp`: dark channel prior (He, Sun & Tang, "Single Image Haze
  Removal Using Dark Channel Prior", CVPR 2009), transmission refined by the
  guided filter (He, Sun & Tang, "Guided Image Filtering", ECCV 2010 / TPAMI
  2013) instead of soft matting.
* :func:`derain_guided`: rain-streak suppression in the high-frequency layer
  (decomposition idea of Kang, Lin & Fu, "Automatic Single-Image-Based Rain
  Streaks Removal via Image Decomposition", TIP 2012, and the guided-filter
  approach of Xu et al. 2012): the image is split by an edge-preserving
  guided filter into low- and high-frequency layers; rain streaks are thin,
  bright, positive high-frequency structures, so the positive part of the
  high-frequency layer is replaced by its median-filtered version (removing
  thin streaks, keeping larger texture), and a mild veiling correction is
  applied.
* :func:`deraindrop_median`: median then bilateral filtering (blurs the drop
  boundaries and refraction edges; a weak but honest baseline).
* :func:`weather_baseline`: raindrop baseline followed by a light DCP dehaze.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["guided_filter", "dark_channel", "dehaze_dcp", "derain_guided", "deraindrop_median", "weather_baseline"]


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Guided filter of ``src`` by a grey ``guide`` (both float32): cv2.ximgproc if present, else box filters."""
    guide = np.ascontiguousarray(guide, np.float32)
    src = np.ascontiguousarray(src, np.float32)
    if hasattr(cv2, "ximgproc"):
        return cv2.ximgproc.guidedFilter(guide, src, r, eps)
    mean_i, mean_p = _box(guide, r), _box(src, r)
    if src.ndim == 3:
        gi = guide[..., None] if guide.ndim == 2 else guide
        mi = mean_i[..., None] if mean_i.ndim == 2 else mean_i
        cov = _box(gi * src, r) - mi * mean_p
        var = _box(guide * guide, r) - mean_i * mean_i
        var = var[..., None] if var.ndim == 2 else var
        a = cov / (var + eps)
        b = mean_p - a * mi
        return _box(a, r) * gi + _box(b, r)
    cov = _box(guide * src, r) - mean_i * mean_p
    var = _box(guide * guide, r) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return _box(a, r) * guide + _box(b, r)


def dark_channel(img: np.ndarray, patch: int = 15) -> np.ndarray:
    """min over colour channels and a ``patch`` x ``patch`` window (grey erosion)."""
    m = np.min(img, axis=2).astype(np.float32)
    return cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch)))


def dehaze_dcp(img: np.ndarray, patch: int = 15, omega: float = 0.95, t0: float = 0.1,
               r: int = 40, eps: float = 1e-3) -> np.ndarray:
    """Dark channel prior dehazing (He et al. 2009) with guided-filter refinement.

    Args:
        patch: Dark channel window.
        omega: Fraction of haze removed (keeps some aerial perspective).
        t0: Lower bound of the transmission.
        r, eps: Guided filter radius and regulariser (grey image as guide).
    """
    img = np.ascontiguousarray(img, np.float32)
    dc = dark_channel(img, patch)
    n = max(1, dc.size // 1000)  # brightest 0.1 % of the dark channel
    idx = np.argpartition(dc.ravel(), -n)[-n:]
    A = img.reshape(-1, 3)[idx].max(axis=0)
    A = np.maximum(A, 1e-3)
    t = 1.0 - omega * dark_channel(img / A, patch)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    t = guided_filter(grey, t.astype(np.float32), min(r, max(1, min(img.shape[:2]) // 4)), eps)
    t = np.maximum(t, t0)[..., None]
    return np.clip((img - A) / t + A, 0.0, 1.0).astype(np.float32)


def derain_guided(img: np.ndarray, r: int = 4, eps: float = 0.02, median: int = 7,
                  veil: float = 0.3) -> np.ndarray:
    """Rain-streak suppression by filtering the high-frequency layer (see module docstring).

    Args:
        r, eps: Guided filter (self-guided) radius / regulariser of the low-frequency layer.
        median: Median kernel applied to the high-frequency layer (odd, <= 5 for uint8
            fallback; larger kernels use float median on 8-bit quantised data).
        veil: Strength of the veiling correction (light DCP, omega = veil).
    """
    img = np.ascontiguousarray(img, np.float32)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    low = guided_filter(grey, img, r, eps)
    high = img - low
    # median of the HF layer: quantise to uint8 around 0.5 (cv2.medianBlur needs 8-bit for k > 5)
    q = np.clip(high * 2 + 0.5, 0, 1)
    med = cv2.medianBlur((q * 255).round().astype(np.uint8), median).astype(np.float32) / 255.0
    med = (med - 0.5) / 2
    high_s = np.where(high > 0, np.minimum(high, med), high)
    out = np.clip(low + high_s, 0, 1)
    # rain streaks also brighten the low-frequency layer: pull it down by its positive residual
    # against a heavier median (thin bright structures survive the guided filter partly)
    low_med = cv2.medianBlur((np.clip(out, 0, 1) * 255).round().astype(np.uint8), 5).astype(np.float32) / 255.0
    out = np.minimum(out, low_med + 0.02)
    if veil > 0:
        out = dehaze_dcp(out, omega=veil)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def deraindrop_median(img: np.ndarray, median: int = 5, d: int = 7, sigma_color: float = 0.1,
                      sigma_space: float = 5.0) -> np.ndarray:
    """Median then bilateral filtering (raindrop baseline)."""
    u8 = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    m = cv2.medianBlur(u8, median).astype(np.float32) / 255.0
    return np.clip(cv2.bilateralFilter(m, d, sigma_color, sigma_space), 0, 1).astype(np.float32)


def weather_baseline(img: np.ndarray) -> np.ndarray:
    """All-weather baseline: median/bilateral filtering, then a light dark-channel dehaze."""
    return dehaze_dcp(deraindrop_median(img), omega=0.5)
