"""Haze by the atmospheric scattering model (Koschmieder; McCartney 1976).

    I(x) = J(x) t(x) + A (1 - t(x)),    t(x) = exp(-beta d(x))

as used by the RESIDE / Outdoor-Rain syntheses (Li et al., "Benchmarking
Single-Image Dehazing and Beyond", TIP 2019).  Without a depth map we use a
depth proxy: ``d = w_y * (1 - y/H)^gamma + w_l * L_s`` -- scenes are usually
farther towards the top of the frame, and smoothed luminance ``L_s`` (large
Gaussian) stands in for sky / distant bright regions -- normalised to [0, 1]
and scaled by ``depth_range``.
"""

from __future__ import annotations

import numpy as np

from ._util import as_float_rgb, gauss, luminance, pick


def depth_proxy(img: np.ndarray, rng: np.random.Generator, w_lum: float | None = None,
                gamma: float | None = None) -> np.ndarray:
    """Depth proxy in [0, 1], (H, W): vertical position mixed with smoothed luminance."""
    h, w, _ = img.shape
    wl = pick(w_lum, rng, 0.0, 0.5)
    g = pick(gamma, rng, 0.7, 1.5)
    y = (1.0 - np.linspace(0.0, 1.0, h, dtype=np.float32)) ** g
    vert = np.broadcast_to(y[:, None], (h, w))
    lum = gauss(luminance(img), max(h, w) / 20.0)
    d = (1 - wl) * vert + wl * lum
    d = d - d.min()
    return (d / max(float(d.max()), 1e-6)).astype(np.float32)


def add_haze(clean: np.ndarray, rng: np.random.Generator, *, beta: float | None = None,
             airlight: float | None = None, tint: float | None = None, depth_range: tuple | None = None,
             w_lum: float | None = None, gamma: float | None = None) -> np.ndarray:
    """Add haze to ``clean`` (float32 RGB in [0, 1]).

    Args (``None`` = random within the range given):
        beta: Scattering coefficient, 0.6-2.5 (per unit of proxy depth).
        airlight: Atmospheric light A (grey level), 0.65-1.0.
        tint: Blue/yellow tint of A, -0.05..0.05 (added to B, subtracted from R).
        depth_range: (near, far) proxy depths, default (0.2-0.5, 1.0).
        w_lum: Weight of the luminance term in the depth proxy, 0-0.5.
        gamma: Exponent of the vertical depth ramp, 0.7-1.5.
    """
    img = as_float_rgb(clean)
    b = pick(beta, rng, 0.6, 2.5)
    a = pick(airlight, rng, 0.65, 1.0)
    tt = pick(tint, rng, -0.05, 0.05)
    near, far = depth_range if depth_range is not None else (float(rng.uniform(0.2, 0.5)), 1.0)
    d = near + (far - near) * depth_proxy(img, rng, w_lum, gamma)
    t = np.exp(-b * d)[..., None].astype(np.float32)
    A = np.clip(np.array([a - tt, a, a + tt], np.float32), 0, 1)
    return np.clip(img * t + A * (1 - t), 0.0, 1.0).astype(np.float32)
