#!/usr/bin/env python3
"""Synthetic exposure brackets with known ground truth, for the HDR merges.

Sensor model (:func:`synth_linear_bracket`), per frame ``i`` at ``stops[i]``
(exposure ``2**stop`` relative to the scene's stop-0 exposure):

1. Expected signal in frame units: ``mu = radiance * 2**stop`` where 1.0 is
   the sensor's saturation (full well).  ``radiance`` is linear, normalised so
   the stop-0 exposure puts the scene's median luminance at 0.18
   (:func:`normalise_scene`).
2. Photon shot noise: ``electrons ~ Poisson(mu * full_well_e)``, full well
   10 000 e- by default (a small-pixel camera at base ISO).
3. Conversion to DN with ``2**bits - 1`` DN at full well (14 bits: 16383 DN,
   0.61 e-/DN), plus Gaussian read noise ``read_noise_dn`` (2 DN) in DN.
4. Quantisation to integer DN (rounding), clipping to ``[0, white * (2**bits
   - 1)]`` (black-level-subtracted data as LibRaw delivers it; ``white`` < 1
   emulates a lower white level or white-balance clipping).
5. ``x = DN / (2**bits - 1)``: float32 frames, 1.0 = sensor white.

In :func:`restore.hdr.merge.merge_linear`'s noise model ``var(x) = gain * x +
read_noise**2`` this is ``gain = 1 / full_well_e`` (1e-4) and ``read_noise =
read_noise_dn / (2**bits - 1)`` (1.2e-4), plus the quantisation variance 1/12
DN^2.  All channels get the same gain (white-balanced data).  Deterministic for
a given seed (one ``numpy.random.default_rng(seed)`` drawn frame after frame).

:func:`synth_ghost_bracket` adds a textured disc that moves between frames
(returns the frames, the disc's mask in each frame and optionally each frame's
scene).  :func:`synth_ldr_bracket` makes display-referred 8-bit frames through
a camera response.

CLI: writes the frames as EXR (float, ``expTime`` = ``base_time * 2**stop``),
``exposures.csv``, ``truth.exr`` (the radiance in reference-frame units, i.e.
``radiance * 2**stop_ref``), the ghost masks as PNG with ``--ghost``, and with
``--dng`` a Bayer DNG per frame through ``data_tools/make_examples.py``'s
``write_dng`` (RGGB, black 512, white 16383, as-shot neutral (0.5, 1, 0.7);
the noise is drawn on the mosaic in raw DN, so LibRaw's linear development of
the DNG gives the frame back up to demosaicing)::

    python data_tools/make_brackets.py ../shared/data/hdr_images/Desk.exr out/desk_bracket \\
        --stops -8 -4 0 4 --crop 300 200 256 256 [--ghost] [--dng]

The scene file is read at run time only; nothing from ``../shared`` is copied
into the repository.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from restore.image import LINEAR_REC709, Image, Metadata  # noqa: E402

__all__ = [
    "normalise_scene",
    "load_scene",
    "smooth_scene",
    "expose",
    "synth_linear_bracket",
    "synth_ghost_bracket",
    "synth_ldr_bracket",
    "FULL_WELL_E",
]

FULL_WELL_E = 10000.0
REC709_Y = np.array([0.2126, 0.7152, 0.0722], np.float32)


def normalise_scene(radiance: np.ndarray, grey: float = 0.18) -> np.ndarray:
    """Scale linear RGB so its median luminance is ``grey``; negatives (EXR out-of-gamut) clip to 0."""
    rad = np.maximum(np.asarray(radiance, np.float32)[..., :3], 0.0)
    y = rad @ REC709_Y
    med = float(np.median(y))
    if not med > 0:
        raise ValueError("scene has no positive luminance to normalise")
    return (rad * np.float32(grey / med)).astype(np.float32)


def load_scene(path: str | Path, crop: tuple[int, int, int, int] | None = None, grey: float = 0.18) -> np.ndarray:
    """Read a linear EXR (alpha dropped), optionally crop ``(top, left, h, w)``, normalise (:func:`normalise_scene`).

    The normalisation uses the whole image's median, so crops of one scene share
    one scale.
    """
    from restore.io import read

    px = read(path).pixels[..., :3]
    rad = normalise_scene(px, grey)
    if crop is not None:
        top, left, h, w = crop
        rad = np.ascontiguousarray(rad[top : top + h, left : left + w])
    return rad


def smooth_scene(h: int = 48, w: int = 64, peak: float = 150.0, floor: float = 0.01) -> np.ndarray:
    """A smooth synthetic HDR scene: log-radiance ramp from ``floor`` to ``peak`` plus colour and a bright spot."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = np.exp(np.log(floor) + (np.log(peak / 4) - np.log(floor)) * x / (w - 1))
    spot = (peak - peak / 4) * np.exp(-(((x - 0.8 * w) ** 2 + (y - 0.3 * h) ** 2) / (2 * (0.08 * w) ** 2)))
    base = ramp + spot
    tint = np.stack([1.0 + 0.2 * np.sin(y / 5), 0.9 + 0.1 * np.cos(x / 7), 0.7 + 0.2 * np.sin((x + y) / 9)], axis=-1)
    return (base[..., None] * tint).astype(np.float32)


def expose(
    mu: np.ndarray,
    rng: np.random.Generator,
    *,
    white: float = 1.0,
    bits: int = 14,
    read_noise_dn: float = 2.0,
    full_well_e: float = FULL_WELL_E,
) -> np.ndarray:
    """One noisy, quantised, clipped capture of expected signal ``mu`` (frame units, 1 = full well)."""
    levels = float(2**bits - 1)
    lam = np.clip(np.asarray(mu, np.float64), 0.0, 4.0) * full_well_e  # beyond 4x full well it clips anyway
    electrons = rng.poisson(lam)
    dn = electrons * (levels / full_well_e) + rng.normal(0.0, read_noise_dn, size=lam.shape)
    dn = np.clip(np.round(dn), 0.0, np.floor(white * levels))
    return (dn / levels).astype(np.float32)


def synth_linear_bracket(
    radiance: np.ndarray,
    stops: list[float],
    *,
    white: float = 1.0,
    bits: int = 14,
    read_noise_dn: float = 2.0,
    seed: int = 0,
    full_well_e: float = FULL_WELL_E,
) -> list[np.ndarray]:
    """Frames ``x_i`` of a linear scene at ``stops`` (see the module docstring for the sensor model).

    Args:
        radiance: ``(H, W, 3)`` linear scene, stop-0 units (mid-grey ~0.18).
        stops: exposure of each frame in stops relative to stop 0 (the merge's
            ``exposures`` are ``2**stop``).
        white: clipping level in frame units.
        bits: ADC bits (quantisation step ``1 / (2**bits - 1)``).
        read_noise_dn: read-noise sigma in DN.
        seed: random seed (deterministic output).
        full_well_e: electrons at frame value 1.0.

    Returns:
        list of float32 ``(H, W, 3)`` frames in [0, white].
    """
    rad = np.asarray(radiance, np.float32)
    if rad.ndim != 3 or rad.shape[2] != 3:
        raise ValueError(f"radiance must be (H, W, 3), got {rad.shape}")
    rng = np.random.default_rng(seed)
    return [
        expose(rad * np.float32(2.0**s), rng, white=white, bits=bits, read_noise_dn=read_noise_dn, full_well_e=full_well_e)
        for s in stops
    ]


def _disc_object(h: int, w: int, center: tuple[float, float], radius: float, level: float, phase: float = 0.0):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = center
    mask = (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
    # stripes and a colour tint that differ clearly from any background
    tex = 1.0 + 0.6 * np.sin((x - cx) / max(radius, 1) * 6.0 + phase) * np.cos((y - cy) / max(radius, 1) * 4.0)
    obj = level * tex[..., None] * np.array([1.0, 0.45, 0.2], np.float32)
    return mask, obj.astype(np.float32)


def _object_positions(h: int, w: int, n: int, radius: float) -> list[tuple[float, float]]:
    xs = np.linspace(radius + 1, w - radius - 2, n) if n > 1 else [w / 2]
    return [(h / 2, float(x)) for x in xs]


def synth_ghost_bracket(
    radiance: np.ndarray,
    stops: list[float],
    *,
    positions: list[tuple[float, float]] | None = None,
    radius: float | None = None,
    level: float = 0.5,
    return_scenes: bool = False,
    white: float = 1.0,
    bits: int = 14,
    read_noise_dn: float = 2.0,
    seed: int = 0,
    full_well_e: float = FULL_WELL_E,
):
    """Like :func:`synth_linear_bracket`, with a textured orange disc at a different place in each frame.

    Args:
        radiance: the static background, ``(H, W, 3)`` stop-0 units.
        stops: exposure of each frame in stops.
        positions: disc centre ``(y, x)`` per frame; default: moving left to
            right along the middle row, no overlap between neighbours when
            ``radius`` is small enough.
        radius: disc radius in pixels; default ``0.12 * min(H, W)``.
        level: disc radiance (stop-0 units, before its +-60 % texture and tint
            (1, 0.45, 0.2)); 0.5 is well exposed at stop 0.
        return_scenes: also return each frame's true scene (background with
            the disc at that frame's position, stop-0 units).
        white, bits, read_noise_dn, seed, full_well_e: as in
            :func:`synth_linear_bracket`.

    Returns:
        ``(frames, masks)`` (and ``scenes`` with ``return_scenes``): lists of
        float32 ``(H, W, 3)`` frames, bool ``(H, W)`` disc masks, float32
        ``(H, W, 3)`` scenes.
    """
    rad = np.asarray(radiance, np.float32)
    if rad.ndim != 3 or rad.shape[2] != 3:
        raise ValueError(f"radiance must be (H, W, 3), got {rad.shape}")
    h, w = rad.shape[:2]
    n = len(stops)
    r = float(radius if radius is not None else 0.12 * min(h, w))
    pos = positions if positions is not None else _object_positions(h, w, n, r)
    if len(pos) != n:
        raise ValueError(f"need one position per frame ({n}), got {len(pos)}")
    rng = np.random.default_rng(seed)
    frames, masks, scenes = [], [], []
    for s, c in zip(stops, pos):
        m, obj = _disc_object(h, w, c, r, level)
        scene = np.where(m[..., None], obj, rad).astype(np.float32)
        frames.append(
            expose(scene * np.float32(2.0**s), rng, white=white, bits=bits, read_noise_dn=read_noise_dn, full_well_e=full_well_e)
        )
        masks.append(m)
        scenes.append(scene)
    if return_scenes:
        return frames, masks, scenes
    return frames, masks


def synth_ldr_bracket(
    linear_frames: list[np.ndarray], response: np.ndarray, *, bits: int = 8
) -> list[np.ndarray]:
    """Display-referred frames: linear frames (frame units) through a camera response, quantised.

    ``code = response^-1(x)`` per channel (``response`` ``(256, 3)``, as in
    :mod:`restore.hdr.merge`; values above ``response[255]`` clip to 255),
    quantised to ``bits`` (8: uint8; 16: uint16 with the code scaled by
    65535/255).
    """
    resp = np.asarray(response, np.float64)
    lg = np.log(resp)
    codes = np.arange(256, dtype=np.float64)
    out = []
    for f in linear_frames:
        x = np.log(np.maximum(np.asarray(f, np.float64), 1e-30))
        z = np.stack([np.interp(x[..., c], lg[:, c], codes) for c in range(3)], axis=-1)
        if bits == 8:
            out.append(np.round(z).astype(np.uint8))
        elif bits == 16:
            out.append(np.round(z * (65535.0 / 255.0)).astype(np.uint16))
        else:
            raise ValueError("bits must be 8 or 16")
    return out


# --------------------------------------------------------------------------- DNG


def _write_dng_frame(path: Path, mu_cam_rgb: np.ndarray, rng, exposure_s: float, read_noise_dn: float, full_well_e: float):
    """Bayer DNG of expected camera-RGB signal ``mu_cam_rgb`` (white-balanced units x as-shot neutral)."""
    from data_tools import make_examples as mx

    h, w = mu_cam_rgb.shape[:2]
    h, w = h - h % 2, w - w % 2
    cam = mu_cam_rgb[:h, :w]
    mosaic = np.empty((h, w), np.float32)
    mosaic[0::2, 0::2] = cam[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = cam[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = cam[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = cam[1::2, 1::2, 2]
    levels = mx.WHITE - mx.BLACK
    lam = np.clip(mosaic.astype(np.float64), 0.0, 4.0) * full_well_e
    dn = rng.poisson(lam) * (levels / full_well_e) + rng.normal(0.0, read_noise_dn, size=lam.shape)
    cfa = np.clip(np.round(mx.BLACK + dn), 0, mx.WHITE).astype(np.uint16)
    # write_dng writes ExposureTime from the module constant EXPOSURE_S: set it per frame
    saved = mx.EXPOSURE_S
    try:
        mx.EXPOSURE_S = Fraction(exposure_s).limit_denominator(100000)
        mx.write_dng(path, cfa, {"make": "restore", "model": "synthetic bracket RGGB"})
    finally:
        mx.EXPOSURE_S = saved


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scene", type=Path, help="linear HDR EXR (e.g. ../shared/data/hdr_images/Desk.exr)")
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("--stops", type=float, nargs="+", default=[-8.0, -4.0, 0.0, 4.0])
    ap.add_argument("--crop", type=int, nargs=4, metavar=("TOP", "LEFT", "H", "W"))
    ap.add_argument("--base-time", type=float, default=1 / 60, help="exposure time of stop 0 in seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--read-noise-dn", type=float, default=2.0)
    ap.add_argument("--full-well", type=float, default=FULL_WELL_E)
    ap.add_argument("--ghost", action="store_true", help="add a moving textured disc; writes mask_<i>.png")
    ap.add_argument("--dng", action="store_true", help="also write Bayer DNG frames (make_examples.write_dng)")
    args = ap.parse_args(argv)

    from restore.io import write

    rad = load_scene(args.scene, tuple(args.crop) if args.crop else None)
    stops = list(args.stops)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    kw = dict(read_noise_dn=args.read_noise_dn, seed=args.seed, full_well_e=args.full_well)
    if args.ghost:
        frames, masks, scenes = synth_ghost_bracket(rad, stops, return_scenes=True, **kw)
    else:
        frames, masks, scenes = synth_linear_bracket(rad, stops, **kw), None, [rad] * len(stops)
    order = np.argsort(stops, kind="stable")
    ref = int(order[len(stops) // 2])
    lines = ["filename,exposure_time_s,stop"]
    for i, (s, f) in enumerate(zip(stops, frames)):
        t = args.base_time * 2.0**s
        name = f"frame_{i:02d}.exr"
        write(Image(f, LINEAR_REC709, Metadata(exposure_time_s=t)), out / name, dtype="float")
        lines.append(f"{name},{t:.9g},{s:g}")
        if masks is not None:
            import cv2

            cv2.imwrite(str(out / f"mask_{i:02d}.png"), masks[i].astype(np.uint8) * 255)
    truth = (scenes[ref] * np.float32(2.0 ** stops[ref])).astype(np.float32)
    write(Image(truth, LINEAR_REC709, Metadata(exposure_time_s=args.base_time * 2.0 ** stops[ref])), out / "truth.exr", dtype="float")
    (out / "exposures.csv").write_text("\n".join(lines) + "\n")
    if args.dng:
        from data_tools import make_examples as mx

        rng = np.random.default_rng(args.seed + 1)
        neutral = np.asarray(mx.AS_SHOT_NEUTRAL, np.float32)
        for i, s in enumerate(stops):
            _write_dng_frame(
                out / f"frame_{i:02d}.dng", scenes[i] * np.float32(2.0**s) * neutral, rng,
                args.base_time * 2.0**s, args.read_noise_dn, args.full_well,
            )
    print(f"wrote {len(stops)} frames (stops {stops}, reference {ref}) to {out}")


if __name__ == "__main__":
    main()
