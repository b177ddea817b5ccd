"""Synthetic RAW training data from sRGB images: "unprocessing" (issue 19, the data side of the RAW denoiser).

Brooks, Mildenhall, Xue, Chen, Sharlet, Barron, "Unprocessing Images for Learned Raw Denoising", CVPR 2019
(Sec. 3; constants as in the authors' ``unprocessing/unprocess.py`` and ``process.py`` in
google-research/google-research).  An 8-bit sRGB image is taken back, step by step, through an approximate
camera pipeline to a linear Bayer mosaic; noise is then added in raw space::

    sRGB [0, 1] --inverse smoothstep--> --x ** 2.2--> linear RGB --rgb->cam CCM--> camera RGB
        --inverse (WB x brightening) gains, highlights kept--> --clip [0, 1]--> --mosaic--> (H, W) raw [0, 1]

:func:`process` runs the pipeline forwards (white balance, bilinear demosaic, cam->rgb CCM, gamma 1/2.2,
smoothstep), for "PSNR after development".  Unlike the official ``process.py`` it re-applies the brightening
gain ``rgb_gain`` so that ``process(unprocess(x)) ~= x`` (the official one returns the image darkened by it).

Units: raw values are the black-subtracted signal normalised to white, 0 = black, 1 = white, as in
:mod:`restore.noise`; the noise model is that module's ``var(x) = a * x + b`` (the paper's ``shot_noise`` = ``a``,
``read_noise`` = ``b``, a variance: ``variance = x * shot_noise + read_noise``).  Everything is float32 numpy;
all randomness comes from the ``numpy.random.Generator`` passed in.

Packed layout: ``(4, H/2, W/2)`` planes in the order R, G1, G2, B for every Bayer phase, G1 being the green in
the red pixel's row, G2 the green in the blue pixel's row (the paper's ``red, green_red, green_blue, blue``).
"""

from __future__ import annotations


import numpy as np

__all__ = ["BAYER_PATTERNS", "XYZ_TO_CAMS", "random_ccm", "random_gains", "unprocess", "process", "mosaic",
           "pack_bayer", "unpack_bayer", "demosaic_bilinear", "add_noise", "sample_noise_level", "iso_levels",
           "sigma_map"]

BAYER_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")

#: XYZ -> camera matrices of four cameras (the paper's set), mixed by :func:`random_ccm`.
XYZ_TO_CAMS = np.array([
    [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
    [[0.4913, -0.0541, -0.0202], [-0.6130, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
    [[0.8380, -0.2630, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
    [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.0970, 0.1581, 0.5181]],
])
#: linear sRGB (D65) -> XYZ.
RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
GAMMA = 2.2
EPS = 1e-8  # gamma floor, as in the paper's code
HIGHLIGHT_INFLECTION = 0.9  # linear grey level from which the inverse gains fade to 1 (saturated stays saturated)
#: log(shot) ~ U[log 1e-4, log 0.012]; log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26)  (paper Sec. 3, Fig. 3).
SHOT_RANGE = (1e-4, 0.012)
READ_SLOPE, READ_OFFSET, READ_STD = 2.18, 1.20, 0.26

# Position (row, col) in the 2x2 tile of R, G1 (red's row), G2 (blue's row), B per pattern.
_OFFSETS = {
    "RGGB": ((0, 0), (0, 1), (1, 0), (1, 1)),
    "GRBG": ((0, 1), (0, 0), (1, 1), (1, 0)),
    "GBRG": ((1, 0), (1, 1), (0, 0), (0, 1)),
    "BGGR": ((1, 1), (1, 0), (0, 1), (0, 0)),
}
_PLANE_CHANNEL = (0, 1, 1, 2)  # RGB channel of R, G1, G2, B


def _pattern(p: str) -> str:
    p = str(p).upper()
    if p not in _OFFSETS:
        raise ValueError(f"cfa_pattern must be one of {BAYER_PATTERNS}, got {p!r}")
    return p


def _even_2d(m: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(m)
    if m.ndim != 2 or m.shape[0] % 2 or m.shape[1] % 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array with even H and W, got shape {m.shape}")
    return m


# --------------------------------------------------------------------------- random camera


def random_ccm(rng: np.random.Generator) -> np.ndarray:
    """A random rgb -> camera colour correction matrix, float32 ``(3, 3)`` (camera = ccm @ rgb).

    A convex combination (uniform random weights) of :data:`XYZ_TO_CAMS`, times sRGB -> XYZ, each row
    normalised to sum 1 (grey stays grey: white balance is handled by the gains).
    """
    w = rng.uniform(1e-8, 1e8, size=(len(XYZ_TO_CAMS), 1, 1))
    xyz2cam = (XYZ_TO_CAMS * w).sum(0) / w.sum()
    rgb2cam = xyz2cam @ RGB_TO_XYZ
    return (rgb2cam / rgb2cam.sum(axis=1, keepdims=True)).astype(np.float32)


def random_gains(rng: np.random.Generator) -> tuple[float, float, float]:
    """``(rgb_gain, red_gain, blue_gain)``: brightening ``1 / N(0.8, 0.1)`` (the normal held within 4 sigma),
    white-balance gains ``U[1.9, 2.4]`` (red) and ``U[1.5, 1.9]`` (blue), as in the paper."""
    rgb_gain = 1.0 / float(np.clip(rng.normal(0.8, 0.1), 0.4, 1.2))
    return rgb_gain, float(rng.uniform(1.9, 2.4)), float(rng.uniform(1.5, 1.9))


# --------------------------------------------------------------------------- Bayer layout


def mosaic(rgb: np.ndarray, cfa_pattern: str = "RGGB") -> np.ndarray:
    """Sample an ``(H, W, 3)`` image (H, W even) through a Bayer CFA: ``(H, W)``, same dtype.

    The four phases are the RGGB mosaic of the image cropped by one row and/or column, i.e. what the paper's
    crops/flips give, sampled here directly so no border is lost.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB, got shape {rgb.shape}")
    if rgb.shape[0] % 2 or rgb.shape[1] % 2:
        raise ValueError(f"rgb needs even H and W for a 2x2 Bayer tile, got shape {rgb.shape}")
    out = np.empty(rgb.shape[:2], rgb.dtype)
    for (i, j), c in zip(_OFFSETS[_pattern(cfa_pattern)], _PLANE_CHANNEL):
        out[i::2, j::2] = rgb[i::2, j::2, c]
    return out


def pack_bayer(m: np.ndarray, cfa_pattern: str) -> np.ndarray:
    """``(H, W)`` Bayer mosaic (H, W even) -> ``(4, H/2, W/2)`` planes R, G1, G2, B (same dtype, a copy)."""
    m = _even_2d(m, "mosaic")
    return np.stack([m[i::2, j::2] for i, j in _OFFSETS[_pattern(cfa_pattern)]])


def unpack_bayer(packed: np.ndarray, cfa_pattern: str) -> np.ndarray:
    """Exact inverse of :func:`pack_bayer`: ``(4, h, w)`` R, G1, G2, B -> ``(2h, 2w)`` mosaic (same dtype)."""
    packed = np.asarray(packed)
    if packed.ndim != 3 or packed.shape[0] != 4:
        raise ValueError(f"packed must be (4, h, w), got shape {packed.shape}")
    out = np.empty((2 * packed.shape[1], 2 * packed.shape[2]), packed.dtype)
    for (i, j), plane in zip(_OFFSETS[_pattern(cfa_pattern)], packed):
        out[i::2, j::2] = plane
    return out


def _conv3(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    p = np.pad(x, 1)
    h, w = x.shape
    return sum(k[i, j] * p[i:i + h, j:j + w] for i in range(3) for j in range(3) if k[i, j])


_K_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 4
_K_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], np.float32) / 4


def demosaic_bilinear(m: np.ndarray, cfa_pattern: str) -> np.ndarray:
    """Bilinear demosaic: ``(H, W)`` mosaic -> float32 ``(H, W, 3)``.

    Normalised convolution (sum of the known neighbours over their weights), so the image border uses the
    neighbours it has; measured values are kept exactly.
    """
    m = _even_2d(m, "mosaic").astype(np.float32)
    out = np.empty(m.shape + (3,), np.float32)
    for c, k in ((0, _K_RB), (1, _K_G), (2, _K_RB)):
        mask = np.zeros(m.shape, np.float32)
        for (i, j), pc in zip(_OFFSETS[_pattern(cfa_pattern)], _PLANE_CHANNEL):
            if pc == c:
                mask[i::2, j::2] = 1
        out[..., c] = _conv3(m * mask, k) / _conv3(mask, k)
    return out


# --------------------------------------------------------------------------- the pipeline


def unprocess(rgb: np.ndarray, rng: np.random.Generator, cfa_pattern: str | None = "RGGB"
              ) -> tuple[np.ndarray, dict]:
    """An sRGB image -> a realistic clean linear raw mosaic and the random camera that made it (Brooks et al.).

    Args:
        rgb: float ``(H, W, 3)`` sRGB in [0, 1] (values outside are clipped), H and W even.
        rng: Source of the random CCM and gains (and of the pattern when ``cfa_pattern`` is None).
        cfa_pattern: One of :data:`BAYER_PATTERNS`; None draws one uniformly.

    Returns:
        ``(mosaic, meta)``: float32 ``(H, W)`` linear raw in [0, 1] (0 = black, 1 = white), and a dict with
        ``ccm`` (float32 ``(3, 3)``, camera <- linear rgb), ``rgb_gain``, ``red_gain``, ``blue_gain`` (floats)
        and ``cfa_pattern`` (str): everything :func:`process` needs.
    """
    rgb = np.asarray(rgb, np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB, got shape {rgb.shape}")
    pattern = BAYER_PATTERNS[int(rng.integers(4))] if cfa_pattern is None else _pattern(cfa_pattern)
    ccm = random_ccm(rng)
    rgb_gain, red_gain, blue_gain = random_gains(rng)
    x = np.clip(rgb, 0.0, 1.0)
    x = 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)  # inverse smoothstep
    x = np.maximum(x, EPS) ** GAMMA  # inverse gamma
    x = x @ ccm.T  # rgb -> camera
    gains = np.array([1.0 / red_gain, 1.0, 1.0 / blue_gain], np.float32) / np.float32(rgb_gain)
    grey = x.mean(axis=-1, keepdims=True)  # highlight-preserving gain inversion
    fade = (np.maximum(grey - HIGHLIGHT_INFLECTION, 0.0) / (1.0 - HIGHLIGHT_INFLECTION)) ** 2
    x = x * np.maximum(fade + (1.0 - fade) * gains, gains)
    x = np.clip(x, 0.0, 1.0).astype(np.float32)
    meta = {"ccm": ccm, "rgb_gain": rgb_gain, "red_gain": red_gain, "blue_gain": blue_gain, "cfa_pattern": pattern}
    return mosaic(x, pattern), meta


def process(raw: np.ndarray, meta: dict) -> np.ndarray:
    """Develop a linear raw mosaic back to sRGB: the forward pipeline :func:`unprocess` inverts.

    White balance (``red_gain``, 1, 1, ``blue_gain``) times ``rgb_gain``, clip [0, 1], bilinear demosaic,
    camera -> rgb (``inv(meta['ccm'])``), clip [0, 1], gamma ``1 / 2.2``, smoothstep ``3x² - 2x³``.

    Args:
        raw: float ``(H, W)`` mosaic in ``meta['cfa_pattern']``, or ``(4, H/2, W/2)`` packed R, G1, G2, B.
        meta: As returned by :func:`unprocess`.

    Returns:
        float32 ``(H, W, 3)`` sRGB in [0, 1].  Highlights that :func:`unprocess` kept from dimming come back
        clipped to white, as in a camera.
    """
    raw = np.asarray(raw, np.float32)
    pattern = _pattern(meta["cfa_pattern"])
    packed = raw if raw.ndim == 3 else pack_bayer(raw, pattern)
    if packed.ndim != 3 or packed.shape[0] != 4:
        raise ValueError(f"raw must be (H, W) or (4, h, w), got shape {raw.shape}")
    g = np.array([meta["red_gain"], 1.0, 1.0, meta["blue_gain"]], np.float32) * np.float32(meta["rgb_gain"])
    packed = np.clip(packed * g[:, None, None], 0.0, 1.0)
    x = demosaic_bilinear(unpack_bayer(packed, pattern), pattern)
    cam2rgb = np.linalg.inv(np.asarray(meta["ccm"], np.float64)).astype(np.float32)
    x = np.clip(x @ cam2rgb.T, 0.0, 1.0)
    x = np.maximum(x, EPS) ** (1.0 / GAMMA)
    return np.clip(3.0 * x * x - 2.0 * x * x * x, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- noise


def add_noise(raw: np.ndarray, a: float, b: float, rng: np.random.Generator, *, clip_white: bool = True
              ) -> np.ndarray:
    """Exact Poisson-Gaussian noise: ``a * Poisson(x / a) + N(0, b)``, so ``var = a * x + b``.

    Args:
        raw: Clean raw signal, float array of any shape (mosaic ``(H, W)`` or packed ``(4, h, w)``),
            normalised (0 = black, 1 = white); negative values count as 0 photo-electrons.
        a: Shot-noise gain (normalised units per photo-electron; ``x / a`` electrons); 0 = no shot noise.
        b: Read-noise **variance** (normalised units squared), >= 0.
        rng: Source of the noise.
        clip_white: Clip at 1 (the white/saturation level), as a sensor does.  Values below 0 are never
            clipped: raw data holds them below the black level, before black subtraction.

    Returns:
        float32 array of ``raw``'s shape.
    """
    if a < 0 or b < 0:
        raise ValueError(f"a and b must be >= 0, got a={a}, b={b}")
    x = np.asarray(raw, np.float64)
    z = a * rng.poisson(np.maximum(x, 0.0) / a) if a > 0 else x.copy()
    if b > 0:
        z = z + rng.normal(0.0, np.sqrt(b), x.shape)
    if clip_white:
        z = np.minimum(z, 1.0)
    return z.astype(np.float32)


def sample_noise_level(rng: np.random.Generator) -> tuple[float, float]:
    """Random ``(a, b)`` from the paper's log-linear relation of shot and read noise (Sec. 3, fitted to the
    Darmstadt dataset's cameras): ``log a ~ U[log 1e-4, log 0.012]``, ``log b = 2.18 log a + 1.20 + N(0, 0.26)``.

    Returns ``a`` (normalised units) and ``b`` (a variance, normalised units squared) for ``var = a * x + b``.
    """
    log_a = rng.uniform(np.log(SHOT_RANGE[0]), np.log(SHOT_RANGE[1]))
    log_b = READ_SLOPE * log_a + READ_OFFSET + rng.normal(0.0, READ_STD)
    return float(np.exp(log_a)), float(np.exp(log_b))


def iso_levels() -> dict[int, tuple[float, float]]:
    """ISO -> ``(a, b)`` of the named noise levels (800, 3200, 12800, 51200), normalised units.

    ``restore.noise.ISO_LEVELS`` (one place for the numbers): a full-frame sensor
    with ~80 ke- full well at ISO 100 and 2.5-3 e- read noise.  Their ``a`` lie inside the paper's shot range,
    but their ``b`` is 16x (ISO 800), 7.7x, 6.0x and 4.6x (ISO 51200) the paper's mean line
    ``exp(2.18 log a + 1.2)`` of :func:`sample_noise_level`, i.e. 6-11 of its log-sds (0.26) above it: a model
    trained only on the paper's distribution sees less read noise than these levels hold.
    """
    from restore.noise import ISO_LEVELS

    return dict(ISO_LEVELS)


def sigma_map(noisy_packed: np.ndarray, a: float, b: float, channels: int = 4) -> np.ndarray:
    """Per-pixel noise sigma ``sqrt(a * max(x, 0) + b)`` from the noisy values, the denoiser's conditioning input.

    Computed from the noisy data as at inference time (the clean signal is unknown there).

    Args:
        noisy_packed: float ``(4, h, w)`` packed raw, or ``(h, w)`` / ``(1, h, w)`` one plane; normalised.
        a, b: The noise model (``b`` a variance).
        channels: 4 = one map per plane (needs 4 planes); 1 = one map from the planes' mean level.

    Returns:
        float32 ``(channels, h, w)`` (``(1, h, w)`` for a single-plane input).
    """
    x = np.asarray(noisy_packed, np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in (1, 4) or channels not in (1, 4):
        raise ValueError(f"noisy_packed must be (4, h, w), (1, h, w) or (h, w) and channels 1 or 4, "
                         f"got shape {np.shape(noisy_packed)}, channels={channels}")
    if channels == 1 or x.shape[0] == 1:
        x = x.mean(axis=0, keepdims=True)
    return np.sqrt(np.maximum(np.float32(a) * np.maximum(x, 0.0) + np.float32(b), 0.0)).astype(np.float32)
