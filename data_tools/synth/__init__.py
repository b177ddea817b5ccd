"""Physically motivated, deterministic synthetic degradations for training starters.

Every function has the signature ``fn(clean, rng, **params) -> degraded``:

* ``clean``: float32 RGB image in [0, 1], shape (H, W, 3).
* ``rng``: a :class:`numpy.random.Generator`; all randomness comes from it, so
  the same seed gives the same output bit for bit.
* ``params``: documented per function; any parameter left at ``None`` is drawn
  from ``rng`` within the documented range.
* returns float32 (H, W, 3) in [0, 1].

Modules: :mod:`.rain` (streaks + veiling), :mod:`.haze` (atmospheric
scattering), :mod:`.snow` (particle layers), :mod:`.raindrop` (refracting
drops on glass), :mod:`.reflection` (T + K*R).  :func:`weather` draws one of
rain / haze / snow / raindrop (optionally combined) for all-weather training.
:func:`lighten` turns any of them into a light degradation (issue 20: starters must leave a photo with little or
no degradation alone, so training and the do-no-harm evaluation cover the whole range).
"""

from __future__ import annotations

import numpy as np

from .haze import add_haze
from .rain import add_rain
from .raindrop import add_raindrops
from .reflection import add_reflection
from .snow import add_snow

__all__ = ["add_rain", "add_haze", "add_snow", "add_raindrops", "add_reflection", "weather", "lighten",
           "DEGRADATIONS", "WEATHER_KINDS", "WEATHER_MIX", "LIGHT_STRENGTH"]

DEGRADATIONS = {"rain": add_rain, "haze": add_haze, "snow": add_snow, "raindrop": add_raindrops}
WEATHER_KINDS = ("rain", "haze", "snow", "raindrop")
WEATHER_MIX = (0.25, 0.15, 0.2, 0.4)  # default probabilities of WEATHER_KINDS in weather()
#: Strength of the "light" degradations of the do-no-harm evaluation (``benchmarks/starter_eval.py``); training
#: draws strengths from ``data_tools.train.LIGHT_RANGE`` (``--light``).
LIGHT_STRENGTH = 0.3


def lighten(clean: np.ndarray, degraded: np.ndarray, strength: float) -> np.ndarray:
    """A lighter version of a degradation: ``clean + strength * (degraded - clean)``.

    For the additive and alpha-blended models of this package (streaks, veil, haze airlight, snow, reflection
    layer) this is the same degradation with its amplitudes scaled by ``strength`` (fainter streaks, thinner veil,
    weaker reflection); for refracting raindrops it fades the drops.

    Args:
        clean: float32 ``(H, W, 3)`` in [0, 1].
        degraded: float32 ``(H, W, 3)`` in [0, 1], a degradation of ``clean``.
        strength: 0 (the clean image) to 1 (``degraded`` unchanged).

    Returns:
        float32 ``(H, W, 3)`` in [0, 1].

    Raises:
        ValueError: shapes differ or ``strength`` outside [0, 1].
    """
    if clean.shape != degraded.shape:
        raise ValueError(f"lighten: shapes differ {clean.shape} vs {degraded.shape}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"lighten: strength {strength} outside [0, 1]")
    out = clean.astype(np.float32) + np.float32(strength) * (degraded.astype(np.float32) - clean.astype(np.float32))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def weather(clean: np.ndarray, rng: np.random.Generator, kinds=WEATHER_KINDS,
            p_combo: float = 0.2, probs=WEATHER_MIX) -> np.ndarray:
    """One random adverse-weather degradation (all-weather training, one model).

    Args:
        kinds: The degradations to draw from.
        probs: Their probabilities (raindrops, the most varied and the hardest to undo, and rain
            drawn more often);
            must have the length of ``kinds``.
        p_combo: Probability of adding light haze on top of rain or snow (rain
            and snow scenes usually carry some veiling, as in Outdoor-Rain).
    """
    p = np.asarray(probs, np.float64)
    if p.shape != (len(kinds),):
        p = np.full(len(kinds), 1.0 / len(kinds))
    kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
    out = DEGRADATIONS[kind](clean, rng)
    if kind in ("rain", "snow") and "haze" in kinds and rng.random() < p_combo:
        out = add_haze(out, rng, beta=float(rng.uniform(0.3, 0.9)))
    return out
