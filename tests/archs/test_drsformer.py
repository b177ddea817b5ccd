"""DRSformer (CVPR 2023), with and without MEFC: golden outputs, detection/loading, layouts, round trips."""

from __future__ import annotations


import pytest
import spandrel
import torch
from spandrel import ArchRegistry, ArchSupport, ModelTiling

from restore.models.archs._base import info_for, registered
from restore.models.archs.drsformer import (
    DRSformer,
    DRSformerArch,
    DRSformerNoMEFCArch,
    TopKSparseAttention,
    infer_params,
    topk_sizes,
)
from tests.golden import assert_golden, assert_official_layout, load_golden, meta_state_dict, official_configs

# fixture -> (mefc flag, architecture that must claim it)
FIXTURES = {"drsformer": True, "drsformer_nomefc": False}
OTHERS = ["restormer", "restormer_dualpixel", "histoformer"]


def _arch(mefc: bool):
    return DRSformerArch if mefc else DRSformerNoMEFCArch


@pytest.mark.parametrize("name", FIXTURES)
def test_golden(name):
    config, weights, io = load_golden(name)
    model = DRSformer(**config["kwargs"], mefc=FIXTURES[name])
    model.load_state_dict(weights, strict=True)
    model.eval()
    assert_golden(model, [io[k] for k in config["forward_args"]], io["output"], config["atol"])


@pytest.mark.parametrize("name", FIXTURES)
def test_detect_and_load(name):
    config, weights, io = load_golden(name)
    mefc = FIXTURES[name]
    arch, other = _arch(mefc), _arch(not mefc)
    assert arch.detect(weights)
    assert not other.detect(weights)  # MEFC and no-MEFC are told apart by detection
    expected = {**config["kwargs"], "mefc": mefc}
    assert infer_params(weights) == expected
    desc = arch.load(dict(weights))
    assert desc.model.hyperparameters == expected
    assert desc.purpose == "Restoration" and desc.scale == 1
    assert desc.input_channels == desc.output_channels == 3
    assert desc.size_requirements.multiple_of == 8
    assert desc.tiling == ModelTiling.DISCOURAGED  # global channel attention: tiles change the output (benchmarks/arch_tiling.py)
    assert not desc.supports_half and not desc.supports_bfloat16
    assert_golden(desc.model, [io[k] for k in config["forward_args"]], io["output"], config["atol"])
    with pytest.raises(ValueError, match="variant"):
        other.load(dict(weights))


@pytest.mark.parametrize("name", OTHERS)
def test_other_fixtures_not_detected(name):
    _, weights, _ = load_golden(name)
    assert not DRSformerArch.detect(weights)
    assert not DRSformerNoMEFCArch.detect(weights)


def test_registry_resolution():
    reg = ArchRegistry()
    reg.add(*spandrel.MAIN_REGISTRY)
    reg.add(*[ArchSupport.from_architecture(e.arch, e.before) for e in registered().values()], ignore_duplicates=True)
    for name, mefc in FIXTURES.items():
        _, weights, _ = load_golden(name)
        # nothing in spandrel's registry but (once wired in) this very architecture claims the weights
        claimed = {str(a.architecture.id) for a in spandrel.MAIN_REGISTRY if a.architecture.detect(weights)}
        assert claimed <= {str(_arch(mefc).id)}, claimed
        assert reg.load({"params": dict(weights)}).architecture.id == _arch(mefc).id


def test_full_size_layouts():
    for name, mefc in FIXTURES.items():
        (cfg,) = official_configs(name).values()
        with torch.device("meta"):
            model = DRSformer(**cfg["kwargs"], mefc=mefc)
        assert_official_layout(model, cfg, name)
        meta = meta_state_dict(cfg["state_dict"])
        assert _arch(mefc).detect(meta) and not _arch(not mefc).detect(meta)
        assert infer_params(meta) == {**cfg["kwargs"], "mefc": mefc}
        with torch.device("meta"):
            default = DRSformer(mefc=mefc)
        assert default.hyperparameters == {**cfg["kwargs"], "mefc": mefc}
    for name in ("restormer", "histoformer"):
        for cfg in official_configs(name).values():
            meta = meta_state_dict(cfg["state_dict"])
            assert not DRSformerArch.detect(meta) and not DRSformerNoMEFCArch.detect(meta)


def test_topk_sizes_and_hidden():
    assert topk_sizes(48) == (24, 32, 36, 38)
    assert topk_sizes(96) == (48, 64, 72, 76)
    assert TopKSparseAttention(48, 1, False).topk == (24, 32, 36, 38)
    with pytest.raises(ValueError):
        TopKSparseAttention(8, 8, False)  # one channel per head: int(1/2) == 0


VARIANTS = [
    dict(
        inp_channels=3,
        out_channels=3,
        dim=4,
        num_blocks=[1, 1, 1, 1],
        heads=[1, 2, 2, 4],
        ffn_expansion_factor=2.0,
        bias=True,
        LayerNorm_type="BiasFree",
        mefc=True,
    ),
    dict(
        inp_channels=1,
        out_channels=1,
        dim=6,
        num_blocks=[2, 1, 0, 1],
        heads=[3, 2, 4, 6],
        ffn_expansion_factor=1.5,
        bias=False,
        LayerNorm_type="WithBias",
        mefc=False,
    ),
    dict(
        inp_channels=3,
        out_channels=3,
        dim=8,
        num_blocks=[1, 2, 1, 1],
        heads=[2, 2, 4, 4],
        ffn_expansion_factor=2.66,
        bias=False,
        LayerNorm_type="WithBias",
        mefc=False,
    ),
]


@pytest.mark.parametrize("kwargs", VARIANTS, ids=["mefc-bias-biasfree", "gray-zero-level3", "dim8"])
def test_round_trip(kwargs):
    torch.manual_seed(0)
    model = DRSformer(**kwargs)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    model.eval()
    sd = model.state_dict()
    arch = _arch(kwargs["mefc"])
    assert arch.detect(sd) and not _arch(not kwargs["mefc"]).detect(sd)
    # level 3 has no blocks in one variant: its head count is unobservable and falls back to 4
    assert infer_params(sd) == kwargs
    desc = arch.load(sd)
    x = torch.rand(1, kwargs["inp_channels"], 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(desc.model(x), model(x), rtol=0, atol=1e-6)


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


def test_registered_info():
    for arch in (DRSformerArch, DRSformerNoMEFCArch):
        entry = registered()[str(arch.id)]
        assert entry.arch is arch and "Restormer" in entry.before
        info = info_for(arch.id)
        assert info is not None and info.task == "derain" and info.output_range == "clamped"
        assert info.overlap == 32
