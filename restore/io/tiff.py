"""TIFF through tifffile: every sample format and planar layout, truncation checked, ICC and camera tags kept.

Reading (:func:`read_tiff`): the first image of the file, chunky or planar (``PlanarConfiguration`` 1 or
2), strips or tiles, with sample formats

* unsigned 8/16 bit: sRGB-encoded display values (``/255``, ``/65535``), as PNG;
* unsigned 32 bit and signed 8/16/32 bit: display values scaled by the type's maximum (negative values of
  signed samples clipped to 0);
* float 16/32/64 bit: **linear, scene-referred Rec.709** values as stored (may exceed 1) - what raw
  converters and :func:`write_tiff` with ``bit_depth=32`` write;

photometric grey (``MinIsWhite`` inverted), RGB, RGB + alpha (unassociated or associated extra sample),
palette (expanded through the colour map) and CMYK (to RGB as ``(1 - C)(1 - K)``, no ICC conversion).
Before anything is decoded, the header size is checked against the pixel limit and every strip or tile
must end inside the file: a truncated TIFF is an error, never an image with missing rows.

Compressions tifffile decodes without optional codecs (none, deflate, LZMA) are read by tifffile; LZW,
JPEG and PackBits need the ``imagecodecs`` package, which is optional: without it such files are decoded
by OpenCV (8/16-bit integer samples).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from ..image import LINEAR_REC709, SRGB, Image, Metadata
from .limits import check_size
from .samples import apply_orientation, quantize

__all__ = ["read_tiff", "write_tiff", "TIFF_COMPRESSIONS"]

#: TIFF compressions tifffile writes without optional codecs (``deflate`` = ``zlib``).
TIFF_COMPRESSIONS = ("none", "zlib", "deflate", "lzma")

_ICC, _MAKE, _MODEL, _ORIENTATION = 34675, 271, 272, 274


class NeedsCodec(Exception):
    """tifffile cannot decode this compression without ``imagecodecs``."""


def _check_complete(path: Path, page, size: int) -> None:
    offsets, counts = page.dataoffsets, page.databytecounts
    for k, (o, n) in enumerate(zip(offsets, counts)):
        if o + n > size:
            what = "tile" if page.is_tiled else "strip"
            raise InputError(path, f"truncated TIFF ({what} {k + 1} of {len(offsets)} ends past the end of the file)")


def _to_float(a: np.ndarray, path: Path) -> tuple[np.ndarray, int, bool]:
    """Samples -> float32, bit depth, and whether they are linear float values."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0, 8, False
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0, 16, False
    if a.dtype == np.uint32:
        return (a.astype(np.float64) / 4294967295.0).astype(np.float32), 32, False
    if a.dtype in (np.int8, np.int16, np.int32):
        top = float(np.iinfo(a.dtype).max)
        return (np.maximum(a.astype(np.float64), 0) / top).astype(np.float32), a.dtype.itemsize * 8, False
    if a.dtype in (np.float16, np.float32, np.float64):
        f = a.astype(np.float32)
        if not np.isfinite(f).all():
            bad = int(f.size - np.isfinite(f).sum())
            raise InputError(path, f"TIFF holds {bad} NaN or infinite samples")
        return f, 32, True
    raise InputError(path, f"unsupported TIFF sample type {a.dtype}")


def read_tiff(path: str | Path) -> Image:
    """Read the first image of a TIFF file (see the module docstring for formats and encodings).

    Returns:
        :class:`Image` float32 ``(H, W, 1|3|4)``: sRGB display values in [0, 1] for integer samples, linear
        scene-referred Rec.709 values for float samples; ``meta.bit_depth`` 8/16/32; ICC profile, make and
        model kept; the orientation tag applied.

    Raises:
        InputError: not a TIFF, truncated strips or tiles, a size above the pixel limit, an unsupported
            photometric interpretation or sample type, NaN/Inf samples.
        NeedsCodec: the compression needs ``imagecodecs`` (the caller decodes with OpenCV instead).
    """
    import tifffile

    path = Path(path)
    try:
        size = path.stat().st_size
        with tifffile.TiffFile(path) as tf:
            if not tf.pages:
                raise InputError(path, "TIFF without an image")
            page = tf.pages[0]
            h, w = int(page.imagelength), int(page.imagewidth)
            check_size(path, w, h)
            _check_complete(path, page, size)
            tags = page.tags
            meta = Metadata(source=path, source_format="tiff")
            icc = tags.get(_ICC)
            meta.icc_profile = bytes(icc.value) if icc is not None else None
            for tag, attr in ((_MAKE, "make"), (_MODEL, "model")):
                t = tags.get(tag)
                if t is not None and str(t.value).strip("\x00 "):
                    setattr(meta, attr, str(t.value).strip("\x00 "))
            orientation = int(tags[_ORIENTATION].value) if _ORIENTATION in tags else 1
            photometric = int(page.photometric)
            colormap = page.colormap
            try:
                a = page.asarray()
            except (KeyError, ValueError, NotImplementedError) as e:
                if "imagecodecs" in str(e):
                    raise NeedsCodec(str(e)) from None
                raise
            axes = page.axes
    except (InputError, NeedsCodec):
        raise
    except Exception as e:  # tifffile's own errors on a corrupt file
        raise InputError(path, f"not a readable TIFF ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    # to (H, W, S)
    try:
        if "S" in axes and "Y" in axes and axes.index("S") < axes.index("Y"):  # planar: samples first
            a = np.moveaxis(a, axes.index("S"), -1)
        a = a.reshape(h, w, -1)
    except ValueError:
        raise InputError(path, f"corrupt TIFF (data of shape {a.shape} for a {w}x{h} image)") from None
    if not 1 <= a.shape[2] <= 16:
        raise InputError(path, f"corrupt TIFF ({a.shape[2]} samples per pixel)")
    if photometric == 3:  # palette: indices through the colour map (16-bit per channel)
        if colormap is None:
            raise InputError(path, "palette TIFF without a colour map")
        rgb = np.asarray(colormap, np.float32).T[a[:, :, 0].astype(np.intp)] / 65535.0
        px, depth, linear = rgb.astype(np.float32), 16, False
    else:
        px, depth, linear = _to_float(a, path)
        if photometric == 0:  # MinIsWhite
            px = 1.0 - px
        elif photometric == 5:  # CMYK (separated): no ICC conversion
            if px.shape[2] < 4:
                raise InputError(path, "CMYK TIFF with fewer than 4 samples")
            c, m, y, k = (px[:, :, i] for i in range(4))
            px = np.stack([(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)], axis=-1).astype(np.float32)
        elif photometric not in (1, 2):
            raise InputError(path, f"unsupported TIFF photometric interpretation {photometric}")
    if px.shape[2] == 2:  # grey + alpha
        px = np.concatenate([np.repeat(px[:, :, :1], 3, axis=2), px[:, :, 1:]], axis=2)
    elif px.shape[2] > 4:
        px = px[:, :, :4]
    meta.bit_depth = depth
    _exif(path, meta)
    px = apply_orientation(np.ascontiguousarray(px, dtype=np.float32), orientation)
    return Image(np.ascontiguousarray(px), LINEAR_REC709 if linear else SRGB, meta)


def _exif(path: Path, meta: Metadata) -> None:
    """Capture metadata from the TIFF's EXIF IFD where Pillow can open the file (it cannot for every sample
    format tifffile reads; the pixels are never taken from Pillow)."""
    from PIL import Image as PILImage

    from .exif import exif_info

    make, model = meta.make, meta.model
    try:
        with PILImage.open(path) as pil:
            exif_info(pil, meta)
    except Exception:  # an exotic layout Pillow cannot parse: the tags read by tifffile stay
        pass
    meta.make, meta.model = meta.make or make, meta.model or model


def write_tiff(image: Image, path: Path, bit_depth: int = 16, compression: str = "zlib") -> None:
    """Write a TIFF (8/16-bit integer or 32-bit float; grey/RGB/RGBA with unassociated alpha).

    ICC goes into tag 34675; Make/Model into 271/272.  A 32-bit TIFF stores the values as they are (no
    clipping; :func:`restore.io.write` hands it linear values), so it can hold HDR radiance.

    Raises:
        OutputError: bad bit depth.
    """
    import tifffile

    px = image.pixels
    if bit_depth not in (8, 16, 32):
        raise OutputError(path, f"TIFF bit depth must be 8, 16 or 32, got {bit_depth}")
    data = px.astype(np.float32) if bit_depth == 32 else quantize(px, bit_depth)
    extratags = []
    if image.meta.icc_profile and bit_depth != 32:  # an sRGB display profile does not describe linear floats
        extratags.append((_ICC, "B", len(image.meta.icc_profile), image.meta.icc_profile, True))
    for tag, value in ((_MAKE, image.meta.make), (_MODEL, image.meta.model)):
        if value:
            extratags.append((tag, "s", 0, str(value), True))
    photometric = "minisblack" if px.shape[2] == 1 else "rgb"
    tifffile.imwrite(
        path,
        data[:, :, 0] if px.shape[2] == 1 else data,
        photometric=photometric,
        extrasamples=["unassalpha"] if px.shape[2] == 4 else None,
        compression=None if compression in (None, "none") else compression,
        extratags=extratags,
        metadata=None,
    )
