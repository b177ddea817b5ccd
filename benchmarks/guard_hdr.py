#!/usr/bin/env python3
"""Do-no-harm of a guarded starter on clean photos given as scene-linear HDR (issue 20).

    python benchmarks/guard_hdr.py [--model derain-starter] [--guard auto|off|FILE] [--gains 1,4,16] [--threads 1]
                                   [--degraded] [--exr] [--hdr auto|exposure|log]

The clean set of ``benchmarks/starter_eval.py --do-no-harm`` (20 centre crops of 256 px: 5 held-out training-set
images and the 15 HR images of ``../shared/data/sr``), each decoded to linear Rec.709 (``restore.color.srgb_to_linear``)
and multiplied by a gain, goes through the ``model`` step as a ``LINEAR_REC709`` image.  With a peak above 1
the step encodes the pixels for the network as ``--hdr`` says (the step's ``hdr`` option: ``auto``, the default,
is the display exposure of :class:`restore.color.ExposureEncoding` for these same-size starters; ``log`` the log
encoding of :func:`restore.color.hdr_encode`) and the guard sees that encoding; gain 1 keeps the peak at most 1
and so the sRGB encoding, the case the guards were trained for.  Score: PSNR(output, input) in the log encoding
of the input's peak (at least 1), capped at 100 dB; the bound of issue 20 is 40 dB on every image.  ``--guard
FILE`` swaps a guard file in for the catalogue's (with the gate ``--min-share``).

``--degraded`` also measures the light and heavy degradations of ``starter_eval.py --do-no-harm`` (the same draws,
``starter_eval.degrade``, seeds 30000 + i; light = clean + 0.3 (heavy - clean); both 8-bit quantised) given the same
way as HDR: the gain in dB of the output over the degraded input, both against the clean crop, in the log encoding
of the degraded input's peak; issue 20 asks for a gain >= 0 on every light image.

``--exr`` also runs the real scene-linear EXRs of ``<shared>/data/hdr_images`` (whole images, colour converted to
linear Rec.709 as the step does, alpha dropped) and scores PSNR(output, input) as above.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import starter_eval  # noqa: E402
from restore import color  # noqa: E402
from restore.guard import load_guard  # noqa: E402
from restore.image import LINEAR_REC709, Image, Metadata  # noqa: E402
from restore.pipeline.base import Context  # noqa: E402
from restore.pipeline.steps.model import ModelOptions, ModelStage  # noqa: E402

CLEAN_MIN_DB = 40.0


def clean_psnr(stage: ModelStage, crops, gain: float) -> list[float]:
    """PSNR(output, input) per crop, in the log encoding of the input's peak (capped at 100 dB)."""
    out = []
    for _, x in crops:
        lin = (color.srgb_to_linear(x.astype(np.float32)) * gain).astype(np.float32)
        y = stage(Image(lin, LINEAR_REC709, Metadata()), Context()).pixels
        out.append(min(100.0, _log_psnr(lin, y, max(float(lin.max()), 1.0))))
    return out


def _log_psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    """PSNR of linear ``b`` against linear ``a`` in the log encoding of ``peak`` (dB, uncapped)."""
    ea, eb = color.hdr_encode(a, peak), color.hdr_encode(b, peak)
    return float(10 * np.log10(1.0 / max(float(np.mean((ea.astype(np.float64) - eb) ** 2)), 1e-12)))


def degraded_gains(stage: ModelStage, starter: str, crops, gain: float) -> dict[str, list[tuple[str, float]]]:
    """``{"light": [(name, gain_db)], "heavy": [...]}`` of the step on HDR versions of the do-no-harm draws."""
    out: dict[str, list[tuple[str, float]]] = {"light": [], "heavy": []}
    for i, (name, clean) in enumerate(crops):
        c = (color.srgb_to_linear(clean.astype(np.float32)) * gain).astype(np.float32)
        for kind, heavy in starter_eval.degrade(starter, crops, i):
            light = starter_eval.synth.lighten(clean, heavy, starter_eval.synth.LIGHT_STRENGTH)
            for level, deg in (("light", light), ("heavy", heavy)):
                x = (color.srgb_to_linear(starter_eval.quantise(deg).astype(np.float32)) * gain).astype(np.float32)
                y = stage(Image(x, LINEAR_REC709, Metadata()), Context()).pixels
                peak = max(float(x.max()), 1.0)
                out[level].append((f"{name} {kind}", _log_psnr(c, y, peak) - _log_psnr(c, x, peak)))
    return out


def exr_psnr(stage: ModelStage, folder: Path) -> list[tuple[str, float, float]]:
    """``(name, peak, PSNR(output, input))`` for each ``*.exr`` in ``folder`` (capped at 100 dB)."""
    from restore.io import read_exr

    out = []
    for path in sorted(folder.glob("*.exr")):
        im = read_exr(path)
        lin = color.convert(im, LINEAR_REC709).color[:, :, :3]
        x = np.ascontiguousarray(np.maximum(lin, 0.0), dtype=np.float32)
        y = stage(Image(x, LINEAR_REC709, Metadata()), Context()).pixels
        peak = max(float(x.max()), 1.0)
        out.append((path.name, peak, min(100.0, _log_psnr(x, y, peak))))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="derain-starter")
    ap.add_argument("--guard", default="auto", help="auto (the catalogue's), off, or a guard .safetensors file")
    ap.add_argument("--gains", default="1,4,16", help="comma-separated; empty for none (with --exr)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--degraded", action="store_true", help="also light and heavy degradations (gain over the input)")
    ap.add_argument("--exr", action="store_true", help="also the real EXRs of <shared>/data/hdr_images")
    ap.add_argument("--hdr", choices=("auto", "exposure", "log"), default="auto", help="the model step's hdr option")
    ap.add_argument("--min-share", type=float, default=0.0, help="--guard FILE: its gate (restore.guard)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    crops, note = starter_eval.clean_crops(args.shared)
    stage = ModelStage(ModelOptions(name=args.model, threads=args.threads, hdr=args.hdr,
                                    guard="off" if args.guard == "off" else "auto"))
    stage.prepare()
    if args.guard not in ("auto", "off"):
        stage.guard = load_guard(args.guard)  # for every input: the catalogue's guard for exposed HDR is dropped
        stage.guard.min_share = args.min_share
        stage.guard_exposed = None
    print(f"{args.model}, guard {args.guard}, hdr {args.hdr}; {note}")
    for gain in (float(g) for g in args.gains.split(",") if g.strip()):
        ps = clean_psnr(stage, crops, gain)
        below = [n for (n, _), p in zip(crops, ps) if p < CLEAN_MIN_DB]
        print(f"gain {gain:g}: PSNR(output, input) mean {np.mean(ps):.2f} dB, worst {min(ps):.2f} dB; "
              f"{len(below)} of {len(ps)} below {CLEAN_MIN_DB:g} dB" + (f" ({', '.join(below)})" if below else ""),
              flush=True)
        if args.degraded:
            starter = args.model.split("-")[0]
            for level, rows in degraded_gains(stage, starter, crops, gain).items():
                g = [v for _, v in rows]
                worst = min(rows, key=lambda r: r[1])
                print(f"gain {gain:g}, {level}: output minus input mean {np.mean(g):+.2f} dB, worst {worst[1]:+.2f} dB "
                      f"({worst[0]}); {sum(v < 0 for v in g)} of {len(g)} below 0", flush=True)
    if args.exr:
        folder = args.shared / "data" / "hdr_images"
        if not folder.is_dir():
            print(f"--exr: {folder} not found: skipped", flush=True)
        for name, peak, p in exr_psnr(stage, folder) if folder.is_dir() else []:
            print(f"{name} (peak {peak:.2f}): PSNR(output, input) {p:.2f} dB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
