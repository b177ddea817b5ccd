"""Rain streaks with depth layers and veiling (rain accumulation).

Model (after the Rain100H / Rain200H syntheses of Yang et al., "Deep Joint Rain
Detection and Removal from a Single Image", CVPR 2017, and the streak
rendering of Garg & Nayar, "Photorealistic Rendering of Rain Streaks", 2006):

    O = (1 - v) * B + v * A                       (veiling / rain accumulation)
    S = 1 - prod_l (1 - a_l * M_l(N_l))           (streak layers, screen-combined)
    I = 1 - (1 - O) * (1 - S)   (screen)   or   I = clip(O + S)  (additive)

where each layer l draws sparse seeds ``N_l`` (density), dilates them to a
width, motion-blurs them along a line of length L_l at angle theta_l
(``M_l``, streaks are drops falling during the exposure), softens them by a
depth-dependent Gaussian and scales them to brightness a_l.  Nearer layers are
longer, wider, brighter and sparser; the angle varies slightly per layer
around a common wind direction.
"""

from __future__ import annotations

import cv2
import numpy as np

from ._util import as_float_rgb, gauss, line_kernel, pick


def streak_layer(shape, rng: np.random.Generator, density: float, length: float, width: int,
                 angle: float, brightness: float, softness: float) -> np.ndarray:
    """One streak layer in [0, 1], shape (H, W): seeds -> dilate -> motion blur -> gain."""
    h, w = shape
    seeds = (rng.random((h, w), dtype=np.float32) < density).astype(np.float32)
    seeds *= rng.uniform(0.6, 1.0, size=(h, w)).astype(np.float32)
    if width > 1:
        seeds = cv2.dilate(seeds, np.ones((width, width), np.uint8))
    ker = line_kernel(length, angle)
    s = cv2.filter2D(seeds, -1, ker, borderType=cv2.BORDER_REFLECT)
    # normalised kernel spreads each seed over ~length px: restore a visible streak amplitude
    s = s * (0.5 * length)
    s = gauss(s, softness)
    return np.clip(s * brightness, 0.0, 1.0)


def add_rain(clean: np.ndarray, rng: np.random.Generator, *, layers: int | None = None,
             density: float | None = None, length: float | None = None, width: int | None = None,
             angle: float | None = None, brightness: float | None = None, veil: float | None = None,
             airlight: float | None = None, blend: str | None = None) -> np.ndarray:
    """Add rain streaks and veiling to ``clean`` (float32 RGB in [0, 1]).

    Args (``None`` = random within the range given):
        layers: Number of depth layers, 1-3.
        density: Seed density of the nearest layer, 0.001-0.012 per pixel (far layers denser).
        length: Streak length of the nearest layer in px, 20-70 (far layers shorter).
        width: Streak width of the nearest layer in px, 1-3.
        angle: Mean streak angle in degrees from vertical, -35..35.
        brightness: Streak gain of the nearest layer, 0.5-1.0.
        veil: Veiling (rain accumulation) strength v, 0-0.25.
        airlight: Grey level A of the veil, 0.7-1.0.
        blend: ``'screen'`` or ``'add'`` (both used by public syntheses).
    """
    img = as_float_rgb(clean)
    h, w, _ = img.shape
    n_layers = int(layers) if layers is not None else int(rng.integers(1, 4))
    dens = pick(density, rng, 0.001, 0.012)
    ln = pick(length, rng, 20, 70)
    wd = int(width) if width is not None else int(rng.integers(1, 4))
    ang = pick(angle, rng, -35, 35)
    br = pick(brightness, rng, 0.5, 1.0)
    v = pick(veil, rng, 0.0, 0.25)
    a = pick(airlight, rng, 0.7, 1.0)
    mode = blend if blend is not None else ("screen" if rng.random() < 0.5 else "add")

    keep = np.ones((h, w), np.float32)
    for i in range(n_layers):
        depth = i / max(1, n_layers - 1) if n_layers > 1 else 0.0  # 0 = near, 1 = far
        layer = streak_layer(
            (h, w), rng,
            density=dens * (1 + 1.5 * depth),
            length=ln * (1 - 0.55 * depth),
            width=max(1, int(round(wd * (1 - 0.6 * depth)))),
            angle=ang + float(rng.normal(0, 4)),
            brightness=br * (1 - 0.45 * depth),
            softness=0.5 + 1.0 * depth,
        )
        keep *= 1.0 - layer
    streaks = (1.0 - keep)[..., None]
    veiled = (1 - v) * img + v * a
    if mode == "screen":
        out = 1.0 - (1.0 - veiled) * (1.0 - streaks)
    elif mode == "add":
        out = veiled + streaks
    else:
        raise ValueError(f"blend must be 'screen' or 'add', got {mode!r}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)
