"""EXIF capture metadata (Pillow): exposure, aperture, ISO, capture time, camera, orientation."""

from __future__ import annotations

from PIL import Image as PILImage

from ..image import Metadata

__all__ = ["exif_info"]

# EXIF tags
_ORIENTATION, _EXPOSURE, _FNUMBER, _ISO, _DATETIME_ORIG, _MAKE, _MODEL = 0x0112, 0x829A, 0x829D, 0x8827, 0x9003, 0x010F, 0x0110
_EXIF_IFD = 0x8769


def exif_info(pil: PILImage.Image, meta: Metadata) -> int:
    """Fill ``meta`` from the EXIF of an open Pillow image (exposure time, f-number, ISO, capture time, make,
    model, the EXIF block with its orientation reset to 1); return the orientation (1 if none)."""
    try:
        exif = pil.getexif()
    except Exception:  # malformed EXIF must not make the image unreadable
        return 1
    if not exif:
        return 1
    sub = {}
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:
        pass

    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError, ZeroDivisionError):
            return None

    meta.make = (str(exif.get(_MAKE)).strip("\x00 ") or None) if exif.get(_MAKE) else None
    meta.model = (str(exif.get(_MODEL)).strip("\x00 ") or None) if exif.get(_MODEL) else None
    meta.exposure_time_s = num(sub.get(_EXPOSURE))
    meta.f_number = num(sub.get(_FNUMBER))
    iso = sub.get(_ISO)
    meta.iso = num(iso[0] if isinstance(iso, tuple) else iso)
    meta.capture_time = sub.get(_DATETIME_ORIG)
    orientation = int(exif.get(_ORIENTATION, 1) or 1)
    if orientation != 1:
        exif[_ORIENTATION] = 1
    try:
        raw = exif.tobytes()
        meta.exif = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    except Exception:
        meta.exif = None
    return orientation
