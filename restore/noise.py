"""Poisson-Gaussian noise model of a RAW file, in raw units (issue 19).

The model is the one of Foi, Trimeche, Katkovnik and Egiazarian, "Practical Poissonian-Gaussian noise modeling
and fitting for single-image raw-data", IEEE Trans. Image Processing 17(10), 2008::

    var(x) = a * x + b

where ``x`` is the **black-subtracted raw signal normalised to [0, 1]**: 0 = the black level, 1 = the white
(saturation) level, per CFA pixel, before white balance, demosaicing or any colour matrix.  ``a`` (normalised
units) is the photon-noise gain, ``b`` (normalised units squared) the signal-independent (read) noise variance.
In raw numbers (DN), with ``s = white - black``: ``a_DN = a * s`` (DN per electron, the conversion gain) and
``b_DN = b * s**2`` (DN²).

:func:`estimate_noise` fits ``a`` and ``b`` from one mosaic; :func:`masked_pixels_noise` measures ``b`` from a
file's optically black (masked) border where LibRaw exposes one; :func:`noise_profile_for` does both for a file
or a RAW-sourced :class:`~restore.image.Image`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .image import Image

__all__ = ["NoiseProfile", "estimate_noise", "masked_pixels_noise", "noise_profile_for", "estimate_sigma",
           "ISO_LEVELS"]

#: Named noise levels ``ISO -> (a, b)`` in normalised units (``var = a*x + b``; 0 = black, 1 = white): a
#: full-frame sensor with ~80 ke- full well at ISO 100 and 2.5-3 e- read noise.  Used by the noise-estimation
#: benchmark, the denoiser's training data (``data_tools/unprocess.py``) and its evaluation: one place.
ISO_LEVELS: dict[int, tuple[float, float]] = {
    800: (1e-4, 1e-7),
    3200: (4e-4, 1e-6),
    12800: (1.6e-3, 1.6e-5),
    51200: (6.4e-3, 2.5e-4),
}

#: ``b`` is kept >= ``-a * B_FLOOR_LEVEL``: the variance stays non-negative above 0.1 % of white (Foi et al. allow a
#: slightly negative ``b`` from pedestal offsets and clipping; a more negative one is clamped, ``b_clamped``).
B_FLOOR_LEVEL = 1e-3
_MAD = 1.482602218505602  # sigma = _MAD * median absolute deviation, for a Gaussian
_MAD_VAR_SE = 5.4  # var(MAD variance estimate) ~= 5.4 * sigma^4 / n (37 % efficiency of the MAD)


@dataclass(frozen=True)
class NoiseProfile:
    """A Poisson-Gaussian noise model ``var(x) = a * x + b`` in normalised raw units.

    Attributes:
        a: Photon-noise gain, normalised units (``x`` = black-subtracted raw / (white - black)); >= 0.
        b: Signal-independent variance at black, normalised units squared; may be slightly negative
            (>= ``-a * 1e-3``), see ``b_clamped``.
        source: Where the numbers come from: ``"estimated"`` (both fitted from the image),
            ``"masked-pixels+estimated"`` (``b`` from the masked border, ``a`` fitted), ``"pipeline"``
            (given in the pipeline's ``develop: {noise: ...}``).
        scale_dn: ``white - black`` in DN, for :attr:`a_dn` / :attr:`b_dn`; None when unknown.
        level_sets: Level sets (bins of local mean level) the fit used; 0 when not fitted.
        blocks: 2x2 blocks of CFA-plane pixels those level sets hold.
        level_range: Lowest and highest level-set mean used, normalised; None when not fitted.
        b_clamped: The fit wanted ``b < -a * 1e-3`` and was held there.
    """

    a: float
    b: float
    source: str = "estimated"
    scale_dn: float | None = None
    level_sets: int = 0
    blocks: int = 0
    level_range: tuple[float, float] | None = None
    b_clamped: bool = False

    def variance(self, x: np.ndarray | float) -> np.ndarray:
        """``max(a * x + b, 0)`` for levels ``x`` (any shape, normalised units), as float32 of the same shape."""
        x = np.asarray(x, dtype=np.float32)
        return np.maximum(np.float32(self.a) * x + np.float32(self.b), np.float32(0.0))

    def sigma(self, x: np.ndarray | float) -> np.ndarray:
        """Noise standard deviation ``sqrt(max(a * x + b, 0))`` at levels ``x``.

        Args:
            x: Signal level(s), any shape, normalised raw units (0 = black, 1 = white).

        Returns:
            float32 array of ``x``'s shape (0-d for a scalar), normalised units.
        """
        return np.sqrt(self.variance(x))

    @property
    def a_dn(self) -> float | None:
        """``a`` in DN (DN per electron): ``a * (white - black)``; None without ``scale_dn``."""
        return None if self.scale_dn is None else self.a * self.scale_dn

    @property
    def b_dn(self) -> float | None:
        """``b`` in DN²: ``b * (white - black)**2``; None without ``scale_dn``."""
        return None if self.scale_dn is None else self.b * self.scale_dn**2

    def summary(self) -> dict[str, Any]:
        """Plain values for JSON or a terminal: a, b (normalised and DN), sigma at 1/10/50 % of white, source."""
        g = lambda v: None if v is None else float(f"{v:.4g}")  # noqa: E731
        out: dict[str, Any] = {"a": g(self.a), "b": g(self.b)}
        if self.scale_dn is not None:
            out.update(a_dn=g(self.a_dn), b_dn2=g(self.b_dn))
        out["sigma"] = {f"{p:g}%": g(float(self.sigma(p / 100))) for p in (1, 10, 50)}
        out["source"] = self.source
        if self.level_sets:
            out["level_sets"] = self.level_sets
        if self.b_clamped:
            out["b_clamped"] = True
        return out

    def __str__(self) -> str:
        s = self.summary()
        dn = f"; a={s['a_dn']:g} DN, b={s['b_dn2']:g} DN^2" if "a_dn" in s else ""
        sig = "/".join(f"{v:.3g}" for v in s["sigma"].values())
        fit = f", {self.level_sets} level sets" if self.level_sets else ""
        clamped = ", b clamped" if self.b_clamped else ""
        return (f"a={s['a']:g}, b={s['b']:g} (normalised, 0 = black, 1 = white){dn}; "
                f"sigma at 1/10/50 % of white {sig} ({self.source}{fit}{clamped})")


# --------------------------------------------------------------------------- estimation


def _planes(mosaic: np.ndarray, cfa_pattern: str) -> list[np.ndarray]:
    """The one-colour sub-planes of a CFA mosaic: 1 (monochrome), 4 (2x2 Bayer), 36 (6x6 X-Trans)."""
    n = len(cfa_pattern)
    p = math.isqrt(n)
    if p * p != n or p not in (1, 2, 6):
        raise ValueError(f"cfa_pattern must be 1, 4 (Bayer) or 36 (X-Trans) colour letters, got {cfa_pattern!r}")
    return [mosaic[i::p, j::p] for i in range(p) for j in range(p)]


def _box(x: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k windows, 'valid' mode: shape ``(h - k + 1, w - k + 1)``."""
    c = np.zeros((x.shape[0] + 1, x.shape[1] + 1))
    np.cumsum(np.cumsum(x, 0), 1, out=c[1:, 1:])
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def _plane_blocks(plane: np.ndarray, clip: float, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per 2x2 block of one CFA plane: smoothed level, Haar diagonal detail, smoothness (all flattened).

    The detail ``D = (p00 - p01 - p10 + p11) / 2`` is the normalised first-level Haar HH coefficient: a constant
    or a linear ramp cancels and ``var(D)`` = the mean of the four pixels' noise variances.  The smoothness ``S``
    estimates the same variance from what D is orthogonal to (the local spread of the block's horizontal and
    vertical Haar details and the Laplacian of the approximation), so it is ~``var(D)`` in smooth regions and
    larger on texture and edges, and selecting on it does not bias D.  Blocks with a pixel >= ``clip`` in their
    k x k window are dropped.
    """
    h, w = (plane.shape[0] // 2) * 2, (plane.shape[1] // 2) * 2
    if h < 2 * (k + 2) or w < 2 * (k + 2):
        return None
    p = plane[:h, :w].astype(np.float64)
    p00, p01, p10, p11 = p[0::2, 0::2], p[0::2, 1::2], p[1::2, 0::2], p[1::2, 1::2]
    approx = (p00 + p01 + p10 + p11) / 4
    detail = (p00 - p01 - p10 + p11) / 2
    gx = (p00 - p01 + p10 - p11) / 2
    gy = (p00 + p01 - p10 - p11) / 2
    clipped = (np.maximum(np.maximum(p00, p01), np.maximum(p10, p11)) >= clip).astype(np.float64)
    lap = approx[:-2, 1:-1] + approx[2:, 1:-1] + approx[1:-1, :-2] + approx[1:-1, 2:] - 4 * approx[1:-1, 1:-1]
    inner = (slice(1, -1), slice(1, -1))
    approx, detail, gx, gy, clipped = approx[inner], detail[inner], gx[inner], gy[inner], clipped[inner]
    n = k * k
    spread = (_box(gx * gx, k) - _box(gx, k) ** 2 + _box(gy * gy, k) - _box(gy, k) ** 2) / 2 * n / (n - 1)
    smooth = (spread + _box(lap * lap, k) / 5) / 2  # var(lap) = 20 * var(approx) = 5 * var(pixel)
    level = _box(approx, k)
    r = k // 2
    centre = (slice(r, r + level.shape[0]), slice(r, r + level.shape[1]))
    keep = _box(clipped, k) == 0
    return level[keep], detail[centre][keep], smooth[keep]


def _level_sets(level, detail, max_sets: int, min_count: int):
    """Equal-count bins of ``level``: (mean level, MAD variance of the detail, count) per bin."""
    n = level.size
    sets = min(max_sets, n // min_count)
    if sets < 2:
        return np.empty(0), np.empty(0), np.empty(0)
    order = np.argsort(level, kind="stable")
    xs, vs, ns = [], [], []
    for idx in np.array_split(order, sets):
        d = detail[idx]
        mad = np.median(np.abs(d - np.median(d)))
        xs.append(level[idx].mean())
        vs.append((_MAD * mad) ** 2)
        ns.append(idx.size)
    return np.array(xs), np.array(vs), np.array(ns, dtype=np.float64)


def _wls(x, v, w, b_fixed: float | None) -> tuple[float, float, bool]:
    """Weighted least squares of ``v ~ a x + b`` with ``a >= 0`` and ``b >= -a * B_FLOOR_LEVEL`` (or ``b`` fixed)."""
    if b_fixed is not None:
        den = np.sum(w * x * x)
        a = float(np.sum(w * x * (v - b_fixed)) / den) if den > 0 else 0.0
        return max(a, 0.0), float(b_fixed), False
    sw, sx, sxx, sv, sxv = w.sum(), (w * x).sum(), (w * x * x).sum(), (w * v).sum(), (w * x * v).sum()
    det = sw * sxx - sx * sx
    a = (sw * sxv - sx * sv) / det if det > 0 else 0.0
    b = (sv - a * sx) / sw
    if a < 0:
        return 0.0, float(max(sv / sw, 0.0)), False
    if b < -a * B_FLOOR_LEVEL:
        t = x - B_FLOOR_LEVEL
        a = max(float((w * t * v).sum() / (w * t * t).sum()), 0.0)
        return a, -a * B_FLOOR_LEVEL, True
    return float(a), float(b), False


def _fit(x, v, n, b_fixed: float | None) -> tuple[float, float, bool, np.ndarray]:
    """Robust weighted line fit (IRLS, weights n / var^2 from the model, Huber on standardised residuals)."""
    floor = max(1e-3 * float(np.median(v)), 1e-14)
    model = np.maximum(v, floor)
    robust = np.ones_like(v)
    a = b = 0.0
    clamped = False
    for _ in range(12):
        w = n / model**2 * robust
        a, b, clamped = _wls(x, v, w, b_fixed)
        model = np.maximum(a * x + b, floor)
        r = (v - model) / (model * np.sqrt(_MAD_VAR_SE / n))
        robust = np.minimum(1.0, 2.5 / np.maximum(np.abs(r), 1e-12))
    return a, b, clamped, robust


def estimate_noise(mosaic: np.ndarray, cfa_pattern: str, *, clip: float = 0.95, b: float | None = None,
                   source: str | None = None, scale_dn: float | None = None, window: int = 5,
                   max_level_sets: int = 64, min_count: int = 300) -> NoiseProfile:
    """Fit ``var(x) = a x + b`` to one raw mosaic (Foi et al., IEEE TIP 2008, simplified).

    Method: the mosaic is split into its one-colour CFA planes (Bayer: the four half-resolution planes of the 2x2
    tile; X-Trans: the 36 planes of the 6x6 tile, every pixel of one such plane has one colour; monochrome: the
    image).  Each plane is cut into 2x2 blocks; per block the normalised Haar diagonal detail (variance = the
    noise variance, constants and ramps cancel), the local level (its approximation averaged over ``window`` x
    ``window`` blocks) and a smoothness measure that does not involve the detail.  Smooth, unclipped blocks of
    all planes (one sensor gain for every colour in raw units) are binned by level into equal-count level sets;
    each set gives a MAD variance of the detail; a weighted (n / var², from the model) Huber-robust line fit of
    variance against level gives ``a`` and ``b``; the block selection is refined twice against that fit.  Level
    sets within 3 sigma of ``clip`` are excluded.

    Args:
        mosaic: float ``(H, W)`` CFA mosaic, black-subtracted and normalised: 0 = black, 1 = white (values below 0
            kept, as the raw data holds them).  At least about 64 x 64 pixels per CFA plane.
        cfa_pattern: The repeating tile's colours, row-major: 4 letters (``"RGGB"``), 36 (X-Trans) or 1 (mono).
        clip: Level (normalised) from which pixels count as clipped.
        b: A known signal-independent variance (normalised², e.g. :func:`masked_pixels_noise`); then only
            ``a`` is fitted.
        source: The profile's ``source``; default ``"estimated"`` (``"masked-pixels+estimated"`` with ``b``).
        scale_dn: ``white - black`` in DN, carried into the profile for its DN values.
        window: Blocks per side of the local level / smoothness window.
        max_level_sets, min_count: At most this many level sets, each of at least ``min_count`` blocks.

    Returns:
        :class:`NoiseProfile`.

    Raises:
        ValueError: ``mosaic`` not 2-D, a bad ``cfa_pattern``, or too few smooth unclipped blocks to fit.
    """
    m = np.asarray(mosaic)
    if m.ndim != 2:
        raise ValueError(f"mosaic must be a 2-D (H, W) CFA array, got shape {m.shape}")
    if not 0 < clip <= 1:
        raise ValueError(f"clip must be in (0, 1], got {clip}")
    levels, details, smooths = [], [], []
    for plane in _planes(m, cfa_pattern):
        got = _plane_blocks(plane, clip, window)
        if got is not None:
            levels.append(got[0]), details.append(got[1]), smooths.append(got[2])
    if not levels:
        raise ValueError(f"mosaic {m.shape} is too small to estimate noise (needs about 64 x 64 pixels per CFA plane)")
    level, detail, smooth = (np.concatenate(v) for v in (levels, details, smooths))
    if level.size < 2 * min_count:
        raise ValueError(f"too few unclipped blocks ({level.size}) to estimate noise")
    # pass 0: per coarse level bin, the smoothest third; then select against the fitted model
    order = np.argsort(level, kind="stable")
    sel = np.zeros(level.size, bool)
    for idx in np.array_split(order, max(1, min(32, level.size // (3 * min_count)))):
        sel[idx[smooth[idx] <= np.quantile(smooth[idx], 1 / 3)]] = True
    a_fit = b_fit = 0.0
    clamped = False
    x = v = cnt = np.empty(0)
    for it in range(3):
        x, v, cnt = _level_sets(level[sel], detail[sel], max_level_sets, min_count)
        if x.size:
            ok = x + 3 * np.sqrt(v) < clip
            x, v, cnt = x[ok], v[ok], cnt[ok]
        if x.size < (1 if b is not None else 2):
            raise ValueError("too few smooth, unclipped level sets to estimate noise (a textured or clipped image)")
        a_fit, b_fit, clamped, _ = _fit(x, v, cnt, b)
        if it < 2:
            model = np.maximum(a_fit * level + b_fit, 1e-14)
            new = smooth <= 1.6 * model
            if new.sum() < 2 * min_count:
                break
            sel = new
    return NoiseProfile(
        a=a_fit, b=b_fit, source=source or ("masked-pixels+estimated" if b is not None else "estimated"),
        scale_dn=scale_dn, level_sets=int(x.size), blocks=int(cnt.sum()),
        level_range=(float(x.min()), float(x.max())), b_clamped=clamped,
    )


# --------------------------------------------------------------------------- RAW files


def masked_pixels_noise(raw) -> float | None:
    """Read-noise variance ``b`` from a RAW file's masked (optically black) border, normalised units².

    The border is what ``raw.raw_image`` (the full sensor readout) holds outside the visible area
    (``raw.sizes``: ``top_margin``, ``left_margin``, ``height``, ``width``).  Its pixels see no light: their
    spread around their own median (the black level) is the signal-independent noise.  Zero-filled padding is
    ignored; the spread is robust (MAD), divided by ``(white - mean black)**2``.

    Args:
        raw: An opened ``rawpy.RawPy`` (or an object with ``raw_image``, ``sizes``, ``white_level``,
            ``black_level_per_channel``).

    Returns:
        The variance (normalised units squared, 0 = black, 1 = white), or None when the file exposes no masked
        area (``raw_image`` is the visible area) or it holds fewer than 1000 usable pixels or no spread.
    """
    try:
        full = np.asarray(raw.raw_image)
        s = raw.sizes
    except Exception:
        return None
    if full.ndim != 2:
        return None
    top, left, h, w = int(s.top_margin), int(s.left_margin), int(s.height), int(s.width)
    mask = np.ones(full.shape, bool)
    mask[top:top + h, left:left + w] = False
    dark = full[mask].astype(np.float64)
    dark = dark[dark > 0]
    if dark.size < 1000:
        return None
    mad = float(np.median(np.abs(dark - np.median(dark))))
    span = float(raw.white_level) - float(np.mean(raw.black_level_per_channel))
    if mad <= 0 or span <= 0:
        return None
    return (_MAD * mad / span) ** 2


def _from_file(path: Path, clip: float) -> NoiseProfile:
    """Open the RAW once through the reader's own LibRaw path (same mosaic, same one-line errors)."""
    from .io.raw import _mosaic, _open

    def body(raw, p):
        image = _mosaic(raw, p)  # normalised per CFA cell: 0 = black, 1 = white
        return image, masked_pixels_noise(raw)

    image, b = _open(path, body)
    meta = image.meta
    span = float(meta.white_level - np.mean(meta.black_level))
    try:
        return estimate_noise(image.pixels[:, :, 0], meta.cfa_pattern, clip=clip, b=b, scale_dn=span)
    except ValueError as e:
        raise InputError(path, f"noise profile: {e}") from None


def noise_profile_for(source: str | Path | Image, *, clip: float = 0.95) -> NoiseProfile:
    """The noise profile of a RAW file, or of an image read from one.

    For an :class:`~restore.image.Image` whose ``meta.noise_profile`` is set (the pipeline's
    ``develop: {noise: ...}``, or an earlier call), that profile; otherwise it is estimated from the RAW file in
    ``meta.source`` and stored in ``meta.noise_profile``.  For a path, estimated from the file: ``b`` from the
    masked border when the file has one (:func:`masked_pixels_noise`, source ``"masked-pixels+estimated"``),
    else both from the image (:func:`estimate_noise`, ``"estimated"``).

    Raises:
        InputError: not a RAW file LibRaw reads, no CFA mosaic, too little smooth area to fit, or an image that
            was not read from a RAW file.
    """
    if isinstance(source, Image):
        meta = source.meta
        if meta.noise_profile is not None:
            return meta.noise_profile
        if meta.source_format != "raw" or meta.source is None:
            raise InputError(meta.source, "noise profile: the model is in raw units and needs the RAW file the image came from")
        meta.noise_profile = _from_file(Path(meta.source), clip)
        return meta.noise_profile
    return _from_file(Path(source), clip)


# --------------------------------------------------------------------------- display-referred images


def estimate_sigma(pixels: np.ndarray) -> float:
    """Noise level of a display-referred (e.g. sRGB-encoded) image, one number: the RGB denoiser's conditioning.

    The wavelet estimator of Donoho and Johnstone ("Ideal spatial adaptation by wavelet shrinkage",
    Biometrika 81(3), 1994), as ``skimage.restoration.estimate_sigma`` computes it, with the orthonormal Haar
    wavelet: the finest diagonal detail ``HH = (p00 - p01 - p10 + p11) / 2`` over non-overlapping 2x2 blocks has
    the noise's standard deviation for white noise and little image content, and ``sigma = median(|HH|) /
    0.6745`` ignores the coefficients that do carry edges.  Per channel, then averaged.

    The value is what the denoiser was trained with (``data_tools/train_denoise.py --task rgb-denoise`` computes
    it on every noisy training patch), so it is the right conditioning even where it is not the per-pixel
    standard deviation: noise that a camera's demosaicing and sharpening made spatially correlated reads lower
    than its per-pixel standard deviation, and strong fine texture reads as a little noise.  A pipeline overrides
    it with the model step's ``noise_sigma``.

    Args:
        pixels: ``(H, W)`` or ``(H, W, C)`` float, the encoded values (0..1), H and W >= 2.  Images above 16 MP
            are measured on a regular subsample of 2x2 blocks (at most 4 M blocks per channel).

    Returns:
        sigma in the pixels' units (0..1 scale), >= 0.

    Raises:
        ValueError: fewer than 2 rows or columns.
    """
    x = np.asarray(pixels)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"estimate_sigma needs an (H, W[, C]) image of at least 2x2 pixels, got shape {x.shape}")
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    blocks = (h // 2) * (w // 2)
    step = max(1, int(math.ceil(math.sqrt(blocks / 4_000_000))))  # every step-th block row and column
    sig = []
    for c in range(x.shape[2]):
        p = x[:h, :w, c]
        p00, p01 = p[0::2 * step, 0::2 * step], p[0::2 * step, 1::2 * step]
        p10, p11 = p[1::2 * step, 0::2 * step], p[1::2 * step, 1::2 * step]
        hh = (p00.astype(np.float32) - p01 - p10 + p11) * np.float32(0.5)
        sig.append(float(np.median(np.abs(hh))) / 0.6744897501960817)
    return float(np.mean(sig))
