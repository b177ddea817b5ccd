"""Tone mapping operators (restore.hdr.tonemap): range, monotonicity, exposure
invariance, dynamic-range handling, closed forms, OpenCV edge cases, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from restore.color import linear_to_srgb
from restore.hdr.tonemap import OPERATORS, luminance, tonemap
from tests.golden import shared_path

GLOBAL_OPS = ("reinhard", "drago", "aces")
LOCAL_OPS = ("reinhard-local", "mantiuk")
KEY_NORMALISED = ("reinhard", "reinhard-local", "drago", "mantiuk")


def _grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(values, np.float32)[..., None], 3, axis=-1)


def _hdr_scene(rng, h=12, w=16, decades=6):
    """Log-uniform coloured radiance over `decades` decades (1e-3 ...)."""
    lum = 10.0 ** rng.uniform(-3, -3 + decades, (h, w))
    tint = rng.uniform(0.3, 1.0, (h, w, 3))
    return (lum[..., None] * tint).astype(np.float32)


def _aces(x):
    return x * (2.51 * x + 0.03) / (x * (2.43 * x + 0.59) + 0.14)


def test_operators_listed():
    assert OPERATORS == ("reinhard", "reinhard-local", "drago", "mantiuk", "aces")


def test_luminance_rec709():
    rgb = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [2, 2, 2]]], np.float32)
    y = luminance(rgb)
    assert y.shape == (1, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y[0], [0.2126, 0.7152, 0.0722, 2.0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        luminance(np.zeros((4, 4), np.float32))


@pytest.mark.parametrize("op", OPERATORS)
def test_range_shape_finite(op, rng):
    x = _hdr_scene(rng)
    y = tonemap(x, op)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all()
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert y.max() > 0.5 and y.min() < 0.05


@pytest.mark.parametrize("op", OPERATORS)
def test_nan_inf_negative_handling(op, rng):
    x = _hdr_scene(rng)
    bad = x.copy()
    bad[0, 0] = np.nan
    bad[0, 1] = np.inf
    bad[0, 2] = -np.inf
    bad[0, 3] = -5.0
    bad[1, 0, 1] = np.nan
    y = tonemap(bad, op)
    assert np.isfinite(y).all() and y.min() >= 0.0 and y.max() <= 1.0
    # Documented meaning: NaN, -inf, negatives -> 0; +inf -> the largest finite value.
    same = x.copy()
    same[0, 0] = 0.0
    same[0, 1] = x.max()
    same[0, 2] = 0.0
    same[0, 3] = 0.0
    same[1, 0, 1] = 0.0
    np.testing.assert_array_equal(y, tonemap(same, op))
    if op in GLOBAL_OPS:
        assert not y[0, 0].any() and not y[0, 3].any()


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 5, 3), (5, 1, 3)])
def test_tiny_images(op, shape):
    x = np.arange(1, 1 + math.prod(shape), dtype=np.float32).reshape(shape)
    y = tonemap(x, op)
    assert y.shape == shape and np.isfinite(y).all() and 0 <= y.min() and y.max() <= 1


@pytest.mark.parametrize("op", OPERATORS)
def test_black_image_is_black(op):
    assert not tonemap(np.zeros((4, 5, 3), np.float32), op).any()


@pytest.mark.parametrize("op", GLOBAL_OPS)
def test_global_monotone(op, rng):
    """A brighter grey pixel never maps darker, wherever it is in the image."""
    v = (10.0 ** rng.uniform(-3, 3, 16 * 16)).astype(np.float32)
    y = tonemap(_grey(v.reshape(16, 16)), op)[..., 1].ravel()
    order = np.argsort(v, kind="stable")
    assert np.all(np.diff(y[order]) >= 0)
    assert y[order][-1] - y[order][0] > 0.3


@pytest.mark.parametrize("op", OPERATORS)
def test_monotone_on_smooth_ramp(op):
    # A smooth log ramp (100:1 over 64 px): no halo may reverse the ordering.
    ramp = np.tile(np.geomspace(0.1, 10.0, 64, dtype=np.float32), (8, 1))
    y = tonemap(_grey(ramp), op)[..., 1]
    tol = 0.0 if op in GLOBAL_OPS else 1e-5
    assert np.all(np.diff(y, axis=1) >= -tol)
    assert np.all(y[:, -1] - y[:, 0] > 0.2)


@pytest.mark.parametrize("op", KEY_NORMALISED)
def test_exposure_invariance(op, rng):
    x = _hdr_scene(rng, decades=4)
    np.testing.assert_allclose(tonemap(100.0 * x, op), tonemap(x, op), atol=1e-3)


def test_aces_is_not_key_normalised_but_exposure_param_matches(rng):
    x = _hdr_scene(rng, decades=3)
    assert np.abs(tonemap(100.0 * x, "aces") - tonemap(x, "aces")).max() > 0.1
    np.testing.assert_allclose(tonemap(100.0 * x, "aces"), tonemap(x, "aces", exposure=math.log2(100.0)), atol=1e-6)


# Two bands: a dark ramp and a bright ramp, each a decade; (lo, hi) gives the overall range.
# Mantiuk: OpenCV floors the luminance at 1e-4 of the peak before its log, so 1e5 would
# flatten the dark band; ACES is a fixed curve with a ~10 stop useful range.
DR_CASES = [
    ("reinhard", {}, 1e5),
    ("reinhard-local", {}, 1e5),
    ("drago", {}, 1e5),
    ("mantiuk", {}, 1e4),
    ("aces", {"exposure": -2.0}, 1e3),
]


@pytest.mark.parametrize("op,params,dr", DR_CASES)
def test_detail_in_shadows_and_highlights(op, params, dr):
    w = 32
    x = np.zeros((16, w), np.float32)
    x[:8] = np.geomspace(0.01, 0.1, w)  # dark ramp
    x[8:] = np.geomspace(0.01 * dr / 10, 0.01 * dr, w)  # bright ramp; total range = dr
    enc = linear_to_srgb(tonemap(_grey(x), op, **params))[..., 1]
    dark, bright = enc[4], enc[12]
    # Both ramps keep at least two 8-bit code values of gradation, neither is crushed/clipped.
    assert dark[-1] - dark[0] >= 2 / 255, dark
    assert bright[-1] - bright[0] >= 2 / 255, bright
    if op in GLOBAL_OPS:
        assert np.all(np.diff(dark) > 0) and np.all(np.diff(bright) > 0)


def test_naive_mappings_would_fail_detail_test():
    # Guards the thresholds above: divide-by-max crushes shadows, clipping kills highlights.
    dark = np.geomspace(0.01, 0.1, 32) / 1000.0
    assert linear_to_srgb(dark)[-1] - linear_to_srgb(dark)[0] < 2 / 255


def test_aces_closed_form():
    v = np.array([0.0, 0.01, 0.18, 0.5, 1.0, 4.0, 1e4], np.float32)
    y = tonemap(_grey(v[None, :]), "aces")[0, :, 0]
    np.testing.assert_allclose(y, np.clip(_aces(v.astype(np.float64)), 0, 1), rtol=1e-5, atol=1e-7)
    y2 = tonemap(_grey(v[None, :]), "aces", exposure=1.0)[0, :, 0]
    np.testing.assert_allclose(y2, np.clip(_aces(2.0 * v.astype(np.float64)), 0, 1), rtol=1e-5, atol=1e-7)
    assert y[-1] == 1.0  # shoulder 2.51/2.43 > 1 is clipped
    assert tonemap(np.full((1, 1, 3), 3e38, np.float32), "aces", exposure=64).min() == 1.0


def test_reinhard_closed_form():
    v = np.array([[0.05, 0.5, 2.0, 20.0]], np.float32)
    lbar = math.exp(np.mean(np.log(v.astype(np.float64) + 1e-6 * 20.0)))
    scaled = 0.18 / lbar * v.astype(np.float64)
    white = scaled.max()
    expect = scaled * (1 + scaled / white**2) / (1 + scaled)
    y = tonemap(_grey(v), "reinhard")[..., 0]
    np.testing.assert_allclose(y, expect, rtol=1e-5)
    assert y.max() == pytest.approx(1.0)  # L_white = max maps to 1
    # A larger white point keeps the maximum below 1; key scales mid-tones.
    assert tonemap(_grey(v), "reinhard", white=1e3).max() < 0.95
    assert tonemap(_grey(v), "reinhard", key=0.36)[0, 1, 0] > y[0, 1]


def test_reinhard_preserves_colour_ratios():
    x = np.array([[[0.2, 0.1, 0.05], [2.0, 1.0, 0.5], [0.02, 0.04, 0.08]]], np.float32)
    y = tonemap(x, "reinhard")
    np.testing.assert_allclose(y[0, 0] / y[0, 0, 1], x[0, 0] / x[0, 0, 1], rtol=1e-5)
    np.testing.assert_allclose(y[0, 2] / y[0, 2, 1], x[0, 2] / x[0, 2, 1], rtol=1e-5)
    grey = tonemap(x, "reinhard", saturation=0.0)
    np.testing.assert_allclose(grey[..., 0], grey[..., 2], rtol=1e-6)


def test_reinhard_local_uniform_is_key_over_one_plus_key():
    # In a uniform region V1 = L = key, so L_d = key / (1 + key) (paper eq. 9).
    y = tonemap(np.full((16, 16, 3), 7.0, np.float32), "reinhard-local")
    np.testing.assert_allclose(y, 0.18 / 1.18, rtol=1e-5)


def test_reinhard_local_keeps_local_contrast():
    # Dodging and burning: a faint texture on a bright background keeps its relative
    # contrast (V1 ~ local mean, L_d = L / (1 + V1) is ~linear in L there), where the global
    # curve L / (1 + L) compresses it.
    yy, xx = np.mgrid[0:48, 0:96].astype(np.float32)
    base = np.where(xx < 48, 0.1, 10.0)
    x = base * (1 + 0.03 * np.sin(2 * np.pi * xx / 8) * np.sin(2 * np.pi * yy / 8))
    bright = (slice(12, 36), slice(60, 84))
    rel_in = x[bright].std() / x[bright].mean()
    loc = tonemap(_grey(x), "reinhard-local")[..., 1][bright]
    glob = tonemap(_grey(x), "reinhard")[..., 1][bright]
    rel_loc, rel_glob = loc.std() / loc.mean(), glob.std() / glob.mean()
    assert rel_loc > 0.9 * rel_in
    assert rel_loc > 1.3 * rel_glob
    assert loc.mean() < glob.mean()  # the bright half is "burned" down


@pytest.mark.parametrize("op", ["drago", "mantiuk"])
def test_opencv_grey_minimum_pixel_repaired(op):
    # OpenCV divides by grey after min-max normalisation: a neutral pixel at the image
    # minimum is 0/0 = NaN there, and a NaN first pixel poisons its final normalisation.
    ramp = np.geomspace(1.0, 1e3, 32, dtype=np.float32)
    x = _grey(np.tile(ramp, (4, 1)))
    y = tonemap(x, op)  # minimum (1.0, neutral) at the first pixel
    assert np.isfinite(y).all()
    assert y.max() == pytest.approx(1.0) and y.min() == 0.0
    assert (y[0, 0] == y[0, 0, 0]).all()  # stays neutral
    assert np.all(np.diff(y[0, :, 1]) >= -1e-5)
    x[0, 0] = 0.0  # exactly black first pixel
    x[2, 5] = 0.0
    y = tonemap(x, op)
    assert np.isfinite(y).all()
    assert y.max() == pytest.approx(1.0) and y.min() == 0.0
    assert np.all(np.diff(y[1, :, 1]) >= -1e-5) and y[1, -1, 1] - y[1, 0, 1] > 0.5


@pytest.mark.parametrize("op", ["drago", "mantiuk"])
def test_opencv_ops_parameters_have_effect(op, rng):
    x = _hdr_scene(rng)
    base = tonemap(x, op)
    other = tonemap(x, op, bias=0.7) if op == "drago" else tonemap(x, op, scale=0.4)
    assert np.abs(other - base).max() > 1e-3
    grey = tonemap(x, op, saturation=0.0)
    np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=1e-6)


@pytest.mark.parametrize("op", OPERATORS)
def test_real_hdr_crop(op):
    from restore import io

    path = shared_path("data", "hdr_images", "Desk.exr")
    px = io.read(path).pixels[..., :3]
    crop = np.ascontiguousarray(px[351:447, 377:473])  # desk lamp: bulb ~230, shadows ~0.05
    y = tonemap(crop, op)
    assert y.shape == crop.shape and np.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    lum = luminance(np.maximum(crop, 0))
    dark, bright = lum < np.percentile(lum, 10), lum > np.percentile(lum, 90)
    enc = np.round(linear_to_srgb(y) * 255)
    assert enc[dark].mean() < enc[bright].mean()
    if op != "aces":  # ACES at exposure 0 clips the lamp (a fixed curve)
        assert len(np.unique(enc[dark])) >= 10 and len(np.unique(enc[bright])) >= 10
    if op in ("drago", "mantiuk"):  # OpenCV normalises the result to span [0, 1]
        assert y.max() == pytest.approx(1.0) and y.min() == pytest.approx(0.0, abs=1e-6)


def test_errors():
    x = np.ones((4, 4, 3), np.float32)
    known = "reinhard, reinhard-local, drago, mantiuk, aces"
    with pytest.raises(ValueError, match=f"unknown tone-mapping operator 'filmic'.*{known}"):
        tonemap(x, "filmic")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) gamma.*accepted: saturation, bias"):
        tonemap(x, "drago", gamma=2.2)
    for op, params in [
        ("reinhard", {"key": 0}),
        ("reinhard", {"white": -1.0}),
        ("reinhard", {"saturation": -0.5}),
        ("reinhard", {"key": "0.18"}),
        ("reinhard-local", {"eps": 0.0}),
        ("reinhard-local", {"phi": float("nan")}),
        ("drago", {"bias": 1.5}),
        ("mantiuk", {"scale": 0}),
        ("aces", {"exposure": float("inf")}),
        ("aces", {"exposure": True}),
        ("aces", {"exposure": 2000}),
    ]:
        with pytest.raises(ValueError, match=f"tonemap '{op}'"):
            tonemap(x, op, **params)
    for bad in (np.ones((4, 4), np.float32), np.ones((4, 4, 4), np.float32), np.ones((0, 4, 3), np.float32)):
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            tonemap(bad, "reinhard")
