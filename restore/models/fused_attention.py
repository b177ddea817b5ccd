"""Fused window attention for spandrel's transformer architectures at inference.

The official SwinIR / HAT / DRCT / DAT code computes window attention step by
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
input size in a small byte-bounded LRU.  It is the same function: in float32
the outputs agree with the official forward to float rounding (tested to
1e-5), the parameters and state-dict names are untouched, so official
checkpoints load unchanged.  The fused forward runs only for inference (no
autograd, ``module.training`` False); otherwise the official forward runs.

Set ``RESTORE_FUSED_ATTENTION=0`` to keep the official forwards (for A/B checks).
"""

from __future__ import annotations

import os
import threading
import types
from collections import OrderedDict
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fuse_attention", "MASK_CACHE_BYTES"]

#: Upper bound on the bytes of shift masks kept between calls (all models together).
MASK_CACHE_BYTES = 256 * 2**20

_masks: OrderedDict[tuple, object] = OrderedDict()
_mask_bytes = 0
_lock = threading.Lock()


def _nbytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    return 0


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


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale + bias [+ mask]) @ v`` in one fused call.

    Args:
        q, k, v: ``(B*nW, heads, N, d)``, windows ordered batch-major as the official code.
        bias: ``(heads, N, N)`` position bias, dtype of ``q``.
        mask: ``(nW, N, N)`` shift mask (0 / -100) or None.
    """
    if mask is None:
        full = bias.unsqueeze(0)
    else:
        nw = mask.shape[0]
        full = mask.to(bias.dtype).unsqueeze(1) + bias.unsqueeze(0)  # (nW, heads, N, N)
        if q.shape[0] != nw:
            full = full.repeat(q.shape[0] // nw, 1, 1, 1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=full, scale=scale)


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
    """SwinIR ``SwinTransformerBlock.calculate_mask``, memoised per size."""
    key = ("swinir", self.window_size, self.shift_size, tuple(x_size))
    return _cached_mask(key, lambda: type(self).calculate_mask(self, x_size))


# --------------------------------------------------------------------------- DAT


def _dat_forward(self, qkv, H, W, mask=None):
    """DAT ``Spatial_Attention.forward(qkv, H, W, mask)``, fused; returns ``(B, H, W, C)``."""
    if not _inference(self):
        return type(self).forward(self, qkv, H, W, mask)
    from spandrel.architectures.DAT.__arch.DAT import windows2img

    q, k, v = qkv[0], qkv[1], qkv[2]
    c = q.shape[2]
    q, k, v = self.im2win(q, H, W), self.im2win(k, H, W), self.im2win(v, H, W)
    n = q.shape[2]
    if self.position_bias:
        def make():
            pos = self.pos(self.rpe_biases)
            return pos[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        bias = _cached_bias(self, list(self.pos.parameters()), make, q.dtype, q.device)
    else:
        bias = q.new_zeros((1, n, n))
    x = _attend(q, k, v, bias, mask, self.scale)
    x = x.transpose(1, 2).reshape(-1, self.H_sp * self.W_sp, c)
    return windows2img(x, self.H_sp, self.W_sp, H, W)


def _dat_mask(self, H, W, dtype=None):
    """DAT ``Adaptive_Spatial_Attention.calculate_mask``, memoised per size."""
    key = ("dat", tuple(self.split_size), tuple(self.shift_size), H, W, dtype)
    return _cached_mask(key, lambda: type(self).calculate_mask(self, H, W, dtype=dtype))


# --------------------------------------------------------------------------- registry


def _targets() -> list[tuple[type, str, Callable]]:
    """(class, method name, replacement) for every spandrel class we know how to fuse."""
    out: list[tuple[type, str, Callable]] = []
    try:
        from spandrel.architectures.SwinIR.__arch import SwinIR as swinir

        out += [(swinir.WindowAttention, "forward", _swin_forward),
                (swinir.SwinTransformerBlock, "calculate_mask", _swin_block_mask)]
    except ImportError:  # pragma: no cover - spandrel layout changed
        pass
    try:
        from spandrel.architectures.DRCT.__arch import drct_arch

        out.append((drct_arch.WindowAttention, "forward", _swin_forward))
    except ImportError:  # pragma: no cover
        pass
    try:
        from spandrel.architectures.HAT.__arch import HAT as hat

        out.append((hat.WindowAttention, "forward", _hat_forward))
    except ImportError:  # pragma: no cover
        pass
    try:
        from spandrel.architectures.DAT.__arch import DAT as dat

        out += [(dat.Spatial_Attention, "forward", _dat_forward),
                (dat.Adaptive_Spatial_Attention, "calculate_mask", _dat_mask)]
    except ImportError:  # pragma: no cover
        pass
    return out


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
