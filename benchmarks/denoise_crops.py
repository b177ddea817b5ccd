#!/usr/bin/env python3
"""Side-by-side crops of the denoisers on real files (issue 19): noisy | ours | BM3D, developed to sRGB.

    python benchmarks/denoise_crops.py [--out docs/img] [--shared-out runs/denoise-crops] [--size 192]

RAW (``raw-denoise`` on the CFA mosaic, BM3D with the generalised Anscombe transform of
``benchmarks/raw_denoise_eval.py``, both given the file's own noise profile, :func:`restore.noise.noise_profile_for`):
``examples/coffee_raw.dng`` and every RAW in ``../shared/data/raw``.  A centre crop of the mosaic (even offsets,
so the CFA phase is kept) is denoised, then all three are developed by the ``develop`` step (white balance
``auto``: the camera's where the file stores one, AHD, linear Rec.709) and shown in sRGB with one exposure gain (the noisy crop's 99th percentile
to 0.9).

sRGB (``rgb-denoise`` at its estimated noise level; BM3D ``bm3d_rgb`` at that level times the factor
``benchmarks/denoise_eval.py`` calibrated for ISO 12800, read from ``benchmarks/denoise_eval.json``):
``examples/chelsea.png`` as it is (a clean photo: the denoiser must leave it alone), ``examples/coffee.png`` through the synthetic camera at ISO 12800, and the
real low-light captures of ``../shared/data/lowlight`` (brightened 4x for display, the same for all three).

Crops of files in ``examples/`` go to ``--out`` (committed, shown in the README); crops of ``../shared`` files go
to ``--shared-out`` (never committed: ``../shared`` files stay out of the repository).  For every crop the script
prints what can be measured without a clean reference: the noise level estimated on the noisy crop and on each
output (:func:`restore.noise.estimate_sigma` of the displayed sRGB), and the mean absolute change.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import denoise_eval as de  # noqa: E402
import raw_denoise_eval as rde  # noqa: E402

from data_tools import unprocess as up  # noqa: E402
from restore import color  # noqa: E402
from restore.image import SRGB, Image, Metadata  # noqa: E402
from restore.io import read, read_mosaic  # noqa: E402
from restore.models import cfa  # noqa: E402
from restore.noise import ISO_LEVELS, estimate_sigma, noise_profile_for  # noqa: E402
from restore.pipeline.base import Context  # noqa: E402
from restore.pipeline.steps.develop import DevelopOptions, DevelopStage  # noqa: E402
from restore.pipeline.steps.model import ModelOptions, ModelStage  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
RAW_EXT = {".dng", ".kdc", ".nef", ".cr2", ".cr3", ".arw", ".raf", ".orf", ".rw2", ".pef"}
GAP = 4


def strip(panels: list[np.ndarray]) -> np.ndarray:
    """Panels ``(h, w, 3)`` in [0, 1] side by side with white gaps, 8-bit RGB."""
    h = panels[0].shape[0]
    gap = np.ones((h, GAP, 3), np.float32)
    row = np.concatenate([p for q in panels for p in (q, gap)][:-1], axis=1)
    return np.round(np.clip(row, 0, 1) * 255).astype(np.uint8)


def save(rgb8: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rgb8[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {path}", flush=True)


def report(name: str, panels: dict[str, np.ndarray]) -> None:
    noisy = panels["noisy"]
    cells = [f"{k}: sigma {estimate_sigma(v) * 255:.2f}/255" + ("" if k == "noisy" else
             f", mean |change| {np.abs(v - noisy).mean() * 255:.2f}/255") for k, v in panels.items()]
    print(f"{name}: " + "; ".join(cells), flush=True)


def raw_crop(path: Path, size: int, out: Path) -> None:
    m = read_mosaic(path)
    h, w = m.pixels.shape[:2]
    y, x = max(h - size, 0) // 4 * 2, max(w - size, 0) // 4 * 2  # even offsets keep the CFA phase
    crop = replace(m, pixels=np.ascontiguousarray(m.pixels[y:y + size, x:x + size]))
    prof = noise_profile_for(m)
    ours = ModelStage(ModelOptions(name="raw-denoise", tile=0, precision="fp32", threads=2))(crop, Context())
    planes = cfa.pack(crop.pixels, crop.meta.cfa_pattern).transpose(2, 0, 1)  # (4, h, w) R, G1, G2, B
    bm = cfa.unpack(rde.bm3d_gat(planes, prof.a, prof.b).transpose(1, 2, 0), crop.meta.cfa_pattern)
    dev = DevelopStage(DevelopOptions(white_balance="auto"))  # camera WB where stored (the KDC has none)
    lin = {k: dev(im, Context()).pixels for k, im in
           (("noisy", crop), ("ours", ours), ("bm3d", replace(crop, pixels=bm.astype(np.float32))))}
    gain = 0.9 / max(float(np.percentile(lin["noisy"], 99)), 1e-6)
    panels = {k: color.linear_to_srgb(np.clip(v * gain, 0, 1)) for k, v in lin.items()}
    print(f"{path.name}: noise profile a={prof.a:.3g} b={prof.b:.3g} ({prof.source}); crop {size}px at ({y}, {x})")
    report(path.name, panels)
    save(strip(list(panels.values())), out / f"raw-denoise-{path.stem}.png")


def bm3d_factor() -> float:
    """The BM3D factor of ``sigma`` that ``benchmarks/denoise_eval.py`` chose for ISO 12800 (3 without its JSON)."""
    import json

    doc = ROOT / "benchmarks" / "denoise_eval.json"
    return float(json.loads(doc.read_text())["factors"]["bm3d"]["12800"]) if doc.is_file() else 3.0


def rgb_crop(name: str, noisy: np.ndarray, out: Path, display_gain: float = 1.0) -> None:
    sigma = estimate_sigma(noisy)
    ours = ModelStage(ModelOptions(name="rgb-denoise", tile=0, precision="fp32", threads=2))(
        Image(noisy, SRGB, Metadata()), Context()).pixels
    bm = de.bm3d_rgb(noisy, sigma, bm3d_factor())
    panels = {k: np.clip(v * display_gain, 0, 1) for k, v in (("noisy", noisy), ("ours", ours), ("bm3d", bm))}
    report(f"{name} (sigma {sigma * 255:.2f}/255)", panels)
    save(strip(list(panels.values())), out / f"rgb-denoise-{name}.png")


def centre(px: np.ndarray, size: int) -> np.ndarray:
    h, w = px.shape[:2]
    y, x = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return np.ascontiguousarray(px[y:y + size, x:x + size, :3]).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--shared-out", type=Path, default=ROOT / "runs" / "denoise-crops")
    ap.add_argument("--size", type=int, default=192, help="crop side in pixels (mosaic pixels for RAW)")
    args = ap.parse_args(argv)

    raws = [ROOT / "examples" / "coffee_raw.dng"]
    shared_raws = sorted(p for p in (SHARED / "raw").glob("*") if p.suffix.lower() in RAW_EXT)
    for p in raws:
        raw_crop(p, args.size, args.out)
    for p in shared_raws:
        raw_crop(p, args.size, args.shared_out)

    from restore.models.catalog import find, refresh

    refresh()
    entry = find("rgb-denoise")
    if entry is None or not entry.available:
        print("rgb-denoise: weights not shipped (weights/MANIFEST says why): sRGB crops skipped")
        return 0
    rgb_crop("chelsea-clean", centre(read(ROOT / "examples" / "chelsea.png").pixels, args.size), args.out)
    coffee = centre(read(ROOT / "examples" / "coffee.png").pixels, args.size)
    mosaic, meta = up.unprocess(coffee, np.random.default_rng(7), cfa_pattern="RGGB")
    a, b = ISO_LEVELS[12800]
    noisy = up.process(up.add_noise(mosaic, a, b, np.random.default_rng(8)), meta)
    rgb_crop("coffee-iso12800", noisy, args.out)
    for p in sorted((SHARED / "lowlight").rglob("*")):
        if p.suffix.lower() in (".png", ".bmp"):
            rgb_crop(f"lowlight-{p.stem}", centre(read(p).pixels, args.size), args.shared_out, display_gain=4.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
