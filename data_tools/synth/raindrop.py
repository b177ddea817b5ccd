"""Adherent raindrops on a glass pane / lens (refracting, blurred blobs).

Each drop acts as a small fish-eye lens (Roser & Geiger, "Video-based raindrop
detection", 2009; You et al., "Adherent raindrop modeling", TPAMI 2016): it
shows an inverted (flipped), minified image of a larger neighbourhood of the
background, out of focus because the camera focuses on the scene.  Rendered
here per pixel with one ``cv2.remap``:

    src(p) = c_i - k_i (p - c_i)  for p inside drop i (k_i in 0.3-1.5: flipped, magnified or minified)
    D = remap(Gauss(J, sigma_d), src)
    D' = ((1 - s) D + 0.9 s) (1 - e * edge)      (s: light scattered in the water)
    I = J (1 - m) + D' m

with ``m`` a softened drop matte (ellipses) and ``edge`` a darkening ramp
towards the drop rim (total internal reflection darkens the border), like the
real pairs of Qian et al., "Attentive GAN for raindrop removal" (CVPR 2018).
"""

from __future__ import annotations

import cv2
import numpy as np

from ._util import as_float_rgb, gauss, pick


def add_raindrops(clean: np.ndarray, rng: np.random.Generator, *, count: int | None = None,
                  radius: tuple | None = None, magnification: tuple | None = None,
                  blur: float | None = None, edge_dark: float | None = None,
                  background_blur: float | None = None, scatter: float | None = None) -> np.ndarray:
    """Add raindrops on glass to ``clean`` (float32 RGB in [0, 1]).

    Args (``None`` = random within the range given; sizes in pixels of the full image,
    so degrade whole images or crops taken at the native resolution):
        count: Number of drops per 100x100 px, 1-4 (scaled to the image area).
        radius: (min, max) drop radius in px, default (5-10, 18-40).
        magnification: (min, max) of k, the flipped field-of-view factor, default (0.3, 1.5).
        blur: Gaussian sigma of the refracted content, 2-5 px.
        edge_dark: Rim darkening strength e, 0.05-0.3.
        background_blur: Small defocus of the whole scene behind the glass, 0-1.2 px.
        scatter: Whitish light scattered in the water, 0.1-0.4 (drop opacity is drawn in 0.5-0.95).
    """
    img = as_float_rgb(clean)
    h, w, _ = img.shape
    dens = pick(None if count is None else count, rng, 1.0, 4.0)
    n = max(1, int(round(dens * h * w / 1e4)))
    rmin, rmax = radius if radius is not None else (rng.uniform(5, 10), rng.uniform(18, 40))
    kmin, kmax = magnification if magnification is not None else (0.3, 1.5)
    sig = pick(blur, rng, 2.0, 5.0)
    e = pick(edge_dark, rng, 0.05, 0.3)
    bgb = pick(background_blur, rng, 0.0, 1.2)
    haze = pick(scatter, rng, 0.1, 0.4)
    opacity = pick(None, rng, 0.5, 0.95)

    cx = rng.uniform(0, w, n).astype(np.float32)
    cy = rng.uniform(0, h, n).astype(np.float32)
    rx = rng.uniform(rmin, rmax, n).astype(np.float32)
    ry = rx * rng.uniform(0.7, 1.3, n).astype(np.float32)
    rot = rng.uniform(0, 180, n)
    k = rng.uniform(kmin, kmax, n).astype(np.float32)

    # label map: index of the drop covering each pixel (later drops on top)
    label = np.full((h, w), -1, np.int32)
    for i in range(n):
        cv2.ellipse(label, (int(cx[i]), int(cy[i])), (max(1, int(rx[i])), max(1, int(ry[i]))),
                    float(rot[i]), 0, 360, int(i), thickness=-1)
    inside = label >= 0
    li = np.where(inside, label, 0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs - cx[li], ys - cy[li]
    mapx = np.where(inside, cx[li] - k[li] * dx, xs).astype(np.float32)
    mapy = np.where(inside, cy[li] - k[li] * dy, ys).astype(np.float32)
    # normalised radial distance (0 centre, 1 rim) for the darkening ramp
    rr = np.sqrt((dx / np.maximum(rx[li], 1)) ** 2 + (dy / np.maximum(ry[li], 1)) ** 2)
    rr = np.clip(np.where(inside, rr, 1.0), 0, 1).astype(np.float32)

    scene = gauss(img, bgb)
    drop = cv2.remap(gauss(img, sig), mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    drop = (1 - haze) * drop + haze * 0.9  # light scattered inside the water (whitish drops)
    drop = drop * (1.0 - e * rr ** 3)[..., None]
    m = gauss(inside.astype(np.float32), 0.3 * float(rmin) + 0.8)[..., None] * opacity
    return np.clip(scene * (1 - m) + drop * m, 0.0, 1.0).astype(np.float32)
