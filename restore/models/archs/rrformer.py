"""RRFormer / DRNet: ultra-high-definition single-image reflection removal.

Paper: Z. Zhang et al., "Benchmarking Ultra-High-Definition Image Reflection
Removal" (arXiv 2308.00265).  Official code:
``Liar-zzy/Benchmarking-Ultra-High-Definition-Single-Image-Reflection-Removal``;
the trained network is ``DRNet`` (``models/arch/default.py``, built by
``models/arch/__init__.py::errnet``) with a SwinIR sub-module from
``models/network_uhderrnet.py``.  The design follows ERRNet (K. Wei et al.,
"Single Image Reflection Removal Exploiting Misaligned Training Data and Network
Enhancements", CVPR 2019): a VGG19 hypercolumn "pre-processing embedding", a
Swin "self-attention feature extraction" stage (SwinIR, J. Liang et al., ICCVW
2021) and pyramid pooling for multi-scale context.

This is an independent re-implementation with the official module tree and key
names, so ``{'icnn': state_dict}`` checkpoints written by ``ERRNetModel.save``
load with ``strict=True`` (use :func:`unwrap_checkpoint`).

Facts that matter for inference:

* **The Swin block is a no-op in the released code.**  Its ``forward`` pads the
  input, computes ``conv_after_body(forward_features(x)) + x`` and then returns
  the (cropped) *input*.  DRNet's output therefore never depends on any
  ``swinir_block.*`` weight.  :class:`SwinIR` keeps every key (including the
  persistent ``relative_position_index`` and ``attn_mask`` buffers and the
  unused ``conv_last``) so checkpoints load strictly, returns its input from
  :meth:`SwinIR.forward` without computing the dead branch, and exposes that
  branch through :meth:`SwinIR.forward_features` / :meth:`SwinIR.forward_residual`.
  spandrel's own ``SwinIR`` cannot be reused: it always owns a ``conv_first``
  layer that this variant removed, so its state-dict layout differs.
* Input: ``cat([rgb, hypercolumn])`` with 3 + 1472 channels - see
  :func:`build_hypercolumn_input` (ImageNet VGG19 ``features``; the VGG weights
  are not part of the checkpoint and are never downloaded here).
* Every ``ConvLayer`` ends in one shared ``nn.ReLU(inplace=True)``, the output
  layer included (output >= 0; the official test clips to [0, 1]).
* H and W must be even (stride-2 conv / transposed conv) and >= 32 with the
  pyramid pooling (``AvgPool2d(32)``).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor, SizeRequirements, StateDict
from spandrel.util import KeyCondition, get_seq_len
from torch import Tensor, nn

from restore.models.archs._base import ArchInfo, Official, SideInput, describe, register
from restore.models.archs._swin import SwinIRBody, pad_to_window

__all__ = [
    "SwinIR",
    "DRNet",
    "PyramidPooling",
    "ConvLayer",
    "errnet",
    "RRFormerArch",
    "ARCH",
    "infer_params",
    "unwrap_checkpoint",
    "build_hypercolumn_input",
    "MissingVGG19Error",
    "HYPERCOLUMN_TAPS",
    "HYPERCOLUMN_CHANNELS",
    "DRNET_SWINIR_KWARGS",
    "OFFICIAL_DEFAULT_KWARGS",
]

#: The SwinIR call hard-coded in ``DRNet.__init__`` (other arguments: SwinIR defaults).
DRNET_SWINIR_KWARGS: dict[str, Any] = {
    "img_size": 256,
    "patch_size": 4,
    "in_chans": 3,
    "embed_dim": 240,
    "depths": [6, 6, 6, 6, 6],
    "num_heads": [6, 6, 6, 6, 6],
    "window_size": 8,
}

#: ``errnet(3 + 1472, 3)`` as used by both README commands (``--hyper``).
OFFICIAL_DEFAULT_KWARGS: dict[str, Any] = {
    "in_channels": 1475,
    "out_channels": 3,
    "n_feats": 256,
    "n_resblocks": 13,
    "norm": None,
    "res_scale": 0.1,
    "se_reduction": 8,
    "bottom_kernel_size": 1,
    "pyramid": True,
}

#: torchvision ``vgg19().features`` indices tapped for the hypercolumn (relu1_1 .. relu5_1).
HYPERCOLUMN_TAPS: tuple[int, ...] = (1, 6, 11, 20, 29)
#: Channels the hypercolumn adds after the RGB image (64 + 128 + 256 + 512 + 512).
HYPERCOLUMN_CHANNELS = 1472


# --------------------------------------------------------------------------------------
# SwinIR sub-module (network_uhderrnet variant: no conv_first, identity forward).
# The Swin pieces (SwinIRBody: embedding, RSTB stages, norm, conv_after_body, init;
# window attention, masks) are SwinIR's, shared with HDR-Transformer / SCTNet in
# restore.models.archs._swin: same state-dict keys and the same numerics.
# --------------------------------------------------------------------------------------


class SwinIR(SwinIRBody):
    """The SwinIR variant of ``models/network_uhderrnet.py`` used as ``DRNet.swinir_block``.

    Differences from SwinIR proper (and from ``spandrel.architectures.SwinIR``):
    no ``conv_first`` (the feature map enters the Swin body directly, so its
    channel count must equal ``embed_dim``), and the released ``forward``
    returns its input - the residual branch is computed and discarded.

    ``forward``: (B, embed_dim, H, W) float -> the same tensor (identity; the
    dead branch is not evaluated).  :meth:`forward_features` and
    :meth:`forward_residual` evaluate it for inspection.  ``conv_last``
    (embed_dim -> in_chans) is created for strict loading but never used.

    Raises:
        ValueError: for an ``upsampler`` other than ``''`` (DRNet never uses one).
    """

    def __init__(
        self, img_size: int = 256, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 180,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6), num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 8, mlp_ratio: float = 2.0, qkv_bias: bool = True, qk_scale: float | None = None,
        drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm, ape: bool = False, patch_norm: bool = True,
        use_checkpoint: bool = False, upscale: int = 1, img_range: float = 1.0, upsampler: str = "",
        resi_connection: str = "1conv",
    ) -> None:
        super().__init__()
        if upsampler != "":
            raise ValueError(f"upsampler {upsampler!r} is not supported (DRNet's SwinIR uses '')")
        if len(depths) != len(num_heads):
            raise ValueError("depths and num_heads must have the same length")
        self.img_range = img_range
        self.upscale = upscale
        self.upsampler = upsampler
        self.window_size = window_size
        total = sum(depths)
        self._build_body(
            img_size, patch_size, embed_dim, list(depths), list(num_heads), window_size, mlp_ratio, qkv_bias, qk_scale,
            drop_rate, attn_drop_rate, drop_path_rate, norm_layer, ape, patch_norm, use_checkpoint, resi_connection,
            dpr=[drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)],
        )
        self._build_tail(norm_layer, resi_connection)
        self.conv_last = nn.Conv2d(embed_dim, in_chans, 3, 1, 1)
        self.apply(self._init_weights)

    def check_image_size(self, x: Tensor) -> Tensor:
        """Reflect-pad (B, C, H, W) on the bottom/right to a multiple of ``window_size``."""
        return pad_to_window(x, self.window_size)

    def forward_residual(self, x: Tensor) -> Tensor:
        """The branch the released forward computes and discards:
        ``conv_after_body(forward_features(pad(x))) + pad(x)``, (B, embed_dim, H', W') padded size."""
        x = self.check_image_size(x)
        return self.conv_after_body(self.forward_features(x)) + x

    def forward(self, x: Tensor) -> Tensor:
        """Identity, exactly as released (pad then crop back to (H, W)); (B, C, H, W) -> (B, C, H, W)."""
        return x


# --------------------------------------------------------------------------------------
# DRNet
# --------------------------------------------------------------------------------------


class ConvLayer(nn.Sequential):
    """``conv2d`` [+ ``norm``] [+ ``act``] with 'same' padding unless ``padding`` is given (official semantics:
    ``padding or dilation * (k - 1) // 2``)."""

    def __init__(self, conv: type[nn.Module], in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int | None = None, dilation: int = 1, norm: Callable[[int], nn.Module] | None = None,
                 act: nn.Module | None = None) -> None:
        super().__init__()
        padding = padding or dilation * (kernel_size - 1) // 2
        self.add_module("conv2d", conv(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation))
        if norm is not None:
            self.add_module("norm", norm(out_channels))
        if act is not None:
            self.add_module("act", act)


class PyramidPooling(nn.Module):
    """Pyramid pooling: for each scale ``AvgPool(scale) -> 1x1 conv (no bias) -> LeakyReLU(0.2)``, nearest
    upsampling back, concatenation ``[priors..., feats]``, ``bottleneck`` 1x1 conv + LeakyReLU(0.2).

    Shapes: (B, in_channels, H, W) with H, W >= max(scales) -> (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, scales: Sequence[int] = (4, 8, 16, 32),
                 ct_channels: int = 1) -> None:
        super().__init__()
        self.stages = nn.ModuleList([
            nn.Sequential(
                nn.AvgPool2d(kernel_size=(s, s)),
                nn.Conv2d(in_channels, ct_channels, kernel_size=1, bias=False),
                nn.LeakyReLU(0.2, inplace=True),
            )
            for s in scales
        ])
        self.bottleneck = nn.Conv2d(in_channels + len(scales) * ct_channels, out_channels, kernel_size=1, stride=1)
        self.relu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, feats: Tensor) -> Tensor:
        h, w = feats.shape[2], feats.shape[3]
        priors = [F.interpolate(stage(feats), size=(h, w), mode="nearest") for stage in self.stages]
        return self.relu(self.bottleneck(torch.cat(priors + [feats], dim=1)))


class DRNet(nn.Module):
    """RRFormer's network (``DRNet`` of ``models/arch/default.py``).

    ``conv1`` (k=``bottom_kernel_size``) -> ``conv2`` (3x3) -> ``conv3`` (3x3, stride 2, -> Swin width 240)
    -> ``swinir_block`` (identity, see module docstring) -> ``deconv1`` (ConvTranspose 4x4, stride 2)
    -> ``deconv2`` (3x3) -> [``pyramid_module``] -> ``deconv3`` (1x1 -> ``out_channels``); every ConvLayer ends
    in the same shared ``ReLU(inplace=True)``.

    Args (official names; ``n_resblocks``, ``se_reduction`` and ``res_scale`` are accepted but unused, as in
    the released code whose residual blocks are commented out):
        in_channels: 3 + 1472 for the official ``--hyper`` models (see :func:`build_hypercolumn_input`).
        out_channels: 3 (transmission layer).
        n_feats: width (official 256).
        norm: ``None`` (official ``errnet``) or a norm class such as ``nn.BatchNorm2d`` (constructor default).
        bottom_kernel_size: ``conv1`` kernel (official 1).
        pyramid: add the pyramid pooling module (official True).
        swinir_kwargs: overrides for the SwinIR call DRNet hard-codes (:data:`DRNET_SWINIR_KWARGS`); the
            ``conv3`` / ``deconv1`` width follows ``embed_dim`` (240).  Not an official argument: needed to
            build reduced test models.

    Input: float (B, in_channels, H, W), H and W even (and >= 32 with ``pyramid``).
    Output: (B, out_channels, H, W), >= 0 (final ReLU); the official test clips to [0, 1].

    Raises:
        ValueError: in :meth:`forward` for a wrong rank / channel count, odd H or W, or H, W < 32 with pyramid.
    """

    def __init__(
        self, in_channels: int, out_channels: int, n_feats: int, n_resblocks: int,
        norm: Callable[[int], nn.Module] | None = nn.BatchNorm2d, se_reduction: int | None = None,
        res_scale: float = 1, bottom_kernel_size: int = 3, pyramid: bool = False,
        swinir_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        sw = copy.deepcopy(DRNET_SWINIR_KWARGS)
        sw.update(swinir_kwargs or {})
        width = int(sw["embed_dim"])
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_resblocks = n_resblocks
        self.se_reduction = se_reduction
        self.res_scale = res_scale
        self.swinir_kwargs = sw

        conv, deconv = nn.Conv2d, nn.ConvTranspose2d
        act = nn.ReLU(True)  # one module shared by every layer, as upstream
        self.pyramid_module: PyramidPooling | None = None
        self.conv1 = ConvLayer(conv, in_channels, n_feats, kernel_size=bottom_kernel_size, stride=1, norm=None, act=act)
        self.conv2 = ConvLayer(conv, n_feats, n_feats, kernel_size=3, stride=1, norm=norm, act=act)
        self.conv3 = ConvLayer(conv, n_feats, width, kernel_size=3, stride=2, norm=norm, act=act)
        self.swinir_block = SwinIR(**sw)
        self.deconv1 = ConvLayer(deconv, width, n_feats, kernel_size=4, stride=2, padding=1, norm=norm, act=act)
        self.deconv2 = ConvLayer(conv, n_feats, n_feats, kernel_size=3, stride=1, norm=norm, act=act)
        if pyramid:
            self.pyramid_module = PyramidPooling(n_feats, n_feats, scales=(4, 8, 16, 32), ct_channels=n_feats // 4)
        self.deconv3 = ConvLayer(conv, n_feats, out_channels, kernel_size=1, stride=1, norm=None, act=act)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W); see the class docstring."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[2], x.shape[3]
        if h % 2 or w % 2:
            raise ValueError(f"DRNet needs even H and W (stride-2 conv + transposed conv); got {h}x{w}")
        if self.pyramid_module is not None and min(h, w) < 32:
            raise ValueError(f"DRNet with pyramid pooling needs H, W >= 32; got {h}x{w}")
        x = self.conv3(self.conv2(self.conv1(x)))
        x = self.swinir_block(x)
        x = self.deconv2(self.deconv1(x))
        if self.pyramid_module is not None:
            x = self.pyramid_module(x)
        return self.deconv3(x)


def errnet(in_channels: int = 1475, out_channels: int = 3, **kwargs: Any) -> DRNet:
    """The official factory ``models/arch/__init__.py::errnet``: DRNet(in, out, 256, 13, norm=None,
    res_scale=0.1, se_reduction=8, bottom_kernel_size=1, pyramid=True)."""
    kw = dict(OFFICIAL_DEFAULT_KWARGS, in_channels=in_channels, out_channels=out_channels)
    kw.update(kwargs)
    return DRNet(**kw)


# --------------------------------------------------------------------------------------
# checkpoints, hypercolumn input
# --------------------------------------------------------------------------------------


def unwrap_checkpoint(obj: Any) -> dict[str, Tensor]:
    """Return the DRNet state dict inside a checkpoint object.

    Accepts a plain state dict, the official ``{'icnn': sd, 'opt_g': ..., 'epoch': ..., ...}`` written by
    ``ERRNetModel.save``, or the usual ``params`` / ``params_ema`` / ``state_dict`` / ``model`` wrappers;
    strips a common ``module.`` prefix.

    Raises:
        TypeError: if no mapping of tensors can be found.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a checkpoint dict, got {type(obj).__name__}")
    for key in ("icnn", "params_ema", "params", "state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
            obj = inner
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not sd:
        raise TypeError("checkpoint holds no tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


class MissingVGG19Error(RuntimeError):
    """Raised when the hypercolumn is requested without VGG19 weights."""


_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _vgg19_features() -> nn.Sequential:
    """torchvision's ``vgg19().features`` layout (37 modules), randomly initialised."""
    layers: list[nn.Module] = []
    c = 3
    for v in _VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c = int(v)
    return nn.Sequential(*layers)


def _resolve_vgg(vgg: Any) -> nn.Module:
    if vgg is None:
        raise MissingVGG19Error(
            "DRNet/RRFormer needs a VGG19 hypercolumn: pass torchvision's ImageNet-pretrained vgg19 "
            "`features` module (or the full VGG, or a path to / dict of its state dict). The VGG weights "
            "are not stored in DRNet checkpoints and restore never downloads them."
        )
    if isinstance(vgg, nn.Module):
        feats = getattr(vgg, "features", vgg)
        if not isinstance(feats, nn.Sequential) or len(feats) <= max(HYPERCOLUMN_TAPS):
            raise ValueError("vgg must be torchvision's VGG19 (or its `features` Sequential)")
        return feats
    if isinstance(vgg, (str, os.PathLike)):
        if not os.path.isfile(vgg):
            raise MissingVGG19Error(f"VGG19 weights not found: {os.fspath(vgg)}")
        if os.fspath(vgg).endswith(".safetensors"):
            from safetensors.torch import load_file

            sd: Mapping[str, Tensor] = load_file(os.fspath(vgg))
        else:
            sd = torch.load(vgg, map_location="cpu", weights_only=True)
    elif isinstance(vgg, Mapping):
        sd = vgg
    else:
        raise TypeError(f"unsupported vgg argument of type {type(vgg).__name__}")
    if any(k.startswith("features.") for k in sd):
        sd = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    feats = _vgg19_features()
    feats.load_state_dict(sd, strict=True)
    return feats.eval()


def build_hypercolumn_input(image: Tensor, vgg: nn.Module | str | os.PathLike | Mapping[str, Tensor] | None) -> Tensor:
    """DRNet input ``cat([image, hypercolumn])`` as in the official ``ERRNetModel.forward`` (``--hyper``).

    The hypercolumn is the output of torchvision VGG19 ``features`` after indices 1, 6, 11, 20, 29
    (relu1_1 .. relu5_1: 64+128+256+512+512 = 1472 channels), each resized to (H, W) with bilinear
    interpolation (``align_corners=False``).  VGG is fed the raw [0, 1] image, without ImageNet
    normalisation (as upstream).

    Args:
        image: (B, 3, H, W) float sRGB in [0, 1].
        vgg: the ImageNet-pretrained VGG19 - a ``features`` Sequential, a full torchvision VGG19, a
            state dict (``features.N.*`` or ``N.*`` keys) or a path to one (``.pth``/``.safetensors``).
            The module must already be on ``image``'s device/dtype.

    Returns:
        (B, 3 + 1472, H, W) tensor of ``image``'s dtype; computed under ``torch.no_grad()``.

    Raises:
        MissingVGG19Error: ``vgg`` is None or a path that does not exist (no download is attempted).
        ValueError: ``image`` is not (B, 3, H, W) or ``vgg`` is not VGG19-shaped.
        TypeError: unsupported ``vgg`` argument.
    """
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an RGB batch (B, 3, H, W), got {tuple(image.shape)}")
    feats = _resolve_vgg(vgg)
    if isinstance(vgg, (str, os.PathLike, Mapping)):
        feats = feats.to(device=image.device, dtype=image.dtype)
    h, w = image.shape[2], image.shape[3]
    taps: list[Tensor] = []
    with torch.no_grad():
        x = image
        for i in range(max(HYPERCOLUMN_TAPS) + 1):
            x = feats[i](x)
            if i in HYPERCOLUMN_TAPS:
                taps.append(F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False))
    out = torch.cat([image] + taps, dim=1)
    if out.shape[1] != 3 + HYPERCOLUMN_CHANNELS:
        raise ValueError(f"vgg produced {out.shape[1] - 3} hypercolumn channels, expected {HYPERCOLUMN_CHANNELS}")
    return out


# --------------------------------------------------------------------------------------
# state-dict inference and spandrel architecture
# --------------------------------------------------------------------------------------

_SW = "swinir_block."


def _infer_swinir(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    kw: dict[str, Any] = copy.deepcopy(DRNET_SWINIR_KWARGS)
    embed = int(sd[f"{_SW}norm.weight"].shape[0])
    kw["embed_dim"] = embed
    kw["in_chans"] = int(sd[f"{_SW}conv_last.weight"].shape[0])
    n_layers = get_seq_len(sd, f"{_SW}layers")
    depths, heads = [], []
    for i in range(n_layers):
        depths.append(get_seq_len(sd, f"{_SW}layers.{i}.residual_group.blocks"))
        heads.append(int(sd[f"{_SW}layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"].shape[1]))
    kw["depths"], kw["num_heads"] = depths, heads
    b0 = f"{_SW}layers.0.residual_group.blocks.0."
    if n_layers and depths[0]:
        ps = int(kw["patch_size"])  # not stored; the hard-coded 4 is assumed
        window = math.isqrt(int(sd[f"{b0}attn.relative_position_index"].shape[0]))
        kw["window_size"] = window
        kw["mlp_ratio"] = float(sd[f"{b0}mlp.fc1.weight"].shape[0]) / embed
        kw["qkv_bias"] = f"{b0}attn.qkv.bias" in sd
        masks = [k for k in sd if k.startswith(f"{_SW}layers.") and k.endswith(".attn_mask")]
        if masks:
            # (nW, ws*ws, ws*ws) mask of the (square) patch grid the model was built for
            res = math.isqrt(int(sd[masks[0]].shape[0])) * window
            kw["img_size"] = res * ps
        elif max(depths) >= 2 or int(kw["img_size"]) // ps <= window:
            # shifted blocks without masks: the window was clipped to the whole patch grid
            kw["img_size"] = window * ps
    if f"{_SW}absolute_pos_embed" in sd:
        kw["ape"] = True
        side = math.isqrt(int(sd[f"{_SW}absolute_pos_embed"].shape[1]))
        kw["img_size"] = side * int(kw["patch_size"])
    if f"{_SW}patch_embed.norm.weight" not in sd:
        kw["patch_norm"] = False
    if f"{_SW}conv_after_body.weight" not in sd:
        kw["resi_connection"] = "3conv"
    return kw


def infer_params(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """Constructor kwargs of :class:`DRNet` (incl. ``swinir_kwargs``) recovered from a state dict.

    From shapes: ``in_channels`` / ``n_feats`` / ``bottom_kernel_size`` (``conv1.conv2d.weight``),
    ``out_channels`` (``deconv3``), ``pyramid`` (``pyramid_module.*`` present), ``norm``
    (``conv2.norm.*`` present -> ``nn.BatchNorm2d``); SwinIR ``embed_dim`` (``norm.weight``), ``in_chans``
    (``conv_last``), ``depths`` / ``num_heads`` (block count, bias-table width), ``window_size``
    (``relative_position_index``), ``img_size`` (``attn_mask`` window count x window x patch size 4),
    ``mlp_ratio``.  Not recoverable and set to the official ``errnet`` values: ``n_resblocks`` 13,
    ``res_scale`` 0.1, ``se_reduction`` 8 (all unused); SwinIR ``patch_size`` 4 and, without shifted
    blocks, ``img_size`` 256 / ``window_size`` 8 (none of these affect the output).  Works on ``meta``
    tensors.

    Raises:
        ValueError: if the state dict is not a DRNet one.
    """
    sd = unwrap_checkpoint(state_dict)
    for k in ("conv1.conv2d.weight", "conv3.conv2d.weight", "deconv1.conv2d.weight", "deconv3.conv2d.weight",
              f"{_SW}norm.weight", f"{_SW}conv_last.weight"):
        if k not in sd:
            raise ValueError(f"not a DRNet state dict (missing {k!r})")
    w1 = sd["conv1.conv2d.weight"]
    kw: dict[str, Any] = dict(OFFICIAL_DEFAULT_KWARGS)
    kw["in_channels"] = int(w1.shape[1])
    kw["n_feats"] = int(w1.shape[0])
    kw["bottom_kernel_size"] = int(w1.shape[2])
    kw["out_channels"] = int(sd["deconv3.conv2d.weight"].shape[0])
    kw["pyramid"] = "pyramid_module.bottleneck.weight" in sd
    kw["norm"] = nn.BatchNorm2d if "conv2.norm.weight" in sd or "conv2.norm.running_mean" in sd else None
    kw["swinir_kwargs"] = _infer_swinir(sd)
    if int(sd["conv3.conv2d.weight"].shape[0]) != kw["swinir_kwargs"]["embed_dim"]:
        raise ValueError("conv3 width does not match the SwinIR embed_dim")
    return kw


class RRFormerArch(Architecture[DRNet]):
    """spandrel architecture for DRNet (RRFormer); accepts the ``{'icnn': sd, ...}`` checkpoint wrapper."""

    _keys = KeyCondition.has_all(
        "conv1.conv2d.weight",
        "conv2.conv2d.weight",
        "conv3.conv2d.weight",
        "deconv1.conv2d.weight",
        "deconv2.conv2d.weight",
        "deconv3.conv2d.weight",
        "swinir_block.norm.weight",
        "swinir_block.conv_last.weight",
    )

    def __init__(self) -> None:
        super().__init__(id="RRFormer", name="RRFormer (DRNet)", detect=self._detect_sd)

    @classmethod
    def _detect_sd(cls, state_dict: StateDict) -> bool:
        try:
            sd = unwrap_checkpoint(state_dict)
        except TypeError:
            return False
        return cls._keys(sd)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[DRNet]:
        """Infer (:func:`infer_params`), build, strict-load; raises ValueError/RuntimeError on mismatch."""
        sd = unwrap_checkpoint(state_dict)
        kw = infer_params(sd)
        return describe(
            self,
            DRNet(**kw),
            sd,
            tags=[f"{kw['n_feats']}nf", f"{kw['in_channels']}in", "pyramid" if kw["pyramid"] else "no-pyramid"],
            input_channels=kw["in_channels"],
            output_channels=kw["out_channels"],
            # Even sizes for the stride-2 conv / transposed conv; >= 32 for AvgPool2d(32).  The pool
            # kernels floor any size >= 32 exactly as the official whole-image test does, so padding to
            # a multiple of 32 is not needed (and would change results).
            size_requirements=SizeRequirements(minimum=32 if kw["pyramid"] else 2, multiple_of=2),
        )


#: The registered architecture instance.
ARCH = register(
    RRFormerArch(),
    ArchInfo(
        task="reflection",
        whole_image=True,
        input_encoding="srgb",
        output_range="clamped",
        # Local receptive field is a few pixels (conv3 s2 / deconv1); the widest context is the
        # pyramid's 32x32 average-pool cell, so one coarsest cell on each side. (The official test
        # runs the whole 4K image; tiles change the pooled statistics slightly.)
        overlap=32,
        side_inputs=(
            SideInput(
                name="vgg19-hypercolumn",
                option="vgg19",
                needed=lambda input_channels: input_channels != 3,  # DRNet trained without --hyper takes plain RGB
                load=lambda path: _resolve_vgg(path),
                build=lambda image, vgg: build_hypercolumn_input(image, vgg),
                image_channels=3,
                missing=(
                    "takes a VGG19 hypercolumn: set `vgg19:` in the model step to the path of "
                    "torchvision's ImageNet VGG19 weights (.pth/.safetensors); restore never downloads them"
                ),
                what="VGG19 weights",
            ),
        ),
        official=Official(
            repo="https://github.com/Liar-zzy/Benchmarking-Ultra-High-Definition-Single-Image-Reflection-Removal",
            checkpoints=("none released; training checkpoints errnet_*.pt load (key 'icnn')",),
            layout="{'icnn': state_dict, 'opt_g', 'epoch', 'iterations'}",
        ),
        notes=(
            "Input is RGB + 1472-channel VGG19 hypercolumn (build_hypercolumn_input; ImageNet VGG19 "
            "weights must be supplied, they are not in the checkpoint). The Swin block is an identity "
            "in the released code."
        ),
    ),
)


# --------------------------------------------------------------------------------------
# the Swin sub-module on its own (checkpoints or fixtures of DRNet's `swinir_block`)
# --------------------------------------------------------------------------------------

_SWIN_KEYS = KeyCondition.has_all(
    "norm.weight",
    "conv_last.weight",
    "layers.0.residual_group.blocks.0.attn.relative_position_bias_table",
    "layers.0.residual_group.blocks.0.attn.relative_position_index",
    KeyCondition.has_any("conv_after_body.weight", "conv_after_body.4.weight"),
)


class RRFormerSwinIRArch(Architecture[SwinIR]):
    """DRNet's SwinIR sub-module as a standalone state dict (no ``conv_first``, unlike spandrel's SwinIR).

    The module maps DRNet's conv3 features ``(B, embed_dim, H, W)`` to themselves (the released
    forward is an identity); :meth:`SwinIR.forward_features` / :meth:`SwinIR.forward_residual`
    evaluate the dead branch for inspection.
    """

    def __init__(self) -> None:
        super().__init__(
            id="RRFormerSwinIR",
            name="RRFormer Swin block",
            detect=lambda sd: _SWIN_KEYS(sd) and "conv_first.weight" not in sd and "upsample.0.weight" not in sd,
        )

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[SwinIR]:
        kw = _infer_swinir({_SW + k: v for k, v in state_dict.items()})
        return describe(
            self, SwinIR(**kw), state_dict, tags=[f"{kw['embed_dim']}dim"],
            input_channels=kw["embed_dim"], output_channels=kw["embed_dim"],
            size_requirements=SizeRequirements(),
        )


SWIN_ARCH = register(
    RRFormerSwinIRArch(),
    ArchInfo(
        task="reflection-submodule",
        input_encoding="linear",
        output_range="unbounded",
        overlap=0,
        notes="DRNet's internal Swin block on its own (an identity in the released code); for inspection, not a pipeline stage.",
    ),
    before=("SwinIR",),
)
