"""SCTNet (ICCV 2023): golden output, detection/loading, full-size layout, buffers, padding quirk."""

from __future__ import annotations

import inspect
import json

import pytest
import spandrel
import torch
from spandrel import ArchSupport, ModelTiling

from restore.models.archs import _swin
from restore.models.archs._base import info_for, registered
from restore.models.archs.sctnet import SCTNet, SCTNetArch, filter_state_dict, infer_params
from tests.golden import assert_close, assert_golden, assert_official_layout, load_golden, meta_state_dict, shared_path

NAME = "sctnet"


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


def _defaults() -> dict:
    sig = inspect.signature(SCTNet.__init__)
    return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


@pytest.fixture(scope="module")
def golden():
    return load_golden(NAME)


@pytest.fixture(scope="module")
def golden_model(golden):
    config, weights, _ = golden
    model = SCTNet(**config["kwargs"])
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
    arch = SCTNetArch
    assert arch.detect(weights)
    _same_kwargs(infer_params(weights), config["kwargs"], [k for k in config["kwargs"] if k != "upsampler"])
    desc = arch.load(dict(weights))
    assert desc.input_channels == 18 and desc.output_channels == 3 and desc.scale == 1
    assert desc.purpose == "Restoration" and desc.tiling == ModelTiling.DISCOURAGED  # channel cross-attention is global
    assert desc.size_requirements.multiple_of == config["kwargs"]["window_size"]
    assert not desc.supports_half
    assert_golden(desc.model.eval(), _frames(io, config), io["output"], config["atol"])

    ckpt = {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in weights.items()}, "optimizer": {}}
    canon = spandrel.canonicalize_state_dict(ckpt)
    assert set(canon) == set(weights) and arch.detect(canon)
    assert_golden(arch.load(canon).model.eval(), _frames(io, config), io["output"], config["atol"])


def test_other_model_not_detected():
    _, hdr_weights, _ = load_golden("hdr_transformer")
    assert not SCTNetArch.detect(hdr_weights)


def test_registry_order_claims_state_dict(golden):
    _, weights, _ = golden
    entry = registered()["SCTNet"]
    claimers = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures("detection") if a.detect(weights)]
    assert set(claimers) <= set(entry.before) | {"SCTNet"}, claimers
    reg = spandrel.MAIN_REGISTRY.copy()
    if "SCTNet" not in reg:
        reg.add(ArchSupport.from_architecture(entry.arch, before=entry.before))
    desc = reg.load({"state_dict": {f"module.{k}": v for k, v in weights.items()}})
    assert desc.architecture.id == "SCTNet"
    info = info_for("SCTNet")
    assert info is not None and info.frames == 3 and info.output_range == "sigmoid"
    assert info.overlap >= infer_params(weights)["window_size"]


def test_full_size_layout_on_meta():
    spec = json.loads(shared_path("golden", NAME, "official_state_dict.json").read_text())
    (cfg,) = spec["configs"].values()
    official = cfg["state_dict"]
    with torch.device("meta"):
        model = SCTNet(**cfg["kwargs"])
    assert_official_layout(model, cfg)

    meta_sd = meta_state_dict(official)
    assert SCTNetArch.detect(meta_sd)
    inferred = infer_params(meta_sd)
    _same_kwargs(inferred, cfg["kwargs"], [k for k in inferred if k in cfg["kwargs"]])


def test_mask_recomputed_for_other_sizes(golden):
    config, weights, _ = golden
    torch.manual_seed(0)
    frames = [torch.rand(1, 6, 48, 64) for _ in range(3)]
    small = SCTNet(**config["kwargs"]).eval()
    small.load_state_dict(weights, strict=True)
    big = SCTNet(**dict(config["kwargs"], img_size=(48, 64))).eval()
    with pytest.raises(RuntimeError):
        big.load_state_dict(weights, strict=True)
    big.load_state_dict(filter_state_dict(weights, big), strict=True)
    with torch.no_grad():
        a = small(*frames)
        b = big(*frames)
    assert_close(a, b, 1e-6)
    sd = big.state_dict()
    assert infer_params(sd)["img_size"] == (48, 64)
    with torch.no_grad():
        assert_close(SCTNetArch.load(sd).model.eval()(*frames), b, 0.0)


def test_padding_is_not_cropped(golden, golden_model):
    config, weights, _ = golden
    torch.manual_seed(2)
    x = torch.rand(1, 18, 18, 26)
    with torch.no_grad():
        out = golden_model(x)  # official upscale=2: keeps the reflect padding
        assert out.shape == (1, 3, 24, 32)
        padded = golden_model(torch.nn.functional.pad(x, (0, 6, 0, 6), mode="reflect"))
        assert_close(out, padded, 1e-6)
        cropping = SCTNet(**dict(config["kwargs"], upscale=1)).eval()
        cropping.load_state_dict(weights, strict=True)
        cropped = cropping(x)
    assert cropped.shape == (1, 3, 18, 26)
    assert_close(cropped, out[..., :18, :26], 1e-6)
    desc = SCTNetArch.load(weights)
    with torch.no_grad():
        assert desc(x).shape == (1, 3, 18, 26)


def test_errors(golden_model):
    with pytest.raises(ValueError):
        golden_model(torch.rand(1, 6, 32, 32), torch.rand(1, 6, 32, 32))
    with pytest.raises(ValueError):
        golden_model(torch.rand(1, 12, 32, 32))
    with pytest.raises(ValueError):
        SCTNet(embed_dim=20)  # not divisible by 3
    with pytest.raises(ValueError):
        SCTNet(embed_dim=18, window_size=8)  # 6 channels per third, 4 SCAB heads
    with pytest.raises(ValueError):
        SCTNet(embed_dim=24, depths=[1] * 5, num_heads=[1] * 5, window_size=8)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(img_size=(16, 24), in_chans=18, embed_dim=12, depths=[2, 1, 3], num_heads=[2, 4, 3],
             window_size=4, mlp_ratio=1.5, resi_connection="3conv", qkv_bias=False),
        dict(img_size=16, in_chans=12, embed_dim=24, depths=[3], num_heads=[3], window_size=8,
             mlp_ratio=3.0, ape=True, patch_norm=False, img_range=1.0),
    ],
)
def test_round_trip_variants(kwargs):
    torch.manual_seed(1)
    model = SCTNet(**kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    sd = model.state_dict()
    assert SCTNetArch.detect(sd)
    inferred = infer_params(sd)
    _same_kwargs(inferred, {**_defaults(), **kwargs}, [k for k in inferred if k != "upscale"])
    desc = SCTNetArch.load(sd)
    assert desc.input_channels == kwargs["in_chans"]
    h, w = _swin.to_2tuple(kwargs["img_size"])
    x = torch.rand(1, kwargs["in_chans"], h, w)
    with torch.no_grad():
        assert_close(desc.model.eval()(x), model(x), 0.0)
