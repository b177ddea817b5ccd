"""Mertens exposure fusion (restore.hdr.fusion)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from restore.color import linear_to_srgb
from restore.hdr.fusion import fuse_mertens

H, W = 32, 128


def _bracket():
    """A scene with a dark left half (0.02) and a bright right half (2.0), both textured,
    shot at 0.1x (right half well exposed, left nearly black) and 16x (left well exposed,
    right clipped to white); returned sRGB-encoded in [0, 1]."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    tex = 1 + 0.3 * np.sin(xx / 2.0) * np.sin(yy / 2.0)
    rad = np.where(xx < W // 2, 0.02, 2.0).astype(np.float32) * tex
    rad = np.stack([rad, 0.8 * rad, 0.6 * rad], axis=-1)
    dark = np.clip(linear_to_srgb(np.clip(0.1 * rad, 0, 1)), 0, 1)
    bright = np.clip(linear_to_srgb(np.clip(16 * rad, 0, 1)), 0, 1)
    return dark.astype(np.float32), bright.astype(np.float32)


LEFT = (slice(8, 24), slice(8, W // 2 - 8))
RIGHT = (slice(8, 24), slice(W // 2 + 8, W - 8))


def _highpass(a):
    return a - cv2.GaussianBlur(a, (0, 0), 2.0)


def test_regions_come_from_the_well_exposed_frame():
    dark, bright = _bracket()
    assert bright[RIGHT].min() > 0.999 and dark[LEFT].max() < 0.05  # the premise
    f = fuse_mertens([dark, bright])
    assert f.shape == dark.shape and f.dtype == np.float32
    assert np.isfinite(f).all() and f.min() >= 0 and f.max() <= 1

    def mae(a, b):
        return float(np.abs(a - b).mean())

    # Dark region: taken from the bright frame (values and texture), not the near-black one.
    # (The pyramid blends the lowest frequencies across regions, so values are close, not equal.)
    assert mae(f[LEFT], bright[LEFT]) < 0.3 * mae(f[LEFT], dark[LEFT])
    assert mae(f[LEFT], bright[LEFT]) < 0.12
    hp_f, hp_b = _highpass(f)[LEFT], _highpass(bright)[LEFT]
    assert np.abs(hp_f - hp_b).mean() < 0.25 * np.abs(hp_b).mean()

    # Bright region: from the dark frame, not the clipped white of the bright one.
    assert mae(f[RIGHT], dark[RIGHT]) < 0.3 * mae(f[RIGHT], bright[RIGHT])
    assert mae(f[RIGHT], dark[RIGHT]) < 0.12
    hp_f, hp_d = _highpass(f)[RIGHT], _highpass(dark)[RIGHT]
    assert np.abs(hp_f - hp_d).mean() < 0.25 * np.abs(hp_d).mean()
    assert np.corrcoef(hp_f[..., 1].ravel(), hp_d[..., 1].ravel())[0, 1] > 0.95


def test_identical_frames_reproduce_the_frame(photo):
    f = fuse_mertens([photo, photo, photo])
    np.testing.assert_allclose(f, photo, atol=1e-4)


def test_float_and_uint8_inputs_agree():
    dark, bright = _bracket()
    q = [np.round(a * 255).astype(np.uint8) for a in (dark, bright)]
    as_float = [a.astype(np.float32) / 255 for a in q]
    ours = fuse_mertens(as_float)
    # OpenCV's own result on the 8-bit frames, same weights (its default exposure weight is 0).
    ref = np.clip(cv2.createMergeMertens(1.0, 1.0, 1.0).process(q), 0, 1)
    assert np.abs(ours - ref).max() <= 1 / 255
    assert np.abs(fuse_mertens(q) - ours).max() <= 1 / 255
    # Sanity: the pitfall being guarded -- OpenCV fed [0, 1] floats gives something else.
    wrong = np.clip(cv2.createMergeMertens(1.0, 1.0, 1.0).process(as_float), 0, 1)
    assert np.abs(wrong - ref).max() > 0.1


def test_weights_change_result():
    dark, bright = _bracket()
    base = fuse_mertens([dark, bright])
    assert np.abs(fuse_mertens([dark, bright], exposure_weight=0.0) - base).max() > 1e-3
    assert np.abs(fuse_mertens([dark, bright], contrast_weight=0.0, saturation_weight=0.0) - base).max() > 1e-3


def test_out_of_range_float_input_is_clipped():
    dark, bright = _bracket()
    over = bright.copy()
    over[RIGHT] = 3.0
    over[:4] = -1.0
    f = fuse_mertens([dark, over])
    clipped = np.clip(over, 0, 1)
    np.testing.assert_array_equal(f, fuse_mertens([dark, clipped]))
    nan = over.copy()
    nan[0, 0] = np.nan  # counts as 0
    np.testing.assert_array_equal(fuse_mertens([dark, nan]), f)
    assert np.isfinite(f).all() and f.min() >= 0 and f.max() <= 1


def test_errors():
    a = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="at least 2 frames"):
        fuse_mertens([a])
    with pytest.raises(ValueError, match="at least 2 frames"):
        fuse_mertens([])
    with pytest.raises(ValueError, match="frames must match"):
        fuse_mertens([a, np.zeros((8, 9, 3), np.float32)])
    with pytest.raises(ValueError, match=r"frame 1 must be an \(H, W, 3\)"):
        fuse_mertens([a, np.zeros((8, 8), np.float32)])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        fuse_mertens([a, np.zeros((8, 8, 4), np.float32)])
    with pytest.raises(ValueError, match="dtype"):
        fuse_mertens([a, np.zeros((8, 8, 3), np.int32)])
    with pytest.raises(ValueError, match="list"):
        fuse_mertens(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="exposure_weight"):
        fuse_mertens([a, a], exposure_weight=-1.0)
    with pytest.raises(ValueError, match="contrast_weight"):
        fuse_mertens([a, a], contrast_weight=float("nan"))
