"""Histoformer specifics the contract (test_contract.py) cannot express: the released configuration,
softmax_1, the histogram attention's padding, the FFN width, input checks."""

from __future__ import annotations

import pytest
import torch

from restore.models.archs.histoformer import DualScaleGatedFeedForward, Histoformer, HistogramAttention, softmax_1
from tests.golden import load_golden, official_configs


def test_released_configuration_is_the_fixtures_official_default():
    config, _, _ = load_golden("histoformer")
    (cfg,) = official_configs("histoformer").values()
    assert cfg["kwargs"] == config["official_default_kwargs"]
    # the class defaults are the released configuration (yml), not the official class defaults
    with torch.device("meta"):
        assert Histoformer().hyperparameters == cfg["kwargs"]


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
