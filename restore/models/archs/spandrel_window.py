"""spandrel's window-attention super-resolution transformers: SwinIR, Swin2SR, DRCT, HAT, ATD, CRAFT.

spandrel detects, loads and runs them; this module declares what ``restore``
needs beyond spandrel's descriptor (:class:`~restore.models.archs.ArchInfo`):

* ``overlap`` (input pixels): at least one attention window of context on each
  side of a tile, so tiled and whole-image outputs agree (SwinIR / Swin2SR: 8x8
  windows -> 16; HAT: 16x16 windows plus overlapping cross-attention -> 32;
  DRCT, ATD, CRAFT: 32).  ``window``: the size they pad their input to
  internally (tiles align to it unless the attention runs fused).
* the fused inference attention (:mod:`restore.models.fused_attention`):
  SwinIR's and DRCT's ``WindowAttention`` (the same code), HAT's (it passes the
  relative position index as an argument), and the shifted-window masks the
  official code rebuilds on every call for any size other than the training
  size, memoised per size.
* no CPU bfloat16 verdict: not measured, so ``precision: auto`` stays fp32 on CPU.
"""

from __future__ import annotations

import torch

from ..fused_attention import attend, cached_bias, cached_mask, inference_only
from ._base import ArchInfo, AttentionPatch, Official, declare

__all__ = ["SWINIR", "SWIN2SR", "DRCT", "HAT", "ATD", "CRAFT"]


def _swin_bias(self, n: int, index: torch.Tensor, dtype, device) -> torch.Tensor:
    table = self.relative_position_bias_table
    return cached_bias(self, [table], lambda: table[index.reshape(-1)].view(n, n, -1).permute(2, 0, 1), dtype, device)


def _swin_core(self, x: torch.Tensor, index: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    b_, n, c = x.shape
    qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    bias = _swin_bias(self, n, index, q.dtype, q.device)
    out = attend(q, k, v, bias, mask, self.scale)
    return self.proj(out.transpose(1, 2).reshape(b_, n, c))


def _swin_forward(self, x, mask=None):
    """SwinIR / DRCT ``WindowAttention.forward(x, mask)``, fused."""
    if not inference_only(self):
        return type(self).forward(self, x, mask)
    return _swin_core(self, x, self.relative_position_index, mask)


def _hat_forward(self, x, rpi, mask=None):
    """HAT ``WindowAttention.forward(x, rpi, mask)``, fused."""
    if not inference_only(self):
        return type(self).forward(self, x, rpi, mask)
    return _swin_core(self, x, rpi, mask)


def _swin_block_mask(self, x_size):
    """SwinIR / DRCT ``SwinTransformerBlock.calculate_mask``, memoised per size."""
    key = (type(self).__module__, self.window_size, self.shift_size, tuple(x_size))
    return cached_mask(key, lambda: type(self).calculate_mask(self, x_size))


def _hat_mask(self, x_size, dtype):
    """HAT ``HAT.calculate_mask(x_size, dtype)`` (rebuilt on every forward officially), memoised per size."""
    key = ("hat", self.window_size, self.shift_size, tuple(x_size), dtype)
    return cached_mask(key, lambda: type(self).calculate_mask(self, x_size, dtype))


_SPANDREL = Official(repo="https://github.com/chaiNNer-org/spandrel", checkpoints=("every official release spandrel supports",),
                     layout="as released")
_SWINIR_MOD = "spandrel.architectures.SwinIR.__arch.SwinIR"
_DRCT_MOD = "spandrel.architectures.DRCT.__arch.drct_arch"
_HAT_MOD = "spandrel.architectures.HAT.__arch.HAT"

SWINIR = declare("SwinIR", ArchInfo(
    task="super-resolution", overlap=16, window=16, official=_SPANDREL,  # 8x8 windows
    attention=(AttentionPatch(_SWINIR_MOD, "WindowAttention", "forward", _swin_forward),
               AttentionPatch(_SWINIR_MOD, "SwinTransformerBlock", "calculate_mask", _swin_block_mask)),
))
SWIN2SR = declare("Swin2SR", ArchInfo(task="super-resolution", overlap=16, window=16, official=_SPANDREL))
DRCT = declare("DRCT", ArchInfo(
    task="super-resolution", overlap=32, window=32, official=_SPANDREL,  # SwinIR's window attention
    attention=(AttentionPatch(_DRCT_MOD, "WindowAttention", "forward", _swin_forward),
               AttentionPatch(_DRCT_MOD, "SwinTransformerBlock", "calculate_mask", _swin_block_mask)),
))
HAT = declare("HAT", ArchInfo(
    task="super-resolution", overlap=32, window=32, official=_SPANDREL,  # 16x16 windows + overlapping cross-attention
    attention=(AttentionPatch(_HAT_MOD, "WindowAttention", "forward", _hat_forward),
               AttentionPatch(_HAT_MOD, "HAT", "calculate_mask", _hat_mask)),
))
ATD = declare("ATD", ArchInfo(task="super-resolution", overlap=32, window=32, official=_SPANDREL))
CRAFT = declare("CRAFT", ArchInfo(task="super-resolution", overlap=32, window=32, official=_SPANDREL))
