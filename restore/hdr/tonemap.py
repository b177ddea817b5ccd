"""Tone mapping: linear scene-referred radiance -> linear display-referred [0, 1].

Operators (:data:`OPERATORS`):

``"reinhard"``
    Reinhard, Stark, Shirley & Ferwerda 2002, "Photographic Tone Reproduction
    for Digital Images" (SIGGRAPH), global operator with white point (eq. 1-4).
``"reinhard-local"``
    The same paper's local "dodging and burning" operator (eq. 5-9).
``"drago"``
    Drago, Myszkowski, Annen & Chiba 2003, "Adaptive Logarithmic Mapping for
    Displaying High Contrast Scenes" -- OpenCV's ``TonemapDrago``.
``"mantiuk"``
    Mantiuk, Myszkowski & Seidel 2006, "A Perceptual Framework for Contrast
    Processing of High Dynamic Range Images" -- OpenCV's ``TonemapMantiuk``.
``"aces"``
    Narkowicz 2015, "ACES Filmic Tone Mapping Curve": a rational fit of the
    ACES RRT+ODT tone scale, applied per channel.  It is an approximation, not
    the ACES pipeline (no ACES2065/AP1 conversion, no RRT glow/red-modifier,
    no ODT gamut mapping).

The result is *linear* display light; the caller applies the sRGB OETF
(:func:`restore.color.linear_to_srgb`), so the OpenCV operators run with
``gamma=1``.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

__all__ = ["OPERATORS", "luminance", "tonemap"]

OPERATORS: tuple[str, ...] = ("reinhard", "reinhard-local", "drago", "mantiuk", "aces")

#: Rec. 709 / sRGB relative luminance weights (linear R, G, B).
REC709_LUMA = (0.2126, 0.7152, 0.0722)

# Accepted parameters and their defaults, per operator.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "reinhard": {"key": 0.18, "white": None, "saturation": 1.0},
    "reinhard-local": {"key": 0.18, "phi": 8.0, "eps": 0.05, "saturation": 1.0},
    "drago": {"saturation": 1.0, "bias": 0.85},
    "mantiuk": {"scale": 0.7, "saturation": 1.0},
    "aces": {"exposure": 0.0},
}

# Log-average floor, relative to the brightest pixel's luminance (Reinhard's
# delta in eq. 1).  Relative, so that scaling the scene scales the floor and the
# operators stay exactly exposure-invariant; 1e-6 = 120 dB below the peak.
_LOG_FLOOR = 1e-6

# Reinhard 2002 local operator: 8 scales s_i = 1.6**i pixels.
_N_SCALES = 8
_SCALE_RATIO = 1.6


def _check_rgb(rgb: np.ndarray, name: str = "rgb") -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be an (H, W, 3) RGB array, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be a real-valued numeric array, got dtype {a.dtype}")
    return a


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 relative luminance Y = 0.2126 R + 0.7152 G + 0.0722 B.

    Args:
        rgb: ``(H, W, 3)`` linear Rec. 709 / sRGB-primaries RGB (any real
            dtype, any units; the result has the same units).  Not clipped.

    Returns:
        ``(H, W)`` float32 luminance.

    Raises:
        ValueError: ``rgb`` is not ``(H, W, 3)``.
    """
    a = _check_rgb(rgb)
    w = np.asarray(REC709_LUMA, dtype=np.float32)
    return np.ascontiguousarray(a.astype(np.float32, copy=False) @ w, dtype=np.float32)


def _sanitize(rgb: np.ndarray) -> np.ndarray:
    """float32 copy with NaN and -inf -> 0, +inf -> the largest finite value, negatives -> 0."""
    with np.errstate(over="ignore"):  # float64 beyond float32 range -> inf -> handled below
        x = np.array(rgb, dtype=np.float32, copy=True)
    finite = np.isfinite(x)
    if not finite.all():
        peak = float(x[finite].max()) if finite.any() else 0.0
        x[np.isposinf(x)] = peak if peak > 0 else 1.0
        x[~np.isfinite(x)] = 0.0
    np.maximum(x, 0.0, out=x)
    return x


def _param(operator: str, name: str, value: Any, *, positive: bool = False, nonneg: bool = False,
           upper: float | None = None, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"tonemap {operator!r}: {name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"tonemap {operator!r}: {name} must be finite, got {value!r}")
    if positive and v <= 0:
        raise ValueError(f"tonemap {operator!r}: {name} must be > 0, got {value!r}")
    if nonneg and v < 0:
        raise ValueError(f"tonemap {operator!r}: {name} must be >= 0, got {value!r}")
    if upper is not None and v > upper:
        raise ValueError(f"tonemap {operator!r}: {name} must be <= {upper}, got {value!r}")
    return v


def _log_average(lum: np.ndarray) -> float:
    """Reinhard eq. 1: exp(mean(log(delta + L_w))), delta = 1e-6 * max(L_w)."""
    delta = _LOG_FLOOR * float(lum.max())
    return float(np.exp(np.mean(np.log(lum.astype(np.float64) + delta))))


def _apply_luminance(rgb: np.ndarray, lum: np.ndarray, lum_d: np.ndarray, saturation: float) -> np.ndarray:
    """out = (rgb / L_w) ** s * L_d, 0 where L_w = 0, clipped to [0, 1]."""
    ratio = np.divide(rgb, lum[..., None], out=np.zeros_like(rgb), where=lum[..., None] > 0)
    if saturation != 1.0:
        ratio = np.power(ratio, saturation)
    out = ratio * lum_d[..., None]
    return np.clip(np.nan_to_num(out, nan=0.0, posinf=1.0), 0.0, 1.0).astype(np.float32)


def _reinhard(x: np.ndarray, key: float, white: float | None, saturation: float) -> np.ndarray:
    peak = float(x.max())
    if peak <= 0:
        return np.zeros_like(x)
    x = x / np.float32(peak)  # exact scale invariance makes this free; no float32 overflow
    lw = luminance(x)
    lum = (key / _log_average(lw)) * lw.astype(np.float64)  # eq. 2
    l_white = float(lum.max()) if white is None else white
    ld = lum * (1.0 + lum / (l_white * l_white)) / (1.0 + lum)  # eq. 4
    return _apply_luminance(x, lw, ld.astype(np.float32), saturation)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def _reinhard_local(x: np.ndarray, key: float, phi: float, eps: float, saturation: float) -> np.ndarray:
    peak = float(x.max())
    if peak <= 0:
        return np.zeros_like(x)
    x = x / np.float32(peak)  # exact scale invariance makes this free; no float32 overflow
    lw = luminance(x)
    lum = ((key / _log_average(lw)) * lw.astype(np.float64)).astype(np.float32)
    # Paper eq. 5-6: R_i(x, y, s) = exp(-(x^2 + y^2) / (alpha_i s)^2) / (pi (alpha_i s)^2), i.e. a
    # Gaussian with sigma_i = alpha_i * s / sqrt(2); alpha_1 = 1 / (2 sqrt 2) -> sigma_1 = s / 4,
    # alpha_2 = 1.6 alpha_1 -> sigma_2 = 0.4 s.  With s_i = 1.6**i the surround at s_i equals the
    # centre at s_(i+1), so 9 blurs give V1 and V2 for all 8 scales.
    # Scan from the smallest scale, keeping three blurs alive (centre at s_(i-1), s_i, s_(i+1)).
    v1_sel = np.empty_like(lum)
    decided = np.zeros(lum.shape, dtype=bool)
    prev = cur = _blur(lum, 1.0 / 4.0)
    for i in range(_N_SCALES):
        s = _SCALE_RATIO**i
        nxt = _blur(lum, _SCALE_RATIO ** (i + 1) / 4.0)
        v = (cur - nxt) / ((2.0**phi) * key / (s * s) + cur)  # eq. 7: V1 = cur, V2 = nxt
        # eq. 8: s_m is the largest scale with |V| < eps, scanning from the smallest scale: the
        # first scale where |V| >= eps ends the scan and the previous one is taken (scale 0 if
        # already the first exceeds).
        hit = (np.abs(v) >= eps) & ~decided
        v1_sel[hit] = prev[hit]
        decided |= hit
        prev, cur = cur, nxt
    v1_sel[~decided] = prev[~decided]  # never exceeded: the largest scale, s_7
    ld = lum / (1.0 + v1_sel)  # eq. 9
    return _apply_luminance(x, lw, ld, saturation)


def _aces(x: np.ndarray, exposure: float) -> np.ndarray:
    # The curve is flat (2.51 / 2.43 > 1, clipped) far above 1: capping avoids inf / inf.
    v = np.minimum(x.astype(np.float64) * (2.0**exposure), 1e6)
    y = (v * (2.51 * v + 0.03)) / (v * (2.43 * v + 0.59) + 0.14)
    return np.clip(np.nan_to_num(y, nan=0.0, posinf=1.0), 0.0, 1.0).astype(np.float32)


# OpenCV's photo module computes grey with COLOR_RGB2GRAY (Rec. 601 weights).
_CV_GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _opencv(op: cv2.Tonemap, x: np.ndarray, saturation: float) -> np.ndarray:
    """Run an OpenCV tone mapper (gamma = 1) and repair its degenerate cases.

    OpenCV first min-max normalises the whole image, then divides every channel
    by the pixel's grey value: pixels whose three channels all equal the image
    minimum get grey 0 and become NaN (0/0), and the NaN corrupts the min-max
    normalisation OpenCV ends with (the output no longer spans [0, 1]).  Such
    pixels get their green raised by one float32 step (1e-30 at 0) so OpenCV
    sees a grey > 0; afterwards they are set to the neutral value OpenCV gives
    a grey pixel (exact, since OpenCV's last step is affine with gamma 1), and
    that final min-max normalisation is redone over the finite values (any NaN
    left becomes 0).  Images smaller than 2 x 2 are edge-padded for the call.
    An image without luminance contrast (Mantiuk's solver cannot run) is
    returned scaled to a maximum of 1.
    """
    h, w = x.shape[:2]
    peak = float(x.max())
    if peak <= 0:
        return np.zeros_like(x)
    x = np.ascontiguousarray(x / peak, dtype=np.float32)
    # Mantiuk's pyramid needs at least 2 x 2 pixels: pad by replication, crop after.
    ph, pw = max(0, 2 - h), max(0, 2 - w)
    if ph or pw:
        x = np.ascontiguousarray(np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="edge"))
    lo, hi = float(x.min()), float(x.max())
    flat = np.all(x == lo, axis=-1)
    fix = bool(flat.any()) and hi > lo
    if fix:
        # One float32 step above the minimum (no other pixel lies in between), or 1e-30 for 0.
        x[flat, 1] = np.nextafter(np.float32(lo), np.float32(1.0)) if lo > 1e-30 else np.float32(1e-30)
    try:
        y = op.process(x)
    except cv2.error as e:
        # Mantiuk's conjugate-gradient solver asserts on an image without any luminance
        # contrast (zero right-hand side): nothing to compress, return the input scaled to 1.
        if "dprod" not in str(e):
            raise
        return np.clip(x[:h, :w] / float(x.max()), 0.0, 1.0).astype(np.float32)
    if fix:
        # OpenCV made these (0, k * c * L_d, 0) with c = (1 / 0.587) ** saturation (their grey
        # is 0.587 * bump), k a global factor, then applied the affine min-max map A; a neutral
        # pixel would be k * L_d in every channel: A(k L_d) = A(0) + (A(k c L_d) - A(0)) / c.
        c = (1.0 / float(_CV_GRAY[1])) ** saturation
        yr, yg = y[flat, 0], y[flat, 1]
        y[flat] = (yr + (yg - yr) / c)[:, None]
    y = y[:h, :w]
    finite = np.isfinite(y)
    if finite.any():
        ylo, yhi = float(y[finite].min()), float(y[finite].max())
        if yhi - ylo > 1e-12:
            y = (y - ylo) / (yhi - ylo)
    return np.clip(np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0).astype(np.float32)


def tonemap(rgb: np.ndarray, operator: str, **params: Any) -> np.ndarray:
    """Tone map linear HDR radiance to linear display values in [0, 1].

    Args:
        rgb: ``(H, W, 3)`` linear scene-referred RGB radiance (Rec. 709
            primaries), any float or integer dtype, arbitrary units (values
            may be far above 1).  Negatives become 0; NaN and -inf become 0;
            +inf becomes the largest finite value of the image.
        operator: One of :data:`OPERATORS`:

            ``"reinhard"`` -- Reinhard et al. 2002, global (eq. 1-4).  The
            luminance L_w is scaled by ``key`` / its log-average (``key``,
            default 0.18, > 0; log floor delta = 1e-6 of the peak), then
            L_d = L (1 + L / L_white^2) / (1 + L) with L_white = ``white``
            (in scaled-luminance units, > 0; default None = the largest
            scaled luminance, which maps to exactly 1).
            Colour: out = (rgb / L_w) ** ``saturation`` * L_d (``saturation``
            >= 0, default 1 = hue and saturation kept), clipped per channel.
            Exposure-invariant: scaling the input leaves the output unchanged.

            ``"reinhard-local"`` -- Reinhard et al. 2002, local dodging and
            burning (eq. 5-9).  Key scaling as above; centre/surround
            Gaussians V1, V2 at scales s_i = 1.6**i pixels (i = 0..7) with the
            paper's alpha_1 = 1/(2 sqrt 2), alpha_2 = 1.6 alpha_1, i.e. sigma
            = s/4 and 0.4 s pixels (``cv2.GaussianBlur``, reflected border);
            V = (V1 - V2) / (2**``phi`` * ``key`` / s**2 + V1); per pixel the
            largest scale before |V| first reaches ``eps`` is used and L_d =
            L / (1 + V1).  ``phi`` (default 8, > 0), ``eps`` (default 0.05,
            > 0), ``key``, ``saturation`` as above.  Very small bright spots
            can exceed 1 and are clipped.

            ``"drago"`` -- Drago et al. 2003 adaptive logarithmic mapping,
            ``cv2.createTonemapDrago(gamma=1, saturation, bias)``;
            ``saturation`` (default 1, >= 0), ``bias`` (default 0.85, in (0, 1]).

            ``"mantiuk"`` -- Mantiuk et al. 2006 contrast-domain mapping,
            ``cv2.createTonemapMantiuk(gamma=1, scale, saturation)``;
            ``scale`` (contrast scale factor, default 0.7, > 0),
            ``saturation`` (default 1, >= 0).

            Drago and Mantiuk follow OpenCV, which min-max normalises the
            input first (the darkest value becomes black) and the output last
            (the output spans [0, 1]), and floors the normalised grey at 1e-4
            before taking logs (Mantiuk flattens detail more than 80 dB below
            the peak); see :func:`_opencv` for how their NaN cases are handled.

            ``"aces"`` -- Narkowicz 2015 fit of the ACES filmic tone scale,
            f(x) = x (2.51 x + 0.03) / (x (2.43 x + 0.59) + 0.14), per channel
            on rgb * 2**``exposure`` (EV, default 0, within [-64, 64]),
            clipped to [0, 1].  This is the Narkowicz approximation of the
            ACES RRT+ODT, NOT the full ACES pipeline (no AP0/AP1 conversion,
            no gamut mapping).  A fixed curve: not key-normalised, so set
            ``exposure`` for the scene.
        **params: Operator parameters as listed; unknown names are an error.

    Returns:
        ``(H, W, 3)`` float32 linear display-referred values in [0, 1]
        (apply the sRGB OETF to display).  An all-black input gives zeros.

    Raises:
        ValueError: unknown operator or parameter, bad parameter value, or
            ``rgb`` not ``(H, W, 3)``.
    """
    if not isinstance(operator, str) or operator not in _DEFAULTS:
        raise ValueError(f"unknown tone-mapping operator {operator!r}; known operators: {', '.join(OPERATORS)}")
    defaults = _DEFAULTS[operator]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"tonemap {operator!r}: unknown parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(defaults) or '(none)'}"
        )
    p = {**defaults, **params}
    x = _sanitize(_check_rgb(rgb))

    if operator == "reinhard":
        return _reinhard(
            x,
            key=_param(operator, "key", p["key"], positive=True),
            white=_param(operator, "white", p["white"], positive=True, allow_none=True),
            saturation=_param(operator, "saturation", p["saturation"], nonneg=True),
        )
    if operator == "reinhard-local":
        return _reinhard_local(
            x,
            key=_param(operator, "key", p["key"], positive=True),
            phi=_param(operator, "phi", p["phi"], positive=True),
            eps=_param(operator, "eps", p["eps"], positive=True),
            saturation=_param(operator, "saturation", p["saturation"], nonneg=True),
        )
    if operator == "drago":
        sat = _param(operator, "saturation", p["saturation"], nonneg=True)
        bias = _param(operator, "bias", p["bias"], positive=True, upper=1.0)
        return _opencv(cv2.createTonemapDrago(gamma=1.0, saturation=sat, bias=bias), x, sat)
    if operator == "mantiuk":
        scale = _param(operator, "scale", p["scale"], positive=True)
        sat = _param(operator, "saturation", p["saturation"], nonneg=True)
        return _opencv(cv2.createTonemapMantiuk(gamma=1.0, scale=scale, saturation=sat), x, sat)
    # aces
    exposure = _param(operator, "exposure", p["exposure"])
    if abs(exposure) > 64:
        raise ValueError(f"tonemap 'aces': exposure must be within [-64, 64] EV, got {exposure!r}")
    return _aces(x, exposure=exposure)
