"""data_tools.synth: deterministic, in range, and each degradation degrades as its physics says."""

import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_tools import baselines, synth  # noqa: E402
from restore.metrics import psnr  # noqa: E402


@pytest.fixture(scope="module")
def clean():
    return (skimage.data.astronaut()[100:228, 150:310].astype(np.float32) / 255.0).copy()


@pytest.fixture(scope="module")
def other():
    return (skimage.data.coffee()[:128, :160].astype(np.float32) / 255.0).copy()


def _fn(name, other):
    if name == "reflection":
        return lambda img, rng, **kw: synth.add_reflection(img, rng, reflection=other, **kw)
    return {"rain": synth.add_rain, "haze": synth.add_haze, "snow": synth.add_snow,
            "raindrop": synth.add_raindrops, "weather": synth.weather}[name]


NAMES = ["rain", "haze", "snow", "raindrop", "reflection", "weather"]


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_per_seed_and_in_range(name, clean, other):
    fn = _fn(name, other)
    a = fn(clean, np.random.default_rng(3))
    b = fn(clean, np.random.default_rng(3))
    c = fn(clean, np.random.default_rng(4))
    assert a.dtype == np.float32 and a.shape == clean.shape
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 1.0 and np.isfinite(a).all()


@pytest.mark.parametrize("name,bound", [("rain", 25), ("haze", 22), ("snow", 30), ("raindrop", 33), ("reflection", 28)])
def test_degrades(name, bound, clean, other):
    vals = [psnr(_fn(name, other)(clean, np.random.default_rng(s)), clean, y_channel=False) for s in range(4)]
    assert np.mean(vals) < bound, vals
    assert min(vals) > 5, vals  # the scene stays recognisable


def test_input_not_modified(clean, other):
    ref = clean.copy()
    for name in NAMES:
        _fn(name, other)(clean, np.random.default_rng(0))
    assert np.array_equal(clean, ref)


def test_rejects_non_rgb(clean):
    with pytest.raises(ValueError):
        synth.add_rain(clean[..., 0], np.random.default_rng(0))


def test_haze_raises_dark_channel_and_lowers_contrast(clean):
    hazy = synth.add_haze(clean, np.random.default_rng(0), beta=1.5, airlight=0.9)
    assert baselines.dark_channel(hazy).mean() > baselines.dark_channel(clean).mean() + 0.1
    assert hazy.std() < clean.std()
    # farther (top) rows are hazier than near (bottom) rows with the vertical depth proxy
    flat = np.full((64, 64, 3), 0.2, np.float32)
    fog = synth.add_haze(flat, np.random.default_rng(0), beta=1.5, airlight=0.9, tint=0.0, w_lum=0.0)
    rows = fog.mean(axis=(1, 2))
    assert rows[0] > rows[-1] + 0.1 and np.all(np.diff(rows) <= 1e-6)


def test_rain_adds_bright_oriented_streaks():
    flat = np.full((128, 128, 3), 0.3, np.float32)
    rainy = synth.add_rain(flat, np.random.default_rng(0), layers=1, angle=0.0, length=40, width=1,
                           density=0.005, brightness=1.0, veil=0.0, blend="add")
    d = rainy.mean(axis=2) - 0.3
    assert d.min() >= -1e-6 and d.max() > 0.3  # only brightens
    gy = np.abs(np.diff(d, axis=0)).mean()  # along vertical streaks: smooth
    gx = np.abs(np.diff(d, axis=1)).mean()  # across them: edges
    assert gx > 2 * gy
    tilted = synth.add_rain(flat, np.random.default_rng(0), layers=1, angle=90.0, length=40, width=1,
                            density=0.005, brightness=1.0, veil=0.0, blend="add").mean(axis=2) - 0.3
    assert np.abs(np.diff(tilted, axis=0)).mean() > 2 * np.abs(np.diff(tilted, axis=1)).mean()


def test_snow_brightens_with_particles():
    dark = np.full((96, 96, 3), 0.1, np.float32)
    snowy = synth.add_snow(dark, np.random.default_rng(0), veil=0.0)
    assert snowy.mean() > dark.mean() + 0.01
    assert (snowy.mean(axis=2) > 0.5).mean() > 0.005  # bright particles


def test_raindrops_are_local_blurred_blobs(clean):
    out = synth.add_raindrops(clean, np.random.default_rng(1), count=3.0, background_blur=0.0, veil=0.0,
                              radius=(4, 12))
    changed = np.abs(out - clean).max(axis=2) > 0.02
    assert 0.02 < changed.mean() < 0.9  # local blobs, not a global change
    # inside the drops the content is smoother (defocused refraction)
    lap = np.abs(np.diff(out, axis=1)).max(axis=2)
    lap_c = np.abs(np.diff(clean, axis=1)).max(axis=2)
    m = changed[:, 1:]
    assert lap[m].mean() < lap_c[m].mean()


def test_reflection_is_transmission_plus_blurred_second_image(clean, other):
    out = synth.add_reflection(clean, np.random.default_rng(0), reflection=other, sigma=3.0, beta=0.4,
                               ghost=False, transmission=1.0)
    resid = out - clean
    # the residual correlates with the (blurred) reflection image, not with the transmission
    r = other.mean(axis=2).ravel()
    assert np.corrcoef(resid.mean(axis=2).ravel(), r)[0, 1] > 0.5
    # and is smooth: much less high-frequency energy than the reflection image itself
    assert np.abs(np.diff(resid, axis=1)).mean() < 0.5 * 0.4 * np.abs(np.diff(other, axis=1)).mean()


def test_weather_draws_every_kind(clean, weather_kinds_seen):
    seen = weather_kinds_seen
    small = clean[:48, :48]
    for s in range(40):
        out = synth.weather(small, np.random.default_rng(s))
        assert out.shape == small.shape
    assert set(seen) == {"rain", "haze", "snow", "raindrop"}
