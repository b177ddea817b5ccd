"""Rawformer generator: unpaired raw-to-raw translation between camera sensors.

Paper: G. Perevozchikov, N. Mehta, M. Afifi, R. Timofte, "Rawformer: Unpaired
Raw-to-Raw Translation for Learnable Camera ISPs", ECCV 2024.  Official code:
``gosha20777/rawformer`` (``ViTRawNetGenerator`` in
``rawformer/models/generator/vitrawnet.py``, built from
``rawformer/torch/layers/{rawnet,transformer,cnn}.py``).

This is an independent re-implementation that keeps the official module tree,
so the official generator state dicts (``<epoch>_net_gen_ab.pth`` etc., plain
state dicts) load with ``strict=True``:

* ``net.layer_input`` (Conv3x3 + activation), ``net.layer_output`` (Conv1x1);
* ``net.modnet`` - a recursive U-Net: every level is a ``RawNetBlock`` with a
  ``conv`` (``DBlock``: RawFormer block then a stride-2 downsample), a
  ``deconv`` (``UBlock``: ``re_alpha * upsample``, concatenation with the skip,
  style-modulated RawFormer block) and an ``inner_module`` holding the next
  level; the innermost ``inner_module`` is the ViT bottleneck
  (``ExtendedPixelwiseViT``) whose extra token(s) provide the style vector for
  every ``UBlock``.
* RawFormer blocks use *CQA* (condensed query attention over
  ``token_size x token_size`` patches) in parallel with a depth-wise conv, then
  an ``SPFN`` two-branch (3x3 / 5x5) feed-forward network.

The ViT's Fourier positional embedding runs over a grid whose size is baked
into the persistent buffers ``trans_input.x_const`` / ``y_const``, so a model
only runs at exactly ``input_shape[1:]`` (official: 256 x 256).  The official
grid is built with ``meshgrid(arange(W), arange(H))`` ('ij' indexing) and
flattened in (W, H) order while the tokens are flattened in (H, W) order - for
non-square grids the embedding is effectively transposed.  This module keeps
that behaviour and always uses the loaded buffers.

Hyper-parameters that leave no trace in a state dict (and therefore cannot be
recovered by :func:`infer_params`): ``n_heads`` of the ViT (the head count of
``nn.MultiheadAttention``), ``rawnet_token_size`` (CQA patch size),
``modnet_demod``, the activations and ``activ_output``.  They default to the
official preset ``'rawformer'`` (``n_heads=6``, token size 4, demodulation on,
GELU / LeakyReLU, sigmoid output); :func:`load_rawformer` accepts overrides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor, SizeRequirements, StateDict
from spandrel.util import KeyCondition, get_seq_len
from torch import Tensor, nn

from restore.models.archs._base import ArchInfo, Official, describe, register

__all__ = [
    "ViTRawNetGenerator",
    "RawformerArch",
    "ARCH",
    "infer_params",
    "load_rawformer",
    "OFFICIAL_DEFAULT_KWARGS",
]

#: The official preset ``'rawformer'`` (``rawformer/presets.py``) with the data
#: shape ``(3, 256, 256)`` used by ``scripts/image2image/{pretrain,train}.py``.
OFFICIAL_DEFAULT_KWARGS: dict[str, Any] = {
    "features": 192,
    "n_heads": 6,
    "n_blocks": 12,
    "ffn_features": 768,
    "embed_features": 192,
    "activ": "gelu",
    "norm": "layer",
    "input_shape": (3, 256, 256),
    "output_shape": (3, 256, 256),
    "modnet_features_list": (24, 48, 96, 192),
    "modnet_activ": "leakyrelu",
    "modnet_norm": None,
    "modnet_downsample": "conv",
    "modnet_upsample": "upsample-conv",
    "modnet_rezero": False,
    "modnet_demod": True,
    "rezero": True,
    "activ_output": "sigmoid",
    "style_rezero": True,
    "style_bias": True,
    "n_ext": 1,
    "rawnet_num_heads": 1,
    "rawnet_token_size": 4,
}


# --------------------------------------------------------------------------------------
# small factories (names/semantics of the official ``rawformer.torch.select`` helpers)
# --------------------------------------------------------------------------------------


def _split_spec(spec: Any) -> tuple[Any, dict[str, Any]]:
    """``'name'`` or ``{'name': ..., **kwargs}`` -> ``(name, kwargs)``."""
    if isinstance(spec, Mapping):
        spec = dict(spec)
        return spec.pop("name"), spec
    return spec, {}


def _activation(spec: Any) -> nn.Module:
    name, kwargs = _split_spec(spec)
    if name is None or name == "linear":
        return nn.Identity()
    if name == "gelu":
        return nn.GELU(**kwargs)
    if name == "relu":
        return nn.ReLU(inplace=True, **kwargs)
    if name == "leakyrelu":
        return nn.LeakyReLU(inplace=True, **kwargs)
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"unknown activation {name!r}")


def _norm(spec: Any, features: int) -> nn.Module:
    # Note: like the official code, 'layer' on an NCHW tensor normalises the last (W) axis.
    name, kwargs = _split_spec(spec)
    if name is None:
        return nn.Identity()
    if name == "layer":
        return nn.LayerNorm((features,), **kwargs)
    if name == "batch":
        return nn.BatchNorm2d(features, **kwargs)
    if name == "instance":
        return nn.InstanceNorm2d(features, **kwargs)
    raise ValueError(f"unknown normalisation {name!r}")


def _downsample_x2(spec: Any, features: int) -> nn.Module:
    name, kwargs = _split_spec(spec)
    if name == "conv":
        return nn.Conv2d(features, features, kernel_size=2, stride=2, **kwargs)
    if name == "conv3":
        return nn.Conv2d(features, features, kernel_size=3, stride=2, padding=1, **kwargs)
    if name == "avgpool":
        return nn.AvgPool2d(kernel_size=2, stride=2, **kwargs)
    if name == "maxpool":
        return nn.MaxPool2d(kernel_size=2, stride=2, **kwargs)
    raise ValueError(f"unsupported modnet_downsample {name!r} (supported: conv, conv3, avgpool, maxpool)")


def _upsample_x2(spec: Any, features: int) -> nn.Module:
    name, kwargs = _split_spec(spec)
    if name == "upsample-conv":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, **kwargs),
            nn.Conv2d(features, features, kernel_size=3, padding=1),
        )
    if name == "deconv":
        return nn.ConvTranspose2d(features, features, kernel_size=2, stride=2, **kwargs)
    if name == "upsample":
        return nn.Upsample(scale_factor=2, **kwargs)
    raise ValueError(f"unsupported modnet_upsample {name!r} (supported: upsample-conv, deconv, upsample)")


# --------------------------------------------------------------------------------------
# RawFormer blocks (CQA attention + SPFN)
# --------------------------------------------------------------------------------------


def _patch_tokens(x: Tensor, ts: int) -> Tensor:
    """(N, C, H, W) -> (N, (H/ts)*(W/ts), C*ts*ts); each token is one ts x ts patch, (C, ts, ts) order."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // ts, ts, w // ts, ts).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // ts) * (w // ts), c * ts * ts)


def _patch_untokens(t: Tensor, c: int, h: int, w: int, ts: int) -> Tensor:
    """Inverse of :func:`_patch_tokens`: (N, L, C*ts*ts) -> (N, C, H, W)."""
    n = t.shape[0]
    t = t.reshape(n, h // ts, w // ts, c, ts, ts).permute(0, 3, 1, 4, 2, 5)
    return t.reshape(n, c, h, w)


def _demod_scale(style: Tensor, weight: Tensor, eps: float = 1e-6) -> Tensor:
    """StyleGAN2 demodulation: ``1 / sqrt(sum_i s_i^2 * sum_hw W[o, i]^2 + eps)`` -> (N, C_out)."""
    w_sq = weight.square().sum(dim=(2, 3))  # (C_out, C_in)
    sigma_sq = (style.square().unsqueeze(2) * w_sq.t().unsqueeze(0)).sum(dim=1)
    return torch.rsqrt(sigma_sq + eps)


class CQA(nn.Module):
    """Condensed-query attention over non-overlapping ``token_size`` patches.

    ``q, k, v = qkv(x)``; a condensed query ``q_r = q_pwconv(AvgPool2d(2)(q))``
    attends to the keys (``attn_h = softmax(q_r k^T t)``), the full query attends
    to the condensed one (``attn_u = softmax(q q_r^T t)``), and the output is
    ``project_out(attn_u @ (attn_h @ v))``.  Tokens are L2-normalised and
    ``t = 1/sqrt(dim)`` is a constant (``num_heads`` is unused, as upstream).

    Shapes: ``x`` (B, dim, H, W) float -> (B, dim, H, W).  H, W must be
    divisible by ``2 * token_size`` (ValueError otherwise).
    """

    def __init__(self, dim: int, num_heads: int = 1, bias: bool = True, token_size: int = 4) -> None:
        super().__init__()
        self.num_heads = num_heads
        # upstream: 1 / torch.sqrt(torch.tensor(dim, dtype=float32)); kept as that float32 value
        self.temperature = float(1 / torch.sqrt(torch.tensor(float(dim), dtype=torch.float32, device="cpu")))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.q_pwconv = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.pool = nn.AvgPool2d(2, 2)
        self.token_size = token_size

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        ts = self.token_size
        _, c, h, w = q.shape
        if h % (2 * ts) or w % (2 * ts):
            raise ValueError(
                f"CQA with token_size={ts} needs H and W divisible by {2 * ts}; got {h}x{w} "
                "(the input size does not match the model's fixed size)"
            )
        q_red = self.q_pwconv(self.pool(q))
        q_tok = F.normalize(_patch_tokens(q, ts), dim=-1)
        k_tok = F.normalize(_patch_tokens(k, ts), dim=-1)
        v_tok = _patch_tokens(v, ts)
        qr_tok = F.normalize(_patch_tokens(q_red, ts), dim=-1)
        attn_h = torch.softmax(qr_tok @ k_tok.transpose(-1, -2) * self.temperature, dim=-1)
        attn_u = torch.softmax(q_tok @ qr_tok.transpose(-1, -2) * self.temperature, dim=-1)
        out = attn_u @ (attn_h @ v_tok)
        return _patch_untokens(out, c, h, w, ts)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=1)
        return self.project_out(self._attend(q, k, v))


class ModCQA(CQA):
    """Style-modulated :class:`CQA`: the query is scaled per channel by ``s``
    before condensation, and the output is demodulated with ``project_out.weight``.

    Shapes: ``x`` (B, dim, H, W), ``s`` (B, dim) -> (B, dim, H, W).
    """

    def __init__(
        self, dim: int, num_heads: int = 1, bias: bool = True, token_size: int = 4,
        eps: float = 1e-6, demod: bool = True,
    ) -> None:
        super().__init__(dim, num_heads, bias, token_size)
        self._eps = eps
        self._demod = demod

    def forward(self, x: Tensor, s: Tensor) -> Tensor:  # type: ignore[override]
        q, k, v = self.qkv(x).chunk(3, dim=1)
        q = q * s[:, :, None, None]
        out = self.project_out(self._attend(q, k, v))
        if self._demod:
            out = out * _demod_scale(s, self.project_out.weight)[:, :, None, None]
        return out


class SPFN(nn.Module):
    """Two-branch (3x3 and 5x5 depth-wise) feed-forward network with cross-concatenation.

    Shapes: (B, in_features, H, W) -> (B, out_features, H, W).
    """

    def __init__(self, in_features: int, hidden_features: int | None = None, out_features: int | None = None) -> None:
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        hid = hidden_features
        self.pointwise_3x3_1 = nn.Conv2d(in_features, hid, kernel_size=1)
        self.depthwise_3x3 = nn.Conv2d(hid, hid, kernel_size=3, padding=1, groups=hid)
        self.pointwise_3x3_2 = nn.Conv2d(hid * 2, out_features, kernel_size=1)
        self.pointwise_5x5_1 = nn.Conv2d(in_features, hid, kernel_size=1)
        self.depthwise_5x5 = nn.Conv2d(hid, hid, kernel_size=5, padding=2, groups=hid)
        self.pointwise_5x5_2 = nn.Conv2d(hid * 2, out_features, kernel_size=1)
        self.act_layer = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        a = self.act_layer(self.depthwise_3x3(self.pointwise_3x3_1(x)))
        b = self.act_layer(self.depthwise_5x5(self.pointwise_5x5_1(x)))
        return self.pointwise_3x3_2(torch.cat([b, a], dim=1)) + self.pointwise_5x5_2(torch.cat([a, b], dim=1))


def _rezero_alpha(rezero: bool) -> nn.Parameter | float:
    """ReZero gate: a learnable scalar starting at 0 (key ``re_alpha``), or the constant 1."""
    return nn.Parameter(torch.zeros((1,))) if rezero else 1.0


class StyleBlock(nn.Module):
    """Per-channel style scale ``s = 1 + re_alpha * affine_mod(mod)``: (B, mod_features) -> (B, style_features)."""

    def __init__(self, mod_features: int, style_features: int, rezero: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.affine_mod = nn.Linear(mod_features, style_features, bias=bias)
        self.rezero = rezero
        self.re_alpha = _rezero_alpha(rezero)

    def forward(self, mod: Tensor) -> Tensor:
        return 1 + self.re_alpha * self.affine_mod(mod)


class _RawFormerBody(nn.Module):
    """Shared layout of (Mod)RawFormerBlock: attention || depth-wise conv, SPFN, output conv."""

    def _build(self, in_features: int, out_features: int, activ: Any, norm: Any, mid_features: int) -> None:
        self.norm1 = _norm(norm, in_features)
        self.dw = nn.Conv2d(in_features, in_features, kernel_size=3, padding=1, groups=in_features)
        self.pw = nn.Conv2d(in_features * 2, in_features, kernel_size=1)
        self.norm2 = _norm(norm, in_features)
        self.ffn = SPFN(in_features, mid_features, in_features)
        self.out_conv = nn.Conv2d(in_features, out_features, kernel_size=3, padding=1)
        self.act = _activation(activ)

    def _run(self, x: Tensor, attn_out: Tensor, x_norm: Tensor) -> Tensor:
        x_dw = self.act(self.dw(x_norm))
        x = x + self.pw(torch.cat([attn_out, x_dw], dim=1))
        x = x + self.ffn(self.norm2(x))
        return self.act(self.out_conv(x))


class RawFormerBlock(_RawFormerBody):
    """Encoder block: (B, in_features, H, W) -> (B, out_features, H, W)."""

    def __init__(
        self, in_features: int, out_features: int, activ: Any, norm: Any,
        mid_features: int | None = None, num_heads: int = 1, token_size: int = 4,
    ) -> None:
        super().__init__()
        self._build(in_features, out_features, activ, norm, mid_features or out_features)
        self.attn = CQA(in_features, num_heads, bias=True, token_size=token_size)

    def forward(self, x: Tensor) -> Tensor:
        x_norm = self.norm1(x)
        return self._run(x, self.attn(x_norm), x_norm)


class ModRawFormerBlock(_RawFormerBody):
    """Decoder block modulated by the ViT style vector.

    Shapes: ``x`` (B, in_features, H, W), ``mod`` (B, mod_features) -> (B, out_features, H, W).
    """

    def __init__(
        self, in_features: int, out_features: int, activ: Any, norm: Any, mod_features: int,
        mid_features: int | None = None, demod: bool = True, style_rezero: bool = True,
        style_bias: bool = True, num_heads: int = 1, token_size: int = 4,
    ) -> None:
        super().__init__()
        self.style_block = StyleBlock(mod_features, in_features, style_rezero, style_bias)
        self._build(in_features, out_features, activ, norm, mid_features or out_features)
        self.attn = ModCQA(in_features, num_heads, bias=True, token_size=token_size, demod=demod)

    def forward(self, x: Tensor, mod: Tensor) -> Tensor:
        s = self.style_block(mod)
        x_norm = self.norm1(x)
        return self._run(x, self.attn(x_norm, s), x_norm)


class DBlock(nn.Module):
    """Down block: ``r = RawFormerBlock(x)``, returns ``(downsample(r), r)``.

    Shapes: (B, C, H, W) -> (B, F, H/2, W/2) and the skip (B, F, H, W).
    """

    def __init__(
        self, features: int, activ: Any, norm: Any, downsample: Any, input_shape: Sequence[int],
        num_heads: int = 1, token_size: int = 4,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        self.downsample = _downsample_x2(downsample, features)
        self.block = RawFormerBlock(c, features, activ, norm, num_heads=num_heads, token_size=token_size)
        self.output_shape = (features, h // 2, w // 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r = self.block(x)
        return self.downsample(r), r


class UBlock(nn.Module):
    """Up block: ``block(cat([re_alpha * upsample(x), r]), mod)``.

    Shapes: ``x`` (B, C_in, H, W), ``r`` (B, C_skip, 2H, 2W), ``mod`` (B, M) -> (B, C_out, 2H, 2W).
    """

    def __init__(
        self, input_shape: Sequence[int], output_features: int, skip_features: int, mod_features: int,
        activ: Any, norm: Any, upsample: Any, rezero: bool = True, demod: bool = True,
        style_rezero: bool = True, style_bias: bool = True, num_heads: int = 1, token_size: int = 4,
    ) -> None:
        super().__init__()
        c_in, h, w = input_shape
        self.upsample = _upsample_x2(upsample, c_in)
        self.block = ModRawFormerBlock(
            skip_features + c_in, output_features, activ, norm=norm, mod_features=mod_features,
            mid_features=max(c_in, input_shape[0]), demod=demod, style_rezero=style_rezero,
            style_bias=style_bias, num_heads=num_heads, token_size=token_size,
        )
        self.output_shape = (output_features, 2 * h, 2 * w)
        self.re_alpha = _rezero_alpha(rezero)

    def forward(self, x: Tensor, r: Tensor, mod: Tensor) -> Tensor:
        x = self.re_alpha * self.upsample(x)
        return self.block(torch.cat([x, r], dim=1), mod)


class RawNetBlock(nn.Module):
    """One U-Net level: ``conv`` -> ``inner_module`` -> ``deconv``; returns ``(y, mod)``.

    ``inner_module`` is the next ``RawNetBlock`` or the ViT bottleneck; both
    return ``(features, style vector)``.
    """

    def __init__(
        self, features: int, activ: Any, norm: Any, image_shape: Sequence[int], downsample: Any,
        upsample: Any, mod_features: int, rezero: bool = True, demod: bool = True,
        style_rezero: bool = True, style_bias: bool = True, num_heads: int = 1, token_size: int = 4,
        inner_module: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv = DBlock(features, activ, norm, downsample, image_shape, num_heads=num_heads, token_size=token_size)
        self.inner_shape = self.conv.output_shape
        self.inner_module = inner_module
        self.deconv = UBlock(
            input_shape=self.inner_shape, output_features=image_shape[0], skip_features=self.inner_shape[0],
            mod_features=mod_features, activ=activ, norm=norm, upsample=upsample, rezero=rezero,
            demod=demod, style_rezero=style_rezero, style_bias=style_bias, num_heads=num_heads,
            token_size=token_size,
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.inner_module is None:
            raise RuntimeError("RawNetBlock has no inner module")
        y, r = self.conv(x)
        y, mod = self.inner_module(y)
        return self.deconv(y, r, mod), mod


class RawNet(nn.Module):
    """The modulated U-Net: ``layer_input`` -> ``modnet`` (nested levels + bottleneck) -> ``layer_output``.

    Shapes: (B, C, H, W) -> (B, C, H, W) (no output activation here).
    """

    def __init__(
        self, features_list: Sequence[int], activ: Any, norm: Any, image_shape: Sequence[int],
        downsample: Any, upsample: Any, mod_features: int, bottleneck_factory: Any,
        rezero: bool = True, demod: bool = True, style_rezero: bool = True, style_bias: bool = True,
        num_heads: int = 1, token_size: int = 4,
    ) -> None:
        super().__init__()
        self.features_list = list(features_list)
        self.image_shape = tuple(image_shape)
        self.layer_input = nn.Sequential(
            nn.Conv2d(image_shape[0], features_list[0], kernel_size=3, padding=1),
            _activation(activ),
        )
        self.layer_output = nn.Conv2d(features_list[0], image_shape[0], kernel_size=1)

        shapes = []  # image shape entering each level
        shape = (features_list[0], *image_shape[1:])
        for f in features_list:
            shapes.append(shape)
            shape = (f, shape[1] // 2, shape[2] // 2)
        self.inner_shape = shape

        inner: nn.Module = bottleneck_factory(shape)
        for f, shp in reversed(list(zip(features_list, shapes))):
            inner = RawNetBlock(
                f, activ, norm, shp, downsample, upsample, mod_features, rezero, demod,
                style_rezero, style_bias, num_heads=num_heads, token_size=token_size, inner_module=inner,
            )
        self.modnet = inner

    def forward(self, x: Tensor) -> Tensor:
        y, _mod = self.modnet(self.layer_input(x))
        return self.layer_output(y)


# --------------------------------------------------------------------------------------
# ViT bottleneck
# --------------------------------------------------------------------------------------


class PositionWiseFFN(nn.Module):
    """``Linear -> activ -> Linear`` on (..., features)."""

    def __init__(self, features: int, ffn_features: int, activ: Any = "gelu") -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, ffn_features), _activation(activ), nn.Linear(ffn_features, features)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block with rezero, sequence-first (L, B, features)."""

    def __init__(
        self, features: int, ffn_features: int, n_heads: int, activ: Any = "gelu", norm: Any = None,
        rezero: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = _norm(norm, features)
        self.atten = nn.MultiheadAttention(features, n_heads)
        self.norm2 = _norm(norm, features)
        self.ffn = PositionWiseFFN(features, ffn_features, activ)
        self.rezero = rezero
        self.re_alpha = _rezero_alpha(rezero)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm1(x)
        y, _ = self.atten(y, y, y, need_weights=False)
        x = x + self.re_alpha * y
        return x + self.re_alpha * self.ffn(self.norm2(x))


class TransformerEncoder(nn.Module):
    """``n_blocks`` :class:`TransformerBlock` s; (B, L, features) -> (B, L, features)."""

    def __init__(
        self, features: int, ffn_features: int, n_heads: int, n_blocks: int, activ: Any, norm: Any,
        rezero: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            *[TransformerBlock(features, ffn_features, n_heads, activ, norm, rezero) for _ in range(n_blocks)]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x.permute(1, 0, 2)).permute(1, 0, 2)


class FourierEmbedding(nn.Module):
    """``sin(projector([2x/(W-1) - 1, 2y/(H-1) - 1]))``: positions (1, L) each -> (1, L, features)."""

    def __init__(self, features: int, height: int, width: int) -> None:
        super().__init__()
        self.projector = nn.Linear(2, features)
        self._height = height
        self._width = width

    def forward(self, y: Tensor, x: Tensor) -> Tensor:
        x_norm = 2 * x / (self._width - 1) - 1
        y_norm = 2 * y / (self._height - 1) - 1
        z = torch.stack((x_norm, y_norm), dim=2)
        return torch.sin(self.projector(z))


class ViTInput(nn.Module):
    """Concatenate the Fourier positional embedding to the pixel tokens and project.

    The grid buffers ``x_const`` / ``y_const`` (1, H*W) follow the official
    construction (``meshgrid(arange(W), arange(H))``, 'ij', flattened in (W, H)
    order) - see the module docstring.  Shapes: (B, L, input_features) ->
    (B, L, features) with L = H*W.
    """

    def __init__(self, input_features: int, embed_features: int, features: int, height: int, width: int) -> None:
        super().__init__()
        self._height = height
        self._width = width
        xs = torch.arange(width, dtype=torch.float32)
        ys = torch.arange(height, dtype=torch.float32)
        gx, gy = torch.meshgrid(xs, ys, indexing="ij")  # (W, H) each
        self.register_buffer("x_const", gx.reshape(1, -1))
        self.register_buffer("y_const", gy.reshape(1, -1))
        self.embed = FourierEmbedding(embed_features, height, width)
        self.output = nn.Linear(embed_features + input_features, features)

    def forward(self, x: Tensor) -> Tensor:
        embed = self.embed(self.y_const, self.x_const)
        embed = embed.expand(x.shape[0], *embed.shape[1:])
        return self.output(torch.cat([embed, x], dim=2))


class ExtendedPixelwiseViT(nn.Module):
    """Pixel-wise ViT bottleneck with ``n_ext`` learned extra tokens.

    Shapes: (B, C, H, W) -> ((B, C, H, W), (B, n_ext * features)); the second
    output (the extra tokens after the encoder, flattened) is the style vector
    that modulates every decoder level.
    """

    def __init__(
        self, features: int, n_heads: int, n_blocks: int, ffn_features: int, embed_features: int,
        activ: Any, norm: Any, image_shape: Sequence[int], rezero: bool = True, n_ext: int = 1,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        c, h, w = self.image_shape
        self.trans_input = ViTInput(c, embed_features, features, h, w)
        self.encoder = TransformerEncoder(features, ffn_features, n_heads, n_blocks, activ, norm, rezero)
        self.extra_tokens = nn.Parameter(torch.empty((1, n_ext, features)))
        nn.init.normal_(self.extra_tokens)
        self.trans_output = nn.Linear(features, c)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, c, h, w = x.shape
        tokens = x.reshape(n, c, h * w).permute(0, 2, 1)
        y = self.trans_input(tokens)
        y = torch.cat([y, self.extra_tokens.expand(n, -1, -1)], dim=1)
        y = self.encoder(y)
        out = self.trans_output(y[:, : h * w]).permute(0, 2, 1).reshape(n, -1, h, w)
        return out, y[:, h * w :].reshape(n, -1)


# --------------------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------------------


class ViTRawNetGenerator(nn.Module):
    """Rawformer generator (one translation direction, e.g. ``gen_ab``).

    Args mirror the official constructor; defaults are the official preset
    ``'rawformer'`` (:data:`OFFICIAL_DEFAULT_KWARGS`; note the upstream
    constructor's own default for ``activ_output`` is ``None``, while every
    official script uses the preset's ``'sigmoid'``).

    Input: float tensor (B, C, H, W) with C = ``input_shape[0]`` (3 in the
    official scripts: camera-space linear RGB from ``ToTensor``, [0, 1], no
    normalisation) and (H, W) == ``input_shape[1:]`` exactly.
    Output: (B, C, H, W), in (0, 1) after the sigmoid ``activ_output``.

    Raises:
        ValueError: at construction for inconsistent shapes (input != output
            shape, a grid the token size cannot tile, a bottleneck grid smaller
            than 2x2); in :meth:`forward` for a wrong input rank, channel count
            or spatial size.
    """

    def __init__(
        self,
        features: int = 192,
        n_heads: int = 6,
        n_blocks: int = 12,
        ffn_features: int = 768,
        embed_features: int = 192,
        activ: Any = "gelu",
        norm: Any = "layer",
        input_shape: Sequence[int] = (3, 256, 256),
        output_shape: Sequence[int] = (3, 256, 256),
        modnet_features_list: Sequence[int] = (24, 48, 96, 192),
        modnet_activ: Any = "leakyrelu",
        modnet_norm: Any = None,
        modnet_downsample: Any = "conv",
        modnet_upsample: Any = "upsample-conv",
        modnet_rezero: bool = False,
        modnet_demod: bool = True,
        rezero: bool = True,
        activ_output: Any = "sigmoid",
        style_rezero: bool = True,
        style_bias: bool = True,
        n_ext: int = 1,
        rawnet_num_heads: int = 1,
        rawnet_token_size: int = 4,
    ) -> None:
        super().__init__()
        input_shape = tuple(int(v) for v in input_shape)
        output_shape = tuple(int(v) for v in output_shape)
        if input_shape != output_shape:
            raise ValueError(f"input_shape {input_shape} must equal output_shape {output_shape}")
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
        if not modnet_features_list:
            raise ValueError("modnet_features_list must not be empty")
        levels = len(modnet_features_list)
        c, h, w = input_shape
        ts = int(rawnet_token_size)
        unit = ts * 2**levels
        if h % unit or w % unit:
            raise ValueError(
                f"input size {h}x{w} must be divisible by token_size * 2**levels = {unit} "
                f"(token_size {ts}, {levels} U-Net levels)"
            )
        if h // 2**levels < 2 or w // 2**levels < 2:
            raise ValueError("the ViT bottleneck grid must be at least 2x2 (its Fourier embedding divides by H-1, W-1)")

        self.image_shape = input_shape
        self.hyperparameters = {
            "features": features, "n_heads": n_heads, "n_blocks": n_blocks, "ffn_features": ffn_features,
            "embed_features": embed_features, "activ": activ, "norm": norm, "input_shape": input_shape,
            "output_shape": output_shape, "modnet_features_list": tuple(modnet_features_list),
            "modnet_activ": modnet_activ, "modnet_norm": modnet_norm, "modnet_downsample": modnet_downsample,
            "modnet_upsample": modnet_upsample, "modnet_rezero": modnet_rezero, "modnet_demod": modnet_demod,
            "rezero": rezero, "activ_output": activ_output, "style_rezero": style_rezero,
            "style_bias": style_bias, "n_ext": n_ext, "rawnet_num_heads": rawnet_num_heads,
            "rawnet_token_size": ts,
        }

        def bottleneck(shape: tuple[int, int, int]) -> nn.Module:
            return ExtendedPixelwiseViT(
                features, n_heads, n_blocks, ffn_features, embed_features, activ, norm,
                image_shape=shape, rezero=rezero, n_ext=n_ext,
            )

        self.net = RawNet(
            modnet_features_list, modnet_activ, modnet_norm, input_shape, modnet_downsample,
            modnet_upsample, features * n_ext, bottleneck, rezero=modnet_rezero, demod=modnet_demod,
            style_rezero=style_rezero, style_bias=style_bias, num_heads=rawnet_num_heads, token_size=ts,
        )
        self.output = _activation(activ_output)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) float -> (B, C, H, W); see the class docstring for the size contract."""
        c, h, w = self.image_shape
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"expected input (B, {c}, {h}, {w}), got {tuple(x.shape)}")
        if tuple(x.shape[2:]) != (h, w):
            raise ValueError(
                f"Rawformer runs only at its fixed size {h}x{w} (the ViT positional grid is baked into "
                f"the weights); got {x.shape[2]}x{x.shape[3]} - tile the image into {h}x{w} tiles"
            )
        return self.output(self.net(x))


# --------------------------------------------------------------------------------------
# state-dict inference and spandrel architecture
# --------------------------------------------------------------------------------------

_ROOT = "net.modnet."


def _default_heads(features: int) -> int:
    """Official 6 heads when possible, else the largest divisor of ``features`` <= 6 (not recoverable)."""
    for h in (6, 5, 4, 3, 2, 1):
        if features % h == 0:
            return h
    return 1


def _default_token_size(grid_h: int, grid_w: int) -> int:
    """Official 4 when the bottleneck grid allows it, else the largest size <= 4 that tiles it."""
    g = math.gcd(grid_h, grid_w)
    for ts in (4, 3, 2, 1):
        if g % ts == 0:
            return ts
    return 1


def _is_meta(t: Tensor) -> bool:
    return t.device.type == "meta"


def infer_params(state_dict: Mapping[str, Tensor], **overrides: Any) -> dict[str, Any]:
    """Constructor kwargs of :class:`ViTRawNetGenerator` recovered from a state dict.

    Recovered from key names / shapes: ``features``, ``n_ext`` (from
    ``extra_tokens`` (1, n_ext, features)), ``embed_features``, ``n_blocks``,
    ``ffn_features``, ``norm``, ``rezero``, ``modnet_features_list`` (walking
    the ``inner_module`` nesting), input channels, ``modnet_downsample`` /
    ``modnet_upsample`` / ``modnet_rezero`` / ``modnet_norm``, ``style_rezero``,
    ``style_bias``.  The bottleneck grid comes from the values of ``x_const`` /
    ``y_const`` (width = max(x)+1, height = max(y)+1); on ``meta`` tensors only
    the length is known and the grid is taken as square.  ``input_shape`` =
    (C, grid_h * 2**levels, grid_w * 2**levels).

    Not recoverable (official preset used unless overridden): ``n_heads``
    (6, or the largest divisor of ``features`` <= 6), ``rawnet_token_size``
    (4 if the grid allows it), ``modnet_demod`` (True), ``activ`` ('gelu'),
    ``modnet_activ`` ('leakyrelu'), ``activ_output`` ('sigmoid'),
    ``rawnet_num_heads`` (1, unused).

    Args:
        state_dict: official-layout state dict (real or ``meta`` tensors).
        **overrides: values for any constructor kwarg, applied last.

    Raises:
        ValueError: if the keys are not a Rawformer generator's, are inconsistent,
            a non-square grid must be inferred from meta tensors, or an override
            names an unknown kwarg.
    """
    sd = state_dict
    unknown = set(overrides) - set(OFFICIAL_DEFAULT_KWARGS)
    if unknown:
        raise ValueError(f"unknown ViTRawNetGenerator kwargs: {sorted(unknown)}")
    if "net.layer_input.0.weight" not in sd:
        raise ValueError("not a Rawformer generator state dict (no 'net.layer_input.0.weight')")

    features_list: list[int] = []
    p = _ROOT
    while f"{p}conv.block.out_conv.weight" in sd:
        features_list.append(int(sd[f"{p}conv.block.out_conv.weight"].shape[0]))
        p += "inner_module."
    if not features_list or f"{p}extra_tokens" not in sd:
        raise ValueError("Rawformer state dict without U-Net levels or ViT bottleneck")
    b = p  # bottleneck prefix

    in_ch = int(sd["net.layer_input.0.weight"].shape[1])
    _, n_ext, features = (int(v) for v in sd[f"{b}extra_tokens"].shape)
    mod_w = sd[f"{_ROOT}deconv.block.style_block.affine_mod.weight"]
    if int(mod_w.shape[1]) != features * n_ext:
        raise ValueError(f"style input {mod_w.shape[1]} != features*n_ext = {features * n_ext}")
    if int(sd[f"{b}trans_output.weight"].shape[0]) != features_list[-1]:
        raise ValueError("ViT output channels do not match the deepest U-Net level")

    n_blocks = get_seq_len(sd, f"{b}encoder.encoder")
    kw: dict[str, Any] = dict(OFFICIAL_DEFAULT_KWARGS)
    kw["features"] = features
    kw["n_ext"] = n_ext
    kw["embed_features"] = int(sd[f"{b}trans_input.embed.projector.weight"].shape[0])
    kw["n_blocks"] = n_blocks
    if n_blocks:
        e0 = f"{b}encoder.encoder.0."
        kw["ffn_features"] = int(sd[f"{e0}ffn.net.0.weight"].shape[0])
        kw["norm"] = "layer" if f"{e0}norm1.weight" in sd else None
        kw["rezero"] = f"{e0}re_alpha" in sd
    kw["n_heads"] = _default_heads(features)
    kw["modnet_features_list"] = tuple(features_list)

    dkey = f"{_ROOT}conv.downsample.weight"
    if dkey in sd:
        kw["modnet_downsample"] = {2: "conv", 3: "conv3"}[int(sd[dkey].shape[-1])]
    else:
        kw["modnet_downsample"] = "avgpool"  # parameter-free; max-pool is indistinguishable
    if f"{_ROOT}deconv.upsample.1.weight" in sd:
        kw["modnet_upsample"] = "upsample-conv"
    elif f"{_ROOT}deconv.upsample.weight" in sd:
        kw["modnet_upsample"] = "deconv"
    else:
        kw["modnet_upsample"] = "upsample"
    kw["modnet_rezero"] = f"{_ROOT}deconv.re_alpha" in sd
    if f"{_ROOT}conv.block.norm1.running_mean" in sd:
        kw["modnet_norm"] = "batch"
    elif f"{_ROOT}conv.block.norm1.weight" in sd:
        kw["modnet_norm"] = "layer"
    else:
        kw["modnet_norm"] = None
    kw["style_rezero"] = f"{_ROOT}deconv.block.style_block.re_alpha" in sd
    kw["style_bias"] = f"{_ROOT}deconv.block.style_block.affine_mod.bias" in sd

    xc, yc = sd[f"{b}trans_input.x_const"], sd[f"{b}trans_input.y_const"]
    length = int(xc.shape[-1])
    if _is_meta(xc) or _is_meta(yc):
        side = math.isqrt(length)
        if side * side != length:
            raise ValueError(f"cannot recover a non-square {length}-cell grid from meta tensors")
        gh = gw = side
    else:
        gw = int(xc.max().item()) + 1
        gh = int(yc.max().item()) + 1
        if gh * gw != length:
            raise ValueError(f"x_const/y_const describe a {gh}x{gw} grid but hold {length} cells")
    levels = len(features_list)
    shape = (in_ch, gh * 2**levels, gw * 2**levels)
    kw["input_shape"] = shape
    kw["output_shape"] = shape
    kw["rawnet_token_size"] = _default_token_size(gh, gw)

    kw.update(overrides)
    for k in ("input_shape", "output_shape", "modnet_features_list"):
        kw[k] = tuple(kw[k])
    return kw


def _descriptor(
    arch: Architecture[ViTRawNetGenerator], state_dict: StateDict, **overrides: Any
) -> ImageModelDescriptor[ViTRawNetGenerator]:
    kw = infer_params(state_dict, **overrides)
    c, h, w = kw["input_shape"]
    levels = len(kw["modnet_features_list"])
    return describe(
        arch,
        ViTRawNetGenerator(**kw),
        state_dict,
        tags=[f"{kw['features']}f", f"{levels}lvl", f"{kw['n_blocks']}vit", f"{h}x{w}"],
        input_channels=c,
        output_channels=c,
        # Fixed size: the weights only run at exactly h x w (ArchInfo.fixed_size tells the tiler);
        # the native size passes these requirements and padded images stay a multiple of the grid gcd.
        size_requirements=SizeRequirements(minimum=min(h, w), multiple_of=math.gcd(h, w)),
    )


class RawformerArch(Architecture[ViTRawNetGenerator]):
    """spandrel architecture for the Rawformer generator (official key layout, no prefix)."""

    def __init__(self) -> None:
        super().__init__(
            id="Rawformer",
            name="Rawformer",
            detect=KeyCondition.has_all(
                "net.layer_input.0.weight",
                "net.layer_output.weight",
                "net.modnet.conv.block.attn.q_pwconv.weight",
                "net.modnet.conv.block.ffn.pointwise_5x5_2.weight",
                "net.modnet.deconv.block.style_block.affine_mod.weight",
                "net.modnet.deconv.block.attn.project_out.weight",
            ),
        )

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[ViTRawNetGenerator]:
        """Infer the kwargs (:func:`infer_params`), build, strict-load; raises ValueError/RuntimeError on mismatch."""
        return _descriptor(self, state_dict)

    #: Constructor kwargs that the state dict cannot tell; taken from checkpoint hparams when given.
    HPARAMS = ("n_heads", "rawnet_token_size", "rawnet_num_heads", "activ", "activ_output", "modnet_activ", "modnet_demod")

    def load_with(self, state_dict: StateDict, hparams: Mapping[str, Any]) -> ImageModelDescriptor[ViTRawNetGenerator]:
        """:meth:`load` with the non-recoverable kwargs in :attr:`HPARAMS` taken from ``hparams``."""
        return _descriptor(self, state_dict, **{k: hparams[k] for k in self.HPARAMS if k in hparams})


def load_rawformer(state_dict: StateDict, **overrides: Any) -> ImageModelDescriptor[ViTRawNetGenerator]:
    """Like ``RawformerArch.load`` but with values for the non-recoverable kwargs
    (e.g. ``n_heads=2``, ``rawnet_token_size=2``) supplied by the caller."""
    return _descriptor(ARCH, state_dict, **overrides)


#: The registered architecture instance.
ARCH = register(
    RawformerArch(),
    ArchInfo(
        task="raw-to-raw",
        input_encoding="raw-rgb",
        output_range="sigmoid",
        # The ViT bottleneck is global over the tile, so no finite overlap makes tiled and
        # whole-image outputs agree; 32 px = one CQA token at the deepest U-Net level of the
        # official config (token 4 x 2**3) and is enough to hide tile seams when blending.
        overlap=32,
        fixed_size=True,
        official=Official(
            repo="https://github.com/gosha20777/rawformer",
            checkpoints=("none released; training checkpoints NNNN_net_gen_ab.pth load",),
            layout="plain state_dict",
        ),
        notes=(
            "Runs only at the grid size baked into its weights (official 256x256). "
            "n_heads and the CQA token size are not stored in the weights: official 6 / 4 assumed."
        ),
    ),
)
