"""The Poisson-Gaussian noise model (issue 19): recovery on synthetic mosaics, the masked-pixel path, the pipeline
override and ``restore info``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from restore.errors import InputError
from restore.image import LINEAR_REC709, SRGB, Image, Metadata
from restore.noise import NoiseProfile, estimate_noise, masked_pixels_noise, noise_profile_for

ROOT = Path(__file__).resolve().parents[1]
DNG = ROOT / "examples" / "coffee_raw.dng"


def scene(n: int = 512) -> np.ndarray:
    """Flat patches and a smooth vertical gradient from near black to 0.9: every level from 0.002 up."""
    yy, xx = np.mgrid[0:n, 0:n] / n
    return np.where(xx < 0.5, 0.002 + 0.9 * yy, np.floor(yy * 8) / 8 * 0.8 + 0.01)


def noisy(clean: np.ndarray, a: float, b: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = (rng.poisson(clean / a) * a if a > 0 else clean) + rng.normal(0.0, np.sqrt(b), clean.shape)
    return np.minimum(z, 1.0).astype(np.float32)


@pytest.mark.parametrize("a, b", [(4e-4, 1e-6), (6.4e-3, 2.5e-4)])
def test_recovers_sigma_within_10_percent(a, b):
    p = estimate_noise(noisy(scene(), a, b), "RGGB")
    truth = NoiseProfile(a, b)
    for x in (0.1, 0.5):
        assert abs(float(p.sigma(x)) / float(truth.sigma(x)) - 1) < 0.10, (x, p)
    assert p.source == "estimated" and p.level_sets >= 10 and p.blocks > 1000
    assert 0.0 <= p.level_range[0] < p.level_range[1] < 0.95


def test_pure_gaussian_gives_no_photon_noise():
    b = 1e-5
    p = estimate_noise(noisy(scene(), 0.0, b, seed=1), "RGGB")
    assert p.a * 0.5 < 0.1 * b
    assert abs(float(p.sigma(0.5)) / np.sqrt(b) - 1) < 0.05


def test_xtrans_and_monochrome_patterns():
    z = noisy(scene(576), 1.6e-3, 1.6e-5, seed=2)
    xtrans = "GGRGGB" "GGBGGR" "BRGRBG" "GGBGGR" "GGRGGB" "RBGBRG"
    for pattern in (xtrans, "G"):
        p = estimate_noise(z, pattern)
        assert abs(float(p.sigma(0.5)) / float(NoiseProfile(1.6e-3, 1.6e-5).sigma(0.5)) - 1) < 0.10, (pattern, p)


def test_known_b_fits_a_only():
    a, b = 1.6e-3, 1.6e-5
    p = estimate_noise(noisy(scene(), a, b, seed=3), "RGGB", b=b, scale_dn=15871.0)
    assert p.b == b and p.source == "masked-pixels+estimated"
    assert abs(p.a / a - 1) < 0.05
    assert p.a_dn == pytest.approx(p.a * 15871.0) and p.b_dn == pytest.approx(b * 15871.0**2)


def test_profile_sigma_is_vectorised_float32():
    p = NoiseProfile(1e-3, -1e-6)
    x = np.linspace(0, 1, 12, dtype=np.float64).reshape(3, 4)
    s = p.sigma(x)
    assert s.shape == (3, 4) and s.dtype == np.float32
    assert s[0, 0] == 0.0  # a negative variance at black is held at 0
    np.testing.assert_allclose(s[2, 3], np.sqrt(1e-3 - 1e-6), rtol=1e-6)
    assert p.a_dn is None and "sigma" in p.summary() and "a=" in str(p)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="2-D"):
        estimate_noise(np.zeros((8, 8, 3), np.float32), "RGGB")
    with pytest.raises(ValueError, match="cfa_pattern"):
        estimate_noise(np.zeros((64, 64), np.float32), "RGB")
    with pytest.raises(ValueError, match="too small"):
        estimate_noise(np.zeros((16, 16), np.float32), "RGGB")


def _fake_raw(b_dn2: float, top: int, seed: int = 0):
    """An object with what masked_pixels_noise reads from a rawpy.RawPy: a 14-bit frame with ``top`` dark rows."""
    rng = np.random.default_rng(seed)
    full = np.clip(np.round(512 + rng.normal(0, np.sqrt(b_dn2), (top + 64, 256))), 0, 16383).astype(np.uint16)
    full[top:] = 8000  # the visible area: lit
    return SimpleNamespace(raw_image=full, white_level=16383, black_level_per_channel=[512] * 4,
                           sizes=SimpleNamespace(top_margin=top, left_margin=0, height=64, width=256))


def test_masked_pixels_give_read_noise():
    b_dn2 = 36.0  # 6 DN read noise
    b = masked_pixels_noise(_fake_raw(b_dn2, top=16))
    assert b == pytest.approx(b_dn2 / 15871.0**2, rel=0.1)
    assert masked_pixels_noise(_fake_raw(b_dn2, top=0)) is None  # no border


def test_shipped_dng_has_no_masked_area():
    import rawpy

    with rawpy.imread(str(DNG)) as raw:
        assert masked_pixels_noise(raw) is None
    p = noise_profile_for(DNG)
    assert p.source == "estimated" and p.scale_dn == 16383 - 512 and p.a >= 0


def test_pipeline_override_is_recorded_and_used():
    from pydantic import ValidationError

    from restore.pipeline import load_pipeline
    from restore.pipeline.base import Context
    from restore.pipeline.steps.develop import DevelopOptions, DevelopStage

    spec = {"version": 1, "steps": [{"develop": {"noise": {"a": 2e-3, "b": 1e-5}}}, {"write": {"path": "{stem}.exr"}}]}
    load_pipeline(spec)
    for bad in ({"a": -1e-3, "b": 0.0}, {"a": 1e-3}, {"a": 1e-3, "b": 0.0, "c": 1}):
        with pytest.raises(ValidationError):
            DevelopOptions(noise=bad)
    stage = DevelopStage(DevelopOptions(noise={"a": 2e-3, "b": 1e-5}))
    meta = Metadata(source=DNG, source_format="raw", black_level=[512.0] * 4, white_level=16383.0)
    out = stage(Image(np.zeros((4, 4, 3), np.float32), LINEAR_REC709, meta), Context())
    p = out.meta.noise_profile
    assert (p.a, p.b, p.source, p.scale_dn) == (2e-3, 1e-5, "pipeline", 15871.0)
    assert meta.noise_profile is None  # the input's metadata is left alone
    assert noise_profile_for(out) is p


def test_profile_for_image_needs_a_raw_source():
    with pytest.raises(InputError, match="raw units"):
        noise_profile_for(Image(np.zeros((4, 4, 3), np.float32), SRGB, Metadata(source_format="png")))
    img = Image(np.zeros((4, 4, 3), np.float32), LINEAR_REC709, Metadata(source=DNG, source_format="raw"))
    p = noise_profile_for(img)
    assert img.meta.noise_profile is p and p.source == "estimated"


def test_info_shows_the_noise_profile_of_raw_files():
    from restore.cli import cli

    r = CliRunner().invoke(cli, ["info", str(DNG)])
    assert r.exit_code == 0, r.output
    line = next(s for s in r.output.splitlines() if s.startswith("  noise: "))
    assert "DN" in line and "sigma at 1/10/50 % of white" in line and "(estimated" in line
    r = CliRunner().invoke(cli, ["info", "--json", str(DNG), str(ROOT / "examples" / "coffee.png")])
    dng, png = json.loads(r.output)
    assert set(dng["noise"]) >= {"a", "b", "a_dn", "b_dn2", "sigma", "source"}
    assert list(dng["noise"]["sigma"]) == ["1%", "10%", "50%"]
    # sRGB files get the RGB denoiser's wavelet sigma estimate, not a raw-unit profile
    assert set(png["noise"]) == {"sigma", "sigma_8bit"} and 0 <= png["noise"]["sigma"] < 0.1
