#!/usr/bin/env python3
"""Train the do-no-harm guard of a starter (issue 20) or of the RGB denoiser (issue 19; :mod:`restore.guard`).

    python data_tools/train_guard.py --task derain --model derain-starter --out runs/guard-derain \\
        --pairs 1200 --minutes 10 --seed 0 [--weights weights/derain-starter-guard.safetensors]
    python data_tools/train_guard.py --task denoise --model runs/denoise-ft2/rgb-denoise.safetensors \\
        --out runs/guard-dn --pairs 1500 --minutes 12 --global-context --identity-weight 20

1. Draws ``--pairs`` training patches (``--patch`` px) of the clean training images (held-out images excluded) as
   ``data_tools/train.py`` draws them (:func:`data_tools.train.make_batch`): ``--identity`` of them clean/clean,
   ``--light`` of the others lightened, the rest fully degraded; with ``--exposure E`` each pair re-exposed by a
   factor in logU[1/E, E] (:func:`re_expose`); inputs rounded to 8 bits as a saved photo is;
   ``--hdr`` of all pairs then log-encoded as scene-linear HDR (:func:`log_encode_pairs`), the encoding the
   ``model`` step gives an EXR.
   ``--task denoise`` (the RGB denoiser, ``rgb-denoise``) draws its pairs as ``data_tools/train_denoise.py
   --task rgb-denoise`` does (:func:`draw_denoise_pairs`): each crop developed by a random synthetic camera, clean
   (identity), with a low noise level (light: ISO ~100-3200 of ``restore.noise.ISO_LEVELS``' sensor) or a high one
   (heavy: ISO ~3200-80000); ``--grain`` of the crops carry scene grain kept in the target (a film scan's), and the
   model is given :func:`restore.noise.estimate_sigma` of each 8-bit input, as the model step gives it.
2. Runs the frozen model (``--model``: a catalogue name or a weights file) over them once, output clipped to
   [0, 1] as the ``model`` step clips it, and caches ``(x, model(x), clean)`` in ``<out>/pairs.pt`` (reused when
   the same arguments ask for it again).
3. Trains :class:`restore.guard.GuardNet` so that ``x + w (model(x) - x)`` is close to the clean patch: the
   Charbonnier distance (or ``--loss psnr``: -PSNR per pair), with identity pairs weighted ``--identity-weight``
   (leaving a clean photo alone matters more than a small gain on a degraded one); ``--harm-weight`` adds a cost
   for pixels the kept change makes worse.  ``--frame-weight`` adds the whole-image weight
   (``GuardNet(frame_weight=True)``); ``--init`` starts from a trained guard and ``--frame-only`` then trains the
   whole-image weight alone.  AdamW, warm-up and cosine decay over ``--minutes``, one CPU thread by default
   (:mod:`data_tools.train_loop`).
4. Prints, per kind of pair, the mean and worst gain of the guarded and the unguarded output over the input on the
   training pairs (the held-out figures are ``benchmarks/starter_eval.py --do-no-harm``'s), and writes the guard to
   ``--weights``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_tools import train_loop  # noqa: E402
from data_tools.clean_data import REGISTRIES, load_images  # noqa: E402
from data_tools.train import DEFAULT_MIX, TASKS, augment, make_batch, parse_mix, random_crop  # noqa: E402
from restore.guard import GuardNet, save_guard  # noqa: E402

KINDS = ("identity", "light", "heavy")


def re_expose(x: torch.Tensor, c: torch.Tensor, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Input and clean target of one pair (sRGB, ``(1, 3, P, P)``) exposed ``factor`` times brighter in linear light,
    clipped to white and sRGB-encoded again: the same scene rendered brighter or darker, as another camera
    exposure (or the model step's display exposure of an HDR image, :class:`restore.color.ExposureEncoding`) gives it."""
    from restore import color

    def one(a: torch.Tensor) -> torch.Tensor:
        lin = color.srgb_to_linear(a.clamp(0, 1).numpy()) * np.float32(factor)
        return torch.from_numpy(color.linear_to_srgb(np.clip(lin, 0.0, 1.0)).astype(np.float32))

    return one(x), one(c)


def draw_pairs(task: str, images, rng: np.random.Generator, n: int, patch: int, identity: float, light: float,
               mix, exposure: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``(x, clean, kind)``: float32 ``(n, 3, patch, patch)`` inputs (8-bit values) and targets, kind index per pair;
    with ``exposure`` > 1 each pair re-exposed (:func:`re_expose`) by a factor drawn from logU[1/exposure, exposure]."""
    xs, cs, kinds = [], [], []
    for _ in range(n):
        u = rng.random()
        if u < identity:
            x, c = make_batch(task, images, rng, 1, patch, mix, identity=1.0)
            kind = 0
        else:
            lighten = rng.random() < light / max(1e-9, 1.0 - identity)
            x, c = make_batch(task, images, rng, 1, patch, mix, identity=0.0, light=1.0 if lighten else 0.0)
            kind = 1 if lighten else 2
        if exposure > 1.0:
            x, c = re_expose(x, c, float(np.exp(rng.uniform(-np.log(exposure), np.log(exposure)))))
        xs.append(torch.round(x.clamp(0, 1) * 255) / 255)
        cs.append(c)
        kinds.append(kind)
    return torch.cat(xs), torch.cat(cs), np.asarray(kinds)


def draw_denoise_pairs(images, rng: np.random.Generator, n: int, patch: int, identity: float, light: float,
                       grain: float) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, torch.Tensor]:
    """``(x, clean, kind, sigma)`` for the RGB denoiser: float32 ``(n, 3, patch, patch)`` 8-bit noisy developments
    and clean targets, kind index per pair (module docstring), and float32 ``(n,)`` the noise level
    :func:`restore.noise.estimate_sigma` of each input (the model's conditioning)."""
    from data_tools import train_denoise as td
    from restore.noise import estimate_sigma

    xs, cs, kinds, sig = [], [], [], []
    for _ in range(n):
        u = rng.random()
        kind = 0 if u < identity else (1 if u < identity + light else 2)
        crop = augment(random_crop(images[int(rng.integers(len(images)))], patch, rng), rng)
        if grain and rng.random() < grain:
            crop = td.add_grain(crop, rng)
        ab = None if kind == 0 else td.iso_line_level(
            rng, td.LOW_ISO_A_RANGE if kind == 1 else (td.LOW_ISO_A_RANGE[1], td.ISO_A_RANGE[1]))
        clean, noisy = td.develop_pair(crop, rng, lambda: ab)
        noisy = np.round(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0
        xs.append(torch.from_numpy(noisy.transpose(2, 0, 1).copy()))
        cs.append(torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1))))
        kinds.append(kind)
        sig.append(estimate_sigma(noisy))
    return torch.stack(xs), torch.stack(cs), np.asarray(kinds), torch.tensor(sig, dtype=torch.float32)


def log_encode_pairs(x: torch.Tensor, c: torch.Tensor, rng: np.random.Generator, share: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``share`` of the pairs as the ``model`` step feeds scene-linear HDR to an sRGB network.

    Each chosen pair is decoded to linear (``restore.color.srgb_to_linear``), brightened by ``g ~ logU[1, 16]``,
    and both input and target are log-encoded (``restore.color.hdr_encode``) with one peak: the patch's brightest
    input value times ``logU[1.2, 8]`` (a whole photo's highlights are brighter than most of its patches), at least
    1, as ``hdr: auto`` encodes an image whose peak exceeds 1.  Others are returned unchanged.

    Args:
        x, c: Inputs and clean targets, float32 ``(n, 3, P, P)``, sRGB-encoded in [0, 1].
        rng: Draws which pairs, their gains and peaks.
        share: Fraction of pairs to encode, in [0, 1].

    Returns:
        New ``(x, c)`` tensors of the same shapes, values in [0, 1].
    """
    from restore import color

    x, c = x.clone(), c.clone()
    for i in np.nonzero(rng.random(len(x)) < share)[0]:
        g = float(np.exp(rng.uniform(0.0, np.log(16.0))))
        lx = color.srgb_to_linear(x[i].numpy()) * g
        lc = color.srgb_to_linear(c[i].clamp(0, 1).numpy()) * g
        peak = max(1.0, float(lx.max())) * float(np.exp(rng.uniform(np.log(1.2), np.log(8.0))))
        x[i] = torch.from_numpy(color.hdr_encode(lx, peak))
        c[i] = torch.from_numpy(color.hdr_encode(lc, peak))
    return x, c


def model_outputs(model: str, x: torch.Tensor, batch: int = 8, sigma: torch.Tensor | None = None) -> torch.Tensor:
    """The frozen model's outputs for inputs ``x`` ``(n, 3, P, P)``, clipped to [0, 1]; ``sigma`` ``(n,)``: a
    noise-level plane appended to each input (the RGB denoiser's conditioning)."""
    from restore import load_model

    module = load_model(model).module.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            if sigma is not None:
                xb = torch.cat([xb, sigma[i:i + batch, None, None, None].expand(-1, 1, *xb.shape[2:])], 1)
            outs.append(module(xb).clamp(0, 1))
            print(f"  model outputs {min(len(x), i + batch)}/{len(x)}", end="\r", flush=True)
    print()
    return torch.cat(outs).float()


def psnr_rows(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    mse = ((a.double() - b.double()) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return (10 * torch.log10(1.0 / mse)).numpy()


def report(net: GuardNet, x, y, c, kinds) -> dict:
    """Per kind: mean / worst PSNR gain over the input of the guarded and unguarded output (identity: PSNR vs input)."""
    with torch.inference_mode():
        w = torch.cat([net(x[i:i + 16], y[i:i + 16]) for i in range(0, len(x), 16)])
    g = x + w * (y - x)
    rows = {}
    for k, name in enumerate(KINDS):
        m = kinds == k
        if not m.any():
            continue
        if name == "identity":
            pg, pu = psnr_rows(g[m], x[m]), psnr_rows(y[m], x[m])
        else:
            base = psnr_rows(x[m], c[m])
            pg, pu = psnr_rows(g[m], c[m]) - base, psnr_rows(y[m], c[m]) - base
        rows[name] = {"n": int(m.sum()), "guarded": [float(pg.mean()), float(pg.min())],
                      "model": [float(pu.mean()), float(pu.min())], "mean_w": float(w[torch.from_numpy(m)].mean())}
        print(f"  {name:8s} n={m.sum():4d}  guarded {pg.mean():+7.2f} / {pg.min():+7.2f}   model {pu.mean():+7.2f} / "
              f"{pu.min():+7.2f}   mean w {rows[name]['mean_w']:.3f}", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=(*TASKS, "denoise"), required=True,
                    help="a starter's task, or denoise (the RGB denoiser)")
    ap.add_argument("--model", required=True, help="the frozen model: catalogue name or weights file")
    ap.add_argument("--out", type=Path, required=True, help="run folder (pairs.pt, ckpt.pt, loss.csv)")
    ap.add_argument("--weights", type=Path, default=None, help="default <out>/guard.safetensors")
    ap.add_argument("--pairs", type=int, default=1200)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--identity", type=float, default=0.35)
    ap.add_argument("--light", type=float, default=0.35, help="share of all pairs lightened (synth.lighten)")
    ap.add_argument("--identity-weight", type=float, default=2.0)
    ap.add_argument("--loss", choices=("charbonnier", "psnr"), default="charbonnier",
                    help="per-pair distance: Charbonnier, or -PSNR (log MSE, floored at 50 dB) which weighs every "
                         "pair's relative error alike and so the worst images more")
    ap.add_argument("--harm-weight", type=float, default=0.0,
                    help="add this weight times the mean of max(0, |guarded - clean| - |input - clean|): a pixel the "
                         "kept change makes worse costs more than a gain it leaves out (0 = the plain distance)")
    ap.add_argument("--mix", default=None, help="weather only: as data_tools/train.py --mix")
    ap.add_argument("--feats", type=int, default=16)
    ap.add_argument("--global-context", action="store_true",
                    help="GuardNet(global_context=True): the weights also see the whole image's mean features")
    ap.add_argument("--frame-weight", action="store_true",
                    help="GuardNet(frame_weight=True): also one weight for the whole image (implies --global-context)")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from this guard's weights (a .safetensors of restore.guard.save_guard); layers the "
                         "new form adds (--frame-weight) start fresh")
    ap.add_argument("--frame-only", action="store_true",
                    help="with --init and --frame-weight: train only the whole-image weight, the per-pixel guard "
                         "stays as it was")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--images", choices=("all", "pypi"), default="all")
    ap.add_argument("--exposure", type=float, default=1.0,
                    help="re-expose each pair by a factor in logU[1/E, E] (re_expose): a guard that holds for brighter "
                         "and darker renditions of a scene; 1 = as drawn")
    ap.add_argument("--grain", type=float, default=0.3,
                    help="denoise only: share of crops with scene grain kept in the target (train_denoise.add_grain)")
    ap.add_argument("--hdr", type=float, default=0.0,
                    help="share of pairs given as log-encoded scene-linear HDR, as the model step feeds an EXR "
                         "(log_encode_pairs); 0 = sRGB only")
    args = ap.parse_args(argv)
    if not (0 <= args.identity <= 1 and 0 <= args.light <= 1 - args.identity):
        ap.error("--identity and --light must be shares in [0, 1] that sum to at most 1")
    if args.patch % 32:
        ap.error("--patch must be a multiple of 32")
    if not args.exposure >= 1.0:
        ap.error("--exposure must be at least 1")
    if args.frame_only and (args.init is None or not args.frame_weight):
        ap.error("--frame-only needs --init and --frame-weight")
    if args.task == "denoise" and (args.hdr or args.exposure != 1.0 or args.mix is not None):
        ap.error("--hdr, --exposure and --mix are for the starters, not --task denoise")
    mix = DEFAULT_MIX
    if args.mix is not None:
        try:
            mix = parse_mix(args.mix)
        except ValueError as e:
            ap.error(str(e))

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    key = {k: str(getattr(args, k)) for k in ("task", "model", "pairs", "patch", "identity", "light", "mix", "seed",
                                               "images")}
    if args.hdr:  # older caches (no HDR share) stay valid for --hdr 0
        key["hdr"] = str(args.hdr)
    if args.exposure != 1.0:  # and for --exposure 1
        key["exposure"] = str(args.exposure)
    if args.task == "denoise":
        key["grain"] = str(args.grain)
    cache = args.out / "pairs.pt"
    data = None
    if cache.is_file():
        try:  # tensors and strings only: never unpickle code; a damaged cache is simply made again
            data = torch.load(cache, map_location="cpu", weights_only=True)
        except Exception as e:
            print(f"{cache}: unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__}); drawing the pairs again")
    if data is None or data.get("key") != key:
        images = load_images("train", registries=("pypi",) if args.images == "pypi" else REGISTRIES)
        sigma = None
        if args.task == "denoise":
            x, c, kinds, sigma = draw_denoise_pairs(images, rng, args.pairs, args.patch, args.identity, args.light,
                                                    args.grain)
        else:
            x, c, kinds = draw_pairs(args.task, images, rng, args.pairs, args.patch, args.identity, args.light, mix,
                                     args.exposure)
        if args.hdr:
            x, c = log_encode_pairs(x, c, rng, args.hdr)
        y = model_outputs(args.model, x, sigma=sigma)
        data = {"key": key, "x": x, "y": y, "c": c, "kinds": torch.from_numpy(kinds)}
        torch.save(data, cache)
    x, y, c, kinds = data["x"], data["y"], data["c"], data["kinds"].numpy()
    weight = torch.where(torch.from_numpy(kinds) == 0, args.identity_weight, 1.0).float()
    print(f"{len(x)} pairs: " + ", ".join(f"{n} {int((kinds == k).sum())}" for k, n in enumerate(KINDS)), flush=True)

    net = GuardNet(args.feats, args.global_context, args.frame_weight)
    if args.init is not None:
        from restore.guard import load_guard

        try:
            start = load_guard(args.init)
        except ValueError as e:
            ap.error(f"--init: {e}")
        keys = net.load_state_dict(start.state_dict(), strict=False)  # only the whole-image weight may be new
        if keys.unexpected_keys or any(not k.startswith("frame.") for k in keys.missing_keys):
            ap.error(f"--init {args.init}: a guard of another form (--feats differs, or it lacks the global context "
                     "that --global-context and --frame-weight need)")
    if args.frame_only:
        for name, p in net.named_parameters():
            p.requires_grad_(name.startswith("frame."))
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=args.lr, betas=(0.9, 0.99), weight_decay=1e-4)
    crop = args.patch // 2 + 32  # random sub-crops: more positions per pair, cheaper steps

    def step_loss() -> torch.Tensor:
        idx = torch.from_numpy(rng.integers(0, len(x), args.batch))
        t = int(rng.integers(0, (args.patch - crop) // 2 + 1)) * 2
        s = int(rng.integers(0, (args.patch - crop) // 2 + 1)) * 2
        xb, yb, cb = (a[idx, :, t:t + crop, s:s + crop] for a in (x, y, c))
        g = xb + net(xb, yb) * (yb - xb)
        if args.loss == "psnr":
            per = 10 * torch.log10(((g - cb) ** 2).mean(dim=(1, 2, 3)) + 1e-5)
        else:
            per = torch.sqrt((g - cb) ** 2 + 1e-6).mean(dim=(1, 2, 3))
        if args.harm_weight:
            per = per + args.harm_weight * torch.relu((g - cb).abs() - (xb - cb).abs()).mean(dim=(1, 2, 3))
        return (per * weight[idx]).sum() / weight[idx].sum()

    loop = train_loop.Loop(out=args.out, lr=args.lr, warmup=50, clip=1.0, minutes=args.minutes, steps=args.steps,
                           log_every=20, ckpt_minutes=3.0, resume=args.resume, task=f"guard-{args.task}",
                           args={k: str(v) for k, v in vars(args).items()})
    step, elapsed = train_loop.run(net, opt, rng, step_loss, loop, ap.error)
    net.eval()
    print("training pairs (PSNR gain over the input, dB, mean / worst; identity: PSNR vs input):")
    rows = report(net, x, y, c, kinds)
    weights = args.weights or args.out / "guard.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_guard(net, weights, {"restore.guard.model": str(args.model), "restore.train": json.dumps(
        {"steps": step, "seconds": round(elapsed), **key, "identity_weight": args.identity_weight, "lr": args.lr,
         "loss": args.loss, "harm_weight": args.harm_weight, "feats": args.feats, "global_context": net.global_context,
         "frame_weight": args.frame_weight, "init": str(args.init) if args.init else None,
         "frame_only": args.frame_only,
         "batch": args.batch, "train_pairs": rows}, sort_keys=True)})
    print(f"done: {step} steps in {elapsed:.0f} s; wrote {weights}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
