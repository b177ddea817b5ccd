"""RRFormer (DRNet + its SwinIR sub-module) specifics the contract (test_contract.py) cannot express:
the ERRNet checkpoint wrapper, size requirements, the official errnet() call, the Swin sub-module's
dead branch, the VGG19 hypercolumn and the side input the model step feeds through
``RestorationModel.prepare`` / ``forward_for``."""

from __future__ import annotations

import pytest
import torch

from restore.errors import RestoreError
from restore.models import RestorationModel
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
from tests.golden import assert_golden, assert_official_layout, load_golden, meta_state_dict, official_configs


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


def test_errnet_wrapper_and_size_requirements():
    config, weights, _, _ = _golden_drnet()
    wrapped = {"icnn": weights, "epoch": 3}
    assert unwrap_checkpoint(wrapped).keys() == weights.keys()
    assert unwrap_checkpoint({"module." + k: v for k, v in weights.items()}).keys() == weights.keys()
    assert ARCH.detect(wrapped)
    kw = infer_params(wrapped)
    swin = kw.pop("swinir_kwargs")
    assert kw == config["kwargs"] and {k: swin[k] for k in config["swinir_override"]} == config["swinir_override"]
    req = ARCH.load(wrapped).size_requirements
    assert req.check(32, 32) and not req.check(33, 32) and not req.check(30, 30)


def test_official_errnet_call():
    (cfg,) = official_configs("rrformer").values()
    kwargs = dict(cfg["kwargs"])
    hard = kwargs.pop("_hardcoded_swinir_block")
    assert kwargs == OFFICIAL_DEFAULT_KWARGS and hard == DRNET_SWINIR_KWARGS
    with torch.device("meta"):
        model = errnet()
    assert_official_layout(model, cfg)
    meta_sd = meta_state_dict(cfg["state_dict"])
    assert ARCH.detect({"icnn": meta_sd, "epoch": 1})
    swin = infer_params(meta_sd)["swinir_kwargs"]
    assert {k: swin[k] for k in hard} == hard and swin["mlp_ratio"] == 2.0


def test_swinir_dead_branch_at_other_sizes():
    config, weights, io = load_golden("rrformer_swinir")
    model = SwinIR(**config["kwargs"]).eval()
    model.load_state_dict(weights, strict=True)
    assert_golden(model, [io["input"]], io["output"], config["atol"])  # released forward: identity
    # the dead branch also runs at a size that needs padding and a freshly computed shift mask
    assert _run(model.forward_residual, torch.rand(1, 16, 6, 10)).shape == (1, 16, 8, 12)


def test_swinir_layout_differs_from_spandrel():
    """spandrel's SwinIR always owns conv_first, so it cannot load this sub-module strictly."""
    from spandrel.architectures.SwinIR import SwinIR as SpandrelSwinIR

    config, weights, _ = load_golden("rrformer_swinir")
    kw = dict(config["kwargs"])
    theirs = set(SpandrelSwinIR(**kw).state_dict())
    assert theirs - set(weights) == {"conv_first.weight", "conv_first.bias"}
    assert set(SwinIR(**kw).state_dict()) == set(weights)


def test_round_trip_keeps_the_swin_sub_module():
    """The loaded Swin sub-module is complete: its dead branch runs at another feature-map size."""
    kwargs = dict(in_channels=7, out_channels=2, n_feats=12, n_resblocks=13, norm=None, se_reduction=8, res_scale=0.1,
                  bottom_kernel_size=1, pyramid=True,
                  swinir_kwargs=dict(embed_dim=8, depths=[2, 1], num_heads=[2, 4], window_size=2, img_size=16, mlp_ratio=1.0))
    torch.manual_seed(1)
    model = DRNet(**kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    desc = ARCH.load(model.state_dict())
    desc.model.eval()  # drop_path_rate 0.1 in the (dead) Swin branch
    x = torch.rand(1, 7, 32, 34)
    assert (_run(desc.model, x) >= 0).all()
    feat = torch.rand(1, 8, 16, 17)
    assert _close(_run(desc.model.swinir_block.forward_residual, feat), _run(model.swinir_block.forward_residual, feat), 1e-5)


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


def _tiny(in_channels: int) -> RestorationModel:
    model = DRNet(in_channels=in_channels, out_channels=3, n_feats=8, n_resblocks=13, pyramid=False,
                  swinir_kwargs=dict(embed_dim=8, depths=[1], num_heads=[2], window_size=2, img_size=16)).eval()
    return RestorationModel.from_descriptor(ARCH.load(model.state_dict()), name="drnet")


def test_side_input_through_prepare_and_forward_for(tmp_path):
    """The descriptor's side input: prepare() needs the `vgg19` option, forward_for() feeds the hypercolumn."""
    from safetensors.torch import save_file

    m = _tiny(3 + HYPERCOLUMN_CHANNELS)
    assert m.info.extra_inputs == ("vgg19-hypercolumn",) and m.tile_input_channels == 3 < m.input_channels
    with pytest.raises(RestoreError, match="vgg19"):
        m.prepare({"name": "drnet"})
    with pytest.raises(RestoreError, match="cannot use as VGG19 weights"):
        m.prepare({"name": "drnet", "vgg19": str(tmp_path / "none.pth")})
    with pytest.raises(RestoreError, match="prepare"):
        m.forward_for(torch.device("cpu"))
    torch.manual_seed(0)
    vgg = _vgg19_features().eval()
    save_file({k: v.contiguous() for k, v in vgg.state_dict().items()}, str(tmp_path / "vgg19.safetensors"))
    m.prepare({"name": "drnet", "vgg19": str(tmp_path / "vgg19.safetensors")})
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m.forward_for(torch.device("cpu"))(x), m.module(build_hypercolumn_input(x, vgg)))
        # another network forward (a compiled graph, an ONNX runtime) gets the same full input
        seen = []
        m.forward_for(torch.device("cpu"), network=lambda z: seen.append(z) or z[:, :3])(x)
        assert torch.equal(seen[0], build_hypercolumn_input(x, vgg))


def test_drnet_without_hypercolumn_takes_plain_rgb():
    m = _tiny(3)
    m.prepare({"name": "drnet"})  # no VGG needed
    assert m.tile_input_channels == m.input_channels == 3 and m.forward_for(torch.device("cpu")) is m.module
