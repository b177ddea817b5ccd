"""Rawformer generator (ViTRawNetGenerator): golden fixture, detection, inference, full-size layout."""

from __future__ import annotations

import json

import pytest
import spandrel
import torch

from restore.models.archs._base import info_for
from restore.models.archs.rawformer import (
    ARCH,
    OFFICIAL_DEFAULT_KWARGS,
    ViTRawNetGenerator,
    infer_params,
    load_rawformer,
)
from tests.golden import assert_golden, assert_official_layout, load_golden, meta_state_dict, shared_path

# not recoverable from a state dict (documented in infer_params)
UNRECOVERABLE = {"n_heads"}


def _norm(kw: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}


def _run(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def _jitter(model: torch.nn.Module, seed: int) -> None:
    """Make every parameter matter (rezero scalars start at 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("re_alpha"):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=g))
            else:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def test_golden():
    config, weights, io = load_golden("rawformer")
    model = ViTRawNetGenerator(**config["kwargs"])
    model.load_state_dict(weights, strict=True)
    for key in config["output_keys"]:
        assert_golden(model.eval(), [io[k] for k in config["forward_args"]], io[key], config["atol"])


def test_detect_and_load():
    config, weights, io = load_golden("rawformer")
    assert ARCH.detect(weights)
    kw = infer_params(weights)
    expected = _norm(config["kwargs"])
    got = _norm(kw)
    assert {k: v for k, v in got.items() if k not in UNRECOVERABLE} == {
        k: v for k, v in expected.items() if k not in UNRECOVERABLE
    }
    # the non-square 8x12 bottleneck grid comes from the x_const/y_const values
    assert kw["input_shape"] == (3, 32, 48)

    desc = ARCH.load(weights)
    assert desc.purpose == "Restoration" and desc.scale == 1
    assert desc.input_channels == 3 and desc.output_channels == 3
    assert desc.size_requirements.check(48, 32)
    assert not desc.supports_half
    assert _run(desc.model, io["input"]).shape == io["output"].shape

    # n_heads is not in the weights: with the fixture's value the output is reproduced exactly
    desc2 = load_rawformer(weights, n_heads=config["kwargs"]["n_heads"])
    assert_golden(desc2.model.eval(), [io["input"]], io["output"], config["atol"])


def test_other_fixtures_not_detected():
    for name in ("rrformer", "rrformer_swinir"):
        _, other, _ = load_golden(name)
        assert not ARCH.detect(other)
    # spandrel's own registry does not claim Rawformer weights, so no `before=` is needed
    _, weights, _ = load_golden("rawformer")
    # (restore registers its own architectures into MAIN_REGISTRY: only this one may claim them)
    claims = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures() if a.architecture.detect(weights)]
    assert claims == [ARCH.id]


def test_arch_info():
    info = info_for(str(ARCH.id))
    assert info is not None
    assert info.task == "raw-to-raw" and info.input_encoding == "raw-rgb"
    assert info.output_range == "sigmoid" and info.fixed_size


def test_full_size_layout():
    data = json.loads(shared_path("golden", "rawformer", "official_state_dict.json").read_text())
    (cfg,) = data["configs"].values()
    assert _norm(OFFICIAL_DEFAULT_KWARGS) == cfg["kwargs"]
    with torch.device("meta"):
        model = ViTRawNetGenerator()
    assert_official_layout(model, cfg)

    meta_sd = meta_state_dict(cfg["state_dict"])
    assert ARCH.detect(meta_sd)
    assert _norm(infer_params(meta_sd)) == cfg["kwargs"]


VARIANTS = [
    # official-style defaults for the unrecoverable kwargs: plain ARCH.load round-trips
    dict(features=12, n_heads=6, n_blocks=2, ffn_features=20, embed_features=6, input_shape=(3, 16, 16),
         output_shape=(3, 16, 16), modnet_features_list=(4, 6), modnet_downsample="conv3",
         modnet_upsample="deconv", modnet_rezero=True, style_bias=False, rezero=False, n_ext=2,
         rawnet_token_size=4),
    # non-square grid, 4-channel input, token size 2 and 2 heads (need overrides)
    dict(features=8, n_heads=2, n_blocks=1, ffn_features=16, embed_features=4, norm=None,
         input_shape=(4, 12, 8), output_shape=(4, 12, 8), modnet_features_list=(6,), style_rezero=False,
         n_ext=1, rawnet_token_size=2),
]


@pytest.mark.parametrize("variant", range(len(VARIANTS)))
def test_round_trip(variant: int):
    kwargs = dict(OFFICIAL_DEFAULT_KWARGS, **VARIANTS[variant])
    torch.manual_seed(variant)
    model = ViTRawNetGenerator(**kwargs)
    _jitter(model, variant)
    sd = model.state_dict()
    x = torch.rand(2, *kwargs["input_shape"])
    ref = _run(model, x)

    assert ARCH.detect(sd)
    overrides = {}
    if variant == 1:
        overrides = {"n_heads": 2, "rawnet_token_size": 2}
        inferred = infer_params(sd)
        assert inferred["rawnet_token_size"] == 2  # 6x4 grid cannot be tiled by 4 -> largest size that fits
        assert inferred["n_heads"] != 2
    assert _norm(infer_params(sd, **overrides)) == _norm(kwargs)
    desc = load_rawformer(sd, **overrides) if overrides else ARCH.load(sd)
    out = _run(desc.model, x)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)
    assert ((out > 0) & (out < 1)).all()


def test_wrong_input_size():
    config, weights, io = load_golden("rawformer")
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
