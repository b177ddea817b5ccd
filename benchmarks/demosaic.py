#!/usr/bin/env python3
"""Learned demosaicking (Gharbi et al. 2016 weights) vs LibRaw's algorithms on mosaics of real photos.

For each Set5 HR image: linear Rec.709 = srgb_to_linear(HR); an RGGB DNG is written from it with
data_tools/make_examples.write_dng (14-bit, black 512, white 16383, as-shot neutral 0.5/1/0.7,
colour matrix); LibRaw develops the DNG with each algorithm (linear, camera WB, no rescaling);
the learned network develops the same DNG through restore's own develop option
(``RawOptions(demosaic="learned")`` = ``develop: {demosaic: learned}`` in a pipeline).
Outputs are sRGB-encoded and compared with the HR image: mean PSNR (RGB, 8-bit peak, 4 px border
shaved).  Usage:  python benchmarks/demosaic.py   (needs ../shared/data/sr/Set5 and demosaicnet)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import rawpy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "data_tools"))

from make_examples import AS_SHOT_NEUTRAL, BLACK, WHITE, write_dng  # noqa: E402

from restore.color import linear_to_srgb, srgb_to_linear  # noqa: E402
from restore.io import read  # noqa: E402
from restore.io.raw import RawOptions, read_raw  # noqa: E402

ALGOS = ["LINEAR", "VNG", "PPG", "AHD", "DCB", "DHT", "AAHD"]


def psnr(a, b, crop=4):
    a = np.clip(a, 0, 1)[crop:-crop, crop:-crop]
    b = b[crop:-crop, crop:-crop]
    return 10 * np.log10(1.0 / np.mean((np.round(a * 255) / 255 - b) ** 2))


def main() -> None:
    set5 = ROOT.parent / "shared" / "data" / "sr" / "Set5" / "HR"
    scores = {a: [] for a in ["learned"] + ALGOS}
    with tempfile.TemporaryDirectory() as d:
        for p in sorted(set5.glob("*.png")):
            hr = read(p).color
            hr = hr[: hr.shape[0] // 2 * 2, : hr.shape[1] // 2 * 2]
            cam = srgb_to_linear(hr) * np.asarray(AS_SHOT_NEUTRAL, np.float32)
            mos = np.empty(cam.shape[:2], np.float32)
            mos[0::2, 0::2], mos[0::2, 1::2] = cam[0::2, 0::2, 0], cam[0::2, 1::2, 1]
            mos[1::2, 0::2], mos[1::2, 1::2] = cam[1::2, 0::2, 1], cam[1::2, 1::2, 2]
            cfa = np.round(BLACK + mos * (WHITE - BLACK)).astype(np.uint16)
            dng = Path(d) / f"{p.stem}.dng"
            write_dng(dng, cfa, {"make": "restore", "model": "benchmark"})
            for a in ALGOS:
                with rawpy.imread(str(dng)) as r:
                    lin = r.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True,
                                        adjust_maximum_thr=0, demosaic_algorithm=getattr(rawpy.DemosaicAlgorithm, a)).astype(np.float32) / 65535
                scores[a].append(psnr(linear_to_srgb(lin), hr))
            out = read_raw(dng, RawOptions(demosaic="learned", white_balance="camera")).pixels
            scores["learned"].append(psnr(linear_to_srgb(out), hr))
            print(p.stem, "  ".join(f"{k} {v[-1]:.2f}" for k, v in scores.items()), flush=True)
    print("mean PSNR (dB): " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in sorted(scores.items(), key=lambda kv: -np.mean(kv[1]))))


if __name__ == "__main__":
    main()
