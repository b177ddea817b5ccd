"""Reflection superposition: I = T + K * R.

Synthesis after Fan et al., "A Generic Deep Architecture for Single Image
Reflection Removal and Image Smoothing" (CEILNet, ICCV 2017) and Zhang et al.,
"Single Image Reflection Separation with Perceptual Losses" (CVPR 2018): the
reflection R (a second image) is out of focus (Gaussian kernel K, sigma 1-5)
and attenuated (beta); optionally ghosted (K = two shifted deltas, thick
glass).  Like Fan et al. the part of the blend above 1 is handled by
subtracting the mean overflow from the reflection layer before clipping, so
the transmission stays visible:

    R' = beta * (K * R);  I = T + R' - mean(max(T + R' - 1, 0) | > 0);  clip to [0, 1]
"""

from __future__ import annotations

import cv2
import numpy as np

from ._util import as_float_rgb, gauss, pick


def add_reflection(clean: np.ndarray, rng: np.random.Generator, *, reflection: np.ndarray,
                   sigma: float | None = None, beta: float | None = None, ghost: bool | None = None,
                   ghost_shift: float | None = None, transmission: float | None = None) -> np.ndarray:
    """Superimpose a blurred, attenuated ``reflection`` image on ``clean``.

    Args (``None`` = random within the range given):
        reflection: float32 RGB (H', W', 3) in [0, 1], resized to ``clean``'s size
            (required: the second image).
        sigma: Defocus sigma of K in px, 1-5.
        beta: Reflection attenuation, 0.25-0.7.
        ghost: Add a shifted copy (double reflection), probability 0.3.
        ghost_shift: Ghost offset in px, 2-8.
        transmission: Glass transmission factor applied to T, 0.8-1.0.
    """
    t_img = as_float_rgb(clean)
    h, w, _ = t_img.shape
    r = as_float_rgb(reflection)
    if r.shape[:2] != (h, w):
        r = cv2.resize(r, (w, h), interpolation=cv2.INTER_AREA if r.shape[0] > h else cv2.INTER_LINEAR)
    s = pick(sigma, rng, 1.0, 5.0)
    b = pick(beta, rng, 0.25, 0.7)
    g = bool(rng.random() < 0.3) if ghost is None else bool(ghost)
    a = pick(transmission, rng, 0.8, 1.0)
    rb = gauss(r, s)
    if g:
        sh = pick(ghost_shift, rng, 2, 8)
        th = rng.uniform(0, 2 * np.pi)
        M = np.float32([[1, 0, sh * np.cos(th)], [0, 1, sh * np.sin(th)]])
        rb = 0.6 * rb + 0.4 * cv2.warpAffine(rb, M, (w, h), borderMode=cv2.BORDER_REFLECT)
    rb = b * rb
    t_img = a * t_img
    blend = t_img + rb
    over = blend > 1
    if over.any():
        for c in range(3):
            oc = over[..., c]
            if oc.any():
                rb[..., c] -= float((blend[..., c][oc] - 1).mean()) * 1.3
        rb = np.clip(rb, 0, 1)
    return np.clip(t_img + rb, 0.0, 1.0).astype(np.float32)
