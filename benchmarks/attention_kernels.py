#!/usr/bin/env python3
"""The CPU window-attention kernels against each other (issue 21, item 3).

    python benchmarks/attention_kernels.py [--threads 2] [--repeat 7] [--model dat-light-x2 --tile 128]
    python benchmarks/attention_kernels.py --profile [--model dat-light-x2 --backend torch]

1. **Kernels alone**: for window shapes of the architectures we run, ``(windows, heads, tokens, head dim)``:
   DAT-light (64 x 3 x 256 x 10), SwinIR-like (256 x 6 x 64 x 30), HAT-like (64 x 6 x 256 x 30), long windows
   (32 x 3 x 512 x 10). It times PyTorch's ``scaled_dot_product_attention`` (the CPU flash kernel) against
   :func:`restore.models.fused_attention._attend_blocked`, in float32 and bfloat16, best of ``--repeat`` after
   one warm-up. It also gives each kernel's max difference to float32 SDPA.
2. **Whole network**: ``--model`` on a ``--tile`` px tile through the ``torch`` and ``torch-bf16`` paths, with
   ``RESTORE_BLOCKED_ATTENTION`` alternated 0/1 in one process. It reports best and median of ``--repeat`` after
   one warm-up, and the max difference between the two kernels.
3. ``--profile``: a ``torch.profiler`` table of one forward (self CPU time per op, the top 25) for
   ``--backend``.

Times depend on the machine and its load: the CPU is printed first, and rows are comparable only within a run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {
    "DAT-light": (64, 3, 256, 10),
    "SwinIR-like": (256, 6, 64, 30),
    "HAT-like": (64, 6, 256, 30),
    "long windows": (32, 3, 512, 10),
}


def best_ms(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def kernels(repeat: int) -> None:
    from restore.models.fused_attention import _attend_blocked

    print("| shape (windows x heads x tokens x dim) | dtype | SDPA (flash) | blocked | max diff to fp32 SDPA (flash / blocked) |")
    print("|---|---|---|---|---|")
    for name, (b, h, n, d) in SHAPES.items():
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(b, h, n, d, generator=g) for _ in range(3))
        bias = torch.randn(h, n, n, generator=g)
        scale = d ** -0.5
        with torch.inference_mode():
            ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0), scale=scale)
            for dt in (torch.float32, torch.bfloat16):
                qq, kk, vv, bb = (t.to(dt) for t in (q, k, v, bias))

                def sdpa():
                    return F.scaled_dot_product_attention(qq, kk, vv, attn_mask=bb.unsqueeze(0), scale=scale)

                def blocked():
                    return _attend_blocked(qq, kk, vv, bb, None, scale)

                d_s = (sdpa().float() - ref).abs().max().item()
                d_b = (blocked().float() - ref).abs().max().item()
                print(f"| {name} {b} x {h} x {n} x {d} | {str(dt).split('.')[1]} | {best_ms(sdpa, repeat):.1f} ms | "
                      f"{best_ms(blocked, repeat):.1f} ms | {d_s:.1e} / {d_b:.1e} |", flush=True)


def network(model_name: str, tile: int, repeat: int) -> None:
    from restore.backends import build_forward, unavailable
    from restore.models import load_model

    m = load_model(model_name)
    x = torch.rand(1, m.input_channels, tile, tile, generator=torch.Generator().manual_seed(0))
    for backend in ("torch", "torch-bf16"):
        if unavailable(m, backend, torch.device("cpu")):
            continue
        fwd, dt = build_forward(m, backend, torch.device("cpu"))
        times: dict[str, list[float]] = {"0": [], "1": []}
        outs = {}
        with torch.inference_mode():
            for r in range(repeat + 1):
                for flag in ("0", "1"):
                    os.environ["RESTORE_BLOCKED_ATTENTION"] = flag
                    ctx = torch.autocast("cpu", dtype=dt) if dt != torch.float32 else contextlib.nullcontext()
                    with ctx:
                        t0 = time.perf_counter()
                        outs[flag] = fwd(x).float()
                        if r:
                            times[flag].append(time.perf_counter() - t0)
        os.environ.pop("RESTORE_BLOCKED_ATTENTION", None)
        med = {f: sorted(t)[len(t) // 2] for f, t in times.items()}
        print(f"{model_name} {tile}x{tile} {backend}: flash best {min(times['0']):.3f} s (median {med['0']:.3f}), "
              f"blocked best {min(times['1']):.3f} s (median {med['1']:.3f}), "
              f"{min(times['0']) / min(times['1']):.2f}x; max diff {(outs['0'] - outs['1']).abs().max().item():.1e}",
              flush=True)


def profile(model_name: str, tile: int, backend: str) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    from restore.backends import build_forward
    from restore.models import load_model

    m = load_model(model_name)
    fwd, dt = build_forward(m, backend, torch.device("cpu"))
    x = torch.rand(1, m.input_channels, tile, tile, generator=torch.Generator().manual_seed(0))
    ctx = torch.autocast("cpu", dtype=dt) if dt != torch.float32 else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        fwd(x)
        with prof(activities=[ProfilerActivity.CPU], record_shapes=True) as p:
            fwd(x)
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=40))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--model", default="dat-light-x2")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--profile", action="store_true", help="only the torch.profiler table of one forward")
    ap.add_argument("--backend", default="torch", help="with --profile: torch or torch-bf16")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from restore.threads import machine_key

    print(f"CPU: {machine_key()}, {args.threads} threads, torch {torch.__version__}", flush=True)
    if args.profile:
        profile(args.model, args.tile, args.backend)
        return 0
    kernels(args.repeat)
    network(args.model, args.tile, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
