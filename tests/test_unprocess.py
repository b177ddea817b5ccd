"""data_tools.unprocess (Brooks et al., CVPR 2019): round trip, Bayer layout, noise statistics, noise levels."""

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_tools import unprocess as U  # noqa: E402
from restore.noise import NoiseProfile, estimate_noise  # noqa: E402

PATTERNS = list(U.BAYER_PATTERNS)


def _smooth(h, w, period=1.0):
    """A smooth, colourful sRGB test image, float32 (h, w, 3) in [0.05, 0.95]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) * period
    return np.stack([0.5 + 0.35 * np.sin(x / 9), 0.5 + 0.35 * np.cos(y / 7),
                     0.2 + 0.6 * (x + y) / (h + w) / period], axis=-1).astype(np.float32)


# --------------------------------------------------------------------------- unprocess / process


def test_unprocess_output_and_meta():
    rgb = _smooth(16, 24)
    m, meta = U.unprocess(rgb, np.random.default_rng(0))
    m2, meta2 = U.unprocess(rgb, np.random.default_rng(0))
    assert m.shape == (16, 24) and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
    assert np.array_equal(m, m2) and meta2["red_gain"] == meta["red_gain"]
    assert meta["cfa_pattern"] == "RGGB" and meta["ccm"].shape == (3, 3)
    np.testing.assert_allclose(meta["ccm"].sum(axis=1), 1, atol=1e-6)  # grey stays grey
    assert 1.9 <= meta["red_gain"] <= 2.4 and 1.5 <= meta["blue_gain"] <= 1.9 and 1 / 1.2 <= meta["rgb_gain"] <= 2.5
    drawn = {U.unprocess(rgb, np.random.default_rng(s), None)[1]["cfa_pattern"] for s in range(40)}
    assert drawn == set(PATTERNS)


def test_round_trip_flat_colours_is_exact():
    """Flat fields (bilinear demosaic exact there): the colour path inverts to float32 precision.

    Measured: max abs error 3.3e-7 over 2000 random colours in [0, 1]^3, cameras and patterns.
    """
    rng = np.random.default_rng(0)
    for _ in range(200):
        c = rng.uniform(0, 1, 3).astype(np.float32)
        img = np.broadcast_to(c, (4, 4, 3)).copy()
        m, meta = U.unprocess(img, rng, None)
        np.testing.assert_allclose(U.process(m, meta), img, atol=1e-5)
    white = np.ones((4, 4, 3), np.float32)  # highlights kept from dimming come back white
    m, meta = U.unprocess(white, rng)
    np.testing.assert_allclose(U.process(m, meta), white, atol=1e-5)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_round_trip_smooth_image(pattern):
    """Measured on this image, seeds 0-5: inner max abs error 0.0066, border max 0.043 (one-sided bilinear
    demosaic at the edge), mean 0.0010."""
    rgb = _smooth(64, 96)
    for seed in range(3):
        m, meta = U.unprocess(rgb, np.random.default_rng(seed), pattern)
        out = U.process(m, meta)
        packed = U.process(U.pack_bayer(m, pattern), meta)
        assert out.shape == rgb.shape and out.dtype == np.float32
        assert np.array_equal(out, packed)
        err = np.abs(out - rgb)
        assert err[2:-2, 2:-2].max() < 0.01
        assert err.max() < 0.06 and err.mean() < 0.002


# --------------------------------------------------------------------------- Bayer layout


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pack_unpack_exact(pattern):
    m = np.random.default_rng(1).standard_normal((6, 10)).astype(np.float32)
    p = U.pack_bayer(m, pattern)
    assert p.shape == (4, 3, 5) and p.dtype == np.float32
    assert np.array_equal(U.unpack_bayer(p, pattern), m)
    assert np.array_equal(U.pack_bayer(U.unpack_bayer(p, pattern), pattern), p)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_packed_planes_are_r_g1_g2_b_and_phases_are_crops(pattern):
    rgb = np.random.default_rng(2).uniform(0, 1, (8, 12, 3)).astype(np.float32)
    p = U.pack_bayer(U.mosaic(rgb, pattern), pattern)
    r0, c0 = {"RGGB": (0, 0), "GRBG": (0, 1), "GBRG": (1, 0), "BGGR": (1, 1)}[pattern]
    assert np.array_equal(p[0], rgb[r0::2, c0::2, 0])  # red
    assert np.array_equal(p[1], rgb[r0::2, 1 - c0::2, 1])  # green in red's row
    assert np.array_equal(p[2], rgb[1 - r0::2, c0::2, 1])  # green in blue's row
    assert np.array_equal(p[3], rgb[1 - r0::2, 1 - c0::2, 2])  # blue
    # the other phases are the RGGB mosaic of a one-row / one-column crop
    crop = (slice(r0, 8 - r0 if r0 else 8), slice(c0, 12 - c0 if c0 else 12))
    assert np.array_equal(U.mosaic(rgb, pattern)[crop], U.mosaic(rgb[crop], "RGGB"))


def test_layout_errors():
    with pytest.raises(ValueError, match="even"):
        U.pack_bayer(np.zeros((5, 4)), "RGGB")
    with pytest.raises(ValueError, match="cfa_pattern"):
        U.pack_bayer(np.zeros((4, 4)), "RGBG")
    with pytest.raises(ValueError, match=r"\(4, h, w\)"):
        U.unpack_bayer(np.zeros((3, 2, 2)), "RGGB")
    with pytest.raises(ValueError, match="RGB"):
        U.unprocess(np.zeros((4, 4)), np.random.default_rng(0))


# --------------------------------------------------------------------------- noise


@pytest.mark.parametrize("iso", [3200, 12800, 51200])
def test_add_noise_variance_on_flat_fields(iso):
    a, b = U.iso_levels()[iso]
    rng = np.random.default_rng(iso)
    for x in (0.05, 0.3, 0.7):
        z = U.add_noise(np.full((256, 256), x, np.float32), a, b, rng)
        assert z.dtype == np.float32
        assert abs(z.var(dtype=np.float64) / (a * x + b) - 1) < 0.05
        assert abs(z.mean(dtype=np.float64) - x) < 4 * np.sqrt((a * x + b) / z.size)


def test_add_noise_clips_white_only():
    a, b = U.iso_levels()[51200]
    rng = np.random.default_rng(0)
    z = U.add_noise(np.full((64, 64), 0.99, np.float32), a, b, rng)
    assert z.max() == 1.0
    dark = U.add_noise(np.zeros((64, 64), np.float32), a, b, rng)
    assert dark.min() < 0  # below black kept
    assert np.array_equal(U.add_noise(np.full((4, 4), 0.5, np.float32), 0.0, 0.0, rng), np.full((4, 4), 0.5))
    with pytest.raises(ValueError):
        U.add_noise(np.zeros((2, 2)), -1e-3, 0.0, rng)


def test_sample_noise_level_covers_paper_range():
    rng = np.random.default_rng(0)
    ab = np.array([U.sample_noise_level(rng) for _ in range(5000)])
    la, lb = np.log(ab[:, 0]), np.log(ab[:, 1])
    lo, hi = np.log(1e-4), np.log(0.012)
    assert lo <= la.min() < lo + 0.02 * (hi - lo) and hi - 0.02 * (hi - lo) < la.max() <= hi
    assert abs(np.mean(la) - (lo + hi) / 2) < 0.05 and abs(np.std(la) / ((hi - lo) / np.sqrt(12)) - 1) < 0.05
    resid = lb - (2.18 * la + 1.20)
    assert abs(resid.mean()) < 0.02 and abs(resid.std() / 0.26 - 1) < 0.05


def test_iso_levels_are_the_benchmarks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_ne", ROOT / "benchmarks" / "noise_estimation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    levels = U.iso_levels()
    assert list(levels) == [800, 3200, 12800, 51200]
    assert [(a, b) for a, b in levels.values()] == [(a, b) for lab, a, b in mod.LEVELS if lab.startswith("ISO")]


def test_sigma_map():
    a, b = 4e-3, 1e-4
    x = np.random.default_rng(0).uniform(-0.05, 1, (4, 5, 6)).astype(np.float32)
    s = U.sigma_map(x, a, b)
    assert s.shape == (4, 5, 6) and s.dtype == np.float32
    np.testing.assert_allclose(s, NoiseProfile(a, b).sigma(np.maximum(x, 0)), rtol=1e-6)
    one = U.sigma_map(x, a, b, channels=1)
    assert one.shape == (1, 5, 6)
    np.testing.assert_allclose(one[0], np.sqrt(a * np.maximum(x.mean(0), 0) + b), rtol=1e-6)
    assert U.sigma_map(x[0], a, b).shape == (1, 5, 6)
    with pytest.raises(ValueError):
        U.sigma_map(x[:3], a, b)


def _chelsea_2x():
    bgr = cv2.imread(str(ROOT / "examples" / "chelsea.png"), cv2.IMREAD_COLOR)
    rgb = bgr[..., ::-1].astype(np.float32) / 255
    return np.clip(cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC), 0, 1)


@pytest.mark.parametrize("iso", [12800, 51200])
@pytest.mark.parametrize("source", ["smooth", "chelsea"])
def test_estimate_noise_recovers_sigma_on_unprocessed(iso, source):
    """Measured (seeds 0-3): |rel. err. of sigma(0.5)| <= 2.4 % (smooth 256^2), <= 5.1 % (chelsea 2x)."""
    a, b = U.iso_levels()[iso]
    rgb = _smooth(256, 256, period=0.2) if source == "smooth" else _chelsea_2x()
    rng = np.random.default_rng(iso)
    m, meta = U.unprocess(rgb, rng, None)
    p = estimate_noise(U.add_noise(m, a, b, rng), meta["cfa_pattern"])
    truth = float(NoiseProfile(a, b).sigma(0.5))
    assert abs(float(p.sigma(0.5)) / truth - 1) < 0.15
