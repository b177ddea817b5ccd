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
from ..image import CAMERA_LINEAR, CFA_MOSAIC, LINEAR_REC709, Image, Metadata
from .limits import check_size
from .paths import native_path

__all__ = ["RawOptions", "read_raw", "read_mosaic", "raw_metadata", "RAW_SUFFIXES", "DNG_COLOR_TAGS"]

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
        output: ``"linear-rec709"`` (camera matrix applied), ``"camera"``
            (camera-native RGB, matrix not applied) or ``"cfa"``: no
            development at all, the visible mosaic as :func:`read_mosaic`
            gives it (``white_balance``, ``demosaic`` and ``half_size`` do
            not apply).
        half_size: Take one pixel per 2x2 CFA block instead of demosaicing
            (takes precedence over ``demosaic``).
    """

    white_balance: WhiteBalance | Sequence[float] = "auto"
    demosaic: str = "ahd"
    output: Literal["linear-rec709", "camera", "cfa"] = "linear-rec709"
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
    dng = _dng_tags(path)
    if dng:
        meta.extra["dng_tags"] = dng
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
    return _open(path, lambda raw, p: _mosaic(raw, p) if options.output == "cfa" else _develop(raw, p, options))


def read_mosaic(path: str | Path) -> Image:
    """Read a RAW file's visible CFA mosaic without developing it (no demosaic, white balance or matrix).

    The same as ``read_raw(path, RawOptions(output="cfa"))`` and the ``develop: {output: cfa}`` step;
    :func:`restore.io.dng.write_dng` writes such an image back to a CFA DNG, exactly.

    Args:
        path: Any Bayer or X-Trans file LibRaw reads.

    Returns:
        :class:`Image` float32 ``(H, W, 1)`` (LibRaw's ``raw_image_visible``, not rotated), encoding
        :data:`~restore.image.CFA_MOSAIC`: ``(DN - black) / (white - black)`` with each pixel's own
        per-CFA-cell black level, so 0 = black, 1 = white level; values below black stay negative, so
        the DN round-trip exactly.  Metadata: ``cfa_pattern`` (R/G/B letters of the repeating tile, row
        by row: 4 = Bayer, 36 = X-Trans), ``black_level`` (LibRaw's per colour index R, G, B, G2),
        ``white_level``, ``white_balance`` (as-shot, R, G, B, G2), exposure, ISO, aperture, capture time,
        make/model; ``extra``: ``cfa_colors`` (LibRaw colour index 0-3 per tile cell, row by row: it
        tells the two greens apart), ``orientation`` (TIFF Orientation 1-8 to display the mosaic),
        ``rgb_xyz_matrix`` (LibRaw's XYZ -> camera, D65; zeros when unknown), where that is zero for a
        non-DNG file ``camera_to_rec709`` (the 3x3 camera -> linear Rec.709 matrix LibRaw applies
        anyway, recovered from two half-size developments) and, for a DNG source, ``dng_tags`` (its
        colour tags, :data:`DNG_COLOR_TAGS`, as stored).

    Raises:
        InputError: unreadable file, or data that is not a 2x2 or 6x6 R/G/B mosaic (Foveon, sRAW,
            linear DNG, CMYG sensors).
    """
    return _open(Path(path), _mosaic)


def _open(path: Path, body) -> Image:
    """Open ``path`` with LibRaw and run ``body(raw, path)``; LibRaw's failures as one-line InputErrors."""
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
            return body(raw, path)
        except rawpy.LibRawError as e:  # the header parsed but the data is truncated or corrupt (unpack fails)
            raise InputError(path, f"truncated or corrupt RAW data ({type(e).__name__})") from None


#: DNG colour tags a CFA read of a DNG keeps (``meta.extra["dng_tags"]``) and a DNG write copies:
#: UniqueCameraModel, ColorMatrix1/2, CameraCalibration1/2, AnalogBalance, BaselineExposure,
#: CalibrationIlluminant1/2, ForwardMatrix1/2.
DNG_COLOR_TAGS = (50708, 50721, 50722, 50723, 50724, 50727, 50730, 50778, 50779, 50964, 50965)

#: LibRaw ``sizes.flip`` -> TIFF Orientation.
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}


def _dng_tags(path: Path) -> dict[int, tuple]:
    """The colour tags of a DNG's first IFD as ``{code: (tifffile dtype, count, value)}`` (empty if none)."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            tags = tf.pages[0].tags
            if 50706 not in tags:  # DNGVersion: not a DNG
                return {}
            out = {}
            for code in DNG_COLOR_TAGS:
                t = tags.get(code)
                if t is not None:
                    out[code] = (int(t.dtype), int(t.count), t.value)
            return out
    except Exception:
        return {}


def _mosaic(raw, path: Path) -> Image:
    """The visible mosaic of an opened ``rawpy.RawPy`` as a CFA :class:`Image` (see :func:`read_mosaic`)."""
    import rawpy

    with raw:
        s = raw.sizes
        check_size(path, int(s.width), int(s.height))
        meta = raw_metadata(raw, path)
        if raw.raw_type != rawpy.RawType.Flat or raw.raw_pattern is None:
            raise InputError(path, "not CFA (mosaic) data; this file is already demosaiced (read it developed)")
        desc = raw.color_desc.decode("ascii", "replace")
        colors = np.asarray(raw.raw_colors_visible)
        h, w = colors.shape
        period = 2 if h >= 4 and w >= 4 and np.array_equal(colors[:2, :2], colors[2:4, 2:4]) else 6
        tile = colors[:period, :period]
        if h < period or w < period or not np.array_equal(np.tile(tile, (-(-h // period), -(-w // period)))[:h, :w], colors):
            raise InputError(path, "the colour filter array does not repeat in 2x2 or 6x6 cells; not supported")
        letters = [desc[i] if i < len(desc) else "?" for i in tile.ravel()]
        if any(c not in "RGB" for c in letters):
            raise InputError(path, f"colour filter array {desc!r} is not R/G/B; not supported")
        black = np.asarray(raw.black_level_per_channel, np.float64)
        white = float(raw.white_level)
        dn = raw.raw_image_visible.astype(np.float64)
        b = black[colors]
        mosaic = ((dn - b) / np.maximum(white - b, 1.0)).astype(np.float32)
        meta.cfa_pattern = "".join(letters)
        meta.extra["cfa_colors"] = [int(v) for v in tile.ravel()]
        meta.extra["orientation"] = _FLIP_TO_ORIENTATION.get(int(s.flip), 1)
        if not _has_matrix(raw) and "dng_tags" not in meta.extra:
            # LibRaw converts some makes (Kodak) with a matrix it does not expose; its AHD depends on it
            meta.extra["camera_to_rec709"] = _camera_to_output_matrix(path, {"user_wb": [1.0, 1.0, 1.0, 1.0]}).tolist()
    return Image(np.ascontiguousarray(mosaic[:, :, None]), CFA_MOSAIC, meta)


def _develop(raw, path: Path, options: RawOptions) -> Image:
    """Develop an opened ``rawpy.RawPy`` with LibRaw (or the learned demosaicker) as :func:`read_raw` says."""
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
        applied = raw.camera_whitebalance if params.get("use_camera_wb") else params["user_wb"]
        meta.extra["white_balance_applied"] = [float(v) for v in applied][:3]
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
    meta.extra["white_balance_applied"] = mul[:3].tolist()
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
