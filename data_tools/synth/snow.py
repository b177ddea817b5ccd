"""Falling snow: particle layers with size/depth, motion blur and brightness.

Follows the Snow100K synthesis idea (Liu et al., "DesnowNet", TIP 2018): several
snow masks of particles of different sizes (near = large, blurred, sparse;
far = small, dense), each alpha-composited over the scene,

    I = J * (1 - alpha_l) + b_l * alpha_l     (per layer l, far to near)

plus an optional light veil.  Particles are seeded points dilated by an
elliptical kernel of the layer's size, softened by a depth-dependent Gaussian
(defocus) and motion-blurred along the falling direction.
"""

from __future__ import annotations

import cv2
import numpy as np

from ._util import as_float_rgb, gauss, line_kernel, pick


def snow_layer(shape, rng: np.random.Generator, density: float, size: float, blur: float,
               motion: float, angle: float) -> np.ndarray:
    """Alpha matte in [0, 1], (H, W), of one snow layer."""
    h, w = shape
    seeds = (rng.random((h, w), dtype=np.float32) < density).astype(np.float32)
    r = max(1, int(round(size)))
    if r > 1:
        seeds = cv2.dilate(seeds, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (r, r)))
    m = gauss(seeds, blur)
    if motion > 1.5:
        m = cv2.filter2D(m, -1, line_kernel(motion, angle), borderType=cv2.BORDER_REFLECT)
    peak = float(m.max())
    if peak > 0:
        m = m / max(peak, 0.35)
    return np.clip(m, 0.0, 1.0).astype(np.float32)


def add_snow(clean: np.ndarray, rng: np.random.Generator, *, layers: int | None = None,
             density: float | None = None, size: float | None = None, motion: float | None = None,
             angle: float | None = None, brightness: float | None = None, veil: float | None = None) -> np.ndarray:
    """Add falling snow to ``clean`` (float32 RGB in [0, 1]).

    Args (``None`` = random within the range given):
        layers: Depth layers, 1-3.
        density: Particle seed density of the farthest layer, 0.002-0.012 (nearer layers sparser).
        size: Particle diameter of the nearest layer in px, 3-8 (far layers ~1-2 px).
        motion: Motion-blur length of the nearest layer in px, 0-12.
        angle: Falling direction in degrees from vertical, -40..40.
        brightness: Snow grey level, 0.8-1.0.
        veil: Light veil strength, 0-0.15.
    """
    img = as_float_rgb(clean)
    h, w, _ = img.shape
    n = int(layers) if layers is not None else int(rng.integers(1, 4))
    dens = pick(density, rng, 0.002, 0.012)
    sz = pick(size, rng, 3, 8)
    mot = pick(motion, rng, 0, 12)
    ang = pick(angle, rng, -40, 40)
    bri = pick(brightness, rng, 0.8, 1.0)
    v = pick(veil, rng, 0.0, 0.15)
    out = (1 - v) * img + v * bri
    for i in range(n):
        depth = 1.0 - i / max(1, n - 1) if n > 1 else 0.0  # far layers first
        alpha = snow_layer(
            (h, w), rng,
            density=dens * (1 - 0.7 * (1 - depth)) if n > 1 else dens,
            size=1 + (sz - 1) * (1 - depth),
            blur=0.4 + 1.2 * (1 - depth),
            motion=mot * (1 - 0.6 * depth),
            angle=ang + float(rng.normal(0, 5)),
        )[..., None]
        b = bri * (0.85 + 0.15 * (1 - depth))
        out = out * (1 - alpha) + b * alpha
    return np.clip(out, 0.0, 1.0).astype(np.float32)
