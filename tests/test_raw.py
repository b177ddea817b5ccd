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


# ---- demosaic: learned (Gharbi et al. 2016 network through the develop options) ----

def _needs_demosaicnet():
    pytest.importorskip("rawpy")
    from restore.models import demosaicnet

    try:
        demosaicnet.weights_path("bayer")
    except Exception as e:  # pragma: no cover - only without the optional dependency
        pytest.skip(f"demosaicnet weights not installed: {e}")


def _ref_srgb(x):
    from restore.color import linear_to_srgb

    return linear_to_srgb(np.clip(x, 0, 1))[4:-4, 4:-4]


def test_learned_demosaic_beats_libraw_on_the_example_dng():
    """The shipped DNG is a mosaic of a known linear image: the network must beat every LibRaw algorithm."""
    _needs_demosaicnet()
    from restore.metrics import psnr

    ref = _ref_srgb(read(ROOT / "examples" / "coffee_raw_reference.exr").pixels)
    scores = {d: psnr(_ref_srgb(read(DNG, RawOptions(demosaic=d)).pixels), ref, y_channel=False)
              for d in ("ahd", "dcb", "dht", "learned")}
    assert scores["learned"] > max(v for k, v in scores.items() if k != "learned") + 2.0, scores
    img = read(DNG, RawOptions(demosaic="learned"))
    assert img.encoding.transfer == "linear" and img.meta.cfa_pattern == "RGGB"
    assert img.meta.extra["develop"]["cfa"] == "RGGB"
    # same colour as LibRaw's own development (white balance and camera matrix are LibRaw's)
    ahd = read(DNG, RawOptions(demosaic="ahd")).pixels
    np.testing.assert_allclose(img.pixels.mean(axis=(0, 1)), ahd.mean(axis=(0, 1)), rtol=0.02)


def test_learned_demosaic_from_a_pipeline_file(tmp_path):
    _needs_demosaicnet()
    y = tmp_path / "p.yaml"
    y.write_text((ROOT / "pipelines" / "raw-to-exr.yaml").read_text().replace("demosaic: ahd", "demosaic: learned"))
    r = load_pipeline(y).run([DNG], tmp_path / "out")
    assert r.ok, r.failed
    out = read(tmp_path / "out" / "coffee_raw.exr").pixels
    ref = read(ROOT / "examples" / "coffee_raw_reference.exr").pixels
    assert out.shape == ref.shape and np.abs(out - ref).mean() < 0.01


def _mosaic(lin, pattern):
    import sys

    sys.path.insert(0, str(ROOT / "data_tools"))
    from make_examples import AS_SHOT_NEUTRAL, BLACK, WHITE

    from restore.models.demosaicnet import cfa_pattern

    p = len(pattern) ** 0.5
    pat = cfa_pattern(pattern, int(round(p)))
    h, w, _ = lin.shape
    idx = np.tile(pat, (-(-h // pat.shape[0]), -(-w // pat.shape[1])))[:h, :w]
    cam = lin * np.asarray(AS_SHOT_NEUTRAL, np.float32)
    mos = np.take_along_axis(cam, idx[..., None], axis=2)[..., 0]
    return np.round(BLACK + mos * (WHITE - BLACK)).astype(np.uint16)


@pytest.mark.parametrize("orientation,turn", [(3, 2), (6, -1), (8, 1)])
def test_learned_demosaic_follows_the_orientation_like_libraw(tmp_path, orientation, turn):
    _needs_demosaicnet()
    import sys

    sys.path.insert(0, str(ROOT / "data_tools"))
    from make_examples import write_dng

    ref = read(ROOT / "examples" / "coffee_raw_reference.exr").pixels[:96, :128]
    p = tmp_path / "o.dng"
    write_dng(p, _mosaic(ref, "RGGB"), {"make": "restore", "model": "test"}, orientation=orientation)
    learned = read(p, RawOptions(demosaic="learned")).pixels
    ahd = read(p, RawOptions(demosaic="ahd")).pixels
    assert learned.shape == ahd.shape == np.rot90(ref, turn).shape
    assert np.abs(learned - np.rot90(ref, turn)).mean() < 0.01


def test_learned_demosaic_xtrans_dng(tmp_path):
    """An X-Trans 6x6 mosaic goes to the X-Trans network (camera RGB output: LibRaw cannot develop
    a synthetic X-Trans DNG, so its matrix is not needed here)."""
    _needs_demosaicnet()
    import sys

    sys.path.insert(0, str(ROOT / "data_tools"))
    from make_examples import XTRANS, write_dng

    ref = read(ROOT / "examples" / "coffee_raw_reference.exr").pixels[:96, :120]
    p = tmp_path / "x.dng"
    write_dng(p, _mosaic(ref, XTRANS), {"make": "restore", "model": "xtrans"}, pattern=XTRANS)
    img = read(p, RawOptions(demosaic="learned", output="camera"))
    assert img.meta.extra["develop"]["cfa"] == XTRANS
    # camera output is white-balanced camera RGB = reference * neutral / neutral
    err = np.abs(img.pixels - ref)[12:-12, 12:-12].mean()
    assert err < 0.02, err


def test_unknown_demosaic_is_a_pipeline_error_listing_learned(tmp_path):
    _needs_demosaicnet()
    y = tmp_path / "p.yaml"
    y.write_text((ROOT / "pipelines" / "raw-to-exr.yaml").read_text().replace("demosaic: ahd", "demosaic: neural"))
    from restore.errors import PipelineError

    with pytest.raises(PipelineError) as e:
        load_pipeline(y)
    assert "p.yaml:7" in str(e.value) and "learned" in str(e.value), str(e.value)
