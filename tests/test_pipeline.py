import numpy as np
import pytest
import yaml

import restore
from restore.errors import OutputError, PipelineError
from restore.image import LINEAR_REC709, SRGB, Image, Metadata
from restore.io import read, write
from restore.pipeline import load_pipeline, parse_pipeline
from restore.pipeline.stages import output_path

SR2 = {"version": 1, "name": "t", "steps": [{"model": {"name": "dat-light-x2", "tile": 0}}]}


@pytest.fixture(scope="module")
def sr2():
    p = load_pipeline(SR2)
    p.prepare()
    return p


def test_api_numpy_in_numpy_out_keeps_dtype(sr2, photo):
    u8 = (photo[:16, :20] * 255).round().astype(np.uint8)
    out = sr2(u8)
    assert out.dtype == np.uint8 and out.shape == (32, 40, 3)
    u16 = (photo[:16, :20] * 65535).round().astype(np.uint16)
    assert sr2(u16).dtype == np.uint16
    f = sr2(photo[:16, :20])
    assert f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1
    # grey 2-D input comes back 2-D
    assert sr2(u8[:, :, 0]).shape == (32, 40)
    # the model really super-resolves: closer to the image than a nearest-neighbour upscale of it
    near = np.repeat(np.repeat(photo[:16, :20], 2, 0), 2, 1)
    assert np.abs(f - near).mean() < 0.1


def test_api_rejects_bad_arrays(sr2):
    with pytest.raises(ValueError):
        sr2(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError):
        sr2(np.zeros((4, 4, 3), np.int32))


def test_hdr_values_survive_a_model_trained_on_unit_range(sr2):
    # EXR-like linear data up to 100 through the x2 model: values > 1 intact
    y, x = np.mgrid[0:16, 0:16].astype(np.float32)
    hdr = np.stack([0.1 + (x >= 8) * 99.9] * 3, axis=-1).astype(np.float32)
    out = sr2.process(Image(hdr, LINEAR_REC709, Metadata()))
    assert out.encoding == LINEAR_REC709 and out.pixels.shape == (32, 32, 3)
    right = out.pixels[4:-4, 20:-4]
    assert right.min() > 80 and right.max() <= 100.0 + 1e-3  # overshoot is bounded by the peak
    assert abs(np.median(out.pixels[4:-4, 4:12]) - 0.1) < 0.01


def test_alpha_is_carried_and_upscaled(sr2, photo):
    rgba = np.concatenate([photo[:16, :16], np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16, 1)], axis=2)
    out = sr2.process(Image(rgba, SRGB, Metadata()))
    assert out.pixels.shape == (32, 32, 4)
    assert abs(out.pixels[..., 3].mean() - rgba[..., 3].mean()) < 0.02


def test_resize_convert_exposure_stages(photo):
    p = load_pipeline({"version": 1, "steps": [
        {"resize": {"scale": 0.5, "filter": "area"}},
        {"convert": {"transfer": "linear"}},
        {"exposure": {"ev": 1}},
    ]})
    img = p.process(Image(photo, SRGB, Metadata()))
    assert img.pixels.shape == (20, 24, 3) and img.encoding.transfer == "linear"
    ref = restore.color.srgb_to_linear(photo).reshape(20, 2, 24, 2, 3).mean(axis=(1, 3)) * 2
    assert np.allclose(img.pixels, ref, atol=2e-3)


@pytest.mark.parametrize("template", ["../x.png", "/abs/x.png", "a/../../x.png", "{stem}.gif", "{nope}.png", ""])
def test_write_templates_cannot_escape_or_be_wrong(template):
    with pytest.raises(PipelineError):
        parse_pipeline({"version": 1, "steps": [{"write": {"path": template}}]})


def test_output_path_containment(tmp_path):
    assert output_path("sub/{stem}.png", tmp_path, {"stem": "a"}) == tmp_path / "sub" / "a.png"
    with pytest.raises(OutputError):
        output_path("{stem}.png", tmp_path, {"stem": "../../etc/x"})


def test_schema_errors_name_file_line_and_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("version: 1\nname: x\nsteps:\n  - model:\n      name: dat-light-x2\n      tile: -1\n")
    with pytest.raises(PipelineError, match=r"bad\.yaml:6: steps\[0\]\.model\.tile: "):
        load_pipeline(f)
    f.write_text("version: 1\nsteps:\n  - write: {path: a.png, colour: red}\n")
    with pytest.raises(PipelineError, match=r"bad\.yaml:3: steps\[0\]\.write\.colour: Extra inputs"):
        load_pipeline(f)
    f.write_text("version: 3\nsteps: []\n")
    with pytest.raises(PipelineError, match="unsupported pipeline version 3"):
        load_pipeline(f)
    f.write_text("version: 1\nsteps: [ {model: \n")
    with pytest.raises(PipelineError, match="invalid YAML"):
        load_pipeline(f)


def test_shipped_pipelines_validate():
    from pathlib import Path

    files = sorted((Path(__file__).parents[1] / "pipelines").glob("*.yaml"))
    assert {"sr-x2.yaml", "sr-x4.yaml", "raw-to-exr.yaml", "raw-sr-exr.yaml"} <= {f.name for f in files}
    for f in files:
        load_pipeline(f)


def test_16bit_png_in_16bit_png_out(tmp_path, sr2, photo):
    q = (photo[:12, :12] * 65535).round().astype(np.uint16)
    write(Image(q / np.float32(65535), SRGB, Metadata(bit_depth=16)), tmp_path / "in" / "a.png")
    p = load_pipeline({"version": 1, "steps": SR2["steps"] + [{"write": {"path": "{stem}_x2.png"}}]})
    r = p.run([tmp_path / "in" / "a.png"], tmp_path / "out")
    assert r.ok
    out = read(tmp_path / "out" / "a_x2.png")
    assert out.meta.bit_depth == 16 and out.pixels.shape == (24, 24, 3)
    # real 16-bit precision, not 8-bit values stored in 16 bits
    assert np.any((np.round(out.pixels * 65535).astype(int) % 257) != 0)


def test_model_blend_mixes_output_and_input_in_the_model_encoding(tmp_path):
    """``blend`` (issue 19): 1 = the model, 0 = the input (network not run), 0.5 = the mean of the two, for an
    identity-size model and for a x2 SR model (input Lanczos-upscaled), in the model's sRGB encoding."""
    import restore
    from restore.pipeline.steps.model import blend_with_input

    rng = np.random.default_rng(0)
    x = rng.random((24, 32, 3), dtype=np.float32)
    y = rng.random((24, 32, 3), dtype=np.float32)
    assert np.allclose(blend_with_input(y, x, 1, 0.25), 0.25 * y + 0.75 * x, atol=1e-6)
    assert np.array_equal(blend_with_input(None, x, 1, 0.0), x)
    up = blend_with_input(None, x, 2, 0.0)
    assert up.shape == (48, 64, 3) and up.dtype == np.float32
    spec = "version: 1\nname: b\nsteps:\n  - model: {{name: dat-light-x2, tile: 0, precision: fp32, blend: {b}}}\n"
    img = (rng.random((16, 16, 3)) * 0.8 + 0.1).astype(np.float32)
    full = restore.load_pipeline(yaml.safe_load(spec.format(b=1.0)))(img)
    none = restore.load_pipeline(yaml.safe_load(spec.format(b=0.0)))(img)
    half = restore.load_pipeline(yaml.safe_load(spec.format(b=0.5)))(img)
    assert full.shape == none.shape == half.shape == (32, 32, 3)
    assert np.allclose(half, 0.5 * full + 0.5 * none, atol=2e-3)  # sRGB in and out: mixed in the model's encoding
    assert np.abs(full - none).mean() > 1e-3  # the model does change the image
    with pytest.raises(Exception, match="blend"):
        restore.load_pipeline(yaml.safe_load(spec.format(b=1.5)))
