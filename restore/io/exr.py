"""OpenEXR read/write (half or float) through the OpenEXR Python bindings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from ..image import Encoding, Image, Metadata
from ..color import PRIMARIES
from .limits import check_size
from .paths import native_path

__all__ = ["read_exr", "write_exr", "EXR_COMPRESSIONS"]

EXR_COMPRESSIONS = ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab")


def _primaries_from_chromaticities(chroma) -> str | None:
    if chroma is None:
        return "rec709"  # the EXR default when the attribute is absent
    c = np.asarray(chroma, dtype=np.float64)
    for name, p in PRIMARIES.items():
        if np.allclose(c, p, atol=2e-3):
            return name
    return None


def read_exr(path: str | Path) -> Image:
    """Read an OpenEXR file (scanline or tiled, single part; RGB, RGBA or Y).

    Returns:
        :class:`Image`, float32 ``(H, W, 1|3|4)`` linear scene-referred values
        as stored (may exceed 1 or be slightly negative), primaries from the
        ``chromaticities`` attribute (Rec.709 when absent).  ``expTime``,
        ``isoSpeed``, ``aperture``, ``cameraMake``/``cameraModel`` go into the
        metadata; the whole header into ``meta.extra["exr_header"]``.

    Non-finite samples: a file holding NaN or infinite values is refused
    with an :class:`InputError` that counts them.  Such values come from
    broken renders or bad merges; they spread through every filter and model
    (one NaN in a tile's receptive field blanks the tile), and silently
    replacing them would change the data without anyone noticing.  Clean the
    file (replace them with 0 / the largest finite value) and run again.

    Raises:
        InputError: unreadable file, header size above the pixel limit, no
            RGB/Y channels, NaN or infinite samples, or chromaticities we
            cannot map (converted primaries would be silently wrong).
    """
    import OpenEXR

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with native_path(path) as native:
            head = OpenEXR.File(native, header_only=True).header()
            lo, hi = head["dataWindow"]
            check_size(path, int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1))
            f = OpenEXR.File(native)
            channels = f.channels()
    except InputError:
        raise
    except Exception as e:
        raise InputError(path, f"not a readable OpenEXR file ({e})") from None
    if "RGBA" in channels:
        px = channels["RGBA"].pixels
    elif "RGB" in channels:
        px = channels["RGB"].pixels
    elif all(k in channels for k in "RGB"):
        px = np.stack([channels[k].pixels for k in ("R", "G", "B") + (("A",) if "A" in channels else ())], axis=-1)
    elif "Y" in channels:
        px = channels["Y"].pixels[..., None]
    else:
        raise InputError(path, f"no RGB or Y channels (has {sorted(channels)})")
    px = np.ascontiguousarray(px, dtype=np.float32)
    finite = np.isfinite(px)
    if not finite.all():
        nan = int(np.isnan(px).sum())
        inf = int(finite.size - finite.sum()) - nan
        raise InputError(path, f"contains {nan} NaN and {inf} infinite sample values; refused (replace them, e.g. with 0, and retry)")
    prim = _primaries_from_chromaticities(head.get("chromaticities"))
    if prim is None:
        raise InputError(path, f"unsupported chromaticities {tuple(round(float(v), 4) for v in head['chromaticities'])}")
    meta = Metadata(source=path, source_format="exr", bit_depth=16 if channels[next(iter(channels))].pixels.dtype == np.float16 else 32)
    meta.exposure_time_s = float(head["expTime"]) if "expTime" in head else None
    meta.iso = float(head["isoSpeed"]) if "isoSpeed" in head else None
    meta.f_number = float(head["aperture"]) if "aperture" in head else None
    meta.make = head.get("cameraMake")
    meta.model = head.get("cameraModel")
    meta.extra["exr_header"] = {k: str(v) for k, v in head.items() if k not in ("channels",)}
    return Image(px, Encoding("linear", prim, "scene"), meta)


def write_exr(image: Image, path: Path, dtype: str = "half", compression: str = "zip") -> None:
    """Write a linear image as OpenEXR.

    Args:
        image: Linear pixels ``(H, W, 1|3|4)`` (the caller converts; any
            primaries in :data:`~restore.color.PRIMARIES`, recorded in the
            ``chromaticities`` attribute).
        path: Destination.
        dtype: ``"half"`` (float16; values above 65504 become inf, so they are
            clipped to 65504) or ``"float"`` (float32).
        compression: One of :data:`EXR_COMPRESSIONS`.

    Raises:
        OutputError: non-linear input, unknown dtype or compression.
    """
    import OpenEXR

    if image.encoding.transfer != "linear":
        raise OutputError(path, "EXR output must be linear; convert first")
    if dtype not in ("half", "float"):
        raise OutputError(path, f"EXR dtype must be 'half' or 'float', got {dtype!r}")
    if compression not in EXR_COMPRESSIONS:
        raise OutputError(path, f"EXR compression must be one of {EXR_COMPRESSIONS}, got {compression!r}")
    px = image.pixels
    if dtype == "half":
        px = np.clip(np.nan_to_num(px, nan=0.0, posinf=65504.0, neginf=-65504.0), -65504.0, 65504.0).astype(np.float16)
    else:
        px = px.astype(np.float32)
    name = {1: "Y", 3: "RGB", 4: "RGBA"}[px.shape[2]]
    channels = {name: px[:, :, 0] if name == "Y" else np.ascontiguousarray(px)}
    header = {
        "compression": getattr(OpenEXR, "NO_COMPRESSION" if compression == "none" else f"{compression.upper()}_COMPRESSION"),
        "type": OpenEXR.scanlineimage,
    }
    if image.encoding.primaries in PRIMARIES:
        header["chromaticities"] = tuple(float(v) for v in PRIMARIES[image.encoding.primaries])
    m = image.meta
    if m.exposure_time_s:
        header["expTime"] = float(m.exposure_time_s)
    if m.iso:
        header["isoSpeed"] = float(m.iso)
    if m.f_number:
        header["aperture"] = float(m.f_number)
    if m.make:
        header["cameraMake"] = str(m.make)
    if m.model:
        header["cameraModel"] = str(m.model)
    try:
        with native_path(path) as native:
            OpenEXR.File(header, channels).write(native)
    except Exception as e:
        raise OutputError(path, f"EXR write failed: {e}") from None
