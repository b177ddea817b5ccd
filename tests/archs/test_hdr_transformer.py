"""HDR-Transformer / SCTNet Swin buffers, and HDR-Transformer specifics the contract
(test_contract.py) cannot express: shift masks for other sizes, stored vs computed buffers,
checkpoints whose masks were built for another size, input checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import restore
from restore.models.archs import _swin, info_for
from restore.models.archs.hdr_transformer import HDRTransformer, HDRTransformerArch, filter_state_dict, infer_params
from restore.models.archs.sctnet import SCTNet
from tests.golden import assert_close, load_golden


@pytest.fixture(scope="module")
def golden():
    return load_golden("hdr_transformer")


@pytest.fixture(scope="module")
def golden_model(golden):
    config, weights, _ = golden
    model = HDRTransformer(**config["kwargs"])
    model.load_state_dict(weights, strict=True)
    return model.eval()


def test_overlap_covers_the_window(golden):
    _, weights, _ = golden
    assert info_for("HDRTransformer").overlap >= infer_params(weights)["window_size"]


def test_mask_recomputed_for_other_sizes(golden):
    config, weights, _ = golden
    torch.manual_seed(0)
    frames = [torch.rand(1, 6, 48, 64) for _ in range(3)]
    small = HDRTransformer(**config["kwargs"]).eval()
    small.load_state_dict(weights, strict=True)
    big = HDRTransformer(**dict(config["kwargs"], img_size=(48, 64))).eval()
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


@pytest.mark.parametrize(("fixture", "cls", "arch"), [("hdr_transformer", HDRTransformer, "HDRTransformer"),
                                                      ("sctnet", SCTNet, "SCTNet")])
def test_attn_mask_from_other_img_size(tmp_path: Path, fixture: str, cls, arch: str):
    """A checkpoint whose shifted-window masks were built for a (non-square, non-default) img_size
    strict-loads through load_model and runs at a third size, 48x64."""
    config, weights, _ = load_golden(fixture)
    reference = cls(**config["kwargs"]).eval()  # img_size 32: golden buffers
    reference.load_state_dict(weights, strict=True)
    other = cls(**dict(config["kwargs"], img_size=(16, 24))).eval()
    sd = _swin.checkpoint_filter_fn(weights, other)  # same parameters, buffers for a 16x24 feature map
    masks = [k for k in sd if k.endswith(".attn_mask")]
    assert masks and all(sd[k].shape[0] == 6 != weights[k].shape[0] for k in masks)
    default_masks = {k: v.shape for k, v in cls(**{k: v for k, v in config["kwargs"].items() if k != "img_size"}).state_dict().items()
                     if k.endswith(".attn_mask")}
    assert all(default_masks[k] != sd[k].shape for k in masks)  # a default-size model would not strict-load it
    path = tmp_path / f"{fixture}.pth"
    torch.save({"epoch": 100, "state_dict": {"module." + k: v for k, v in sd.items()}, "optimizer": {}}, path)
    model = restore.load_model(path)
    assert model.arch == arch
    loaded = model.module.state_dict()
    assert set(loaded) == set(sd)
    for k in masks:
        assert torch.equal(loaded[k], sd[k]), k  # the stored buffers themselves were loaded (strict)
    x = torch.rand(1, 18, 48, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model.module(x)
        ref = reference(x)
    assert out.shape == (1, 3, 48, 64) and torch.isfinite(out).all()
    assert_close(out, ref, config["atol"])
