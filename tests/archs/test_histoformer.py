"""Histoformer (ECCV 2024): golden output, detection/loading, full-size layout, round trips, DHSA details."""

from __future__ import annotations


import pytest
import spandrel
import torch
from spandrel import ArchRegistry, ArchSupport, ModelTiling

from restore.models.archs._base import info_for, registered
from restore.models.archs.histoformer import (
    DualScaleGatedFeedForward,
    Histoformer,
    HistoformerArch,
    HistogramAttention,
    infer_params,
    softmax_1,
)
from tests.golden import assert_golden, assert_official_layout, load_golden, meta_state_dict, official_configs

NAME = "histoformer"
OTHERS = ["restormer", "restormer_dualpixel", "drsformer", "drsformer_nomefc"]


@pytest.fixture(scope="module")
def golden():
    return load_golden(NAME)


def test_golden(golden):
    config, weights, io = golden
    model = Histoformer(**config["kwargs"])
    model.load_state_dict(weights, strict=True)
    model.eval()
    x = io["input"].clone()
    assert_golden(model, [x if k == "input" else io[k] for k in config["forward_args"]], io["output"], config["atol"])
    assert torch.equal(x, io["input"])  # the in-place sort of the official code does not leak out


def test_detect_and_load(golden):
    config, weights, io = golden
    assert HistoformerArch.detect(weights)
    assert infer_params(weights) == config["kwargs"]
    desc = HistoformerArch.load(dict(weights))
    assert desc.model.hyperparameters == config["kwargs"]
    assert desc.purpose == "Restoration" and desc.scale == 1
    assert desc.input_channels == desc.output_channels == 3
    assert desc.size_requirements.multiple_of == 8
    assert desc.tiling == ModelTiling.DISCOURAGED  # global channel attention: tiles change the output (benchmarks/arch_tiling.py)
    assert not desc.supports_half and not desc.supports_bfloat16
    assert_golden(desc.model, [io["input"]], io["output"], config["atol"])


@pytest.mark.parametrize("name", OTHERS)
def test_other_fixtures_not_detected(name):
    _, weights, _ = load_golden(name)
    assert not HistoformerArch.detect(weights)


def test_registry_resolution(golden):
    _, weights, _ = golden
    # nothing in spandrel's registry but (once wired in) Histoformer itself claims the weights
    claimed = {str(a.architecture.id) for a in spandrel.MAIN_REGISTRY if a.architecture.detect(weights)}
    assert claimed <= {"Histoformer"}, claimed
    reg = ArchRegistry()
    reg.add(*spandrel.MAIN_REGISTRY)
    reg.add(*[ArchSupport.from_architecture(e.arch, e.before) for e in registered().values()], ignore_duplicates=True)
    assert reg.load({"params": dict(weights)}).architecture.id == "Histoformer"


def test_full_size_layout(golden):
    config, _, _ = golden
    (cfg,) = official_configs(NAME).values()
    assert cfg["kwargs"] == config["official_default_kwargs"]
    with torch.device("meta"):
        model = Histoformer(**cfg["kwargs"])
        default = Histoformer()
    assert_official_layout(model, cfg)
    # the class defaults are the released configuration (yml), not the official class defaults
    assert default.hyperparameters == cfg["kwargs"]
    meta = meta_state_dict(cfg["state_dict"])
    assert HistoformerArch.detect(meta)
    assert infer_params(meta) == cfg["kwargs"]
    for name in ("restormer", "drsformer", "drsformer_nomefc"):
        for other in official_configs(name).values():
            assert not HistoformerArch.detect(meta_state_dict(other["state_dict"]))


VARIANTS = [
    dict(
        inp_channels=3,
        out_channels=3,
        dim=8,
        num_blocks=[1, 2, 1, 1],
        num_refinement_blocks=2,
        heads=[2, 2, 4, 4],
        ffn_expansion_factor=2.0,
        bias=True,
        LayerNorm_type="WithBias",
        dual_pixel_task=False,
    ),
    dict(
        inp_channels=3,
        out_channels=3,
        dim=6,
        num_blocks=[1, 1, 1, 1],
        num_refinement_blocks=0,
        heads=[1, 3, 3, 3],
        ffn_expansion_factor=4.0,
        bias=False,
        LayerNorm_type="WithBias",
        dual_pixel_task=True,
    ),
]


@pytest.mark.parametrize("kwargs", VARIANTS, ids=["bias-refine2", "dualpixel-heads3"])
def test_round_trip(kwargs):
    torch.manual_seed(0)
    model = Histoformer(**kwargs)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    model.eval()
    sd = model.state_dict()
    assert HistoformerArch.detect(sd)
    assert infer_params(sd) == kwargs
    desc = HistoformerArch.load(sd)
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(desc.model(x), model(x), rtol=0, atol=1e-6)


def test_softmax_1():
    x = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    expected = x.exp() / (x.exp().sum(-1, keepdim=True) + 1)
    torch.testing.assert_close(softmax_1(x), expected)
    assert (softmax_1(x).sum(-1) < 1).all()


def test_attention_keeps_input_and_handles_padding():
    torch.manual_seed(0)
    attn = HistogramAttention(12, 4, bias=False).eval()  # 4 bins: 2x3 = 6 positions padded to 8
    x = torch.randn(1, 12, 2, 3)
    before = x.clone()
    with torch.no_grad():
        out = attn(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(x, before)


def test_ffn_hidden_multiple_of_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        DualScaleGatedFeedForward(48, 2.66, False)  # the official class default: hidden 127


def test_bad_inputs():
    model = Histoformer(dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=0, heads=[1, 1, 1, 1],
                        ffn_expansion_factor=2.0).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 16)).shape == (1, 3, 8, 16)
        with pytest.raises(ValueError, match="multiples of 8"):
            model(torch.rand(1, 3, 12, 16))
        with pytest.raises(ValueError, match="input channels"):
            model(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError):
        Histoformer(inp_channels=1, out_channels=1)


def test_registered_info():
    entry = registered()["Histoformer"]
    assert entry.arch is HistoformerArch and "Restormer" in entry.before
    info = info_for("Histoformer")
    assert info is not None and info.task == "weather" and info.output_range == "clamped"
    assert info.overlap == 32
