"""``restore eval``: PSNR-Y / SSIM of an output folder against a ground-truth folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import READ_SUFFIXES, read
from .metrics import psnr, ssim

__all__ = ["EvalRow", "match_pairs", "evaluate"]


@dataclass
class EvalRow:
    output: Path
    truth: Path
    psnr: float
    ssim: float


def match_pairs(out_dir: Path, gt_dir: Path) -> list[tuple[Path, Path]]:
    """Pair each output with the ground truth whose stem is the longest prefix of the output's stem.

    ``babyx2_x2.png`` pairs with ``baby.png``; ``img_001.png`` with ``img_001.png``.
    """
    gts = sorted(p for p in Path(gt_dir).iterdir() if p.suffix.lower() in READ_SUFFIXES and not p.name.startswith("."))
    pairs = []
    for o in sorted(Path(out_dir).iterdir()):
        if o.suffix.lower() not in READ_SUFFIXES or o.name.startswith("."):
            continue
        cands = [g for g in gts if o.stem.startswith(g.stem)]
        if cands:
            pairs.append((o, max(cands, key=lambda g: len(g.stem))))
    return pairs


def evaluate(out_dir: Path, gt_dir: Path, crop_border: int = 0, y_channel: bool = True) -> list[EvalRow]:
    """PSNR/SSIM per pair (see :mod:`restore.metrics`).

    The ground truth is mod-cropped (top-left kept) to the output size when it
    is larger by less than the scale, as SR benchmarks require.

    Raises:
        InputError: no pairs, or sizes that differ by more than a mod-crop.
    """
    pairs = match_pairs(out_dir, gt_dir)
    if not pairs:
        raise InputError(out_dir, f"no outputs match a ground-truth file in {gt_dir}")
    rows = []
    for o, g in pairs:
        a, b = read(o).pixels, read(g).pixels
        a, b = a[..., :3], b[..., :3]
        h, w = a.shape[:2]
        if b.shape[0] < h or b.shape[1] < w or b.shape[0] - h > max(crop_border, 0) + 7 or b.shape[1] - w > max(crop_border, 0) + 7:
            raise InputError(o, f"size {w}x{h} does not match ground truth {g.name} ({b.shape[1]}x{b.shape[0]})")
        b = b[:h, :w]
        rows.append(EvalRow(o, g, psnr(a, b, crop_border, y_channel), ssim(a, b, crop_border, y_channel)))
    return rows


def mean(rows: list[EvalRow]) -> tuple[float, float]:
    return float(np.mean([r.psnr for r in rows])), float(np.mean([r.ssim for r in rows]))
