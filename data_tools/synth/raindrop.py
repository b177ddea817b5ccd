"""Adherent raindrops on a glass pane in front of the lens (refracting, defocused blobs).

Each drop acts as a small fish-eye lens (Roser & Geiger, "Video-based raindrop
detection", 2009; You et al., "Adherent raindrop modeling", TPAMI 2016): it
shows an inverted (flipped), minified image of a larger neighbourhood of the
background.  The camera focuses on the scene, so the glass and its drops are
out of focus: their outlines are soft and the wet pane veils the whole image
with scattered light, as in the real pairs of Qian et al., "Attentive GAN for
raindrop removal" (CVPR 2018: drops on a glass plate 2-5 cm in front of the
lens).  Rendered here with one ``cv2.remap``:

    src(p) = c_i - k_i (p - c_i)              for p inside drop i (flipped, k_i in 0.5-3)
    D   = remap(Gauss(J, sigma_d), src)       refracted, blurred content
    D'  = ((1 - s) D + s a) (1 - e rim^3)     s: light scattered in the water, a: its grey level
    M   = Gauss(alpha m, sigma_g)             m: drop matte (ellipses with wavy rims), glass defocus sigma_g
    I0  = Gauss(J, b) (1 - M) + Gauss(alpha m D', sigma_g)
    I   = (1 - v) I0 + v a                    veiling glare of the wet pane, v in 0-0.15

The glass-plane defocus is tied to the drop size.  Drops and blur scale alike
with distance (thin lens focused far away: a drop of radius r on a pane at
distance z images to f r / z, a point of the pane blurs to a disc of diameter
f D / z for an aperture D), so the blur disc measured in drop diameters is
D / 2r, whatever the distance: about 1-3 for millimetre drops in front of a
5-10 mm aperture, a Gaussian sigma of roughly 0.5-1.5 drop radii.  The blur is
the same for every drop on the pane; ``sigma_g`` is drawn as 0.15-0.9 times the
typical drop radius (the lower part of that range and below, so sharper drops
from small apertures occur too); most drops are then soft, bright blobs with
little visible structure, as in real captures.

The matte ``m`` is an ellipse per drop whose rim is perturbed by smooth noise
(real drops are not ellipses), some drops carry a smaller run-off drop below
them, and drop sizes follow a wide range so both the small sharp and large
blurry drops of real captures occur.
"""

from __future__ import annotations

import cv2
import numpy as np

from ._util import as_float_rgb, gauss, pick


def add_raindrops(clean: np.ndarray, rng: np.random.Generator, *, count: float | None = None,
                  radius: tuple | None = None, magnification: tuple | None = None,
                  blur: float | None = None, edge_dark: float | None = None,
                  background_blur: float | None = None, scatter: float | None = None,
                  defocus: float | None = None, veil: float | None = None) -> np.ndarray:
    """Add out-of-focus raindrops on glass to ``clean`` (float32 RGB in [0, 1], shape (H, W, 3)).

    Args (``None`` = drawn from ``rng`` within the range given; sizes in pixels of the
    image passed, so degrade whole images or crops taken at the native resolution):
        count: Drops per 100x100 px, 0.5-4 (scaled to the image area; at least one drop).
        radius: (min, max) drop radius in px, default (4-10, 20-50).
        magnification: (min, max) of k, the flipped field-of-view factor, default (0.5, 3.0)
            (a drop's fish-eye sees a neighbourhood several times its own size).
        blur: Gaussian sigma of the refracted content, 2-8 px.
        edge_dark: Rim darkening strength e, 0.0-0.3.
        background_blur: Defocus of the whole scene seen through the wet pane, 0-1.5 px.
        scatter: Light scattered in the water, s in 0.1-0.5 (drop opacity alpha is drawn in 0.6-1).
        defocus: Gaussian sigma in px of the glass-plane defocus that softens every drop; default
            0.15-0.9 times the geometric mean of the radius range (at least 0.5 px).
        veil: Veiling glare of the wet pane, v in 0-0.15, towards a light grey.

    Returns:
        float32 (H, W, 3) in [0, 1].
    """
    img = as_float_rgb(clean)
    h, w, _ = img.shape
    dens = pick(count, rng, 0.5, 4.0)
    n = max(1, int(round(dens * h * w / 1e4)))
    rmin, rmax = radius if radius is not None else (rng.uniform(4, 10), rng.uniform(20, 50))
    kmin, kmax = magnification if magnification is not None else (0.5, 3.0)
    sig = pick(blur, rng, 2.0, 8.0)
    e = pick(edge_dark, rng, 0.0, 0.3)
    bgb = pick(background_blur, rng, 0.0, 1.5)
    s = pick(scatter, rng, 0.1, 0.5)
    sg = defocus if defocus is not None else max(0.5, rng.uniform(0.15, 0.9) * float(np.sqrt(rmin * rmax)))
    v = pick(veil, rng, 0.0, 0.15)
    opacity = pick(None, rng, 0.6, 1.0)
    grey = pick(None, rng, 0.6, 0.95)  # grey level of scattered light (overcast sky seen through water)

    # drops: log-uniform radii (many small, some large); ~30 % carry a smaller run-off drop below
    cx = rng.uniform(0, w, n)
    cy = rng.uniform(0, h, n)
    rx = np.exp(rng.uniform(np.log(rmin), np.log(max(rmax, rmin + 1e-3)), n))
    ry = rx * rng.uniform(0.75, 1.35, n)
    runoff = rng.random(n) < 0.3
    m_run = int(runoff.sum())
    cx = np.concatenate([cx, cx[runoff] + rng.uniform(-0.2, 0.2, m_run) * rx[runoff]])
    cy = np.concatenate([cy, cy[runoff] + rng.uniform(0.8, 1.3, m_run) * ry[runoff]])
    rx = np.concatenate([rx, rx[runoff] * rng.uniform(0.4, 0.7, m_run)])
    ry = np.concatenate([ry, ry[runoff] * rng.uniform(0.5, 0.9, m_run)])
    n = len(cx)
    rot = rng.uniform(-20, 20, n)
    k = rng.uniform(kmin, kmax, n).astype(np.float32)
    cx, cy = cx.astype(np.float32), cy.astype(np.float32)
    rx, ry = rx.astype(np.float32), ry.astype(np.float32)

    # label map: index of the drop covering each pixel (later drops on top), drawn 25 % larger
    # and cut back by the wavy rim below
    label = np.full((h, w), -1, np.int32)
    for i in range(n):
        cv2.ellipse(label, (int(cx[i]), int(cy[i])), (max(1, int(1.25 * rx[i])), max(1, int(1.25 * ry[i]))),
                    float(rot[i]), 0, 360, int(i), thickness=-1)
    covered = label >= 0
    li = np.where(covered, label, 0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs - cx[li], ys - cy[li]
    rr = np.sqrt((dx / np.maximum(rx[li], 1)) ** 2 + (dy / np.maximum(ry[li], 1)) ** 2)
    # smooth noise on the rim: +-15 % of the radius, correlated over ~ the small-drop size
    wav = gauss(rng.standard_normal((h, w)).astype(np.float32), max(1.0, 0.6 * float(rmin)))
    wav = wav / (np.abs(wav).max() + 1e-6)
    inside = covered & (rr < 1.0 + 0.15 * wav)
    rr = np.clip(np.where(inside, rr, 1.0), 0, 1).astype(np.float32)
    mapx = np.where(inside, cx[li] - k[li] * dx, xs).astype(np.float32)
    mapy = np.where(inside, cy[li] - k[li] * dy, ys).astype(np.float32)

    scene = gauss(img, bgb)
    drop = cv2.remap(gauss(img, sig), mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    drop = (1 - s) * drop + s * grey
    drop = drop * (1.0 - e * rr ** 3)[..., None]
    m = inside.astype(np.float32) * opacity
    mb = gauss(m, sg)[..., None]
    out = scene * (1 - mb) + gauss(drop * m[..., None], sg)
    out = (1 - v) * out + v * grey
    return np.clip(out, 0.0, 1.0).astype(np.float32)
