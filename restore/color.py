"""Transfer functions, RGB primaries, exposure and the reversible HDR encoding.

References:
    * IEC 61966-2-1:1999 (sRGB) for the piecewise transfer function.
    * ITU-R BT.709 / BT.2020, SMPTE ST 2065-1 (ACES AP0), S-2014-004 (ACEScg
      AP1) for primaries; Bradford chromatic adaptation (Lam 1985) between
      white points.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np

from .image import Encoding, Image

__all__ = [
    "srgb_to_linear",
    "linear_to_srgb",
    "primaries_matrix",
    "convert",
    "apply_exposure",
    "hdr_encode",
    "hdr_decode",
    "exposure_scale",
    "ExposureEncoding",
    "PRIMARIES",
]

# (xR, yR, xG, yG, xB, yB, xW, yW)
PRIMARIES: dict[str, tuple[float, ...]] = {
    "rec709": (0.640, 0.330, 0.300, 0.600, 0.150, 0.060, 0.3127, 0.3290),
    "rec2020": (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290),
    "ap0": (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.0770, 0.32168, 0.33767),
    "ap1": (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767),
}

_BRADFORD = np.array(
    [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]], dtype=np.float64
)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB EOTF (decode): encoded values -> linear light.

    Args:
        x: float array of any shape, nominally [0, 1].  Values outside are
            extended symmetrically (sign-preserving) so the function is
            invertible on the whole real line.

    Returns:
        float32 array, same shape.
    """
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x)
    lin = np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4)
    return (np.sign(x) * lin).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """sRGB OETF (encode): linear light -> encoded values; inverse of :func:`srgb_to_linear`.

    Args:
        x: float array of any shape; linear values (1.0 = diffuse white).

    Returns:
        float32 array, same shape.  Not clipped.
    """
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x)
    enc = np.where(a <= 0.0031308, a * 12.92, 1.055 * np.power(a, 1 / 2.4) - 0.055)
    return (np.sign(x) * enc).astype(np.float32)


def _rgb_to_xyz(p: tuple[float, ...]) -> np.ndarray:
    xr, yr, xg, yg, xb, yb, xw, yw = p
    cols = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in ((xr, yr), (xg, yg), (xb, yb))]).T
    white = np.array([xw / yw, 1.0, (1 - xw - yw) / yw])
    s = np.linalg.solve(cols, white)
    return cols * s


@lru_cache(maxsize=None)
def primaries_matrix(src: str, dst: str) -> np.ndarray:
    """3x3 matrix M with ``rgb_dst = M @ rgb_src`` for linear values.

    Args:
        src, dst: keys of :data:`PRIMARIES` or ``"xyz"`` (D65-relative XYZ).

    Returns:
        float64 ``(3, 3)`` array.  Bradford adaptation is applied when the
        white points differ.

    Raises:
        ValueError: for ``"camera"`` primaries (those need the RAW's own colour
            matrix) or an unknown name.
    """
    def to_xyz_d65(name: str) -> np.ndarray:
        if name == "xyz":
            return np.eye(3)
        if name not in PRIMARIES:
            raise ValueError(f"cannot convert primaries {name!r}: known are {sorted(PRIMARIES)} and 'xyz'")
        p = PRIMARIES[name]
        m = _rgb_to_xyz(p)
        wsrc = np.array([p[6] / p[7], 1.0, (1 - p[6] - p[7]) / p[7]])
        d65 = PRIMARIES["rec709"]
        wdst = np.array([d65[6] / d65[7], 1.0, (1 - d65[6] - d65[7]) / d65[7]])
        if np.allclose(wsrc, wdst, atol=1e-6):
            return m
        ls, ld = _BRADFORD @ wsrc, _BRADFORD @ wdst
        adapt = np.linalg.inv(_BRADFORD) @ np.diag(ld / ls) @ _BRADFORD
        return adapt @ m

    if src == dst:
        return np.eye(3)
    return np.linalg.inv(to_xyz_d65(dst)) @ to_xyz_d65(src)


def convert(image: Image, target: Encoding) -> Image:
    """Convert an :class:`Image` to another colour encoding.

    Linear light is the hub: decode the source transfer, change primaries,
    encode the target transfer.  Alpha is left untouched.  Changing
    ``referred`` alone does not touch pixels: going from scene- to
    display-referred needs a tone-mapping stage, which this function will not
    do silently.

    Raises:
        ValueError: for scene -> display conversion of an image with values
            above 1 (tone map first), or primaries that cannot be converted.
    """
    src = image.encoding
    if src == target:
        return image
    px = image.pixels
    color = px[..., :3] if px.shape[2] >= 3 else px
    if src.referred == "scene" and target.referred == "display" and float(np.nanmax(color, initial=0.0)) > 1.0 + 1e-6:
        raise ValueError(
            f"{image.meta.source or 'image'}: scene-referred values above 1 (max {float(color.max()):.3g}) "
            "cannot become display-referred without a tone-mapping step"
        )
    lin = srgb_to_linear(color) if src.transfer == "srgb" else color
    if src.primaries != target.primaries:
        if color.shape[2] != 3:
            raise ValueError("primaries conversion needs 3 colour channels")
        m = primaries_matrix(src.primaries, target.primaries).astype(np.float32)
        lin = lin @ m.T
    out = linear_to_srgb(lin) if target.transfer == "srgb" else lin
    if px.shape[2] == 4:
        out = np.concatenate([out, px[..., 3:4]], axis=2)
    return replace(image, pixels=np.ascontiguousarray(out, dtype=np.float32), encoding=target)


def apply_exposure(image: Image, ev: float) -> Image:
    """Scale linear light by ``2**ev`` (exposure compensation in stops).

    Raises:
        ValueError: if the image is not linear (exposure is only meaningful on
            linear light; convert first).
    """
    if image.encoding.transfer != "linear":
        raise ValueError("exposure needs linear pixels; convert the image to a linear encoding first")
    px = image.pixels.copy()
    px[..., : min(3, px.shape[2])] *= np.float32(2.0**ev)
    return replace(image, pixels=px)


# The reversible encoding used around models trained on sRGB [0, 1] images when
# the input is linear HDR (values above 1): a log curve normalised to the
# image's peak,   y = ln(1 + x/k) / ln(1 + peak/k),  k = 0.05,
# inverse  x = k * (exp(y * ln(1 + peak/k)) - 1).  It maps [0, peak] onto
# [0, 1]; for peak = 1 it is close to the sRGB curve (0.18 -> 0.50, sRGB 0.46);
# a model error dy becomes a *relative* error of about dy * ln(1 + peak/k) in
# radiance (1.5 % per 0.002 at peak 100), and overshoot is clipped at the peak.
# Negative (out-of-gamut) values are clipped to 0.
HDR_LOG_K = 0.05


def hdr_encode(x: np.ndarray, peak: float) -> np.ndarray:
    """Map linear radiance in [0, peak] onto [0, 1] with a peak-normalised log curve (reversible).

    Args:
        x: float array of linear values; negatives are clipped to 0.
        peak: The largest value to represent (e.g. the image maximum), > 0.

    Returns:
        float32 array in [0, 1], same shape.

    Raises:
        ValueError: if ``peak`` is not positive.
    """
    if not peak > 0:
        raise ValueError(f"peak must be positive, got {peak}")
    x = np.maximum(np.asarray(x, dtype=np.float32), 0.0)
    return (np.log1p(x / HDR_LOG_K) / np.log1p(peak / HDR_LOG_K)).astype(np.float32)


def hdr_decode(y: np.ndarray, peak: float) -> np.ndarray:
    """Inverse of :func:`hdr_encode`; ``y`` is clipped to [0, 1] first, so results lie in [0, peak]."""
    y = np.clip(np.asarray(y, dtype=np.float32), 0.0, 1.0)
    return (HDR_LOG_K * np.expm1(y * np.log1p(peak / HDR_LOG_K))).astype(np.float32)


#: Share of pixels (by their largest channel) an HDR image's display exposure keeps below white.
EXPOSURE_PERCENTILE = 99.5


def exposure_scale(x: np.ndarray, percentile: float = EXPOSURE_PERCENTILE) -> float:
    """The linear value that a display exposure of ``x`` maps to white: the ``percentile`` of the pixels' largest
    colour channel, at least 1 (an image that fits [0, 1] is not darkened).

    Args:
        x: Linear float ``(H, W, C)`` (C >= 1), scene-referred, any range.
        percentile: In (0, 100].

    Returns:
        The scale ``p >= 1``.

    Raises:
        ValueError: ``x`` is not ``(H, W, C)`` with at least one pixel.
    """
    x = np.asarray(x)
    if x.ndim != 3 or x.size == 0:
        raise ValueError(f"exposure needs an (H, W, C) image with pixels, got shape {x.shape}")
    m = np.max(x[..., : min(3, x.shape[-1])], axis=-1)
    return max(1.0, float(np.percentile(m, percentile)))


class ExposureEncoding:
    """Linear HDR seen by a model trained on sRGB photos as a photographer would expose it (``hdr: exposure``).

    The image is divided by :func:`exposure_scale` (its brightest 0.5 % of pixels then reach or pass white), clipped
    to [0, 1] and sRGB-encoded (IEC 61966-2-1): the encoding such models were trained on, rather than a log curve
    they never saw.  :meth:`decode` applies the model's change back in radiance: as a linear residual times the
    scale for a channel below white, as a ratio for a channel clipped at white (a highlight the model leaves white
    keeps its radiance; a bright rain streak the model darkens is darkened in proportion).  The two agree at white,
    so the mapping is continuous.  Reversible where the model changes nothing: ``decode(encoded) == x``.

    Args:
        x: Linear float32 ``(H, W, 3)``, values >= 0 (negatives are treated as 0 by the encoding and kept by
            :meth:`decode` where the model changes nothing).
        percentile: As :func:`exposure_scale`.

    Attributes:
        scale: ``p``, the linear value mapped to white.
        encoded: float32 ``(H, W, 3)`` in [0, 1], the model's input.

    Raises:
        ValueError: as :func:`exposure_scale`.
    """

    def __init__(self, x: np.ndarray, percentile: float = EXPOSURE_PERCENTILE):
        self.x = np.asarray(x, dtype=np.float32)
        self.scale = exposure_scale(self.x, percentile)
        lin = np.clip(self.x / np.float32(self.scale), 0.0, 1.0)
        self.encoded = linear_to_srgb(lin).astype(np.float32)

    def decode(self, y: np.ndarray) -> np.ndarray:
        """Linear float32 ``(H, W, 3)``, >= 0: per channel ``x + scale * (lin(y) - lin(encoded))`` below white,
        ``x * lin(y)`` where ``x >= scale``; ``x`` itself where ``y`` equals the encoding.  ``y`` (the model's
        output in the encoding) is clipped to [0, 1] first."""
        ly = srgb_to_linear(np.clip(np.asarray(y, dtype=np.float32), 0.0, 1.0))
        d = ly - srgb_to_linear(self.encoded)
        clipped = self.x >= np.float32(self.scale)
        out = np.where(clipped, self.x * ly, self.x + np.float32(self.scale) * d)
        return np.where(y == self.encoded, self.x, np.maximum(out, 0.0)).astype(np.float32)
