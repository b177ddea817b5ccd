#!/usr/bin/env python3
"""Time and memory of a starter's do-no-harm guard (:mod:`restore.guard`) on a photo-sized image.

    python benchmarks/guard_cost.py [--model derain-starter] [--mp 24] [--threads 2] [--repeat 2]

Runs :func:`restore.guard.apply_guard` of the catalogue model's guard on a ``--mp`` megapixel 3:2 image (a smooth
random input and a random "model output" near it: the guard's cost does not depend on the content), and prints the
best and worst wall time and the process's peak RSS before and after (``ru_maxrss``).  The starter network itself
is not run.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.guard import apply_guard, guard_for  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="derain-starter")
    ap.add_argument("--mp", type=float, default=24.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    net = guard_for(args.model)
    if net is None:
        ap.error(f"{args.model}: no guard in weights/MANIFEST")
    torch.set_num_threads(args.threads)
    w = int(round((args.mp * 1e6 * 1.5) ** 0.5))
    h = int(round(w / 1.5))
    rng = np.random.default_rng(0)
    x = np.repeat(np.repeat(rng.random((h // 8 + 1, w // 8 + 1, 3), dtype=np.float32), 8, 0), 8, 1)[:h, :w]
    y = np.clip(x + rng.normal(0, 0.02, (h, w, 3)).astype(np.float32), 0, 1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        apply_guard(net, x, y)
        times.append(time.perf_counter() - t)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{args.model} guard on {w}x{h} ({w * h / 1e6:.1f} MP), {args.threads} threads: best {min(times):.1f} s, "
          f"worst {max(times):.1f} s; peak RSS {rss0:.2f} GiB with the two images, {rss1:.2f} GiB after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
