"""HDR-Transformer (CA-ViT, ECCV 2022): golden output, detection/loading, full-size layout, buffers."""

from __future__ import annotations

import json

import pytest
import spandrel
import torch
from spandrel import ArchSupport, ModelTiling

from restore.models.archs import _swin
from restore.models.archs._base import info_for, registered
from restore.models.archs.hdr_transformer import (
    HDRTransformer,
    HDRTransformerArch,
    filter_state_dict,
    infer_params,
)
from tests.golden import assert_close, assert_golden, assert_official_layout, load_golden, meta_state_dict, shared_path

NAME = "hdr_transformer"
STRUCT_KEYS = ("img_size", "patch_size", "in_chans", "embed_dim", "depths", "num_heads", "window_size", "mlp_ratio")


def _frames(io, config):
    return [io[k] for k in config["forward_args"]]


def _same_kwargs(inferred: dict, expected: dict, keys) -> None:
    for k in keys:
        got, want = inferred[k], expected[k]
        if k == "img_size":
            got, want = _swin.to_2tuple(got), _swin.to_2tuple(want)
        if isinstance(want, (list, tuple)):
            got, want = list(got), list(want)
        assert got == want, f"{k}: inferred {got!r}, expected {want!r}"


@pytest.fixture(scope="module")
def golden():
    return load_golden(NAME)


@pytest.fixture(scope="module")
def golden_model(golden):
    config, weights, _ = golden
    model = HDRTransformer(**config["kwargs"])
    model.load_state_dict(weights, strict=True)
    return model.eval()


def test_golden_three_frames_and_stacked(golden, golden_model):
    config, _, io = golden
    frames = _frames(io, config)
    out = assert_golden(golden_model, frames, io["output"], config["atol"])
    with torch.no_grad():
        stacked = golden_model(torch.cat(frames, dim=1))
    assert_close(stacked, out, 0.0)


def test_detect_load_and_prefix(golden):
    config, weights, io = golden
    arch = HDRTransformerArch
    assert arch.detect(weights)
    desc = arch.load(dict(weights))
    _same_kwargs(infer_params(weights), config["kwargs"], config["kwargs"].keys())
    assert desc.input_channels == 18 and desc.output_channels == 3 and desc.scale == 1
    assert desc.purpose == "Restoration" and desc.tiling == ModelTiling.SUPPORTED
    assert desc.size_requirements.multiple_of == config["kwargs"]["window_size"]
    assert not desc.supports_half
    assert_golden(desc.model.eval(), _frames(io, config), io["output"], config["atol"])

    # Released layout: {'epoch', 'state_dict': DataParallel keys, 'optimizer'}.
    ckpt = {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in weights.items()}, "optimizer": {}}
    canon = spandrel.canonicalize_state_dict(ckpt)
    assert set(canon) == set(weights)
    assert arch.detect(canon)
    assert_golden(arch.load(canon).model.eval(), _frames(io, config), io["output"], config["atol"])


def test_other_model_not_detected():
    _, sct_weights, _ = load_golden("sctnet")
    assert not HDRTransformerArch.detect(sct_weights)


def test_registry_order_claims_state_dict(golden):
    _, weights, _ = golden
    entry = registered()["HDRTransformer"]
    claimers = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures("detection") if a.detect(weights)]
    assert set(claimers) <= set(entry.before) | {"HDRTransformer"}, claimers
    reg = spandrel.MAIN_REGISTRY.copy()
    if "HDRTransformer" not in reg:
        reg.add(ArchSupport.from_architecture(entry.arch, before=entry.before))
    desc = reg.load({"state_dict": {f"module.{k}": v for k, v in weights.items()}})
    assert desc.architecture.id == "HDRTransformer"
    info = info_for("HDRTransformer")
    assert info is not None and info.frames == 3 and info.task == "hdr-merge"
    assert info.overlap >= infer_params(weights)["window_size"]


def test_full_size_layout_on_meta():
    spec = json.loads(shared_path("golden", NAME, "official_state_dict.json").read_text())
    (cfg,) = spec["configs"].values()
    official = cfg["state_dict"]
    with torch.device("meta"):
        model = HDRTransformer(**cfg["kwargs"])
    assert_official_layout(model, cfg)

    meta_sd = meta_state_dict(official)
    assert HDRTransformerArch.detect(meta_sd)
    inferred = infer_params(meta_sd)
    _same_kwargs(inferred, cfg["kwargs"], [k for k in inferred if k in cfg["kwargs"]])


def test_mask_recomputed_for_other_sizes(golden):
    config, weights, _ = golden
    torch.manual_seed(0)
    frames = [torch.rand(1, 6, 48, 64) for _ in range(3)]
    small = HDRTransformer(**config["kwargs"]).eval()
    small.load_state_dict(weights, strict=True)
    big_kwargs = dict(config["kwargs"], img_size=(48, 64))
    big = HDRTransformer(**big_kwargs).eval()
    with pytest.raises(RuntimeError):
        big.load_state_dict(weights, strict=True)  # attn_mask shapes differ
    big.load_state_dict(filter_state_dict(weights, big), strict=True)
    blk = big.layers[0].residual_group.blocks[1]
    assert blk.attn_mask.shape == (48 * 64 // 64, 64, 64)
    with torch.no_grad():
        a = small(*frames)  # computed mask path
        b = big(*frames)  # stored mask path
    assert_close(a, b, 1e-6)

    # The (48, 64) checkpoint: img_size recovered from the mask values, strict load.
    sd = big.state_dict()
    assert infer_params(sd)["img_size"] == (48, 64)
    with torch.no_grad():
        assert_close(HDRTransformerArch.load(sd).model.eval()(*frames), b, 0.0)

    # Dropping the buffers is the other way round: non-strict load, same network.
    other = HDRTransformer(**config["kwargs"]).eval()
    missing, unexpected = other.load_state_dict(_swin.drop_swin_buffers(weights), strict=False)
    assert not unexpected and all(k.endswith((".attn_mask", ".relative_position_index")) for k in missing)


def test_stored_mask_equals_computed(golden_model):
    blk = golden_model.layers[1].residual_group.blocks[1]
    assert torch.equal(blk.attn_mask, _swin.compute_attn_mask((32, 32), 8, 4))
    assert torch.equal(blk.attn.relative_position_index, _swin.relative_position_index((8, 8)))


def test_errors(golden_model):
    with torch.no_grad(), pytest.raises(ValueError, match="multiples of window_size"):
        golden_model(*[torch.rand(1, 6, 36, 40) for _ in range(3)])
    with pytest.raises(ValueError):
        golden_model(torch.rand(1, 6, 32, 32), torch.rand(1, 6, 32, 32))
    with pytest.raises(ValueError):
        golden_model(torch.rand(1, 12, 32, 32))
    with pytest.raises(ValueError):
        golden_model(torch.rand(1, 6, 32, 32), torch.rand(1, 6, 32, 32), torch.rand(1, 6, 32, 40))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(img_size=(16, 24), embed_dim=16, depths=[2, 1, 3], num_heads=[2, 4, 1], window_size=4,
             mlp_ratio=1.5, resi_connection="3conv", qkv_bias=False),
        dict(img_size=16, in_chans=4, embed_dim=24, depths=[3], num_heads=[3], window_size=8,
             mlp_ratio=3.0, ape=True, patch_norm=False),
    ],
)
def test_round_trip_variants(kwargs):
    torch.manual_seed(1)
    model = HDRTransformer(**kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    sd = model.state_dict()
    assert HDRTransformerArch.detect(sd)
    inferred = infer_params(sd)
    _same_kwargs(inferred, {**_defaults(), **kwargs}, list(inferred))
    desc = HDRTransformerArch.load(sd)
    assert desc.input_channels == 3 * kwargs.get("in_chans", 6)
    h, w = _swin.to_2tuple(kwargs["img_size"])
    x = torch.rand(1, desc.input_channels, h, w)
    with torch.no_grad():
        assert_close(desc.model.eval()(x), model(x), 0.0)


def _defaults() -> dict:
    import inspect

    sig = inspect.signature(HDRTransformer.__init__)
    return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
