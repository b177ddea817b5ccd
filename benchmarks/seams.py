#!/usr/bin/env python3
"""Seams: tiled vs whole-image DAT-light output, per-pixel, at tile 128 with several overlaps.

DAT's channel self-attention spans its whole input, so a tile never sees exactly
what the whole image sees; this measures how far apart the two are (in 8-bit
levels, /255) for the overlaps a user would pick.

Usage:  python benchmarks/seams.py [--model dat-light-x2] [--tile 128] [--overlaps 16 32 48] IMAGES...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from restore.io import read  # noqa: E402
from restore.models import load_model  # noqa: E402
from restore.tiling import TileSpec, run_tiled  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--model", default="dat-light-x2")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--overlaps", type=int, nargs="+", default=[16, 32, 48])
    a = ap.parse_args()
    m = load_model(a.model)
    for path in a.images:
        img = read(path).color.transpose(2, 0, 1).copy()
        whole = run_tiled(m.module, img, scale=m.scale, spec=TileSpec(tile=0), multiple_of=m.multiple_of, min_size=m.min_size)
        qw = np.clip(np.floor(whole * 255 + 0.5), 0, 255)
        for ov in a.overlaps:
            t = run_tiled(m.module, img, scale=m.scale, spec=TileSpec(tile=a.tile, overlap=ov), multiple_of=m.multiple_of, min_size=m.min_size)
            d = np.abs(np.clip(np.floor(t * 255 + 0.5), 0, 255) - qw)
            print(f"{path.name:16s} {img.shape[2]}x{img.shape[1]} tile {a.tile} overlap {ov:3d}: "
                  f"max {d.max():.0f}/255, 99.9th pct {np.percentile(d, 99.9):.0f}/255, "
                  f"pixels > 1/255: {100 * (d > 1).mean():.3f}%, mean {d.mean():.3f}/255", flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
