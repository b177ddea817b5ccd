#!/usr/bin/env python3
"""Train the small CPU "starter" models on synthetic pairs (issue 6).

    python data_tools/train.py --task derain|weather|reflection --out runs/derain --minutes 30 --seed 0 [--resume]
                               [--init weights.safetensors] [--mix rain=0.15,haze=0.1,snow=0.15,raindrop=0.6]

Tasks and architectures (small configurations, documented as such -- the
official models are 10-100x larger; official checkpoints still load through
``restore.load_model``):

* ``derain``: DRSformer (Chen et al., CVPR 2023) without MEFC, dim 16,
  blocks [1, 1, 2, 2], heads [1, 2, 4, 8], ffn 2.66 (1.4 M parameters);
  pairs = ``synth.add_rain`` (streak layers + veiling).
* ``weather``: Histoformer (Sun et al., ECCV 2024), dim 16, blocks [1, 1, 2, 2],
  1 refinement block, heads [1, 2, 4, 8], ffn 2.0 (hidden divisible by 4;
  1.1 M parameters); pairs = ``synth.weather`` (rain / haze / snow / raindrop,
  one model).
* ``reflection``: DRNet of RRFormer (ERRNet design) with ``in_channels=3`` (no
  VGG hypercolumn), n_feats 48, norm None, 3x3 bottom kernel, pyramid pooling,
  Swin block reduced to its (dead, identity) shell (0.9 M parameters); pairs =
  ``synth.add_reflection`` of two different clean images.

Training: random ``--patch`` crops of the clean training images
(``data_tools/clean_data.py``; held-out images excluded), flips / 90-degree
rotations applied to the clean crop before degrading it on the fly,
Charbonnier loss, AdamW, linear warm-up then cosine decay over the time budget
(or over ``--steps`` when given, which makes the schedule independent of
machine speed), resumable checkpoints (model, optimiser, step, elapsed time,
numpy and torch RNG states) every ``--ckpt-minutes`` in ``<out>/ckpt.pt``, and a
loss log ``<out>/loss.csv`` (step, seconds, loss = mean Charbonnier loss of the
steps since the previous row); the loop is :mod:`data_tools.train_loop`, shared with ``train_denoise.py``.  Determinism: one thread, ``torch.manual_seed``,
a seeded numpy ``Generator`` for all sampling and degradations, and
``torch.use_deterministic_algorithms(True)``; with a time budget only the late
learning rates depend on the measured time, so reruns with the same seed give
the same loss curve up to that.

``--init`` starts from existing weights of the same configuration (a
fine-tune: new optimiser, warm-up and schedule; ``--resume`` takes precedence);
``--mix`` sets the weather task's degradation probabilities (kinds left out are
never drawn), e.g. to spend a fine-tune mostly on raindrops.

Do no harm (issue 20): a starter must leave a photo with little or none of its degradation alone, so
``--identity`` of the pairs are clean/clean (default 0.15) and ``--light`` of the degraded ones are lightened
(:func:`data_tools.synth.lighten`, strength uniform in [0.05, 0.6]; default 0.35); the rest carry the full
degradation.  ``--consistency W`` (default 1.0) adds ``W`` times the L1 distance of the 8x8 box-filtered output
and target, which weighs a global brightness or colour shift (the first derain starter darkened light-rain
photos by ~15 levels) twice as much as the Charbonnier term alone.  ``--identity 0 --light 0 --consistency 0``
is the training of the first starters (and draws the same random stream).

``--minutes`` is the total budget of the run: ``--resume`` continues from
``<out>/ckpt.pt`` (same step count, RNG states, schedule) until the total
elapsed training time reaches it.  At the end the model is written to
``--weights`` (default ``weights/<task>-starter.safetensors``), fp32, with
the official key names; every hyper-parameter is inferred from the shapes at
load time, so no ``restore.hparams`` metadata is needed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_tools import synth  # noqa: E402
from data_tools import train_loop  # noqa: E402
from data_tools.clean_data import REGISTRIES, load_images  # noqa: E402

TASKS = ("derain", "weather", "reflection")

CONFIGS = {
    "derain": {
        "arch": "DRSformer",
        "kwargs": dict(inp_channels=3, out_channels=3, dim=16, num_blocks=[1, 1, 2, 2], heads=[1, 2, 4, 8],
                       ffn_expansion_factor=2.66, bias=False, LayerNorm_type="WithBias", mefc=False),
        "lr": 6e-4, "patch": 64, "batch": 6,
    },
    "weather": {
        "arch": "Histoformer",
        "kwargs": dict(inp_channels=3, out_channels=3, dim=16, num_blocks=[1, 1, 2, 2], num_refinement_blocks=1,
                       heads=[1, 2, 4, 8], ffn_expansion_factor=2.0, bias=False, LayerNorm_type="WithBias"),
        "lr": 6e-4, "patch": 64, "batch": 6,
    },
    "reflection": {
        "arch": "DRNet",
        "kwargs": dict(in_channels=3, out_channels=3, n_feats=48, n_resblocks=0, norm=None, bottom_kernel_size=3,
                       pyramid=True, swinir_kwargs={"depths": [], "num_heads": []}),
        "lr": 1e-3, "patch": 96, "batch": 8,
    },
}


def build_model(task: str) -> torch.nn.Module:
    cfg = CONFIGS[task]
    if cfg["arch"] == "DRSformer":
        from restore.models.archs.drsformer import DRSformer
        return DRSformer(**cfg["kwargs"])
    if cfg["arch"] == "Histoformer":
        from restore.models.archs.histoformer import Histoformer
        return Histoformer(**cfg["kwargs"])
    from restore.models.archs.rrformer import DRNet
    return DRNet(**cfg["kwargs"])


WEATHER_KINDS, DEFAULT_MIX = synth.WEATHER_KINDS, synth.WEATHER_MIX


def parse_mix(text: str) -> tuple[float, ...]:
    """``"rain=0.15,haze=0.1,snow=0.15,raindrop=0.6"`` -> probabilities in ``WEATHER_KINDS`` order.

    Kinds left out get probability 0; the values are normalised to sum to 1.

    Raises:
        ValueError: unknown kind, malformed item, negative value or an all-zero mix.
    """
    probs = dict.fromkeys(WEATHER_KINDS, 0.0)
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in probs:
            raise ValueError(f"--mix: expected kind=probability with kind in {', '.join(WEATHER_KINDS)}, got {item!r}")
        try:
            probs[name] = float(value)
        except ValueError:
            raise ValueError(f"--mix: {item!r} is not a number") from None
        if not probs[name] >= 0:
            raise ValueError(f"--mix: {item!r} is negative")
    total = sum(probs.values())
    if total <= 0:
        raise ValueError("--mix: all probabilities are zero")
    return tuple(probs[k] / total for k in WEATHER_KINDS)


def degrade(task: str, clean: np.ndarray, rng: np.random.Generator, other: np.ndarray | None = None,
            mix: tuple[float, ...] = DEFAULT_MIX) -> np.ndarray:
    if task == "derain":
        return synth.add_rain(clean, rng)
    if task == "weather":
        return synth.weather(clean, rng, kinds=WEATHER_KINDS, probs=mix)
    return synth.add_reflection(clean, rng, reflection=other)


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w, _ = img.shape
    if h < size or w < size:
        import cv2
        s = size / min(h, w)
        img = cv2.resize(img, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_LINEAR)
        h, w, _ = img.shape
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return img[y:y + size, x:x + size]


def augment(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(4))
    if k:
        p = np.rot90(p, k)
    if rng.random() < 0.5:
        p = p[:, ::-1]
    return np.ascontiguousarray(p)


#: Strength range of the lightened degradations of ``--light`` (:func:`data_tools.synth.lighten`).
LIGHT_RANGE = (0.05, 0.6)


def make_batch(task: str, images: list[np.ndarray], rng: np.random.Generator, batch: int, patch: int,
               mix: tuple[float, ...] = DEFAULT_MIX, identity: float = 0.0, light: float = 0.0):
    """``(x, y)`` float32 ``(batch, 3, patch, patch)`` in [0, 1]: degraded inputs and clean targets.

    ``identity`` of the pairs are clean/clean, ``light`` of the others lightened (module docstring); with both 0
    no extra random numbers are drawn (the first starters' stream)."""
    xs, ys = [], []
    for _ in range(batch):
        clean = augment(random_crop(images[int(rng.integers(len(images)))], patch, rng), rng)
        if identity and rng.random() < identity:
            xs.append(clean)
            ys.append(clean)
            continue
        other = None
        if task == "reflection":
            # reflection layer: another image, a larger crop (out of focus, different framing)
            other = augment(random_crop(images[int(rng.integers(len(images)))], patch, rng), rng)
        x = degrade(task, clean, rng, other, mix)
        if light and rng.random() < light:
            x = synth.lighten(clean, x, float(rng.uniform(*LIGHT_RANGE)))
        xs.append(x)
        ys.append(clean)
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.stack(ys)).permute(0, 3, 1, 2).contiguous()
    return x, y


def charbonnier(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((a - b) ** 2 + eps * eps).mean()


def low_pass_l1(a: torch.Tensor, b: torch.Tensor, k: int = 8) -> torch.Tensor:
    """L1 distance of the ``k`` x ``k`` box-filtered images: global brightness / colour shifts, not detail."""
    return (torch.nn.functional.avg_pool2d(a, k, ceil_mode=True)
            - torch.nn.functional.avg_pool2d(b, k, ceil_mode=True)).abs().mean()


def lr_factor(step: int, frac: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 to 0.02 over ``frac`` in [0, 1]."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def save_weights(model: torch.nn.Module, path: Path, task: str, meta_extra: dict) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"restore.task": task, "restore.train": json.dumps(meta_extra, sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path), metadata=meta)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=TASKS, required=True)
    ap.add_argument("--out", type=Path, required=True, help="run folder (ckpt.pt, loss.csv)")
    ap.add_argument("--minutes", type=float, default=30.0, help="total training time budget")
    ap.add_argument("--steps", type=int, default=None, help="fixed number of steps (schedule by step, not time)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--patch", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ckpt-minutes", type=float, default=3.0)
    ap.add_argument("--weights", type=Path, default=None, help="default weights/<task>-starter.safetensors")
    ap.add_argument("--init", type=Path, default=None,
                    help="fine-tune: start from these .safetensors weights (same configuration) instead of random")
    ap.add_argument("--images", choices=("all", "pypi"), default="all",
                    help="clean training images: all (PyPI + Debian packages, what the shipped starters used) or "
                         "pypi (scikit-image's samples only: nothing to apt-get; for tests and quick trials)")
    ap.add_argument("--mix", default=None,
                    help="weather only: degradation probabilities, e.g. rain=0.15,haze=0.1,snow=0.15,raindrop=0.6 "
                         f"(default {','.join(f'{k}={q:g}' for k, q in zip(WEATHER_KINDS, DEFAULT_MIX))})")
    ap.add_argument("--identity", type=float, default=0.15,
                    help="share of clean/clean pairs (the model must leave a clean photo alone)")
    ap.add_argument("--light", type=float, default=0.35,
                    help=f"share of degraded pairs lightened to a strength in {list(LIGHT_RANGE)} (synth.lighten)")
    ap.add_argument("--consistency", type=float, default=1.0,
                    help="weight of the L1 loss on 8x8 box-filtered output vs target (brightness and colour)")
    args = ap.parse_args(argv)
    for flag in ("identity", "light"):
        if not 0.0 <= getattr(args, flag) <= 1.0:
            ap.error(f"--{flag} must lie in [0, 1]")
    if args.consistency < 0:
        ap.error("--consistency must be >= 0")

    cfg = CONFIGS[args.task]
    patch = args.patch or cfg["patch"]
    batch = args.batch or cfg["batch"]
    lr = args.lr or cfg["lr"]
    if patch % 8 or (args.task == "reflection" and patch < 32):
        ap.error("--patch must be a multiple of 8 (and >= 32 for reflection)")
    weights = args.weights or ROOT / "weights" / f"{args.task}-starter.safetensors"
    mix = DEFAULT_MIX
    if args.mix is not None:
        if args.task != "weather":
            ap.error("--mix applies to --task weather only")
        try:
            mix = parse_mix(args.mix)
        except ValueError as e:
            ap.error(str(e))
    if args.init is not None and not args.init.is_file():
        ap.error(f"--init: no such file {args.init}")

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    images = load_images("train", registries=("pypi",) if args.images == "pypi" else REGISTRIES)
    model = build_model(args.task)
    if args.init is not None and not args.resume:
        from safetensors.torch import load_file

        try:
            state = load_file(str(args.init))
        except Exception as e:  # safetensors raises its own SafetensorError for a damaged or foreign file
            ap.error(f"--init {args.init}: not a readable .safetensors file ({str(e).splitlines()[0]})")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            ap.error(f"--init {args.init}: not weights of the {args.task} configuration ({str(e).splitlines()[0]})")
        print(f"initialised from {args.init}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=1e-4)

    def step_loss() -> torch.Tensor:
        x, y = make_batch(args.task, images, rng, batch, patch, mix, args.identity, args.light)
        out = model(x)
        loss = charbonnier(out, y)
        if args.consistency:
            loss = loss + args.consistency * low_pass_l1(out, y)
        return loss

    loop = train_loop.Loop(out=args.out, lr=lr, warmup=args.warmup, clip=0.5, minutes=args.minutes, steps=args.steps,
                           log_every=args.log_every, ckpt_minutes=args.ckpt_minutes, resume=args.resume,
                           task=args.task, args={k: str(v) for k, v in vars(args).items()})
    step, elapsed = train_loop.run(model, opt, rng, step_loss, loop, ap.error)
    save_weights(model, weights, args.task, {"steps": step, "seconds": round(elapsed), "seed": args.seed,
                                             "patch": patch, "batch": batch, "lr": lr, "config": CONFIGS[args.task]["arch"],
                                             "identity": args.identity, "light": args.light,
                                             "consistency": args.consistency,
                                             **({"init": args.init.name} if args.init else {}),
                                             **({"mix": dict(zip(WEATHER_KINDS, mix))} if args.task == "weather" else {})})
    print(f"done: {step} steps in {elapsed:.0f} s; wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
