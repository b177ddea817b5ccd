"""A pipeline pointing at a user's checkpoint path runs end to end for every task.

Weights are the golden fixtures (official key names, random values), saved the
way the official code saves them; nothing tells the loader the architecture.
"""

import numpy as np
import pytest
import torch

from restore.errors import RestoreError
from restore.image import SRGB, Image, Metadata
from restore.io import read, write
from restore.pipeline import load_pipeline

from .golden import load_golden

torch.set_num_threads(1)

LAYOUTS = {
    "drsformer": lambda sd: {"params": sd},
    "drsformer_nomefc": lambda sd: {"params": sd},
    "histoformer": lambda sd: {"params": sd},
    "restormer": lambda sd: {"params": sd},
    "rawformer": lambda sd: sd,
}
TASKS = {"drsformer": "derain", "drsformer_nomefc": "derain", "histoformer": "weather", "restormer": "restoration", "rawformer": "raw-to-raw"}


def _photo(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([0.5 + 0.3 * np.sin(x / 5), 0.5 + 0.3 * np.cos(y / 4), (x + y) / (h + w)], -1).astype(np.float32)


@pytest.mark.parametrize("fixture", sorted(LAYOUTS))
def test_user_checkpoint_pipeline_runs(fixture, tmp_path):
    _, weights, _ = load_golden(fixture)
    ckpt = tmp_path / f"{fixture}.pth"
    torch.save(LAYOUTS[fixture](dict(weights)), ckpt)
    src = tmp_path / "in" / "photo.png"
    write(Image(_photo(40, 60), SRGB, Metadata(bit_depth=8)), src)
    # Rawformer translates linear camera RGB: the pipeline linearises first (others take sRGB as is)
    pre = [{"convert": {"transfer": "linear"}}] if fixture == "rawformer" else []
    p = load_pipeline({"version": 1, "name": TASKS[fixture], "steps": pre + [
        {"model": {"name": str(ckpt), "tile": 32, "overlap": 8}},
        {"write": {"path": "{stem}_out.png"}},
    ]})
    p.prepare()
    model = p.stages[-2].model
    assert model.info.task == TASKS[fixture]
    r = p.run([src], tmp_path / "out")
    assert r.ok, r.failed[0].error
    out = read(tmp_path / "out" / "photo_out.png").pixels
    assert out.shape == (40, 60, 3) and np.isfinite(out).all()


def test_reflection_pipeline_with_vgg19_hypercolumn(tmp_path):
    from safetensors.torch import save_file

    from restore.models.archs.rrformer import DRNet, _vgg19_features

    torch.manual_seed(0)
    net = DRNet(3 + 1472, 3, 8, 13, pyramid=True, swinir_kwargs={"depths": [], "num_heads": []})
    torch.save({"icnn": net.state_dict(), "epoch": 1}, tmp_path / "errnet_latest.pt")
    pipe = {"version": 1, "steps": [{"model": {"name": str(tmp_path / "errnet_latest.pt"), "tile": 0}}]}
    with pytest.raises(RestoreError, match="vgg19"):
        load_pipeline(pipe).prepare()
    save_file({k: v.contiguous() for k, v in _vgg19_features().state_dict().items()}, str(tmp_path / "vgg19.safetensors"))
    pipe["steps"][0]["model"]["vgg19"] = str(tmp_path / "vgg19.safetensors")
    p = load_pipeline(pipe)
    out = p((_photo(32, 48) * 255).astype(np.uint8))
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8


def test_hdr_models_are_refused_by_the_single_image_model_step(tmp_path):
    _, weights, _ = load_golden("hdr_transformer")
    torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in weights.items()}}, tmp_path / "hdr.pth")
    with pytest.raises(RestoreError, match="takes 3 frames"):
        load_pipeline({"version": 1, "steps": [{"model": {"name": str(tmp_path / "hdr.pth")}}]}).prepare()


def test_global_attention_models_run_whole_unless_tile_is_explicit(tmp_path):
    _, weights, _ = load_golden("restormer")
    torch.save({"params": dict(weights)}, tmp_path / "r.pth")
    x = _photo(48, 64)
    implicit = load_pipeline({"version": 1, "steps": [{"model": {"name": str(tmp_path / "r.pth")}}]})
    whole = load_pipeline({"version": 1, "steps": [{"model": {"name": str(tmp_path / "r.pth"), "tile": 0}}]})
    tiled = load_pipeline({"version": 1, "steps": [{"model": {"name": str(tmp_path / "r.pth"), "tile": 32, "overlap": 8}}]})
    a, b, c = implicit(x), whole(x), tiled(x)
    assert np.array_equal(a, b) and not np.allclose(b, c, atol=1e-3)


def test_reflection_net_without_hypercolumn_needs_no_vgg(tmp_path):
    """DRNet trained without --hyper (in_channels 3, as our starter weights) takes plain RGB."""
    from restore.models.archs.rrformer import DRNet

    torch.manual_seed(0)
    net = DRNet(3, 3, 8, 13, pyramid=True, swinir_kwargs={"depths": [], "num_heads": []})
    torch.save({"icnn": net.state_dict()}, tmp_path / "drnet_rgb.pt")
    p = load_pipeline({"version": 1, "steps": [{"model": {"name": str(tmp_path / "drnet_rgb.pt"), "tile": 0}}]})
    assert p((_photo(32, 48) * 255).astype(np.uint8)).shape == (32, 48, 3)
