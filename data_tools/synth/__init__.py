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
"""

from __future__ import annotations

import numpy as np

from .haze import add_haze
from .rain import add_rain
from .raindrop import add_raindrops
from .reflection import add_reflection
from .snow import add_snow

__all__ = ["add_rain", "add_haze", "add_snow", "add_raindrops", "add_reflection", "weather", "DEGRADATIONS",
           "WEATHER_KINDS", "WEATHER_MIX"]

DEGRADATIONS = {"rain": add_rain, "haze": add_haze, "snow": add_snow, "raindrop": add_raindrops}
WEATHER_KINDS = ("rain", "haze", "snow", "raindrop")
WEATHER_MIX = (0.25, 0.15, 0.2, 0.4)  # default probabilities of WEATHER_KINDS in weather()


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
