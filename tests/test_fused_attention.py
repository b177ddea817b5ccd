"""The fused inference attention (restore.models.fused_attention) computes the official function.

Tiny configurations of each patched spandrel architecture run on an input whose
size differs from the training size (so shift masks are rebuilt) or equals it
(the masks built at construction), with padding to the window, and with a
batch of 2 (window ordering), once with the official forwards and once fused.
"""

from __future__ import annotations

import copy

import pytest
import torch

from restore.models import fused_attention
from restore.models.archs import spandrel_dat
from restore.models.fused_attention import fuse_attention


def _tiny(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "SwinIR":
        from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

        return SwinIR(img_size=16, embed_dim=12, depths=[2, 2], num_heads=[2, 2], window_size=4, mlp_ratio=2,
                      upscale=2, upsampler="pixelshuffledirect")
    if arch == "HAT":
        from spandrel.architectures.HAT.__arch.HAT import HAT

        return HAT(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4, compress_ratio=3,
                   squeeze_factor=3, mlp_ratio=2, upscale=2, upsampler="pixelshuffle")
    if arch == "DRCT":
        from spandrel.architectures.DRCT.__arch.drct_arch import DRCT

        return DRCT(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4, mlp_ratio=2, upscale=2,
                    upsampler="pixelshuffle", gc=8)
    if arch == "RGT":
        from spandrel.architectures.RGT.__arch.rgt import RGT

        return RGT(img_size=16, embed_dim=32, depth=[2, 2], num_heads=[2, 2], mlp_ratio=2.0, upscale=2,
                   split_size=[2, 8], c_ratio=0.5)
    from spandrel.architectures.DAT.__arch.DAT import DAT

    return DAT(img_size=16, embed_dim=32, split_size=[2, 8], depth=[2, 2], num_heads=[2, 2], expansion_factor=2,
               upscale=2, upsampler="pixelshuffledirect")


def _randomise(model: torch.nn.Module) -> None:
    """Non-trivial position-bias tables (they start at zero)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0, 0.5)


@pytest.mark.parametrize("kernel", ["blocked", "sdpa"])
@pytest.mark.parametrize("size", [(20, 28), (16, 16)], ids=["other-size", "training-size"])
@pytest.mark.parametrize("arch", ["SwinIR", "HAT", "DRCT", "DAT", "RGT"])
def test_fused_forward_equals_official(arch, size, kernel, monkeypatch):
    """Both CPU kernels: the blocked one (windows <= BLOCK_MAX_TOKENS, the default) and the fused SDPA call."""
    monkeypatch.setenv("RESTORE_BLOCKED_ATTENTION", "1" if kernel == "blocked" else "0")
    monkeypatch.setattr(fused_attention, "BLOCK_SCORES", 3 * 16 * 16 * 3)  # several blocks, a partial last one
    ref = _tiny(arch).eval()
    _randomise(ref)
    fused = copy.deepcopy(ref)
    assert fuse_attention(fused) > 0
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = ref(x)
        got = fused(x)
        again = fused(x)  # cached bias and mask
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()
    assert torch.equal(got, again)
    assert fused.state_dict().keys() == ref.state_dict().keys()


def test_fused_forward_follows_weight_changes_and_falls_back_for_training():
    ref = _tiny("SwinIR").eval()
    fused = copy.deepcopy(ref)
    fuse_attention(fused)
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        fused(x)  # caches the (zero) bias
    _randomise(ref)
    fused.load_state_dict(ref.state_dict())  # in-place copy: the cached bias must not be reused
    with torch.inference_mode():
        assert torch.allclose(fused(x), ref(x), atol=1e-5, rtol=0)
    fused.train()
    ref.train()
    y = fused(x)  # grad enabled: the official forward, differentiable
    y.mean().backward()
    assert fused.layers[0].residual_group.blocks[0].attn.relative_position_bias_table.grad is not None


def test_opt_out_and_mask_cache_bound(monkeypatch):
    monkeypatch.setenv("RESTORE_FUSED_ATTENTION", "0")
    assert fuse_attention(_tiny("DAT")) == 0
    monkeypatch.delenv("RESTORE_FUSED_ATTENTION")
    monkeypatch.setattr(fused_attention, "MASK_CACHE_BYTES", 1)
    m = _tiny("DAT").eval()
    fuse_attention(m)
    with torch.inference_mode():
        for size in (16, 24, 32):
            m(torch.rand(1, 3, size, size))
    assert len(fused_attention._masks) == 1  # only the newest entry survives a 1-byte bound


def test_loaded_models_are_fused():
    import restore

    m = restore.load_model("dat-light-x2")
    assert any(getattr(mod, "_restore_fused_forward", False) for mod in m.descriptor.model.modules())


@pytest.mark.parametrize("size", [(24, 32), (64, 96)])
def test_dat_edge_masks_equal_the_official_masks(size):
    from spandrel.architectures.DAT.__arch.DAT import Adaptive_Spatial_Attention

    blocks = [m for m in _tiny("DAT").modules() if isinstance(m, Adaptive_Spatial_Attention)]
    h, w = size
    for blk in blocks:
        official = blk.calculate_mask(h, w)
        for full, edge in zip(official, spandrel_dat._dat_edge_masks(blk, h, w, torch.device("cpu"))):
            dense = torch.zeros_like(full)
            dense[edge.idx] = edge.masks
            assert torch.equal(dense, full)
            assert edge.idx.numel() < full.shape[0]  # interior windows are not stored


def test_descriptors_declare_the_patches():
    """Each patched spandrel architecture declares its patches in its descriptor; every patch
    targets a class the installed spandrel has, and applying only a descriptor's patches fuses."""
    from restore.models.archs import info_for
    from restore.models.fused_attention import _resolve, apply_patches

    for arch in ("SwinIR", "HAT", "DRCT", "DAT", "RGT"):
        patches = info_for(arch).attention
        assert patches and all(_resolve(p) is not None for p in patches), arch
        assert apply_patches(_tiny(arch).eval(), patches) > 0
        other = "DAT" if arch != "DAT" else "HAT"
        assert apply_patches(_tiny(other).eval(), patches) == 0  # patches are per architecture


@pytest.mark.parametrize("arch", ["SwinIR", "HAT", "DAT", "RGT"])
def test_fused_forward_compiles_as_one_graph(arch):
    """Under torch.compile the fused forwards skip their caches (a lock, weight versions, data-dependent edge
    windows) and use dense masks: one graph, no breaks, the official output.  Traced by dynamo with the
    ``eager`` backend (no code generation), which runs exactly the graph inductor would compile."""
    import torch._dynamo as dynamo

    ref = _tiny(arch).eval()
    _randomise(ref)
    fused = copy.deepcopy(ref)
    fuse_attention(fused)
    x = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(1))
    dynamo.reset()
    with torch.inference_mode():
        explained = dynamo.explain(fused)(x)
        got = torch.compile(fused, backend="eager", dynamic=False)(x)
        want = ref(x)
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()


@pytest.mark.parametrize("masked", ["none", "dense", "edge"])
def test_blocked_kernel_equals_sdpa(masked):
    """The blocked CPU kernel against one ``scaled_dot_product_attention`` call with bias + full mask, batch 2
    (windows batch-major), blocks that straddle the batch boundary; bf16 inputs keep float32 scores."""
    g = torch.Generator().manual_seed(0)
    b, nw, heads, n, d = 2, 5, 3, 16, 4
    q, k, v = (torch.randn(b * nw, heads, n, d, generator=g) for _ in range(3))
    bias = torch.randn(heads, n, n, generator=g)
    ids = torch.zeros(nw, n, dtype=torch.long)
    ids[1, n // 2:] = 1
    ids[4, ::3] = 2  # windows 1 and 4 mix regions
    edge = fused_attention.EdgeMask.from_region_ids(ids)
    dense = torch.zeros(nw, n, n)
    dense[edge.idx] = edge.masks
    mask = {"none": None, "dense": dense, "edge": edge}[masked]
    full = bias.unsqueeze(0) + (dense.unsqueeze(1) if mask is not None else 0)  # (nW, heads, N, N)
    want = torch.nn.functional.scaled_dot_product_attention(
        q.unflatten(0, (b, nw)), k.unflatten(0, (b, nw)), v.unflatten(0, (b, nw)), attn_mask=full, scale=0.3).flatten(0, 1)
    old = fused_attention.BLOCK_SCORES
    try:
        fused_attention.BLOCK_SCORES = 3 * heads * n * n  # 3 windows per block: blocks 0-2, 3-5 (straddles), 6-8, 9
        with torch.inference_mode():
            assert fused_attention._use_blocked(q)
            got = fused_attention.attend(q, k, v, bias, mask, 0.3)
            low = fused_attention.attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), bias.bfloat16(), mask, 0.3)
    finally:
        fused_attention.BLOCK_SCORES = old
    assert got.shape == want.shape and low.dtype == torch.bfloat16
    assert torch.allclose(got, want, atol=2e-6, rtol=0), (got - want).abs().max()
    assert (low.float() - want).abs().max() < 0.05


def test_blocked_kernel_only_where_it_is_faster():
    """Long windows (over BLOCK_MAX_TOKENS), autograd and tracing keep the fused SDPA call."""
    long = torch.zeros(1, 1, fused_attention.BLOCK_MAX_TOKENS + 1, 4)
    short = torch.zeros(1, 1, fused_attention.BLOCK_MAX_TOKENS, 4)
    with torch.inference_mode():
        assert fused_attention._use_blocked(short) and not fused_attention._use_blocked(long)
    with torch.enable_grad():
        assert not fused_attention._use_blocked(short)
