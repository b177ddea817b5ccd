#!/usr/bin/env python3
"""Tiled vs whole-image output per architecture on a 256x256 input (the table in the README).

Weights: the golden fixtures in ../shared/golden (official key layout, small
configurations, random weights re-drawn so that every parameter matters; no
trained weights exist here for these architectures).  Input: the centre
256x256 of Set5 ``baby.png`` (HR); the HDR models get three synthetic
exposures of it (x0.25, x1, x4 in linear light, clipped, as 6-channel
``cat(ldr**2.2 / t, ldr)`` frames); DRNet's fixture takes 19 channels
(RGB + 16 smooth side channels).  Outputs are clipped to [0, 1] as the
pipeline does; the figure is the largest per-pixel |tiled - whole| in 8-bit levels,
and in brackets the largest unclipped difference as a percentage of the
whole-image output's range (p0.1..p99.9): random weights drive many outputs
outside [0, 1], where clipped levels say little.

Usage:  python benchmarks/arch_tiling.py [--tiles 64 128] [--overlaps 16 32 48]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import restore  # noqa: E402
from restore.io import read  # noqa: E402
from restore.tiling import TileSpec, run_tiled  # noqa: E402

SHARED = ROOT.parent / "shared"
FIXTURES = ["restormer", "drsformer", "drsformer_nomefc", "histoformer", "hdr_transformer", "sctnet", "rrformer"]


def make_input(fixture: str, rgb: np.ndarray) -> np.ndarray:
    """(C, 256, 256) float32 input for a fixture model."""
    x = rgb.transpose(2, 0, 1)
    if fixture in ("hdr_transformer", "sctnet"):
        lin = x ** 2.2
        frames = []
        for t in (0.25, 1.0, 4.0):
            ldr = np.clip(lin * t, 0, 1) ** (1 / 2.2)
            frames += [ldr ** 2.2 / t, ldr]
        return np.concatenate(frames, 0).astype(np.float32)
    if fixture == "rrformer":
        yy, xx = np.mgrid[0:256, 0:256] / 256.0
        side = [np.sin((i + 1) * 3 * xx + i) * np.cos((i + 2) * 2 * yy) * 0.5 + 0.5 for i in range(16)]
        return np.concatenate([x, np.stack(side)], 0).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--overlaps", type=int, nargs="+", default=[16, 32, 48])
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    baby = read(SHARED / "data/sr/Set5/HR/baby.png").color[128:384, 128:384]
    print("| architecture | " + " | ".join(f"tile {t} / overlap {o}" for t in a.tiles for o in a.overlaps if 2 * o < t) + " |")
    for fx in FIXTURES:
        m = restore.load_model(SHARED / "golden" / fx / "weights.safetensors")
        x = make_input(fx, baby)
        kw = dict(scale=1, out_channels=m.output_channels, multiple_of=m.multiple_of, min_size=m.min_size)
        raw_whole = run_tiled(m.module, x, spec=TileSpec(tile=0), **kw)
        whole = np.clip(raw_whole, 0, 1)
        span = float(np.percentile(raw_whole, 99.9) - np.percentile(raw_whole, 0.1))
        cells = []
        for t in a.tiles:
            for o in a.overlaps:
                if 2 * o >= t:
                    continue
                raw = run_tiled(m.module, x, spec=TileSpec(tile=t, overlap=o), **kw)
                d8 = np.abs(np.clip(raw, 0, 1) - whole).max() * 255
                rel = np.abs(raw - raw_whole).max() / span * 100
                cells.append(f"{d8:.2f} ({rel:.2g} %)")
        print(f"| {m.arch} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
