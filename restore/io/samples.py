"""Sample helpers shared by the readers and writers: EXIF/TIFF orientation, quantisation to 8/16 bit."""

from __future__ import annotations

import numpy as np

from ..errors import OutputError

__all__ = ["apply_orientation", "quantize"]


def apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Turn pixels stored with EXIF/TIFF ``Orientation`` 1-8 upright (2-8 flip/rotate; others unchanged)."""
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: np.swapaxes(x, 0, 1),
        6: lambda x: np.swapaxes(x, 0, 1)[:, ::-1],
        7: lambda x: np.swapaxes(x, 0, 1)[::-1, ::-1],
        8: lambda x: np.swapaxes(x, 0, 1)[::-1],
    }
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a



def quantize(px: np.ndarray, bit_depth: int) -> np.ndarray:
    """[0, 1] floats (NaN as 0, clipped) to uint8 / uint16 codes, rounded half up.

    Raises:
        OutputError: a bit depth other than 8 or 16.
    """
    if bit_depth not in (8, 16):
        raise OutputError(None, f"bit depth must be 8 or 16, got {bit_depth}")
    maxv = 255 if bit_depth == 8 else 65535
    q = np.floor(np.clip(np.nan_to_num(px, nan=0.0), 0.0, 1.0) * maxv + 0.5)
    return q.astype(np.uint8 if bit_depth == 8 else np.uint16)
