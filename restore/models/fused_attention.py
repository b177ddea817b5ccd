"""Fused window attention for spandrel's transformer architectures at inference.

The official SwinIR / HAT / DRCT / DAT / RGT code computes window attention step by
step: ``A = (q * scale) @ k^T``, ``A += relative position bias (+ shift mask)``,
``softmax(A) @ v``, which writes and re-reads the full ``(windows, heads, N, N)``
attention map several times, and it rebuilds constant tensors on every call
(DAT runs its position-bias MLP and, for any size other than the training
size, its shifted-window mask per block and per call; SwinIR its mask).  On a
CPU that bookkeeping, not the matrix products, dominated DAT-light's time (a
profile of one 128-px tile: 27 % additions of bias/mask, 18 % softmax, 9 %
batched matmul).

:func:`fuse_attention` swaps, per module instance, those forwards for one call
of :func:`torch.nn.functional.scaled_dot_product_attention` (a fused kernel on
CPU and CUDA) with the bias and mask as its additive ``attn_mask``, caches the
position bias (it depends only on the weights), and caches the shift masks per
input size in a small byte-bounded LRU.  For DAT it also partitions windows
straight from the token layout and lets the depthwise convolutions of the
spatial gate and the attention block read tokens as channels-last images,
removing most of the transposes to NCHW and back (each a full copy).  It is
the same function: in float32
the outputs agree with the official forward to float rounding (tested to
1e-5), the parameters and state-dict names are untouched, so official
checkpoints load unchanged.  The fused forward runs only for inference (no
autograd, ``module.training`` False); otherwise the official forward runs.

Set ``RESTORE_FUSED_ATTENTION=0`` to keep the official forwards (for A/B checks).
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
import types
from collections import OrderedDict
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fuse_attention", "clear_mask_cache", "EdgeMask", "MASK_CACHE_BYTES"]

#: Upper bound on the bytes of shift masks kept between calls (all models together).
MASK_CACHE_BYTES = 256 * 2**20

_masks: OrderedDict[tuple, object] = OrderedDict()
_mask_bytes = 0
_lock = threading.Lock()


def _nbytes(obj) -> int:
    if isinstance(obj, EdgeMask):
        return obj.nbytes
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    return 0


def clear_mask_cache() -> None:
    """Drop every cached shift mask (the tiler calls it before retrying a smaller tile after an
    out-of-memory error, so masks of the failed size do not keep device memory)."""
    global _mask_bytes
    with _lock:
        _masks.clear()
        _mask_bytes = 0


def _cached_mask(key: tuple, make: Callable[[], object]):
    """``make()`` memoised under ``key`` in a process-wide LRU bounded by :data:`MASK_CACHE_BYTES`."""
    global _mask_bytes
    with _lock:
        hit = _masks.get(key)
        if hit is not None:
            _masks.move_to_end(key)
            return hit
    value = make()
    size = _nbytes(value)
    with _lock:
        if key not in _masks:
            _masks[key] = value
            _mask_bytes += size
            while _mask_bytes > MASK_CACHE_BYTES and len(_masks) > 1:
                _, old = _masks.popitem(last=False)
                _mask_bytes -= _nbytes(old)
    return value


def _inference(module: nn.Module) -> bool:
    return not module.training and not torch.is_grad_enabled()


def _weights_key(params) -> tuple:
    """Identity of the current weight values: in-place loads bump ``_version``."""
    try:
        return tuple((p.data_ptr(), p._version) for p in params)
    except RuntimeError:  # inference tensors track no version: never cache
        return (object(),)


def _cached_bias(module: nn.Module, params, make: Callable[[], torch.Tensor], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``(heads, N, N)`` position bias ``make()`` cast to ``dtype``, cached on ``module``
    until its weights change."""
    key = (_weights_key(params), dtype, device)
    hit = module.__dict__.get("_restore_bias")
    if hit is not None and hit[0] == key:
        return hit[1]
    bias = make().to(device=device, dtype=dtype).contiguous()
    module.__dict__["_restore_bias"] = (key, bias)
    return bias


class EdgeMask:
    """A shifted-window mask kept only for the windows it touches.

    ``idx``: ``(nE,)`` indices of the windows with a non-zero mask; ``masks``:
    their ``(nE, N, N)`` masks (0 / -100, float32); ``windows``: the total
    window count ``nW``.  The full ``(nW, N, N)`` mask is mostly zeros (only the
    bottom and right edge windows mix wrapped-around regions) and at a 512-px
    DAT tile weighs 268 MB per branch; this form weighs 8 % of it.
    """

    def __init__(self, idx: torch.Tensor, masks: torch.Tensor, windows: int):
        self.idx, self.masks, self.windows = idx, masks, windows
        self._cast: dict[torch.dtype, torch.Tensor] = {masks.dtype: masks}
        self.shape = (windows, *masks.shape[1:])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.idx, *self._cast.values()))

    def cast(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self._cast:
            self._cast[dtype] = self.masks.to(dtype)
        return self._cast[dtype]

    @classmethod
    def from_region_ids(cls, ids: torch.Tensor) -> "EdgeMask":
        """From ``(nW, N)`` region ids per window: tokens attend only within their own region."""
        edge = (ids.amin(dim=1) != ids.amax(dim=1)).nonzero().flatten()
        sub = ids.index_select(0, edge)
        masks = torch.zeros(sub.shape[0], sub.shape[1], sub.shape[1], device=ids.device)
        masks.masked_fill_(sub.unsqueeze(1) != sub.unsqueeze(2), -100.0)
        return cls(edge, masks, ids.shape[0])


def _masked_windows(mask: torch.Tensor | EdgeMask, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the windows whose shift mask is not all zero, and their masks in ``dtype``.

    Only windows along the bottom and right edges mix wrapped-around regions; the
    rest (about 70 % of a 128-px tile's windows, more on larger tiles) are unmasked.
    Cached on the mask tensor itself (the masks are cached, or model buffers)."""
    if isinstance(mask, EdgeMask):
        return mask.idx, mask.cast(dtype)
    hit = getattr(mask, "_restore_edges", None)
    if hit is None or hit[1].dtype != dtype:
        idx = (mask != 0).flatten(1).any(dim=1).nonzero().flatten()
        hit = (idx, mask.index_select(0, idx).to(dtype))
        mask._restore_edges = hit
    return hit


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | EdgeMask | None, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale + bias [+ mask]) @ v`` with fused kernels.

    All windows run with the shared bias (broadcast, never materialised per
    window); the few windows the shift mask touches run again with bias + mask
    and overwrite their rows, instead of adding the ``(windows, heads, N, N)``
    mask to every window on every call.

    Args:
        q, k, v: ``(B*nW, heads, N, d)``, windows ordered batch-major as the official code.
        bias: ``(heads, N, N)`` position bias, dtype of ``q``.
        mask: ``(nW, N, N)`` shift mask (0 / -100), an :class:`EdgeMask`, or None.

    Returns:
        ``(B*nW, heads, N, d)``.
    """
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0), scale=scale)
    if mask is None:
        return out
    nw = mask.shape[0]
    b = q.shape[0] // nw
    idx, m = _masked_windows(mask, bias.dtype)
    if idx.numel() == 0:
        return out
    h, n, d = q.shape[1:]

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(0, (b, nw)).index_select(1, idx).flatten(0, 1)

    full = (m.unsqueeze(1) + bias.unsqueeze(0)).repeat(b, 1, 1, 1)  # (B*nE, heads, N, N)
    edge = F.scaled_dot_product_attention(pick(q), pick(k), pick(v), attn_mask=full, scale=scale)
    out = out.contiguous()
    out.unflatten(0, (b, nw))[:, idx] = edge.unflatten(0, (b, idx.numel()))
    return out


# --------------------------------------------------------------------------- Swin-style windows


def _swin_bias(self, n: int, index: torch.Tensor, dtype, device) -> torch.Tensor:
    table = self.relative_position_bias_table
    return _cached_bias(self, [table], lambda: table[index.reshape(-1)].view(n, n, -1).permute(2, 0, 1), dtype, device)


def _swin_core(self, x: torch.Tensor, index: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    b_, n, c = x.shape
    qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    bias = _swin_bias(self, n, index, q.dtype, q.device)
    out = _attend(q, k, v, bias, mask, self.scale)
    return self.proj(out.transpose(1, 2).reshape(b_, n, c))


def _swin_forward(self, x, mask=None):
    """SwinIR / DRCT ``WindowAttention.forward(x, mask)``, fused."""
    if not _inference(self):
        return type(self).forward(self, x, mask)
    return _swin_core(self, x, self.relative_position_index, mask)


def _hat_forward(self, x, rpi, mask=None):
    """HAT ``WindowAttention.forward(x, rpi, mask)``, fused."""
    if not _inference(self):
        return type(self).forward(self, x, rpi, mask)
    return _swin_core(self, x, rpi, mask)


def _swin_block_mask(self, x_size):
    """SwinIR / DRCT ``SwinTransformerBlock.calculate_mask``, memoised per size."""
    key = (type(self).__module__, self.window_size, self.shift_size, tuple(x_size))
    return _cached_mask(key, lambda: type(self).calculate_mask(self, x_size))


# --------------------------------------------------------------------------- DAT


def _dat_windows(t: torch.Tensor, b: int, h: int, w: int, hs: int, ws: int, heads: int) -> torch.Tensor:
    """Tokens ``(B, H*W, C)`` (any strides) -> windows ``(B*nW, heads, hs*ws, C/heads)``, one copy.

    The same order as DAT's ``im2win`` (transpose, ``img2windows``, head split: three copies)."""
    c = t.shape[-1]
    t = t.reshape(b, h // hs, hs, w // ws, ws, heads, c // heads).permute(0, 1, 3, 5, 2, 4, 6)
    return t.reshape(-1, heads, hs * ws, c // heads)


def _dat_forward(self, qkv, H, W, mask=None):
    """DAT ``Spatial_Attention.forward(qkv, H, W, mask)``, fused; returns ``(B, H, W, C)``."""
    if not _inference(self):
        return type(self).forward(self, qkv, H, W, mask)
    b, _, c = qkv[0].shape
    hs, ws, heads = self.H_sp, self.W_sp, self.num_heads
    q, k, v = (_dat_windows(t, b, H, W, hs, ws, heads) for t in (qkv[0], qkv[1], qkv[2]))
    n = hs * ws
    if self.position_bias:
        def make():
            pos = self.pos(self.rpe_biases)
            return pos[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        bias = _cached_bias(self, list(self.pos.parameters()), make, q.dtype, q.device)
    else:
        bias = q.new_zeros((1, n, n))
    x = _attend(q, k, v, bias, mask, self.scale)  # (B*nW, heads, N, d)
    # windows -> image (B, H, W, C) in one copy (DAT's transpose + windows2img take two)
    x = x.view(b, H // hs, W // ws, heads, hs, ws, c // heads).permute(0, 1, 4, 2, 5, 3, 6)
    return x.reshape(b, H, W, c)


def _dat_gate_forward(self, x, H, W):
    """DAT ``SpatialGate.forward(x, H, W)``: the depthwise convolution reads the tokens as a
    channels-last image instead of transposing them to NCHW and back (two copies fewer)."""
    if not _inference(self):
        return type(self).forward(self, x, H, W)
    x1, x2 = x.chunk(2, dim=-1)
    b, n, c = x2.shape
    y = self.conv(self.norm(x2).view(b, H, W, c).permute(0, 3, 1, 2))
    return x1 * y.permute(0, 2, 3, 1).reshape(b, n, c)


def _dat_block_forward(self, x, H, W):
    """DAT ``Adaptive_Spatial_Attention.forward(x, H, W)`` with the convolution branch and the
    interaction module reading tokens as channels-last images (no transposes to NCHW and back);
    the windows, shifts and padding are the official ones."""
    if not _inference(self):
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


def _dat_edge_masks(self, H: int, W: int, device) -> tuple[EdgeMask, EdgeMask]:
    """DAT ``Adaptive_Spatial_Attention.calculate_mask(H, W)`` as two :class:`EdgeMask` (branch 0 uses
    ``split_size``/``shift_size``, branch 1 the transposed window), memoised per size and device."""
    (s0, s1), (t0, t1) = self.split_size, self.shift_size
    key = ("dat-edges", s0, s1, t0, t1, H, W, str(device))
    return _cached_mask(key, lambda: (EdgeMask.from_region_ids(_dat_region_ids(H, W, (s0, s1), (t0, t1), device)),
                                      EdgeMask.from_region_ids(_dat_region_ids(H, W, (s1, s0), (t1, t0), device))))


def _hat_mask(self, x_size, dtype):
    """HAT ``HAT.calculate_mask(x_size, dtype)`` (rebuilt on every forward officially), memoised per size."""
    key = ("hat", self.window_size, self.shift_size, tuple(x_size), dtype)
    return _cached_mask(key, lambda: type(self).calculate_mask(self, x_size, dtype))


def _rgt_mask(self, H, W):
    """RGT ``L_SA.calculate_mask``, memoised per size."""
    key = ("rgt", tuple(self.split_size), tuple(self.shift_size), H, W)
    return _cached_mask(key, lambda: type(self).calculate_mask(self, H, W))


# --------------------------------------------------------------------------- registry


#: spandrel module -> (class name, method, replacement).  DRCT's window attention is SwinIR's; RGT's window
#: attention and gate are DAT's (same attributes, same math).
_PATCHES: dict[str, list[tuple[str, str, Callable]]] = {
    "spandrel.architectures.SwinIR.__arch.SwinIR": [("WindowAttention", "forward", _swin_forward),
                                                   ("SwinTransformerBlock", "calculate_mask", _swin_block_mask)],
    "spandrel.architectures.DRCT.__arch.drct_arch": [("WindowAttention", "forward", _swin_forward),
                                                    ("SwinTransformerBlock", "calculate_mask", _swin_block_mask)],
    "spandrel.architectures.HAT.__arch.HAT": [("WindowAttention", "forward", _hat_forward),
                                             ("HAT", "calculate_mask", _hat_mask)],
    "spandrel.architectures.DAT.__arch.DAT": [("Spatial_Attention", "forward", _dat_forward),
                                             ("SpatialGate", "forward", _dat_gate_forward),
                                             ("Adaptive_Spatial_Attention", "forward", _dat_block_forward)],
    "spandrel.architectures.RGT.__arch.rgt": [("WindowAttention", "forward", _dat_forward),
                                             ("L_SA", "calculate_mask", _rgt_mask),
                                             ("Gate", "forward", _dat_gate_forward)],
}


@functools.lru_cache(maxsize=1)
def _targets() -> tuple[tuple[type, str, Callable], ...]:
    """(class, method name, replacement) for every spandrel class we know how to fuse; a module or
    class missing from the installed spandrel is skipped (its models keep the official code)."""
    out = []
    for module, patches in _PATCHES.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:  # pragma: no cover - spandrel layout changed
            continue
        out += [(getattr(mod, cls), name, fn) for cls, name, fn in patches if hasattr(mod, cls)]
    return tuple(out)


def fuse_attention(model: nn.Module) -> int:
    """Give every known window-attention module in ``model`` the fused inference forward.

    Patches instances, not classes: other models in the process keep the
    official code.  Idempotent.  Parameters, buffers and state-dict names are
    unchanged.

    Args:
        model: A model built by spandrel (or containing such modules).

    Returns:
        The number of modules patched (0 when ``RESTORE_FUSED_ATTENTION=0``
        or the model has none of the known modules).
    """
    if os.environ.get("RESTORE_FUSED_ATTENTION", "1").strip().lower() in ("0", "false", "no", "off"):
        return 0
    targets = _targets()
    count = 0
    for mod in model.modules():
        for cls, name, fn in targets:
            if type(mod) is cls and not getattr(mod, f"_restore_fused_{name}", False):
                setattr(mod, name, types.MethodType(fn, mod))
                mod.__dict__[f"_restore_fused_{name}"] = True
                count += 1
    return count
