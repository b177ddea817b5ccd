#!/usr/bin/env python3
"""Measure the starter models (issue 6) against the degraded input and classical baselines.

    python benchmarks/starter_eval.py [--shared ../shared] [--reflection-out /tmp/restore-reflection-check]
                                      [--models derain-starter,weather-starter,reflection-starter]

(a) ``derain-starter`` on ``<shared>/data/derain/Rain200H`` (rainy/ vs clean/ pairs):
    mean PSNR-Y and PSNR-RGB of the rainy input, of ``baselines.derain_guided`` and of
    the starter.
(b) ``weather-starter`` on ``<shared>/data/weather/raindrop`` (degraded/ vs clean/):
    the same with ``baselines.weather_baseline`` and ``baselines.deraindrop_median``.
(b') ``weather-starter`` on each synthetic kind (rain, haze, snow, raindrop) of
    centre crops of the held-out clean images, seeds 20000+.
(c) ``reflection-starter`` on a held-out synthetic set: every ordered pair of the
    held-out clean images (``data_tools/clean_data.py``, split ``heldout``; never
    trained on) blended by ``synth.add_reflection`` with seeds 10000+ (training
    draws from seed 0's stream on other images); then before/after images of
    ``<shared>/data/reflection/**/*.jpg`` (real photos, no ground truth) are
    written to ``--reflection-out`` (outside the repository) for a visual check.

Models run on whole images (reflect-padded to a multiple of 32, cropped back),
fp32, outputs clipped to [0, 1]; PSNR by ``restore.metrics.psnr`` without border
crop.  The evaluation data are never used for training.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_tools import baselines, synth  # noqa: E402
from data_tools.clean_data import load_images  # noqa: E402
from restore import load_model  # noqa: E402
from restore.metrics import psnr  # noqa: E402


def read_rgb(path: Path) -> np.ndarray:
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        raise SystemExit(f"cannot read {path}")
    return im[..., ::-1].astype(np.float32) / 255.0


def write_rgb(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), (np.clip(img, 0, 1)[..., ::-1] * 255).round().astype(np.uint8))


def run_model(module: torch.nn.Module, img: np.ndarray, multiple: int = 32) -> np.ndarray:
    h, w, _ = img.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect")
    with torch.inference_mode():
        y = module(x)
    return y[0, :, :h, :w].permute(1, 2, 0).clamp(0, 1).numpy().astype(np.float32)


def quantise(img: np.ndarray) -> np.ndarray:
    """8-bit round trip, as a written PNG would be."""
    return np.round(np.clip(img, 0, 1) * 255) / 255.0


def scores(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    out = quantise(out)
    return psnr(out, ref, y_channel=True), psnr(out, ref, y_channel=False)


def paired(folder: Path, deg: str) -> list[tuple[Path, Path]]:
    pairs = []
    for p in sorted((folder / deg).glob("*.png")):
        c = folder / "clean" / p.name
        if c.is_file():
            pairs.append((p, c))
    if not pairs:
        raise SystemExit(f"no {deg}/clean pairs under {folder}")
    return pairs


def eval_pairs(title: str, pairs, methods: dict) -> list[tuple]:
    rows = {name: [] for name in ["input", *methods]}
    for deg, cln in pairs:
        x, y = read_rgb(deg), read_rgb(cln)
        rows["input"].append(scores(x, y))
        for name, fn in methods.items():
            rows[name].append(scores(fn(x), y))
    return [(title, name, len(v), float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v])))
            for name, v in rows.items()]


def centre_crop(img: np.ndarray, size: int = 256) -> np.ndarray:
    """Centre crop of at most ``size`` px, a multiple of 32 (quick, and no padding in the model)."""
    h, w, _ = img.shape
    s = min(size, h, w) // 32 * 32
    return img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


def weather_heldout(module, name: str) -> list[tuple]:
    """Each weather kind on the held-out clean images (centre crops, seeds 20000+; never trained on)."""
    out = []
    for kind, fn in synth.DEGRADATIONS.items():
        rows = {"input": [], name: []}
        for i, img in enumerate(load_images("heldout")):
            c = centre_crop(img)
            x = quantise(fn(c, np.random.default_rng(20000 + i)))
            rows["input"].append(scores(x, c))
            rows[name].append(scores(run_model(module, x), c))
        out += [(f"weather {kind} (held-out synthetic)", n, len(v), float(np.mean([a for a, _ in v])),
                 float(np.mean([b for _, b in v]))) for n, v in rows.items()]
    return out


def reflection_heldout(module) -> list[tuple]:
    ims = load_images("heldout")
    rows = {"input": [], "reflection-starter": []}
    seed = 10000
    for i, t in enumerate(ims):
        for j, r in enumerate(ims):
            if i == j:
                continue
            rng = np.random.default_rng(seed)
            seed += 1
            t_c = centre_crop(t)
            x = quantise(synth.add_reflection(t_c, rng, reflection=r))
            rows["input"].append(scores(x, t_c))
            rows["reflection-starter"].append(scores(run_model(module, x), t_c))
    return [("reflection (held-out synthetic)", n, len(v), float(np.mean([a for a, _ in v])),
             float(np.mean([b for _, b in v]))) for n, v in rows.items()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--reflection-out", type=Path, default=Path("/tmp/restore-reflection-check"))
    ap.add_argument("--models", default="derain-starter,weather-starter,reflection-starter",
                    help="catalogue names or .safetensors paths, in the order derain,weather,reflection")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.reflection_out.resolve().is_relative_to(ROOT):
        ap.error("--reflection-out must lie outside the repository")
    torch.set_num_threads(args.threads)
    names = args.models.split(",")
    t0 = time.time()
    table = []

    m = load_model(names[0])
    print(f"derain model: {names[0]} -> {m.arch}", flush=True)
    table += eval_pairs("derain Rain200H", paired(args.shared / "data/derain/Rain200H", "rainy"), {
        "baseline derain_guided": baselines.derain_guided,
        names[0]: lambda x: run_model(m.module, x),
    })
    m = load_model(names[1])
    print(f"weather model: {names[1]} -> {m.arch}", flush=True)
    table += eval_pairs("weather raindrop", paired(args.shared / "data/weather/raindrop", "degraded"), {
        "baseline weather_baseline": baselines.weather_baseline,
        "baseline deraindrop_median": baselines.deraindrop_median,
        names[1]: lambda x: run_model(m.module, x),
    })
    table += weather_heldout(m.module, names[1])
    m = load_model(names[2])
    print(f"reflection model: {names[2]} -> {m.arch}", flush=True)
    table += reflection_heldout(m.module)
    real = sorted(p for p in (args.shared / "data/reflection").rglob("*.jpg"))
    for p in real:
        x = read_rgb(p)
        y = run_model(m.module, x)
        write_rgb(args.reflection_out / f"{p.stem}_before.png", x)
        write_rgb(args.reflection_out / f"{p.stem}_after.png", y)
        write_rgb(args.reflection_out / f"{p.stem}_side_by_side.png", np.concatenate([x, y], axis=1))

    print()
    print(f"{'set':38s} {'method':28s} {'n':>3s} {'PSNR-Y':>8s} {'PSNR-RGB':>9s} {'dY vs in':>9s}")
    base = {}
    for title, name, n, py, prgb in table:
        if name == "input":
            base[title] = py
        print(f"{title:38s} {name:28s} {n:3d} {py:8.2f} {prgb:9.2f} {py - base[title]:+9.2f}")
    print(f"\nreflection before/after of {len(real)} real photos written to {args.reflection_out}")
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
