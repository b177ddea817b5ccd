#!/usr/bin/env python3
"""How well restore.noise recovers a known Poisson-Gaussian noise model from synthetic RAW mosaics (issue 19).

Clean 8-bit sRGB images (examples/*.png, and ../shared/data/sr Set5 + BSD100_subset HR when present) are
"unprocessed" to a linear RGGB mosaic (inverse sRGB transfer, scaled by 0.9 so white is not clipped, one colour
per pixel), then get exact Poisson-Gaussian noise ``z = a * Poisson(x / a) + N(0, b)`` in normalised units
(0 = black, 1 = white) and are quantised like a 14-bit camera with a 512 DN black pedestal (white 16383 DN;
values below black kept down to 0 DN, above white clipped).  restore.noise.estimate_noise fits (a, b); the table
gives the relative errors of a and of the noise sigma at 1 %, 10 % and 50 % of white.  A second row per level fits
a only, with b from a simulated 16-row masked border (restore.noise.masked_pixels_noise).

Usage:  python benchmarks/noise_estimation.py [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.noise import ISO_LEVELS, NoiseProfile, estimate_noise, masked_pixels_noise  # noqa: E402

BLACK, WHITE = 512, 16383
SPAN = WHITE - BLACK
#: (label, a, b) in normalised units: the named ISO levels of restore.noise.ISO_LEVELS, and read noise alone.
LEVELS = [(f"ISO {iso}", a, b) for iso, (a, b) in ISO_LEVELS.items()] + [("read noise only", 0.0, 1e-5)]


def images() -> list[Path]:
    found = sorted((ROOT / "examples").glob("*.png"))
    sr = ROOT.parent / "shared" / "data" / "sr"
    for sub in ("Set5/HR", "BSD100_subset/HR"):
        found += sorted((sr / sub).glob("*.png"))
    return found


def linear_mosaic(path: Path, upsample: int = 1) -> np.ndarray:
    """RGGB mosaic (H, W) float64 in [0, 0.9] from an 8-bit sRGB file (inverse sRGB transfer, then optionally
    ``upsample`` x bicubic in linear light)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    rgb = bgr[..., ::-1].astype(np.float64) / 255
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4) * 0.9
    if upsample > 1:
        lin = np.clip(cv2.resize(lin, None, fx=upsample, fy=upsample, interpolation=cv2.INTER_CUBIC), 0.0, 0.9)
    h, w = (lin.shape[0] // 2) * 2, (lin.shape[1] // 2) * 2
    m = np.empty((h, w))
    m[0::2, 0::2] = lin[0:h:2, 0:w:2, 0]
    m[0::2, 1::2] = lin[0:h:2, 1:w:2, 1]
    m[1::2, 0::2] = lin[1:h:2, 0:w:2, 1]
    m[1::2, 1::2] = lin[1:h:2, 1:w:2, 2]
    return m


def to_dn(z: np.ndarray) -> np.ndarray:
    return np.clip(np.round(BLACK + SPAN * z), 0, WHITE)


def noisy(clean: np.ndarray, a: float, b: float, rng) -> np.ndarray:
    """Normalised noisy mosaic (float32) after 14-bit quantisation."""
    z = (rng.poisson(clean / a) * a if a > 0 else clean) + rng.normal(0.0, np.sqrt(b), clean.shape)
    return ((to_dn(z) - BLACK) / SPAN).astype(np.float32)


def masked_b(width: int, b: float, rng) -> float | None:
    """b from a simulated 16-row optically black border above a (16 + 8)-row frame, via masked_pixels_noise."""
    full = to_dn(rng.normal(0.0, np.sqrt(b), (24, width))).astype(np.uint16)
    raw = SimpleNamespace(raw_image=full, white_level=WHITE, black_level_per_channel=[BLACK] * 4,
                          sizes=SimpleNamespace(top_margin=16, left_margin=0, height=8, width=width))
    return masked_pixels_noise(raw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--upsample", type=int, default=1,
                    help="bicubic factor applied to the clean images in linear light before mosaicking (default 1)")
    args = ap.parse_args()
    paths = images()
    cleans = [linear_mosaic(p, args.upsample) for p in paths]
    floor = [estimate_noise(((to_dn(c) - BLACK) / SPAN).astype(np.float32), "RGGB") for c in cleans]
    print(f"upsample {args.upsample}: the clean images themselves (no noise added) read as sigma(0.1) median "
          f"{np.median([float(f.sigma(0.1)) for f in floor]):.4f}, max {max(float(f.sigma(0.1)) for f in floor):.4f}")
    print(f"{len(paths)} images ({', '.join(p.stem for p in paths)}); sizes "
          f"{min(c.size for c in cleans) / 1e6:.2f}-{max(c.size for c in cleans) / 1e6:.2f} MP")
    rng = np.random.default_rng(args.seed)
    head = ("| level | true a | true b | b from | mean est. a | worst rel. err. a | mean / worst rel. err. sigma(0.01) "
            "| mean / worst sigma(0.1) | mean / worst sigma(0.5) | s per image |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for label, a, b in LEVELS:
        truth = NoiseProfile(a, b)
        for mode in ("image", "masked"):
            est_a, errs_a, errs = [], [], {x: [] for x in (0.01, 0.1, 0.5)}
            t0 = time.perf_counter()
            for clean in cleans:
                z = noisy(clean, a, b, rng)
                known = masked_b(clean.shape[1], b, rng) if mode == "masked" else None
                p = estimate_noise(z, "RGGB", b=known)
                est_a.append(p.a)
                errs_a.append(abs(p.a - a) / a if a else abs(p.a) * 0.5 / b)  # no a: a*0.5 relative to b
                for x in errs:
                    errs[x].append(abs(float(p.sigma(x)) / float(truth.sigma(x)) - 1))
            dt = (time.perf_counter() - t0) / len(cleans)
            ea = f"{max(errs_a):.1%}" if a else f"(a*0.5/b) {max(errs_a):.1%}"
            cells = [f"{np.mean(errs[x]):.1%} / {max(errs[x]):.1%}" for x in errs]
            print(f"| {label} | {a:g} | {b:g} | {'image' if mode == 'image' else 'masked border'} | {np.mean(est_a):.3g} | {ea} | "
                  + " | ".join(cells) + f" | {dt:.2f} |", flush=True)


if __name__ == "__main__":
    main()
