#!/usr/bin/env python3
"""int8 dynamic quantisation of the linear layers vs fp32 and bf16 autocast, DAT-light on Set5 (issue 8).

``torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, qint8)`` (weights
int8 per tensor, activations quantised per call; convolutions and attention
stay fp32) on the model restore loads (fused attention, fp32 head/tail).
Whole LR images under ``torch.inference_mode``; PSNR-Y against Set5 HR
(crop = scale) and the summed model time.  Usage:

    python benchmarks/int8_dynamic.py [--scale 2]     (needs ../shared/data/sr/Set5)
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.io import read  # noqa: E402
from restore.metrics import psnr  # noqa: E402
from restore.models import load_model  # noqa: E402

SET5 = ROOT.parent / "shared" / "data" / "sr" / "Set5"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=2)
    a = ap.parse_args()
    s = a.scale
    lrs = {p.stem[: -len(f"x{s}")]: read(p).color for p in sorted((SET5 / "LR_bicubic" / f"X{s}").glob("*.png"))}
    hrs = {k: read(SET5 / "HR" / f"{k}.png").color for k in lrs}
    base = load_model(f"dat-light-x{s}").module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(base), {torch.nn.Linear}, dtype=torch.qint8)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, quantized engine {torch.backends.quantized.engine}")
    for name, m, bf16 in (("fp32", base, False), ("bf16 autocast", base, True), ("int8 dynamic linear", q, False)):
        t, ps = 0.0, []
        for k, lr in lrs.items():
            x = torch.from_numpy(lr.transpose(2, 0, 1).copy())[None]
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                m(x[..., :48, :48])  # warm-up
                t0 = time.perf_counter()
                y = m(x)
                t += time.perf_counter() - t0
            sr = y.float()[0].permute(1, 2, 0).numpy()
            ps.append(psnr(np.clip(sr, 0, 1), hrs[k][: sr.shape[0], : sr.shape[1]], crop_border=s))
        print(f"dat-light-x{s} {name}: PSNR-Y {np.mean(ps):.3f} dB, model time {t:.2f} s", flush=True)


if __name__ == "__main__":
    main()
