"""Guards against decompression bombs: refuse huge images from their header, before allocating."""

from __future__ import annotations

import os

from ..errors import InputError

__all__ = ["max_pixels", "check_size"]

_DEFAULT_MAX_PIXELS = 400_000_000  # 400 MP: above any camera sensor, below a 100k x 100k bomb


def max_pixels() -> int:
    """Largest accepted image area in pixels (env ``RESTORE_MAX_PIXELS``, default 400 million)."""
    try:
        return int(os.environ.get("RESTORE_MAX_PIXELS", _DEFAULT_MAX_PIXELS))
    except ValueError:
        return _DEFAULT_MAX_PIXELS


def check_size(path, width: int, height: int) -> None:
    """Raise :class:`InputError` if a header claims a non-positive or too large size.

    Args:
        path: File named in the error.
        width, height: Size claimed by the file header, in pixels.
    """
    if width <= 0 or height <= 0:
        raise InputError(path, f"invalid image size {width}x{height} in header")
    limit = max_pixels()
    if width * height > limit:
        raise InputError(
            path,
            f"image of {width}x{height} ({width * height / 1e6:.0f} MP) exceeds the limit of "
            f"{limit / 1e6:.0f} MP (set RESTORE_MAX_PIXELS to raise it); refused before decoding",
        )
