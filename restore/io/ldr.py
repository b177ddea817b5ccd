"""PNG, TIFF, JPEG (and other display-referred formats OpenCV decodes).

Pixels are decoded by OpenCV (8/16-bit, grey, RGB, alpha) from bytes read
once; EXIF and ICC profiles are read with Pillow and written back: PNG gets
``iCCP``/``eXIf`` chunks, JPEG APP1/APP2 through Pillow, TIFF its ICC tag and
Make/Model/DateTime.  The EXIF orientation is applied on read (and reset to 1
in copied EXIF) so pixels are always upright.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage

from ..errors import InputError, OutputError
from ..image import SRGB, Image, Metadata
from .exif import exif_info
from .limits import check_size
from .samples import apply_orientation, quantize

__all__ = ["read_ldr", "write_png", "write_jpeg", "LDR_READ_SUFFIXES"]

LDR_READ_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".pgm", ".pnm"}
_FORMAT = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg"}

PILImage.MAX_IMAGE_PIXELS = None  # our own limit (limits.check_size) applies, from the header


def _png_complete(data: bytes) -> str | None:
    """Return a problem description if a PNG byte string is truncated or corrupt, else None."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "not a PNG file (bad signature)"
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return f"truncated PNG (chunk {ctype.decode('latin-1', 'replace')} cut short)"
        crc = struct.unpack(">I", data[end - 4 : end])[0]
        if zlib.crc32(data[pos + 4 : end - 4]) & 0xFFFFFFFF != crc:
            return f"corrupt PNG (CRC mismatch in chunk {ctype.decode('latin-1', 'replace')})"
        if ctype == b"IEND":
            return None
        pos = end
    return "truncated PNG (no IEND chunk)"


def read_ldr(path: str | Path, fmt: str | None = None) -> Image:
    """Read a PNG / TIFF / JPEG / BMP / WebP file.

    Args:
        path: The file.
        fmt: Its content's format (:func:`restore.io.sniff.sniff`: ``png``,
            ``jpeg``, ``tiff`` ...); default: what the suffix says.  Integrity
            checks (PNG chunks and CRCs, the JPEG end marker) follow the content.

    Returns:
        :class:`Image` with float32 pixels ``(H, W, C)`` in [0, 1] (C = 1, 3 or
        4; RGB order; alpha straight), encoding sRGB display-referred (an
        embedded ICC profile is kept in ``meta.icc_profile`` and copied to
        outputs, pixels are not converted), ``meta.bit_depth`` 8 or 16 (32 for
        float TIFF, whose values are taken as they are).

    Raises:
        InputError: missing, truncated or corrupt file, unsupported sample
            type, or a header size above the pixel limit.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    fmt = fmt or _FORMAT.get(suffix, suffix.lstrip("."))
    if fmt == "tiff":
        from .tiff import NeedsCodec, read_tiff

        try:
            return read_tiff(path)
        except NeedsCodec:  # LZW / JPEG / PackBits without imagecodecs: OpenCV decodes those (checked complete)
            pass
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(path, f"cannot read file ({e.strerror or e})") from None
    if not data:
        raise InputError(path, "empty file")
    meta = Metadata(source=path, source_format=fmt)
    orientation = 1
    try:
        with PILImage.open(io.BytesIO(data)) as pil:
            check_size(path, *pil.size)
            meta.icc_profile = pil.info.get("icc_profile") or None
            orientation = exif_info(pil, meta)
    except InputError:
        raise
    except Exception as e:  # Pillow cannot parse the header: the file is not an image we know
        raise InputError(path, f"not a readable image ({type(e).__name__}: {e})") from None
    if fmt == "png":
        problem = _png_complete(data)
        if problem:
            raise InputError(path, problem)
    elif fmt == "jpeg" and b"\xff\xd9" not in data[-4096:]:
        raise InputError(path, "truncated JPEG (no end-of-image marker)")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(path, "cannot decode image data (corrupt or unsupported)")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    elif arr.shape[2] == 2:  # grey + alpha
        arr = np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2)
    if arr.dtype == np.uint8:
        meta.bit_depth, px = 8, arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        meta.bit_depth, px = 16, arr.astype(np.float32) / 65535.0
    elif arr.dtype == np.float32:
        meta.bit_depth, px = 32, arr.astype(np.float32)
    else:
        raise InputError(path, f"unsupported sample type {arr.dtype}")
    px = apply_orientation(px, orientation)
    return Image(np.ascontiguousarray(px), SRGB, meta)


def _to_bgr(q: np.ndarray) -> np.ndarray:
    if q.shape[2] == 1:
        return q[:, :, 0]
    if q.shape[2] == 3:
        return np.ascontiguousarray(q[:, :, ::-1])
    return np.ascontiguousarray(q[:, :, [2, 1, 0, 3]])


def _png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload) & 0xFFFFFFFF)


def write_png(image: Image, path: Path, bit_depth: int = 8, compression: int = 6) -> None:
    """Write a display-referred image as PNG (8 or 16 bit, grey/RGB/RGBA), with ICC and EXIF chunks.

    Args:
        image: Pixels in [0, 1] (clipped), sRGB-encoded.
        path: Destination (written as given: callers pass a temporary path).
        bit_depth: 8 or 16.
        compression: zlib level 0-9.

    Raises:
        OutputError: bad bit depth or encoder failure.
    """
    q = _to_bgr(quantize(image.pixels, bit_depth))
    ok, buf = cv2.imencode(".png", q, [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise OutputError(path, "PNG encoding failed")
    data = buf.tobytes()
    extra = b""
    if image.meta.icc_profile:
        extra += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(image.meta.icc_profile))
    if image.meta.exif:
        extra += _png_chunk(b"eXIf", image.meta.exif)
    if extra:  # after IHDR (8-byte signature + 25-byte IHDR chunk)
        data = data[:33] + extra + data[33:]
    Path(path).write_bytes(data)


def write_jpeg(image: Image, path: Path, quality: int = 95) -> None:
    """Write an 8-bit JPEG (grey or RGB; alpha dropped) with EXIF and ICC.

    Raises:
        OutputError: encoder failure.
    """
    q = quantize(image.pixels[..., : 3 if image.channels >= 3 else 1], 8)
    pil = PILImage.fromarray(q[:, :, 0] if q.shape[2] == 1 else q)
    kw = {"quality": int(quality), "subsampling": 0 if quality >= 90 else 2}
    if image.meta.exif:
        kw["exif"] = b"Exif\x00\x00" + image.meta.exif
    if image.meta.icc_profile:
        kw["icc_profile"] = image.meta.icc_profile
    try:
        pil.save(path, format="JPEG", **kw)
    except Exception as e:
        raise OutputError(path, f"JPEG encoding failed: {e}") from None
