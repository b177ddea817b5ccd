#!/usr/bin/env python3
"""``restore run`` on Set5 with default settings vs spandrel's own eager fp32 whole-image call (issue 8).

Baseline: the DAT-light x2 spandrel ``ImageModelDescriptor`` (built by spandrel itself) called on each whole
LR image as a (1, 3, H, W) fp32 tensor under ``torch.inference_mode`` - what a
script that loads the model with spandrel does.  Ours: ``restore run
pipelines/sr-x2.yaml <Set5 LR x2> -o <tmp>`` with the pipeline as shipped
(``precision: auto``, tile 256 / overlap 32), timed per item by the batch
report (decode + model + encode + atomic write of each file) and, separately,
the whole command (interpreter start, model load, worker start included).
Quality: mean PSNR-Y (crop 2) of both against Set5 HR.  Each side runs
``--repeat`` times; the best is reported.  Usage:

    python benchmarks/set5_throughput.py [--repeat 3]     (needs ../shared/data/sr/Set5)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import spandrel
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.io import read  # noqa: E402
from restore.metrics import psnr  # noqa: E402
from restore.models import resolve  # noqa: E402
from restore.models.loader import load_state_dict  # noqa: E402

SET5 = ROOT.parent / "shared" / "data" / "sr" / "Set5"


def mean_psnr(outputs: dict[str, np.ndarray]) -> float:
    vals = []
    for stem, sr in outputs.items():
        hr = read(SET5 / "HR" / f"{stem}.png").color[: sr.shape[0], : sr.shape[1]]
        vals.append(psnr(np.clip(sr, 0, 1), hr, crop_border=2))
    return float(np.mean(vals))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    lr_dir = SET5 / "LR_bicubic" / "X2"
    lrs = {p.stem[:-2]: read(p).color for p in sorted(lr_dir.glob("*.png"))}
    px = sum(v.shape[0] * v.shape[1] for v in lrs.values()) / 1e6
    # spandrel's own model, as a script gets it: no restore fused attention (restore.models.fused_attention)
    desc = spandrel.ModelLoader().load_from_state_dict(load_state_dict(resolve("dat-light-x2")[1])[0]).eval()
    best, outs = float("inf"), {}
    for _ in range(a.repeat):
        t = 0.0
        for stem, lr in lrs.items():
            x = torch.from_numpy(lr.transpose(2, 0, 1).copy())[None]
            t0 = time.perf_counter()
            with torch.inference_mode():
                y = desc(x)
            t += time.perf_counter() - t0
            outs[stem] = y[0].permute(1, 2, 0).numpy()
        best = min(best, t)
    base_psnr = mean_psnr(outs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; Set5 LR x2: {len(lrs)} images, {px:.3f} Mpx")
    print(f"spandrel eager fp32 whole image: {best:.2f} s ({px / best:.4f} Mpx/s), PSNR-Y {base_psnr:.3f} dB")
    best_items, best_wall, ours = float("inf"), float("inf"), {}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(a.repeat):
            out = Path(d) / "out"
            code = ("import json, sys, time; from pathlib import Path; from restore.pipeline import load_pipeline, collect_inputs;"
                    f"p = load_pipeline({str(ROOT / 'pipelines' / 'sr-x2.yaml')!r}); ins = collect_inputs([{str(lr_dir)!r}]);"
                    f"r = p.run(ins, Path({str(out)!r}), overwrite=True, journal=True, timeout_s=600);"
                    "print(json.dumps([x.seconds for x in r.results if x.status == 'done']))")
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            secs = json.loads(res.stdout.strip().splitlines()[-1])
            assert len(secs) == len(lrs), res.stdout + res.stderr
            best_items, best_wall = min(best_items, sum(secs)), min(best_wall, wall)
        for stem in lrs:
            ours[stem] = read(out / f"{stem}x2_x2.png").color
    ours_psnr = mean_psnr(ours)
    print(f"restore run (sr-x2.yaml, defaults): items {best_items:.2f} s ({px / best_items:.4f} Mpx/s), "
          f"whole command {best_wall:.2f} s; PSNR-Y {ours_psnr:.3f} dB")
    print(f"throughput ratio (items): {best / best_items:.2f}x; (whole command, incl. start-up): {best / best_wall:.2f}x; "
          f"PSNR-Y difference {ours_psnr - base_psnr:+.3f} dB")


if __name__ == "__main__":
    main()
