#!/usr/bin/env python3
"""Fused window attention (restore.models.fused_attention) vs spandrel's official forwards.

For each model: the official spandrel module and a deep copy given
``fuse_attention``, each called on the same random ``--size`` x ``--size`` input
under ``torch.inference_mode`` in fp32 and under bf16 autocast; best of
``--repeat`` calls after one warm-up.  Reports seconds, the speed-up and the
largest output difference.  DAT-light x2 uses its shipped weights; SwinIR-light
x2, HAT-S x2 and RGT-S x2 (the papers' configurations) random weights, which time the
same.  Usage:

    python benchmarks/fused_attention.py [--size 96] [--repeat 2]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import spandrel
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.models import resolve  # noqa: E402
from restore.models.fused_attention import fuse_attention  # noqa: E402
from restore.models.loader import load_state_dict  # noqa: E402


def models():
    from spandrel.architectures.HAT.__arch.HAT import HAT
    from spandrel.architectures.RGT.__arch.rgt import RGT
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

    yield "DAT-light x2", spandrel.ModelLoader().load_from_state_dict(load_state_dict(resolve("dat-light-x2")[1])[0]).model
    yield "SwinIR-light x2", SwinIR(img_size=64, embed_dim=60, depths=[6] * 4, num_heads=[6] * 4, window_size=8, mlp_ratio=2,
                                    upscale=2, upsampler="pixelshuffledirect")
    yield "HAT-S x2", HAT(img_size=64, embed_dim=144, depths=[6] * 6, num_heads=[6] * 6, window_size=16, compress_ratio=24,
                          squeeze_factor=24, conv_scale=0.01, overlap_ratio=0.5, mlp_ratio=2, upscale=2, upsampler="pixelshuffle")
    yield "RGT-S x2", RGT(img_size=64, embed_dim=180, depth=[6] * 6, num_heads=[6] * 6, mlp_ratio=2.0, upscale=2,
                          split_size=[8, 32], c_ratio=0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    x = torch.rand(1, 3, a.size, a.size, generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input 1x3x{a.size}x{a.size}")
    print("| model | precision | official | fused | speed-up | max abs difference |\n|---|---|---|---|---|---|")
    for name, official in models():
        official.eval()
        fused = copy.deepcopy(official)
        n = fuse_attention(fused)
        for prec in ("fp32", "bf16"):
            res = {}
            for tag, mod in (("official", official), ("fused", fused)):
                with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=prec == "bf16"):
                    y = mod(x).float()
                    best = float("inf")
                    for _ in range(a.repeat):
                        t0 = time.perf_counter()
                        mod(x)
                        best = min(best, time.perf_counter() - t0)
                res[tag] = (best, y)
            (t0, y0), (t1, y1) = res["official"], res["fused"]
            print(f"| {name} ({n} modules fused) | {prec} | {t0:.3f} s | {t1:.3f} s | {t0 / t1:.2f}x | {(y0 - y1).abs().max().item():.1e} |", flush=True)


if __name__ == "__main__":
    main()
