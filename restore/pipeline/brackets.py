"""What the bracket steps (align, merge, fuse) share: exposure times, the reference frame, display pixels."""

from __future__ import annotations

import numpy as np

from .. import color
from ..errors import RestoreError
from ..image import Encoding, Image
from .options import Reference

__all__ = ["exposure_times", "relative_exposures", "reference_index", "display_pixels"]


def exposure_times(frames: list[Image]) -> list[float]:
    """Each frame's exposure time in seconds.

    Raises:
        RestoreError: a frame without one (naming the bracket's files).
    """
    times = [f.meta.exposure_time_s for f in frames]
    if any(t is None or t <= 0 for t in times):
        names = ", ".join(str(f.meta.source.name if f.meta.source else "?") for f in frames)
        raise RestoreError(f"bracket {names}: exposure times missing (set input.exposure_times)")
    return [float(t) for t in times]


def relative_exposures(frames: list[Image], measured_if_unknown: bool = False) -> list[float]:
    """Relative exposure per frame: time x ISO gain (when every frame has an ISO).

    With ``measured_if_unknown`` and no exposure time on any frame (PNG
    exports without EXIF), each frame's mean linear luminance stands in: it
    orders one scene's frames by exposure, which is all choosing a reference
    frame needs.
    """
    if measured_if_unknown and all(f.meta.exposure_time_s is None for f in frames):
        out = []
        for f in frames:
            lin = f.color if f.encoding.transfer == "linear" else color.srgb_to_linear(np.clip(f.color, 0, 1))
            out.append(float(np.mean(lin)) + 1e-9)
        return out
    times = exposure_times(frames)
    isos = [f.meta.iso for f in frames]
    if all(isos):
        base = min(isos)
        return [t * iso / base for t, iso in zip(times, isos)]
    return times


def reference_index(frames: list[Image], ref: Reference) -> int:
    """Index of the reference frame: ``middle`` (median exposure), ``shortest``, ``longest`` or an index
    (frames without exposure times are ordered by their measured brightness)."""
    order = list(np.argsort(relative_exposures(frames, measured_if_unknown=True)))
    if isinstance(ref, int):
        if not 0 <= ref < len(frames):
            raise RestoreError(f"reference {ref} out of range for a bracket of {len(frames)}")
        return ref
    return int({"shortest": order[0], "longest": order[-1], "middle": order[len(order) // 2]}[ref])


def display_pixels(frame: Image) -> np.ndarray:
    """sRGB-encoded [0, 1] colour pixels of a frame (linear frames clipped at 1)."""
    if frame.encoding.transfer == "srgb" and frame.encoding.primaries == "rec709":
        return np.clip(frame.color, 0, 1)
    img = color.convert(frame, Encoding("linear", "rec709", frame.encoding.referred)) if frame.encoding.primaries != "rec709" else frame
    lin = img.color if img.encoding.transfer == "linear" else color.srgb_to_linear(img.color)
    return color.linear_to_srgb(np.clip(lin, 0, 1))
