#!/usr/bin/env python3
"""Make ``examples/``: small real photographs and a DNG made from a known linear image.

Photographs come from scikit-image's bundled samples (``pip install
scikit-image``), both CC0 (see ``examples/SOURCES.md``):

* ``chelsea.png``  - 192x256 crop of ``skimage/data/chelsea.png``
* ``coffee.png``   - 192x256 crop of ``skimage/data/coffee.png``

The DNG (``coffee_raw.dng``) is a Bayer mosaic made from the linear-light
version of a 128x192 crop of ``coffee.png``:

1. ``reference = 0.8 * srgb_to_linear(crop)``: linear Rec.709, the ground
   truth written to ``coffee_raw_reference.exr`` (float32).
2. Camera RGB = reference * ``AS_SHOT_NEUTRAL`` (a camera whose red and blue
   channels are less sensitive than green), sampled on an RGGB pattern.
3. Raw DN = ``BLACK + camera * (WHITE - BLACK)``, rounded to uint16.
4. Tags: DNG 1.4, CFA RGGB, BlackLevel, WhiteLevel, ColorMatrix1 =
   diag(neutral) @ XYZ->Rec.709 (D65, CalibrationIlluminant1 21),
   AsShotNeutral, Make/Model, ExposureTime, FNumber, ISO.

LibRaw then undoes each step (black, white, white balance = 1/neutral, the
colour matrix becomes identity), so its linear output should equal the
reference up to demosaicing error.

Usage:  python data_tools/make_examples.py [--out examples]
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.color import primaries_matrix, srgb_to_linear  # noqa: E402
from restore.image import LINEAR_REC709, Image, Metadata  # noqa: E402
from restore.io import write  # noqa: E402

BLACK, WHITE = 512, 16383
AS_SHOT_NEUTRAL = (0.5, 1.0, 0.7)
EXPOSURE_S, F_NUMBER, ISO = Fraction(1, 125), Fraction(28, 10), 200


def skimage_file(name: str) -> Path:
    import skimage

    p = Path(skimage.__file__).parent / "data" / name
    if not p.is_file():
        raise SystemExit(f"{p} missing: pip install scikit-image")
    return p


def crop(img: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    return np.ascontiguousarray(img[top : top + h, left : left + w])


def rational(x, denom_limit: int = 10000) -> tuple[int, int]:
    f = Fraction(x).limit_denominator(denom_limit)
    return f.numerator, f.denominator


XTRANS = "GGRGGB" "GGBGGR" "BRGRBG" "GGBGGR" "GGRGGB" "RBGBRG"  # a Fujifilm X-Trans 6x6 layout


def write_dng(path: Path, cfa: np.ndarray, meta: dict, pattern: str = "RGGB", orientation: int = 1) -> None:
    """Write an uncompressed CFA DNG (``pattern``: row-major R/G/B letters, 4 = Bayer, 36 = X-Trans;
    ``orientation``: TIFF Orientation tag, 1 = as stored, 3 = 180 deg, 6 / 8 = 90 deg)."""
    import tifffile

    period = int(round(len(pattern) ** 0.5))
    codes = tuple("RGB".index(c) for c in pattern)

    cm = np.diag(AS_SHOT_NEUTRAL) @ primaries_matrix("xyz", "rec709")  # XYZ -> camera
    srat = []
    for v in cm.flatten():
        srat += list(rational(float(v), 100000))
    rat_neutral = []
    for v in AS_SHOT_NEUTRAL:
        rat_neutral += list(rational(v))
    tags = [
        (271, "s", 0, meta["make"], True),  # Make
        (272, "s", 0, meta["model"], True),  # Model
        (274, "H", 1, orientation, True),  # Orientation
        (33421, "H", 2, (period, period), True),  # CFARepeatPatternDim
        (33422, "B", len(codes), codes, True),  # CFAPattern (0 = R, 1 = G, 2 = B)
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "restore synthetic camera", True),  # UniqueCameraModel
        (50714, "I", 1, BLACK, True),  # BlackLevel
        (50717, "I", 1, WHITE, True),  # WhiteLevel
        (50721, "2i", 9, srat, True),  # ColorMatrix1 (SRATIONAL)
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1 = D65
        (50728, "2I", 3, rat_neutral, True),  # AsShotNeutral
        (33434, "2I", 1, rational(EXPOSURE_S), True),  # ExposureTime
        (33437, "2I", 1, rational(F_NUMBER), True),  # FNumber
        (34855, "H", 1, ISO, True),  # ISOSpeedRatings
    ]
    tifffile.imwrite(
        path, cfa, photometric=32803, compression=None, extratags=tags, metadata=None,
        subfiletype=0, software="restore data_tools/make_examples.py",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "examples")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    import cv2

    def load(name):
        return cv2.imread(str(skimage_file(name)), cv2.IMREAD_UNCHANGED)[:, :, ::-1]

    chelsea = crop(load("chelsea.png"), 40, 110, 192, 256)
    coffee = load("coffee.png")
    coffee_crop = crop(coffee, 60, 180, 192, 256)
    cv2.imwrite(str(out / "chelsea.png"), chelsea[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    cv2.imwrite(str(out / "coffee.png"), coffee_crop[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])

    # DNG from a known linear image
    src = crop(coffee, 100, 220, 128, 192).astype(np.float32) / 255.0
    reference = (0.8 * srgb_to_linear(src)).astype(np.float32)
    cam = reference * np.asarray(AS_SHOT_NEUTRAL, np.float32)
    h, w = cam.shape[:2]
    mosaic = np.empty((h, w), np.float32)
    mosaic[0::2, 0::2] = cam[0::2, 0::2, 0]  # R
    mosaic[0::2, 1::2] = cam[0::2, 1::2, 1]  # G
    mosaic[1::2, 0::2] = cam[1::2, 0::2, 1]  # G
    mosaic[1::2, 1::2] = cam[1::2, 1::2, 2]  # B
    cfa = np.round(BLACK + mosaic * (WHITE - BLACK)).astype(np.uint16)
    write_dng(out / "coffee_raw.dng", cfa, {"make": "restore", "model": "synthetic RGGB"})
    write(Image(reference, LINEAR_REC709, Metadata()), out / "coffee_raw_reference.exr", dtype="float")
    print("wrote", *sorted(p.name for p in out.iterdir()))


if __name__ == "__main__":
    main()
