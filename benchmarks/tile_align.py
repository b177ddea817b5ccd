#!/usr/bin/env python3
"""Tile alignment and per-call cost of DAT-light x2 with fused attention (issue 8).

1. ``run_tiled`` on a 512x512 synthetic image, tile 128 / overlap 16, with tile
   sides aligned to 32 (DAT's attention window; balanced tiles become 128 px)
   and unaligned (116 px), in fp32 and under bf16 autocast: one run each.
2. One forward of the model at 116, 140 and 148 px (our 128-tile, our 148-tile
   and the Real-ESRGAN loop's 128 + 2 x 10 input), best of 5 after a warm-up.

Usage:  python benchmarks/tile_align.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.bench import synthetic_image  # noqa: E402
from restore.models import load_model  # noqa: E402
from restore.tiling import TileSpec, run_tiled  # noqa: E402


def main() -> None:
    m = load_model("dat-light-x2")
    img = synthetic_image(512, 512)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for dtype in (torch.float32, torch.bfloat16):
        for align in (32, 1):
            t0 = time.perf_counter()
            run_tiled(m.module, img, scale=2, spec=TileSpec(128, 16, align=align), multiple_of=m.multiple_of,
                      min_size=m.min_size, device="cpu", dtype=dtype, layout="hwc")
            print(f"512x512 tile 128/16 {str(dtype).replace('torch.', '')} align {align}: {time.perf_counter() - t0:.2f} s", flush=True)
    for side in (116, 140, 148):
        x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            m.module(x)
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                m.module(x)
                best = min(best, time.perf_counter() - t0)
        print(f"one fp32 call at {side} px: {best * 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
