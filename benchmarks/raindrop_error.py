#!/usr/bin/env python3
"""Where the error of the RainDrop pairs lies: smooth (low-frequency) versus detail.

    python benchmarks/raindrop_error.py [--shared ../shared] [--sigma 4] [--model weather-starter]
                                        [--maps /tmp/restore-raindrop-error]

For each pair in ``<shared>/data/weather/raindrop`` (degraded/ vs clean/), on the
BT.601 luma Y in [0, 1] (as PSNR-Y):

* ``lowpass share``: the fraction of the squared error e = Y(x) - Y(clean) carried
  by its Gaussian low-pass (sigma ``--sigma`` px): mean(G*e)^2 / mean(e^2);
* ``gain if smooth error removed``: the PSNR gain an oracle would get by
  subtracting G*e alone, 10 log10(mean e^2 / mean (e - G*e)^2);

for the degraded input and for ``--model``'s output (whole image, fp32); and the
PSNR-Y gain of an oracle global colour-affine correction (a 3x4 matrix fitted by
least squares from the degraded to the clean RGB), which a smooth error that is
the same everywhere would vanish under.  With
``--maps`` it also writes the low-pass error of the input, 0.5 + 3 G*e, beside
the degraded image, for a visual check (outside the repository).

This says what a model has to undo: a large low-pass share means brightness and
colour offsets over whole regions (bright drop blobs, and tint changes between
the capture with the glass plate and the one without), not fine detail.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from starter_eval import quantise, read_rgb, run_model, write_rgb  # noqa: E402

from restore import load_model  # noqa: E402
from restore.metrics import psnr, to_y  # noqa: E402


def luma(img: np.ndarray) -> np.ndarray:
    """BT.601 luma in [0, 1] of float RGB in [0, 1], the Y that PSNR-Y uses."""
    return to_y(img) / 255.0


def split(err: np.ndarray, sigma: float) -> tuple[float, float]:
    low = cv2.GaussianBlur(err, (0, 0), sigma)
    total = float((err ** 2).mean())
    return float((low ** 2).mean()) / total, 10 * np.log10(total / float(((err - low) ** 2).mean()))


def affine_oracle_gain(d: np.ndarray, c: np.ndarray) -> float:
    """PSNR-Y gain of the best global colour-affine map of ``d`` onto ``c`` (both float RGB [0, 1])."""
    x = np.concatenate([d.reshape(-1, 3), np.ones((d.shape[0] * d.shape[1], 1), np.float32)], axis=1)
    coef, *_ = np.linalg.lstsq(x, c.reshape(-1, 3), rcond=None)
    fit = np.clip(x @ coef, 0, 1).reshape(d.shape)
    return psnr(fit, c, y_channel=True) - psnr(d, c, y_channel=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--sigma", type=float, default=4.0)
    ap.add_argument("--model", default="weather-starter")
    ap.add_argument("--maps", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    folder = args.shared / "data" / "weather" / "raindrop"
    if not (folder / "degraded").is_dir():
        raise SystemExit(f"{folder}: no degraded/ folder (../shared is absent?)")
    torch.set_num_threads(args.threads)
    module = load_model(args.model).module.eval()
    print(f"{'pair':<8} {'input: lowpass share':>21} {'gain if smooth removed':>23} "
          f"{'model: lowpass share':>21} {'gain if smooth removed':>23} {'global affine oracle':>21}")
    for deg in sorted((folder / "degraded").glob("*.png")):
        d, c = read_rgb(deg), read_rgb(folder / "clean" / deg.name)
        o = quantise(run_model(module, d))
        ed, eo = luma(d) - luma(c), luma(o) - luma(c)
        si, gi = split(ed, args.sigma)
        so, go = split(eo, args.sigma)
        print(f"{deg.name:<8} {si:>21.2f} {gi:>20.2f} dB {so:>21.2f} {go:>20.2f} dB "
              f"{affine_oracle_gain(d, c):>18.2f} dB")
        if args.maps is not None:
            low = cv2.GaussianBlur(d - c, (0, 0), args.sigma)
            write_rgb(args.maps / deg.name, np.concatenate([d, np.clip(0.5 + 3 * low, 0, 1)], axis=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
