"""HDR pipelines end to end through the runner: grouping, bad brackets, outputs."""

import numpy as np

from restore.image import SRGB, Image, Metadata
from restore.io import read, write
from restore.pipeline import collect_inputs, load_pipeline


def _scene(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return (0.02 + 4.0 * (x / w) ** 3 + 0.3 * (0.5 + 0.5 * np.sin(y / 3)))[..., None] * np.array([1.0, 0.8, 0.6], np.float32)


def _write_bracket(d, prefix, times, size=(48, 64)):
    lin = _scene(*size)
    for i, t in enumerate(times):
        ldr = np.clip(lin * t, 0, 1) ** (1 / 2.2)
        write(Image(ldr.astype(np.float32), SRGB, Metadata(bit_depth=8)), d / f"{prefix}{i}.png")


def test_two_brackets_one_bad_the_good_one_is_merged(tmp_path):
    d = tmp_path / "in"
    _write_bracket(d, "a", [0.25, 1.0, 4.0])
    _write_bracket(d, "b", [0.25, 1.0, 4.0], size=(40, 64))
    # make the second bracket's middle frame a different size: that bracket must fail by name
    write(Image(np.zeros((32, 32, 3), np.float32), SRGB, Metadata(bit_depth=8)), d / "b1.png")
    rows = [f"{p}{i}.png,{t}" for p in "ab" for i, t in enumerate([0.25, 1.0, 4.0])]
    (d / "times.csv").write_text("\n".join(["filename,exposure_time_s", *rows]) + "\n")
    p = load_pipeline({"version": 1, "input": {"group": {"by": "exposure-sequence"}, "exposure_times": "times.csv"}, "steps": [
        {"align": {"method": "mtb"}},
        {"merge": {"method": "debevec", "deghost": True}},
        {"write": {"path": "{group}.exr"}},
        {"tonemap": {"operator": "reinhard"}},
        {"write": {"path": "{group}.png", "bit_depth": 16}},
    ]})
    report = p.run(collect_inputs([d]), tmp_path / "out")
    assert report.count("done") == 1 and report.count("failed") == 1
    err = report.failed[0].error
    assert "b0.png" in err and "b1.png" in err and "sizes differ" in err
    hdr = read(tmp_path / "out" / "a0-a2.exr")
    assert hdr.encoding.transfer == "linear" and hdr.pixels.shape == (48, 64, 3)
    # radiance is monotone in the scene ramp and exceeds 1 where the reference clips
    row = hdr.pixels[24, :, 1]
    assert row.max() > 1.5 and np.corrcoef(row, _scene()[24, :, 1])[0, 1] > 0.99
    png = read(tmp_path / "out" / "a0-a2.png")
    assert png.meta.bit_depth == 16 and png.pixels.max() <= 1.0


def test_missing_exposure_times_name_the_files(tmp_path):
    d = tmp_path / "in"
    _write_bracket(d, "c", [0.25, 1.0, 4.0])
    p = load_pipeline({"version": 1, "input": {"group": {"by": "size", "size": 3}}, "steps": [{"merge": {}}, {"write": {"path": "{group}.exr"}}]})
    r = p.run(collect_inputs([d]), tmp_path / "out")
    assert r.count("failed") == 1 and "c0.png" in r.failed[0].error and "exposure time" in r.failed[0].error


def test_fusion_and_python_api_on_a_bracket():
    lin = _scene()
    frames = [(np.clip(lin * t, 0, 1) ** (1 / 2.2) * 255).round().astype(np.uint8) for t in (0.25, 1.0, 4.0)]
    fuse = load_pipeline({"version": 1, "input": {"group": {"by": "all"}}, "steps": [{"fuse": {}}]})
    out = fuse(frames, exposure_times=[0.25, 1.0, 4.0])
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    merge = load_pipeline({"version": 1, "input": {"group": {"by": "all"}}, "steps": [{"merge": {"method": "debevec"}}]})
    rad = merge(frames, exposure_times=[0.25, 1.0, 4.0])
    assert rad.dtype == np.float32 and rad.max() > 1.0
