"""Mixed precision for SR networks: the pixel-level head and tail stay in float32 under autocast.

Under ``torch.autocast`` (bf16 on CPU, bf16/fp16 on CUDA) every convolution runs
in the low-precision type, including the first convolution, which reads the
image, and the reconstruction (``conv_after_body``, the upsampler,
``conv_last``), which writes it.  Their rounding lands directly on output
pixels, while their cost is a few percent of a transformer body.  Keeping just
these modules in float32 removed most of the bf16 quality cost on Set5
(DAT-light x2: -0.018 -> -0.003 dB, x4: -0.023 -> -0.006 dB PSNR-Y; see
benchmarks/RESULTS.md) at no measurable speed cost.  Outside autocast the
modules run unchanged.
"""

from __future__ import annotations

import types

import torch
from torch import nn

__all__ = ["HEAD_TAIL", "keep_head_and_tail_fp32"]

#: Attribute names of the pixel-level modules in the BasicSR-style SR networks spandrel builds
#: (SwinIR, HAT, DRCT, DAT, RGT, ...).
HEAD_TAIL = ("conv_first", "conv_after_body", "conv_before_upsample", "upsample", "conv_up1", "conv_up2",
             "conv_hr", "conv_last")


def _fp32_forward(self, x: torch.Tensor) -> torch.Tensor:
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return type(self).forward(self, x.float())
    return type(self).forward(self, x)


def keep_head_and_tail_fp32(model: nn.Module) -> list[str]:
    """Make the top-level modules named in :data:`HEAD_TAIL` run in float32 under autocast.

    Patches instances (idempotent); parameters and state-dict names are untouched.
    Only direct children of ``model`` are considered, so blocks inside the body
    that reuse these names are not affected.

    Args:
        model: A super-resolution network (``forward(x)`` on ``(N, C, H, W)``).

    Returns:
        The names of the modules patched (empty when none match).
    """
    done = []
    for name in HEAD_TAIL:
        mod = getattr(model, name, None)
        if isinstance(mod, nn.Module) and not mod.__dict__.get("_restore_fp32", False):
            mod.forward = types.MethodType(_fp32_forward, mod)
            mod.__dict__["_restore_fp32"] = True
            done.append(name)
    return done
