"""SCTNet: alignment-free HDR deghosting with a Semantics Consistent Transformer.

Paper: S. Tel, Z. Wu, Y. Zhang, B. Heyrman, C. Demonceaux, R. Timofte,
D. Ginhac, "Alignment-free HDR Deghosting with Semantics Consistent
Transformer", ICCV 2023 (arXiv:2305.18135).  Official code: Zongwei97/SCTNet,
``models/SCTNet.py`` (class ``SCTNet``, a SwinIR derivative) and
``models/SCAB.py``.  This is an independent re-implementation; class name,
constructor keywords/defaults and state-dict keys follow the official modules
so their checkpoints (``{'epoch', 'state_dict', 'optimizer'}``, ``module.``
prefix from ``nn.DataParallel``) strict-load once unwrapped.

Network: the three frames are stacked (18 channels), reflect-padded to a
multiple of ``window_size``, each frame goes through its own 3x3 conv
(``conv1/2/3``, 6 -> C/3); the C tokens pass an ``Mlp`` (``conv_first``); every
stage is a GSAB (spatial Swin group + 3x3 conv + residual) followed by two
SCABs - channel cross-attention of the reference third with the short
(``channel_layers_lm``) and long (``channel_layers_rm``) thirds - whose outputs
are fused by a token ``Mlp`` (``mlps``).  Then LayerNorm, ``conv_after_body``,
plus a long skip ``conv_end(ref)``, a 3x3 conv to RGB (``upsample``, named after
SwinIR's one-step upsampler but without pixel shuffle) and a sigmoid.

Quirk kept from the official code: the final crop is ``[:H*upscale, :W*upscale]``
with the official ``upscale=2``, so when H or W is not a multiple of
``window_size`` the reflect padding is NOT cropped off (18x26 in -> 24x32 out
for ``window_size=8``).  Feed multiples of ``window_size`` (spandrel's
descriptor call pads and crops itself) or build with ``upscale=1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor
from spandrel.util import KeyCondition
from torch import nn

from restore.models.archs._base import ArchInfo, Official, register
from restore.models.archs._swin import (
    RSTB,
    Mlp,
    SwinIRBody,
    checkpoint_filter_fn,
    infer_swinir_kwargs,
    pad_to_window,
)
from restore.models.archs.hdr_transformer import describe_hdr, split_frames
from restore.models.archs.restormer import LayerNorm

__all__ = [
    "SCTNet",
    "SCTNetArch",
    "infer_params",
    "filter_state_dict",
    "SCAB",
    "Mutual_Attention",
    "GSAB",
    "C_NUM_HEADS",
]

#: Heads of every SCAB channel attention; hard-coded ``[4, 4, 4, 4]`` in the official
#: ``SCTNet.__init__`` (so at most 4 stages, and ``embed_dim // 3`` divisible by 4).
C_NUM_HEADS = (4, 4, 4, 4)


class Mutual_Attention(nn.Module):
    """Channel (transposed) cross-attention: queries from ``x``, keys/values from ``y``.

    Per head, q and k are L2-normalised over the H*W pixels; the ``(c, c)``
    attention is scaled by a learned per-head ``temperature`` ``(heads, 1, 1)``.
    Keys ``q``, ``k``, ``v``, ``project_out`` (1x1 convs).  ``x``, ``y``:
    ``(B, dim, H, W)`` of equal shape -> ``(B, dim, H, W)``.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.k = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.v = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"Mutual_Attention inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        b, c, h, w = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, heads, c // heads, h * w)
        k = self.k(y).reshape(b, heads, c // heads, h * w)
        v = self.v(y).reshape(b, heads, c // heads, h * w)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        out = (attn @ v).reshape(b, c, h, w)
        return self.project_out(out)


class SCAB(nn.Module):
    """Spatial-channel attention block: ``x + MA(LN(x), LN(y))`` then ``+ FFN(LN(.))``, on tokens.

    Keys ``norm1_x.body``, ``norm1_y.body`` (Restormer's channel
    :class:`~restore.models.archs.restormer.LayerNorm`), ``attn`` (:class:`Mutual_Attention`),
    ``norm2`` (``nn.LayerNorm``), ``ffn`` (Mlp, hidden ``dim*ffn_expansion_factor``).

    ``forward(x, y, x_size)``: tokens ``(B, H*W, dim)`` each, ``x_size = (H, W)``;
    returns tokens ``(B, H*W, dim)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_expansion_factor: float = 2,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",
    ) -> None:
        super().__init__()
        self.norm1_x = LayerNorm(dim, LayerNorm_type)
        self.norm1_y = LayerNorm(dim, LayerNorm_type)
        self.attn = Mutual_Attention(dim, num_heads, bias)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = Mlp(in_features=dim, hidden_features=int(dim * ffn_expansion_factor), act_layer=nn.GELU, drop=0.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        b, n, c = x.shape
        h, w = x_size
        if n != h * w:
            raise ValueError(f"{n} tokens do not form a {h}x{w} map")
        x = x.transpose(1, 2).reshape(b, c, h, w)
        y = y.transpose(1, 2).reshape(b, c, h, w)
        fused = x + self.attn(self.norm1_x(x), self.norm1_y(y))
        fused = fused.flatten(2).transpose(1, 2)
        return fused + self.ffn(self.norm2(fused))


class GSAB(RSTB):
    """Global spatial attention block = SwinIR's RSTB: Swin group, 3x3 conv, residual.

    :class:`~restore.models.archs._swin.RSTB` itself under SCTNet's name.
    Keys ``residual_group`` and ``conv`` (``'1conv'``) or ``conv.{0,2,4}``
    (``'3conv'``).  Tokens ``(B, H*W, dim)`` in and out.
    """


class UpsampleOneStep(nn.Sequential):
    """The official "one-step upsampler": a single 3x3 conv ``num_feat -> num_out_ch`` (no pixel shuffle)."""

    def __init__(
        self, scale: int, num_feat: int, num_out_ch: int, input_resolution: tuple[int, int] | None = None
    ) -> None:
        self.num_feat = num_feat
        self.input_resolution = input_resolution
        super().__init__(nn.Conv2d(num_feat, num_out_ch, 3, 1, 1))


class SCTNet(SwinIRBody):
    """SCTNet (Tel et al., ICCV 2023): three exposures -> linear HDR, SwinIR body with SCAB fusion.

    Constructor keywords and defaults are the official class's; the official
    test script uses ``img_size=(72, 72), in_chans=18, window_size=8,
    img_range=1., depths=[6,6,6,6], embed_dim=60, num_heads=[6,6,6,6],
    mlp_ratio=2, upsampler='pixelshuffledirect'`` (``upscale`` left at 2).
    ``img_size`` only sizes the persistent ``attn_mask`` buffers: other sizes
    run, with the mask recomputed as in the official code.

    Args:
        img_size: Construction feature size (int or (H, W)).
        patch_size: Official keyword, 1.
        in_chans: Channels of the three stacked frames (18 = 3 x 6).
        embed_dim: Feature width C (divisible by 3; C/3 divisible by 4).
        depths, num_heads: Swin blocks / heads per stage (at most 4 stages).
        window_size: Attention window side; inputs are reflect-padded to it.
        mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate,
        drop_path_rate, norm_layer, ape, patch_norm, use_checkpoint,
        resi_connection: As in SwinIR.
        upscale: Only used by the final crop ``[:H*upscale, :W*upscale]``
            (official 2: padding is never cropped; 1 crops it).
        img_range: Input scale (official 1.0).
        upsampler: Stored only; the tail is always a single 3x3 conv.
        **kwargs: Ignored, as in the official class.

    Raises:
        ValueError: ``embed_dim`` not divisible by 3 or ``embed_dim//3`` not by
            4, more than 4 stages, fewer ``num_heads`` than ``depths``, bad
            ``resi_connection``.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 64,
        patch_size: int = 1,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: list[int] | tuple[int, ...] = (6, 6, 6, 6),
        num_heads: list[int] | tuple[int, ...] = (6, 6, 6, 6),
        window_size: int = 7,
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
        upscale: int = 2,
        img_range: float = 1.0,
        upsampler: str = "",
        resi_connection: str = "1conv",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        if embed_dim % 3:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by 3 (one third per exposure)")
        if len(depths) > len(C_NUM_HEADS):
            raise ValueError(
                f"SCTNet has at most {len(C_NUM_HEADS)} stages (hard-coded c_num_heads), got {len(depths)}"
            )
        if (embed_dim // 3) % C_NUM_HEADS[0]:
            raise ValueError(f"embed_dim // 3 = {embed_dim // 3} must be divisible by the {C_NUM_HEADS[0]} SCAB heads")
        if len(num_heads) < len(depths):
            raise ValueError(f"num_heads {num_heads} shorter than depths {depths}")
        num_out_ch = 3
        self.in_chans = in_chans
        self.img_range = img_range
        mean = torch.tensor((0.4488, 0.4371, 0.4040)).view(1, 3, 1, 1) if in_chans == 3 else torch.zeros(1, 1, 1, 1)
        # A plain attribute officially: not in the state dict.
        self.register_buffer("mean", mean, persistent=False)
        self.upscale = upscale
        self.upsampler = upsampler
        self.window_size = window_size

        third = embed_dim // 3
        self.conv1 = nn.Conv2d(in_chans // 3, third, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_chans // 3, third, 3, 1, 1)
        self.conv3 = nn.Conv2d(in_chans // 3, third, 3, 1, 1)
        self.conv_end = nn.Conv2d(third, embed_dim, 3, 1, 1)
        self.conv_first = Mlp(embed_dim, embed_dim, act_layer=nn.GELU, drop=drop_rate)

        resolution = self._build_body(
            img_size, patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale,
            drop_rate, attn_drop_rate, drop_path_rate, norm_layer, ape, patch_norm, use_checkpoint, resi_connection,
            stage_cls=GSAB,
        )
        self.channel_layers_lm = nn.ModuleList(
            SCAB(third, num_heads=C_NUM_HEADS[i], ffn_expansion_factor=4, bias=False, LayerNorm_type="WithBias")
            for i in range(self.num_layers)
        )
        self.channel_layers_rm = nn.ModuleList(
            SCAB(third, num_heads=C_NUM_HEADS[i], ffn_expansion_factor=4, bias=False, LayerNorm_type="WithBias")
            for i in range(self.num_layers)
        )
        self.mlps = nn.ModuleList(
            Mlp(embed_dim, embed_dim, embed_dim, act_layer=nn.GELU, drop=drop_rate) for _ in range(self.num_layers)
        )
        self._build_tail(norm_layer, resi_connection)
        self.upsample = UpsampleOneStep(upscale, embed_dim, num_out_ch, resolution)
        self.apply(self._init_weights)
        self.sigmoid = nn.Sigmoid()

    def check_image_size(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad bottom/right so H and W are multiples of ``window_size``."""
        return pad_to_window(x, self.window_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stages of GSAB + two SCABs + fusion Mlp, final LayerNorm: ``(B, C, H, W)`` -> same."""
        x, x_size = self._embed(x)
        x1, x2, x3 = x.chunk(3, dim=2)
        x = self.conv_first(x)
        stages = zip(self.layers, self.channel_layers_lm, self.channel_layers_rm, self.mlps)
        for layer, layer_lm, layer_rm, mlp in stages:
            x = layer(x, x_size)
            x11, x22, x33 = x.chunk(3, dim=2)
            ref = x2 + x22
            x_lm = layer_lm(ref, x1 + x11, x_size)
            x_rm = layer_rm(ref, x3 + x33, x_size)
            x = mlp(torch.cat((x_lm, ref, x_rm), dim=2))
        return self.patch_unembed(self.norm(x), x_size)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor | None = None, x3: torch.Tensor | None = None) -> torch.Tensor:
        """Merge three exposures.

        Args:
            x1: Short exposure ``(B, in_chans/3, H, W)``, or all three stacked
                ``(B, in_chans, H, W)`` (short, reference, long) when
                ``x2``/``x3`` are None.  float32 (bfloat16 works too), per
                frame ``cat(LDR**2.2 / t, LDR)`` with LDR in [0, 1].
            x2: Reference exposure ``(B, in_chans/3, H, W)``.
            x3: Long exposure ``(B, in_chans/3, H, W)``.

        Returns:
            ``(B, 3, H', W')`` linear HDR in (0, 1) (sigmoid).  ``H' = H`` when H
            is a multiple of ``window_size``; otherwise
            ``H' = min(H*upscale, padded H)`` - with the official ``upscale=2``
            the padded size (official behaviour).  Same for W.

        Raises:
            ValueError: wrong shapes or channel counts; reflect padding needs
                H, W larger than the padding amount (RuntimeError from torch).
        """
        x1, x2, x3 = split_frames(x1, x2, x3, self.in_chans // 3)
        x = torch.cat((x1, x2, x3), dim=1)
        h, w = x.shape[2:]
        x = self.check_image_size(x)
        mean = self.mean.to(x)
        x = (x - mean) * self.img_range
        x1, x2, x3 = x.chunk(3, dim=1)
        x1 = self.conv1(x1)
        x2 = self.conv2(x2)
        x3 = self.conv3(x3)
        x = torch.cat((x1, x2, x3), dim=1)
        x = self.conv_after_body(self.forward_features(x)) + self.conv_end(x2)
        x = self.upsample(x)
        x = x / self.img_range + mean
        return self.sigmoid(x[:, :, : h * self.upscale, : w * self.upscale])


def infer_params(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """SCTNet constructor kwargs from a (canonical) state dict; works on ``meta`` tensors.

    * ``in_chans`` = 3 x ``conv1.weight.shape[1]``; ``embed_dim`` =
      ``conv_first.fc1.weight.shape[1]``;
    * ``depths``, ``num_heads``, ``window_size``, ``mlp_ratio``, ``qkv_bias``:
      from the Swin stages (:func:`~restore.models.archs._swin.infer_swin_stages`:
      block keys counted, bias-table columns, table length ``(2ws-1)**2``,
      ``mlp.fc1`` rows / C);
    * ``img_size`` ``(H, W)``: from the first stored ``attn_mask``
      ``(nW, ws^2, ws^2)``; else ``absolute_pos_embed``; else ``(ws, ws)``
      when a stage has a second block (the window then covers the map);
      else the official ``(72, 72)``;
    * ``ape``, ``patch_norm``, ``resi_connection``: presence of
      ``absolute_pos_embed``, ``patch_embed.norm.weight``, ``conv_after_body.weight``;
    * not stored in weights, set to the official test values:
      ``patch_size=1``, ``img_range=1.0``, ``upscale=2``.

    Raises:
        KeyError / ValueError: not an SCTNet state dict, or SCAB heads other
            than the hard-coded 4.
    """
    in_chans = 3 * int(state_dict["conv1.weight"].shape[1])
    embed_dim = int(state_dict["conv_first.fc1.weight"].shape[1])
    kwargs = infer_swinir_kwargs(state_dict, in_chans=in_chans, embed_dim=embed_dim, default_size=72)
    heads = int(state_dict["channel_layers_lm.0.attn.temperature"].shape[0])
    if heads != C_NUM_HEADS[0]:
        raise ValueError(f"SCAB with {heads} heads; SCTNet hard-codes {C_NUM_HEADS[0]}")
    kwargs.update(img_range=1.0, upscale=2)
    return kwargs


def filter_state_dict(state_dict: Mapping[str, torch.Tensor], model: SCTNet) -> dict[str, torch.Tensor]:
    """Regenerate the shape-bound buffers (``attn_mask``, ``relative_position_index``) for ``model``.

    Use to strict-load a checkpoint made with another ``img_size``; parameters are untouched.
    """
    return checkpoint_filter_fn(state_dict, model)


class SCTNetArch(Architecture[SCTNet]):
    """spandrel architecture for SCTNet checkpoints (keys unwrapped from ``state_dict``/``module.``)."""

    def __init__(self) -> None:
        super().__init__(
            id="SCTNet",
            detect=KeyCondition.has_all(
                "conv1.weight",
                "conv2.weight",
                "conv3.weight",
                "conv_end.weight",
                "conv_first.fc1.weight",
                "conv_first.fc2.weight",
                "layers.0.residual_group.blocks.0.attn.relative_position_bias_table",
                KeyCondition.has_any("layers.0.conv.weight", "layers.0.conv.0.weight"),
                "channel_layers_lm.0.attn.temperature",
                "channel_layers_lm.0.norm1_x.body.weight",
                "channel_layers_rm.0.attn.q.weight",
                "mlps.0.fc1.weight",
                "upsample.0.weight",
            ),
        )

    def load(self, state_dict: Mapping[str, torch.Tensor]) -> ImageModelDescriptor[SCTNet]:  # type: ignore[override]
        """Build the model from :func:`infer_params` and strict-load ``state_dict``.

        Returns an 18-channel-in (3 stacked frames), 3-channel-out, scale-1
        descriptor requiring multiples of the window size, so the model's own
        uncropped padding never triggers through spandrel's call.

        Raises:
            KeyError / ValueError / RuntimeError: not a loadable SCTNet state dict.
        """
        params = infer_params(state_dict)
        return describe_hdr(
            self, SCTNet(**params), state_dict, params,
            input_channels=params["in_chans"],
        )


SCTNetArch = register(  # type: ignore[misc]  # _base's pattern: the name now holds the instance
    SCTNetArch(),
    ArchInfo(
        task="hdr-merge",
        whole_image=True,
        frames=3,
        input_encoding="hdr-ldr-pair",
        output_range="sigmoid",
        # 16 px = 2 windows of 8: a shifted window reaches ws-1 = 7 px across a
        # seam and the pure-conv halo is 7 px (conv1-3, one 3x3 per GSAB x 4,
        # conv_after_body, the output conv); a multiple of the window size keeps
        # tiles on the same window grid.  The official test uses NON-overlapping
        # 256x256 tiles; the SCAB channel attention normalises over the whole
        # tile, so tiled output never equals whole-image output exactly - use
        # large tiles.
        overlap=16,
        official=Official(
            repo="https://github.com/Zongwei97/SCTNet",
            checkpoints=("none linked; training checkpoints load",),
            layout="{'epoch', 'state_dict' (module.-prefixed), 'optimizer'}",
        ),
        notes=(
            "Tel et al., ICCV 2023. Input per frame cat(LDR**2.2/t, LDR), frames "
            "short/reference/long, BGR as read by OpenCV; output linear HDR in (0,1). "
            "Pads to window_size internally but never crops the padding (official "
            "upscale=2 crop): feed multiples of window_size. Official test: 256x256 tiles."
        ),
    ),
)
