#!/usr/bin/env python3
"""Quality cost (and speed) of bf16 autocast on CPU versus fp32, DAT-light on Set5.

For each scale: whole-image inference in fp32 and under torch.autocast('cpu', bfloat16),
PSNR-Y against the HR images (BasicSR conventions, crop = scale), and wall time of the
model calls.  `precision: auto` uses bf16 on CPU only for architectures whose measured
cost here is <= 0.02 dB (the `cpu_bf16` verdict in the architecture descriptor, restore/models/archs/spandrel_dat.py).

Usage:  python benchmarks/cpu_precision.py [--scales 2 3 4]   (needs ../shared/data/sr/Set5)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.io import read  # noqa: E402
from restore.metrics import psnr  # noqa: E402
from restore.models import load_model  # noqa: E402
from restore.tiling import TileSpec, run_tiled  # noqa: E402

SET5 = ROOT.parent / "shared" / "data" / "sr" / "Set5"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for s in a.scales:
        m = load_model(f"dat-light-x{s}")
        res = {}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            ps, secs = [], 0.0
            for hr_path in sorted((SET5 / "HR").glob("*.png")):
                lr = read(SET5 / f"LR_bicubic/X{s}/{hr_path.stem}x{s}.png").color.transpose(2, 0, 1).copy()
                t0 = time.perf_counter()
                out = run_tiled(m.module, lr, scale=s, spec=TileSpec(tile=0), multiple_of=m.multiple_of, min_size=m.min_size, dtype=dtype)
                secs += time.perf_counter() - t0
                sr = np.clip(out.transpose(1, 2, 0), 0, 1)
                hr = read(hr_path).color[: sr.shape[0], : sr.shape[1]]
                ps.append(psnr(sr, hr, crop_border=s))
            res[name] = (float(np.mean(ps)), secs)
            print(f"dat-light-x{s} {name}: PSNR-Y {res[name][0]:.3f} dB, model time {secs:.1f} s", flush=True)
        d = res["bf16"][0] - res["fp32"][0]
        print(f"dat-light-x{s}: bf16 - fp32 = {d:+.3f} dB, speed-up {res['fp32'][1] / res['bf16'][1]:.2f}x", flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
