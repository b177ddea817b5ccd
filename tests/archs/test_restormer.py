"""Restormer specifics the contract (test_contract.py) cannot express: the four official layouts,
the FFN expansion factor inference, the two LayerNorms, input checks."""

from __future__ import annotations

import pytest
import torch

from restore.models.archs.restormer import LayerNorm, Restormer, infer_ffn_expansion_factor
from tests.golden import official_configs


def test_four_official_layouts():
    assert len(official_configs("restormer")) == 4  # WithBias, BiasFree, gray, dual-pixel


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
