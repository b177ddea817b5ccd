"""Histoformer - histogram transformer for adverse-weather removal.

Sun, Ren, Gao, Ren, Liu, Zhang, Sebe, "Restoring Images in Adverse Weather Conditions
via Histogram Transformer", ECCV 2024 (official code: sunshangquan/Histoformer,
``basicsr/models/archs/histoformer_arch.py``).  Independent implementation with the
official class name, constructor keywords and state-dict keys; the released
``net_g_best.pth`` (all-weather) and ``net_g_real.pth`` (real snow) load with
``strict=True`` from their ``['params']`` entry.

Peculiarities kept from the official code:

* its LayerNorms have NO parameters (the state dict has no ``norm*`` keys), so
  ``LayerNorm_type`` cannot be read from a checkpoint;
* the dynamic-range histogram self-attention (DHSA) sorts features: the output is a
  discontinuous function of the input where values tie, and ``torch.sort`` is not
  stable;
* ``softmax_1``: ``exp(x) / (sum(exp(x)) + 1)`` without max subtraction;
* a 3-channel skip path (``skip_patch_embed1..3``) hard-wires ``inp_channels == 3``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor, StateDict
from spandrel.util import KeyCondition
from torch import Tensor, nn

from ._base import ArchInfo, Official, register
from .restormer import (
    LayerNorm,
    RestormerUNet,
    blocks_tag,
    check_heads,
    check_input,
    count_blocks,
    describe_unet,
    infer_unet_params,
    keys_match,
)

__all__ = [
    "Histoformer",
    "HistogramAttention",
    "DualScaleGatedFeedForward",
    "HistoformerBlock",
    "SkipPatchEmbed",
    "HistoformerArch",
    "infer_params",
    "softmax_1",
]


def softmax_1(x: Tensor, dim: int = -1) -> Tensor:
    """``exp(x) / (sum(exp(x), dim) + 1)`` (no max subtraction, as in the official code).

    Overflows to inf/NaN for ``x`` above ~88 (float32) / ~11 (float16).
    """
    logit = x.exp()
    return logit / (logit.sum(dim, keepdim=True) + 1)


class DualScaleGatedFeedForward(nn.Module):
    """Histoformer's Dual-scale Gated Feed-Forward (DGFF; official class ``FeedForward``).

    ``hidden = int(dim * ffn_expansion_factor)`` must be divisible by 4.
    ``project_in`` 1x1 -> 2*hidden, PixelShuffle(2) (-> hidden/2 channels at 2H x 2W),
    halves: ``dwconv_5`` (dw 5x5) and ``dwconv_dilated2_1`` (dw 3x3, dilation 2),
    ``mish(x2) * x1``, PixelUnshuffle(2) (-> hidden at H x W), ``project_out``.

    Shapes: ``(B, dim, H, W)`` in and out.

    Raises:
        ValueError: if ``int(dim * ffn_expansion_factor)`` is not divisible by 4.
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        if hidden % 4:
            raise ValueError(
                f"Histoformer FFN: hidden = int({dim} * {ffn_expansion_factor}) = {hidden} must be divisible by 4 "
                "(PixelShuffle(2) then two halves)"
            )
        q = hidden // 4
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv_5 = nn.Conv2d(q, q, kernel_size=5, stride=1, padding=2, groups=q, bias=bias)
        self.dwconv_dilated2_1 = nn.Conv2d(q, q, kernel_size=3, stride=1, padding=2, groups=q, bias=bias, dilation=2)
        self.p_unshuffle = nn.PixelUnshuffle(2)
        self.p_shuffle = nn.PixelShuffle(2)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.p_shuffle(self.project_in(x)).chunk(2, dim=1)
        x = F.mish(self.dwconv_dilated2_1(x2)) * self.dwconv_5(x1)
        return self.project_out(self.p_unshuffle(x))


class HistogramAttention(nn.Module):
    """Dynamic-range Histogram Self-Attention (DHSA; official ``Attention_histogram``).

    1. The first ``C//2`` channels are sorted along H, then along W (a copy of the
       input is modified, the caller's tensor is left alone).
    2. ``qkv`` 1x1 + depthwise 3x3 -> ``q1, k1, q2, k2, v`` (5*dim channels).
    3. Per channel, ``v`` is sorted over all H*W positions; q/k are gathered with the
       same permutation.
    4. Two channel attentions over bins (``factor = num_heads``, hw zero-padded to a
       multiple of it): box binning ``(factor hw)`` for (q1, k1) and frequency binning
       ``(hw factor)`` for (q2, k2), both rearranged to ``b head (c factor) hw``,
       L2-normalised over hw, ``softmax_1(q k^T * temperature) @ v``.
    5. Both results are un-sorted, multiplied, ``project_out``; the first ``C//2``
       output channels are un-sorted along W then H.

    Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.

    Raises:
        ValueError: if ``dim`` is not divisible by ``num_heads``.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool, ifBox: bool = True) -> None:
        super().__init__()
        check_heads(dim, num_heads)
        self.factor = num_heads
        self.ifBox = ifBox
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 5, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 5, dim * 5, kernel_size=3, stride=1, padding=1, groups=dim * 5, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def _binned_attention(self, q: Tensor, k: Tensor, v: Tensor, box: bool) -> Tensor:
        """q, k, v: ``(B, C, L)`` sorted by v; returns ``(B, C, L)``."""
        b, c, length = q.shape
        f, heads = self.factor, self.num_heads
        pad = (-length) % f
        if pad:
            q, k, v = (F.pad(t, (0, pad), "constant", 0) for t in (q, k, v))
        hw = (length + pad) // f

        def to_bins(t: Tensor) -> Tensor:
            if box:  # b (head c) (factor hw) -> b head (c factor) hw
                return t.reshape(b, heads, (c // heads) * f, hw)
            # b (head c) (hw factor) -> b head (c factor) hw
            return t.reshape(b, heads, c // heads, hw, f).transpose(-1, -2).reshape(b, heads, (c // heads) * f, hw)

        q, k, v = to_bins(q), to_bins(k), to_bins(v)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = softmax_1((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)
        out = attn @ v
        if box:
            out = out.reshape(b, c, f * hw)
        else:
            out = out.reshape(b, heads, c // heads, f, hw).transpose(-1, -2).reshape(b, c, hw * f)
        return out[:, :, :length]

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        half = c // 2
        x_sort, idx_h = x[:, :half].sort(-2)
        x_sort, idx_w = x_sort.sort(-1)
        x = x.clone()  # the official code writes into its input; keep the caller's tensor intact
        x[:, :half] = x_sort

        q1, k1, q2, k2, v = self.qkv_dwconv(self.qkv(x)).chunk(5, dim=1)
        v, idx = v.reshape(b, c, -1).sort(dim=-1)
        q1 = torch.gather(q1.reshape(b, c, -1), dim=2, index=idx)
        k1 = torch.gather(k1.reshape(b, c, -1), dim=2, index=idx)
        q2 = torch.gather(q2.reshape(b, c, -1), dim=2, index=idx)
        k2 = torch.gather(k2.reshape(b, c, -1), dim=2, index=idx)

        out1 = self._binned_attention(q1, k1, v, True)
        out2 = self._binned_attention(q2, k2, v, False)
        # undo the value sort: position idx[j] receives sorted element j
        out1 = torch.empty_like(out1).scatter_(2, idx, out1).view(b, c, h, w)
        out2 = torch.empty_like(out2).scatter_(2, idx, out2).view(b, c, h, w)
        out = self.project_out(out1 * out2)

        part = out[:, :half]
        part = torch.empty_like(part).scatter_(-1, idx_w, part)
        part = torch.empty_like(part).scatter_(-2, idx_h, part)
        return torch.cat([part, out[:, half:]], dim=1)


class HistoformerBlock(nn.Module):
    """Histoformer block (official ``TransformerBlock``): ``x + attn_g(norm_g(x))`` then ``x + ffn(norm_ff1(x))``.

    The norms are parameter-free; keys ``attn_g.*`` and ``ffn.*`` only.
    Shapes: ``(B, dim, H, W)`` in and out.
    """

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, LayerNorm_type: str) -> None:
        super().__init__()
        self.attn_g = HistogramAttention(dim, num_heads, bias, True)
        self.norm_g = LayerNorm(dim, LayerNorm_type, affine=False)
        self.ffn = DualScaleGatedFeedForward(dim, ffn_expansion_factor, bias)
        self.norm_ff1 = LayerNorm(dim, LayerNorm_type, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn_g(self.norm_g(x))
        return x + self.ffn(self.norm_ff1(x))


class SkipPatchEmbed(nn.Module):
    """AvgPool2d(2) -> 1x1 conv -> depthwise 3x3 (keys ``proj.1.weight``, ``proj.2.weight``).

    Shapes: ``(B, in_c, H, W) -> (B, dim, H/2, W/2)``.
    """

    def __init__(self, in_c: int = 3, dim: int = 48, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.AvgPool2d(2, stride=2, padding=0, ceil_mode=False, count_include_pad=True),
            nn.Conv2d(in_c, dim, kernel_size=1, bias=bias),
            nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim, bias=bias),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Histoformer(RestormerUNet):
    """Histoformer (Sun et al., ECCV 2024), official ``histoformer_arch.Histoformer``.

    Defaults are the released configuration (``Allweather_Histoformer.yml``: dim 36,
    blocks [4, 4, 6, 8], ffn 2.667), NOT the official class defaults (dim 48,
    [4, 6, 6, 8], 2.66), which give hidden = 127 and cannot run the DGFF.

    Args:
        inp_channels: Must be 3 (the skip path is hard-wired to 3 channels).
        out_channels: Must be 3 (global residual).
        dim: Width of level 1 (levels dim, 2dim, 4dim, 8dim).
        num_blocks: Blocks of encoder levels 1-3 and latent; decoders mirror them.
        num_refinement_blocks: Blocks of ``refinement`` (width 2*dim, heads[0]).
        heads: Heads per level; also the bin factor of DHSA.
        ffn_expansion_factor: DGFF hidden width ``int(width * factor)``, must be a
            multiple of 4 at every level.
        bias: Bias on the block / reduction / output convolutions.
        LayerNorm_type: ``'WithBias'`` (mean-subtracting) or ``'BiasFree'``; the
            norms are parameter-free either way.
        dual_pixel_task: Adds an (unused, as in the official forward) ``skip_conv``.

    Forward:
        ``inp_img`` ``(B, 3, H, W)`` float RGB in [0, 1] (official test: 8-bit /255), H
        and W multiples of 8.  Returns ``output(...) + inp_img``, same shape and dtype,
        not clamped (the official test clamps to [0, 1]).

    Raises:
        ValueError: at construction for inconsistent sizes (``inp_channels`` or
            ``out_channels`` != 3, widths not divisible by heads, FFN hidden not a
            multiple of 4); in ``forward`` for a wrong channel count or H/W not
            multiples of 8.
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 36,
        num_blocks: Sequence[int] = (4, 4, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.667,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",
        dual_pixel_task: bool = False,
    ) -> None:
        super().__init__()
        if inp_channels != 3 or out_channels != 3:
            raise ValueError(
                f"Histoformer needs inp_channels == out_channels == 3 (3-channel skip path and global residual), "
                f"got {inp_channels}, {out_channels}"
            )
        self._record_hyperparameters(locals())
        self._build_unet(
            inp_channels, dim, num_blocks, heads, ffn_expansion_factor, bias, LayerNorm_type,
            block_cls=HistoformerBlock, num_refinement_blocks=num_refinement_blocks,
        )
        self.skip_patch_embed1 = SkipPatchEmbed(3, 3)
        self.skip_patch_embed2 = SkipPatchEmbed(3, 3)
        self.skip_patch_embed3 = SkipPatchEmbed(3, 3)
        self.reduce_chan_level_1 = nn.Conv2d(dim * 2 + 3, dim * 2, kernel_size=1, bias=bias)
        self.reduce_chan_level_2 = nn.Conv2d(dim * 4 + 3, dim * 4, kernel_size=1, bias=bias)
        self.reduce_chan_level_3 = nn.Conv2d(dim * 8 + 3, dim * 8, kernel_size=1, bias=bias)
        self.dual_pixel_task = dual_pixel_task
        # skip_conv (dual_pixel_task) is in the official class and its checkpoints but never used in forward
        self._build_output(dim, out_channels, bias, dual_pixel_task)

    def _fuse_down(self, level: int, feat: Tensor, inp_img: Tensor, cache: dict[str, Any]) -> Tensor:
        # chained skip embeddings of the image: embed1(img) at 1/2, embed2(.) at 1/4, embed3(.) at 1/8
        prev = cache.get("skip", inp_img)
        skip = getattr(self, f"skip_patch_embed{level - 1}")(prev)
        cache["skip"] = skip
        reduce = getattr(self, f"reduce_chan_level_{level - 1}")
        return reduce(torch.cat([feat, skip], 1))

    def forward(self, inp_img: Tensor) -> Tensor:
        check_input(inp_img, self.inp_channels, name="Histoformer")
        _, out_dec_level1 = self._unet(inp_img)
        return self.output(self.refinement(out_dec_level1)) + inp_img


# --------------------------------------------------------------------------------------
# Inference of hyper-parameters and spandrel architecture
# --------------------------------------------------------------------------------------

HISTOFORMER_FFN_FACTORS = (2.667, 2.66)


def infer_params(state_dict: Mapping[str, object]) -> dict[str, Any]:
    """All :class:`Histoformer` constructor kwargs from key names and tensor shapes.

    ``dim`` from ``patch_embed.proj.weight``, ``num_blocks`` / ``num_refinement_blocks``
    by counting ``encoder_level{1,2,3}.N.`` / ``latent.N.`` / ``refinement.N.``,
    ``heads`` from ``attn_g.temperature``, ``ffn_expansion_factor`` from
    ``ffn.project_in.weight`` (hidden = out/2; 2.667 preferred), ``bias`` from
    ``output.bias``, ``dual_pixel_task`` from ``skip_conv.weight``.
    ``LayerNorm_type`` is NOT recoverable (parameter-free norms): the released
    ``'WithBias'`` is returned.  Reads shapes only (meta tensors work).
    """
    params = infer_unet_params(
        state_dict,
        attn="attn_g",
        ffn_preferred=HISTOFORMER_FFN_FACTORS,
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
        "LayerNorm_type": "WithBias",
        "dual_pixel_task": "skip_conv.weight" in state_dict,
    }


_WB = r"\.(?:weight|bias)"
HISTOFORMER_KEY_PATTERNS = (
    r"(?:patch_embed\.proj|(?:down1_2|down2_3|down3_4|up4_3|up3_2|up2_1)\.body\.0|reduce_chan_level[23]"
    r"|reduce_chan_level_[123]|skip_conv|output)" + _WB,
    r"skip_patch_embed[123]\.proj\.[12]" + _WB,
    r"(?:encoder_level[123]|latent|decoder_level[123]|refinement)\.\d+\."
    r"(?:attn_g\.(?:qkv|qkv_dwconv|project_out)|ffn\.(?:project_in|dwconv_5|dwconv_dilated2_1|project_out))" + _WB,
    r"(?:encoder_level[123]|latent|decoder_level[123]|refinement)\.\d+\.attn_g\.temperature",
)

_HISTOFORMER_REQUIRED = KeyCondition.has_all(
    "patch_embed.proj.weight",
    "encoder_level1.0.attn_g.temperature",
    "encoder_level1.0.attn_g.qkv.weight",
    "encoder_level1.0.attn_g.qkv_dwconv.weight",
    "encoder_level1.0.attn_g.project_out.weight",
    "encoder_level1.0.ffn.project_in.weight",
    "encoder_level1.0.ffn.dwconv_5.weight",
    "encoder_level1.0.ffn.dwconv_dilated2_1.weight",
    "encoder_level1.0.ffn.project_out.weight",
    "down1_2.body.0.weight",
    "latent.0.attn_g.temperature",
    "up4_3.body.0.weight",
    "reduce_chan_level3.weight",
    "decoder_level1.0.attn_g.temperature",
    "skip_patch_embed1.proj.1.weight",
    "skip_patch_embed3.proj.2.weight",
    "reduce_chan_level_1.weight",
    "reduce_chan_level_3.weight",
    "output.weight",
)


def _detect(state_dict: StateDict) -> bool:
    return _HISTOFORMER_REQUIRED(state_dict) and keys_match(state_dict, HISTOFORMER_KEY_PATTERNS)


class HistoformerArch(Architecture[Histoformer]):
    """spandrel architecture for :class:`Histoformer`.

    Detection requires the DHSA / DGFF block keys and the skip-path keys and that every
    key is one a Histoformer can own (Restormer and DRSformer checkpoints are
    rejected).
    """

    def __init__(self) -> None:
        super().__init__(id="Histoformer", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[Histoformer]:
        """Build a :class:`Histoformer` from ``state_dict`` (strict load) and describe it.

        Raises:
            ValueError: for inconsistent sizes (e.g. not 3 input channels).
            RuntimeError: from ``load_state_dict`` on a shape mismatch.
        """
        params = infer_params(state_dict)
        # Sorting makes the output discontinuous where values tie; reduced precision
        # creates many ties, and softmax_1 has no max subtraction (fp16 overflow).
        return describe_unet(self, Histoformer(**params), state_dict, params, [blocks_tag(params["num_blocks"])])


# DHSA sorts each channel over the WHOLE image and attends over channels/bins, so every
# output pixel depends on the whole input: tiles can never match the whole-image result
# exactly (the official test runs full images).  32 px (4 px at the 1/8 latent level)
# covers the local convolutions' reach and keeps seams small when memory forces tiling.
HistoformerArch = register(  # type: ignore[misc]  # _base's pattern: the name now holds the instance
    HistoformerArch(),
    ArchInfo(
        task="weather",
        whole_image=True,
        output_range="clamped",
        overlap=32,
        official=Official(
            repo="https://github.com/sunshangquan/Histoformer",
            checkpoints=("net_g_best.pth (all-weather)", "net_g_real.pth (real snow)"),
            layout="{'params': state_dict}",
        ),
        notes=(
            "Histoformer (ECCV 2024): all-weather (rain, raindrop, snow, haze) net_g_best.pth and real-snow "
            "net_g_real.pth. Input RGB [0,1], H/W reflect-padded to a multiple of 8; output = net + input, "
            "clamped to [0,1]. Official test runs whole images (global sort-based attention)."
        ),
    ),
    before=("Restormer",),
)
