#!/usr/bin/env python3
"""OIDN denoising of linear HDR: log-domain PSNR before/after on a noisy crop of MtTamWest.exr.

Noise: Poisson with 200 photons per unit radiance plus Gaussian sigma 0.01, seed 0; PSNR on
ln(x + 1e-3) with the reference's log range as peak.  Usage:  python benchmarks/oidn.py
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.hdr.denoise import denoise_oidn  # noqa: E402
from restore.io import read  # noqa: E402

img = read(ROOT.parent / "shared/data/hdr_images/MtTamWest.exr").color[:256, :256].copy()
rng = np.random.default_rng(0)
noisy = (rng.poisson(np.maximum(img, 0) * 200) / 200 + rng.normal(0, 0.01, img.shape)).astype(np.float32)
den = denoise_oidn(noisy)


def lg(x):
    return np.log(np.maximum(x, 0) + 1e-3)


def psnr(a):
    span = lg(img).max() - lg(img).min()
    return 10 * np.log10(span**2 / np.mean((lg(a) - lg(img)) ** 2))


print(f"log-domain PSNR: noisy {psnr(noisy):.1f} dB, OIDN {psnr(den):.1f} dB")
