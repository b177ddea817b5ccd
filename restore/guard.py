"""Do-no-harm guard for restoration models (issue 20): leave an image alone when the model finds little to undo.

A restoration network's residual ``r = model(x) - x`` is its own estimate of the degradation it removes (the rain
layer, the veil, the reflection).  On a photo without that degradation a well-trained network proposes a small
residual, but a small model's small residual is still an error: it smooths texture or shifts brightness a little
everywhere.  The guard measures the *evidence* ``e = mean |r|`` over the whole image (in the model's working
encoding, [0, 1]) and uses the model's output with weight

    w = clip((e - low) / (high - low), 0, 1),        output = x + w * r

so below ``low`` the input is returned unchanged, above ``high`` the model's output is used as it is, and in
between the two are mixed (like the ``blend`` option, which multiplies ``w``).  ``low`` and ``high`` are facts of
one set of weights: they are measured on clean *training* images by ``benchmarks/starter_eval.py --calibrate``
and stored in the weights' ``weights/MANIFEST`` entry as ``guard: {low: ..., high: ...}``; models without them
are never guarded.  The guard only ever moves the output towards the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Guard", "guard_weight", "apply_guard", "guard_for"]


@dataclass(frozen=True)
class Guard:
    """Thresholds of the residual evidence ``mean |model(x) - x|`` (model encoding, [0, 1] units).

    Attributes:
        low: Evidence at or below which the image is left unchanged (> 0).
        high: Evidence at or above which the model's output is used in full (> ``low``).

    Raises:
        ValueError: ``low <= 0`` or ``high <= low``, or either is not finite.
    """

    low: float
    high: float

    def __post_init__(self):
        if not (np.isfinite(self.low) and np.isfinite(self.high)) or self.low <= 0 or self.high <= self.low:
            raise ValueError(f"guard needs 0 < low < high, got low={self.low!r}, high={self.high!r}")

    @classmethod
    def from_manifest(cls, value) -> "Guard":
        """From a MANIFEST ``guard:`` mapping ``{low: float, high: float}``.

        Raises:
            ValueError: not such a mapping, or thresholds out of order.
        """
        if not isinstance(value, dict) or set(value) != {"low", "high"}:
            raise ValueError(f"guard must be a mapping {{low: ..., high: ...}}, not {value!r}")
        return cls(float(value["low"]), float(value["high"]))


def guard_weight(x: np.ndarray, y: np.ndarray, guard: Guard) -> tuple[float, float]:
    """Weight of the model output and the evidence it was computed from.

    Args:
        x: Model input, float32 ``(H, W, C)`` in [0, 1] (the model's working encoding).
        y: Model output, same shape and encoding.
        guard: The thresholds.

    Returns:
        ``(w, e)``: ``w`` in [0, 1] (0 = keep the input), ``e = mean |y - x|``.

    Raises:
        ValueError: ``x`` and ``y`` differ in shape (a model that changes size is never guarded).
    """
    if x.shape != y.shape:
        raise ValueError(f"guard: input {x.shape} and output {y.shape} differ in shape")
    e = float(np.mean(np.abs(y.astype(np.float64) - x.astype(np.float64))))
    w = (e - guard.low) / (guard.high - guard.low)
    return float(min(max(w, 0.0), 1.0)), e


def apply_guard(x: np.ndarray, y: np.ndarray, guard: Guard) -> tuple[np.ndarray, float, float]:
    """The guarded output ``x + w * (y - x)`` (what the ``model`` step returns) with its weight and evidence.

    Args and errors: as :func:`guard_weight`.

    Returns:
        ``(out, w, e)``: ``out`` float32 like ``x`` (``y`` itself when ``w`` is 1, ``x`` when 0).
    """
    w, e = guard_weight(x, y, guard)
    if w >= 1.0:
        return y, w, e
    return (x + np.float32(w) * (y - x)).astype(np.float32), w, e


def guard_for(name: str) -> Guard | None:
    """The guard of a catalogue model (its MANIFEST ``guard`` entry), or None (no entry, or a file path).

    Raises:
        ValueError: the MANIFEST entry holds an invalid ``guard``.
    """
    from .models.catalog import find

    entry = find(name)
    if entry is None or "guard" not in entry.extra:
        return None
    return Guard.from_manifest(entry.extra["guard"])
