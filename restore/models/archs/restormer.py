"""Restormer and the building blocks its descendants (DRSformer, Histoformer) share.

Restormer - Zamir, Arora, Khan, Hayat, Khan, Yang, "Restormer: Efficient Transformer
for High-Resolution Image Restoration", CVPR 2022 (official code: swz30/Restormer,
``basicsr/models/archs/restormer_arch.py``).  This is an independent implementation
that keeps the official class name, constructor keywords, defaults and state-dict
key names, so released checkpoints (their ``params`` entry) load with
``strict=True``.

The module has three parts:

* building blocks of the family: the channel :class:`LayerNorm` (``WithBias`` /
  ``BiasFree``, keys ``body.weight`` / ``body.bias``, optionally parameter-free as in
  Histoformer; SCTNet's SCAB uses it too), :class:`OverlapPatchEmbed`, :class:`Downsample`, :class:`Upsample`,
  Restormer's MDTA :class:`Attention`, GDFN :class:`FeedForward` and
  :class:`TransformerBlock`;
* helpers for the 4-level U-Net skeleton (:class:`RestormerUNet`), for inferring
  hyper-parameters from state-dict keys and tensor shapes (:func:`count_blocks`,
  :func:`infer_ffn_expansion_factor`, :func:`infer_unet_params`,
  :func:`keys_match`) and for the spandrel descriptor (:func:`describe_unet`,
  :func:`blocks_tag`);
* :class:`Restormer` and its spandrel :class:`RestormerArch`.

Tensors are ``(B, C, H, W)`` float (float32 reference); images in ``[0, 1]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor, SizeRequirements, StateDict
from spandrel.util import KeyCondition, get_seq_len
from torch import Tensor, nn

from ._base import ArchInfo, Official, describe, register

__all__ = [
    "LayerNorm",
    "OverlapPatchEmbed",
    "Downsample",
    "Upsample",
    "Attention",
    "FeedForward",
    "TransformerBlock",
    "RestormerUNet",
    "Restormer",
    "RestormerArch",
    "check_heads",
    "check_input",
    "infer_layernorm_type",
    "count_blocks",
    "keys_match",
    "infer_ffn_expansion_factor",
    "infer_unet_params",
    "infer_params",
    "UNET_MULTIPLE",
    "describe_unet",
    "blocks_tag",
]

UNET_MULTIPLE = 8
"""H and W must be multiples of this: three 2x PixelUnshuffle downsamplings."""

U = TypeVar("U", bound="RestormerUNet")

# The encoder/decoder stages of the 4-level U-Net, with the level (0..3) whose
# width ``dim * 2**level`` and head count ``heads[level]`` they use.  decoder_level1
# (and refinement) run at width 2*dim but with heads[0].
ENCODER_STAGES = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")


# --------------------------------------------------------------------------------------
# Layer norm over channels
# --------------------------------------------------------------------------------------


class _BiasFreeLayerNorm(nn.Module):
    """``x / sqrt(var + 1e-5) * weight`` over the last axis: the mean is NOT subtracted."""

    #: WithBias: subtract the mean and add a ``bias`` parameter.
    _with_bias = False

    def __init__(self, normalized_shape: int, affine: bool = True) -> None:
        super().__init__()
        self.normalized_shape = (int(normalized_shape),)
        # weight = 1 and (WithBias) bias = 0; registered as None without ``affine``
        names = ("weight", "bias") if self._with_bias else ("weight",)
        for name, init in zip(names, (torch.ones, torch.zeros)):
            self.register_parameter(name, nn.Parameter(init(normalized_shape)) if affine else None)

    def forward(self, x: Tensor) -> Tensor:
        sigma = x.var(-1, keepdim=True, unbiased=False)
        y = x / torch.sqrt(sigma + 1e-5)
        if self.weight is not None:
            y = y * self.weight
        return y


class _WithBiasLayerNorm(_BiasFreeLayerNorm):
    """``(x - mean) / sqrt(var + 1e-5) * weight + bias`` over the last axis (biased var)."""

    _with_bias = True

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(-1, keepdim=True)
        sigma = x.var(-1, keepdim=True, unbiased=False)
        y = (x - mu) / torch.sqrt(sigma + 1e-5)
        if self.weight is not None:
            y = y * self.weight + self.bias
        return y


class LayerNorm(nn.Module):
    """Restormer's layer norm over the channel axis of a ``(B, C, H, W)`` tensor.

    Per pixel, normalises the C channel values with their mean and *biased* variance,
    eps 1e-5.  ``LayerNorm_type='BiasFree'`` skips the mean subtraction and has no
    bias; any other value means ``'WithBias'`` (as in the official code).

    Args:
        dim: Number of channels C.
        LayerNorm_type: ``'WithBias'`` or ``'BiasFree'``.
        affine: False gives Histoformer's parameter-free variant (no state-dict keys).

    State-dict keys: ``body.weight`` (C,) and, for WithBias, ``body.bias`` (C,).

    Shapes: input and output ``(B, C, H, W)``, any float dtype.
    """

    def __init__(self, dim: int, LayerNorm_type: str = "WithBias", affine: bool = True) -> None:
        super().__init__()
        if LayerNorm_type == "BiasFree":
            self.body: nn.Module = _BiasFreeLayerNorm(dim, affine)
        else:
            self.body = _WithBiasLayerNorm(dim, affine)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # (B, C, H, W) -> (B, HW, C) view, normalise over C, back to a (B, C, H, W) view
        # (the same memory layout as the official einops round trip).
        y = self.body(x.flatten(2).transpose(1, 2))
        return y.transpose(1, 2).reshape(b, c, h, w)


# --------------------------------------------------------------------------------------
# Embedding and resampling
# --------------------------------------------------------------------------------------


class OverlapPatchEmbed(nn.Module):
    """3x3 conv ``in_c -> embed_dim`` (key ``proj.weight``); ``(B, in_c, H, W) -> (B, embed_dim, H, W)``."""

    def __init__(self, in_c: int = 3, embed_dim: int = 48, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, stride=1, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """3x3 conv ``n -> n/2`` then PixelUnshuffle(2): ``(B, n, H, W) -> (B, 2n, H/2, W/2)``.

    Key ``body.0.weight``.  H and W must be even.
    """

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat // 2, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PixelUnshuffle(2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """3x3 conv ``n -> 2n`` then PixelShuffle(2): ``(B, n, H, W) -> (B, n/2, 2H, 2W)``. Key ``body.0.weight``."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat * 2, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PixelShuffle(2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


# --------------------------------------------------------------------------------------
# Restormer transformer block (MDTA + GDFN)
# --------------------------------------------------------------------------------------


def check_heads(dim: int, num_heads: int, min_per_head: int = 1) -> int:
    """Channels per head of a channel-attention layer.

    Raises:
        ValueError: if ``num_heads < 1``, ``dim`` is not divisible by ``num_heads``, or
            fewer than ``min_per_head`` channels fall on each head.
    """
    if num_heads < 1 or dim % num_heads != 0:
        raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
    per_head = dim // num_heads
    if per_head < min_per_head:
        raise ValueError(
            f"width {dim} with {num_heads} heads leaves {per_head} channel(s) per head; need >= {min_per_head}"
        )
    return per_head


class Attention(nn.Module):
    """Restormer's Multi-Dconv Head Transposed Attention (MDTA).

    ``qkv`` 1x1 conv -> depthwise 3x3 -> q, k, v; per head, q and k (C' x HW, C' =
    dim/heads) are L2-normalised over HW; ``softmax(q k^T * temperature)`` (C' x C')
    mixes the channels of v; ``project_out`` 1x1 conv.  The attention is global over
    the image: every output pixel depends on every input pixel.

    Args:
        dim: Channels C.
        num_heads: Heads; ``temperature`` has shape ``(num_heads, 1, 1)``.
        bias: Bias on the convolutions.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``.

    Raises:
        ValueError: if ``dim`` is not divisible by ``num_heads``.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, stride=1, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q = q.reshape(b, self.num_heads, -1, h * w)
        k = k.reshape(b, self.num_heads, -1, h * w)
        v = v.reshape(b, self.num_heads, -1, h * w)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        attn = attn.softmax(dim=-1)
        out = (attn @ v).reshape(b, c, h, w)
        return self.project_out(out)


class FeedForward(nn.Module):
    """Restormer's Gated-Dconv Feed-forward Network (GDFN).

    ``hidden = int(dim * ffn_expansion_factor)`` (127 for the official 48 * 2.66);
    ``project_in`` 1x1 -> 2*hidden, depthwise 3x3 ``dwconv``, ``gelu(x1) * x2``,
    ``project_out`` 1x1 hidden -> dim.  Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(
            hidden * 2, hidden * 2, kernel_size=3, stride=1, padding=1, groups=hidden * 2, bias=bias
        )
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """Pre-norm block ``x + attn(norm1(x))`` then ``x + ffn(norm2(x))``.

    Keys ``norm1.*``, ``attn.*``, ``norm2.*``, ``ffn.*``.  ``attn_cls`` / ``ffn_cls``
    swap in the attention / feed-forward of a descendant (DRSformer's TKSA / MSFN);
    they are called as ``attn_cls(dim, num_heads, bias)`` and
    ``ffn_cls(dim, ffn_expansion_factor, bias)``.  Shapes: ``(B, dim, H, W)`` in and out.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        LayerNorm_type: str,
        attn_cls: Callable[..., nn.Module] = Attention,
        ffn_cls: Callable[..., nn.Module] = FeedForward,
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = attn_cls(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = ffn_cls(dim, ffn_expansion_factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


# --------------------------------------------------------------------------------------
# U-Net skeleton
# --------------------------------------------------------------------------------------


def check_input(x: Tensor, channels: int, multiple: int = UNET_MULTIPLE, name: str = "model") -> None:
    """Validate a model input.

    Args:
        x: ``(B, C, H, W)`` tensor.
        channels: Required C.
        multiple: H and W must be multiples of this.
        name: Model name for the message.

    Raises:
        ValueError: wrong rank, wrong channel count, or H/W not a multiple of
            ``multiple`` (pad bottom/right first, e.g. reflect-pad as the official test
            scripts do, and crop the output; spandrel's descriptor call does this).
    """
    if x.ndim != 4:
        raise ValueError(f"{name} expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{name} expects {channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    h, w = x.shape[-2:]
    if h % multiple or w % multiple or h == 0 or w == 0:
        raise ValueError(
            f"{name}: H and W must be positive multiples of {multiple} (three 2x downsamplings), got {h}x{w}; "
            f"reflect-pad bottom/right to a multiple of {multiple} and crop the output"
        )


def _as_int_list(values: Sequence[int], n: int, name: str) -> list[int]:
    out = [int(v) for v in values]
    if len(out) != n:
        raise ValueError(f"{name} must have {n} entries, got {list(values)}")
    if any(v < 0 for v in out):
        raise ValueError(f"{name} must be non-negative, got {out}")
    return out


class RestormerUNet(nn.Module):
    """The 4-level U-Net shared by Restormer, DRSformer and Histoformer (not used alone).

    ``patch_embed`` -> ``encoder_level1..3`` / ``latent`` with ``down1_2`` ... between;
    decoder ``up4_3`` + concat + ``reduce_chan_level3`` -> ``decoder_level3``,
    ``up3_2`` + concat + ``reduce_chan_level2`` -> ``decoder_level2``, ``up2_1`` +
    concat (no reduction) -> ``decoder_level1`` at width ``2*dim`` with ``heads[0]``.
    Widths per level ``dim * 2**level``.  Subclasses register extra modules and
    override the hooks :meth:`_stem`, :meth:`_fuse_down`.
    """

    def _record_hyperparameters(self, arguments: Mapping[str, Any]) -> None:
        """Store the constructor arguments as ``self.hyperparameters`` and ``inp_channels``.

        Args:
            arguments: ``locals()`` at the top of the subclass's ``__init__``:
                its keywords in signature order (``self`` and dunder names are
                skipped; sequences become lists).
        """
        self.hyperparameters = {
            k: list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v
            for k, v in arguments.items()
            if k != "self" and not k.startswith("__")
        }
        self.inp_channels = arguments["inp_channels"]

    def _build_unet(
        self,
        inp_channels: int,
        dim: int,
        num_blocks: Sequence[int],
        heads: Sequence[int],
        ffn_expansion_factor: float,
        bias: bool,
        LayerNorm_type: str,
        *,
        block_cls: Callable[[int, int, float, bool, str], nn.Module],
        after_embed: Mapping[str, nn.Module] | None = None,
        num_refinement_blocks: int | None = None,
    ) -> None:
        """Register the skeleton's modules in the official order.

        The positional arguments are the constructor keywords of the same names.

        Args:
            block_cls: Transformer block, called as
                ``block_cls(width, num_heads, ffn_expansion_factor, bias, LayerNorm_type)``.
            after_embed: Modules registered right after ``patch_embed`` (DRSformer's
                ``encoder_level0``), to keep the official key order.
            num_refinement_blocks: When given, also registers ``refinement``: that
                many blocks at width ``2*dim`` with ``heads[0]``.
        """
        nb = _as_int_list(num_blocks, 4, "num_blocks")
        hd = _as_int_list(heads, 4, "heads")
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 2, got {dim}")

        def stage(width: int, n_heads: int, n: int) -> nn.Sequential:
            return nn.Sequential(
                *[block_cls(width, n_heads, ffn_expansion_factor, bias, LayerNorm_type) for _ in range(n)]
            )

        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        for name, module in (after_embed or {}).items():
            self.add_module(name, module)
        self.encoder_level1 = stage(dim, hd[0], nb[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = stage(dim * 2, hd[1], nb[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = stage(dim * 4, hd[2], nb[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(dim * 8, hd[3], nb[3])
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = stage(dim * 4, hd[2], nb[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = stage(dim * 2, hd[1], nb[1])
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = stage(dim * 2, hd[0], nb[0])
        if num_refinement_blocks is not None:
            self.refinement = stage(dim * 2, hd[0], num_refinement_blocks)

    def _build_output(self, dim: int, out_channels: int, bias: bool, dual_pixel_task: bool = False) -> None:
        """Register ``skip_conv`` (1x1 ``dim -> 2*dim``, with ``dual_pixel_task`` only) and ``output``.

        ``output`` is the final 3x3 conv ``2*dim -> out_channels``.
        """
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.output = nn.Conv2d(dim * 2, out_channels, kernel_size=3, stride=1, padding=1, bias=bias)

    def _stem(self, feat: Tensor) -> Tensor:
        """Hook between ``patch_embed`` and ``encoder_level1`` (identity here)."""
        return feat

    def _fuse_down(self, level: int, feat: Tensor, inp_img: Tensor, cache: dict[str, Any]) -> Tensor:
        """Hook on the output of the downsampling into ``level`` (2, 3, 4); identity here."""
        return feat

    def _unet(self, inp_img: Tensor) -> tuple[Tensor, Tensor]:
        """Run the skeleton.

        Returns:
            ``(patch-embedded input (B, dim, H, W), decoder_level1 output (B, 2*dim, H, W))``.
        """
        cache: dict[str, Any] = {}
        inp_enc_level1 = self.patch_embed(inp_img)
        out_enc_level1 = self.encoder_level1(self._stem(inp_enc_level1))
        inp_enc_level2 = self._fuse_down(2, self.down1_2(out_enc_level1), inp_img, cache)
        out_enc_level2 = self.encoder_level2(inp_enc_level2)
        inp_enc_level3 = self._fuse_down(3, self.down2_3(out_enc_level2), inp_img, cache)
        out_enc_level3 = self.encoder_level3(inp_enc_level3)
        inp_enc_level4 = self._fuse_down(4, self.down3_4(out_enc_level3), inp_img, cache)
        latent = self.latent(inp_enc_level4)

        inp_dec_level3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), out_enc_level3], 1))
        out_dec_level3 = self.decoder_level3(inp_dec_level3)
        inp_dec_level2 = self.reduce_chan_level2(torch.cat([self.up3_2(out_dec_level3), out_enc_level2], 1))
        out_dec_level2 = self.decoder_level2(inp_dec_level2)
        inp_dec_level1 = torch.cat([self.up2_1(out_dec_level2), out_enc_level1], 1)
        return inp_enc_level1, self.decoder_level1(inp_dec_level1)


# --------------------------------------------------------------------------------------
# Restormer
# --------------------------------------------------------------------------------------


class Restormer(RestormerUNet):
    """Restormer (Zamir et al., CVPR 2022), official ``restormer_arch.Restormer``.

    Args:
        inp_channels: Input channels (3 RGB, 1 gray denoising, 6 dual-pixel L+R).
        out_channels: Output channels.
        dim: Width of level 1 (levels: dim, 2dim, 4dim, 8dim).
        num_blocks: Transformer blocks of encoder levels 1-3 and latent (decoder levels
            mirror them).
        num_refinement_blocks: Blocks of the final ``refinement`` stage (width 2*dim).
        heads: Attention heads per level.
        ffn_expansion_factor: GDFN hidden width ``int(width * factor)``.
        bias: Bias on the block / reduction / output convolutions.
        LayerNorm_type: ``'WithBias'`` (deraining, deblurring) or ``'BiasFree'``
            (denoising).
        dual_pixel_task: Adds ``skip_conv`` (dual-pixel defocus deblurring); the output
            then has NO input residual.

    Forward:
        ``inp_img`` ``(B, inp_channels, H, W)`` float, values in [0, 1] (official
        pipelines: 8-bit /255, 16-bit dual-pixel PNG /65535); H and W multiples of 8.
        Returns ``(B, out_channels, H, W)``, same dtype; ``output(...) + inp_img``
        (global residual, needs ``out_channels == inp_channels``) unless
        ``dual_pixel_task``.  Not clamped (the official test clamps to [0, 1]).

    Raises:
        ValueError: at construction for inconsistent sizes (width not divisible by
            heads, list lengths); in ``forward`` for a wrong channel count or H/W not
            multiples of 8.
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",
        dual_pixel_task: bool = False,
    ) -> None:
        super().__init__()
        self._record_hyperparameters(locals())
        if not dual_pixel_task and inp_channels != out_channels:
            raise ValueError(
                f"the global residual needs inp_channels == out_channels (got {inp_channels}, {out_channels}); "
                "only dual_pixel_task has no residual"
            )
        self._build_unet(
            inp_channels, dim, num_blocks, heads, ffn_expansion_factor, bias, LayerNorm_type,
            block_cls=TransformerBlock, num_refinement_blocks=num_refinement_blocks,
        )
        self.dual_pixel_task = dual_pixel_task
        self._build_output(dim, out_channels, bias, dual_pixel_task)

    def forward(self, inp_img: Tensor) -> Tensor:
        check_input(inp_img, self.inp_channels, name="Restormer")
        inp_enc_level1, out_dec_level1 = self._unet(inp_img)
        out_dec_level1 = self.refinement(out_dec_level1)
        if self.dual_pixel_task:
            return self.output(out_dec_level1 + self.skip_conv(inp_enc_level1))
        return self.output(out_dec_level1) + inp_img


# --------------------------------------------------------------------------------------
# Hyper-parameter inference helpers
# --------------------------------------------------------------------------------------


def count_blocks(state_dict: Mapping[str, object], prefix: str) -> int:
    """Number of blocks of an ``nn.Sequential`` stage: ``max N + 1`` over keys ``{prefix}.N.*`` (0 if none)."""
    return get_seq_len(state_dict, prefix)


def keys_match(state_dict: Mapping[str, object], patterns: Iterable[str]) -> bool:
    """True when every key of ``state_dict`` fully matches one of the regular expressions."""
    rx = re.compile("|".join(f"(?:{p})" for p in patterns))
    return all(rx.fullmatch(k) is not None for k in state_dict)


def _shape(state_dict: Mapping[str, object], key: str) -> tuple[int, ...]:
    t = state_dict[key]
    return tuple(int(s) for s in t.shape)  # type: ignore[attr-defined]


def _fits(factor: float, pairs: Iterable[tuple[int, int]]) -> bool:
    return all(int(width * factor) == hidden for width, hidden in pairs)


def infer_ffn_expansion_factor(pairs: Iterable[tuple[int, int]], preferred: Sequence[float] = ()) -> float:
    """Recover an FFN expansion factor from observed ``(width, hidden)`` pairs.

    The networks compute ``hidden = int(width * factor)``, so the factor is only known
    up to an interval (2.66 and 2.667 give the same hidden sizes at some widths).
    Tries the ``preferred`` (official) factors first, then the number with the fewest
    decimals in the feasible interval, then ``hidden / width`` nudged upwards; every
    candidate is verified with ``int(width * f) == hidden`` for all pairs.

    Raises:
        ValueError: if no factor reproduces all pairs (inconsistent state dict).
    """
    pairs = sorted(set(pairs))
    if not pairs:
        raise ValueError("no feed-forward layer to infer ffn_expansion_factor from")
    for f in preferred:
        if _fits(f, pairs):
            return f
    lo = max(h / w for w, h in pairs)
    hi = min((h + 1) / w for w, h in pairs)
    for decimals in range(0, 8):
        scale = 10**decimals
        f = math.ceil(lo * scale - 1e-9) / scale
        for cand in (f, f + 1 / scale):
            if cand < hi and _fits(cand, pairs):
                return float(cand)
    w0, h0 = pairs[0]
    f = h0 / w0
    for _ in range(8):
        if _fits(f, pairs):
            return f
        f = math.nextafter(f, math.inf)
    raise ValueError(f"no ffn_expansion_factor f with int(width * f) == hidden for all (width, hidden) in {pairs}")


def infer_unet_params(
    state_dict: Mapping[str, object],
    *,
    attn: str,
    ffn_preferred: Sequence[float],
    default_heads: Sequence[int] = (1, 2, 4, 8),
    extra_stages: Sequence[tuple[str, int, int]] = (),
) -> dict[str, Any]:
    """Infer the skeleton's hyper-parameters from key names and shapes only.

    Args:
        state_dict: Mapping key -> tensor (shapes only are read; meta tensors work).
        attn: Attribute name of the attention inside a block (``'attn'`` / ``'attn_g'``).
        ffn_preferred: Official expansion factors to try first.
        default_heads: Used for levels whose head count cannot be observed (0 blocks).
        extra_stages: ``(prefix, width multiplier, level)`` of further stages of the same
            block type (e.g. ``('refinement', 2, 0)``) that help with heads / ffn.

    Returns:
        dict with ``inp_channels``, ``out_channels``, ``dim``, ``num_blocks``,
        ``heads``, ``ffn_expansion_factor``, ``bias`` (from ``output.bias``).

    Raises:
        ValueError: when the factor cannot be recovered.
        KeyError: when a required key (``patch_embed.proj.weight``, ``output.weight``)
            is missing.
    """
    out_c, in_c = _shape(state_dict, "patch_embed.proj.weight")[:2]
    dim = out_c
    num_blocks = [count_blocks(state_dict, s) for s in ENCODER_STAGES]
    heads = list(default_heads)
    stages = [(s, 2**i, i) for i, s in enumerate(ENCODER_STAGES)]
    stages += [("decoder_level3", 4, 2), ("decoder_level2", 2, 1), ("decoder_level1", 2, 0)]
    stages += list(extra_stages)
    pairs: set[tuple[int, int]] = set()
    seen_heads: set[int] = set()
    for prefix, mult, level in stages:
        for i in range(count_blocks(state_dict, prefix)):
            tkey = f"{prefix}.{i}.{attn}.temperature"
            if tkey in state_dict and level not in seen_heads:
                heads[level] = _shape(state_dict, tkey)[0]
                seen_heads.add(level)
            pkey = f"{prefix}.{i}.ffn.project_in.weight"
            if pkey in state_dict:
                pairs.add((dim * mult, _shape(state_dict, pkey)[0] // 2))
    return {
        "inp_channels": in_c,
        "out_channels": _shape(state_dict, "output.weight")[0],
        "dim": dim,
        "num_blocks": num_blocks,
        "heads": heads,
        "ffn_expansion_factor": infer_ffn_expansion_factor(pairs, ffn_preferred),
        "bias": "output.bias" in state_dict,
    }


def infer_layernorm_type(state_dict: Mapping[str, object]) -> str:
    """``'BiasFree'`` when a ``*.norm1.body.weight`` has no matching ``body.bias``, else ``'WithBias'``."""
    for k in state_dict:
        if k.endswith(".norm1.body.weight"):
            return "WithBias" if k[: -len("weight")] + "bias" in state_dict else "BiasFree"
    return "WithBias"


RESTORMER_FFN_FACTORS = (2.66, 2.667)
"""Official Restormer factor first; 2.667 (Histoformer) second."""


def infer_params(state_dict: Mapping[str, object]) -> dict[str, Any]:
    """All :class:`Restormer` constructor kwargs from key names and tensor shapes.

    ``LayerNorm_type`` from the presence of ``norm1.body.bias``; ``dual_pixel_task``
    from ``skip_conv.weight``; see :func:`infer_unet_params` for the rest.  Works on a
    state dict of meta tensors.
    """
    params = infer_unet_params(
        state_dict,
        attn="attn",
        ffn_preferred=RESTORMER_FFN_FACTORS,
        extra_stages=(("refinement", 2, 0),),
    )
    return {
        "inp_channels": params["inp_channels"],
        "out_channels": params["out_channels"],
        "dim": params["dim"],
        "num_blocks": params["num_blocks"],
        "num_refinement_blocks": count_blocks(state_dict, "refinement"),
        "heads": params["heads"],
        "ffn_expansion_factor": params["ffn_expansion_factor"],
        "bias": params["bias"],
        "LayerNorm_type": infer_layernorm_type(state_dict),
        "dual_pixel_task": "skip_conv.weight" in state_dict,
    }


def describe_unet(
    arch: Architecture[U],
    model: U,
    state_dict: StateDict,
    params: Mapping[str, Any],
    tags: Sequence[str],
    *,
    supports_bfloat16: bool = False,
) -> ImageModelDescriptor[U]:
    """spandrel descriptor of a :class:`RestormerUNet` model built from ``params`` (its kwargs).

    Tags ``"{dim}dim"`` then ``tags``; channels from ``inp_channels`` /
    ``out_channels``; inputs padded to multiples of :data:`UNET_MULTIPLE`;
    tiling discouraged (global channel attention).  Strict-loads ``state_dict``.

    Raises:
        RuntimeError: from ``load_state_dict`` on a shape mismatch.
    """
    return describe(
        arch,
        model,
        state_dict,
        tags=[f"{params['dim']}dim", *tags],
        input_channels=params["inp_channels"],
        output_channels=params["out_channels"],
        size_requirements=SizeRequirements(multiple_of=UNET_MULTIPLE),
        supports_bfloat16=supports_bfloat16,
    )


def blocks_tag(num_blocks: Sequence[int]) -> str:
    """Descriptor tag of the per-level block counts, e.g. ``"4-6-6-8blocks"``."""
    return "-".join(str(n) for n in num_blocks) + "blocks"


# Regular expressions for every key a Restormer state dict may hold.  Detection demands
# that ALL keys match, so DRSformer (attn1..4, dwconv3x3), Histoformer (attn_g,
# skip_patch_embed) and any other Restormer descendant with extra modules are rejected.
_WB = r"\.(?:weight|bias)"
_RESAMPLE = r"(?:patch_embed\.proj|(?:down1_2|down2_3|down3_4|up4_3|up3_2|up2_1)\.body\.0|reduce_chan_level[23]|output)"
RESTORMER_KEY_PATTERNS = (
    _RESAMPLE + _WB,
    r"skip_conv" + _WB,
    r"(?:encoder_level[123]|latent|decoder_level[123]|refinement)\.\d+\."
    r"(?:norm[12]\.body|attn\.(?:qkv|qkv_dwconv|project_out)|ffn\.(?:project_in|dwconv|project_out))" + _WB,
    r"(?:encoder_level[123]|latent|decoder_level[123]|refinement)\.\d+\.attn\.temperature",
)


def _restormer_detect(state_dict: StateDict) -> bool:
    required = KeyCondition.has_all(
        "patch_embed.proj.weight",
        "encoder_level1.0.norm1.body.weight",
        "encoder_level1.0.attn.temperature",
        "encoder_level1.0.attn.qkv.weight",
        "encoder_level1.0.attn.qkv_dwconv.weight",
        "encoder_level1.0.attn.project_out.weight",
        "encoder_level1.0.ffn.project_in.weight",
        "encoder_level1.0.ffn.dwconv.weight",
        "encoder_level1.0.ffn.project_out.weight",
        "down1_2.body.0.weight",
        "latent.0.attn.temperature",
        "up4_3.body.0.weight",
        "reduce_chan_level3.weight",
        "reduce_chan_level2.weight",
        "up2_1.body.0.weight",
        "decoder_level1.0.attn.temperature",
        "output.weight",
    )
    return required(state_dict) and keys_match(state_dict, RESTORMER_KEY_PATTERNS)


class RestormerArch(Architecture[Restormer]):
    """spandrel architecture for :class:`Restormer` (all official variants).

    Detects WithBias / BiasFree, RGB / gray and the dual-pixel model (``skip_conv``);
    rejects state dicts with any key a Restormer cannot own, so DRSformer and
    Histoformer checkpoints are never claimed.
    """

    def __init__(self) -> None:
        super().__init__(id="Restormer", detect=_restormer_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[Restormer]:
        """Build a :class:`Restormer` from ``state_dict`` (strict load) and describe it.

        Raises:
            ValueError / KeyError / RuntimeError: for state dicts that are not Restormer's
                (shape mismatch in ``load_state_dict``).
        """
        params = infer_params(state_dict)
        tags = [params["LayerNorm_type"]]
        if params["dual_pixel_task"]:
            tags.append("dual-pixel")
        if params["inp_channels"] == 1:
            tags.append("gray")
        # fp16: the per-pixel variance of un-normalised features can overflow; not
        # validated.  bf16 keeps fp32's range and MDTA has no discrete decisions.
        return describe_unet(self, Restormer(**params), state_dict, params, tags, supports_bfloat16=True)


# Channel attention (MDTA) is global: every output pixel depends on the whole input
# through the C x C attention matrices, so no finite tile overlap makes tiled output
# equal the whole-image output.  32 px (4 pixels at the 1/8 latent level, ~the 3x3
# convolution receptive field across the four levels) hides the seams in practice and
# is the official demo.py's --tile_overlap default.
RESTORMER_INFO = ArchInfo(
    task="restoration",
    whole_image=True,
    input_encoding="srgb",
    output_range="clamped",
    overlap=32,
    official=Official(
        repo="https://github.com/swz30/Restormer",
        checkpoints=("deraining", "motion_deblurring", "single_image_defocus_deblurring", "dual_pixel_defocus_deblurring",
                     "gaussian_color_denoising_blind", "real_denoising", "gaussian_gray_denoising"),
        layout="{'params': state_dict}",
    ),
    notes=(
        "Restormer (CVPR 2022): deraining, motion/defocus deblurring (WithBias), Gaussian/real denoising "
        "(BiasFree; gray = 1 channel), dual-pixel defocus (6-channel input cat(L, R), no input residual). "
        "Input [0,1], H/W padded to a multiple of 8; output clamped to [0,1]."
    ),
)

# _base's pattern: the name now holds the registered instance
RestormerArch = register(RestormerArch(), RESTORMER_INFO)  # type: ignore[misc]
