#!/usr/bin/env python3
"""What tiling costs a global-attention model: tiled vs whole-image output at sizes where both fit.

The model step runs architectures with global attention (DRSformer, Histoformer, Restormer, SCTNet) on
the whole image when its predicted peak memory fits the budget, else in the largest tiles that fit with an
overlap of at least 1/8 tile (``restore.pipeline.stages.whole_or_large_tiles``).  This measures what such
tiles change, on the real pairs in ``../shared/data``: the starters on their own task, each image whole and
tiled at several tile sizes (overlap by the same rule), PSNR (RGB, 8-bit scale) of the tiled output against
the whole-image output, and of each against the clean image (mean and worst image).  It also prints the
tile the rule picks for a 24 MP photo on this machine (measured memory curve, default budget).

Usage:  python benchmarks/whole_vs_tiled.py [--tiles 128 192 256 384]
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

from restore.image import SRGB, Image, Metadata  # noqa: E402
from restore.metrics import psnr  # noqa: E402
from restore.pipeline import load_pipeline  # noqa: E402
from restore.pipeline.stages import Context  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CASES = {
    "weather-starter": ("weather/raindrop/degraded", "weather/raindrop/clean"),
    "derain-starter": ("derain/Rain200H/rainy", "derain/Rain200H/clean"),
}


def load(p: Path) -> np.ndarray:
    return cv2.imread(str(p))[:, :, ::-1].astype(np.float32) / 255


def overlap_for(model: str, tile: int) -> int:
    from restore.models import load_model
    from restore.pipeline.stages import wide_overlap

    m = load_model(model)
    return wide_overlap(m, tile, m.info.overlap)


def run(model: str, img: np.ndarray, tile: int | None) -> tuple[np.ndarray, list[str]]:
    step = {"name": model, "threads": 2, "precision": "fp32"}
    if tile:
        step |= {"tile": tile, "overlap": overlap_for(model, tile)}
    ctx = Context()
    out = load_pipeline({"version": 1, "steps": [{"model": step}]}).process(Image(img, SRGB, Metadata(bit_depth=8)), ctx)
    return out.pixels, ctx.notes


def rule_at(model: str, w: int = 6000, h: int = 4000) -> str:
    from restore.memory import curve_for, default_budget, tile_for_budget
    from restore.models import load_model

    m = load_model(model)
    dev = torch.device("cpu")
    curve = curve_for(m, dev, torch.float32)
    budget = default_budget(dev)
    if curve is None:
        return "no memory curve on this machine"
    t = tile_for_budget(curve, budget, multiple_of=max(1, m.multiple_of), hi=8192)
    return (f"{w}x{h} whole: {curve.predict(w * h) / 2**30:.1f} GiB predicted, budget {budget / 2**30:.2f} GiB -> "
            f"tile {t} px, overlap {overlap_for(model, t)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, nargs="+", default=[128, 192, 256, 384])
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    for model, (deg_dir, clean_dir) in CASES.items():
        pairs = [(p, SHARED / clean_dir / p.name) for p in sorted((SHARED / deg_dir).glob("*.png"))]
        pairs = [(a, b) for a, b in pairs if b.exists()]
        if not pairs:
            print(f"{model}: no pairs in {SHARED / deg_dir}")
            continue
        print(f"\n{model}: {len(pairs)} real pairs ({deg_dir}, {load(pairs[0][0]).shape[1]}x{load(pairs[0][0]).shape[0]})")
        print(f"  rule at 24 MP on this machine: {rule_at(model)}")
        whole = {}
        for a, b in pairs:
            x, y = load(a), load(b)
            whole[a] = (run(model, x, None)[0], y, x)
        w_gain = [psnr(o, y, y_channel=False) - psnr(x, y, y_channel=False) for o, y, x in whole.values()]
        print(f"  whole image: gain over the input {np.mean(w_gain):+.2f} dB (worst image {min(w_gain):+.2f})")
        print("  | tile (overlap) | PSNR tiled vs whole, mean (worst) | gain over input, tiled, mean (worst) | tiled - whole, vs clean, mean (worst) |")
        for t in args.tiles:
            close, gain, delta = [], [], []
            for a, _ in pairs:
                o, y, x = whole[a]
                ot = run(model, x, t)[0]
                close.append(psnr(ot, o, y_channel=False))
                gain.append(psnr(ot, y, y_channel=False) - psnr(x, y, y_channel=False))
                delta.append(psnr(ot, y, y_channel=False) - psnr(o, y, y_channel=False))
            print(f"  | {t} ({overlap_for(model, t)}) | {np.mean(close):.2f} ({min(close):.2f}) dB | {np.mean(gain):+.2f} ({min(gain):+.2f}) dB "
                  f"| {np.mean(delta):+.3f} ({min(delta):+.3f}) dB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
