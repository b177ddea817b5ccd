"""SCTNet specifics the contract (test_contract.py) cannot express: shift masks for other sizes,
the official padding quirk (upscale=2 keeps the padding), construction and input checks."""

from __future__ import annotations

import pytest
import torch

from restore.models.archs import info_for
from restore.models.archs.sctnet import SCTNet, SCTNetArch, filter_state_dict, infer_params
from tests.golden import assert_close, load_golden


@pytest.fixture(scope="module")
def golden():
    return load_golden("sctnet")


@pytest.fixture(scope="module")
def golden_model(golden):
    config, weights, _ = golden
    model = SCTNet(**config["kwargs"])
    model.load_state_dict(weights, strict=True)
    return model.eval()


def test_overlap_covers_the_window(golden):
    _, weights, _ = golden
    assert info_for("SCTNet").overlap >= infer_params(weights)["window_size"]


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
