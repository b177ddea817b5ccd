"""spandrel's split-window transformers: DAT (Dual Aggregation Transformer) and RGT (Recursive
Generalization Transformer), which shares DAT's spatial window attention and gate.

spandrel detects, loads and runs them; this module declares what ``restore``
needs beyond spandrel's descriptor (:class:`~restore.models.archs.ArchInfo`):

* ``overlap`` / ``window`` 32: split windows up to 8x32 / 32x8.
* the fused inference attention (:mod:`restore.models.fused_attention`): DAT's
  ``Spatial_Attention`` (RGT's ``WindowAttention``: same attributes, same math)
  as one fused call, windows partitioned straight from the token layout, the
  position-bias MLP cached, the shifted-window masks kept for the edge windows
  only; the depthwise convolutions of the spatial gate and the attention block
  read tokens as channels-last images (no transposes to NCHW and back).
* the CPU bfloat16 verdict (DAT only): measured, so ``precision: auto`` runs
  bf16 autocast on CPUs with AMX or AVX512-BF16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..fused_attention import EdgeMask, attend, cached_bias, cached_mask, compiling, inference_only
from ._base import ArchInfo, AttentionPatch, Official, declare

__all__ = ["DAT", "RGT"]


def _dat_windows(t: torch.Tensor, b: int, h: int, w: int, hs: int, ws: int, heads: int) -> torch.Tensor:
    """Tokens ``(B, H*W, C)`` (any strides) -> windows ``(B*nW, heads, hs*ws, C/heads)``, one copy.

    The same order as DAT's ``im2win`` (transpose, ``img2windows``, head split: three copies)."""
    c = t.shape[-1]
    t = t.reshape(b, h // hs, hs, w // ws, ws, heads, c // heads).permute(0, 1, 3, 5, 2, 4, 6)
    return t.reshape(-1, heads, hs * ws, c // heads)


def _dat_forward(self, qkv, H, W, mask=None):
    """DAT ``Spatial_Attention.forward(qkv, H, W, mask)``, fused; returns ``(B, H, W, C)``."""
    if not inference_only(self):
        return type(self).forward(self, qkv, H, W, mask)
    b, _, c = qkv[0].shape
    hs, ws, heads = self.H_sp, self.W_sp, self.num_heads
    q, k, v = (_dat_windows(t, b, H, W, hs, ws, heads) for t in (qkv[0], qkv[1], qkv[2]))
    n = hs * ws
    if self.position_bias:
        def make():
            pos = self.pos(self.rpe_biases)
            return pos[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        bias = cached_bias(self, list(self.pos.parameters()), make, q.dtype, q.device)
    else:
        bias = q.new_zeros((1, n, n))
    x = attend(q, k, v, bias, mask, self.scale)  # (B*nW, heads, N, d)
    # windows -> image (B, H, W, C) in one copy (DAT's transpose + windows2img take two)
    x = x.view(b, H // hs, W // ws, heads, hs, ws, c // heads).permute(0, 1, 4, 2, 5, 3, 6)
    return x.reshape(b, H, W, c)


def _dat_gate_forward(self, x, H, W):
    """DAT ``SpatialGate.forward(x, H, W)``: the depthwise convolution reads the tokens as a
    channels-last image instead of transposing them to NCHW and back (two copies fewer)."""
    if not inference_only(self):
        return type(self).forward(self, x, H, W)
    x1, x2 = x.chunk(2, dim=-1)
    b, n, c = x2.shape
    y = self.conv(self.norm(x2).view(b, H, W, c).permute(0, 3, 1, 2))
    return x1 * y.permute(0, 2, 3, 1).reshape(b, n, c)


def _dat_block_forward(self, x, H, W):
    """DAT ``Adaptive_Spatial_Attention.forward(x, H, W)`` with the convolution branch and the
    interaction module reading tokens as channels-last images (no transposes to NCHW and back);
    the windows, shifts and padding are the official ones."""
    if not inference_only(self):
        return type(self).forward(self, x, H, W)
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, -1, 3, c).permute(2, 0, 1, 3)  # 3, B, HW, C
    v = qkv[2].contiguous().view(b, H, W, c).permute(0, 3, 1, 2)  # channels-last NCHW view
    m = max(self.split_size[0], self.split_size[1])
    pad_r, pad_b = (m - W % m) % m, (m - H % m) % m
    _H, _W = H + pad_b, W + pad_r
    qkv = qkv.reshape(3 * b, H, W, c)
    if pad_r or pad_b:
        qkv = F.pad(qkv, (0, 0, 0, pad_r, 0, pad_b))  # zero padding, as the official F.pad on NCHW
    qkv = qkv.view(3, b, _H, _W, c)
    h2 = c // 2
    shifted = (self.rg_idx % 2 == 0 and self.b_idx > 0 and (self.b_idx - 2) % 4 == 0) or (
        self.rg_idx % 2 != 0 and self.b_idx % 4 == 0)
    s0, s1 = self.shift_size
    if shifted:
        q0 = torch.roll(qkv[..., :h2], shifts=(-s0, -s1), dims=(2, 3)).view(3, b, _H * _W, h2)
        q1 = torch.roll(qkv[..., h2:], shifts=(-s1, -s0), dims=(2, 3)).view(3, b, _H * _W, h2)
        m0, m1 = _dat_edge_masks(self, _H, _W, x.device)  # = calculate_mask / the buffers, edge windows only
        x1 = torch.roll(self.attns[0](q0, _H, _W, mask=m0), shifts=(s0, s1), dims=(1, 2))
        x2 = torch.roll(self.attns[1](q1, _H, _W, mask=m1), shifts=(s1, s0), dims=(1, 2))
    else:
        flat = qkv.view(3, b, _H * _W, c)
        x1 = self.attns[0](flat[..., :h2], _H, _W)
        x2 = self.attns[1](flat[..., h2:], _H, _W)
    attn_x = torch.cat([x1[:, :H, :W], x2[:, :H, :W]], dim=3)  # (B, H, W, C), contiguous
    conv_x = self.dwconv(v)
    channel_map = self.channel_interaction(conv_x).reshape(b, 1, c)
    spatial_map = self.spatial_interaction(attn_x.permute(0, 3, 1, 2))  # (B, 1, H, W)
    attn_x = attn_x.view(b, n, c) * torch.sigmoid(channel_map)
    conv_x = (torch.sigmoid(spatial_map) * conv_x).permute(0, 2, 3, 1).reshape(b, n, c)
    return self.proj_drop(self.proj(attn_x + conv_x))


def _dat_region_ids(h: int, w: int, split: tuple[int, int], shift: tuple[int, int], device) -> torch.Tensor:
    """Per-window region ids of DAT's shifted windows ``split`` (rows, cols) on an ``h x w`` map:
    ``(nW, split[0] * split[1])``, the ``img_mask`` of ``calculate_mask`` partitioned into windows."""
    img = torch.zeros(h, w, dtype=torch.int32, device=device)
    cnt = 0
    for hs in (slice(0, -split[0]), slice(-split[0], -shift[0]), slice(-shift[0], None)):
        for ws in (slice(0, -split[1]), slice(-split[1], -shift[1]), slice(-shift[1], None)):
            img[hs, ws] = cnt
            cnt += 1
    return img.view(h // split[0], split[0], w // split[1], split[1]).permute(0, 2, 1, 3).reshape(-1, split[0] * split[1])


def _dat_edge_masks(self, H: int, W: int, device) -> tuple[EdgeMask, EdgeMask] | tuple[torch.Tensor, torch.Tensor]:
    """DAT ``Adaptive_Spatial_Attention.calculate_mask(H, W)`` as two :class:`EdgeMask` (branch 0 uses
    ``split_size``/``shift_size``, branch 1 the transposed window), memoised per size and device; dense
    ``(nW, N, N)`` masks while compiling."""
    (s0, s1), (t0, t1) = self.split_size, self.shift_size
    if compiling():  # dense (nW, N, N) masks, computed in the compiled graph
        def dense(ids):
            return (ids.unsqueeze(1) != ids.unsqueeze(2)).float() * -100.0
        return (dense(_dat_region_ids(H, W, (s0, s1), (t0, t1), device)),
                dense(_dat_region_ids(H, W, (s1, s0), (t1, t0), device)))
    key = ("dat-edges", s0, s1, t0, t1, H, W, str(device))
    return cached_mask(key, lambda: (EdgeMask.from_region_ids(_dat_region_ids(H, W, (s0, s1), (t0, t1), device)),
                                      EdgeMask.from_region_ids(_dat_region_ids(H, W, (s1, s0), (t1, t0), device))))


def _rgt_mask(self, H, W):
    """RGT ``L_SA.calculate_mask``, memoised per size."""
    key = ("rgt", tuple(self.split_size), tuple(self.shift_size), H, W)
    return cached_mask(key, lambda: type(self).calculate_mask(self, H, W))


_SPANDREL = Official(repo="https://github.com/chaiNNer-org/spandrel", checkpoints=("every official release spandrel supports",),
                     layout="as released")
_DAT_MOD = "spandrel.architectures.DAT.__arch.DAT"
_RGT_MOD = "spandrel.architectures.RGT.__arch.rgt"

DAT = declare("DAT", ArchInfo(
    task="super-resolution", overlap=32, window=32, official=_SPANDREL,
    # python benchmarks/cpu_precision.py on the 2-core AMX development CPU, idle, torch 2.15:
    # bf16 - fp32 PSNR-Y on Set5 (fused attention, fp32 head/tail: restore/models/mixed_precision.py);
    # speed: 512x512 tiled x2, 9.12 s bf16 vs 13.27 s fp32 (benchmarks/RESULTS.md)
    cpu_bf16="DAT-light x2 -0.003 dB, x3 -0.005 dB, x4 -0.006 dB",
    attention=(AttentionPatch(_DAT_MOD, "Spatial_Attention", "forward", _dat_forward),
               AttentionPatch(_DAT_MOD, "SpatialGate", "forward", _dat_gate_forward),
               AttentionPatch(_DAT_MOD, "Adaptive_Spatial_Attention", "forward", _dat_block_forward)),
))
RGT = declare("RGT", ArchInfo(
    task="super-resolution", overlap=32, window=32, official=_SPANDREL,
    attention=(AttentionPatch(_RGT_MOD, "WindowAttention", "forward", _dat_forward),
               AttentionPatch(_RGT_MOD, "L_SA", "calculate_mask", _rgt_mask),
               AttentionPatch(_RGT_MOD, "Gate", "forward", _dat_gate_forward)),
))
