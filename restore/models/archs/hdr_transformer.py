"""HDR-Transformer (CA-ViT): ghost-free multi-exposure HDR merging.

Paper: Z. Liu, Y. Wang, B. Zeng, S. Liu, "Ghost-free High Dynamic Range Imaging
with Context-aware Transformer", ECCV 2022 (arXiv:2208.05114).  Official PyTorch
code: liuzhen03/HDR-Transformer-PyTorch, ``models/hdr_transformer.py``, class
``HDRTransformer``.  This is an independent re-implementation; class name,
constructor keywords/defaults and state-dict keys follow the official module so
its checkpoints (``{'epoch', 'state_dict', 'optimizer'}``, keys ``module.``-
prefixed by ``nn.DataParallel``) load with ``strict=True`` once unwrapped
(``spandrel.canonicalize_state_dict`` does that).

Network: per exposure a 3x3 conv (``conv_f{1,2,3}``), spatial attention that
gates the short and long features against the reference (``att_module_h`` /
``att_module_l``), ``conv_first`` over the three, then context-aware
transformer blocks (Swin window attention + a local context extractor, a
dilated 3x3 conv per group), ``conv_after_body`` applied to
``features + shallow`` (residual added *before* the conv, unlike SwinIR),
``conv_last(f2 + res)`` and a sigmoid.

Inputs: three frames ``cat(LDR**2.2 / t, LDR)`` (6 channels each, LDR in
[0, 1], OpenCV BGR order in the official data pipeline); output linear HDR in
(0, 1), same channel order.  The network does not pad: H and W must be
multiples of ``window_size``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, TypeVar

import torch
from spandrel import Architecture, ImageModelDescriptor, SizeRequirements
from spandrel.util import KeyCondition
from torch import nn

from restore.models.archs._base import ArchInfo, Official, describe, register
from restore.models.archs._swin import (
    RSTB,
    SwinIRBody,
    SwinTransformerBlock,
    checkpoint_filter_fn,
    infer_swinir_kwargs,
    resi_conv,
    to_2tuple,
)

__all__ = [
    "HDRTransformer",
    "HDRTransformerArch",
    "infer_params",
    "filter_state_dict",
    "SpatialAttentionModule",
    "LocalContextExtractor",
    "ContextAwareTransformer",
    "ContextAwareTransformerBlock",
    "describe_hdr",
    "split_frames",
]

M = TypeVar("M", bound=nn.Module)


# --------------------------------------------------------------------------------------
# HDR-merge helpers shared with SCTNet (restore.models.archs.sctnet)
# --------------------------------------------------------------------------------------


def describe_hdr(
    arch: Architecture[M],
    model: M,
    state_dict: Mapping[str, torch.Tensor],
    params: Mapping[str, Any],
    *,
    input_channels: int,
) -> ImageModelDescriptor[M]:
    """spandrel descriptor of a 3-exposure HDR model built on :class:`SwinIRBody` (HDR-Transformer, SCTNet).

    Tags from the constructor kwargs ``params`` (width, depths, window,
    construction size), 3 output channels, bfloat16 supported, inputs
    multiples of the window the blocks use (``model._block_window``).
    """
    h, w = to_2tuple(params["img_size"])
    tags = [
        f"{params['embed_dim']}dim",
        "d" + "-".join(str(d) for d in params["depths"]),
        f"w{params['window_size']}",
        f"s{h}" if h == w else f"s{h}x{w}",
    ]
    ws = model._block_window
    return describe(
        arch,
        model,
        dict(state_dict),
        tags=tags,
        input_channels=input_channels,
        output_channels=3,
        size_requirements=SizeRequirements(minimum=ws, multiple_of=ws),
        supports_bfloat16=True,
    )


def split_frames(
    x1: torch.Tensor,
    x2: torch.Tensor | None,
    x3: torch.Tensor | None,
    frame_channels: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalise the two calling conventions of the 3-exposure HDR models.

    Either three frames ``(B, frame_channels, H, W)`` each (short, reference,
    long), or one tensor ``(B, 3*frame_channels, H, W)`` holding them
    concatenated on the channel axis in that order.

    Returns:
        ``(short, reference, long)``, each ``(B, frame_channels, H, W)``
        (views of the input when it was one tensor).

    Raises:
        ValueError: on a non-4D input, wrong channel counts, only two frames
            given, or frames of different shapes.
    """
    if (x2 is None) != (x3 is None):
        raise ValueError("pass either all three exposures (x1, x2, x3) or one tensor with them stacked on channels")
    if x2 is None:
        if x1.dim() != 4 or x1.shape[1] != 3 * frame_channels:
            raise ValueError(
                f"single-tensor input must be (B, {3 * frame_channels}, H, W) = 3 stacked frames, "
                f"got {tuple(x1.shape)}"
            )
        a, b, c = torch.split(x1, frame_channels, dim=1)
        return a, b, c
    frames = (x1, x2, x3)
    for i, f in enumerate(frames, 1):
        if f.dim() != 4 or f.shape[1] != frame_channels:
            raise ValueError(f"frame x{i} must be (B, {frame_channels}, H, W), got {tuple(f.shape)}")
    if not (x1.shape == x2.shape == x3.shape):
        raise ValueError(
            f"the three frames differ in shape: {tuple(x1.shape)}, {tuple(x2.shape)}, {tuple(x3.shape)}"
        )
    return x1, x2, x3


class SpatialAttentionModule(nn.Module):
    """Spatial attention of a non-reference frame w.r.t. the reference (keys ``att1``, ``att2``).

    ``sigmoid(att2(LeakyReLU_0.01(att1(cat(x1, x2)))))``; inputs ``(B, dim, H, W)``
    each, output ``(B, dim, H, W)`` in (0, 1).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.att1 = nn.Conv2d(dim * 2, dim * 2, kernel_size=3, padding=1, bias=True)
        self.att2 = nn.Conv2d(dim * 2, dim, kernel_size=3, padding=1, bias=True)
        self.relu = nn.LeakyReLU()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.att2(self.relu(self.att1(torch.cat((x1, x2), dim=1)))))


class LocalContextExtractor(nn.Module):
    """Local context branch of a CA-ViT block: conv bottleneck + squeeze-excitation.

    ``conv`` = Conv1x1 (dim -> dim/r), Conv3x3, Conv1x1 (-> dim), LeakyReLU(0.2);
    ``fc`` = Linear(dim, dim/r, no bias), ReLU, Linear(dim/r, dim, no bias), sigmoid,
    applied to the global average.  ``(B, dim, H, W)`` -> same shape.
    """

    def __init__(self, dim: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = dim // reduction
        self.conv = nn.Sequential(
            nn.Conv2d(dim, hidden, kernel_size=1, padding=0, bias=True),
            nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, bias=True),
            nn.Conv2d(hidden, dim, kernel_size=1, padding=0, bias=True),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
        )
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(dim, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, dim, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        b, c = x.shape[:2]
        y = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * y


class ContextAwareTransformer(SwinTransformerBlock):
    """CA-ViT block: Swin (S)W-MSA + MLP, plus the local context of the ``norm1`` output added last.

    Keys: those of :class:`~restore.models.archs._swin.SwinTransformerBlock`
    plus ``lce.*`` (:class:`LocalContextExtractor`).  Tokens ``(B, H*W, C)`` in and out.
    """

    def __init__(
        self, dim: int, input_resolution: tuple[int, int], num_heads: int, window_size: int = 8, **kwargs: Any
    ) -> None:
        super().__init__(dim, input_resolution, num_heads, window_size=window_size, **kwargs)
        self.lce = LocalContextExtractor(self.dim)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        h, w = x_size
        b, _, c = x.shape
        shortcut = x
        xn = self.norm1(x).view(b, h, w, c)
        local = xn.permute(0, 3, 1, 2)
        x = shortcut + self.drop_path(self.window_msa(xn, x_size))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        lc = self.lce(local).view(b, c, h * w).permute(0, 2, 1)
        return lc + x


class ContextAwareTransformerBlock(RSTB):
    """Group of CA-ViT blocks with a dilated-conv tail and a residual (keys ``residual_group``, ``dilated_conv``).

    :class:`~restore.models.archs._swin.RSTB` (same constructor) with
    :class:`ContextAwareTransformer` blocks and its conv named
    ``dilated_conv``: ``'1conv'``: 3x3 conv, dilation 2; ``'3conv'``: dilated
    3x3 (dim -> dim/4), LeakyReLU, 1x1, LeakyReLU, dilated 3x3 (-> dim).
    Tokens in and out.
    """

    block_cls = ContextAwareTransformer
    conv_name = "dilated_conv"

    @staticmethod
    def make_conv(resi_connection: str, dim: int) -> nn.Module:
        """:func:`~restore.models.archs._swin.resi_conv` with dilation 2."""
        return resi_conv(resi_connection, dim, dilation=2)


class HDRTransformer(SwinIRBody):
    """HDR-Transformer (CA-ViT, Liu et al., ECCV 2022) merging three exposures into linear HDR.

    Constructor keywords and defaults are the official class's; the official
    training/test scripts use ``embed_dim=60, depths=[6,6,6], num_heads=[6,6,6],
    mlp_ratio=2, in_chans=6`` with ``img_size=128``.  ``img_size`` only sizes
    the persistent ``attn_mask`` buffers (and ``absolute_pos_embed`` if
    ``ape``): any H, W that are multiples of the window size run; the stored
    mask is used when ``(H, W) == img_size // patch_size``, otherwise one is
    computed, exactly as in the official code.  ``patch_size`` must stay 1 for
    the network to make sense (there is no patch projection), as officially.

    Args:
        img_size: Construction feature size (int or (H, W)); sizes the buffers.
        patch_size: Official keyword, 1.
        in_chans: Channels per exposure (6 = ``cat(LDR**2.2/t, LDR)``).
        embed_dim: Feature width C.
        depths: CA-ViT blocks per group.
        num_heads: Attention heads per group.
        window_size: Attention window side.
        mlp_ratio: MLP hidden width / C.
        qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate,
        norm_layer, ape, patch_norm, use_checkpoint, resi_connection:
            As in SwinIR.
        **kwargs: Ignored (the official class accepts and ignores extras).

    Raises:
        ValueError: on an unknown ``resi_connection`` or mismatched
            ``depths``/``num_heads``.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 128,
        patch_size: int = 1,
        in_chans: int = 6,
        embed_dim: int = 60,
        depths: list[int] | tuple[int, ...] = (6, 6, 6),
        num_heads: list[int] | tuple[int, ...] = (6, 6, 6),
        window_size: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        ape: bool = False,
        patch_norm: bool = True,
        use_checkpoint: bool = False,
        resi_connection: str = "1conv",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        if len(num_heads) < len(depths):
            raise ValueError(f"num_heads {num_heads} shorter than depths {depths}")
        num_out_ch = 3
        self.in_chans = in_chans
        self.window_size = window_size
        self.conv_f1 = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.conv_f2 = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.conv_f3 = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.att_module_l = SpatialAttentionModule(embed_dim)
        self.att_module_h = SpatialAttentionModule(embed_dim)
        self.conv_first = nn.Conv2d(embed_dim * 3, embed_dim, 3, 1, 1)

        self._build_body(
            img_size, patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale,
            drop_rate, attn_drop_rate, drop_path_rate, norm_layer, ape, patch_norm, use_checkpoint, resi_connection,
            stage_cls=ContextAwareTransformerBlock,
        )
        self._build_tail(norm_layer, resi_connection)
        self.conv_last = nn.Conv2d(embed_dim, num_out_ch, 3, 1, 1)
        self.apply(self._init_weights)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor | None = None, x3: torch.Tensor | None = None) -> torch.Tensor:
        """Merge three exposures.

        Args:
            x1: Short exposure ``(B, in_chans, H, W)``, or all three stacked
                ``(B, 3*in_chans, H, W)`` (short, reference, long) when
                ``x2``/``x3`` are None.  float32 (bfloat16 works too), per
                frame ``cat(LDR**2.2 / t, LDR)`` with LDR in [0, 1].
            x2: Reference (middle) exposure ``(B, in_chans, H, W)``.
            x3: Long exposure ``(B, in_chans, H, W)``.

        Returns:
            ``(B, 3, H, W)`` linear HDR in (0, 1) (sigmoid), input dtype.

        Raises:
            ValueError: wrong shapes/channels, or H, W not multiples of the
                window size (the network does not pad; pad the frames, the
                official test pads with ones to 256-multiples and tiles).
        """
        x1, x2, x3 = split_frames(x1, x2, x3, self.in_chans)
        h, w = x1.shape[-2:]
        ws = self._block_window
        if h % ws or w % ws:
            raise ValueError(f"HDRTransformer needs H and W multiples of window_size={ws}, got {h}x{w}")
        f1 = self.conv_f1(x1)
        f2 = self.conv_f2(x2)
        f3 = self.conv_f3(x3)
        f1_att = f1 * self.att_module_h(f1, f2)
        f3_att = f3 * self.att_module_l(f3, f2)
        x = self.conv_first(torch.cat((f1_att, f2, f3_att), dim=1))
        res = self.conv_after_body(self.forward_features(x) + x)
        return torch.sigmoid(self.conv_last(f2 + res))


def infer_params(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """HDRTransformer constructor kwargs from a (canonical) state dict; works on ``meta`` tensors.

    * ``embed_dim``, ``in_chans``: ``conv_f1.weight`` ``(C, in_chans, 3, 3)``;
    * ``depths`` (block keys counted), ``num_heads`` (bias-table columns),
      ``window_size`` (table length ``(2ws-1)**2``), ``mlp_ratio`` (``mlp.fc1``
      rows / C), ``qkv_bias``: see :func:`~restore.models.archs._swin.infer_swin_stages`;
    * ``img_size``: from the first stored ``attn_mask`` ``(nW, ws^2, ws^2)``
      (square ``sqrt(nW)*ws`` or, for real tensors, the layout that
      reproduces its values); else from ``absolute_pos_embed``; else
      ``window_size`` when a stage has a second block (no mask is stored only
      when the window covers the whole map); else the official 128.
      Returned as an int when square, ``(H, W)`` otherwise;
    * ``ape``, ``patch_norm``, ``resi_connection``: presence of
      ``absolute_pos_embed``, ``patch_embed.norm.weight``, ``conv_after_body.weight``.
    * ``patch_size`` is not stored; it is always 1 (the official value).

    Raises:
        KeyError / ValueError: if the state dict is not an HDR-Transformer one.
    """
    embed_dim, in_chans = (int(s) for s in state_dict["conv_f1.weight"].shape[:2])
    kwargs = infer_swinir_kwargs(state_dict, in_chans=in_chans, embed_dim=embed_dim, default_size=128)
    h, w = kwargs["img_size"]
    if h == w:
        kwargs["img_size"] = h
    return kwargs


def filter_state_dict(state_dict: Mapping[str, torch.Tensor], model: HDRTransformer) -> dict[str, torch.Tensor]:
    """Regenerate the shape-bound buffers (``attn_mask``, ``relative_position_index``) for ``model``.

    Use to strict-load a checkpoint made with another ``img_size`` into
    ``model`` (timm's ``checkpoint_filter_fn`` idea); parameters are untouched.
    """
    return checkpoint_filter_fn(state_dict, model)


class HDRTransformerArch(Architecture[HDRTransformer]):
    """spandrel architecture for HDR-Transformer checkpoints (keys unwrapped from ``state_dict``/``module.``)."""

    def __init__(self) -> None:
        super().__init__(
            id="HDRTransformer",
            name="HDR-Transformer",
            detect=KeyCondition.has_all(
                "conv_f1.weight",
                "conv_f2.weight",
                "conv_f3.weight",
                "att_module_h.att1.weight",
                "att_module_h.att2.weight",
                "att_module_l.att1.weight",
                "conv_first.weight",
                "layers.0.residual_group.blocks.0.lce.conv.0.weight",
                "layers.0.residual_group.blocks.0.lce.fc.0.weight",
                "layers.0.residual_group.blocks.0.attn.relative_position_bias_table",
                KeyCondition.has_any("layers.0.dilated_conv.weight", "layers.0.dilated_conv.0.weight"),
                "conv_last.weight",
            ),
        )

    def load(  # type: ignore[override]
        self, state_dict: Mapping[str, torch.Tensor]
    ) -> ImageModelDescriptor[HDRTransformer]:
        """Build the model from :func:`infer_params` and strict-load ``state_dict``.

        Returns an 18-channel-in (3 stacked frames), 3-channel-out, scale-1
        descriptor; inputs must be multiples of the window size (spandrel's
        call pads them).

        Raises:
            KeyError / ValueError / RuntimeError: not a loadable HDR-Transformer state dict.
        """
        params = infer_params(state_dict)
        return describe_hdr(
            self, HDRTransformer(**params), state_dict, params,
            input_channels=3 * params["in_chans"],
        )


HDRTransformerArch = register(  # type: ignore[misc]  # _base's pattern: the name now holds the instance
    HDRTransformerArch(),
    ArchInfo(
        task="hdr-merge",
        frames=3,
        input_encoding="hdr-ldr-pair",
        output_range="sigmoid",
        # 32 px = 4 windows of 8: the pure-conv halo of the official config is
        # 30 px (conv_f, two attention convs, conv_first, one 3x3 per CA-ViT
        # block x 18, a dilation-2 conv per group x 3, conv_after_body,
        # conv_last), and a shifted window reaches ws-1 = 7 px across a seam;
        # a multiple of the window size keeps tiles on the same window grid.
        # The official test uses NON-overlapping 256x256 tiles (padded with
        # ones); the SE branch of every block pools over the whole tile, so
        # tiled output never equals whole-image output exactly - use large tiles.
        overlap=32,
        official=Official(
            repo="https://github.com/liuzhen03/HDR-Transformer-PyTorch",
            checkpoints=("checkpoints/pretrained_model.pth (Kalantari17)",),
            layout="{'epoch', 'state_dict' (module.-prefixed), 'optimizer'}",
        ),
        notes=(
            "Liu et al., ECCV 2022 (CA-ViT). Input per frame cat(LDR**2.2/t, LDR), frames "
            "short/reference/long, BGR as read by OpenCV; output linear HDR in (0,1). "
            "H, W must be multiples of window_size (no internal padding). Official test: "
            "256x256 tiles; metrics on mu-law log(1+5000x)/log(5001)."
        ),
    ),
    # spandrel's SwinIR detection also matches these keys (conv_first.weight + Swin blocks).
    before=("SwinIR",),
)
