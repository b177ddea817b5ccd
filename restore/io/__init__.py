"""Reading and writing images: RAW (rawpy), PNG/TIFF/JPEG (OpenCV, Pillow, tifffile), EXR (OpenEXR),
Radiance HDR (OpenCV); DNG written through tifffile (:mod:`restore.io.dng`).

``read`` takes files whose suffix a reader knows and picks the reader from
the content (:mod:`restore.io.sniff`): a PNG named ``.jpg`` is read as the
PNG it is; text, unknown bytes or camera RAW under a display suffix get a
one-line reason.  ``write`` picks the format from the output suffix,
converts the colour encoding the format needs (EXR, HDR: linear;
PNG/JPEG/8-16-bit TIFF: sRGB-encoded, display-referred; DNG: a CFA mosaic as
it is, RGB as linear) and writes
atomically (temporary file in the output folder, fsync, rename).
"""

from __future__ import annotations

from pathlib import Path

from ..color import convert
from ..errors import InputError, OutputError
from ..image import SRGB, Encoding, Image
from .atomic import TMP_MARK, atomic_path
from .dng import DNG_BIT_DEPTHS, encode_dng
from .exr import EXR_COMPRESSIONS, read_exr, write_exr
from .ldr import LDR_READ_SUFFIXES, read_ldr, write_jpeg, write_png
from .raw import RAW_SUFFIXES, RawOptions, read_mosaic, read_raw
from .paths import not_regular
from .radiance import read_radiance, write_radiance
from .sniff import mismatch, sniff
from .tiff import TIFF_COMPRESSIONS, write_tiff

__all__ = [
    "read",
    "read_mosaic",
    "write",
    "RawOptions",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "FORMAT_OPTIONS",
    "write_option_problems",
    "atomic_path",
    "TMP_MARK",
    "is_raw",
]

READ_SUFFIXES = LDR_READ_SUFFIXES | RAW_SUFFIXES | {".exr", ".hdr"}

#: What each output format takes: option -> allowed values.  The one table behind ``write`` and the
#: pipeline schema (``restore validate`` refuses an option the format does not take).
FORMAT_OPTIONS: dict[str, dict[str, tuple]] = {
    ".png": {"bit_depth": (8, 16), "compression": tuple(str(i) for i in range(10))},
    ".jpg": {"bit_depth": (8,), "quality": tuple(range(1, 101))},
    ".tif": {"bit_depth": (8, 16, 32), "compression": TIFF_COMPRESSIONS},
    ".exr": {"dtype": ("half", "float"), "compression": EXR_COMPRESSIONS},
    ".hdr": {},
    ".dng": {"bit_depth": DNG_BIT_DEPTHS},
}
FORMAT_OPTIONS[".jpeg"], FORMAT_OPTIONS[".tiff"] = FORMAT_OPTIONS[".jpg"], FORMAT_OPTIONS[".tif"]
WRITE_SUFFIXES = set(FORMAT_OPTIONS)


def write_option_problems(suffix: str, options: dict) -> list[str]:
    """Problems with write options for an output format: options it does not take, values it does not allow.

    Args:
        suffix: The output suffix (``.png`` ...).
        options: The options given (``bit_depth``, ``dtype``, ``compression``, ``quality``); None values
            count as not given.

    Returns:
        One line per problem (empty when all apply).
    """
    table = FORMAT_OPTIONS.get(suffix.lower())
    if table is None:
        return [f"unsupported output extension {suffix!r}; use one of {sorted(WRITE_SUFFIXES)}"]
    out = []
    for k, v in options.items():
        if v is None:
            continue
        if k not in table:
            takes = ", ".join(table) or "no options"
            out.append(f"{k} does not apply to {suffix} output ({suffix} takes {takes})")
        elif v not in table[k] and str(v) not in map(str, table[k]):
            allowed = table[k]
            shown = f"{allowed[0]}-{allowed[-1]}" if len(allowed) > 12 else ", ".join(map(str, allowed))
            out.append(f"{k} {v!r} is not one {suffix} takes ({shown})")
    return out


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
    if suffix not in READ_SUFFIXES:
        raise InputError(path, f"unsupported file type {suffix or '(no suffix)'}")
    odd = not_regular(path)
    if odd:  # never open a FIFO (blocks) or a device (/dev/zero never ends)
        raise InputError(path, odd)
    try:
        content = sniff(path)
        problem = mismatch(path, content)
    except OSError as e:
        raise InputError(path, f"cannot read file ({e.strerror or e})") from None
    if problem:
        raise InputError(path, problem)
    if content == "exr" or (content is None and suffix == ".exr"):
        return read_exr(path)
    if content == "hdr":
        return read_radiance(path)
    if suffix in RAW_SUFFIXES or content in ("dng", "raw"):
        return read_raw(path, raw or RawOptions())
    return read_ldr(path, content)


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
        bit_depth: PNG 8/16, TIFF 8/16/32 (32 = float, linear values kept),
            DNG 16/32 (32 = float LinearRaw).  Default: the source's bit depth
            (16-bit stays 16-bit), else 8 (TIFF: 16; DNG: 16, or 32 for RGB
            values above 1).
        dtype: EXR sample type, ``"half"`` or ``"float"``.
        compression: EXR compression (default ``"zip"``), TIFF compression
            (default ``"zlib"``) or PNG zlib level as a string ``"0"``-``"9"``.
        quality: JPEG quality 1-100.

    Returns:
        The final path.

    A CFA mosaic (:data:`~restore.image.CFA_MOSAIC`) can only be written as
    ``.dng`` (a CFA DNG); an RGB image becomes a LinearRaw DNG there
    (:func:`restore.io.dng.write_dng`).

    Raises:
        OutputError: unsupported suffix or options, a CFA mosaic to a format
            other than DNG, an image a DNG cannot hold.
        ValueError: scene-referred values above 1 written to a display format
            (tone map first).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise OutputError(path, f"unsupported output type {suffix or '(no suffix)'}; use one of {sorted(WRITE_SUFFIXES)}")
    given = {"bit_depth": bit_depth, "compression": compression,
             "dtype": dtype if dtype != "half" else None, "quality": quality if quality != 95 else None}
    problems = write_option_problems(suffix, given)
    if problems:
        raise OutputError(path, "; ".join(problems))
    if suffix == ".dng":
        dng = encode_dng(image, path, bit_depth)  # refusals before any file exists
        with atomic_path(path) as tmp:
            dng.save(tmp)
        return path
    if image.encoding.cfa:
        raise OutputError(path, f"a CFA mosaic can only be written as .dng, not {suffix}; develop it first")
    src_depth = image.meta.bit_depth if image.meta.bit_depth in (8, 16) else None
    if suffix in (".exr", ".hdr"):
        if image.encoding.primaries == "camera":
            raise OutputError(path, f"camera-native RGB cannot be tagged in {suffix}; develop to linear-rec709 first")
        primaries = image.encoding.primaries if suffix == ".exr" else "rec709"  # RGBE carries no primaries: Rec.709
        img = convert(image, Encoding("linear", primaries, image.encoding.referred))
        with atomic_path(path) as tmp:
            if suffix == ".exr":
                write_exr(img, tmp, dtype=dtype, compression=compression or "zip")
            else:
                write_radiance(img, tmp)
        return path
    if suffix in (".tif", ".tiff") and bit_depth == 32:  # float TIFF: linear values, as raw converters write them
        if image.encoding.primaries == "camera":
            raise OutputError(path, "camera-native RGB cannot be tagged in a float TIFF; develop to linear-rec709 first")
        img = convert(image, Encoding("linear", "rec709", image.encoding.referred)) if image.channels >= 3 else image
        with atomic_path(path) as tmp:
            write_tiff(img, tmp, 32, compression or "zlib")
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
