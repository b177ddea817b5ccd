"""RawDenoiseUNet - a small noise-conditioned U-Net denoising packed Bayer RAW.

``restore``'s own architecture (no official upstream): the RAW denoiser of
issue 19, trained by ``data_tools`` on unprocessed sRGB with the
Poisson-Gaussian noise model of :mod:`restore.noise` (variance ``a * x + b``).

Input ``(B, in_planes + sigma_channels, h, w)`` float32: the packed Bayer
planes R, G1, G2, B (``(4, H/2, W/2)`` of the normalised CFA mosaic, 0 = black
level, 1 = white level, see :mod:`restore.models.cfa`) concatenated with the
per-pixel noise sigma ``sqrt(a * max(x, 0) + b)`` computed from the noisy planes
and the image's noise profile (one map per plane for ``sigma_channels=4``, one
from the planes' mean for ``1``; ``data_tools.unprocess.sigma_map``).  Output
``(B, in_planes, h, w)``: the clean planes, predicted as a residual (input planes
+ network), so a network whose last layer (``tail``) is all zero is the identity.
The output is not clamped: denoised raw values may go slightly below 0 (noise
around the black level) or above 1 (near clipping) and are kept, as in the input.

Layout (``depth`` 2x down-samplings; width ``base * 2**level``)::

    head   conv3x3(in+sigma -> base) + LeakyReLU(0.2)
    enc.i  conv3x3(c -> c) + LReLU                 i = 0..depth-1, c = base*2**i
    eres.i.j  blocks[i] x ResBlock(c) (optional: x + conv3x3(LReLU(conv3x3(x))))
    down.i conv2x2 stride 2 (c -> 2c) + LReLU
    mid    2 x (conv3x3(C -> C) + LReLU)            C = base*2**depth
    up.i   conv1x1(2c -> 4c) + PixelShuffle(2)  -> c, + skip enc.i (added)
    dec.i  conv3x3(c -> c) + LReLU
    dres.i.j  blocks[i] x ResBlock(c) (optional)
    tail   conv3x3(base -> in_planes), added to the input planes

Why a U-Net and not a Restormer-style transformer: the denoiser must run at
>= 1 MP/s (raw megapixels) on a 2-core CPU, fp32.  One conv3x3 per level, a
2x2 strided down-sampling, 1x1 + PixelShuffle up-sampling and additive skips
cost 94 GMAC per 1024x1024 packed input (4 MP raw; 1.9 M parameters at
``base=32``); Restormer (``dim=48``, ~141 GMAC per 256x256 by its paper) would
cost ~2.2 TMAC on the same packed input, ~23x more, far below 1 MP/s on 2 cores.
Measured (fp32, 2 threads, 1024x1024 packed = 4 MP raw, random weights; the
input is made channels-last inside ``forward``, mkldnn's fast layout, ~2x)::

    python -c "import time,torch; from restore.models.archs.rawdenoise import RawDenoiseUNet as N; \\
    torch.set_num_threads(2); m=N().eval(); x=torch.rand(1,8,1024,1024); \\
    torch.inference_mode().__enter__(); m(x); t=time.perf_counter(); m(x); \\
    print(4/(time.perf_counter()-t),'MP/s')"

    1.61 - 1.88 MP/s (2026-12-02, 2 of 2 cores, a one-thread training run
    beside it; 0.93 - 1.14 MP/s in one run with more load, load average 3-4)

Receptive field (``depth=3``): 72 packed pixels (:func:`receptive_field`; at most
39 on one side, measured by gradient).  The declared tile context (``ArchInfo.context``,
40 packed px = ceil(72/2) rounded up to the 8-px down-sampling grid,
:func:`tile_context`) is computed around every tile and cropped away, so tiled
and whole-image outputs agree to float rounding; tiles then share only an 8-px
blend band (``overlap``).  A blend-only overlap of 40 px is not exact (the
raised-cosine weights never reach 0 at a tile's edge: 3e-5 off with random
weights).  Other layouts (``depth`` 4, residual ``blocks``) get their own context
from the checkpoint's shapes (``ArchInfo.context_of``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from spandrel import Architecture, ImageModelDescriptor, SizeRequirements, StateDict
from torch import Tensor, nn

from ._base import ArchInfo, SideInput, describe, register

__all__ = ["RawDenoiseUNet", "RawDenoiseArch", "infer_params", "receptive_field", "tile_context"]

NEG_SLOPE = 0.2


def _conv_act(c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k // 2 if stride == 1 else 0)),
                         nn.LeakyReLU(NEG_SLOPE, inplace=True))


class ResBlock(nn.Module):
    """``x + conv3x3(LReLU(conv3x3(x)))`` at ``c`` channels (keys ``body.0``, ``body.2``).  The second conv starts
    at zero (the block is the identity when built), so blocks can be added to trained weights and fine-tuned."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(NEG_SLOPE, inplace=True),
                                  nn.Conv2d(c, c, 3, padding=1))
        nn.init.zeros_(self.body[2].weight)
        nn.init.zeros_(self.body[2].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class RawDenoiseUNet(nn.Module):
    """Noise-conditioned U-Net on packed Bayer planes (module docstring).

    Args:
        in_planes: Packed planes (4 for Bayer R, G1, G2, B).
        base: Width of the full-resolution level.
        depth: Number of 2x down-samplings (input H/W must be multiples of ``2**depth``).
        sigma_channels: Planes of the sigma map appended to the input (4 or 1; 0 = unconditioned).
        blocks: Residual blocks (:class:`ResBlock`) per level ``0..depth-1``, after ``enc.i`` and after
            ``dec.i`` each (missing levels: 0).  ``()`` is the plain one-conv-per-level U-Net.

    Raises:
        ValueError: a size or count out of range.
    """

    def __init__(self, in_planes: int = 4, base: int = 32, depth: int = 3, sigma_channels: int = 4,
                 blocks: Sequence[int] = ()) -> None:
        super().__init__()
        blocks = tuple(int(b) for b in blocks) + (0,) * (depth - len(tuple(blocks)))
        if in_planes < 1 or base < 1 or depth < 1 or sigma_channels < 0 or len(blocks) != depth or min(blocks) < 0:
            raise ValueError(f"RawDenoiseUNet: need in_planes >= 1, base >= 1, depth >= 1, sigma_channels >= 0, "
                             f"blocks: at most depth counts >= 0; got {in_planes}, {base}, {depth}, {sigma_channels}, "
                             f"{blocks}")
        self.hyperparameters: dict[str, Any] = {
            "in_planes": in_planes, "base": base, "depth": depth, "sigma_channels": sigma_channels,
        }
        if any(blocks):
            self.hyperparameters["blocks"] = blocks
        self.in_planes, self.sigma_channels, self.depth, self.blocks = in_planes, sigma_channels, depth, blocks
        widths = [base * 2**i for i in range(depth + 1)]
        self.head = _conv_act(in_planes + sigma_channels, base)
        self.enc = nn.ModuleList(_conv_act(widths[i], widths[i]) for i in range(depth))
        # optional residual blocks after enc.i and after dec.i (level i at widths[i])
        self.eres = nn.ModuleList(nn.ModuleList(ResBlock(widths[i]) for _ in range(blocks[i])) for i in range(depth))
        self.dres = nn.ModuleList(nn.ModuleList(ResBlock(widths[i]) for _ in range(blocks[i])) for i in range(depth))
        self.down = nn.ModuleList(_conv_act(widths[i], widths[i + 1], k=2, stride=2) for i in range(depth))
        self.mid = nn.Sequential(*_conv_act(widths[depth], widths[depth]), *_conv_act(widths[depth], widths[depth]))
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i + 1], 4 * widths[i], 1), nn.PixelShuffle(2)) for i in range(depth))
        self.dec = nn.ModuleList(_conv_act(widths[i], widths[i]) for i in range(depth))
        self.tail = nn.Conv2d(base, in_planes, 3, padding=1)

    @property
    def multiple(self) -> int:
        """What H and W must be multiples of (``2**depth``)."""
        return 2**self.depth

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_planes + sigma_channels, h, w)`` -> ``(B, in_planes, h, w)`` (h, w multiples of ``2**depth``)."""
        c = self.in_planes + self.sigma_channels
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"RawDenoiseUNet expects (B, {c}, h, w) (packed planes + sigma map), "
                             f"got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple or h == 0 or w == 0:
            raise ValueError(f"RawDenoiseUNet: h and w must be positive multiples of {self.multiple}, got {h}x{w}; "
                             f"pad bottom/right and crop the output")
        x = x.contiguous(memory_format=torch.channels_last)  # mkldnn's fast layout: ~2x on CPU
        feat = self.head(x)
        skips = []
        for enc, eres, down in zip(self.enc, self.eres, self.down):
            feat = enc(feat)
            for blk in eres:
                feat = blk(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.mid(feat)
        for i in reversed(range(self.depth)):
            feat = self.dec[i](self.up[i](feat) + skips[i])
            for blk in self.dres[i]:
                feat = blk(feat)
        return x[:, : self.in_planes] + self.tail(feat)


def receptive_field(depth: int = 3, blocks: Sequence[int] = ()) -> int:
    """Receptive field of :class:`RawDenoiseUNet` in packed pixels (the encoder/decoder convs above; each
    residual block adds two conv3x3 on its level's grid, in the encoder and again in the decoder)."""
    blocks = tuple(blocks) + (0,) * (depth - len(tuple(blocks)))
    rf, jump = 3, 1  # head
    for i in range(depth):  # enc.i conv3x3 (+ blocks), down.i conv2x2 stride 2
        rf += 2 * jump * (1 + 2 * blocks[i])
        rf += 1 * jump
        jump *= 2
    rf += 2 * 2 * jump  # mid: two conv3x3
    for i in reversed(range(depth)):  # up: 1x1 (no growth); dec conv3x3 (+ blocks) at the finer grid
        jump //= 2
        rf += 2 * jump * (1 + 2 * blocks[i])
    return rf + 2  # tail


#: Packed pixels neighbouring tiles share and blend over (one down-sampling cell at depth 3); exactness comes
#: from the context (:func:`tile_context`), computed around each tile and cropped away.
BLEND_OVERLAP = 8


def tile_context(depth: int = 3, blocks: Sequence[int] = ()) -> int:
    """Tile context in packed pixels: half of (the receptive field + one ``2**depth`` cell), rounded up to the
    ``2**depth`` grid.  The extra cell covers the phase of the strided down- and pixel-shuffle up-samplings: with
    blocks on level 0 the measured one-sided reach exceeds half the receptive field (43 vs 40 for ``(1, 0, 0)``;
    ``tests/test_raw_denoise.py`` measures the reach by gradient for several layouts)."""
    m = 2**depth
    return int(math.ceil((receptive_field(depth, blocks) + m) / 2 / m) * m)


# --------------------------------------------------------------------------------------
# Detection and hyper-parameters
# --------------------------------------------------------------------------------------

_WB = r"\.(?:weight|bias)"
RAWDENOISE_KEY_PATTERNS = (
    r"head\.0" + _WB,
    r"(?:enc|down|dec)\.\d+\.0" + _WB,
    r"up\.\d+\.0" + _WB,
    r"mid\.[02]" + _WB,
    r"tail" + _WB,
    r"[ed]res\.\d+\.\d+\.body\.[02]" + _WB,
)
_REQUIRED = ("head.0.weight", "enc.0.0.weight", "down.0.0.weight", "mid.0.weight", "mid.2.weight",
             "up.0.0.weight", "dec.0.0.weight", "tail.weight")


def _shape(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return tuple(int(s) for s in sd[key].shape)


def infer_params(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor kwargs from the shapes: ``in_planes`` (tail out), ``base`` (head out),
    ``depth`` (number of ``down.i``), ``sigma_channels`` (head in - in_planes).

    Raises:
        KeyError: a required key is missing.
    """
    base, c_in = _shape(state_dict, "head.0.weight")[:2]
    in_planes = _shape(state_dict, "tail.weight")[0]
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := re.fullmatch(r"down\.(\d+)\.0\.weight", k)))
    p = {"in_planes": in_planes, "base": base, "depth": depth, "sigma_channels": c_in - in_planes}
    blocks = [0] * depth
    for k in state_dict:
        if m := re.fullmatch(r"eres\.(\d+)\.(\d+)\.body\.0\.weight", k):
            blocks[int(m.group(1))] = max(blocks[int(m.group(1))], int(m.group(2)) + 1)
    if any(blocks):
        p["blocks"] = tuple(blocks)
    return p


def _detect(state_dict: StateDict) -> bool:
    if not all(k in state_dict for k in _REQUIRED):
        return False
    rx = re.compile("|".join(f"(?:{p})" for p in RAWDENOISE_KEY_PATTERNS))
    if not all(rx.fullmatch(k) for k in state_dict):
        return False
    try:  # the widths must double level by level, as built
        p = infer_params(state_dict)
        return _shape(state_dict, "mid.0.weight")[0] == p["base"] * 2 ** p["depth"] and p["sigma_channels"] >= 0
    except (KeyError, ValueError, IndexError):
        return False


class RawDenoiseArch(Architecture[RawDenoiseUNet]):
    """spandrel architecture for :class:`RawDenoiseUNet`.

    Detects by its key set alone (``head.0``, ``enc.i.0``, ``down.i.0``, ``mid.0``/``mid.2``,
    ``up.i.0``, ``dec.i.0``, ``tail``: every key must be one of these) with the
    bottleneck width ``base * 2**depth``; no other architecture has ``down.i.0`` and
    ``mid.0`` with nothing else.
    """

    def __init__(self) -> None:
        super().__init__(id="RawDenoiseUNet", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[RawDenoiseUNet]:
        """Build a :class:`RawDenoiseUNet` from ``state_dict`` (strict load) and describe it.

        Raises:
            KeyError / RuntimeError / ValueError: for a state dict that is not RawDenoiseUNet's.
        """
        p = infer_params(state_dict)
        model = RawDenoiseUNet(**p)
        return describe(
            self,
            model,
            state_dict,
            tags=[f"{p['base']}base", f"depth{p['depth']}", f"sigma{p['sigma_channels']}"],
            input_channels=p["in_planes"] + p["sigma_channels"],
            output_channels=p["in_planes"],
            size_requirements=SizeRequirements(multiple_of=2 ** p["depth"]),
        )


def _no_weights(value: Any) -> nn.Module:
    raise ValueError("the sigma map is computed from the image's noise profile, not loaded")


def _sigma_from_image(image: Any, input_channels: int, pixels: Any, options: Mapping[str, Any]) -> nn.Module:
    from ..cfa import sigma_side_module  # torch-only module; imported when a model runs

    return sigma_side_module(image, input_channels)


#: The noise-sigma map side input: from the image's noise profile (``restore.noise.noise_profile_for``: the
#: pipeline's ``develop: {noise: ...}`` or estimated from the RAW file), appended to the packed planes.
SIGMA_MAP = SideInput(
    name="sigma-map",
    option="",
    needed=lambda channels: channels > 4,
    load=_no_weights,
    build=lambda x, side: side(x),
    image_channels=4,
    missing="needs the image's noise profile",
    what="noise profile",
    from_image=_sigma_from_image,
)


RawDenoiseArch = register(  # type: ignore[misc]  # _base's pattern: the name now holds the instance
    RawDenoiseArch(),
    ArchInfo(
        task="raw-denoise",
        input_encoding="cfa-packed",
        output_range="unbounded",
        overlap=BLEND_OVERLAP,
        context=tile_context(3),
        context_of=lambda m: tile_context(m.depth, m.blocks),
        whole_image=False,
        side_inputs=(SIGMA_MAP,),
        # backend: auto times its paths at 512 packed px: there they rank as on the 1024-px tiles of the shipped
        # pipelines (Zen 4, 2 threads: torch 0.77 s, onnxruntime 0.62, openvino 0.60; at 1024 px 3.59 / 2.54 /
        # 2.40 s), while at the default 128 px torch's lower per-call cost ranks it first
        probe_tile=512,
        notes=(
            "restore's own RAW denoiser: packed Bayer planes (R, G1, G2, B; 0 = black, 1 = white) + a per-pixel "
            "noise sigma map from the image's noise profile; output = input planes + net, not clamped (raw values "
            "go slightly below 0 / above 1). Overlap/context in packed pixels (receptive field 72 at depth 3: "
            "context 40 makes tiles exact)."
        ),
    ),
)
