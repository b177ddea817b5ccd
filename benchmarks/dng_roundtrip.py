#!/usr/bin/env python3
"""The example DNG through pipelines/raw-to-exr.yaml vs rawpy's own linear output and vs the image it was made from.

Usage:  python benchmarks/dng_roundtrip.py
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import rawpy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.io import read  # noqa: E402
from restore.pipeline import load_pipeline  # noqa: E402

dng = ROOT / "examples" / "coffee_raw.dng"
with tempfile.TemporaryDirectory() as d:
    load_pipeline(ROOT / "pipelines" / "raw-to-exr.yaml").run([dng], Path(d))
    out = read(Path(d) / "coffee_raw.exr").pixels
with rawpy.imread(str(dng)) as r:
    ref = r.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True, adjust_maximum_thr=0).astype(np.float32) / 65535
truth = read(ROOT / "examples" / "coffee_raw_reference.exr").pixels
rel = np.abs(out - ref) / np.maximum(ref, 1e-3)
print(f"vs rawpy linear 16-bit postprocess: max relative difference {rel.max():.2e}, max absolute {np.abs(out - ref).max():.2e}")
print(f"vs the known linear image: PSNR {10 * np.log10(1 / np.mean((out - truth) ** 2)):.2f} dB (peak 1.0), "
      f"mean level ratio {out.mean() / truth.mean():.4f} (no rescaling)")
