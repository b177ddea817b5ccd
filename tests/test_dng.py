"""DNG output (``restore/io/dng.py``): CFA DNGs round-trip a RAW's mosaic exactly, LinearRaw DNGs hold developed
images, LibRaw and darktable open both.

Measured (rawpy 0.28 / LibRaw 0.22.2; mean |ours - source| / mean of LibRaw's 16-bit linear AHD development,
use_camera_wb, raw / sRGB output): ``examples/coffee_raw.dng`` 0 / 0 (the mosaic, levels, white balance and
colour tags are copied exactly); ``../shared/data/raw/RAW_KODAK_DC50.KDC`` 5.1e-5 / 1.7e-4 (LibRaw converts this
Kodak file with a matrix it does not expose; ours is recovered by least squares from two developments, and AHD's
CIELab direction test sees its tiny difference); mosaics made from ``examples/*.png`` (RGGB, BGGR, GRBG, GBRG,
X-Trans) 0 / 0.  Each figure is printed (``pytest -s``).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile

from restore.color import primaries_matrix, srgb_to_linear
from restore.errors import InputError, OutputError
from restore.image import CFA_MOSAIC, LINEAR_REC709, Image, Metadata
from restore.io import RawOptions, read, read_mosaic, write, write_option_problems
from restore.pipeline import load_pipeline

from .golden import SHARED

ROOT = Path(__file__).resolve().parents[1]
DNG = ROOT / "examples" / "coffee_raw.dng"
PNGS = sorted((ROOT / "examples").glob("*.png"))
LINEAR = dict(use_camera_wb=True, output_bps=16, no_auto_bright=True, gamma=(1, 1), adjust_maximum_thr=0)
XTRANS = "GGRGGB" "GGBGGR" "BRGRBG" "GGBGGR" "GGRGGB" "RBGBRG"
SYNTH_NEUTRAL = (0.5, 1.0, 0.7)


def _develop(path, space) -> np.ndarray:
    with rawpy.imread(str(path)) as r:
        return r.postprocess(output_color=space, **LINEAR).astype(np.float64)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean() / max(b.mean(), 1e-12))


def _synthetic_source(png: Path, pattern: str, tmp: Path) -> Path:
    """A CFA DNG of a real photo: linear camera RGB (Rec.709 x neutral) sampled on ``pattern``, black 512,
    white 16383, as-shot neutral (0.5, 1, 0.7), written by our writer from an Image built by hand."""
    rgb = srgb_to_linear(read(png).color) * np.asarray(SYNTH_NEUTRAL, np.float32)
    period = int(round(len(pattern) ** 0.5))
    if period == 6:  # LibRaw's X-Trans interpolation fails (an I/O error) on frames this small: 4x larger
        rgb = np.repeat(np.repeat(rgb, 4, axis=0), 4, axis=1)
    h, w = rgb.shape[:2]
    idx = np.array(["RGB".index(c) for c in pattern]).reshape(period, period)
    idx = np.tile(idx, (-(-h // period), -(-w // period)))[:h, :w]
    mosaic = np.take_along_axis(rgb, idx[:, :, None], axis=2)
    cm = np.diag(SYNTH_NEUTRAL) @ primaries_matrix("xyz", "rec709")
    meta = Metadata(make="restore", model=f"synthetic {pattern[:4]}", cfa_pattern=pattern, black_level=[512.0] * 4,
                    white_level=16383.0, white_balance=[1 / v for v in SYNTH_NEUTRAL] + [0.0], iso=200.0,
                    exposure_time_s=1 / 125, f_number=2.8, capture_time="2024:05:06 07:08:09",
                    extra={"rgb_xyz_matrix": np.vstack([cm, np.zeros((1, 3))]).tolist()})
    out = tmp / f"{png.stem}_{pattern[:4]}.dng"
    write(Image(mosaic.astype(np.float32), CFA_MOSAIC, meta), out)
    with rawpy.imread(str(out)) as r:  # the source is what we meant: the DN, levels, pattern, white balance, EXIF
        dn = np.floor(512 + mosaic[:, :, 0].astype(np.float64) * (16383 - 512) + 0.5)
        assert np.array_equal(r.raw_image_visible, np.clip(dn, 0, 65535).astype(np.uint16))
        assert r.white_level == 16383 and list(r.black_level_per_channel) == [512] * 4
        letters = "".join(r.color_desc.decode()[i] for i in r.raw_colors_visible[:period, :period].ravel())
        assert letters == pattern
        assert np.allclose(np.asarray(r.camera_whitebalance[:3]) / r.camera_whitebalance[1], [2.0, 1.0, 1 / 0.7], rtol=1e-5)
        assert r.other.iso_speed == 200 and r.other.shutter_speed == pytest.approx(1 / 125)
        assert r.other.aperture == pytest.approx(2.8) and r.other.timestamp.year == 2024
    return out


def _sources():
    cases = [pytest.param(lambda tmp: DNG, id="coffee_raw.dng")]
    shared = SHARED / "data" / "raw"
    for f in sorted(shared.glob("*")) if shared.is_dir() else []:
        if f.suffix.lower() not in (".md", "") and f.name != "SHA256SUMS":
            cases.append(pytest.param(lambda tmp, f=f: f, id=f.name))
    if not shared.is_dir():
        cases.append(pytest.param(None, id="shared-raw", marks=pytest.mark.skip(reason=f"{shared} absent (../shared not here)")))
    for png in PNGS:
        for pattern in ("RGGB", "BGGR", "GRBG", "GBRG", XTRANS):
            cases.append(pytest.param(lambda tmp, png=png, pattern=pattern: _synthetic_source(png, pattern, tmp),
                                      id=f"{png.stem}-{pattern[:4] if len(pattern) == 4 else 'xtrans'}"))
    return cases


@pytest.mark.parametrize("make_source", _sources())
def test_cfa_dng_round_trips_the_mosaic(make_source, tmp_path):
    """read_mosaic -> write .dng -> rawpy: identical mosaic, levels, pattern, white balance and matrix; LibRaw's
    development of our DNG equals its development of the source (raw and sRGB output, within 1e-3 relative)."""
    src = make_source(tmp_path)
    img = read_mosaic(src)
    assert img.encoding == CFA_MOSAIC and img.channels == 1
    out = tmp_path / "out" / "ours.dng"
    write(img, out)
    with rawpy.imread(str(src)) as a, rawpy.imread(str(out)) as b:
        assert np.array_equal(a.raw_image_visible, b.raw_image_visible)
        assert list(a.black_level_per_channel) == list(b.black_level_per_channel) and a.white_level == b.white_level
        assert np.array_equal(a.raw_colors_visible, b.raw_colors_visible)
        desc_a, desc_b = a.color_desc.decode(), b.color_desc.decode()
        assert [desc_a[i] for i in a.raw_pattern.ravel()] == [desc_b[i] for i in b.raw_pattern.ravel()]
        wa, wb = np.asarray(a.camera_whitebalance[:3]), np.asarray(b.camera_whitebalance[:3])
        assert np.allclose(wa / wa[1], wb / wb[1], rtol=1e-5)
        assert np.allclose(a.rgb_xyz_matrix[:3], b.rgb_xyz_matrix[:3], atol=1e-4)
        if np.any(a.color_matrix):  # LibRaw's camera -> sRGB as it will apply it
            assert np.allclose(a.color_matrix[:3], b.color_matrix[:3], atol=1e-4)
        assert a.sizes.flip == b.sizes.flip
    if src.suffix.lower() == ".dng":  # the colour tags are copied as stored
        with tifffile.TiffFile(src) as ta, tifffile.TiffFile(out) as tb:
            for code in (50721, 50722, 50778, 50779):
                ca, cb = ta.pages[0].tags.get(code), tb.pages[0].tags.get(code)
                assert (ca is None) == (cb is None) and (ca is None or ca.value == cb.value), code
    figures = []
    for space in (rawpy.ColorSpace.raw, rawpy.ColorSpace.sRGB):
        rel = _rel(_develop(out, space), _develop(src, space))
        figures.append(rel)
        assert rel < 1e-3, (space, rel)
    print(f"\n{src.name}: LibRaw development of our DNG vs the source, mean abs diff / mean: raw {figures[0]:.2g}, "
          f"sRGB {figures[1]:.2g}")
    again = read_mosaic(out)  # and our own reader gets the same mosaic back
    assert np.array_equal(again.pixels, img.pixels) and again.meta.cfa_pattern == img.meta.cfa_pattern


@pytest.mark.parametrize(("output", "space", "bit_depth"), [
    ("linear-rec709", rawpy.ColorSpace.sRGB, 16), ("linear-rec709", rawpy.ColorSpace.sRGB, 32),
    ("camera", rawpy.ColorSpace.raw, 16), ("camera", rawpy.ColorSpace.raw, 32)])
def test_linear_raw_dng_of_a_developed_image(output, space, bit_depth, tmp_path):
    img = read(DNG, RawOptions(output=output))
    out = write(img, tmp_path / "lin.dng", bit_depth=bit_depth)
    with tifffile.TiffFile(out) as tf:
        p = tf.pages[0]
        assert p.photometric == 34892 and p.samplesperpixel == 3 and p.bitspersample == bit_depth
        assert p.tags[50706].value == b"\x01\x04\x00\x00"
    back = _develop(out, space) / 65535
    rel = _rel(back, img.pixels.astype(np.float64))
    print(f"\nLinearRaw {output} {bit_depth}-bit: LibRaw development vs the image, mean abs diff / mean {rel:.2g}")
    assert back.shape == img.pixels.shape and rel < 1e-3


def test_display_image_becomes_linear_in_a_dng(tmp_path):
    png = read(PNGS[0])
    out = write(png, tmp_path / "p.dng")
    back = _develop(out, rawpy.ColorSpace.sRGB) / 65535
    rel = _rel(back, srgb_to_linear(png.color).astype(np.float64))
    assert rel < 1e-3, rel


def test_hdr_values_go_to_a_float_dng(tmp_path):
    px = (srgb_to_linear(read(PNGS[0]).color) * 4.0).astype(np.float32)
    img = Image(px, LINEAR_REC709, Metadata())
    with pytest.raises(OutputError, match="values above 1"):
        write(img, tmp_path / "h16.dng", bit_depth=16)
    out = write(img, tmp_path / "h.dng")
    with tifffile.TiffFile(out) as tf:
        p = tf.pages[0]
        assert p.bitspersample == 32 and p.tags[50717].value == 4
        assert np.array_equal(p.asarray(), px)
    with rawpy.imread(str(out)) as r:
        assert r.raw_image_visible.shape[:2] == px.shape[:2]


def test_errors_are_one_line_and_name_the_file(tmp_path):
    img = read_mosaic(DNG)
    bad = Image(img.pixels, CFA_MOSAIC, Metadata(cfa_pattern="RGBX"))
    with pytest.raises(OutputError, match=r"x\.dng: CFA image with an unknown pattern") as e:
        write(bad, tmp_path / "x.dng")
    assert "\n" not in str(e.value) and not list(tmp_path.iterdir())
    with pytest.raises(OutputError, match=r"x\.png: a CFA mosaic can only be written as \.dng"):
        write(img, tmp_path / "x.png")
    with pytest.raises(OutputError, match="16-bit samples"):
        write(img, tmp_path / "x.dng", bit_depth=32)
    with pytest.raises(OutputError, match="RGBA"):
        write(Image(np.zeros((8, 8, 4), np.float32)), tmp_path / "x.dng")
    assert write_option_problems(".dng", {"bit_depth": 8}) == ["bit_depth 8 is not one .dng takes (16, 32)"]
    with pytest.raises(InputError, match="not CFA"):
        read_mosaic(write(read(DNG), tmp_path / "linear.dng"))


def test_output_cfa_on_a_png_is_a_one_line_failure(tmp_path):
    p = load_pipeline({"version": 1, "steps": [{"develop": {"output": "cfa"}}, {"write": {"path": "{stem}.dng"}}]})
    r = p.run([PNGS[0]], tmp_path / "out")
    assert not r.ok and "output: cfa needs a camera RAW input" in r.results[0].error


def test_raw_to_dng_pipeline_from_the_cli(tmp_path):
    res = subprocess.run([sys.executable, "-m", "restore.cli", "run", str(ROOT / "pipelines" / "raw-to-dng.yaml"),
                          str(DNG), "-o", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "coffee_raw.dng"
    with rawpy.imread(str(DNG)) as a, rawpy.imread(str(out)) as b:
        assert np.array_equal(a.raw_image_visible, b.raw_image_visible)
        assert list(a.black_level_per_channel) == list(b.black_level_per_channel) and a.white_level == b.white_level
    assert _rel(_develop(out, rawpy.ColorSpace.sRGB), _develop(DNG, rawpy.ColorSpace.sRGB)) < 1e-3


@pytest.mark.skipif(shutil.which("darktable-cli") is None, reason="darktable-cli not on PATH")
@pytest.mark.parametrize("kind", ["cfa", "linear-raw"])
def test_darktable_opens_our_dngs(kind, tmp_path):
    img = read_mosaic(DNG) if kind == "cfa" else read(DNG)
    dng = write(img, tmp_path / f"{kind}.dng", bit_depth=None if kind == "cfa" else 32)
    jpg = tmp_path / f"{kind}.jpg"
    res = subprocess.run(["darktable-cli", str(dng), str(jpg), "--core", "--configdir", str(tmp_path / "dt"),
                          "--library", ":memory:"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and jpg.is_file(), res.stdout[-2000:] + res.stderr[-2000:]
    out = read(jpg)
    assert (out.width, out.height) == (img.width, img.height) and out.pixels.mean() > 0.05


def test_a_mosaic_is_never_handed_to_a_stage_that_does_not_take_one(tmp_path):
    """Resize, convert, model ... on a CFA mosaic would silently corrupt it: one-line refusal naming the step."""
    import subprocess
    import sys

    (tmp_path / "p.yaml").write_text("version: 1\nname: bad\nsteps:\n  - develop: {output: cfa}\n"
                                     "  - resize: {scale: 0.5}\n  - write: {path: '{stem}.dng'}\n")
    r = subprocess.run([sys.executable, "-m", "restore.cli", "run", str(tmp_path / "p.yaml"), str(DNG),
                        "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    assert "resize does not take a raw CFA mosaic" in r.stdout + r.stderr
    assert not list((tmp_path / "out").glob("*.dng"))
