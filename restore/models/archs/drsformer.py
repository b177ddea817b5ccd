"""DRSformer - sparse transformer for single-image deraining.

Chen, Li, Pan, Ma, "Learning A Sparse Transformer Network for Effective Image
Deraining", CVPR 2023 (official code: cschenxiang/DRSformer,
``basicsr/models/archs/DRSformer_arch.py`` and ``DRSformer_arch_200L+SPA.py``).
Independent implementation with the official class name, constructor keywords,
defaults and state-dict keys.

Two official variants share the class name ``DRSformer`` but live in two files:

* with MEFC (mixture-of-experts feature compensator, sub-nets ``encoder_level0`` at
  width dim and ``refinement`` at 2*dim): Rain200H, DID-Data and DDN-Data checkpoints;
* without MEFC: Rain200L and SPA-Data checkpoints.

Here one class covers both through the extra keyword ``mefc`` (default True, the
main file); :class:`DRSformerArch` and :class:`DRSformerNoMEFCArch` detect them
separately from the presence of ``encoder_level0.*`` keys.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor, StateDict
from spandrel.util import KeyCondition
from torch import Tensor, nn

from ._base import ArchInfo, Official, register
from .restormer import (
    RestormerUNet,
    TransformerBlock,
    blocks_tag,
    check_heads,
    check_input,
    describe_unet,
    infer_layernorm_type,
    infer_unet_params,
    keys_match,
)

__all__ = [
    "DRSformer",
    "TopKSparseAttention",
    "MixedScaleFeedForward",
    "MEFC",
    "DRSformerArch",
    "DRSformerNoMEFCArch",
    "infer_params",
    "topk_sizes",
]


# --------------------------------------------------------------------------------------
# Top-K sparse attention (TKSA)
# --------------------------------------------------------------------------------------


def topk_sizes(channels_per_head: int) -> tuple[int, int, int, int]:
    """The four top-k sizes of TKSA for ``C`` channels per head.

    ``int(C/2), int(C*2/3), int(C*3/4), int(C*4/5)`` in Python float arithmetic exactly
    as the official code (48 -> 24, 32, 36, 38; 96 -> 48, 64, 72, 76).
    """
    c = channels_per_head
    return int(c / 2), int(c * 2 / 3), int(c * 3 / 4), int(c * 4 / 5)


class TopKSparseAttention(nn.Module):
    """DRSformer's Top-K Sparse Attention (TKSA; official class ``Attention``).

    Restormer-style transposed attention: per head, q and k (C x HW, C = dim/heads)
    are L2-normalised over HW and ``attn = q k^T * temperature`` (C x C).  Four copies
    keep only the top-k entries per row (k from :func:`topk_sizes`, others -inf),
    are softmaxed, and mixed with the learnable scalars ``attn1..attn4`` (shape (1,));
    the mixture multiplies v, then ``project_out``.

    Mixing the four softmax matrices before the product with v equals the official
    ``sum_i attn_i * (P_i @ v)`` up to float rounding (it saves three C x HW matmuls).
    Which entries survive is a discrete top-k choice: exact ties (or near-ties within
    float rounding) may be resolved differently from the official code, so the layer
    is not safe in float16 / bfloat16.

    Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.

    Raises:
        ValueError: if ``dim`` is not divisible by ``num_heads`` or fewer than 2
            channels fall on a head (then ``int(C/2) == 0`` and the official code
            yields NaN).
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.topk = topk_sizes(check_heads(dim, num_heads, min_per_head=2))
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, stride=1, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.attn1 = nn.Parameter(torch.tensor([0.2]))
        self.attn2 = nn.Parameter(torch.tensor([0.2]))
        self.attn3 = nn.Parameter(torch.tensor([0.2]))
        self.attn4 = nn.Parameter(torch.tensor([0.2]))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q = F.normalize(q.reshape(b, self.num_heads, -1, h * w), dim=-1)
        k = F.normalize(k.reshape(b, self.num_heads, -1, h * w), dim=-1)
        v = v.reshape(b, self.num_heads, -1, h * w)

        attn = (q @ k.transpose(-2, -1)) * self.temperature
        # topk(sorted=True): the first k of the largest-max(k) indices are the top k.
        order = torch.topk(attn, k=max(self.topk), dim=-1, largest=True, sorted=True)[1]
        mixed = torch.zeros_like(attn)
        for kk, weight in zip(self.topk, (self.attn1, self.attn2, self.attn3, self.attn4)):
            keep = torch.zeros_like(attn, dtype=torch.bool).scatter_(-1, order[..., :kk], True)
            probs = attn.masked_fill(~keep, float("-inf")).softmax(dim=-1)
            mixed = mixed + probs * weight
        out = (mixed @ v).reshape(b, c, h, w)
        return self.project_out(out)


class MixedScaleFeedForward(nn.Module):
    """DRSformer's Mixed-Scale Feed-forward Network (MSFN; official class ``FeedForward``).

    ``hidden = int(dim * ffn_expansion_factor)``; ``project_in`` 1x1 -> 2*hidden;
    depthwise 3x3 and 5x5 branches + ReLU, each split in halves and re-paired
    (``cat(x1_3, x1_5)``, ``cat(x2_3, x2_5)``); grouped convs ``dwconv3x3_1`` /
    ``dwconv5x5_1`` (2*hidden -> hidden, groups=hidden) + ReLU; ``project_out`` of
    their concatenation (2*hidden -> dim).  Shapes: ``(B, dim, H, W)`` in and out.
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        h2 = hidden * 2
        self.project_in = nn.Conv2d(dim, h2, kernel_size=1, bias=bias)
        self.dwconv3x3 = nn.Conv2d(h2, h2, kernel_size=3, stride=1, padding=1, groups=h2, bias=bias)
        self.dwconv5x5 = nn.Conv2d(h2, h2, kernel_size=5, stride=1, padding=2, groups=h2, bias=bias)
        self.dwconv3x3_1 = nn.Conv2d(h2, hidden, kernel_size=3, stride=1, padding=1, groups=hidden, bias=bias)
        self.dwconv5x5_1 = nn.Conv2d(h2, hidden, kernel_size=5, stride=1, padding=2, groups=hidden, bias=bias)
        self.project_out = nn.Conv2d(h2, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.project_in(x)
        x1_3, x2_3 = F.relu(self.dwconv3x3(x)).chunk(2, dim=1)
        x1_5, x2_5 = F.relu(self.dwconv5x5(x)).chunk(2, dim=1)
        x1 = F.relu(self.dwconv3x3_1(torch.cat([x1_3, x1_5], dim=1)))
        x2 = F.relu(self.dwconv5x5_1(torch.cat([x2_3, x2_5], dim=1)))
        return self.project_out(torch.cat([x1, x2], dim=1))


# --------------------------------------------------------------------------------------
# MEFC: mixture-of-experts feature compensator (official ``subnet``)
# --------------------------------------------------------------------------------------

MEFC_OPERATIONS = (
    "sep_conv_1x1",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "dil_conv_7x7",
    "avg_pool_3x3",
)
"""The eight experts in their fixed official order (``_ops.7`` has no parameters)."""


class _SepConv(nn.Module):
    """dw kxk -> pw 1x1 -> ReLU -> dw kxk -> pw 1x1 (keys op.0, op.1, op.3, op.4; no BN)."""

    def __init__(self, c: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.op = nn.Sequential(
            nn.Conv2d(c, c, kernel, stride=1, padding=pad, groups=c, bias=False),
            nn.Conv2d(c, c, kernel_size=1, padding=0, bias=False),
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, kernel, stride=1, padding=pad, groups=c, bias=False),
            nn.Conv2d(c, c, kernel_size=1, padding=0, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class _DilConv(nn.Module):
    """dw kxk with dilation 2 -> pw 1x1 (keys op.0, op.1)."""

    def __init__(self, c: int, kernel: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.Conv2d(c, c, kernel, stride=1, padding=kernel - 1, dilation=2, groups=c, bias=False),
            nn.Conv2d(c, c, kernel_size=1, padding=0, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


def _make_expert(name: str, c: int) -> nn.Module:
    kind, _, size = name.rpartition("_")
    kernel = int(size.split("x")[0])
    if kind == "sep_conv":
        return _SepConv(c, kernel)
    if kind == "dil_conv":
        return _DilConv(c, kernel)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class _OperationLayer(nn.Module):
    """Weighted sum-by-concat of the 8 experts: ``_out(cat_i(op_i(x) * w_i))``, ``_out`` = 1x1 (8C -> C) + ReLU."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self._ops = nn.ModuleList([_make_expert(n, c) for n in MEFC_OPERATIONS])
        self._out = nn.Sequential(nn.Conv2d(c * len(MEFC_OPERATIONS), c, 1, padding=0, bias=False), nn.ReLU())

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        # weights: (B, num_ops), one weight per sample and expert
        states = [op(x) * weights[:, i].view(-1, 1, 1, 1) for i, op in enumerate(self._ops)]
        return self._out(torch.cat(states, dim=1))


class _ReLUConv(nn.Module):
    """1x1 conv (no bias) + ReLU (key ``op.0.weight``)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.op = nn.Sequential(nn.Conv2d(c, c, 1, stride=1, padding=0, bias=False), nn.ReLU(inplace=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class _GroupOLs(nn.Module):
    """``preprocess``, then ``steps`` times ``s = relu(_ops[i](s, w[:, i]) + s)``."""

    def __init__(self, steps: int, c: int) -> None:
        super().__init__()
        self.preprocess = _ReLUConv(c)
        self._steps = steps
        self._ops = nn.ModuleList([_OperationLayer(c) for _ in range(steps)])

    def forward(self, s: Tensor, weights: Tensor) -> Tensor:
        s = self.preprocess(s)
        for i, op in enumerate(self._ops):
            s = F.relu(op(s, weights[:, i, :]) + s)
        return s


class _OALayer(nn.Module):
    """Expert weights: global average pool -> Linear(C, 2*k*ops) -> ReLU -> Linear(-> k*ops) -> (B, k, ops)."""

    def __init__(self, channel: int, k: int, num_ops: int) -> None:
        super().__init__()
        self.k = k
        self.num_ops = num_ops
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        hidden = k * num_ops * 2
        self.ca_fc = nn.Sequential(nn.Linear(channel, hidden), nn.ReLU(), nn.Linear(hidden, k * num_ops))

    def forward(self, x: Tensor) -> Tensor:
        y = self.ca_fc(self.avg_pool(x).view(x.size(0), -1))
        return y.view(-1, self.k, self.num_ops)


class MEFC(nn.Module):
    """Mixture-of-Experts Feature Compensator (official class ``subnet``).

    ``layers = [OALayer, GroupOLs]`` (``layer_num=1``, ``steps=4``, 8 experts, all
    hard-wired in the official model): the OALayer predicts per-sample softmax weights
    over the experts for each of the 4 steps from the globally pooled input, the
    GroupOLs applies them.  Note the global average pool: the weights depend on the
    whole image.  Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.
    """

    def __init__(self, dim: int, layer_num: int = 1, steps: int = 4) -> None:
        super().__init__()
        self._C = dim
        self.num_ops = len(MEFC_OPERATIONS)
        self._layer_num = layer_num
        self._steps = steps
        self.layers = nn.ModuleList()
        for _ in range(layer_num):
            self.layers.append(_OALayer(dim, steps, self.num_ops))
            self.layers.append(_GroupOLs(steps, dim))

    def forward(self, x: Tensor) -> Tensor:
        weights = None
        for layer in self.layers:
            if isinstance(layer, _OALayer):
                weights = F.softmax(layer(x), dim=-1)
            else:
                x = layer(x, weights)
        return x


# --------------------------------------------------------------------------------------
# DRSformer
# --------------------------------------------------------------------------------------


class DRSformer(RestormerUNet):
    """DRSformer (Chen et al., CVPR 2023), official ``DRSformer`` of both released files.

    Args:
        inp_channels: Input channels.
        out_channels: Output channels (must equal ``inp_channels``: global residual).
        dim: Width of level 1 (levels dim, 2dim, 4dim, 8dim; decoder level 1 2dim).
        num_blocks: Sparse transformer blocks of encoder levels 1-3 and latent; the
            decoder levels mirror them (decoder_level1 has ``num_blocks[0]``).
        heads: Attention heads per level (decoder_level1 uses ``heads[0]`` at 2dim).
        ffn_expansion_factor: MSFN hidden width ``int(width * factor)`` (127 at 48).
        bias: Bias on the block / reduction / output convolutions (False officially).
        LayerNorm_type: ``'WithBias'`` or ``'BiasFree'``.
        mefc: NOT an official keyword: True builds ``DRSformer_arch.py`` (MEFC
            sub-nets ``encoder_level0`` and ``refinement``; Rain200H / DID / DDN
            checkpoints), False builds ``DRSformer_arch_200L+SPA.py`` (Rain200L / SPA).

    Forward:
        ``inp_img`` ``(B, inp_channels, H, W)`` float, RGB in [0, 1] (official test: 8-bit
        /255), H and W multiples of 8.  Returns ``output(...) + inp_img``, same shape
        and dtype, not clamped (the official test clamps to [0, 1]).

    Raises:
        ValueError: at construction for inconsistent sizes (widths not divisible by the
            heads, fewer than 2 channels per head, ``inp_channels != out_channels``);
            in ``forward`` for a wrong channel count or H/W not multiples of 8.
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",
        mefc: bool = True,
    ) -> None:
        super().__init__()
        if inp_channels != out_channels:
            raise ValueError(
                "DRSformer adds its input to the output: "
                f"inp_channels ({inp_channels}) must equal out_channels ({out_channels})"
            )
        self._record_hyperparameters(locals())
        self.mefc = mefc
        self._build_unet(
            inp_channels, dim, num_blocks, heads, ffn_expansion_factor, bias, LayerNorm_type,
            block_cls=functools.partial(TransformerBlock, attn_cls=TopKSparseAttention, ffn_cls=MixedScaleFeedForward),
            after_embed={"encoder_level0": MEFC(dim)} if mefc else None,
        )
        if mefc:
            self.refinement = MEFC(dim * 2)
        self._build_output(dim, out_channels, bias)

    def _stem(self, feat: Tensor) -> Tensor:
        return self.encoder_level0(feat) if self.mefc else feat

    def forward(self, inp_img: Tensor) -> Tensor:
        check_input(inp_img, self.inp_channels, name="DRSformer")
        _, out_dec_level1 = self._unet(inp_img)
        if self.mefc:
            out_dec_level1 = self.refinement(out_dec_level1)
        return self.output(out_dec_level1) + inp_img


# --------------------------------------------------------------------------------------
# Inference of hyper-parameters and spandrel architectures
# --------------------------------------------------------------------------------------

DRSFORMER_FFN_FACTORS = (2.66, 2.667)


def infer_params(state_dict: Mapping[str, object]) -> dict[str, Any]:
    """All :class:`DRSformer` constructor kwargs from key names and tensor shapes.

    ``dim``/``inp_channels`` from ``patch_embed.proj.weight``, ``out_channels`` from
    ``output.weight``, ``num_blocks`` by counting ``encoder_level{1,2,3}.N.`` /
    ``latent.N.``, ``heads`` from ``attn.temperature`` shapes, ``ffn_expansion_factor``
    from ``ffn.project_in.weight`` (hidden = out/2; 2.66 preferred when it fits),
    ``bias`` from ``output.bias``, ``LayerNorm_type`` from ``norm1.body.bias``,
    ``mefc`` from ``encoder_level0.*``.  Reads shapes only (meta tensors work).
    """
    params = infer_unet_params(state_dict, attn="attn", ffn_preferred=DRSFORMER_FFN_FACTORS)
    params["LayerNorm_type"] = infer_layernorm_type(state_dict)
    params["mefc"] = any(k.startswith("encoder_level0.") for k in state_dict)
    return params


_WB = r"\.(?:weight|bias)"
_BLOCK = (
    r"(?:encoder_level[123]|latent|decoder_level[123])\.\d+\."
    r"(?:norm[12]\.body|attn\.(?:qkv|qkv_dwconv|project_out)"
    r"|ffn\.(?:project_in|dwconv3x3|dwconv5x5|dwconv3x3_1|dwconv5x5_1|project_out))" + _WB
)
_COMMON_PATTERNS = (
    r"(?:patch_embed\.proj|(?:down1_2|down2_3|down3_4|up4_3|up3_2|up2_1)\.body\.0|reduce_chan_level[23]|output)" + _WB,
    _BLOCK,
    r"(?:encoder_level[123]|latent|decoder_level[123])\.\d+\.attn\.(?:temperature|attn[1-4])",
)
_MEFC_PATTERNS = (
    r"(?:encoder_level0|refinement)\.layers\.0\.ca_fc\.[02]" + _WB,
    r"(?:encoder_level0|refinement)\.layers\.1\.preprocess\.op\.0\.weight",
    r"(?:encoder_level0|refinement)\.layers\.1\._ops\.[0-3]\._ops\.[0-3]\.op\.[0134]\.weight",
    r"(?:encoder_level0|refinement)\.layers\.1\._ops\.[0-3]\._ops\.[4-6]\.op\.[01]\.weight",
    r"(?:encoder_level0|refinement)\.layers\.1\._ops\.[0-3]\._out\.0\.weight",
)

_TKSA_REQUIRED = KeyCondition.has_all(
    "patch_embed.proj.weight",
    "encoder_level1.0.norm1.body.weight",
    "encoder_level1.0.attn.temperature",
    "encoder_level1.0.attn.attn1",
    "encoder_level1.0.attn.attn4",
    "encoder_level1.0.attn.qkv.weight",
    "encoder_level1.0.ffn.project_in.weight",
    "encoder_level1.0.ffn.dwconv3x3.weight",
    "encoder_level1.0.ffn.dwconv5x5_1.weight",
    "down1_2.body.0.weight",
    "latent.0.attn.attn1",
    "up4_3.body.0.weight",
    "reduce_chan_level3.weight",
    "up2_1.body.0.weight",
    "decoder_level1.0.ffn.dwconv5x5_1.weight",
    "output.weight",
)
_MEFC_REQUIRED = KeyCondition.has_all(
    "encoder_level0.layers.0.ca_fc.0.weight",
    "encoder_level0.layers.0.ca_fc.2.weight",
    "encoder_level0.layers.1.preprocess.op.0.weight",
    "encoder_level0.layers.1._ops.0._out.0.weight",
    "refinement.layers.0.ca_fc.0.weight",
    "refinement.layers.1._ops.3._ops.6.op.1.weight",
)


def _detect_mefc(state_dict: StateDict) -> bool:
    return (
        _TKSA_REQUIRED(state_dict)
        and _MEFC_REQUIRED(state_dict)
        and keys_match(state_dict, _COMMON_PATTERNS + _MEFC_PATTERNS)
    )


def _detect_no_mefc(state_dict: StateDict) -> bool:
    return _TKSA_REQUIRED(state_dict) and keys_match(state_dict, _COMMON_PATTERNS)


class _DRSformerArchBase(Architecture[DRSformer]):
    _mefc: bool

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[DRSformer]:
        """Build a :class:`DRSformer` from ``state_dict`` (strict load) and describe it.

        Raises:
            ValueError: if the state dict is of the other variant (MEFC vs no MEFC) or
                its sizes are inconsistent.
            RuntimeError: from ``load_state_dict`` on a shape mismatch.
        """
        params = infer_params(state_dict)
        if params["mefc"] != self._mefc:
            raise ValueError(f"{self.id}: state dict is the {'MEFC' if params['mefc'] else 'no-MEFC'} variant")
        tags = [blocks_tag(params["num_blocks"]), "MEFC" if params["mefc"] else "no-MEFC"]
        # Top-k masks are discrete decisions on attention scores: reduced precision
        # changes which entries survive (many more ties), so fp16/bf16 are not claimed.
        return describe_unet(self, DRSformer(**params), state_dict, params, tags)


class DRSformerArch(_DRSformerArchBase):
    """spandrel architecture of DRSformer WITH MEFC (``encoder_level0`` / ``refinement`` sub-nets).

    Detection requires the TKSA/MSFN block keys, the MEFC keys, and that every key is
    one a DRSformer can own (so Restormer, Histoformer and no-MEFC checkpoints are
    rejected).
    """

    _mefc = True

    def __init__(self) -> None:
        super().__init__(id="DRSformer", detect=_detect_mefc)


class DRSformerNoMEFCArch(_DRSformerArchBase):
    """spandrel architecture of DRSformer WITHOUT MEFC (Rain200L / SPA-Data checkpoints).

    Detection requires the TKSA/MSFN block keys and rejects any key outside the
    no-MEFC layout (in particular every ``encoder_level0`` / ``refinement`` key).
    """

    _mefc = False

    def __init__(self) -> None:
        super().__init__(id="DRSformerNoMEFC", detect=_detect_no_mefc)


# Top-k channel attention and the MEFC's global average pool are global: every output
# pixel depends on the whole input, so no finite tile overlap reproduces the whole-image
# output exactly.  32 px (4 px at the 1/8 latent level) is the official test.py's
# --tile_overlap and hides the seams of the local (conv) part.
_DERAIN_NOTES = (
    "Input RGB [0,1] (cv2 BGR->RGB /255 in the official test), H/W reflect-padded to a multiple of 8; "
    "output = net + input, clamped to [0,1]."
)


def _derain_info(variant: str, checkpoints: tuple[str, ...]) -> ArchInfo:
    """The :class:`ArchInfo` of one DRSformer variant (``variant`` names it, ``checkpoints`` its official files)."""
    notes = f"DRSformer (CVPR 2023) {variant} checkpoints. " + _DERAIN_NOTES
    official = Official(repo="https://github.com/cschenxiang/DRSformer", checkpoints=checkpoints, layout="{'params': state_dict}")
    return ArchInfo(task="derain", output_range="clamped", overlap=32, whole_image=True, official=official, notes=notes)


# _base's pattern: the names now hold the registered instances
DRSformerArch = register(  # type: ignore[misc]
    DRSformerArch(), _derain_info("with MEFC: Rain200H, DID-Data, DDN-Data", ("Rain200H", "DID-Data", "DDN-Data")), before=("Restormer",)
)
DRSformerNoMEFCArch = register(  # type: ignore[misc]
    DRSformerNoMEFCArch(), _derain_info("without MEFC: Rain200L, SPA-Data", ("Rain200L", "SPA-Data")), before=("Restormer",)
)
