"""Rawformer specifics the contract (test_contract.py) cannot express: the head count no state dict
holds (defaults, overrides, a bare .pth), the non-square positional grid, fixed input size,
construction checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import restore
from restore.models.archs.rawformer import ARCH, OFFICIAL_DEFAULT_KWARGS, ViTRawNetGenerator, infer_params, load_rawformer
from tests.golden import assert_golden, load_golden, official_configs


def _norm(kw: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}


def _run(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def test_official_preset():
    (cfg,) = official_configs("rawformer").values()
    assert _norm(OFFICIAL_DEFAULT_KWARGS) == cfg["kwargs"]


def test_load_without_the_head_count():
    _, weights, io = load_golden("rawformer")
    kw = infer_params(weights)
    assert kw["input_shape"] == (3, 32, 48)  # the non-square 8x12 grid comes from the x_const/y_const values
    desc = ARCH.load(weights)  # a default head count: runs, the output differs from the golden one
    assert _run(desc.model, io["input"]).shape == io["output"].shape


def test_load_model_bare_pth(tmp_path: Path):
    """The ViT head count (nn.MultiheadAttention) leaves no trace in the weights: in_proj is (3*features,
    features) for any n_heads.  load_model assumes the official preset's 6, or the largest divisor of
    ``features`` <= 6 (4 for this fixture's 16 features), while the fixture was built with n_heads=2.
    Everything stored in the weights is inferred; supplying n_heads reproduces the output."""
    config, weights, io = load_golden("rawformer")
    path = tmp_path / "rawformer.pth"
    torch.save(dict(weights), path)  # rawformer/cgan/checkpoint.py: the state dict as is
    model = restore.load_model(path)
    assert model.arch == "Rawformer" and set(model.module.state_dict()) == set(weights)
    hp = model.module.hyperparameters
    for k, v in config["kwargs"].items():
        if k != "n_heads":
            assert hp[k] == (tuple(v) if isinstance(v, list) else v), k
    assert hp["n_heads"] == 4 != config["kwargs"]["n_heads"]
    desc = load_rawformer(dict(model.module.state_dict()), n_heads=config["kwargs"]["n_heads"])
    assert_golden(desc.model.eval(), [io[k] for k in config["forward_args"]], io["output"], config["atol"])


def test_round_trip_with_overrides():
    """Non-square grid, 4-channel input, token size 2 and 2 heads: the head count and token size need overrides."""
    kwargs = dict(OFFICIAL_DEFAULT_KWARGS, features=8, n_heads=2, n_blocks=1, ffn_features=16, embed_features=4, norm=None,
                  input_shape=(4, 12, 8), output_shape=(4, 12, 8), modnet_features_list=(6,), style_rezero=False,
                  n_ext=1, rawnet_token_size=2)
    torch.manual_seed(1)
    model = ViTRawNetGenerator(**kwargs)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("re_alpha"):  # rezero scalars start at 0: make every parameter matter
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=g))
            else:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    sd = model.state_dict()
    x = torch.rand(2, *kwargs["input_shape"])
    ref = _run(model, x)
    assert ARCH.detect(sd)
    inferred = infer_params(sd)
    assert inferred["rawnet_token_size"] == 2  # 6x4 grid cannot be tiled by 4 -> largest size that fits
    assert inferred["n_heads"] != 2
    overrides = {"n_heads": 2, "rawnet_token_size": 2}
    assert _norm(infer_params(sd, **overrides)) == _norm(kwargs)
    out = _run(load_rawformer(sd, **overrides).model, x)
    assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-5, rtol=0)
    assert ((out > 0) & (out < 1)).all()


def test_wrong_input_size():
    config, weights, _ = load_golden("rawformer")
    model = ViTRawNetGenerator(**config["kwargs"])
    model.load_state_dict(weights, strict=True)
    with pytest.raises(ValueError, match="fixed size 32x48"):
        _run(model, torch.rand(1, 3, 48, 32))
    with pytest.raises(ValueError):
        _run(model, torch.rand(1, 4, 32, 48))


def test_bad_construction():
    with pytest.raises(ValueError):
        ViTRawNetGenerator(input_shape=(3, 40, 40), output_shape=(3, 40, 40), modnet_features_list=(4, 8))
    with pytest.raises(ValueError):
        ViTRawNetGenerator(input_shape=(3, 32, 32), output_shape=(3, 32, 48))
    with pytest.raises(ValueError):
        infer_params({"net.layer_input.0.weight": torch.zeros(8, 3, 3, 3)})
