"""DNG writer (Adobe DNG Specification 1.4, readable by 1.1 readers; tifffile is the TIFF container).

Two kinds, chosen by the image's encoding:

* **CFA DNG** (PhotometricInterpretation 32803) for a raw mosaic (:data:`~restore.image.CFA_MOSAIC`, from
  :func:`restore.io.raw.read_mosaic`): 16-bit unsigned uncompressed samples, the values put back on the
  source's scale (``DN = black + x * (white - black)``, rounded, clipped to [0, 65535]), so an unchanged
  mosaic round-trips exactly.  Tags: CFARepeatPatternDim / CFAPattern (0 = R, 1 = G, 2 = B), CFAPlaneColor,
  CFALayout 1 (spec section 6, "Mosaic data"), BlackLevelRepeatDim / BlackLevel per CFA cell, WhiteLevel,
  AsShotNeutral (= 1 / the as-shot white-balance multipliers, G = 1), the colour tags (section 6, "Camera
  colour space"): a DNG source's own ColorMatrix1/2, CalibrationIlluminant1/2, CameraCalibration,
  AnalogBalance, ForwardMatrix, BaselineExposure copied as stored; otherwise ColorMatrix1 = LibRaw's
  ``rgb_xyz_matrix`` (XYZ -> camera, D65: CalibrationIlluminant1 21), or the inverse of the camera -> Rec.709
  matrix LibRaw applies without exposing it (Kodak; ``extra["camera_to_rec709"]``) times XYZ -> Rec.709; a
  camera without any matrix gets XYZ -> linear sRGB (camera RGB taken as sRGB, as LibRaw does).
* **LinearRaw DNG** (PhotometricInterpretation 34892) for demosaiced RGB: 3 samples, 16-bit unsigned
  (values in [0, 1] x 65535) or 32-bit float (SampleFormat 3, DNG 1.4 floating point; values above 1 kept,
  WhiteLevel = their ceiling and BaselineExposure = log2 of it).  Linear Rec.709 data (any other encoding
  is converted to it first, sRGB decoded) gets ColorMatrix1 = XYZ -> linear sRGB, D65, AsShotNeutral
  (1, 1, 1); camera-native data (``output: camera``) gets the camera's matrix with the white balance
  the developer applied folded in (``diag(wb) @ ColorMatrix``), and AsShotNeutral (1, 1, 1).

Both carry DNGVersion 1.4.0.0, DNGBackwardVersion 1.1.0.0, Make, Model, UniqueCameraModel, Orientation,
Software and an EXIF IFD with ExposureTime, FNumber, ISOSpeedRatings and DateTimeOriginal (LibRaw reads
ISO and the capture time only from there).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..color import convert, primaries_matrix
from ..errors import OutputError
from ..image import Encoding, Image

__all__ = ["write_dng", "encode_dng", "DngFile", "DNG_BIT_DEPTHS"]

#: ``bit_depth`` values a DNG write takes: 16 (unsigned integer) or 32 (float; LinearRaw only).
DNG_BIT_DEPTHS = (16, 32)

_XYZ_TO_SRGB = primaries_matrix("xyz", "rec709")
_D65 = 21
_EXIF_IFD = 34665
_EXIF_PLACEHOLDER = 34666  # tifffile will not write 34665 itself: a neighbour code (same sort position) patched after


def _rationals(values, signed: bool = False) -> list[int]:
    """Floats -> flat (numerator, denominator) pairs, denominators up to 10**6."""
    out: list[int] = []
    for v in values:
        f = Fraction(float(v)).limit_denominator(1_000_000)
        n = max(-(2**31), min(2**31 - 1, f.numerator)) if signed else max(0, min(2**32 - 1, f.numerator))
        out += [n, f.denominator]
    return out


def _levels(values) -> tuple:
    """A level tag entry: LONG when every value is an integer, else RATIONAL."""
    vals = [float(v) for v in values]
    if all(v.is_integer() and 0 <= v < 2**32 for v in vals):
        return ("I", len(vals), tuple(int(v) for v in vals))
    return ("2I", len(vals), tuple(_rationals(vals)))


def _matrix_tag(code: int, m: np.ndarray) -> tuple:
    return (code, "2i", 9, tuple(_rationals(np.asarray(m, np.float64).ravel(), signed=True)), True)


def _common_tags(image: Image) -> list[tuple]:
    """Make, Model, UniqueCameraModel, Orientation, DNG versions."""
    m = image.meta
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (274, "H", 1, int(m.extra.get("orientation", 1)) if image.encoding.cfa else 1, True),  # Orientation
    ]
    for code, value in ((271, m.make), (272, m.model)):
        if value:
            tags.append((code, "s", 0, str(value), True))
    return tags


def _unique_model(image: Image) -> tuple:
    m = image.meta
    name = " ".join(v for v in (m.make, m.model) if v) or "restore"
    return (50708, "s", 0, name, True)


def _cfa_tags(image: Image, path: Path) -> tuple[list[tuple], np.ndarray]:
    """The mosaic-specific tags and the per-pixel black level for a CFA image."""
    m = image.meta
    pattern = m.cfa_pattern or ""
    period = {4: 2, 36: 6}.get(len(pattern))
    if period is None or any(c not in "RGB" for c in pattern):
        raise OutputError(path, f"CFA image with an unknown pattern {pattern or None!r}: a DNG needs 4 (Bayer) or "
                                "36 (X-Trans) R/G/B letters in meta.cfa_pattern")
    if image.height < period or image.width < period:
        raise OutputError(path, f"CFA image of {image.width}x{image.height} is smaller than its {period}x{period} pattern")
    codes = tuple("RGB".index(c) for c in pattern)
    colors = m.extra.get("cfa_colors")
    if not (isinstance(colors, (list, tuple)) and len(colors) == len(pattern)):
        colors = codes  # R = 0, G = 1, B = 2: both greens take black_level[1]
    given = [float(v) for v in (m.black_level or [0.0])]
    black4 = (given * 3)[:3] if len(given) == 1 else given[:3] + [0.0] * (3 - len(given[:3]))
    black4.append(given[3] if len(given) >= 4 else black4[1])  # G2 as G unless given
    cell_black = np.array([black4[c] for c in colors], np.float64).reshape(period, period)
    white = float(m.white_level) if m.white_level else 65535.0
    if white > 65535 or white <= cell_black.max():
        raise OutputError(path, f"white level {white:g} must lie above the black level and within 16 bits")
    tags = [
        (33421, "H", 2, (period, period), True),  # CFARepeatPatternDim
        (33422, "B", len(codes), bytes(codes), True),  # CFAPattern
        (50710, "B", 3, b"\x00\x01\x02", True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50717, "I", 1, int(round(white)), True),  # WhiteLevel
    ]
    if np.all(cell_black == cell_black.flat[0]):
        tags.append((50714, *_levels([cell_black.flat[0]]), True))
    else:
        tags.append((50713, "H", 2, (period, period), True))  # BlackLevelRepeatDim
        tags.append((50714, *_levels(cell_black.ravel()), True))
    wb = m.white_balance
    if wb and len(wb) >= 3 and all(v > 0 for v in wb[:3]):
        neutral = [wb[1] / v for v in wb[:3]]
    else:
        neutral = [1.0, 1.0, 1.0]
    tags.append((50728, "2I", 3, tuple(_rationals(neutral)), True))  # AsShotNeutral
    tags += _colour_tags(image)
    h, w = image.height, image.width
    per_pixel = np.tile(cell_black, (-(-h // period), -(-w // period)))[:h, :w]
    return tags, per_pixel


def _colour_tags(image: Image) -> list[tuple]:
    """A CFA image's colour tags: the DNG source's own, else LibRaw's matrix, else XYZ -> sRGB."""
    m = image.meta
    dng = m.extra.get("dng_tags") or {}
    if dng:
        tags = [(int(code), dtype, count, value, True) for code, (dtype, count, value) in dng.items()]
        if 50721 in {t[0] for t in tags}:
            if 50708 not in {t[0] for t in tags}:
                tags.append(_unique_model(image))
            return tags
    cam = np.asarray(m.extra.get("rgb_xyz_matrix") or np.zeros((4, 3)), np.float64)[:3]
    to_rec709 = m.extra.get("camera_to_rec709")
    if np.any(cam):
        matrix = cam
    elif to_rec709 is not None:  # XYZ -> camera = (camera -> Rec.709)^-1 @ (XYZ -> Rec.709)
        matrix = np.linalg.inv(np.asarray(to_rec709, np.float64)) @ _XYZ_TO_SRGB
    else:
        matrix = _XYZ_TO_SRGB
    return [_unique_model(image), _matrix_tag(50721, matrix), (50778, "H", 1, _D65, True)]


def _linear_raw(image: Image, path: Path, bit_depth: int | None) -> tuple[list[tuple], np.ndarray]:
    """LinearRaw tags and samples (uint16 or float32 ``(H, W, 3)``)."""
    if image.channels != 3:
        what = "a grey" if image.channels == 1 else "an RGBA"
        raise OutputError(path, f"{what} image cannot be written as a DNG (3 colour channels, no alpha)")
    m = image.meta
    if image.encoding.primaries == "camera":
        px = image.pixels
        cam = np.asarray(m.extra.get("rgb_xyz_matrix") or np.zeros((4, 3)), np.float64)[:3]
        dng = m.extra.get("dng_tags") or {}
        if not np.any(cam) and 50721 in dng:
            cam = np.asarray(dng[50721][2], np.float64).reshape(9, 2)
            cam = (cam[:, 0] / cam[:, 1]).reshape(3, 3)
        wb = m.extra.get("white_balance_applied") or [1.0, 1.0, 1.0]
        matrix = np.diag(np.asarray(wb[:3], np.float64)) @ cam if np.any(cam) else _XYZ_TO_SRGB
    else:
        px = convert(image, Encoding("linear", "rec709", image.encoding.referred)).pixels
        matrix = _XYZ_TO_SRGB
    px = np.maximum(px, 0.0)
    peak = float(px.max(initial=0.0))
    depth = bit_depth or (16 if peak <= 1.0 else 32)
    tags = [_unique_model(image), _matrix_tag(50721, matrix), (50778, "H", 1, _D65, True),
            (50728, "2I", 3, tuple(_rationals([1.0, 1.0, 1.0])), True)]
    if depth == 16:
        if peak > 1.0 + 1e-6:
            raise OutputError(path, f"values above 1 (max {peak:.4g}) do not fit a 16-bit DNG; use bit_depth 32")
        data = np.floor(np.clip(px, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
        tags.append((50717, "I", 1, 65535, True))
    else:
        data = np.ascontiguousarray(px, dtype=np.float32)
        white = max(1, math.ceil(peak))
        tags.append((50717, "I", 1, white, True))
        if white > 1:
            tags.append((50730, "2i", 1, tuple(_rationals([math.log2(white)], signed=True)), True))  # BaselineExposure
    return tags, data


def _exif_entries(image: Image) -> list[tuple[int, int, int, bytes]]:
    """EXIF IFD entries ``(tag, type, count, little-endian value bytes)`` from the capture metadata."""
    m = image.meta
    out = [(36864, 7, 4, b"0230")]  # ExifVersion
    for tag, v in ((33434, m.exposure_time_s), (33437, m.f_number)):
        if v and v > 0:
            out.append((tag, 5, 1, struct.pack("<2I", *_rationals([v]))))
    if m.iso and m.iso > 0:
        out.append((34855, 3, 1, struct.pack("<H", int(min(round(m.iso), 65535)))))
    if m.capture_time:
        text = str(m.capture_time)[:19].encode("ascii", "replace") + b"\x00"
        out.append((36867, 2, len(text), text))
    return sorted(out)


def _append_exif_ifd(path: Path, entries: list[tuple[int, int, int, bytes]]) -> None:
    """Append an EXIF IFD at the end of the (little-endian, classic) TIFF and turn the placeholder entry
    into tag 34665 pointing at it."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        entry = tf.pages[0].tags[_EXIF_PLACEHOLDER]
        pointer, entry_at = entry.valueoffset, entry.offset
    with open(path, "r+b") as f:
        f.seek(0, 2)
        start = f.tell() + (f.tell() & 1)  # IFDs begin on a word boundary
        data_at = start + 2 + 12 * len(entries) + 4
        ifd, blob = [struct.pack("<H", len(entries))], b""
        for tag, typ, count, value in entries:
            if len(value) <= 4:
                ifd.append(struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\x00"))
            else:
                ifd.append(struct.pack("<HHII", tag, typ, count, data_at + len(blob)))
                blob += value + b"\x00" * (len(value) & 1)
        ifd.append(struct.pack("<I", 0))
        f.write(b"\x00" * (start - f.tell()) + b"".join(ifd) + blob)
        f.seek(pointer)
        f.write(struct.pack("<I", start))
        f.seek(entry_at)
        f.write(struct.pack("<H", _EXIF_IFD))


@dataclass
class DngFile:
    """A DNG ready to be written: everything checked, nothing on disk yet (:func:`encode_dng`).

    Attributes:
        data: The samples: uint16 ``(H, W)`` (CFA) or uint16 / float32 ``(H, W, 3)`` (LinearRaw).
        photometric: 32803 (CFA) or 34892 (LinearRaw).
        tags: IFD0 tags as tifffile ``extratags`` entries ``(code, dtype, count, value, True)``.
        exif: EXIF IFD entries ``(tag, TIFF type, count, little-endian value bytes)``.
    """

    data: np.ndarray
    photometric: int
    tags: list
    exif: list

    def save(self, path: str | Path) -> None:
        """Write the file (uncompressed, little-endian classic TIFF, NewSubFileType 0) and its EXIF IFD."""
        import tifffile

        tifffile.imwrite(path, self.data, photometric=self.photometric,
                         planarconfig="contig" if self.data.ndim == 3 else None, compression=None,
                         extratags=self.tags, metadata=None, subfiletype=0, software="restore", byteorder="<",
                         bigtiff=False)
        _append_exif_ifd(Path(path), self.exif)


def encode_dng(image: Image, path: str | Path, bit_depth: int | None = None) -> DngFile:
    """Check an image and build its DNG (:class:`DngFile`) without writing; see :func:`write_dng`.

    ``path`` only names the file in errors.
    """
    path = Path(path)
    if bit_depth not in (None, *DNG_BIT_DEPTHS):
        raise OutputError(path, f"DNG bit depth must be 16 or 32, got {bit_depth}")
    if image.encoding.cfa:
        if bit_depth == 32:
            raise OutputError(path, "a CFA DNG is written with 16-bit samples; bit_depth 32 is for RGB (LinearRaw)")
        if image.channels != 1:
            raise OutputError(path, f"a CFA image has one sample per pixel, not {image.channels}")
        tags, black = _cfa_tags(image, path)
        white = float(image.meta.white_level) if image.meta.white_level else 65535.0
        dn = black + image.pixels[:, :, 0].astype(np.float64) * (white - black)
        data = np.clip(np.floor(dn + 0.5), 0, 65535).astype(np.uint16)
        photometric = 32803
    else:
        tags, data = _linear_raw(image, path, bit_depth)
        photometric = 34892
    tags = _common_tags(image) + tags + [(_EXIF_PLACEHOLDER, "I", 1, 0, True)]
    codes = [t[0] for t in tags]
    tags = [t for i, t in enumerate(tags) if t[0] not in codes[:i]]  # first of each code wins
    return DngFile(data, photometric, tags, _exif_entries(image))


def write_dng(image: Image, path: str | Path, bit_depth: int | None = None) -> None:
    """Write a CFA DNG (mosaic images) or a LinearRaw DNG (RGB images); see the module docstring for the tags.

    Args:
        image: A CFA mosaic ``(H, W, 1)`` with encoding :data:`~restore.image.CFA_MOSAIC` (0 = black,
            1 = white; ``meta.cfa_pattern``, ``black_level``, ``white_level``, ``white_balance`` and
            ``extra["cfa_colors"]``, ``["orientation"]``, ``["rgb_xyz_matrix"]``, ``["dng_tags"]`` as
            :func:`restore.io.raw.read_mosaic` fills them; without levels black 0 and white 65535 are
            used), or an RGB image ``(H, W, 3)`` in any encoding (written as linear Rec.709, or as
            camera RGB when its primaries are ``camera``; negative values clipped to 0).
        path: Destination, written in place (:func:`restore.io.write` checks first, then writes atomically).
        bit_depth: 16 (unsigned) or 32 (float, LinearRaw only).  Default: 16, or 32 for RGB values
            above 1.

    Raises:
        OutputError: a CFA image with an unknown pattern or impossible levels, 32-bit CFA, a grey or
            RGBA image, values above 1 in a 16-bit LinearRaw DNG, a bad bit depth.
    """
    encode_dng(image, path, bit_depth).save(path)
