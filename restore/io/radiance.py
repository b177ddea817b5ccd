"""Radiance RGBE (``.hdr``, ``.pic``): linear HDR radiance, read and written through OpenCV.

Format: Greg Ward's RGBE (Graphics Gems II, 1991; the Radiance file format): a text header
(``#?RADIANCE``, ``FORMAT=32-bit_rle_rgbe``, optional ``EXPOSURE=``), a blank line, a resolution
line ``-Y <height> +X <width>``, then run-length encoded RGBE scanlines.  Values are linear,
scene-referred; primaries are taken as Rec.709 (the format's common use; a ``PRIMARIES=`` line
other than Rec.709's is refused).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from ..image import Encoding, Image, Metadata
from .limits import check_size

__all__ = ["read_radiance", "write_radiance", "radiance_size"]

_RES = re.compile(rb"^([-+])([YX])\s+(\d+)\s+([-+])([YX])\s+(\d+)\s*$")


def radiance_size(path: str | Path) -> tuple[int, int, dict[str, str]]:
    """``(width, height, header)`` from a Radiance file's header (pixels are not read).

    Raises:
        InputError: not a Radiance file, or a header without a resolution line.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError as e:
        raise InputError(path, f"cannot read file ({e.strerror or e})") from None
    if not head.startswith((b"#?RADIANCE", b"#?RGBE")):
        raise InputError(path, "not a Radiance HDR file (no #?RADIANCE header)")
    fields: dict[str, str] = {}
    lines = head.split(b"\n")
    for k, line in enumerate(lines[1:], 1):
        if not line.strip():
            m = _RES.match(lines[k + 1].strip()) if k + 1 < len(lines) else None
            if not m:
                raise InputError(path, "Radiance header without a resolution line (-Y height +X width)")
            a, b = int(m.group(3)), int(m.group(6))
            return (b, a, fields) if m.group(2) == b"Y" else (a, b, fields)
        if b"=" in line:
            key, _, value = line.decode("latin-1").partition("=")
            fields[key.strip().upper()] = value.strip()
    raise InputError(path, "truncated Radiance header")


def read_radiance(path: str | Path) -> Image:
    """Read a Radiance RGBE file.

    Returns:
        :class:`Image`: float32 ``(H, W, 3)`` linear scene-referred Rec.709 radiance as stored
        (``EXPOSURE=`` is recorded in ``meta.extra`` and not undone).

    Raises:
        InputError: not a Radiance file, size above the pixel limit, primaries other than
            Rec.709, undecodable or truncated data, non-finite values.
    """
    import cv2

    path = Path(path)
    w, h, fields = radiance_size(path)
    check_size(path, w, h)
    if "PRIMARIES" in fields:
        p = [float(v) for v in fields["PRIMARIES"].split()]
        rec709 = [0.640, 0.330, 0.300, 0.600, 0.150, 0.060, 0.3127, 0.3290]
        if len(p) != 8 or not np.allclose(p, rec709, atol=2e-3):
            raise InputError(path, f"Radiance primaries {fields['PRIMARIES']} are not Rec.709 (not supported)")
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None or bgr.shape[:2] != (h, w):
        raise InputError(path, "cannot decode Radiance HDR data (corrupt or truncated)")
    px = np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.float32)
    if not np.isfinite(px).all():
        raise InputError(path, "Radiance file holds non-finite values")
    meta = Metadata(source=path, source_format="hdr", bit_depth=32)
    if "EXPOSURE" in fields:
        meta.extra["radiance_exposure"] = fields["EXPOSURE"]
    return Image(px, Encoding("linear", "rec709", "scene"), meta)


def write_radiance(image: Image, path: str | Path) -> None:
    """Write linear Rec.709 RGB as Radiance RGBE (RLE; 8-bit mantissas with a shared exponent).

    Raises:
        OutputError: the encoder failed.
    """
    import cv2

    px = np.maximum(np.nan_to_num(image.color[..., :3], nan=0.0, posinf=0.0), 0.0).astype(np.float32)
    if px.shape[2] == 1:
        px = np.repeat(px, 3, axis=2)
    ok, buf = cv2.imencode(".hdr", np.ascontiguousarray(px[:, :, ::-1]))
    if not ok:
        raise OutputError(path, "Radiance HDR encoding failed")
    Path(path).write_bytes(buf.tobytes())
