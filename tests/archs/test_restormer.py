"""Restormer (CVPR 2022): golden outputs, detection/loading, full-size layouts, round trips, input checks."""

from __future__ import annotations


import pytest
import spandrel
import torch
from spandrel import ArchRegistry, ArchSupport, ModelTiling

from restore.models.archs._base import info_for, registered
from restore.models.archs.restormer_base import (
    LayerNorm,
    Restormer,
    RestormerArch,
    infer_ffn_expansion_factor,
    infer_params,
)
from tests.golden import assert_golden, assert_official_layout, load_golden, meta_state_dict, official_configs

FIXTURES = ["restormer", "restormer_dualpixel"]
OTHERS = ["drsformer", "drsformer_nomefc", "histoformer"]


def _perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@pytest.mark.parametrize("name", FIXTURES)
def test_golden(name):
    config, weights, io = load_golden(name)
    model = Restormer(**config["kwargs"])
    model.load_state_dict(weights, strict=True)
    model.eval()
    assert_golden(model, [io[k] for k in config["forward_args"]], io["output"], config["atol"])


@pytest.mark.parametrize("name", FIXTURES)
def test_detect_and_load(name):
    config, weights, io = load_golden(name)
    assert RestormerArch.detect(weights)
    assert infer_params(weights) == config["kwargs"]
    desc = RestormerArch.load(dict(weights))
    assert desc.model.hyperparameters == config["kwargs"]
    assert desc.architecture is RestormerArch
    assert desc.purpose == "Restoration" and desc.scale == 1
    assert desc.input_channels == config["kwargs"]["inp_channels"]
    assert desc.output_channels == config["kwargs"]["out_channels"]
    assert desc.size_requirements.multiple_of == 8
    assert desc.tiling == ModelTiling.DISCOURAGED  # global channel attention: tiles change the output (benchmarks/arch_tiling.py)
    assert not desc.supports_half
    assert_golden(desc.model, [io[k] for k in config["forward_args"]], io["output"], config["atol"])


@pytest.mark.parametrize("name", OTHERS)
def test_other_fixtures_not_detected(name):
    _, weights, _ = load_golden(name)
    assert not RestormerArch.detect(weights)


def test_registry_resolution():
    for name in FIXTURES:
        _, weights, _ = load_golden(name)
        # nothing in spandrel's registry but (once wired in) Restormer itself claims the weights
        claimed = {str(a.architecture.id) for a in spandrel.MAIN_REGISTRY if a.architecture.detect(weights)}
        assert claimed <= {"Restormer"}, claimed
    # a registry holding spandrel's architectures plus ours resolves to Restormer,
    # also through the basicsr {'params': ...} wrapper
    reg = ArchRegistry()
    reg.add(*spandrel.MAIN_REGISTRY)
    reg.add(*[ArchSupport.from_architecture(e.arch, e.before) for e in registered().values()], ignore_duplicates=True)
    _, weights, _ = load_golden("restormer_dualpixel")
    assert reg.load({"params": dict(weights)}).architecture.id == "Restormer"


def test_full_size_layouts():
    configs = official_configs("restormer")
    assert len(configs) == 4  # WithBias, BiasFree, gray, dual-pixel
    for label, cfg in configs.items():
        with torch.device("meta"):
            model = Restormer(**cfg["kwargs"])
        assert_official_layout(model, cfg, label)
        meta = meta_state_dict(cfg["state_dict"])
        assert RestormerArch.detect(meta), label
        assert infer_params(meta) == cfg["kwargs"], label
    # the official *class* defaults are the deraining / deblurring configuration
    with torch.device("meta"):
        default = Restormer()
    assert default.hyperparameters == next(iter(configs.values()))["kwargs"]


def test_other_full_size_layouts_not_detected():
    for name in ("drsformer", "drsformer_nomefc", "histoformer"):
        for cfg in official_configs(name).values():
            assert not RestormerArch.detect(meta_state_dict(cfg["state_dict"]))


VARIANTS = [
    dict(
        inp_channels=1,
        out_channels=1,
        dim=8,
        num_blocks=[1, 2, 1, 2],
        num_refinement_blocks=2,
        heads=[2, 2, 4, 4],
        ffn_expansion_factor=2.0,
        bias=True,
        LayerNorm_type="BiasFree",
        dual_pixel_task=False,
    ),
    dict(
        inp_channels=6,
        out_channels=3,
        dim=4,
        num_blocks=[1, 1, 1, 1],
        num_refinement_blocks=0,
        heads=[1, 1, 2, 2],
        ffn_expansion_factor=1.5,
        bias=False,
        LayerNorm_type="WithBias",
        dual_pixel_task=True,
    ),
    dict(
        inp_channels=3,
        out_channels=3,
        dim=12,
        num_blocks=[2, 1, 1, 1],
        num_refinement_blocks=1,
        heads=[3, 3, 6, 12],
        ffn_expansion_factor=2.66,
        bias=False,
        LayerNorm_type="WithBias",
        dual_pixel_task=False,
    ),
]


@pytest.mark.parametrize("kwargs", VARIANTS, ids=["gray-biasfree-bias", "dualpixel", "dim12-heads3"])
def test_round_trip(kwargs):
    torch.manual_seed(0)
    model = _perturbed(Restormer(**kwargs), 1)
    sd = model.state_dict()
    assert RestormerArch.detect(sd)
    assert infer_params(sd) == kwargs
    desc = RestormerArch.load(sd)
    x = torch.rand(1, kwargs["inp_channels"], 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(desc.model(x), model(x), rtol=0, atol=1e-6)


def test_infer_ffn_expansion_factor():
    assert infer_ffn_expansion_factor([(48, 127), (96, 255)], (2.66, 2.667)) == 2.66
    assert infer_ffn_expansion_factor([(36, 96), (72, 192)], (2.667, 2.66)) == 2.667
    assert infer_ffn_expansion_factor([(8, 16), (16, 32)]) == 2.0
    f = infer_ffn_expansion_factor([(10, 31), (20, 62), (40, 124)])  # 3.1 - 3.125
    assert all(int(w * f) == h for w, h in [(10, 31), (20, 62), (40, 124)])
    with pytest.raises(ValueError):
        infer_ffn_expansion_factor([(8, 16), (16, 40)])


def test_layernorm_variants():
    x = torch.randn(2, 5, 3, 4)
    ln = LayerNorm(5, "WithBias")
    ref = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (5,), eps=1e-5).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), ref)
    assert set(ln.state_dict()) == {"body.weight", "body.bias"}
    assert set(LayerNorm(5, "BiasFree").state_dict()) == {"body.weight"}
    assert LayerNorm(5, "WithBias", affine=False).state_dict() == {}
    bf = LayerNorm(5, "BiasFree")(x)
    torch.testing.assert_close(bf, x / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5))


def test_bad_inputs():
    model = Restormer(dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=0, heads=[1, 1, 1, 1]).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 16)).shape == (1, 3, 8, 16)
        with pytest.raises(ValueError, match="multiples of 8"):
            model(torch.rand(1, 3, 20, 24))
        with pytest.raises(ValueError, match="input channels"):
            model(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError):
        Restormer(dim=8, heads=[3, 2, 4, 8])
    with pytest.raises(ValueError):
        Restormer(inp_channels=6, out_channels=3)  # residual needs equal channels unless dual-pixel


def test_registered_info():
    assert "Restormer" in registered()
    info = info_for("Restormer")
    assert info is not None and info.task == "restoration" and info.output_range == "clamped"
    assert info.overlap == 32
