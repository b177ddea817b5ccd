#!/usr/bin/env python3
"""RAW denoiser evaluation (issue 19): ours vs non-local means vs BM3D on unprocessed held-out images.

    python benchmarks/raw_denoise_eval.py [--weights weights/raw-denoise.safetensors] [--bm3d-images 8]
                                          [--json benchmarks/raw_denoise_eval.json]

Data: the HR images of ``../shared/data/sr`` (Set5, then the BSD100 subset; evaluation only, never trained on),
cropped top-left to multiples of 16 px (packed planes a multiple of 8, the U-Net's requirement), each unprocessed
(:func:`data_tools.unprocess.unprocess`) with ``default_rng(10_000 + i)`` (random camera and Bayer pattern), packed
to R, G1, G2, B; noise ``add_noise`` at each of ``restore.noise.ISO_LEVELS`` (800, 3200, 12800, 51200) with
``default_rng(20_000 + 100 * i + k)``.

Methods (all on the four packed planes; outputs clipped to [0, 1] before scoring, the noisy input too):

* ``noisy``: the input.
* ``nlm``: OpenCV ``cv2.fastNlMeansDenoising`` per plane on uint16 (``(x + 0.0625) / 1.0625 * 65535``, so noise
  below black survives), ``normType=NORM_L1``, template 5, search 21, ``h = f * sigma`` with sigma
  ``sqrt(a * mean(plane) + b)`` (the plane's mean level) in uint16 units; the factor ``f`` per ISO level is chosen
  from {0.5, 0.75, 1, 1.5, 2, 3} by mean raw PSNR on 256 px crops of three *training* images of
  ``data_tools/clean_data.py`` (not on the evaluation images).
* ``bm3d``: PyPI ``bm3d`` (Makinen, Azzari, Foi), default profile, per plane, inside the generalised Anscombe
  transform for Poisson-Gaussian noise (Makitalo & Foi 2013: ``2 sqrt(z/a + 3/8 + b/a^2)``, BM3D with
  ``sigma_psd=1``, closed-form approximation of the exact unbiased inverse).  Slow on a CPU: run on the first
  ``--bm3d-images`` images (Set5 first); its numbers are compared with ours on that subset.
* ``ours``: ``RawDenoiseUNet`` from ``--weights`` (``restore.load_model`` path: ``restore.models.loader``), input
  the noisy planes + ``sigma_map(noisy, a, b, 4)``, fp32, ``torch.set_num_threads(2)``.

The noisy/NLM/BM3D scores do not depend on the weights: ``--baselines-only`` computes them (one thread) into
``--baseline-cache``, and later runs reuse them when images, levels and NLM factors match; BM3D is then timed
again on the first image at ISO 3200.

Scores: PSNR in linear raw (packed planes, peak 1) and after development (:func:`data_tools.unprocess.process`,
clean and denoised alike, to 8-bit sRGB, peak 255); mean and worst image per level; time per raw megapixel
(mosaic pixels) for ours and BM3D.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_tools import unprocess as up  # noqa: E402
from restore.noise import ISO_LEVELS  # noqa: E402

SR = ROOT.parent / "shared" / "data" / "sr"
NLM_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
NLM_OFFSET = 0.0625
NLM_TEMPLATE, NLM_SEARCH = 5, 21


def eval_images() -> list[tuple[str, np.ndarray]]:
    paths = sorted((SR / "Set5" / "HR").glob("*.png")) + sorted((SR / "BSD100_subset" / "HR").glob("*.png"))
    if not paths:
        raise SystemExit(f"no evaluation images under {SR}")
    out = []
    for p in paths:
        im = cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0
        h, w = im.shape[0] // 16 * 16, im.shape[1] // 16 * 16
        out.append((f"{p.parent.parent.name}/{p.name}", np.ascontiguousarray(im[:h, :w])))
    return out


def psnr(x: np.ndarray, ref: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(x, np.float64) - np.asarray(ref, np.float64)) ** 2))
    return float(10 * np.log10(peak * peak / max(mse, 1e-20)))


def srgb8(packed: np.ndarray, meta: dict) -> np.ndarray:
    return np.round(up.process(np.clip(packed, 0.0, 1.0), meta) * 255.0)


def plane_sigma(plane: np.ndarray, a: float, b: float) -> float:
    return float(np.sqrt(a * max(float(np.mean(plane)), 0.0) + b))


def nlm(noisy: np.ndarray, a: float, b: float, factor: float) -> np.ndarray:
    scale = 65535.0 / (1.0 + NLM_OFFSET)
    out = np.empty_like(noisy)
    for c, plane in enumerate(noisy):
        u = np.clip(np.round((plane + NLM_OFFSET) * scale), 0, 65535).astype(np.uint16)
        h = factor * plane_sigma(plane, a, b) * scale
        d = cv2.fastNlMeansDenoising(u, h=[float(h)], templateWindowSize=NLM_TEMPLATE,
                                     searchWindowSize=NLM_SEARCH, normType=cv2.NORM_L1)
        out[c] = d.astype(np.float32) / scale - NLM_OFFSET
    return out


def bm3d_gat(noisy: np.ndarray, a: float, b: float) -> np.ndarray:
    import bm3d

    s2 = b / (a * a)  # read-noise variance in electrons^2
    out = np.empty_like(noisy)
    for c, plane in enumerate(noisy):
        f = 2.0 * np.sqrt(np.maximum(plane.astype(np.float64) / a + 0.375 + s2, 0.0))
        d = np.maximum(np.asarray(bm3d.bm3d(f, sigma_psd=1.0), np.float64), 1.0)
        r = np.sqrt(1.5)
        inv = 0.25 * d**2 + 0.25 * r / d - 1.375 / d**2 + 0.625 * r / d**3 - 0.125 - s2
        out[c] = (np.maximum(inv, 0.0) * a).astype(np.float32)
    return out


def load_ours(path: Path, arch: str = "RawDenoiseUNet") -> torch.nn.Module:
    """The network in ``path`` (fp32, eval mode), refused in one line unless it is an ``arch``."""
    from restore.models.loader import detect, load_state_dict, read_hparams

    sd, meta = load_state_dict(path)
    desc = detect(sd, path, read_hparams(path, meta))
    if str(desc.architecture.id) != arch:
        raise SystemExit(f"{path}: detected {desc.architecture.id}, expected {arch}")
    return desc.model.float().eval()


def ours(model: torch.nn.Module, noisy: np.ndarray, a: float, b: float) -> np.ndarray:
    x = np.concatenate([noisy, up.sigma_map(noisy, a, b, 4)])[None]
    with torch.inference_mode():
        return model(torch.from_numpy(x))[0].numpy()


def make_case(img: np.ndarray, img_seed: int, noise_seed: int, a: float, b: float):
    mosaic, meta = up.unprocess(img, np.random.default_rng(img_seed), cfa_pattern=None)
    clean = up.pack_bayer(mosaic, meta["cfa_pattern"])
    return clean, up.add_noise(clean, a, b, np.random.default_rng(noise_seed)), meta


def calibrate_nlm() -> dict[int, float]:
    """Per ISO level, the NLM factor with the best mean raw PSNR on crops of three training images."""
    from data_tools.clean_data import load_images

    ims = load_images("train", registries=("pypi",))[:3]  # scikit-image samples (training split)
    crops = [im[:256, :256] for im in ims]
    best = {}
    for k, (iso, (a, b)) in enumerate(ISO_LEVELS.items()):
        scores = {f: [] for f in NLM_FACTORS}
        for j, crop in enumerate(crops):
            clean, noisy, _ = make_case(crop, 90_000 + j, 91_000 + 100 * j + k, a, b)
            for f in NLM_FACTORS:
                scores[f].append(psnr(np.clip(nlm(noisy, a, b, f), 0, 1), clean))
        best[iso] = max(NLM_FACTORS, key=lambda f: np.mean(scores[f]))
        print(f"NLM calibration ISO {iso}: " + ", ".join(f"{f:g}: {np.mean(v):.2f}" for f, v in scores.items())
              + f" -> {best[iso]:g}", flush=True)
    return best


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in out.splitlines() if ln.startswith("Flags")), [])
    have = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{model}, {torch.get_num_threads()} threads; flags: {' '.join(have) or 'none'} (no amx)" \
        if not any(f.startswith("amx") for f in have) else f"{model}; flags: {' '.join(have)}"


def summarise(vals: list[float]) -> dict:
    return {"mean": round(float(np.mean(vals)), 3), "worst": round(float(np.min(vals)), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=ROOT / "weights" / "raw-denoise.safetensors")
    ap.add_argument("--bm3d-images", type=int, default=8, help="BM3D on the first N images (Set5 first); 0 = none")
    ap.add_argument("--max-images", type=int, default=None, help="only the first N images (quick check)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "raw_denoise_eval.json")
    ap.add_argument("--baseline-cache", type=Path, default=ROOT / "runs" / "raw-denoise-eval" / "baselines.json",
                    help="noisy/NLM/BM3D scores: reused when images, levels and NLM factors match ('' = off)")
    ap.add_argument("--baselines-only", action="store_true",
                    help="compute the noisy/NLM/BM3D scores into --baseline-cache (one thread) and stop")
    args = ap.parse_args(argv)
    if args.baseline_cache == Path(""):
        args.baseline_cache = None
    if args.baselines_only and args.baseline_cache is None:
        ap.error("--baselines-only needs --baseline-cache")
    torch.set_num_threads(2)
    cpu = cpu_name()
    print(f"CPU: {cpu}", flush=True)
    images = eval_images()[: args.max_images]
    if args.baselines_only:
        cv2.setNumThreads(1)
    model = None if args.baselines_only else load_ours(args.weights)
    nlm_f = calibrate_nlm()

    methods = ("noisy", "nlm", "bm3d", "ours")
    key = {"images": [n for n, _ in images], "bm3d_images": args.bm3d_images,
           "levels": {str(k): list(v) for k, v in ISO_LEVELS.items()}, "nlm_factors": {str(k): v for k, v in nlm_f.items()}}
    cache = {}
    if args.baseline_cache and args.baseline_cache.is_file():
        doc = json.loads(args.baseline_cache.read_text())
        if doc.get("key") == key:
            cache = {(r["image"], r["iso"]): r for r in doc["rows"]}
            print(f"baselines (noisy, NLM, BM3D) from {args.baseline_cache}", flush=True)
    rows = []  # one per (image, level)
    t_ours, t_bm3d, mp_ours, mp_bm3d = 0.0, 0.0, 0.0, 0.0
    for i, (name, img) in enumerate(images):
        raw_mp = img.shape[0] * img.shape[1] / 1e6
        for k, (iso, (a, b)) in enumerate(ISO_LEVELS.items()):
            clean, noisy, meta = make_case(img, 10_000 + i, 20_000 + 100 * i + k, a, b)
            ref8 = srgb8(clean, meta)
            row = {"image": name, "iso": iso, "raw": {}, "srgb": {}}
            outs = {}
            if (name, iso) in cache:
                for space in ("raw", "srgb"):
                    row[space].update(cache[(name, iso)][space])
            else:
                outs = {"noisy": noisy, "nlm": nlm(noisy, a, b, nlm_f[iso])}
                if i < args.bm3d_images:
                    t = time.perf_counter()
                    outs["bm3d"] = bm3d_gat(noisy, a, b)
                    t_bm3d += time.perf_counter() - t
                    mp_bm3d += raw_mp
            if model is not None:
                t = time.perf_counter()
                outs["ours"] = ours(model, noisy, a, b)
                t_ours += time.perf_counter() - t
                mp_ours += raw_mp
            for m, o in outs.items():
                o = np.clip(o, 0.0, 1.0)
                row["raw"][m] = round(psnr(o, clean), 3)
                row["srgb"][m] = round(psnr(srgb8(o, meta), ref8, 255.0), 3)
            rows.append(row)
            print(f"{name} ISO {iso}: " + "  ".join(f"{m} {row['raw'][m]:.2f}/{row['srgb'][m]:.2f}"
                                                   for m in methods if m in row["raw"]), flush=True)

    if model is None:
        args.baseline_cache.parent.mkdir(parents=True, exist_ok=True)
        args.baseline_cache.write_text(json.dumps({"key": key, "rows": rows, "bm3d_seconds": t_bm3d,
                                                   "bm3d_raw_mp": mp_bm3d}, indent=1) + "\n")
        print(f"wrote baselines to {args.baseline_cache}")
        return 0
    if mp_bm3d == 0 and args.bm3d_images:  # baselines came from the cache: time BM3D here, on the first image
        name, img = images[0]
        a, b = ISO_LEVELS[3200]
        _, noisy, _ = make_case(img, 10_000, 20_000 + 1, a, b)
        t = time.perf_counter()
        bm3d_gat(noisy, a, b)
        t_bm3d, mp_bm3d = time.perf_counter() - t, img.shape[0] * img.shape[1] / 1e6

    levels = {}
    for iso, (a, b) in ISO_LEVELS.items():
        rs = [r for r in rows if r["iso"] == iso]
        sub = [r for r in rs if "bm3d" in r["raw"]]
        lv = {"a": a, "b": b, "nlm_factor": nlm_f[iso], "images": len(rs), "bm3d_images": len(sub)}
        for space in ("raw", "srgb"):
            lv[space] = {m: summarise([r[space][m] for r in rs]) for m in ("noisy", "nlm", "ours")}
            if sub:
                lv[space]["bm3d_subset"] = {m: summarise([r[space][m] for r in sub]) for m in ("bm3d", "ours")}
            lv[space]["ours_minus_noisy_worst"] = round(min(r[space]["ours"] - r[space]["noisy"] for r in rs), 3)
        levels[str(iso)] = lv

    print("\nnoise levels (var = a*x + b):  " + ", ".join(f"ISO {k}: a={v[0]:g} b={v[1]:g}" for k, v in ISO_LEVELS.items()))
    for space, unit in (("raw", "linear raw, peak 1"), ("srgb", "developed sRGB 8-bit, peak 255")):
        print(f"\nPSNR dB, {unit}: mean / worst image")
        print(f"{'ISO':>6} | {'noisy':>13} | {'NLM':>13} | {'ours':>13} | {'BM3D (subset)':>13} | {'ours (subset)':>13}")
        for iso in ISO_LEVELS:
            lv = levels[str(iso)][space]
            cell = lambda d: f"{d['mean']:6.2f}/{d['worst']:6.2f}"  # noqa: E731
            bs = lv.get("bm3d_subset")
            print(f"{iso:>6} | {cell(lv['noisy'])} | {cell(lv['nlm'])} | {cell(lv['ours'])} | "
                  f"{cell(bs['bm3d']) if bs else '-':>13} | {cell(bs['ours']) if bs else '-':>13}")

    accept = {}
    isos = list(ISO_LEVELS)
    for space in ("raw", "srgb"):
        acc = {"ours_ge_nlm_plus_1.5": {str(i): round(levels[str(i)][space]["ours"]["mean"]
                                                      - levels[str(i)][space]["nlm"]["mean"] - 1.5, 3) for i in isos},
               "ours_minus_noisy_worst_image": {str(i): levels[str(i)][space]["ours_minus_noisy_worst"] for i in isos}}
        if all("bm3d_subset" in levels[str(i)][space] for i in isos[-2:]):
            acc["ours_gt_bm3d_top2"] = {str(i): round(levels[str(i)][space]["bm3d_subset"]["ours"]["mean"]
                                                      - levels[str(i)][space]["bm3d_subset"]["bm3d"]["mean"], 3)
                                        for i in isos[-2:]}
        acc["holds"] = (all(v >= 0 for v in acc["ours_ge_nlm_plus_1.5"].values())
                        and all(v > 0 for v in acc["ours_minus_noisy_worst_image"].values())
                        and all(v > 0 for v in acc.get("ours_gt_bm3d_top2", {"": -1}).values()))
        accept[space] = acc
    timing = {"cpu": cpu, "ours_s_per_raw_mp": round(t_ours / max(mp_ours, 1e-9), 3),
              "bm3d_s_per_raw_mp": round(t_bm3d / mp_bm3d, 3) if mp_bm3d else None}
    print(f"\ntime per raw MP: ours {timing['ours_s_per_raw_mp']} s, BM3D {timing['bm3d_s_per_raw_mp']} s ({cpu})")
    print("acceptance (margins, dB; >= 0 / > 0 passes):", json.dumps(accept, indent=1))
    doc = {"weights": str(args.weights.relative_to(ROOT) if args.weights.is_relative_to(ROOT) else args.weights),
           "images": [n for n, _ in images], "bm3d_images": [n for n, _ in images[: args.bm3d_images]],
           "nlm": {"template": NLM_TEMPLATE, "search": NLM_SEARCH, "norm": "L1", "dtype": "uint16",
                   "offset": NLM_OFFSET, "factors": {str(k): v for k, v in nlm_f.items()}},
           "bm3d": {"package_version": _version("bm3d"), "vst": "generalised Anscombe, closed-form unbiased inverse",
                    "sigma_psd": 1.0},
           "levels": levels, "acceptance": accept, "timing": timing, "rows": rows}
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
