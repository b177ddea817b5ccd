"""Camera RAW through rawpy (LibRaw): every make LibRaw reads.

Development follows LibRaw's own pipeline with the settings that keep the
result linear and exposure-absolute: black subtraction, scaling by
(white - black), white balance, demosaic, camera matrix to linear Rec.709,
gamma 1, **no auto-brightness and no maximum adjustment**
(``adjust_maximum_thr=0``; LibRaw's default 0.75 rescales by the image's own
maximum, which breaks brackets and any exposure-dependent stage).  1.0 in the
output is the sensor's white level after white balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ..errors import InputError
from ..image import CAMERA_LINEAR, LINEAR_REC709, Image, Metadata
from .limits import check_size
from .paths import native_path

__all__ = ["RawOptions", "read_raw", "raw_metadata", "RAW_SUFFIXES"]

RAW_SUFFIXES = {
    ".dng", ".nef", ".nrw", ".cr2", ".cr3", ".crw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".pef",
    ".srw", ".x3f", ".kdc", ".dcr", ".mrw", ".3fr", ".fff", ".iiq", ".mos", ".erf", ".mef", ".raw", ".rwl",
}

WhiteBalance = Literal["auto", "camera", "daylight", "gray-world", "none"]


@dataclass(frozen=True)
class RawOptions:
    """How to develop a RAW file.

    Attributes:
        white_balance: ``"auto"`` (as-shot if the file stores it, else the
            camera's daylight multipliers, else gray-world), ``"camera"``
            (as-shot; error if absent), ``"daylight"``, ``"gray-world"``
            (computed from unclipped raw data), ``"none"`` (unity), or explicit
            multipliers ``[r, g, b, g2]``.
        demosaic: LibRaw algorithm name: ``"ahd"`` (default), ``"dcb"``,
            ``"dht"``, ``"aahd"``, ``"vng"``, ``"ppg"``, ``"linear"``; or
            ``"learned"``: the Bayer / X-Trans network of Gharbi et al. 2016
            (:mod:`restore.models.demosaicnet`, weights from PyPI
            ``demosaicnet``) on the black-subtracted, white-balanced,
            clipped mosaic, followed by LibRaw's own camera-to-Rec.709 matrix
            (everything else as for the LibRaw algorithms).
        output: ``"linear-rec709"`` (camera matrix applied) or ``"camera"``
            (camera-native RGB, matrix not applied).
        half_size: Take one pixel per 2x2 CFA block instead of demosaicing
            (takes precedence over ``demosaic``).
    """

    white_balance: WhiteBalance | Sequence[float] = "auto"
    demosaic: str = "ahd"
    output: Literal["linear-rec709", "camera"] = "linear-rec709"
    half_size: bool = False


def _cfa_string(raw) -> str | None:
    try:
        desc = raw.color_desc.decode("ascii")
        pat = np.asarray(raw.raw_pattern)
        return "".join(desc[i] for i in pat.flatten())
    except Exception:
        return None


def _tiff_make_model(path: Path) -> tuple[str | None, str | None]:
    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            tags = tf.pages[0].tags
            make = tags.get(271)
            model = tags.get(272)
            return (str(make.value).strip() if make else None, str(model.value).strip() if model else None)
    except Exception:
        return None, None


def raw_metadata(raw, path: Path) -> Metadata:
    """Metadata of an opened ``rawpy.RawPy`` (exposure, ISO, CFA, levels, white balance, matrix)."""
    meta = Metadata(source=path, source_format="raw", bit_depth=16)
    other = raw.other
    meta.exposure_time_s = float(other.shutter_speed) or None
    meta.iso = float(other.iso_speed) or None
    meta.f_number = float(other.aperture) or None
    if other.timestamp and other.timestamp.year > 1970:
        meta.capture_time = other.timestamp.strftime("%Y:%m:%d %H:%M:%S")
    meta.make, meta.model = _tiff_make_model(path)
    meta.cfa_pattern = _cfa_string(raw)
    meta.black_level = [float(v) for v in raw.black_level_per_channel]
    meta.white_level = float(raw.white_level)
    wb = [float(v) for v in raw.camera_whitebalance]
    meta.white_balance = wb if any(wb) else None
    meta.extra["daylight_whitebalance"] = [float(v) for v in raw.daylight_whitebalance]
    meta.extra["rgb_xyz_matrix"] = np.asarray(raw.rgb_xyz_matrix).tolist()
    meta.extra["raw_type"] = str(raw.raw_type)
    return meta


def _has_matrix(raw) -> bool:
    return bool(np.any(np.asarray(raw.rgb_xyz_matrix)[:3]))


def _gray_world(raw) -> list[float]:
    img = raw.raw_image_visible.astype(np.float64)
    colors = raw.raw_colors_visible
    black = np.asarray(raw.black_level_per_channel, dtype=np.float64)
    sat = 0.95 * raw.white_level
    means = []
    for c in range(4):
        m = (colors == c) & (img < sat)
        means.append(float((img[m] - black[c]).mean()) if m.any() else 0.0)
    green = np.mean([v for c, v in enumerate(means) if c in (1, 3) and v > 0] or [1.0])
    return [green / v if v > 0 else 1.0 for v in means]


def _wb_params(raw, path: Path, wb) -> dict:
    cam = [float(v) for v in raw.camera_whitebalance]
    day = [float(v) for v in raw.daylight_whitebalance]
    # LibRaw reports unity multipliers when a file stores none; with no colour
    # matrix either, unity is "unknown", not "as shot".
    cam_ok = any(cam[:3]) and not (all(v == 1.0 for v in cam[:3]) and not _has_matrix(raw))
    day_ok = all(day[:3]) and not all(v == 1.0 for v in day[:3])
    if not isinstance(wb, str):
        vals = [float(v) for v in wb]
        if len(vals) == 3:
            vals.append(vals[1])
        return {"user_wb": vals}
    if wb == "auto":
        wb = "camera" if cam_ok else "daylight" if day_ok else "gray-world"
    if wb == "camera":
        if not cam_ok:
            raise InputError(path, "no as-shot white balance stored; use white_balance: auto, daylight or gray-world")
        return {"use_camera_wb": True}
    if wb == "daylight":
        if not day_ok:
            raise InputError(path, "no daylight white balance known for this camera; use gray-world")
        return {"user_wb": day[:3] + [day[3] or day[1]]}
    if wb == "gray-world":
        return {"user_wb": _gray_world(raw)}
    if wb == "none":
        return {"user_wb": [1.0, 1.0, 1.0, 1.0]}
    raise InputError(path, f"unknown white_balance {wb!r}")


def read_raw(path: str | Path, options: RawOptions = RawOptions()) -> Image:
    """Decode and develop a RAW file to linear, scene-referred float32.

    Args:
        path: Any file LibRaw reads (DNG, NEF, CR2/CR3, ARW, RAF, ORF, RW2, ...).
        options: :class:`RawOptions`.

    Returns:
        :class:`Image` float32 ``(H, W, 3)``: 0 = black level, 1 = white level
        (after white balance), encoding linear Rec.709 (or camera RGB with
        ``output="camera"``), scene-referred; metadata with exposure time,
        ISO, CFA pattern, black/white levels, white balance, colour matrix.

    Raises:
        InputError: unreadable/unsupported file, or an impossible white
            balance request.
    """
    import rawpy

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    with native_path(path) as native:
        try:
            raw = rawpy.imread(native)
        except (rawpy.LibRawError, OSError, ValueError) as e:
            raise InputError(path, f"not a RAW file LibRaw can read ({type(e).__name__})") from None
        try:
            return _develop(raw, path, options)
        except rawpy.LibRawError as e:  # the header parsed but the data is truncated or corrupt (unpack fails)
            raise InputError(path, f"truncated or corrupt RAW data ({type(e).__name__})") from None


def _develop(raw, path: Path, options: RawOptions) -> Image:
    import rawpy

    with raw:
        s = raw.sizes
        check_size(path, int(s.width), int(s.height))
        meta = raw_metadata(raw, path)
        if options.demosaic == "learned" and not options.half_size:
            return _develop_learned(raw, path, options, meta)
        algo = getattr(rawpy.DemosaicAlgorithm, options.demosaic.upper(), None)
        if algo is None:
            raise InputError(path, f"unknown demosaic algorithm {options.demosaic!r}")
        params = dict(
            gamma=(1, 1),
            no_auto_bright=True,
            adjust_maximum_thr=0.0,
            output_bps=16,
            demosaic_algorithm=algo,
            half_size=options.half_size,
            output_color=rawpy.ColorSpace.sRGB if options.output == "linear-rec709" else rawpy.ColorSpace.raw,
            highlight_mode=rawpy.HighlightMode.Clip,
        )
        params.update(_wb_params(raw, path, options.white_balance))
        meta.extra["develop"] = {k: str(v) for k, v in params.items()}
        try:
            rgb = raw.postprocess(**params)
        except rawpy.LibRawError as e:
            raise InputError(path, f"LibRaw could not develop the file ({type(e).__name__})") from None
    px = rgb.astype(np.float32) / 65535.0
    enc = LINEAR_REC709 if options.output == "linear-rec709" else CAMERA_LINEAR
    return Image(np.ascontiguousarray(px), enc, meta)


def _wb_multipliers(raw, path: Path, wb) -> np.ndarray:
    """The four white-balance multipliers (per colour index) LibRaw would use, normalised to min 1."""
    params = _wb_params(raw, path, wb)
    if params.get("use_camera_wb"):
        mul = [float(v) for v in raw.camera_whitebalance]
    else:
        mul = [float(v) for v in params["user_wb"]]
    if len(mul) < 4 or mul[3] == 0:
        mul = mul[:3] + [mul[1]]
    mul = np.asarray(mul[:4], np.float64)
    if not np.all(mul > 0):
        raise InputError(path, f"white-balance multipliers {mul.tolist()} are not all positive")
    return mul / mul.min()  # LibRaw (highlight clip) scales so the weakest channel keeps 1.0 = white


def _camera_to_output_matrix(path: Path, wb_params: dict) -> np.ndarray:
    """LibRaw's camera-RGB -> linear Rec.709 matrix for this file, as its own pipeline applies it.

    rawpy does not expose LibRaw's ``rgb_cam`` for every make (Kodak files report a
    zero matrix yet are converted), so the matrix is recovered from two half-size
    LibRaw developments of the same file, in camera RGB and in sRGB primaries, by
    least squares over the unclipped pixels (exact up to 16-bit rounding).
    """
    import rawpy

    common = dict(gamma=(1, 1), no_auto_bright=True, adjust_maximum_thr=0.0, output_bps=16, half_size=True,
                  highlight_mode=rawpy.HighlightMode.Clip, **wb_params)
    outs = []
    for cs in (rawpy.ColorSpace.raw, rawpy.ColorSpace.sRGB):
        with native_path(path) as native, rawpy.imread(native) as r:
            outs.append(r.postprocess(output_color=cs, **common).reshape(-1, 3).astype(np.float64))
    cam, rgb = outs
    ok = (cam.max(1) < 64000) & (rgb.max(1) < 64000) & (rgb.min(1) > 0) & (cam.min(1) > 64)
    if ok.sum() < 64:
        # too few unclipped pixels to fit (a black or blown frame): fall back to LibRaw's matrix if it has one
        with native_path(path) as native, rawpy.imread(native) as r:
            m = np.asarray(r.color_matrix, np.float64)[:, :3]
        return m if np.any(m) else np.eye(3)
    sol, *_ = np.linalg.lstsq(cam[ok], rgb[ok], rcond=None)
    return sol.T


def _develop_learned(raw, path: Path, options: RawOptions, meta: Metadata) -> Image:
    """Develop with the learned demosaicker (called inside ``with raw``)."""
    import rawpy

    from ..errors import ModelError
    from ..models import demosaicnet

    if raw.raw_type != rawpy.RawType.Flat:
        raise InputError(path, "demosaic: learned needs CFA (mosaic) data; this file is already demosaiced")
    desc = raw.color_desc.decode("ascii", "replace")
    if desc[:3] != "RGB":
        raise InputError(path, f"demosaic: learned needs an RGB colour filter array, not {desc!r}")
    colors = np.asarray(raw.raw_colors_visible)
    black = np.asarray(raw.black_level_per_channel, np.float64)
    white = float(raw.white_level)
    mul = _wb_multipliers(raw, path, options.white_balance)
    scale = (mul / np.maximum(white - black, 1.0)).astype(np.float32)
    mosaic = (raw.raw_image_visible.astype(np.float32) - black.astype(np.float32)[colors]) * scale[colors]
    np.clip(mosaic, 0.0, 1.0, out=mosaic)
    letters = np.array([desc[i] if desc[i] in "RGB" else "G" for i in range(len(desc))])
    h, w = colors.shape
    period = 2 if h >= 4 and w >= 4 and np.array_equal(colors[:2, :2], colors[2:4, 2:4]) else 6
    pattern = "".join(letters[colors[:period, :period]].ravel())
    if period == 2 and sorted(pattern) != ["B", "G", "G", "R"]:
        raise InputError(path, f"demosaic: learned does not know the CFA pattern {pattern}")
    flip = int(raw.sizes.flip)
    wb_params = _wb_params(raw, path, options.white_balance)
    meta.extra["develop"] = {"demosaic": "learned (Gharbi et al. 2016, demosaicnet weights)", "white_balance": mul.tolist(),
                             "cfa": pattern}
    try:  # the network runs where demosaicnet chooses (CUDA when available)
        if period == 2:
            cam = demosaicnet.demosaic_bayer(mosaic, pattern, linear=True)
        else:
            cam = demosaicnet.demosaic_xtrans(mosaic, pattern, linear=True)
    except ModelError as e:
        raise InputError(path, f"demosaic: learned: {e}") from None
    except ValueError as e:
        raise InputError(path, f"demosaic: learned: {e}") from None
    np.clip(cam, 0.0, 1.0, out=cam)
    if options.output == "linear-rec709":
        m = _camera_to_output_matrix(path, wb_params).astype(np.float32)
        cam = np.clip(cam @ m.T, 0.0, 1.0)
    # LibRaw's orientation (sizes.flip): 3 = 180 deg, 5 = 90 deg counter-clockwise, 6 = 90 deg clockwise
    if flip == 3:
        cam = cam[::-1, ::-1]
    elif flip == 5:
        cam = np.rot90(cam, 1)
    elif flip == 6:
        cam = np.rot90(cam, -1)
    enc = LINEAR_REC709 if options.output == "linear-rec709" else CAMERA_LINEAR
    return Image(np.ascontiguousarray(cam, dtype=np.float32), enc, meta)
