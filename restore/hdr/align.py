"""Registration of an exposure bracket onto one reference frame.

Two methods, both through OpenCV:

* :func:`align_mtb` -- translation only, Ward's median threshold bitmaps
  (G. Ward, "Fast, Robust Image Registration for Compositing High Dynamic
  Range Photographs from Hand-Held Exposures", Journal of Graphics Tools
  8(2), 2003) via ``cv2.AlignMTB.calculateShift``.  Insensitive to the
  exposure difference by construction (each frame is thresholded at its own
  median), fast, integer pixel shifts.
* :func:`align_ecc` -- translation / euclidean / affine / homography by
  maximising the enhanced correlation coefficient (G. D. Evangelidis,
  E. Z. Psarakis, "Parametric Image Alignment Using Enhanced Correlation
  Coefficient Maximization", IEEE TPAMI 30(10), 2008) via
  ``cv2.findTransformECC``, coarse to fine, on exposure-normalised grey
  images.  Sub-pixel, handles rotation and perspective, slower.

Frames are float32 ``(H, W, C)`` arrays (C = 1, 3 or 4; the first three
channels are used for the grey image, alpha is warped like the rest) in any
encoding that is a monotone function of scene light -- linear radiance (any
scale, values above 1 allowed) or display-encoded [0, 1].  All frames of a
bracket must have the same height and width.
"""

from __future__ import annotations

import re
from typing import Sequence

import cv2
import numpy as np

__all__ = ["AlignError", "align_mtb", "align_ecc", "ECC_MOTIONS"]

#: Motion models of :func:`align_ecc` and their OpenCV constants.
ECC_MOTIONS = {
    "translation": cv2.MOTION_TRANSLATION,
    "euclidean": cv2.MOTION_EUCLIDEAN,
    "affine": cv2.MOTION_AFFINE,
    "homography": cv2.MOTION_HOMOGRAPHY,
}

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # Rec.709


class AlignError(ValueError):
    """A bracket cannot be aligned (ECC did not converge, frames differ in size, bad arguments)."""


# -- helpers ---------------------------------------------------------------------------------------


def _check_frames(frames: Sequence[np.ndarray], reference: int) -> tuple[int, int]:
    if len(frames) == 0:
        raise AlignError("no frames to align")
    if not -len(frames) <= reference < len(frames):
        raise AlignError(f"reference index {reference} out of range for {len(frames)} frames")
    shapes = []
    for i, f in enumerate(frames):
        a = np.asarray(f)
        if a.ndim not in (2, 3) or a.shape[0] < 1 or a.shape[1] < 1:
            raise AlignError(f"frame {i}: expected an (H, W, C) array, got shape {a.shape}")
        shapes.append(a.shape[:2])
    if len(set(shapes)) > 1:
        detail = ", ".join(f"frame {i}: {w}x{h}" for i, (h, w) in enumerate(shapes))
        raise AlignError(f"frames differ in size ({detail})")
    return shapes[0]


def _grey(frame: np.ndarray) -> np.ndarray:
    """Rec.709 luminance of the first three channels (or the only channel), float32, NaN/inf -> 0."""
    a = np.asarray(frame)
    if a.ndim == 3 and a.shape[2] >= 3:
        g = a[..., :3].astype(np.float32, copy=False) @ _LUMA
    else:
        g = (a[..., 0] if a.ndim == 3 else a).astype(np.float32)
    return np.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)


def _srgb_oetf(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0.0031308), 1 / 2.4) - 0.055)


def _to_mtb_8bit(frame: np.ndarray) -> np.ndarray:
    """8-bit grey for MTB: luminance scaled so the median sits at 0.18, clipped to [0, 1], sRGB-encoded.

    A per-frame monotone map, so the median threshold bitmap is unchanged
    except for quantisation; placing every frame's median at the same grey
    gives all of them the same fine steps around the median, where the
    exclusion band lies (dark 8-bit frames used as they are have only a few
    levels there and align badly).
    """
    g = _grey(frame)
    step = max(1, int(np.sqrt(g.size / 250_000)))  # median from ~250k samples
    sample = g[::step, ::step]
    med = float(np.median(sample))
    if med <= 0:
        pos = sample[sample > 0]
        med = float(np.median(pos)) if pos.size else 1.0
    enc = _srgb_oetf(np.clip(g * np.float32(0.18 / med), 0.0, 1.0))
    return np.ascontiguousarray(np.round(enc * 255.0).astype(np.uint8))


def _warp(frame: np.ndarray, matrix: np.ndarray, flags: int) -> np.ndarray:
    """Warp ``frame`` (H, W[, C]) with an inverse-map 2x3 or 3x3 matrix, replicating borders; same shape and dtype."""
    a = np.asarray(frame)
    h, w = a.shape[:2]
    channels = a.shape[2] if a.ndim == 3 else 0
    warp = cv2.warpPerspective if matrix.shape[0] == 3 else cv2.warpAffine
    flags = flags | cv2.WARP_INVERSE_MAP

    def one(x: np.ndarray) -> np.ndarray:
        return warp(np.ascontiguousarray(x), matrix, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)

    if channels == 0:
        return one(a)
    if channels <= 4:
        out = one(a)
        return out.reshape(h, w, channels)
    return np.stack([one(a[..., c]) for c in range(channels)], axis=2)


# -- MTB -------------------------------------------------------------------------------------------


def align_mtb(
    frames: list[np.ndarray],
    reference: int,
    *,
    max_bits: int = 6,
    exclude_range: int = 4,
) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Translate every frame onto the reference with Ward's median threshold bitmaps (Ward 2003).

    Each frame is reduced to 8-bit grey (Rec.709 luminance scaled so its
    median is 0.18, clipped to [0, 1], sRGB-encoded -- a per-frame monotone
    map, to which the median threshold bitmap is invariant), then
    ``cv2.AlignMTB.calculateShift`` finds the integer shift against the
    reference by an image-pyramid search (one bit per level), ignoring
    pixels within ``exclude_range`` grey levels of each frame's median.
    Frames are moved by that shift (exact integer translation, borders
    replicated).

    Args:
        frames: float32 ``(H, W, C)`` arrays (any monotone encoding: linear
            radiance of any scale, or display-encoded [0, 1]), all the same
            height and width.  Other real dtypes (uint8, uint16) work too.
        reference: Index of the frame the others are moved onto (negative
            indices count from the end).
        max_bits: Pyramid depth; shifts up to ``2**max_bits - 1`` pixels
            are found.  Lowered for small images so the coarsest level is
            at least 8 pixels on its short side.
        exclude_range: Half-width in 8-bit grey levels of the band around
            the median left out of the comparison (noise).

    Returns:
        ``(aligned, shifts)``: the moved frames (same shape and dtype as
        given; the reference is returned unchanged) and, per frame, the
        ``(dx, dy)`` in pixels applied to it (positive = moved right /
        down; the reference has ``(0, 0)``).  A frame whose content sits
        ``(+5, -3)`` from the reference gets ``(-5, +3)``.

    Raises:
        AlignError: no frames, frames of different sizes, bad reference index
            or parameters.
    """
    h, w = _check_frames(frames, reference)
    ref = reference % len(frames)
    if max_bits < 1 or exclude_range < 0:
        raise AlignError(f"max_bits must be >= 1 and exclude_range >= 0 (got {max_bits}, {exclude_range})")
    bits = int(max(1, min(max_bits, int(np.floor(np.log2(max(min(h, w), 1)))) - 3)))
    mtb = cv2.createAlignMTB(bits, int(exclude_range), False)
    grey = [_to_mtb_8bit(f) for f in frames]
    # Chain neighbouring exposures (ordered by brightness) towards the reference and accumulate,
    # as align_image_stack does: a frame 10 stops from the reference shares too little structure
    # with it, while neighbours one stop apart look alike after median thresholding.
    brightness = [float(np.mean(np.asarray(f, dtype=np.float32))) for f in frames]
    order = sorted(range(len(frames)), key=lambda i: brightness[i])
    pos = order.index(ref)
    total: dict[int, tuple[int, int]] = {ref: (0, 0)}
    for step in (-1, 1):
        j = pos + step
        while 0 <= j < len(order):
            cur, nxt = order[j], order[j - step]  # nxt is one step closer to the reference
            dx, dy = _checked_shift(mtb, grey[nxt], grey[cur])
            px, py = total[nxt]
            total[cur] = (px + dx, py + dy)
            j += step
    aligned: list[np.ndarray] = []
    shifts: list[tuple[int, int]] = []
    for i, f in enumerate(frames):
        dx, dy = total[i]
        shifts.append((dx, dy))
        if i == ref:
            aligned.append(f)
        elif dx == 0 and dy == 0:
            aligned.append(np.array(f, copy=True))
        else:
            # integer translation: nearest neighbour is exact; the forward map x' = x + d
            m = np.array([[1, 0, -dx], [0, 1, -dy]], dtype=np.float64)
            aligned.append(_warp(f, m, cv2.INTER_NEAREST))
    return aligned, shifts


def _checked_shift(mtb, ref_grey: np.ndarray, grey: np.ndarray) -> tuple[int, int]:
    """MTB shift of ``grey`` onto ``ref_grey``, kept only if it lowers the bitmap disagreement.

    A nearly black (or white) frame has an almost empty threshold bitmap, on which the pyramid
    search can lock onto noise; a shift that does not reduce the XOR error of the bitmaps by
    at least 10 % against no shift at all is rejected (0, 0).
    """
    dx, dy = (int(v) for v in mtb.calculateShift(ref_grey, grey))
    if dx == 0 and dy == 0:
        return 0, 0
    tb1, eb1 = mtb.computeBitmaps(ref_grey)
    tb2, eb2 = mtb.computeBitmaps(grey)

    def err(sx: int, sy: int) -> int:
        m = np.float32([[1, 0, sx], [0, 1, sy]])
        t = cv2.warpAffine(tb2, m, (tb2.shape[1], tb2.shape[0]), flags=cv2.INTER_NEAREST)
        e = cv2.warpAffine(eb2, m, (eb2.shape[1], eb2.shape[0]), flags=cv2.INTER_NEAREST)
        return int(np.count_nonzero((t ^ tb1) & e & eb1))

    return (dx, dy) if err(dx, dy) < 0.9 * err(0, 0) else (0, 0)


# -- ECC -------------------------------------------------------------------------------------------


def _ecc_normalised(g: np.ndarray) -> tuple[np.ndarray, float]:
    """Grey divided by the median of its mid-tones; also the normalised ceiling (max)."""
    step = max(1, int(np.sqrt(g.size / 250_000)))
    s = g[::step, ::step].ravel()
    hi = float(s.max()) if s.size else 0.0
    if hi <= 0:
        return g, 1.0
    lo_p, hi_p = np.percentile(s, [5, 95])
    mid = s[(s > max(lo_p, 0.0)) & (s < min(hi_p, 0.98 * hi))]
    scale = float(np.median(mid)) if mid.size else float(s[s > 0].mean())
    if not np.isfinite(scale) or scale <= 0:
        scale = hi
    return g / np.float32(scale), hi / scale


def _ecc_pair(ref: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exposure-normalised, commonly clipped, perceptually compressed grey images for ECC."""
    r, r_top = _ecc_normalised(_grey(ref))
    f, f_top = _ecc_normalised(_grey(frame))
    # Clip both where the first of them saturates, so a clipped highlight looks the same in both.
    ceiling = np.float32(0.95 * min(r_top, f_top))
    r = np.sqrt(np.clip(r, 0, ceiling))
    f = np.sqrt(np.clip(f, 0, ceiling))
    return np.ascontiguousarray(r, dtype=np.float32), np.ascontiguousarray(f, dtype=np.float32)


def _cv_message(e: cv2.error) -> str:
    """The readable part of an OpenCV error ("(-7:Iterations do not converge) NaN encountered.")."""
    text = " ".join(str(e).split())
    m = re.search(r"error: (\(.*?\).*?)(?: in function .*)?$", text)
    return (m.group(1) if m else text).strip() or "OpenCV error"


def _pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    pyr = [img]
    for _ in range(levels):
        pyr.append(cv2.pyrDown(pyr[-1]))
    return pyr


def _scale_warp(m: np.ndarray, factor: float) -> np.ndarray:
    """Express a warp estimated at one pyramid level at a level ``factor`` times larger."""
    m = m.copy()
    m[:2, 2] *= factor
    if m.shape[0] == 3:
        m[2, :2] /= factor
    return m


def align_ecc(
    frames: list[np.ndarray],
    reference: int,
    *,
    motion: str = "homography",
    iterations: int = 200,
    eps: float = 1e-6,
    blur_size: int = 5,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Warp every frame onto the reference by ECC maximisation (Evangelidis & Psarakis 2008).

    Per frame pair the grey images (Rec.709 luminance) are divided by the
    median of their own mid-tones (5th-95th percentile, below saturation),
    so the exposure difference disappears, clipped at the level where the
    first of the two saturates, and square-root compressed so shadows count.
    ``cv2.findTransformECC`` then runs coarse to fine on an image pyramid
    (coarsest level at least 64 pixels on its short side, at most 4
    levels), each level starting from the previous estimate.  The frame is
    warped with bilinear interpolation and replicated borders.

    Args:
        frames: float32 ``(H, W, C)`` arrays (linear radiance of any scale or
            display-encoded [0, 1]), all the same height and width.
        reference: Index of the frame the others are warped onto (negative
            indices count from the end).
        motion: ``"translation"``, ``"euclidean"`` (rotation + translation),
            ``"affine"`` or ``"homography"``.
        iterations: Most ECC iterations per pyramid level.
        eps: Stop a level when the correlation coefficient improves by less.
        blur_size: Gaussian pre-blur kernel size ECC applies to both images
            (odd; 0 or 1 = none).

    Returns:
        ``(aligned, matrices)``: warped frames (same shape and dtype; the
        reference is returned unchanged) and per frame the float64 warp,
        2x3 (translation, euclidean, affine) or 3x3 (homography), identity
        for the reference.  Each matrix maps reference pixel coordinates to
        frame coordinates (OpenCV's ECC convention: ``aligned(x) =
        frame(W x)``), so a frame whose content sits ``(+5, -3)`` from the
        reference has translation ``(5, -3)``.

    Raises:
        AlignError: ECC did not converge for a frame (uncorrelated or
            featureless images; the message names the frame index), or a
            non-finite warp, frames of different sizes, unknown motion, bad
            parameters.
    """
    h, w = _check_frames(frames, reference)
    ref = reference % len(frames)
    if motion not in ECC_MOTIONS:
        raise AlignError(f"unknown ECC motion {motion!r}; use one of {', '.join(ECC_MOTIONS)}")
    if iterations < 1 or not eps > 0:
        raise AlignError(f"iterations must be >= 1 and eps > 0 (got {iterations}, {eps})")
    if blur_size < 0 or (blur_size > 1 and blur_size % 2 == 0):
        raise AlignError(f"blur_size must be 0 or an odd number, got {blur_size}")
    mode = ECC_MOTIONS[motion]
    rows = 3 if motion == "homography" else 2
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, int(iterations), float(eps))
    levels = 0
    while levels < 3 and min(h, w) >> (levels + 1) >= 64:
        levels += 1

    aligned: list[np.ndarray] = []
    mats: list[np.ndarray] = []
    for i, f in enumerate(frames):
        if i == ref:
            aligned.append(f)
            mats.append(np.eye(rows, 3, dtype=np.float64))
            continue
        tmpl, inp = _ecc_pair(frames[ref], f)
        pt, pi = _pyramid(tmpl, levels), _pyramid(inp, levels)
        warp = np.eye(rows, 3, dtype=np.float32)
        for lvl in range(levels, -1, -1):
            try:
                _, warp = cv2.findTransformECC(pt[lvl], pi[lvl], warp, mode, criteria, None, int(blur_size))
            except cv2.error as e:
                detail = _cv_message(e)
                raise AlignError(
                    f"ECC ({motion}) did not converge for frame {i} against reference {ref}"
                    f" at pyramid level {lvl}: {detail}"
                ) from None
            if lvl > 0:
                warp = _scale_warp(warp, 2.0).astype(np.float32)
        m = warp.astype(np.float64)
        if not np.all(np.isfinite(m)):
            raise AlignError(f"ECC ({motion}) gave a non-finite warp for frame {i} against reference {ref}")
        mats.append(m)
        aligned.append(_warp(f, m, cv2.INTER_LINEAR))
    return aligned, mats
