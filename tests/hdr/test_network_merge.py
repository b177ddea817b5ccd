"""merge: {model: ...} runs HDR-Transformer / SCTNet checkpoints with the official input conventions."""

import numpy as np
import pytest
import torch

from restore.hdr.network import merge_network, network_inputs
from restore.image import SRGB, Image, Metadata
from restore.io import read, write
from restore.pipeline import load_pipeline
from restore.tiling import TileSpec

from ..golden import load_golden

torch.set_num_threads(1)


def _frames(h=32, w=48, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    lin = (0.05 + 0.9 * np.stack([x / w, y / h, 0.5 + 0.4 * np.sin(x / 4)], -1)) * 2
    lin = lin + 0.01 * rng.random(lin.shape, dtype=np.float32)
    times = [0.25, 1.0, 4.0]
    return [np.clip(lin * t / 2, 0, 1) ** (1 / 2.2) for t in times], times


def test_network_inputs_follow_the_official_conventions():
    frames, times = _frames()
    shuffled = [frames[2], frames[0], frames[1]]
    x, t_ref = network_inputs(shuffled, [times[2], times[0], times[1]])
    assert x.shape == (18, 32, 48) and t_ref == pytest.approx(4.0)  # middle relative to the shortest
    short_bgr = frames[0][..., ::-1].transpose(2, 0, 1)
    assert np.allclose(x[3:6], short_bgr) and np.allclose(x[0:3], short_bgr**2.2 / 1.0)
    long_bgr = frames[2][..., ::-1].transpose(2, 0, 1)
    assert np.allclose(x[12:15], long_bgr**2.2 / 16.0, atol=1e-6)
    with pytest.raises(ValueError):
        network_inputs(frames[:2], times[:2])


def test_merge_network_equals_the_module_on_the_whole_image():
    cfg, weights, _ = load_golden("hdr_transformer")
    from restore.models.archs.hdr_transformer import HDRTransformer

    m = HDRTransformer(**cfg["kwargs"]).eval()
    m.load_state_dict(weights, strict=True)
    frames, times = _frames()
    x, t_ref = network_inputs(frames, times)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)[None])[0].numpy()[::-1].transpose(1, 2, 0) * t_ref
    out = merge_network(m, frames, times, spec=TileSpec(0), multiple_of=8)
    assert np.allclose(out, ref, atol=1e-5)


def test_merge_step_with_a_user_checkpoint(tmp_path):
    _, weights, _ = load_golden("hdr_transformer")
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in weights.items()}, "optimizer": {}}, tmp_path / "pretrained_model.pth")
    frames, times = _frames()
    d = tmp_path / "in"
    for i, (f, t) in enumerate(zip(frames, times)):
        write(Image(f.astype(np.float32), SRGB, Metadata(bit_depth=16)), d / f"b{i}.png")
    (d / "times.csv").write_text("filename,exposure_time_s\n" + "".join(f"b{i}.png,{t}\n" for i, t in enumerate(times)))
    p = load_pipeline({"version": 1, "input": {"group": {"by": "size", "size": 3}, "exposure_times": "times.csv"}, "steps": [
        {"merge": {"model": str(tmp_path / "pretrained_model.pth"), "tile": 0}},
        {"write": {"path": "{group}.exr", "dtype": "float"}},
    ]})
    r = p.run(sorted(d.glob("*.png")), tmp_path / "out")
    assert r.ok, r.failed[0].error
    out = read(tmp_path / "out" / "b0-b2.exr")
    assert out.encoding.transfer == "linear" and out.pixels.shape == (32, 48, 3) and np.isfinite(out.pixels).all()
    # the single-image model step refuses it; a non-HDR checkpoint is refused by merge
    from restore.errors import RestoreError

    _, dw, _ = load_golden("drsformer")
    torch.save({"params": dict(dw)}, tmp_path / "derain.pth")
    bad = load_pipeline({"version": 1, "input": {"group": {"by": "size", "size": 3}}, "steps": [{"merge": {"model": str(tmp_path / "derain.pth")}}]})
    with pytest.raises(RestoreError, match="not a 3-exposure HDR merge network"):
        bad.prepare()


def test_shipped_hdr_pipelines_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "pipelines"
    for name in ("hdr-merge.yaml", "exposure-fusion.yaml", "raw-hdr-merge.yaml"):
        load_pipeline(root / name)
