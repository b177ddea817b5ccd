"""RAW development: exposure-absolute, linear, matching LibRaw's own linear output."""

from pathlib import Path

import numpy as np
import pytest
import rawpy

from restore.errors import InputError
from restore.io import RawOptions, read
from restore.pipeline import load_pipeline

from .golden import shared_path

ROOT = Path(__file__).resolve().parents[1]
DNG = ROOT / "examples" / "coffee_raw.dng"


def rawpy_linear(path, **kw):
    with rawpy.imread(str(path)) as r:
        return r.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True, adjust_maximum_thr=0, **kw).astype(np.float32) / 65535


def test_example_dng_metadata():
    img = read(DNG)
    m = img.meta
    assert m.cfa_pattern == "RGGB" and m.black_level == [512.0] * 4 and m.white_level == 16383
    assert m.white_balance[:3] == pytest.approx([2.0, 1.0, 1 / 0.7], rel=1e-3)
    assert m.exposure_time_s == pytest.approx(1 / 125) and m.f_number == pytest.approx(2.8)
    assert m.make == "restore"
    assert img.encoding.transfer == "linear" and img.encoding.referred == "scene"


def test_raw_to_exr_matches_rawpy_and_the_known_linear_image(tmp_path):
    p = load_pipeline(ROOT / "pipelines" / "raw-to-exr.yaml")
    r = p.run([DNG], tmp_path)
    assert r.ok, r.failed
    out = read(tmp_path / "coffee_raw.exr").pixels
    ref = rawpy_linear(DNG)
    assert np.all(np.abs(out - ref) <= 1e-3 * np.maximum(ref, 1e-3))
    truth = read(ROOT / "examples" / "coffee_raw_reference.exr").pixels
    # no global rescaling: the absolute level matches the image the DNG was made from
    assert out.mean() / truth.mean() == pytest.approx(1.0, abs=0.01)
    psnr = 10 * np.log10(1 / np.mean((out - truth) ** 2))
    assert psnr > 35.0  # measured 36.5 dB: AHD demosaicing error only


def test_exposure_is_absolute_not_rescaled_to_the_maximum():
    # LibRaw's default adjust_maximum_thr=0.75 would rescale this image (its max is below white)
    ours = read(DNG).pixels
    with rawpy.imread(str(DNG)) as r:
        rescaled = r.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True).astype(np.float32) / 65535
    assert ours.max() < 0.95 and rescaled.max() > ours.max() * 1.05


def test_white_balance_choices():
    cam = read(DNG, RawOptions(white_balance="camera")).pixels
    none = read(DNG, RawOptions(white_balance="none")).pixels
    assert cam[..., 0].mean() / none[..., 0].mean() == pytest.approx(2.0, rel=0.02)
    gray = read(DNG, RawOptions(white_balance="gray-world")).pixels
    assert np.ptp(gray.reshape(-1, 3).mean(0)) < np.ptp(none.reshape(-1, 3).mean(0))
    assert read(DNG, RawOptions(output="camera")).encoding.primaries == "camera"
    with pytest.raises(InputError, match="unknown demosaic"):
        read(DNG, RawOptions(demosaic="magic"))


def test_real_camera_file_without_stored_white_balance():
    kdc = shared_path("data", "raw", "RAW_KODAK_DC50.KDC")
    img = read(kdc)
    assert img.meta.cfa_pattern == "GRBG" and img.meta.white_level == 16383 and img.pixels.shape == (512, 768, 3)
    assert "user_wb" in img.meta.extra["develop"]  # fell back to gray-world
    with pytest.raises(InputError, match="no as-shot white balance"):
        read(kdc, RawOptions(white_balance="camera"))
