"""RRFormer (DRNet + its SwinIR sub-module): golden fixtures, detection, inference, layout, hypercolumn."""

from __future__ import annotations

import json

import pytest
import spandrel
import torch
from torch import nn

from restore.models.archs._base import info_for
from restore.models.archs.rrformer import (
    ARCH,
    DRNET_SWINIR_KWARGS,
    HYPERCOLUMN_CHANNELS,
    OFFICIAL_DEFAULT_KWARGS,
    DRNet,
    MissingVGG19Error,
    SwinIR,
    _vgg19_features,
    build_hypercolumn_input,
    errnet,
    infer_params,
    unwrap_checkpoint,
)
from tests.golden import assert_golden, assert_official_layout, load_golden, meta_state_dict, shared_path


def _run(fn, *args):
    with torch.no_grad():
        return fn(*args)


def _close(a: torch.Tensor, b: torch.Tensor, atol: float) -> bool:
    return a.shape == b.shape and (a - b).abs().max().item() <= atol


def _golden_drnet():
    config, weights, io = load_golden("rrformer")
    model = DRNet(**config["kwargs"], swinir_kwargs=config["swinir_override"]).eval()
    model.load_state_dict(weights, strict=True)
    return config, weights, io, model


def test_golden_drnet():
    config, _, io, model = _golden_drnet()
    for key in config["output_keys"]:
        assert_golden(model, [io[k] for k in config["forward_args"]], io[key], config["atol"])


def test_golden_swinir():
    config, weights, io = load_golden("rrformer_swinir")
    model = SwinIR(**config["kwargs"]).eval()
    model.load_state_dict(weights, strict=True)
    x = io["input"]
    assert_golden(model, [x], io["output"], config["atol"])  # released forward: identity
    assert_golden(model, [x], io["features"], config["atol"], call=lambda m, x: m.forward_features(m.check_image_size(x)))
    assert_golden(model, [x], io["res"], config["atol"], call=lambda m, x: m.forward_residual(x))
    # the dead branch also runs at a size that needs padding and a freshly computed shift mask
    assert _run(model.forward_residual, torch.rand(1, 16, 6, 10)).shape == (1, 16, 8, 12)


def test_swinir_layout_differs_from_spandrel():
    """spandrel's SwinIR always owns conv_first, so it cannot load this sub-module strictly."""
    from spandrel.architectures.SwinIR import SwinIR as SpandrelSwinIR

    config, weights, _ = load_golden("rrformer_swinir")
    kw = {k: v for k, v in config["kwargs"].items()}
    theirs = set(SpandrelSwinIR(**kw).state_dict())
    assert theirs - set(weights) == {"conv_first.weight", "conv_first.bias"}
    assert set(SwinIR(**kw).state_dict()) == set(weights)


def test_detect_and_load():
    config, weights, io, _ = _golden_drnet()
    wrapped = {"icnn": weights, "epoch": 3}
    assert unwrap_checkpoint(wrapped).keys() == weights.keys()
    assert unwrap_checkpoint({"module." + k: v for k, v in weights.items()}).keys() == weights.keys()
    for sd in (weights, wrapped):
        assert ARCH.detect(sd)
        kw = infer_params(sd)
        swin = kw.pop("swinir_kwargs")
        assert kw == config["kwargs"]
        assert {k: swin[k] for k in config["swinir_override"]} == config["swinir_override"]
        desc = ARCH.load(sd)
        desc.model.eval()
        assert desc.purpose == "Restoration" and desc.scale == 1
        assert desc.input_channels == 19 and desc.output_channels == 3
        assert desc.size_requirements.check(32, 32) and not desc.size_requirements.check(33, 32)
        assert not desc.size_requirements.check(30, 30)
        assert_golden(desc.model, [io["input"]], io["output"], config["atol"])


def test_not_detected_elsewhere():
    _, weights, _ = load_golden("rrformer")
    for name in ("rawformer", "rrformer_swinir"):
        _, other, _ = load_golden(name)
        assert not ARCH.detect(other)
    # spandrel's own registry does not claim DRNet weights, so no `before=` is needed
    # (restore registers its own architectures into MAIN_REGISTRY: only this one may claim them)
    claims = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures() if a.architecture.detect(weights)]
    assert claims == [ARCH.id]


def test_arch_info():
    info = info_for(str(ARCH.id))
    assert info is not None
    assert info.task == "reflection" and info.input_encoding == "srgb" and info.output_range == "clamped"
    assert info.extra_inputs == ("vgg19-hypercolumn",)


def test_full_size_layout():
    data = json.loads(shared_path("golden", "rrformer", "official_state_dict.json").read_text())
    (cfg,) = data["configs"].values()
    kwargs = dict(cfg["kwargs"])
    hard = kwargs.pop("_hardcoded_swinir_block")
    assert kwargs == OFFICIAL_DEFAULT_KWARGS and hard == DRNET_SWINIR_KWARGS
    with torch.device("meta"):
        model = errnet()
    assert_official_layout(model, cfg)

    meta_sd = meta_state_dict(cfg["state_dict"])
    assert ARCH.detect(meta_sd) and ARCH.detect({"icnn": meta_sd, "epoch": 1})
    kw = infer_params(meta_sd)
    swin = kw.pop("swinir_kwargs")
    assert kw == OFFICIAL_DEFAULT_KWARGS
    assert {k: swin[k] for k in hard} == hard
    assert swin["mlp_ratio"] == 2.0


VARIANTS = [
    dict(in_channels=5, out_channels=3, n_feats=8, n_resblocks=13, norm=nn.BatchNorm2d, se_reduction=None,
         res_scale=1, bottom_kernel_size=3, pyramid=False,
         swinir_kwargs=dict(embed_dim=12, depths=[2], num_heads=[3], window_size=4, img_size=32)),
    dict(in_channels=7, out_channels=2, n_feats=12, n_resblocks=13, norm=None, se_reduction=8,
         res_scale=0.1, bottom_kernel_size=1, pyramid=True,
         swinir_kwargs=dict(embed_dim=8, depths=[2, 1], num_heads=[2, 4], window_size=2, img_size=16,
                            mlp_ratio=1.0)),
]


@pytest.mark.parametrize("variant", range(len(VARIANTS)))
def test_round_trip(variant: int):
    kwargs = VARIANTS[variant]
    torch.manual_seed(variant)
    model = DRNet(**kwargs).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    sd = model.state_dict()
    x = torch.rand(1, kwargs["in_channels"], 32, 34)
    ref = _run(model, x)

    assert ARCH.detect(sd)
    kw = infer_params(sd)
    swin = kw.pop("swinir_kwargs")
    expected = {k: v for k, v in kwargs.items() if k != "swinir_kwargs"}
    # n_resblocks / se_reduction / res_scale are unused and not stored: official errnet values come back
    for k in ("se_reduction", "res_scale", "n_resblocks"):
        expected[k] = OFFICIAL_DEFAULT_KWARGS[k]
    assert kw == expected
    for k, v in kwargs["swinir_kwargs"].items():
        assert swin[k] == v, k
    desc = ARCH.load(sd)
    desc.model.eval()  # drop_path_rate 0.1 in the (dead) Swin branch
    assert desc.input_channels == kwargs["in_channels"] and desc.output_channels == kwargs["out_channels"]
    out = _run(desc.model, x)
    assert _close(out, ref, 1e-5) and (out >= 0).all()
    # the loaded Swin sub-module is complete: its dead branch runs at this feature-map size
    feat = torch.rand(1, swin["embed_dim"], 16, 17)
    assert _close(_run(desc.model.swinir_block.forward_residual, feat),
                  _run(model.swinir_block.forward_residual, feat), 1e-5)


def test_wrong_input_size():
    _, _, _, model = _golden_drnet()
    with pytest.raises(ValueError, match="even"):
        _run(model, torch.rand(1, 19, 33, 32))
    with pytest.raises(ValueError, match=">= 32"):
        _run(model, torch.rand(1, 19, 16, 16))
    with pytest.raises(ValueError):
        _run(model, torch.rand(1, 3, 32, 32))


def test_hypercolumn():
    img = torch.rand(1, 3, 20, 18)
    with pytest.raises(MissingVGG19Error, match="VGG19"):
        build_hypercolumn_input(img, None)
    with pytest.raises(MissingVGG19Error):
        build_hypercolumn_input(img, "/nonexistent/vgg19.pth")

    torch.manual_seed(0)
    vgg = _vgg19_features().eval()
    out = build_hypercolumn_input(img, vgg)
    assert out.shape == (1, 3 + HYPERCOLUMN_CHANNELS, 20, 18)
    assert torch.equal(out[:, :3], img)
    relu1_1 = torch.relu(vgg[0](img))  # tap 1 is at full resolution: resizing is the identity
    assert torch.allclose(out[:, 3:67], relu1_1, atol=1e-6)
    # a full-VGG state dict ('features.N.*', classifier keys ignored) gives the same result
    sd = {f"features.{k}": v for k, v in vgg.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(1)
    assert torch.allclose(build_hypercolumn_input(img, sd), out)
    with pytest.raises(ValueError):
        build_hypercolumn_input(torch.rand(1, 1, 8, 8), vgg)


def test_vgg_layout_matches_torchvision():
    vgg_mod = pytest.importorskip("torchvision.models.vgg")
    if not hasattr(vgg_mod, "make_layers") or not hasattr(vgg_mod, "cfgs"):
        pytest.skip("torchvision internals changed")
    with torch.device("meta"):
        tv = vgg_mod.make_layers(vgg_mod.cfgs["E"])
        ours = _vgg19_features()
    assert {k: v.shape for k, v in tv.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    assert [type(m) for m in tv] == [type(m) for m in ours]
