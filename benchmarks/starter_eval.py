#!/usr/bin/env python3
"""Measure the starter models (issue 6) against the degraded input and classical baselines; with
``--do-no-harm``, check that they leave clean and lightly degraded photos alone (issue 20).

    python benchmarks/starter_eval.py [--shared ../shared] [--reflection-out /tmp/restore-reflection-check]
                                      [--models derain-starter,weather-starter,reflection-starter]
                                      [--only derain,weather,reflection] [--threads N]
    python benchmarks/starter_eval.py --do-no-harm [--shared ../shared] [--models ...] [--only ...]
                                      [--json PATH] [--compare-json EARLIER.json] [--threads N]

``--models`` takes catalogue names or ``.safetensors`` paths, either three in the order
derain,weather,reflection or exactly one per starter named in ``--only`` (in that order), so one
retrained starter can be evaluated alone: ``--only weather --models runs/weather.safetensors``.

Default mode (issue 6 table):

(a) ``derain-starter`` on ``<shared>/data/derain/Rain200H`` (rainy/ vs clean/ pairs):
    mean PSNR-Y and PSNR-RGB of the rainy input, of ``baselines.derain_guided`` and of
    the starter.
(b) ``weather-starter`` on ``<shared>/data/weather/raindrop`` (degraded/ vs clean/):
    the same with ``baselines.weather_baseline`` and ``baselines.deraindrop_median``.
(b') ``weather-starter`` on each synthetic kind (rain, haze, snow, raindrop) of
    centre crops of the held-out clean images, seeds 20000+.
(c) ``reflection-starter`` on a held-out synthetic set: every ordered pair of the
    held-out clean images (``data_tools/clean_data.py``, split ``heldout``; never
    trained on) blended by ``synth.add_reflection`` with seeds 10000+ (training
    draws from seed 0's stream on other images); then before/after images of
    ``<shared>/data/reflection/**/*.jpg`` (real photos, no ground truth) are
    written to ``--reflection-out`` (outside the repository) for a visual check.

Models run on whole images (reflect-padded to a multiple of 32, cropped back),
fp32, outputs clipped to [0, 1]; PSNR by ``restore.metrics.psnr`` without border
crop.  The evaluation data are never used for training.

Do-no-harm mode (``--do-no-harm``, issue 20):

Clean set, in this order (index i = position in the list):
    1. the 5 held-out clean images (``load_images("heldout")``, sorted by manifest name:
       butterfly.jpg, chelsea.png, coffee.png, fruits.jpg, home.jpg; never trained on),
    2. ``<shared>/data/sr/Set5/HR/*.png`` (5, sorted),
    3. ``<shared>/data/sr/BSD100_subset/HR/*.png`` (10, sorted)
    (2 and 3 are never trained on), each centre-cropped by ``centre_crop`` to 256 px (a
    multiple of 32, at most the short side: Set5 woman.png gives 224 px) and 8-bit quantised:
    20 images.  If ``<shared>`` (or its sr/ folders) is missing, only the 5 held-out images are
    used (printed; the cyclic reflection partner of the last held-out image is then heldout[0]).
Synthetic sets, from those clean crops; every draw uses a fresh
``np.random.default_rng(30000 + i)`` (separate from seeds 0+ of training, 10000+ and 20000+
of the default mode):
    derain:     heavy = ``synth.add_rain(clean, rng)``                        (n = 20)
    weather:    heavy = ``synth.DEGRADATIONS[kind](clean, rng)`` for each kind rain, haze,
                snow, raindrop, each with its own fresh rng(30000 + i)     (n = 4 x 20 = 80)
    reflection: heavy = ``synth.add_reflection(clean, rng, reflection=crop[(i + 1) % N])``,
                the next clean crop of the list, cyclic                    (n = 20)
    light = ``synth.lighten(clean, heavy, synth.LIGHT_STRENGTH)`` (= clean + 0.3 * (heavy - clean)),
    computed from the unquantised heavy image; light and heavy are then 8-bit quantised.
Real pairs (whole images, not cropped), where ``<shared>`` has them:
    derain-starter on Rain200H (rainy/ vs clean/, 4 pairs); weather-starter on raindrop
    (degraded/ vs clean/, 3 pairs) and on Rain200H (weather includes rain); reflection-starter:
    none (no real pairs with ground truth exist).
Definitions (model output clipped to [0, 1] and 8-bit quantised first):
    PSNR by ``restore.metrics.psnr`` (peak 255, no border crop) on RGB and on BT.601 Y (``scores``),
    capped at 100 dB so identical images give a finite number;
    clean set: identity PSNR = PSNR(output, input);
    degraded sets: gain = PSNR(output, clean) - PSNR(input, clean), on RGB and on Y;
    per set: n, mean input PSNR, mean output PSNR, mean gain, worst (smallest) single-image gain
    with the image name (clean set: mean and minimum identity PSNR);
    brightness: dL = 255 * (mean(output) - mean(input)) over all pixels and channels, in 8-bit
    levels; the table gives mean |dL|, mean dL (negative = darker) and, for reference, mean dL-ref
    = 255 * (mean(clean) - mean(input)), the shift a perfect restoration would make.
    Sets: ``clean``, ``light``, ``heavy`` (weather: pooled over the four kinds, plus one row per
    kind, ``light/rain`` ...), ``real/Rain200H``, ``real/raindrop``.
Acceptance (printed per starter; a criterion holds only if it holds on RGB and on Y):
    clean: identity PSNR >= 40 dB on every image;
    light: gain >= 0 on every image (all kinds pooled);
    real:  gain >= 0 on every real pair (all real sets pooled);
    heavy: reported; with ``--compare-json`` (an earlier ``--json`` of the shipped starters) the
           mean heavy gain of every heavy set must be at least the earlier one - 0.5 dB.
``--json PATH`` writes the configuration, every per-image row and the per-set summaries with the
acceptance results.  The process exits 0 whatever the acceptance result.
Runtime: about 6-7 min for the three starters on one thread (weather-starter's 80 + 80 crops
dominate; reflection-starter takes seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_tools import baselines, synth  # noqa: E402
from data_tools.clean_data import MANIFEST, load_images  # noqa: E402
from restore import load_model  # noqa: E402
from restore.guard import apply_guard, guard_for, load_guard  # noqa: E402
from restore.metrics import psnr  # noqa: E402


def read_rgb(path: Path) -> np.ndarray:
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        raise SystemExit(f"cannot read {path}")
    return im[..., ::-1].astype(np.float32) / 255.0


def write_rgb(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), (np.clip(img, 0, 1)[..., ::-1] * 255).round().astype(np.uint8))


def run_model(module: torch.nn.Module, img: np.ndarray, multiple: int = 32) -> np.ndarray:
    h, w, _ = img.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect")
    with torch.inference_mode():
        y = module(x)
    return y[0, :, :h, :w].permute(1, 2, 0).clamp(0, 1).numpy().astype(np.float32)


def quantise(img: np.ndarray) -> np.ndarray:
    """8-bit round trip, as a written PNG would be."""
    return np.round(np.clip(img, 0, 1) * 255) / 255.0


def scores(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    out = quantise(out)
    return psnr(out, ref, y_channel=True), psnr(out, ref, y_channel=False)


def paired(folder: Path, deg: str) -> list[tuple[Path, Path]]:
    pairs = []
    for p in sorted((folder / deg).glob("*.png")):
        c = folder / "clean" / p.name
        if c.is_file():
            pairs.append((p, c))
    if not pairs:
        raise SystemExit(f"no {deg}/clean pairs under {folder}")
    return pairs


def eval_pairs(title: str, pairs, methods: dict) -> list[tuple]:
    rows = {name: [] for name in ["input", *methods]}
    for deg, cln in pairs:
        x, y = read_rgb(deg), read_rgb(cln)
        rows["input"].append(scores(x, y))
        for name, fn in methods.items():
            rows[name].append(scores(fn(x), y))
    return [(title, name, len(v), float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v])))
            for name, v in rows.items()]


def centre_crop(img: np.ndarray, size: int = 256) -> np.ndarray:
    """Centre crop of at most ``size`` px, a multiple of 32 (quick, and no padding in the model)."""
    h, w, _ = img.shape
    s = min(size, h, w) // 32 * 32
    return img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


def weather_heldout(module, name: str) -> list[tuple]:
    """Each weather kind on the held-out clean images (centre crops, seeds 20000+; never trained on)."""
    out = []
    for kind, fn in synth.DEGRADATIONS.items():
        rows = {"input": [], name: []}
        for i, img in enumerate(load_images("heldout")):
            c = centre_crop(img)
            x = quantise(fn(c, np.random.default_rng(20000 + i)))
            rows["input"].append(scores(x, c))
            rows[name].append(scores(run_model(module, x), c))
        out += [(f"weather {kind} (held-out synthetic)", n, len(v), float(np.mean([a for a, _ in v])),
                 float(np.mean([b for _, b in v]))) for n, v in rows.items()]
    return out


def reflection_heldout(module) -> list[tuple]:
    ims = load_images("heldout")
    rows = {"input": [], "reflection-starter": []}
    seed = 10000
    for i, t in enumerate(ims):
        for j, r in enumerate(ims):
            if i == j:
                continue
            rng = np.random.default_rng(seed)
            seed += 1
            t_c = centre_crop(t)
            x = quantise(synth.add_reflection(t_c, rng, reflection=r))
            rows["input"].append(scores(x, t_c))
            rows["reflection-starter"].append(scores(run_model(module, x), t_c))
    return [("reflection (held-out synthetic)", n, len(v), float(np.mean([a for a, _ in v])),
             float(np.mean([b for _, b in v]))) for n, v in rows.items()]


# ---------------------------------------------------------------------------------------------------------------
# do-no-harm evaluation (issue 20)

STARTERS = ("derain", "weather", "reflection")
DEFAULT_MODELS = "derain-starter,weather-starter,reflection-starter"
DNH_SEED = 30000
DNH_CROP = 256
PSNR_CAP = 100.0
CLEAN_MIN_DB = 40.0
HEAVY_TOLERANCE_DB = 0.5
SR_SETS = ("Set5", "BSD100_subset")


def heldout_names() -> list[str]:
    """Names of the held-out clean images in the order ``load_images("heldout")`` returns them."""
    doc = yaml.safe_load(MANIFEST.read_text())
    return sorted(e["name"] for e in doc["images"] if e["split"] == "heldout")


def clean_crops(shared: Path) -> tuple[list[tuple[str, np.ndarray]], str]:
    """The do-no-harm clean set: (name, 8-bit centre crop) pairs, and a line describing it."""
    names, ims = heldout_names(), load_images("heldout")
    if len(names) != len(ims):
        raise SystemExit(f"held-out names ({len(names)}) and images ({len(ims)}) differ")
    out = [(f"heldout/{n}", quantise(centre_crop(im, DNH_CROP))) for n, im in zip(names, ims)]
    dirs = [shared / "data/sr" / s / "HR" for s in SR_SETS]
    if all(d.is_dir() for d in dirs):
        for s, d in zip(SR_SETS, dirs):
            out += [(f"{s}/{p.name}", quantise(centre_crop(read_rgb(p), DNH_CROP))) for p in sorted(d.glob("*.png"))]
        note = f"clean set: {len(ims)} held-out + {len(out) - len(ims)} HR images of {', '.join(SR_SETS)}"
    else:
        note = (f"clean set: only the {len(ims)} held-out images ({' / '.join(str(d) for d in dirs if not d.is_dir())}"
                " not found, --shared absent)")
    return out, note


def capped_scores(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """``scores`` (PSNR-Y, PSNR-RGB of the quantised ``out``), capped at ``PSNR_CAP``."""
    y, rgb = scores(out, ref)
    return min(y, PSNR_CAP), min(rgb, PSNR_CAP)


def guarded(module, x: np.ndarray, guard) -> tuple[np.ndarray, float, float]:
    """The model's output as the ``model`` step gives it: ``(y, evidence, mean_w)``; the guard network
    (:mod:`restore.guard`) keeps a per-pixel share ``w`` of the model's change when ``guard`` is not None.
    ``evidence`` = mean |model(x) - x| before the guard; ``mean_w`` = 1 without a guard."""
    y = np.clip(run_model(module, x), 0.0, 1.0)
    e = float(np.mean(np.abs(y.astype(np.float64) - x)))
    if guard is None:
        return y, e, 1.0
    out, w = apply_guard(guard, x, y)
    return out, e, w


def measure(starter: str, model: str, group: str, kind: str, image: str, module, x: np.ndarray,
            clean: np.ndarray | None, guard=None) -> dict:
    """One per-image row: ``x`` through ``module`` (and ``guard``), scored against ``clean`` (``None``: the clean
    set); ``evidence`` is ``mean |model(x) - x|`` (before the guard), ``guard_w`` the guard's mean weight."""
    y, evidence, w = guarded(module, x, guard)
    y = quantise(y)
    row = {"starter": starter, "model": model, "set": group, "kind": kind, "image": image,
           "size": [int(x.shape[0]), int(x.shape[1])], "evidence": evidence, "guard_w": w,
           "dL": float(255 * (y.mean() - x.mean()))}
    if clean is None:
        row["psnr_out_y"], row["psnr_out_rgb"] = capped_scores(y, x)
        return row
    row["psnr_in_y"], row["psnr_in_rgb"] = capped_scores(x, clean)
    row["psnr_out_y"], row["psnr_out_rgb"] = capped_scores(y, clean)
    row["gain_y"] = row["psnr_out_y"] - row["psnr_in_y"]
    row["gain_rgb"] = row["psnr_out_rgb"] - row["psnr_in_rgb"]
    row["dL_ref"] = float(255 * (clean.mean() - x.mean()))
    return row


def degrade(starter: str, crops: list[tuple[str, np.ndarray]], i: int, seed_base: int = DNH_SEED):
    """(kind, heavy) draws for clean crop ``i`` (each with a fresh ``default_rng(seed_base + i)``), unquantised."""
    clean, seed = crops[i][1], seed_base + i
    if starter == "derain":
        return [("rain", synth.add_rain(clean, np.random.default_rng(seed)))]
    if starter == "weather":
        return [(k, synth.DEGRADATIONS[k](clean, np.random.default_rng(seed))) for k in synth.WEATHER_KINDS]
    other = crops[(i + 1) % len(crops)][1]
    return [("reflection", synth.add_reflection(clean, np.random.default_rng(seed), reflection=other))]


def real_sets(starter: str, shared: Path) -> tuple[dict[str, list[tuple[Path, Path]]], str]:
    want = {"derain": {"Rain200H": ("data/derain/Rain200H", "rainy")},
            "weather": {"raindrop": ("data/weather/raindrop", "degraded"),
                        "Rain200H": ("data/derain/Rain200H", "rainy")}}.get(starter, {})
    if not want:
        return {}, "no real pairs with ground truth for reflection removal"
    out, missing = {}, []
    for name, (sub, deg) in want.items():
        if (shared / sub / deg).is_dir():
            out[name] = paired(shared / sub, deg)
        else:
            missing.append(str(shared / sub))
    return out, ("real pairs missing: " + ", ".join(missing)) if missing else ""


def evaluate_starter(starter: str, model: str, crops, shared: Path, guard: str = "auto", min_share: float = 0.0
                     ) -> tuple[list[dict], list[str]]:
    """Every per-image row of one starter; ``guard``: ``auto`` (the catalogue entry's guard and gate, as the model
    step uses them; none for a weights path), ``off``, or a guard file (``data_tools/train_guard.py``) with the gate
    ``min_share``."""
    m = load_model(model)
    if guard == "off":
        net, label = None, "none"
    elif guard == "auto":
        net = guard_for(model) if not Path(model).suffix else None
        label = "catalogue" if net is not None else "none"
    else:
        net, label = load_guard(guard), guard
        net.min_share = min_share
    notes = [f"{starter}: {model} -> {m.arch}, guard {label}"]
    print(notes[0], flush=True)
    rows = []
    for i, (name, clean) in enumerate(crops):
        rows.append(measure(starter, model, "clean", "", name, m.module, clean, None, net))
        for kind, heavy in degrade(starter, crops, i):
            light = synth.lighten(clean, heavy, synth.LIGHT_STRENGTH)
            rows.append(measure(starter, model, "light", kind, name, m.module, quantise(light), clean, net))
            rows.append(measure(starter, model, "heavy", kind, name, m.module, quantise(heavy), clean, net))
    real, note = real_sets(starter, shared)
    if note:
        notes.append(note)
    for set_name, pairs in real.items():
        for deg, cln in pairs:
            rows.append(measure(starter, model, f"real/{set_name}", "", deg.name, m.module, read_rgb(deg),
                                read_rgb(cln), net))
    return rows, notes


def _worst(rows: list[dict], key: str, label) -> dict:
    r = min(rows, key=lambda r: r[key])
    return {"value": r[key], "image": label(r)}


def summarise(rows: list[dict]) -> dict:
    """Per-set summaries (weather: pooled and per kind)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["set"], []).append(r)
    kinds = {r["kind"] for r in rows if r["set"] in ("light", "heavy")}
    if len(kinds) > 1:
        for r in rows:
            if r["set"] in ("light", "heavy"):
                groups.setdefault(f"{r['set']}/{r['kind']}", []).append(r)
    pooled = len(kinds) > 1
    out = {}
    for g, rs in groups.items():
        if pooled and g in ("light", "heavy"):
            def label(r):
                return f"{r['image']} [{r['kind']}]"
        else:
            def label(r):
                return r["image"]
        s = {"n": len(rs), "mean_abs_dL": float(np.mean([abs(r["dL"]) for r in rs])),
             "mean_dL": float(np.mean([r["dL"] for r in rs])),
             "mean_out_y": float(np.mean([r["psnr_out_y"] for r in rs])),
             "mean_out_rgb": float(np.mean([r["psnr_out_rgb"] for r in rs]))}
        if g == "clean":
            s["min_out_y"] = _worst(rs, "psnr_out_y", label)
            s["min_out_rgb"] = _worst(rs, "psnr_out_rgb", label)
        else:
            for c in ("y", "rgb"):
                s[f"mean_in_{c}"] = float(np.mean([r[f"psnr_in_{c}"] for r in rs]))
                s[f"mean_gain_{c}"] = float(np.mean([r[f"gain_{c}"] for r in rs]))
                s[f"worst_gain_{c}"] = _worst(rs, f"gain_{c}", label)
            s["mean_dL_ref"] = float(np.mean([r["dL_ref"] for r in rs]))
        out[g] = s
    order = ["clean", "light", "heavy"]
    return dict(sorted(out.items(), key=lambda kv: (order.index(kv[0].split("/")[0]) if kv[0].split("/")[0] in order
                                                    else 3, kv[0].count("/"), kv[0])))


def acceptance(rows: list[dict], sets: dict, compare: dict | None) -> dict:
    """The issue-20 criteria; each holds only if it holds on RGB and on Y."""
    acc = {}

    def crit(rs, key, bound, what):
        if not rs:
            return {"pass": None, "what": what, "n": 0}
        res = {"what": what, "n": len(rs)}
        pooled = len({r["kind"] for r in rs}) > 1
        for c in ("rgb", "y"):
            r = min(rs, key=lambda r: r[f"{key}_{c}"])
            res[c] = {"value": r[f"{key}_{c}"], "image": r["image"] + (f" [{r['kind']}]" if pooled else "")
                      + (f" ({r['set']})" if r["set"].startswith("real/") else ""),
                      "failing": sum(r[f"{key}_{c}"] < bound for r in rs)}
        res["pass"] = all(res[c]["value"] >= bound for c in ("rgb", "y"))
        return res

    acc["clean"] = crit([r for r in rows if r["set"] == "clean"], "psnr_out", CLEAN_MIN_DB,
                        f"identity PSNR >= {CLEAN_MIN_DB:g} dB on every image")
    acc["light"] = crit([r for r in rows if r["set"] == "light"], "gain", 0.0, "gain >= 0 on every image")
    acc["real"] = crit([r for r in rows if r["set"].startswith("real/")], "gain", 0.0, "gain >= 0 on every pair")
    heavy = {g: {"rgb": s["mean_gain_rgb"], "y": s["mean_gain_y"]} for g, s in sets.items() if g.startswith("heavy")}
    acc["heavy"] = {"what": f"mean gain >= shipped - {HEAVY_TOLERANCE_DB:g} dB", "mean_gain": heavy, "pass": None}
    if compare is not None:
        # only sets of the same size are compared (an earlier run without <shared> has other images)
        diffs = {g: {c: v[c] - compare[g][f"mean_gain_{c}"] for c in ("rgb", "y")}
                 for g, v in heavy.items() if g in compare and compare[g]["n"] == sets[g]["n"]}
        acc["heavy"]["diff_vs_compare"] = diffs
        acc["heavy"]["pass"] = None if not diffs else all(d[c] >= -HEAVY_TOLERANCE_DB for d in diffs.values()
                                                   for c in ("rgb", "y"))
    return acc


def _f(v, width=7, sign=False) -> str:
    return f"{'-':>{width}s}" if v is None else f"{v:+{width}.2f}" if sign else f"{v:{width}.2f}"


def print_table(starter: str, model: str, arch: str, sets: dict) -> None:
    print(f"\n== {starter}: {model} ({arch}) ==")
    print(f"{'set':16s} {'n':>3s} {'in-RGB':>7s} {'out-RGB':>7s} {'gainRGB':>7s} {'worstRGB':>8s} {'in-Y':>7s} "
          f"{'out-Y':>7s} {'gain-Y':>7s} {'worst-Y':>7s} {'|dL|':>5s} {'dL':>6s} {'dL-ref':>6s}  worst image (RGB; Y)")
    for g, s in sets.items():
        if g == "clean":
            w_rgb, w_y = s["min_out_rgb"], s["min_out_y"]
            gain_rgb = gain_y = in_rgb = in_y = ref = None
        else:
            w_rgb, w_y = s["worst_gain_rgb"], s["worst_gain_y"]
            gain_rgb, gain_y, in_rgb, in_y, ref = (s["mean_gain_rgb"], s["mean_gain_y"], s["mean_in_rgb"],
                                                   s["mean_in_y"], s["mean_dL_ref"])
        sign = g != "clean"
        img = w_rgb["image"] if w_rgb["image"] == w_y["image"] else f"{w_rgb['image']}; {w_y['image']}"
        print(f"{g:16s} {s['n']:3d} {_f(in_rgb)} {_f(s['mean_out_rgb'])} {_f(gain_rgb, sign=True)} "
              f"{_f(w_rgb['value'], 8, sign)} {_f(in_y)} {_f(s['mean_out_y'])} {_f(gain_y, sign=True)} "
              f"{_f(w_y['value'], 7, sign)} {s['mean_abs_dL']:5.2f} {s['mean_dL']:+6.2f} {_f(ref, 6, True)}  {img}")


def print_acceptance(starter: str, model: str, acc: dict, notes: list[str]) -> None:
    def verdict(p):
        return "n/a" if p is None else "PASS" if p else "FAIL"

    print(f"acceptance {starter} ({model}):")
    for key in ("clean", "light", "real"):
        a = acc[key]
        if not a["n"]:
            extra = "; ".join(n for n in notes if "real" in n) or "no data"
            print(f"  {key:5s} {a['what']:45s} n/a ({extra})")
            continue
        parts = [f"{'RGB' if c == 'rgb' else 'Y'} {_f(a[c]['value'], 6, key != 'clean')} ({a[c]['image']}; "
                 f"{a[c]['failing']}/{a['n']} fail)" for c in ("rgb", "y")]
        print(f"  {key:5s} {a['what']:45s} {verdict(a['pass'])}  worst " + ", ".join(parts))
    h = acc["heavy"]
    gains = ", ".join(f"{g} RGB {v['rgb']:+.2f} Y {v['y']:+.2f}" for g, v in h["mean_gain"].items())
    if "diff_vs_compare" in h:
        diffs = ", ".join(f"{g} RGB {d['rgb']:+.2f} Y {d['y']:+.2f}" for g, d in h["diff_vs_compare"].items())
        diffs = diffs or "none comparable (the image sets differ)"
        print(f"  heavy {h['what']:45s} {verdict(h['pass'])}  mean gain {gains}; difference to --compare-json {diffs}")
    else:
        print(f"  heavy {h['what']:45s} n/a (no --compare-json)  mean gain {gains}")


def print_compare(results: dict, earlier: dict, path: Path) -> None:
    print(f"\ndifference to {path} (this run minus earlier; mean gain, worst gain; dB):")
    print(f"{'starter':10s} {'set':16s} {'n':>7s} {'d-gainRGB':>9s} {'d-gain-Y':>9s} {'d-wrstRGB':>9s} "
          f"{'d-worst-Y':>9s}  heavy check")
    for starter, res in results.items():
        old = earlier.get("starters", {}).get(starter)
        if old is None:
            print(f"{starter:10s} (not in {path.name})")
            continue
        old_images = {(r["set"], r["kind"], r["image"]) for r in old.get("rows", [])}
        new_images = {(r["set"], r["kind"], r["image"]) for r in res["rows"]}
        if old_images and old_images != new_images:
            print(f"{starter:10s} WARNING: the image sets differ ({len(old_images)} vs {len(new_images)} rows)")
        for g, s in res["sets"].items():
            o = old["sets"].get(g)
            if g == "clean" or o is None:
                continue
            d = {c: s[f"mean_gain_{c}"] - o[f"mean_gain_{c}"] for c in ("rgb", "y")}
            w = {c: s[f"worst_gain_{c}"]["value"] - o[f"worst_gain_{c}"]["value"] for c in ("rgb", "y")}
            check = ""
            if g.startswith("heavy") and s["n"] != o["n"]:
                check = "not comparable (n differs)"
            elif g.startswith("heavy"):
                check = "ok" if min(d.values()) >= -HEAVY_TOLERANCE_DB else f"DROP > {HEAVY_TOLERANCE_DB:g} dB"
            print(f"{starter:10s} {g:16s} {s['n']:3d}/{o['n']:<3d} {d['rgb']:+9.2f} {d['y']:+9.2f} {w['rgb']:+9.2f} "
                  f"{w['y']:+9.2f}  {check}")


def _json_safe(obj):
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def do_no_harm(args, model_for: dict[str, str]) -> int:
    earlier = json.loads(args.compare_json.read_text()) if args.compare_json else None
    t0 = time.time()
    crops, note = clean_crops(args.shared)
    print(note, flush=True)
    results = {}
    for starter, model in model_for.items():
        t1 = time.time()
        rows, notes = evaluate_starter(starter, model, crops, args.shared, args.guard_for[starter], args.min_share)
        sets = summarise(rows)
        old_sets = earlier.get("starters", {}).get(starter, {}).get("sets") if earlier else None
        results[starter] = {"model": model, "arch": notes[0].rsplit("-> ", 1)[1], "notes": notes,
                            "seconds": round(time.time() - t1, 1), "sets": sets,
                            "acceptance": acceptance(rows, sets, old_sets), "rows": rows}
        print(f"{starter}: {len(rows)} images in {time.time() - t1:.0f} s", flush=True)
    print(f"\ndo-no-harm evaluation (issue 20); {note}; crops {DNH_CROP} px, seeds {DNH_SEED}+i, light = "
          f"clean + {synth.LIGHT_STRENGTH:g} * (heavy - clean); PSNR in dB (capped at {PSNR_CAP:g}), gain = "
          "PSNR(out, clean) - PSNR(in, clean); clean rows: out = PSNR(out, in), worst = min; dL = mean(out) - "
          "mean(in) in 8-bit levels, dL-ref = mean(clean) - mean(in)")
    for starter, res in results.items():
        print_table(starter, res["model"], res["arch"], res["sets"])
        for n in res["notes"][1:]:
            print(f"  note: {n}")
    print()
    for starter, res in results.items():
        print_acceptance(starter, res["model"], res["acceptance"], res["notes"])
    if earlier is not None:
        print_compare(results, earlier, args.compare_json)
    elapsed = time.time() - t0
    print(f"({elapsed:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"issue": 20, "mode": "do-no-harm",
               "config": {"clean_set": [n for n, _ in crops], "clean_note": note, "crop": DNH_CROP,
                          "seed_base": DNH_SEED, "light_strength": synth.LIGHT_STRENGTH, "psnr_cap": PSNR_CAP,
                          "clean_min_db": CLEAN_MIN_DB, "heavy_tolerance_db": HEAVY_TOLERANCE_DB,
                          "shared": str(args.shared), "models": model_for, "threads": args.threads,
                          "seconds": round(elapsed, 1)},
               "starters": results}
        args.json.write_text(json.dumps(_json_safe(doc), indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--reflection-out", type=Path, default=Path("/tmp/restore-reflection-check"))
    ap.add_argument("--models", default=DEFAULT_MODELS,
                    help="catalogue names or .safetensors paths, in the order derain,weather,reflection "
                         "(or one per starter of --only, in that order)")
    ap.add_argument("--only", default=",".join(STARTERS),
                    help="evaluate only these starters (comma-separated subset of derain,weather,reflection)")
    ap.add_argument("--do-no-harm", action="store_true",
                    help="issue 20: clean / light / heavy / real evaluation with acceptance checks")
    ap.add_argument("--json", type=Path, help="--do-no-harm: write per-image rows and summaries here")
    ap.add_argument("--compare-json", type=Path,
                    help="--do-no-harm: an earlier --json output (the shipped starters) to compare against")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--guard", default="auto",
                    help="--do-no-harm: auto (default: each catalogue model's guard, as the model step applies it; "
                         "weights given as a path are not guarded), off, or guard files (data_tools/train_guard.py) "
                         "one per evaluated starter in the order of --models, 'off' for none")
    ap.add_argument("--min-share", type=float, default=0.0,
                    help="--guard FILE: the gate (restore.guard) to apply with it; catalogue guards use their own")
    args = ap.parse_args(argv)
    if args.reflection_out.resolve().is_relative_to(ROOT):
        ap.error("--reflection-out must lie outside the repository")
    given = [s.strip() for s in args.only.split(",") if s.strip()]
    if not given or any(s not in STARTERS for s in given) or len(set(given)) != len(given):
        ap.error(f"--only: a comma-separated subset of {','.join(STARTERS)}")
    names = [s.strip() for s in args.models.split(",")]
    if len(names) == len(STARTERS):
        model_for = {s: n for s, n in zip(STARTERS, names) if s in given}
    elif len(names) == len(given):
        model_for = {s: n for s, n in sorted(zip(given, names), key=lambda sn: STARTERS.index(sn[0]))}
    else:
        ap.error(f"--models: {len(STARTERS)} models (derain,weather,reflection) or one per --only starter")
    if not args.do_no_harm and (args.json or args.compare_json):
        ap.error("--json and --compare-json need --do-no-harm")
    if args.guard in ("auto", "off"):
        args.guard_for = dict.fromkeys(model_for, args.guard)
    else:
        files = [g.strip() for g in args.guard.split(",")]
        if len(files) != len(model_for):
            ap.error(f"--guard: one guard file (or 'off') per evaluated starter ({', '.join(model_for)})")
        missing = [f for f in files if f != "off" and not Path(f).is_file()]
        if missing:
            ap.error(f"--guard: no such file {missing[0]}")
        args.guard_for = dict(zip(model_for, files))
    torch.set_num_threads(args.threads)
    if args.do_no_harm:
        return do_no_harm(args, model_for)
    t0 = time.time()
    table = []
    real = []

    if "derain" in model_for:
        m = load_model(model_for["derain"])
        print(f"derain model: {model_for['derain']} -> {m.arch}", flush=True)
        table += eval_pairs("derain Rain200H", paired(args.shared / "data/derain/Rain200H", "rainy"), {
            "baseline derain_guided": baselines.derain_guided,
            model_for["derain"]: lambda x: run_model(m.module, x),
        })
    if "weather" in model_for:
        m = load_model(model_for["weather"])
        print(f"weather model: {model_for['weather']} -> {m.arch}", flush=True)
        table += eval_pairs("weather raindrop", paired(args.shared / "data/weather/raindrop", "degraded"), {
            "baseline weather_baseline": baselines.weather_baseline,
            "baseline deraindrop_median": baselines.deraindrop_median,
            model_for["weather"]: lambda x: run_model(m.module, x),
        })
        table += weather_heldout(m.module, model_for["weather"])
    if "reflection" in model_for:
        m = load_model(model_for["reflection"])
        print(f"reflection model: {model_for['reflection']} -> {m.arch}", flush=True)
        table += reflection_heldout(m.module)
        real = sorted(p for p in (args.shared / "data/reflection").rglob("*.jpg"))
        for p in real:
            x = read_rgb(p)
            y = run_model(m.module, x)
            write_rgb(args.reflection_out / f"{p.stem}_before.png", x)
            write_rgb(args.reflection_out / f"{p.stem}_after.png", y)
            write_rgb(args.reflection_out / f"{p.stem}_side_by_side.png", np.concatenate([x, y], axis=1))

    print()
    print(f"{'set':38s} {'method':28s} {'n':>3s} {'PSNR-Y':>8s} {'PSNR-RGB':>9s} {'dY vs in':>9s}")
    base = {}
    for title, name, n, py, prgb in table:
        if name == "input":
            base[title] = py
        print(f"{title:38s} {name:28s} {n:3d} {py:8.2f} {prgb:9.2f} {py - base[title]:+9.2f}")
    if "reflection" in model_for:
        print(f"\nreflection before/after of {len(real)} real photos written to {args.reflection_out}")
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
