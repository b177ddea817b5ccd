#!/usr/bin/env python3
"""Choose a guard's gate ``min_share`` (:mod:`restore.guard`) on training images, never on the evaluation set.

    python data_tools/calibrate_guard.py --only derain,weather [--crops 2] [--threads 1] [--json PATH]
    python data_tools/calibrate_guard.py --only derain --guard runs/guard-derain/guard.safetensors
    python data_tools/calibrate_guard.py --only derain --exposed   (the guard for HDR input, on exposed crops)
    python data_tools/calibrate_guard.py --only denoise --model W --guard G   (the RGB denoiser's guard)

The do-no-harm evaluation (``benchmarks/starter_eval.py --do-no-harm``) showed images where the guard keeps a
small share of the model's change (mean weight ``w`` of a few per cent) and that share makes the photo slightly
worse.  A gate leaves the whole image alone when ``w < min_share``.  To choose ``min_share`` without looking at
the evaluation images, this script builds the evaluation's kinds of crops from the *training* images instead:

* ``--crops`` random 256-px crops of every training image (``load_images("train")``; smaller images give one
  centre crop of a multiple of 32 px), 8-bit quantised, positions drawn from ``np.random.default_rng(40000 + k)``;
* for each crop, the evaluation's degradations (``starter_eval.degrade``: rain for derain, rain/haze/snow/raindrop
  for weather), drawn with ``default_rng(41000 + k)`` (the training draws its own degradations from seed 0's
  stream, the evaluation from 30000+), at full strength ("heavy") and lightened to ``synth.LIGHT_STRENGTH``
  ("light");
* every crop through the catalogue model and its guard with the gate off, as the model step runs them, recording
  the guard's mean weight ``w`` and the gain ``PSNR(out, clean) - PSNR(in, clean)`` (RGB, 8-bit output).

For the RGB denoiser (``--only denoise``, :func:`denoise_rows`) each crop is instead developed by a random
synthetic camera, clean and at each ISO level of ``restore.noise.ISO_LEVELS`` (800 and 3200 count as light,
12800 and 51200 as heavy), as ``benchmarks/denoise_eval.py`` builds its cases.

Rule (fixed before the gate was tried on the evaluation set): among the candidate gates ``GRID`` whose gated
crops (degraded crops with ``w`` under the gate) gained at most ``GIVE_UP_DB`` on average (leaving them alone
gives up almost nothing the guard delivers), those that leave the fewest losing crops ungated; of these, the
smallest (no higher than the calibration crops justify).  Clean crops are reported too: under a gate they are left
exactly unchanged.

Caveat: the guard was trained on patches of these images (with other degradation draws), so its weights may be
more confident here than on unseen photos; the evaluation set stays the judge of the result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import starter_eval  # noqa: E402
from data_tools import synth  # noqa: E402
from data_tools.clean_data import load_images  # noqa: E402
from restore import load_model  # noqa: E402
from restore.guard import guard_for, load_guard  # noqa: E402

CROP_SEED, DEGRADE_SEED = 40000, 41000
GRID = (0.0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1)
GIVE_UP_DB = 0.05
MODELS = {"derain": "derain-starter", "weather": "weather-starter", "reflection": "reflection-starter",
          "denoise": "rgb-denoise"}
#: The RGB denoiser's calibration sets: ISO levels of ``restore.noise.ISO_LEVELS`` counted as light and heavy.
DENOISE_SETS = {800: "light", 3200: "light", 12800: "heavy", 51200: "heavy"}


def training_crops(per_image: int, size: int = starter_eval.DNH_CROP) -> list[tuple[str, np.ndarray]]:
    """``(name, crop)``: ``per_image`` random 8-bit crops of ``size`` px (a multiple of 32) of each training image."""
    out = []
    for i, img in enumerate(load_images("train")):
        h, w, _ = img.shape
        s = min(size, h, w) // 32 * 32
        rng = np.random.default_rng(CROP_SEED + i)
        for j in range(per_image if min(h, w) > s else 1):
            r, c = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            out.append((f"train/{i:02d}#{j}", starter_eval.quantise(img[r:r + s, c:c + s])))
    return out


def expose(x: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and its reference as the model step shows HDR input to a same-size model (``hdr: exposure``): both
    divided in linear light by the 99.5th percentile of ``x``'s largest channel (unclamped: an 8-bit crop times
    any gain gives this), clipped to white, sRGB-encoded (:class:`restore.color.ExposureEncoding`)."""
    from restore import color

    lin = color.srgb_to_linear(x)
    p = max(float(np.percentile(lin.max(axis=-1), color.EXPOSURE_PERCENTILE)), 1e-6)

    def one(a: np.ndarray) -> np.ndarray:
        return color.linear_to_srgb(np.clip(color.srgb_to_linear(a) / p, 0.0, 1.0)).astype(np.float32)

    return one(x), one(ref)


def rows_for(starter: str, crops, guard: Path | None = None, exposed: bool = False) -> list[dict]:
    """Per-crop rows of ``starter_eval.measure`` with the catalogue guard (or the ``guard`` file; with ``exposed``
    the catalogue's guard for exposed HDR input), gate off; with ``exposed`` every crop is first :func:`expose`-d."""
    m = load_model(MODELS[starter])
    net = load_guard(guard) if guard is not None else guard_for(MODELS[starter], exposed=exposed)
    if net is None:
        raise SystemExit(f"{MODELS[starter]} has no guard in weights/MANIFEST")
    net.min_share = 0.0
    rows = []
    for k, (name, clean) in enumerate(crops):
        shown = expose(clean, clean)[0] if exposed else clean
        rows.append(starter_eval.measure(starter, MODELS[starter], "clean", "", name, m.module, shown, None, net))
        for kind, heavy in starter_eval.degrade(starter, crops, k, seed_base=DEGRADE_SEED):
            light = synth.lighten(clean, heavy, synth.LIGHT_STRENGTH)
            for group, x in (("light", light), ("heavy", heavy)):
                x, ref = expose(starter_eval.quantise(x), clean) if exposed else (starter_eval.quantise(x), clean)
                rows.append(starter_eval.measure(starter, MODELS[starter], group, kind, name, m.module, x, ref, net))
        print(f"  {starter}: {k + 1}/{len(crops)} crops", end="\r", flush=True)
    print()
    return rows


def denoise_rows(model: str, crops, guard: Path | None = None) -> list[dict]:
    """Per-crop rows for the RGB denoiser (``denoise``): each training crop developed by a random synthetic camera
    (``default_rng(DEGRADE_SEED + k)``), clean and with the noise of each ``ISO_LEVELS`` level (``DENOISE_SETS``
    says light or heavy), 8-bit; through ``model`` at :func:`restore.noise.estimate_sigma` of the input and the
    guard with the gate off, as ``benchmarks/denoise_eval.py`` runs it."""
    import denoise_eval

    from data_tools import unprocess as up
    from restore.noise import ISO_LEVELS, estimate_sigma

    module = load_model(model).module.eval()
    net = load_guard(guard) if guard is not None else guard_for(model)
    if net is None:
        raise SystemExit(f"{model} has no guard in weights/MANIFEST")
    net.min_share = 0.0
    rows = []
    for k, (name, crop) in enumerate(crops):
        rng = np.random.default_rng(DEGRADE_SEED + k)
        mosaic, meta = up.unprocess(crop.astype(np.float32), rng, cfa_pattern=None)
        clean = starter_eval.quantise(up.process(mosaic, meta)).astype(np.float32)
        cases = [("clean", "", clean, None)] + [
            (DENOISE_SETS[iso], str(iso),
             starter_eval.quantise(up.process(up.add_noise(mosaic, a, b, rng), meta)).astype(np.float32), clean)
            for iso, (a, b) in ISO_LEVELS.items()]
        for group, kind, x, ref in cases:
            y = np.clip(denoise_eval.ours(module, x, estimate_sigma(x)), 0.0, 1.0).astype(np.float32)
            out, w = denoise_eval.guarded(net, x, y)
            out = starter_eval.quantise(out)
            row = {"starter": "denoise", "model": model, "set": group, "kind": kind, "image": name, "guard_w": w}
            if ref is None:
                row["psnr_out_y"], row["psnr_out_rgb"] = starter_eval.capped_scores(out, x)
            else:
                row["gain_rgb"] = starter_eval.capped_scores(out, ref)[1] - starter_eval.capped_scores(x, ref)[1]
            rows.append(row)
        print(f"  denoise: {k + 1}/{len(crops)} crops", end="\r", flush=True)
    print()
    return rows


def gate_table(rows: list[dict]) -> tuple[list[dict], float]:
    """Per candidate gate: degraded crops gated, their mean / sum / worst gain, losses left above the gate; and the
    gate the rule (module docstring) picks."""
    deg = [r for r in rows if r["set"] in ("light", "heavy")]
    w = np.array([r["guard_w"] for r in deg])
    g = np.array([r["gain_rgb"] for r in deg])
    table = []
    for t in GRID:
        m = w < t
        row = {"gate": t, "gated": int(m.sum()), "of": len(deg),
               "gated_mean_gain": float(g[m].mean()) if m.any() else 0.0,
               "gated_sum_gain": float(g[m].sum()), "gated_worst": float(g[m].min()) if m.any() else 0.0,
               "losses_kept": int(((~m) & (g < 0)).sum()), "worst_kept": float(g[~m].min()) if (~m).any() else 0.0,
               "clean_gated": sum(1 for r in rows if r["set"] == "clean" and r["guard_w"] < t)}
        table.append(row)
    ok = [r for r in table if r["gated_mean_gain"] <= GIVE_UP_DB]  # never empty: gate 0 gates nothing
    fewest = min(r["losses_kept"] for r in ok)
    return table, min(r["gate"] for r in ok if r["losses_kept"] == fewest)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="derain,weather",
                    help="comma-separated starters (derain, weather, reflection) or denoise (the RGB denoiser)")
    ap.add_argument("--model", default=None,
                    help="denoise only: the denoiser's weights file (default: the catalogue's rgb-denoise)")
    ap.add_argument("--crops", type=int, default=2, help="random crops per training image")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write every per-crop row and the gate tables here")
    ap.add_argument("--exposed", action="store_true",
                    help="calibrate the guard for exposed HDR input: every crop shown as the model step exposes HDR")
    ap.add_argument("--guard", type=Path, default=None,
                    help="a guard file (data_tools/train_guard.py) instead of the catalogue's; one starter in --only")
    args = ap.parse_args(argv)
    starters = [s.strip() for s in args.only.split(",") if s.strip()]
    if not starters or any(s not in MODELS for s in starters):
        ap.error(f"--only: a comma-separated subset of {','.join(MODELS)}")
    if "denoise" in starters and args.exposed:
        ap.error("--exposed is for the starters' HDR guards, not denoise")
    if args.model is not None and starters != ["denoise"]:
        ap.error("--model is for --only denoise (the starters are the catalogue's)")
    if args.guard is not None and (len(starters) != 1 or not args.guard.is_file()):
        ap.error("--guard: an existing guard file, with exactly one starter in --only")
    torch.set_num_threads(args.threads)
    crops = training_crops(args.crops)
    print(f"{len(crops)} training crops; gate rule: of {GRID}, those whose gated degraded crops gained <= "
          f"{GIVE_UP_DB} dB on average; of these, the smallest leaving the fewest losing crops ungated", flush=True)
    doc = {"crops": len(crops), "grid": GRID, "give_up_db": GIVE_UP_DB, "starters": {}}
    for s in starters:
        t0 = time.time()
        if s == "denoise":
            rows = denoise_rows(args.model or MODELS[s], crops, args.guard)
        else:
            rows = rows_for(s, crops, args.guard, args.exposed)
        table, pick = gate_table(rows)
        print(f"\n{s} ({args.model or MODELS[s]}), {time.time() - t0:.0f} s; RGB gains in dB")
        print(f"{'gate':>6s} {'gated':>9s} {'mean':>7s} {'sum':>8s} {'worst':>7s} {'losses kept':>11s} "
              f"{'worst kept':>10s} {'clean gated':>11s}")
        for r in table:
            print(f"{r['gate']:6.3f} {r['gated']:4d}/{r['of']:<4d} {r['gated_mean_gain']:+7.3f} "
                  f"{r['gated_sum_gain']:+8.3f} {r['gated_worst']:+7.3f} {r['losses_kept']:11d} "
                  f"{r['worst_kept']:+10.3f} {r['clean_gated']:11d}")
        print(f"  rule picks min_share = {pick}")
        doc["starters"][s] = {"model": MODELS[s], "seconds": round(time.time() - t0, 1), "table": table,
                              "min_share": pick, "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(starter_eval._json_safe(doc), indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
