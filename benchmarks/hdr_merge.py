#!/usr/bin/env python3
"""Acceptance figures of the classical HDR merges (restore.hdr.merge).

1. Debevec's memorial stack (16 film frames, ``../shared/data/brackets/memorial_debevec``):
   recover the response (Debevec), merge all 16 (``merge_ldr``), then re-expose
   the radiance at each frame's own time through the response and compare with
   that frame: mean absolute error in 8-bit levels over the frame's well-exposed
   pixels (codes 25.5..229.5 = 0.1..0.9 of 255; pure-blue (0, 0, 255) border
   markers excluded).  Also the same over "smooth" pixels only (Sobel gradient
   magnitude of the frame's grey < 40 codes), which separates the merge from
   the stack's sub-pixel misregistration / halation at high-contrast edges.
   Time and memory of the 16-frame merge: wall time (best of 3), peak traced
   numpy allocation of the merge (tracemalloc), process peak RSS (getrusage).
2. RAW-linear merge (``merge_linear``) of a synthetic bracket made from
   ``../shared/data/hdr_images/Desk.exr`` (``data_tools/make_brackets.py``:
   14-bit, 10 000 e- full well, 2 DN read noise) at stops -8, -4, 0, +4
   (the highlights clip in all but the shortest): relative error
   ``|merged - truth| / truth`` where at least one frame is unclipped, and
   separately where only the shortest frame is unclipped; plus the error
   normalised by the noise the model predicts (std of z should be ~1: the merge
   reaches the noise floor).
3. Ghosts: the same sensor, a 256x384 crop of the desk with a textured disc
   moving across 4 frames (stops -6, -3, 0, +3); mean/median relative error
   inside the union of the disc's positions against the reference frame's
   scene, with and without deghosting, for the default reference (stop 0) and
   for reference = the -3 stop frame; the same through an 8-bit sRGB camera
   (``merge_ldr``).

Usage:  python benchmarks/hdr_merge.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_tools.make_brackets import load_scene, synth_ghost_bracket, synth_ldr_bracket, synth_linear_bracket  # noqa: E402
from restore.hdr.merge import merge_ldr, merge_linear, recover_response, reexpose, srgb_response  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def load_stack(folder: Path):
    rows = list(csv.DictReader(open(folder / "exposures.csv")))
    frames = [np.ascontiguousarray(cv2.imread(str(folder / r["filename"]), cv2.IMREAD_COLOR)[:, :, ::-1]) for r in rows]
    return frames, [float(r["exposure_time_s"]) for r in rows], [r["filename"] for r in rows]


def reexposure_errors(frames, times, rad, resp):
    t = np.asarray(times)
    ref = int(np.argsort(t, kind="stable")[len(t) // 2])
    allpx, smooth = [], []
    for i, f in enumerate(frames):
        pred = reexpose(rad, t[i] / t[ref], resp)
        m = (f >= 25.5) & (f <= 229.5) & ~np.all(f == (0, 0, 255), axis=-1)[..., None]
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32)
        grad = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
        err = np.abs(pred - f)
        allpx.append(float(err[m].mean()))
        smooth.append(float(err[m & (grad < 40)[..., None]].mean()))
    return allpx, smooth, ref


def memorial(shared: Path) -> None:
    folder = shared / "data" / "brackets" / "memorial_debevec"
    frames, times, names = load_stack(folder)
    ff = [f.astype(np.float32) / 255 for f in frames]
    print(f"== 1. memorial_debevec: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, "
          f"times {times[0]:g}..{times[-1]:g} s")
    resp = recover_response(frames, times)
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        merge_ldr(ff, times, resp)
        walls.append(time.perf_counter() - t0)
    best = min(walls)
    tracemalloc.start()
    merge_ldr(ff, times, resp)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = rss_mib()
    tracemalloc.start()
    t0 = time.perf_counter()
    _, masks = merge_ldr(ff, times, resp, deghost=True, return_masks=True)
    t_dg = time.perf_counter() - t0
    _, peak_dg = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"   16-frame merge_ldr: {best:.2f} s (best of 3), peak numpy allocation {peak / 2**20:.0f} MiB "
          f"(the 16 float32 inputs are {sum(f.nbytes for f in ff) / 2**20:.0f} MiB), process peak RSS {rss:.0f} MiB "
          f"(Python + numpy/OpenCV + the frames as uint8 and float32 + response + merge)")
    print(f"   with deghost=True (static scene, so every drop is a false positive): {t_dg:.2f} s (traced), "
          f"peak numpy allocation {peak_dg / 2**20:.0f} MiB, pixels dropped per frame max "
          f"{masks.mean(axis=(1, 2)).max() * 100:.2f} %, mean {masks.mean() * 100:.2f} %")

    variants = [
        ("debevec samples=70 smoothness=10, weighting=hat (defaults)", dict(), "hat"),
        ("debevec samples=70 smoothness=10, weighting=snr", dict(), "snr"),
        ("debevec samples=70 smoothness=100, weighting=hat", dict(smoothness=100.0), "hat"),
        ("debevec samples=70 smoothness=100, weighting=snr", dict(smoothness=100.0), "snr"),
        ("robertson, weighting=snr", dict(method="robertson"), "snr"),
    ]
    for k, (label, rkw, wt) in enumerate(variants):
        t0 = time.perf_counter()
        resp = recover_response(frames, times, **rkw)
        t_resp = time.perf_counter() - t0
        rad = merge_ldr(ff, times, resp, weighting=wt)
        allpx, smooth, ref = reexposure_errors(frames, times, rad, resp)
        print(f"-- {label}: response {t_resp:.2f} s, monotone {bool(np.all(np.diff(resp, axis=0) > 0))}")
        if k == 0:
            print(f"   reference frame {names[ref]} ({times[ref]:g} s); re-exposure MAE per frame, 8-bit levels:")
            for n_, tt, a, s in zip(names, times, allpx, smooth):
                print(f"   {n_}  t={tt:<10g} all {a:5.2f}   smooth {s:5.2f}")
        print(f"   mean re-exposure MAE: all well-exposed pixels {np.mean(allpx):.2f}/255 (max frame {np.max(allpx):.2f}), "
              f"smooth pixels {np.mean(smooth):.2f}/255 (max frame {np.max(smooth):.2f})")


def raw_linear(shared: Path) -> None:
    rad = load_scene(shared / "data" / "hdr_images" / "Desk.exr")
    stops = [-8.0, -4.0, 0.0, 4.0]
    frames = synth_linear_bracket(rad, stops, seed=0)
    e = [2.0**s for s in stops]
    t0 = time.perf_counter()
    merged = merge_linear(frames, e)
    dt = time.perf_counter() - t0
    truth = rad  # reference = stop 0: truth in reference units is the stop-0 radiance
    clipped = np.stack([np.any(f >= 0.98, axis=-1) for f in frames])
    any_ok = ~clipped.all(axis=0)
    short_only = any_ok & clipped[1:].all(axis=0)
    valid = truth.min(axis=-1) > 1e-4  # relative error needs a non-zero truth
    rel = np.abs(merged - truth) / np.maximum(truth, 1e-12)
    print(f"== 2. RAW-linear merge, Desk.exr {rad.shape[1]}x{rad.shape[0]} (median luminance 0.18 at stop 0, "
          f"max {rad.max():.0f}), stops {stops}, 14-bit, 10000 e- full well, 2 DN read noise: merge {dt:.2f} s")
    for label, sel in (("at least one frame unclipped", any_ok & valid), ("only the shortest frame unclipped", short_only & valid)):
        r = rel[sel]
        print(f"   {label}: {sel.mean() * 100:5.1f} % of pixels, relative error median {np.median(r) * 100:.2f} %, "
              f"mean {r.mean() * 100:.2f} %, p95 {np.percentile(r, 95) * 100:.2f} %, signed median {np.median(((merged - truth) / np.maximum(truth, 1e-12))[sel]) * 100:+.3f} %")
    print(f"   clipped in every frame: {(~any_ok).mean() * 100:.2f} % of pixels")
    # the noise floor: error / predicted sigma (variance of the inverse-variance merge at the true values)
    den = np.zeros_like(truth)
    for f, ei in zip(frames, e):
        var = (1e-4 * truth * ei + (2 / 16383) ** 2 + 1 / (12 * 16383**2)) / ei**2
        den += np.all(f < 0.98, axis=-1)[..., None] / var
    ok = den > 0
    z = (merged - truth)[ok] / (1 / np.sqrt(den[ok]))
    print(f"   error / predicted noise sigma: mean {z.mean():+.3f}, std {z.std():.3f} (1.0 = at the noise floor)")


def ghosts(shared: Path) -> None:
    rad = load_scene(shared / "data" / "hdr_images" / "Desk.exr", crop=(480, 100, 256, 384))
    stops = [-6.0, -3.0, 0.0, 3.0]
    frames, masks, scenes = synth_ghost_bracket(rad, stops, return_scenes=True, seed=1)
    e = [2.0**s for s in stops]
    union = np.any(masks, axis=0)
    ldr = [f.astype(np.float32) / 255 for f in synth_ldr_bracket(frames, srgb_response())]
    print(f"== 3. ghosts: Desk crop 384x256, textured disc (radius {0.12 * 256:.0f} px) moving across stops {stops}; "
          f"union of its positions {union.mean() * 100:.1f} % of pixels")
    for name, run in (
        ("merge_linear", lambda **k: merge_linear(frames, e, return_masks=True, **k)),
        ("merge_ldr (8-bit sRGB)", lambda **k: merge_ldr(ldr, e, srgb_response(), return_masks=True, **k)),
    ):
        for ref in (None, 1):
            r = 2 if ref is None else ref
            truth = scenes[r] * np.float32(e[r])
            res = []
            for dg in (False, True):
                t0 = time.perf_counter()
                out, mk = run(deghost=dg, reference=ref)
                dt = time.perf_counter() - t0
                rel = np.abs(out - truth) / np.maximum(truth, 1e-6)
                res.append(f"deghost={str(dg):5s} mean {rel[union].mean() * 100:6.2f} % median {np.median(rel[union]) * 100:5.2f} % "
                           f"(outside {np.median(rel[~union]) * 100:.2f} %, {dt:.2f} s)")
            print(f"   {name}, reference frame {r} (stop {stops[r]:+g}), error in the moving region:")
            for line in res:
                print(f"      {line}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    a = ap.parse_args()
    cv2.setNumThreads(2)
    memorial(a.shared)
    raw_linear(a.shared)
    ghosts(a.shared)


if __name__ == "__main__":
    main()
