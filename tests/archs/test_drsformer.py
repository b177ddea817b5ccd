"""DRSformer specifics the contract (test_contract.py) cannot express: the MEFC variants refuse each
other's weights, top-k sizes, input checks, and a pipeline model step on an official checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import restore
from restore.models.archs.drsformer import DRSformer, DRSformerArch, DRSformerNoMEFCArch, TopKSparseAttention, topk_sizes
from tests.golden import load_golden


@pytest.mark.parametrize(("name", "arch", "other"), [("drsformer", DRSformerArch, DRSformerNoMEFCArch),
                                                     ("drsformer_nomefc", DRSformerNoMEFCArch, DRSformerArch)])
def test_the_other_variant_refuses_to_load(name, arch, other):
    _, weights, _ = load_golden(name)
    assert arch.detect(weights) and not other.detect(weights)
    with pytest.raises(ValueError, match="variant"):
        other.load(dict(weights))


def test_topk_sizes_and_hidden():
    assert topk_sizes(48) == (24, 32, 36, 38)
    assert topk_sizes(96) == (48, 64, 72, 76)
    assert TopKSparseAttention(48, 1, False).topk == (24, 32, 36, 38)
    with pytest.raises(ValueError):
        TopKSparseAttention(8, 8, False)  # one channel per head: int(1/2) == 0


def test_bad_inputs():
    model = DRSformer(dim=4, num_blocks=[1, 1, 1, 1], heads=[1, 1, 1, 1], mefc=False).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)
        with pytest.raises(ValueError, match="multiples of 8"):
            model(torch.rand(1, 3, 12, 16))
        with pytest.raises(ValueError, match="input channels"):
            model(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError):
        DRSformer(inp_channels=3, out_channels=1)


def test_drsformer_pipeline(tmp_path: Path):
    """DRSformer through a pipeline model step: whole image (tile 0) equals the module; tiled runs."""
    config, weights, _ = load_golden("drsformer")
    path = tmp_path / "drsformer.pth"
    torch.save({"params": dict(weights)}, path)  # basicsr's layout
    rng = np.random.default_rng(3)
    img = rng.random((24, 32, 3), dtype=np.float32)
    whole = restore.load_pipeline({"version": 1, "steps": [{"model": {"name": str(path), "tile": 0}}]})
    out = whole(img)
    module = restore.load_model(path).module
    with torch.no_grad():
        direct = module(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    # DRSformer's output range is "clamped": the model step clips to [0, 1] (sRGB in, sRGB out)
    expected = np.clip(direct, 0.0, 1.0)
    assert out.dtype == np.float32 and out.shape == (24, 32, 3)
    assert np.abs(out - expected).max() <= config["atol"]
    # Tiled: DRSformer's channel attention is global per tile, so tiles cannot reproduce the
    # whole-image output; only check that tiling runs and gives a sane image.
    tiled = restore.load_pipeline({"version": 1, "steps": [{"model": {"name": str(path), "tile": 16, "overlap": 4}}]})
    t = tiled(img)
    assert t.shape == (24, 32, 3) and t.dtype == np.float32
    assert np.isfinite(t).all() and t.min() >= 0.0 and t.max() <= 1.0
