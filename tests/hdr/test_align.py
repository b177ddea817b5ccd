"""Bracket alignment: MTB translation and ECC warps recover known motion across exposures."""

import cv2
import numpy as np
import pytest

from restore.hdr.align import AlignError, align_ecc, align_mtb
from tests.golden import shared_path

H, W = 96, 128
PAD = 16


def _scene(h, w, seed=0):
    """Linear RGB radiance with texture at several scales (log-normal, median 0.15)."""
    rng = np.random.default_rng(seed)
    t = np.zeros((h, w), np.float32)
    for sigma in (1.5, 4.0, 10.0):
        n = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
        t += n / n.std()
    t = np.exp(0.6 * t)
    t *= 0.15 / np.median(t)
    return np.stack([t, 0.9 * t, 1.1 * t], axis=-1).astype(np.float32)


BIG = _scene(H + 2 * PAD, W + 2 * PAD)


def _view(dx, dy):
    """The scene with its content displaced by (dx, dy) pixels: view(x, y) = scene(x - dx, y - dy)."""
    return BIG[PAD - dy : PAD - dy + H, PAD - dx : PAD - dx + W].copy()


def test_mtb_recovers_shifts_across_exposures():
    ref = _view(0, 0)
    bright = np.clip(4 * _view(5, -3), 0, 1)  # two stops over, highlights clipped
    dark = 0.25 * _view(-2, 4)
    aligned, shifts = align_mtb([bright, ref, dark], reference=1)
    assert shifts[1] == (0, 0)
    for got, want in zip(shifts, [(-5, 3), (0, 0), (2, -4)]):
        assert abs(got[0] - want[0]) <= 1 and abs(got[1] - want[1]) <= 1, shifts
    assert aligned[1] is ref
    for a in aligned:
        assert a.dtype == np.float32 and a.shape == ref.shape
    inner = np.s_[PAD:-PAD, PAD:-PAD]
    np.testing.assert_allclose(aligned[0][inner], np.clip(4 * ref, 0, 1)[inner], atol=1e-6)
    np.testing.assert_allclose(4 * aligned[2][inner], ref[inner], rtol=1e-5)


def test_mtb_keeps_channels_and_borders():
    ref = _view(0, 0)
    grey = [ref[..., 1:2], 0.5 * _view(3, 2)[..., 1:2]]
    aligned, shifts = align_mtb(grey, 0, max_bits=3)
    assert shifts == [(0, 0), (-3, -2)]
    assert aligned[1].shape == (H, W, 1)
    assert np.all(aligned[1][:, -3:] == aligned[1][:, -4:-3])  # replicated border, no black
    rgba = [np.concatenate([f, np.ones_like(f[..., :1])], axis=-1) for f in (ref, 2 * _view(-4, 0))]
    aligned, shifts = align_mtb(rgba, -2)
    assert shifts == [(0, 0), (4, 0)] and aligned[1].shape == (H, W, 4)


def _rigid(angle_deg, tx, ty):
    m = cv2.getRotationMatrix2D((W / 2, H / 2), angle_deg, 1.0)
    m[:, 2] += (tx, ty)
    return m


@pytest.mark.parametrize("motion", ["translation", "euclidean", "affine", "homography"])
def test_ecc_recovers_known_warp(motion):
    scene = _scene(H, W, seed=1)
    m = _rigid(0.0 if motion == "translation" else 1.5, 2.5, -1.5)
    # frame(m x) = scene(x): the frame shows the scene moved by m, four times brighter and clipped
    frame = np.clip(4 * cv2.warpAffine(scene, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), 0, 1)
    aligned, mats = align_ecc([scene, frame], 0, motion=motion)
    rows = 3 if motion == "homography" else 2
    assert mats[0].shape == mats[1].shape == (rows, 3)
    np.testing.assert_array_equal(mats[0], np.eye(rows, 3))
    np.testing.assert_allclose(mats[1][:2, :2], m[:, :2], atol=0.01)
    np.testing.assert_allclose(mats[1][:2, 2], m[:, 2], atol=0.25)
    if rows == 3:
        np.testing.assert_allclose(mats[1][2], [0, 0, 1], atol=1e-3)
    assert aligned[1].dtype == np.float32 and aligned[1].shape == frame.shape
    inner = np.s_[12:-12, 12:-12]
    err = np.abs(aligned[1][inner] - np.clip(4 * scene, 0, 1)[inner])
    assert err.mean() < 0.03


def test_ecc_failure_names_the_frame():
    scene = _scene(H, W, seed=2)
    flat = np.full_like(scene, 0.3)
    with pytest.raises(AlignError, match=r"did not converge for frame 2 against reference 0"):
        align_ecc([scene, 0.5 * scene, flat], 0, motion="affine")


def test_bad_arguments():
    a, b = _view(0, 0), _view(0, 0)[:-2]
    with pytest.raises(AlignError, match="differ in size"):
        align_mtb([a, b], 0)
    with pytest.raises(AlignError, match="unknown ECC motion"):
        align_ecc([a, a], 0, motion="similarity")
    with pytest.raises(AlignError, match="reference index 2"):
        align_ecc([a, a], 2)
    assert issubclass(AlignError, ValueError)


def test_mtb_on_real_memorial_frames():
    from restore.io import read

    folder = shared_path("data", "brackets", "memorial_debevec")
    # three exposures two stops apart (1 s, 1/4 s, 1/16 s), a central crop
    frames = [read(folder / f"memorial00{n}.png").pixels[192:576, 64:448] for n in (66, 68, 70)]
    aligned, shifts = align_mtb(frames, 1)
    # the stack was registered by its author: at most a pixel of residual shift
    assert all(abs(dx) <= 1 and abs(dy) <= 1 for dx, dy in shifts), shifts
    assert all(a.shape == (384, 384, 3) for a in aligned)


def test_mtb_on_the_whole_registered_memorial_stack_finds_no_motion():
    """16 frames over 15 stops: chaining neighbours keeps near-black frames from locking onto noise."""
    from restore.io import read as _read

    d = shared_path("data", "brackets", "memorial_debevec")
    frames = [_read(p).pixels for p in sorted(d.glob("memorial*.png"))]
    _, shifts = align_mtb(frames, 7)
    assert max(max(abs(dx), abs(dy)) for dx, dy in shifts) <= 1, shifts
