import numpy as np
import pytest

from restore import color
from restore.image import LINEAR_REC709, SRGB, Encoding, Image


def test_srgb_round_trip_and_known_values():
    x = np.linspace(-0.5, 4, 1001, dtype=np.float32)
    assert np.allclose(color.srgb_to_linear(color.linear_to_srgb(x)), x, atol=1e-5)
    assert color.linear_to_srgb(np.float32(0.18)) == pytest.approx(0.4613, abs=1e-3)
    assert color.srgb_to_linear(np.float32(0.5)) == pytest.approx(0.2140, abs=1e-3)


def test_rec709_to_xyz_matches_standard_matrix():
    m = color.primaries_matrix("rec709", "xyz")
    assert np.allclose(m[1], [0.2126, 0.7152, 0.0722], atol=1e-3)  # BT.709 luma row
    back = color.primaries_matrix("xyz", "rec709") @ m
    assert np.allclose(back, np.eye(3), atol=1e-9)


def test_white_maps_to_white_across_white_points():
    # Bradford adaptation: ACES white in AP0 maps to D65 white in Rec.709
    m = color.primaries_matrix("ap0", "rec709")
    assert np.allclose(m @ np.ones(3), np.ones(3), atol=1e-3)


def test_hdr_encoding_is_reversible_above_one():
    x = np.array([0, 0.01, 0.5, 1, 7.5, 100, 1000], np.float32)
    y = color.hdr_encode(x, peak=1000)
    assert y.max() == pytest.approx(1) and y.min() == 0 and np.all(np.diff(y) > 0)
    assert np.allclose(color.hdr_decode(y, peak=1000), x, rtol=1e-4, atol=1e-6)
    # an encoding error of 0.002 is a bounded error relative to max(x, k): relative above k, absolute below
    err = np.abs(color.hdr_decode(y[1:] + 0.002, 1000) - x[1:])
    assert np.all(err < 0.05 * np.maximum(x[1:], color.HDR_LOG_K))


def test_convert_refuses_silent_tone_mapping():
    img = Image(np.full((2, 2, 3), 5.0, np.float32), LINEAR_REC709)
    with pytest.raises(ValueError, match="tone-mapping"):
        color.convert(img, SRGB)


def test_convert_keeps_alpha_and_changes_primaries():
    px = np.random.default_rng(1).random((3, 4, 4)).astype(np.float32)
    img = Image(px, Encoding("linear", "rec709", "scene"))
    out = color.convert(img, Encoding("linear", "rec2020", "scene"))
    assert np.array_equal(out.pixels[..., 3], px[..., 3])
    back = color.convert(out, img.encoding)
    assert np.allclose(back.pixels, px, atol=1e-5)


def test_exposure_needs_linear():
    img = Image(np.full((1, 1, 3), 0.25, np.float32), LINEAR_REC709)
    assert color.apply_exposure(img, 2).pixels[0, 0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        color.apply_exposure(Image(np.zeros((1, 1, 3), np.float32), SRGB), 1)


def test_exposure_encoding_shows_hdr_as_an_exposed_srgb_photo_and_keeps_highlights():
    """hdr: exposure (issue 20): an LDR photo brightened x4 reaches the model as (nearly) the same sRGB photo; the
    model's change comes back scaled to radiance; clipped highlights keep their values whatever the model does."""
    rng = np.random.default_rng(0)
    ldr = color.srgb_to_linear(rng.random((40, 50, 3)).astype(np.float32))
    ex = color.ExposureEncoding(ldr * 4)
    p = float(np.percentile(ldr.max(axis=-1), 99.5))  # below 1: exposure_scale(ldr) itself would be 1
    assert ex.scale == pytest.approx(4 * p, rel=1e-5)  # the percentile scales with the image
    seen = color.linear_to_srgb(np.clip(ldr / p, 0, 1))
    assert np.abs(ex.encoded - seen).max() < 1e-5
    assert float(np.mean(np.max(ldr * 4, axis=-1) >= ex.scale)) == pytest.approx(0.005, abs=0.002)
    np.testing.assert_allclose(ex.decode(ex.encoded), ldr * 4, atol=1e-6)  # no change: the input back
    y = np.clip(ex.encoded - 0.05, 0, 1)  # the model darkens everything
    out = ex.decode(y)
    hdr, ly = ldr * 4, color.srgb_to_linear(y)
    clipped = hdr >= ex.scale  # channels at or above white: darkened in proportion, not by the residual
    assert clipped.any() and (~clipped).any()
    np.testing.assert_allclose(out[clipped], hdr[clipped] * ly[clipped], rtol=1e-5)
    want = hdr + ex.scale * (ly - color.srgb_to_linear(ex.encoded))
    np.testing.assert_allclose(out[~clipped], np.maximum(want[~clipped], 0), atol=1e-5)
    assert np.all(out >= 0)
    # a highlight the model leaves white keeps its radiance (not clipped to the scale)
    white = ex.encoded.copy()
    np.testing.assert_array_equal(ex.decode(white)[clipped], hdr[clipped])
    # an image within [0, 1] is not darkened: the scale is at least 1
    assert color.ExposureEncoding(ldr * 0.5).scale == 1.0
