#!/usr/bin/env python3
"""Our tiled inference against the Real-ESRGAN-style tile loop, interleaved to beat VM drift.

    python benchmarks/tiled_vs_loop.py [--model dat-light-x2] [--size 512x512] [--tile 128]
                                       [--overlap 16] [--precision fp32] [--rounds 4]

Each round runs ``restore bench MODEL --methods tiled`` and ``--methods esrgan-loop``
(each in its own fresh process, best of ``--repeat 2`` inside it), alternating which
goes first (ABBA...), so slow phases of a shared machine hit both methods alike.
Prints every round and the minimum and median seconds per method, and the ratio
ours / loop of both.  Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys


def bench(args: argparse.Namespace, method: str) -> float:
    cmd = ["restore", "bench", args.model, "--size", args.size, "--tile", str(args.tile),
           "--overlap", str(args.overlap), "--repeat", "2", "--precision", args.precision,
           "--methods", method, "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no error output"])[-1]
        raise SystemExit(f"{' '.join(cmd)} failed: {last}")
    row = json.loads(out.stdout)[0]
    if "error" in row:
        raise SystemExit(f"{' '.join(cmd)}: {row['error']}")
    return float(row["seconds"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="dat-light-x2")
    ap.add_argument("--size", default="512x512")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--overlap", type=int, default=16)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)
    times: dict[str, list[float]] = {"tiled": [], "esrgan-loop": []}
    for r in range(args.rounds):
        order = ["tiled", "esrgan-loop"] if r % 2 == 0 else ["esrgan-loop", "tiled"]
        for m in order:
            times[m].append(bench(args, m))
        print(f"round {r + 1}: tiled {times['tiled'][-1]:.2f} s, loop {times['esrgan-loop'][-1]:.2f} s", flush=True)
    for stat in (min, statistics.median):
        t, lp = stat(times["tiled"]), stat(times["esrgan-loop"])
        print(f"{stat.__name__}: tiled {t:.2f} s, loop {lp:.2f} s, ours / loop = {t / lp:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
