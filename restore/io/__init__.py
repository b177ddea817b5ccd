"""Reading and writing images: RAW (rawpy), PNG/TIFF/JPEG (OpenCV, Pillow, tifffile), EXR (OpenEXR).

``read`` picks the reader from the file suffix; ``write`` picks the format
from the output suffix, converts the colour encoding the format needs
(EXR: linear; PNG/JPEG/8-16-bit TIFF: sRGB-encoded, display-referred) and
writes atomically (temporary file in the output folder, fsync, rename).
"""

from __future__ import annotations

from pathlib import Path

from ..color import convert
from ..errors import InputError, OutputError
from ..image import SRGB, Encoding, Image
from .atomic import TMP_MARK, atomic_path
from .exr import read_exr, write_exr
from .ldr import LDR_READ_SUFFIXES, read_ldr, write_jpeg, write_png, write_tiff
from .raw import RAW_SUFFIXES, RawOptions, read_raw

__all__ = [
    "read",
    "write",
    "RawOptions",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "atomic_path",
    "TMP_MARK",
    "is_raw",
]

READ_SUFFIXES = LDR_READ_SUFFIXES | RAW_SUFFIXES | {".exr"}
WRITE_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".exr"}


def is_raw(path: str | Path) -> bool:
    """True if the suffix is a camera RAW format (``.dng``, ``.nef``, ``.cr2``...)."""
    return Path(path).suffix.lower() in RAW_SUFFIXES


def read(path: str | Path, raw: RawOptions | None = None) -> Image:
    """Read any supported image file.

    Args:
        path: File to read; the reader is chosen from its suffix
            (:data:`READ_SUFFIXES`).
        raw: Development options for RAW files (default :class:`RawOptions`).

    Returns:
        :class:`~restore.image.Image` (float32 ``(H, W, C)``, see each
        reader for encodings and ranges).

    Raises:
        InputError: unsupported suffix, missing, truncated or corrupt file,
            size above the pixel limit.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, not an image")
    if suffix == ".exr":
        return read_exr(path)
    if suffix in RAW_SUFFIXES:
        return read_raw(path, raw or RawOptions())
    if suffix in LDR_READ_SUFFIXES:
        return read_ldr(path)
    raise InputError(path, f"unsupported file type {suffix or '(no suffix)'}")


def write(
    image: Image,
    path: str | Path,
    *,
    bit_depth: int | None = None,
    dtype: str = "half",
    compression: str | None = None,
    quality: int = 95,
) -> Path:
    """Write an image; the format comes from the suffix (:data:`WRITE_SUFFIXES`).

    Args:
        image: The image; converted as the format needs.
        path: Destination.  Written atomically; parent folders are created.
        bit_depth: PNG 8/16, TIFF 8/16/32 (32 = float, linear values kept).
            Default: the source's bit depth (16-bit stays 16-bit), else 8
            (TIFF: 16).
        dtype: EXR sample type, ``"half"`` or ``"float"``.
        compression: EXR compression (default ``"zip"``), TIFF compression
            (default ``"zlib"``) or PNG zlib level as a string ``"0"``-``"9"``.
        quality: JPEG quality 1-100.

    Returns:
        The final path.

    Raises:
        OutputError: unsupported suffix or options.
        ValueError: scene-referred values above 1 written to a display format
            (tone map first).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise OutputError(path, f"unsupported output type {suffix or '(no suffix)'}; use one of {sorted(WRITE_SUFFIXES)}")
    src_depth = image.meta.bit_depth if image.meta.bit_depth in (8, 16) else None
    if suffix == ".exr":
        target = Encoding("linear", image.encoding.primaries if image.encoding.primaries != "camera" else "rec709", image.encoding.referred)
        if image.encoding.primaries == "camera":
            raise OutputError(path, "camera-native RGB cannot be tagged in EXR; develop to linear-rec709 first")
        img = convert(image, target)
        with atomic_path(path) as tmp:
            write_exr(img, tmp, dtype=dtype, compression=compression or "zip")
        return path
    if suffix in (".tif", ".tiff") and bit_depth == 32:
        with atomic_path(path) as tmp:
            write_tiff(image, tmp, 32, compression or "zlib")
        return path
    try:
        img = convert(image, SRGB) if image.encoding != SRGB else image
    except ValueError as e:
        raise OutputError(path, str(e).split(": ", 1)[-1]) from None
    with atomic_path(path) as tmp:
        if suffix == ".png":
            write_png(img, tmp, bit_depth or src_depth or 8, int(compression) if compression else 6)
        elif suffix in (".jpg", ".jpeg"):
            if bit_depth not in (None, 8):
                raise OutputError(path, "JPEG is 8-bit only")
            write_jpeg(img, tmp, quality)
        else:
            write_tiff(img, tmp, bit_depth or src_depth or 16, compression or "zlib")
    return path
