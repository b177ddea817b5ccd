#!/usr/bin/env python3
"""Train the denoisers on unprocessed clean images (issue 19): ``--task raw-denoise`` (``RawDenoiseUNet``, packed
Bayer RAW) or ``--task rgb-denoise`` (``DenoiseUNet``, sRGB photos).

    python data_tools/train_denoise.py --task raw-denoise --out runs/raw-denoise --minutes 25 --seed 0 [--resume]
    python data_tools/train_denoise.py --task rgb-denoise --out runs/denoise --minutes 25 --seed 0

Data (Brooks et al., "Unprocessing Images for Learned Raw Denoising", CVPR 2019; :mod:`data_tools.unprocess`):

* ``2 * --patch`` px sRGB crops of the clean *training* images of ``data_tools/clean_data.py`` (the starters'
  sources; held-out images and everything under ``../shared`` are never read; ``--extra-images`` adds the 26
  photographs of its ``extra`` split), random 90-degree rotation / flip;
* each crop unprocessed with its own random camera (CCM mix, brightening and white-balance gains, Bayer pattern
  drawn uniformly from RGGB/GRBG/GBRG/BGGR) to a linear mosaic;
* Poisson-Gaussian noise ``var = a*x + b`` (exact: ``a * Poisson(x/a) + N(0, b)``, clipped at white), the level
  drawn per patch from an equal mix of

  - the paper's ``sample_noise_level``: ``log a ~ U[log 1e-4, log 1.2e-2]``,
    ``log b = 2.18 log a + 1.20 + N(0, 0.26)``;
  - the ISO range of ``restore.noise.ISO_LEVELS`` (ISO 100 to ~80000 of a full-frame sensor):
    ``log a ~ U[log 2.5e-5, log 1.2e-2]``, ``log b = s log a + c + N(0, 0.35)`` with ``(s, c)`` the
    least-squares line through the four ``ISO_LEVELS`` points (s ~= 1.89, c ~= 1.19), which holds 5-16x more read
    noise than the paper's line at the same ``a``;

* ``raw-denoise``: the clean and noisy mosaics packed to ``(4, patch, patch)`` R, G1, G2, B; conditioning
  ``sigma_map(noisy, a, b, 4)`` (from the noisy planes, as at inference); input ``(B, 8, patch, patch)``;
  ``--grain-fraction`` (default 0, as the shipped recipe) puts scene grain on that share of the crops before
  unprocessing, in the target too (:func:`add_grain`, below);
* ``rgb-denoise``: both mosaics developed back to sRGB by the same camera (:func:`data_tools.unprocess.process`:
  white balance, bilinear demosaic, colour matrix, gamma, tone curve), so the noise is a camera's
  (signal-dependent, spatially correlated by demosaicing); ``CLEAN_FRACTION`` of the patches get no noise at
  all (the denoiser must leave a clean photo alone); ``--grain-fraction`` of the crops get *scene* grain before
  unprocessing (:func:`add_grain`: spatially correlated Gaussian texture, 1-10/255, in the input *and* the
  target, like the film grain of a scanned photo: Set5/head.png), so the network learns to remove only the noise
  its conditioning level stands for and to keep texture that merely looks noisy; conditioning: one plane holding
  :func:`restore.noise.estimate_sigma` of the noisy patch (what inference computes on the whole image);
  input ``(B, 4, 2 * patch, 2 * patch)``; target the clean development;

* loss on the model's output: ``--loss l1`` (plain L1) or ``--loss l1-sigma`` (default: L1 of the error in
  units of the noise sigma, ``|out - clean| / max(sigma, floor)``, the sigma map's per-pixel value for RAW, the
  estimated level for sRGB).  Plain L1 is dominated by the noisiest patches, whose errors are 100x larger: the
  first RAW starter, trained with it, learnt to smooth low-ISO texture and fell below its input at ISO 800 on 2
  of 15 held-out images.  The sigma-normalised loss weighs a low-ISO patch's error like a high-ISO one's,
  relative to the noise it started with.  ``--init W`` starts from the weights ``W`` (fine-tuning; the recipe
  and the weights' metadata record it).  ``--loss l1-sigma+nmse`` adds each patch's mean squared error divided
  by its mean noise variance: what raw PSNR measures (squared error, bright pixels included) as a gain over the
  patch's own noise, so every ISO level still weighs alike.

Defaults: patch 64 (half-resolution: packed planes for RAW, 2x2-folded for sRGB; 128 px sRGB crops), batch 8, one thread.  Optimisation: Adam (lr ``--lr``, betas 0.9/0.99), linear warm-up then cosine decay to 2 % over the time budget,
gradient-norm clip 1.0.  Determinism: ``--threads`` threads, ``torch.manual_seed``, one seeded numpy
``Generator`` for all sampling, ``torch.use_deterministic_algorithms(True)``; only the late learning rates depend
on the measured time.  Checkpoints (model, optimiser, step, elapsed time, RNG states) every ``--ckpt-minutes`` in
``<out>/ckpt.pt``; ``--resume`` continues until the total elapsed training time reaches ``--minutes``.  Loss log
``<out>/loss.csv``.  The loop is shared with ``train.py``: :mod:`data_tools.train_loop`.  At the end the model is written to ``--weights`` (default
``weights/<task>.safetensors``), fp32, with the recipe in the safetensors metadata ``restore.train``; no
``restore.hparams`` is needed (both architectures infer every constructor argument from the tensor shapes).  The
MANIFEST recipe line is printed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_tools import train_loop  # noqa: E402
from data_tools import unprocess as up  # noqa: E402
from data_tools.clean_data import REGISTRIES, load_images  # noqa: E402
from data_tools.train import augment, random_crop  # noqa: E402
from restore.noise import ISO_LEVELS  # noqa: E402

#: Constructor kwargs of the shipped models (recorded in ``restore.train``; the loader infers them from shapes).
MODEL_KWARGS = {
    "raw-denoise": dict(in_planes=4, base=32, depth=3, sigma_channels=4),
    "rgb-denoise": dict(channels=3, base=32, depth=3),
}
#: sRGB task: default share of patches without noise (the identity must be learnt: do no harm on clean photos);
#: ``--clean-fraction`` sets it.
CLEAN_FRACTION = 0.1
#: sRGB task: default share of crops with scene grain (:func:`add_grain`); ``--grain-fraction`` sets it.
GRAIN_FRACTION = 0.0
#: ISO-range sampler: log-uniform ``a`` over this range (ISO ~100 to ~80000 of ``ISO_LEVELS``' sensor).
ISO_A_RANGE = (2.5e-5, 1.2e-2)
ISO_B_STD = 0.35  # spread (natural-log sd) of b around the ISO_LEVELS line
_LA = np.log([a for a, _ in ISO_LEVELS.values()])
_LB = np.log([b for _, b in ISO_LEVELS.values()])
ISO_SLOPE, ISO_OFFSET = (float(v) for v in np.polyfit(_LA, _LB, 1))
PAPER_FRACTION = 0.5  # share of patches whose level comes from the paper's sample_noise_level
#: Lower bound of the sigma that normalises the ``l1-sigma`` loss, per task: RAW (normalised raw units) about
#: the noise of a dark pixel at ISO 400, so the darkest ISO-100 pixels (sigma ~1e-4) do not take the whole
#: gradient; sRGB: half a level of 8-bit, below which an estimate is texture rather than noise.
SIGMA_FLOOR = {"raw-denoise": 5e-4, "rgb-denoise": 0.5 / 255}


#: ``--low-iso`` sampler: log-uniform ``a`` over ISO ~100 to ~3200 (``b`` from the ISO line), for fine-tuning
#: where plain sampling gives few low-ISO patches (about 11 % below ISO 800).
LOW_ISO_A_RANGE = (2.5e-5, 4e-4)


def iso_line_level(rng: np.random.Generator, a_range: tuple[float, float]) -> tuple[float, float]:
    """``(a, b)`` on the sensor's ISO line (module docstring): ``log a ~ U[log a_range]``, ``log b = ISO_SLOPE log a
    + ISO_OFFSET + N(0, ISO_B_STD)``; ``a`` and ``b`` in normalised raw units (white = 1)."""
    log_a = rng.uniform(np.log(a_range[0]), np.log(a_range[1]))
    log_b = ISO_SLOPE * log_a + ISO_OFFSET + rng.normal(0.0, ISO_B_STD)
    return float(np.exp(log_a)), float(np.exp(log_b))


def sample_level(rng: np.random.Generator, low_iso: float = 0.0) -> tuple[float, float]:
    """``(a, b)`` from the mixed distribution described in the module docstring; with probability ``low_iso``
    from ``LOW_ISO_A_RANGE`` instead."""
    if low_iso > 0 and rng.random() < low_iso:
        return iso_line_level(rng, LOW_ISO_A_RANGE)
    if rng.random() < PAPER_FRACTION:
        return up.sample_noise_level(rng)
    return iso_line_level(rng, ISO_A_RANGE)


def make_pair(img: np.ndarray, rng: np.random.Generator, patch: int, low_iso: float = 0.0,
              grain_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """RAW pair: input ``(8, patch, patch)`` (noisy planes + sigma map), target ``(4, patch, patch)``; a share
    ``grain_fraction`` of the crops get scene grain (:func:`add_grain`) before unprocessing, kept in the target."""
    crop = augment(random_crop(img, 2 * patch, rng), rng)
    if grain_fraction and rng.random() < grain_fraction:
        crop = add_grain(crop, rng)
    mosaic, meta = up.unprocess(crop, rng, cfa_pattern=None)
    clean = up.pack_bayer(mosaic, meta["cfa_pattern"])
    a, b = sample_level(rng, low_iso)
    noisy = up.add_noise(clean, a, b, rng)
    sig = up.sigma_map(noisy, a, b, channels=4)
    return np.concatenate([noisy, sig]), clean


def add_grain(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scene grain on an sRGB crop ``(H, W, 3)`` float32 in [0, 1]: Gaussian noise blurred by a Gaussian of
    0.7-1.8 px (so a wavelet noise estimate sees little of it), luminance-only or per channel, standard deviation
    1-10/255 (log-uniform); clipped to [0, 1].  It becomes image content: the target keeps it."""
    import cv2

    amp = float(np.exp(rng.uniform(np.log(1.0), np.log(10.0)))) / 255.0
    blur = float(rng.uniform(0.7, 1.8))
    g = rng.standard_normal(crop.shape[:2] + ((1,) if rng.random() < 0.5 else (3,))).astype(np.float32)
    g = cv2.GaussianBlur(g, (0, 0), blur).reshape(crop.shape[:2] + (-1,))
    g /= max(float(g.std()), 1e-6)
    return np.clip(crop + amp * g, 0.0, 1.0).astype(np.float32)


def develop_pair(crop: np.ndarray, rng: np.random.Generator, level: Callable[[], tuple[float, float] | None]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(clean, noisy)`` sRGB developments ``(H, W, 3)`` float32 in [0, 1] of one sRGB crop (float32 in [0, 1])
    through one random camera (:func:`data_tools.unprocess.unprocess` / ``process``), with Poisson-Gaussian noise
    ``(a, b) = level()`` added to the mosaic, or none where ``level()`` is None (``noisy`` is then the clean
    development).  ``level`` is called after the camera is drawn, so ``rng``'s stream is the one the shipped
    recipes were trained with."""
    mosaic, meta = up.unprocess(crop, rng, cfa_pattern=None)
    ab = level()
    noisy_m = mosaic if ab is None else up.add_noise(mosaic, *ab, rng)
    return up.process(mosaic, meta), up.process(noisy_m, meta)


def make_pair_srgb(img: np.ndarray, rng: np.random.Generator, patch: int, low_iso: float = 0.0,
                   clean_fraction: float = CLEAN_FRACTION, grain_fraction: float = GRAIN_FRACTION
                   ) -> tuple[np.ndarray, np.ndarray]:
    """sRGB pair: input ``(4, 2*patch, 2*patch)`` (noisy development + noise-level plane), target ``(3, ...)``."""
    from restore.noise import estimate_sigma

    crop = augment(random_crop(img, 2 * patch, rng), rng)
    if grain_fraction and rng.random() < grain_fraction:
        crop = add_grain(crop, rng)
    clean, noisy = develop_pair(crop, rng, lambda: None if rng.random() < clean_fraction else sample_level(rng, low_iso))
    level = np.full(noisy.shape[:2], estimate_sigma(noisy), np.float32)
    return np.concatenate([noisy.transpose(2, 0, 1), level[None]]), np.ascontiguousarray(clean.transpose(2, 0, 1))


PAIRS = {"raw-denoise": make_pair, "rgb-denoise": make_pair_srgb}


def make_batch(images, rng, batch: int, patch: int, task: str = "raw-denoise", low_iso: float = 0.0,
               clean_fraction: float = CLEAN_FRACTION, grain_fraction: float = GRAIN_FRACTION):
    pair = PAIRS[task]
    extra = (clean_fraction, grain_fraction) if task == "rgb-denoise" else (grain_fraction,)
    xs, ys = zip(*(pair(images[int(rng.integers(len(images)))], rng, patch, low_iso, *extra) for _ in range(batch)))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def loss_fn(kind: str, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor, floor: float = 5e-4) -> torch.Tensor:
    """Training loss: ``l1``, ``l1-sigma`` or ``l1-sigma+nmse`` (module docstring); ``x`` is the input
    (image/planes + sigma)."""
    err = (out - y).abs()
    if kind == "l1":
        return err.mean()
    sigma = x[:, y.shape[1]:].clamp_min(floor)
    if sigma.shape[1] != 1 and sigma.shape[1] != y.shape[1]:
        raise ValueError(f"sigma planes {sigma.shape[1]} do not match the target's {y.shape[1]}")
    loss = (err / sigma).mean()
    if kind == "l1-sigma+nmse":  # + each patch's MSE over its mean noise variance: the PSNR gain, per patch
        nmse = err.square().mean(dim=(1, 2, 3)) / sigma.square().mean(dim=(1, 2, 3))
        loss = loss + nmse.mean()
    return loss


def build_model(task: str = "raw-denoise", blocks: tuple[int, ...] = ()) -> torch.nn.Module:
    """The network of ``task`` (``MODEL_KWARGS``) with ``blocks`` residual blocks per U-Net level."""
    if task == "rgb-denoise":
        from restore.models.archs.rgbdenoise import DenoiseUNet

        return DenoiseUNet(**MODEL_KWARGS[task], blocks=blocks)
    from restore.models.archs.rawdenoise import RawDenoiseUNet

    return RawDenoiseUNet(**MODEL_KWARGS[task], blocks=blocks)


def init_from(model: torch.nn.Module, path: Path) -> list[str]:
    """Load the weights in ``path`` into ``model``; residual blocks the file lacks (``eres``/``dres``, built as
    the identity) keep their initial values and are returned.  Any other missing or unexpected key raises."""
    from safetensors.torch import load_file

    try:
        res = model.load_state_dict(load_file(str(path)), strict=False)
    except RuntimeError as e:  # shapes of another width or depth
        raise SystemExit(f"{path}: --init weights do not fit the model ({str(e).splitlines()[-1].strip()[:160]})") from None
    bad = [k for k in res.missing_keys if not re.search(r"(?:^|\.)[ed]res\.", k)] + list(res.unexpected_keys)
    if bad:
        raise SystemExit(f"{path}: --init weights do not fit the model (keys {bad[:4]}...)")
    return list(res.missing_keys)


def save_weights(model: torch.nn.Module, path: Path, train_meta: dict) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"restore.task": train_meta.get("task", "raw-denoise"),
            "restore.train": json.dumps(train_meta, sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path), metadata=meta)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=tuple(MODEL_KWARGS), default="raw-denoise")
    ap.add_argument("--out", type=Path, required=True, help="run folder (ckpt.pt, loss.csv)")
    ap.add_argument("--minutes", type=float, default=25.0, help="total training time budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--patch", type=int, default=64,
                    help="half-resolution patch size (packed RAW planes / folded sRGB; the sRGB crop is twice this)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--loss", choices=("l1", "l1-sigma", "l1-sigma+nmse"), default="l1-sigma")
    ap.add_argument("--low-iso", type=float, default=0.0,
                    help="share of patches with ISO ~100-3200 noise (LOW_ISO_A_RANGE), e.g. 0.3 when fine-tuning")
    ap.add_argument("--clean-fraction", type=float, default=CLEAN_FRACTION,
                    help="rgb-denoise: share of patches without noise (the identity)")
    ap.add_argument("--grain-fraction", type=float, default=GRAIN_FRACTION,
                    help="share of crops with scene grain kept in the target (add_grain)")
    ap.add_argument("--init", type=Path, default=None, help="start from these weights (safetensors)")
    ap.add_argument("--blocks", default="", help="residual blocks per U-Net level, e.g. 2,2,0 (default none); "
                    "with --init, blocks the weights lack start as the identity")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is steadier than 2 on a CPU shared with other jobs")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ckpt-minutes", type=float, default=3.0)
    ap.add_argument("--weights", type=Path, default=None, help="output weights (default weights/<task>.safetensors)")
    ap.add_argument("--images", choices=("all", "pypi"), default="all",
                    help="clean training images: all (PyPI + Debian packages) or pypi (scikit-image only)")
    ap.add_argument("--extra-images", action="store_true",
                    help="also the 'extra' split of data_tools/clean_data.py (26 more photographs, Debian packages)")
    args = ap.parse_args(argv)
    if args.patch % 8:
        ap.error("--patch must be a multiple of 8 (three 2x downsamplings)")
    if args.weights is None:
        args.weights = ROOT / "weights" / f"{args.task}.safetensors"

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # subnormal activations slow CPU convolutions many-fold
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    registries = ("pypi",) if args.images == "pypi" else REGISTRIES
    images = load_images("train", registries=registries)
    if args.extra_images:
        images += load_images("extra", registries=registries)
    blocks = tuple(int(b) for b in args.blocks.split(",") if b.strip())
    model = build_model(args.task, blocks)
    if args.init is not None and not args.resume:
        new = init_from(model, args.init)
        print(f"initialised from {args.init}" + (f"; {len(new)} new tensors (residual blocks)" if new else ""),
              flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    print(f"{len(images)} training images, {n_params / 1e6:.3f} M parameters, patch {args.patch} (packed), "
          f"batch {args.batch}; ISO line log b = {ISO_SLOPE:.3f} log a + {ISO_OFFSET:.3f}", flush=True)

    def step_loss() -> torch.Tensor:
        x, y = make_batch(images, rng, args.batch, args.patch, args.task, args.low_iso, args.clean_fraction,
                          args.grain_fraction)
        return loss_fn(args.loss, model(x), x, y, SIGMA_FLOOR[args.task])

    loop = train_loop.Loop(out=args.out, lr=args.lr, warmup=args.warmup, clip=1.0, minutes=args.minutes,
                           log_every=args.log_every, ckpt_minutes=args.ckpt_minutes, resume=args.resume,
                           task=args.task, args={k: str(v) for k, v in vars(args).items()})
    step, elapsed = train_loop.run(model, opt, rng, step_loss, loop, ap.error)
    train_meta = {"task": args.task, "steps": step, "seconds": round(elapsed), "seed": args.seed, "patch": args.patch,
                  "batch": args.batch, "lr": args.lr, "images": args.images, "extra_images": args.extra_images,
                  "n_images": len(images), "paper_fraction": PAPER_FRACTION,
                  "iso_a_range": list(ISO_A_RANGE), "iso_line": [round(ISO_SLOPE, 4), round(ISO_OFFSET, 4)],
                  "iso_b_std": ISO_B_STD, "model": {**MODEL_KWARGS[args.task], **({"blocks": blocks} if blocks else {})},
                  "loss": args.loss, "sigma_floor": SIGMA_FLOOR[args.task],
                  "low_iso": args.low_iso, "clean_fraction": args.clean_fraction if args.task == "rgb-denoise" else 0.0,
                  "grain_fraction": args.grain_fraction,
                  "init": None if args.init is None else args.init.name}
    save_weights(model, args.weights, train_meta)
    print(f"done: {step} steps in {elapsed:.0f} s; wrote {args.weights} ({args.weights.stat().st_size / 1e6:.2f} MB)",
          flush=True)
    print(f"recipe: python data_tools/train_denoise.py --task {args.task} --out {args.out} --minutes {args.minutes:g}"
          f" --seed {args.seed}"
          f" --patch {args.patch} --batch {args.batch} --lr {args.lr:g} --threads {args.threads} --loss {args.loss}"
          + (f" --low-iso {args.low_iso:g}" if args.low_iso else "")
          + (f" --clean-fraction {args.clean_fraction:g}" if args.task == "rgb-denoise" else "")
          + (f" --grain-fraction {args.grain_fraction:g}" if args.grain_fraction else "")
          + (f" --blocks {args.blocks}" if blocks else "")
          + (f" --init {args.init}" if args.init is not None else "")
          + (" --images pypi" if args.images == "pypi" else "")
          + (" --extra-images" if args.extra_images else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
