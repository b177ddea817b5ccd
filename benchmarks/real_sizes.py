#!/usr/bin/env python3
"""Every shipped pipeline on a real-size photo: wall time and peak memory of ``restore run`` (issue 15, item 8).

For each ``pipelines/*.yaml`` this makes an input of the pipeline's kind at the target size in a temporary
folder and runs the pipeline on it exactly as a user would (``restore run PIPELINE DIR -o OUT``, default
options: worker process, stall limit, journal), then records the wall time, the exit status, the output
size and the peak resident memory of the whole process tree (``restore`` plus its worker; /proc sampled
every 0.25 s) and of its largest single process (``getrusage`` of the children).

Inputs (synthetic content from ``examples/chelsea.png``, enlarged with Lanczos and given film-grain-like
noise: timing and memory depend on the size, not the content):

* LDR pipelines: an 8-bit sRGB PNG;
* RAW pipelines: a Bayer DNG (``data_tools.make_examples.write_dng``, 14-bit, RGGB);
* bracket pipelines: three exposures (-2, 0, +2 EV) as PNGs with an ``exposures.csv`` where the pipeline
  merges radiance, or as DNGs (``raw-hdr-merge``).

Sizes: ``--mp`` (default 24 MP, 6000x4000) for every pipeline; a super-resolution pipeline whose run,
projected from a ``--probe-mp`` probe, would take longer than ``--limit-min`` minutes runs at ``--sr-mp``
(default 6 MP) instead, as issue 15 allows; a row says which size ran and whether a figure is projected.
Rows of ``--json`` are keyed by pipeline (24 MP runs) or ``pipeline@<MP>MP`` (other sizes), so sizes coexist.

Usage:
    python benchmarks/real_sizes.py                      # all pipelines, results in benchmarks/real_sizes.json
    python benchmarks/real_sizes.py --only weather derain --mp 12
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR_TASKS = ("sr",)


def cpu_name() -> str:
    """The CPU as :func:`restore.threads.machine_key` names it (name, family/model, ISA flags) and its CPU count."""
    from restore.threads import machine_key

    return f"{machine_key()} ({os.cpu_count()} CPUs)"


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """float32 sRGB [0, 1] (H, W, 3): the example photo enlarged to the size, with grain."""
    src = cv2.imread(str(ROOT / "examples" / "chelsea.png"))[:, :, ::-1].astype(np.float32) / 255
    img = cv2.resize(src, (width, height), interpolation=cv2.INTER_LANCZOS4)
    rng = np.random.default_rng(seed)
    for y in range(0, height, 1024):  # in strips: bounded extra memory
        img[y : y + 1024] += rng.normal(0, 0.01, img[y : y + 1024].shape).astype(np.float32)
    return np.clip(img, 0, 1, out=img)


def srgb_to_linear(x):
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x):
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def write_png(path: Path, img: np.ndarray) -> None:
    cv2.imwrite(str(path), (img[:, :, ::-1] * 255 + 0.5).astype(np.uint8))


def write_dng(path: Path, lin: np.ndarray, exposure_s: float) -> None:
    from fractions import Fraction

    from data_tools import make_examples as mx

    h, w = lin.shape[0] & ~1, lin.shape[1] & ~1
    cam = lin[:h, :w] * np.asarray(mx.AS_SHOT_NEUTRAL, np.float32)
    mosaic = np.empty((h, w), np.float32)
    mosaic[0::2, 0::2] = cam[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = cam[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = cam[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = cam[1::2, 1::2, 2]
    cfa = np.clip(np.round(mx.BLACK + mosaic * (mx.WHITE - mx.BLACK)), 0, mx.WHITE).astype(np.uint16)
    saved = mx.EXPOSURE_S
    try:
        mx.EXPOSURE_S = Fraction(exposure_s).limit_denominator(100000)
        mx.write_dng(path, cfa, {"make": "restore", "model": "benchmark RGGB"})
    finally:
        mx.EXPOSURE_S = saved


def kind_of(spec: dict) -> str:
    steps = [next(iter(s)) if isinstance(s, dict) else s for s in spec["steps"]]
    grouped = spec.get("input", {}).get("group") is not None
    raw = steps and steps[0] == "develop" or any(p.lower().endswith((".dng", ".nef")) for p in spec.get("input", {}).get("patterns", [])[:1])
    if grouped:
        return "raw-bracket" if raw else "bracket"
    return "raw" if raw else "ldr"


def make_input(folder: Path, kind: str, spec: dict, width: int, height: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    img = photo(width, height)
    if kind == "ldr":
        write_png(folder / "photo.png", img)
    elif kind == "raw":
        write_dng(folder / "photo.dng", srgb_to_linear(img) * 0.5, 1 / 125)
    else:
        lin = srgb_to_linear(img)
        del img
        rows = ["filename,exposure_time_s"]
        for k, ev in enumerate((-2.0, 0.0, 2.0)):
            t = (1 / 125) * 2.0**ev
            if kind == "raw-bracket":
                write_dng(folder / f"frame{k}.dng", lin * np.float32(0.5 * 2.0**ev), t)
            else:
                write_png(folder / f"frame{k}.png", linear_to_srgb(lin * np.float32(2.0**ev)))
            rows.append(f"frame{k}.{'dng' if kind == 'raw-bracket' else 'png'},{t:.9g}")
        (folder / "exposures.csv").write_text("\n".join(rows) + "\n")


def tree_rss_kib(root: int) -> int:
    """Resident memory (KiB) of ``root`` and all its descendants."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            status = Path(f"/proc/{d}/status").read_text()
        except (OSError, ValueError, IndexError):
            continue
        parent[int(d)] = ppid
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss[int(d)] = int(line.split()[1])
    total = 0
    for pid, kib in rss.items():
        p = pid
        while p and p != root:
            p = parent.get(p, 0)
        if p == root:
            total += kib
    return total


def run_pipeline(pipe: Path, inp: Path, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "restore.cli", "run", str(pipe), str(inp), "-o", str(out), "-q", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kib(proc.pid))
        time.sleep(0.25)
    text = proc.stdout.read()
    wall = time.perf_counter() - t0
    single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": round(wall, 1), "rc": proc.returncode, "peak_tree_mib": round(peak / 1024), "peak_process_mib": round(max(single, before) / 1024) if single > before else None,
            "log": text.strip().splitlines()[-3:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mp", type=float, default=24.0, help="target size in megapixels (3:2)")
    ap.add_argument("--sr-mp", type=float, default=6.0, help="size for SR pipelines that would take over --limit-min at --mp")
    ap.add_argument("--probe-mp", type=float, default=0.5, help="size of the timing probe for SR pipelines")
    ap.add_argument("--limit-min", type=float, default=30.0)
    ap.add_argument("--only", nargs="*", default=None, help="pipeline names (default: all in pipelines/)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "real_sizes.json")
    args = ap.parse_args(argv)

    def size(mp):
        w = int(round((mp * 1e6 * 1.5) ** 0.5)) // 16 * 16
        return w, int(round(w / 1.5)) // 16 * 16

    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    machine = cpu_name()
    for pipe in sorted((ROOT / "pipelines").glob("*.yaml")):
        name = pipe.stem
        if args.only and name not in args.only:
            continue
        spec = yaml.safe_load(pipe.read_text())
        kind = kind_of(spec)
        is_sr = any(isinstance(s, dict) and "model" in s for s in spec["steps"]) and any(
            k in name for k in ("sr-", "x2", "x4", "anime", "realworld"))
        target = args.mp
        tmp = Path(tempfile.mkdtemp(prefix=f"restore-bench-{name}-"))
        try:
            row = {"pipeline": name, "kind": kind, "machine": machine}
            if is_sr:
                w, h = size(args.probe_mp)
                make_input(tmp / "probe", kind, spec, w, h)
                probe = run_pipeline(pipe, tmp / "probe", tmp / "probe-out", [])
                projected = probe["seconds"] * args.mp / args.probe_mp / 60
                row["probe"] = {"mp": round(w * h / 1e6, 2), **probe, "projected_min_at_target": round(projected, 1),
                                "target_mp": args.mp}
                if projected > args.limit_min:
                    target = args.sr_mp
            w, h = size(target)
            make_input(tmp / "in", kind, spec, w, h)
            print(f"{name}: {kind} {w}x{h} ({w * h / 1e6:.1f} MP) ...", flush=True)
            merges = any(isinstance(s, dict) and "merge" in s for s in spec["steps"]) and kind == "bracket"
            extra = ["--exposure-times", str(tmp / "in" / "exposures.csv")] if merges else []
            r = run_pipeline(pipe, tmp / "in", tmp / "out", extra)
            outs = sorted(p for p in (tmp / "out").rglob("*") if p.is_file() and not p.name.startswith("."))
            row.update({"size": f"{w}x{h}", "mp": round(w * h / 1e6, 1), **r, "outputs": [f"{p.name} ({p.stat().st_size / 2**20:.0f} MiB)" for p in outs]})
            print(f"  rc {r['rc']}, {r['seconds']:.0f} s, peak tree RSS {r['peak_tree_mib']} MiB", flush=True)
            results[name if target == 24.0 else f"{name}@{row['mp']:g}MP"] = row
            args.json.write_text(json.dumps(results, indent=1))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"| pipeline | input | size | time | peak RSS (tree) | exit |  machine: {machine}")
    print("|---|---|---|---|---|---|")
    for name, r in sorted(results.items()):
        note = f" (probe {r['probe']['mp']} MP: {r['probe']['seconds']} s, projected {r['probe']['projected_min_at_target']} min at {r['probe'].get('target_mp', 24):g} MP)" if "probe" in r else ""
        print(f"| {name} | {r['kind']} | {r['size']} ({r['mp']} MP){note} | {r['seconds'] / 60:.1f} min | {r['peak_tree_mib']} MiB | {r['rc']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
