#!/usr/bin/env python3
"""One do-no-harm case of a starter, looked at closely: what the network alone does, what its guard keeps, and
where the kept change helps or harms (issue 20).

    python benchmarks/guard_case.py --starter weather --image heldout/coffee.png --kind rain --set light
                                    [--guard G.safetensors --min-share 0.005] [--shared ../shared] [--threads 1]

The case is rebuilt exactly as ``benchmarks/starter_eval.py --do-no-harm`` draws it (same clean crop, seed,
``synth.lighten`` strength and 8-bit quantisation), so its guarded figure matches that row of the per-image JSON.
Prints, in RGB PSNR against the clean crop (dB; the output 8-bit quantised, as the evaluation scores it): the
input, the network alone and the guarded output (with the catalogue guard and its gate, or ``--guard`` and
``--min-share``); the guard's mean weight and the share of pixels above 0.1 / 0.5 (weights before the gate); and,
per weight band, the change of the summed squared error (over pixels and channels, values in [0, 1]) that the kept
change makes against the input (negative = the change helps).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import starter_eval as S  # noqa: E402

from data_tools import synth  # noqa: E402
from restore.guard import apply_guard, guard_for, guard_weights, load_guard  # noqa: E402

BANDS = (0.0, 0.01, 0.1, 0.3, 0.5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starter", choices=("derain", "weather", "reflection"), required=True)
    ap.add_argument("--image", required=True, help="a clean-set name as the evaluation prints it, e.g. heldout/coffee.png")
    ap.add_argument("--kind", default=None, help="weather: rain, haze, snow or raindrop (default: the starter's only kind)")
    ap.add_argument("--set", choices=("clean", "light", "heavy"), default="light")
    ap.add_argument("--shared", type=Path, default=S.ROOT.parent / "shared")
    ap.add_argument("--guard", type=Path, default=None,
                    help="a guard file (data_tools/train_guard.py) instead of the catalogue's; its gate is --min-share")
    ap.add_argument("--min-share", type=float, default=0.0, help="--guard: the gate to apply with it")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    crops, _ = S.clean_crops(args.shared)
    names = [n for n, _ in crops]
    if args.image not in names:
        raise SystemExit(f"{args.image}: not in the clean set ({', '.join(names)})")
    i = names.index(args.image)
    clean = crops[i][1]
    draws = dict(S.degrade(args.starter, crops, i))
    kind = args.kind or next(iter(draws))
    if kind not in draws:
        raise SystemExit(f"--kind {kind}: {args.starter} draws {', '.join(draws)}")
    if args.set == "clean":
        x = clean
    else:
        heavy = draws[kind]
        x = S.quantise(synth.lighten(clean, heavy, synth.LIGHT_STRENGTH) if args.set == "light" else heavy)

    model = f"{args.starter}-starter"
    if args.guard is not None:
        try:
            net = load_guard(args.guard)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        net.min_share = args.min_share
    else:
        net = guard_for(model)
        if net is None:
            raise SystemExit(f"{model}: no guard in the catalogue")
    y = np.clip(S.run_model(S.load_model(model).module, x), 0.0, 1.0)
    w = guard_weights(net, x, y)
    out, mean_w = apply_guard(net, x, y)

    def rgb(img: np.ndarray) -> float:
        return S.scores(S.quantise(img), clean)[1]

    print(f"{model}, {args.set} {kind}, {args.image} ({x.shape[1]}x{x.shape[0]} px)")
    print(f"RGB PSNR: input {rgb(x):.2f} dB, network alone {rgb(y):.2f}, guarded {rgb(out):.2f} "
          f"(gate {net.min_share:g}: {'passed' if mean_w >= net.min_share else 'closed, the input is returned'})")
    print(f"guard weight: mean {float(w.mean()):.4f}, > 0.1 on {100 * float((w > 0.1).mean()):.2f} % of the pixels, "
          f"> 0.5 on {100 * float((w > 0.5).mean()):.2f} %")
    x64, c64 = x.astype(np.float64), clean.astype(np.float64)
    kept = x64 + w.astype(np.float64) * (y.astype(np.float64) - x64)
    d_err = ((kept - c64) ** 2 - (x64 - c64) ** 2).sum(axis=-1)
    for t in BANDS:
        m = w[..., 0] > t
        print(f"  w > {t:<4g}: {100 * float(m.mean()):6.2f} % of the pixels, squared error {float(d_err[m].sum()):+.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
