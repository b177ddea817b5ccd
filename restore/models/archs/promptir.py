"""PromptIR - prompt-guided all-in-one blind image restoration, built on Restormer.

Potlapalli, Zamir, Khan, Khan, "PromptIR: Prompting for All-in-One Blind Image
Restoration", NeurIPS 2023 (official code: va1shn9v/PromptIR, ``net/model.py``).
Independent implementation with the official class names, constructor keywords,
defaults and state-dict keys, so the released ``ckpt/model.ckpt`` (one model for
denoising, deraining and dehazing) loads with ``strict=True``.

The network is Restormer's 4-level U-Net (its :class:`~.restormer.TransformerBlock`,
:class:`~.restormer.OverlapPatchEmbed`, :class:`~.restormer.Downsample` and
:class:`~.restormer.Upsample`, imported from :mod:`.restormer`) with a prompt block
at each of the three decoder levels: :class:`PromptGenBlock` pools the features over
the WHOLE image, mixes ``prompt_len`` learned prompt tensors with softmax weights,
resizes the mix to the feature map and a 3x3 conv follows; the prompt is
concatenated to the features, passed through one transformer block
(``noise_level*``) and a 1x1 conv (``reduce_noise_level*``).

Peculiarities kept from the official code:

* the prompt widths (64, 128, 320), prompt size (64, 32, 16 px) and several channel
  counts are literals that fit ``dim=48`` only; here they are keyword-only
  parameters with the official values as defaults (``prompt_dims``, ``prompt_len``,
  ``prompt_sizes``, ``chnl_reduce_dims``) and inferred from the weights;
* ``chnl_reduce1..3`` and ``reduce_noise_channel_1..3`` are registered (they are in
  every checkpoint) but never used by ``forward``;
* the class default is ``decoder=False``, yet without the decoder prompts the
  network cannot run (``up4_3`` expects ``4*dim`` channels, the latent has
  ``8*dim``): the official train/test/demo scripts and the released checkpoint use
  ``decoder=True``;
* the three ``noise_level*`` blocks all use ``heads[2]``;
* the released checkpoint is a PyTorch Lightning file whose ``state_dict`` keys
  carry the ``net.`` prefix of the Lightning module; :class:`PromptIRArch` accepts
  and strips it (spandrel's canonicalisation does not).

Tensors are ``(B, C, H, W)`` float (float32 reference); images sRGB in ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from spandrel import Architecture, ImageModelDescriptor, SizeRequirements, StateDict
from spandrel.util import KeyCondition
from torch import Tensor, nn

from ._base import ArchInfo, Official, describe, register
from .restormer import (
    RESTORMER_FFN_FACTORS,
    UNET_MULTIPLE,
    Downsample,
    OverlapPatchEmbed,
    TransformerBlock,
    Upsample,
    blocks_tag,
    check_input,
    count_blocks,
    infer_ffn_expansion_factor,
    infer_layernorm_type,
    keys_match,
)

__all__ = [
    "PromptGenBlock",
    "PromptIR",
    "PromptIRArch",
    "infer_params",
    "strip_lightning_prefix",
    "LIGHTNING_PREFIX",
]

LIGHTNING_PREFIX = "net."
"""Prefix of every key in the official Lightning checkpoint (``PromptIRModel.net``)."""


class PromptGenBlock(nn.Module):
    """PromptIR's prompt generation block (official ``PromptGenBlock``).

    ``w = softmax(linear_layer(mean_HW(x)))`` over the ``prompt_len`` prompts;
    ``prompt = sum_l w_l * prompt_param[0, l]`` (``(B, prompt_dim, size, size)``),
    bilinearly resized to ``(H, W)`` (``align_corners=False``), then ``conv3x3``.
    The pooling is over the whole feature map, so the output depends on the whole
    input image.

    Args:
        prompt_dim: Channels of the prompts (and of the output).
        prompt_len: Number of learned prompts.
        prompt_size: Spatial size of the learned prompts (square).
        lin_dim: Channels of the input features.

    State-dict keys: ``prompt_param`` ``(1, prompt_len, prompt_dim, prompt_size,
    prompt_size)``, ``linear_layer.weight`` ``(prompt_len, lin_dim)``,
    ``linear_layer.bias`` ``(prompt_len,)``, ``conv3x3.weight`` (no bias).

    Shapes: ``(B, lin_dim, H, W) -> (B, prompt_dim, H, W)``, same float dtype.
    """

    def __init__(self, prompt_dim: int = 128, prompt_len: int = 5, prompt_size: int = 96, lin_dim: int = 192) -> None:
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_len, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        weights = F.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)  # (B, prompt_len)
        # (B, L, 1, 1, 1) * (1, L, C, S, S) summed over L: the official product and sum
        prompt = (weights[:, :, None, None, None] * self.prompt_param).sum(dim=1)
        prompt = F.interpolate(prompt, (h, w), mode="bilinear", align_corners=False)
        return self.conv3x3(prompt)


def _triple(values: Sequence[int], name: str) -> list[int]:
    out = [int(v) for v in values]
    if len(out) != 3 or any(v < 1 for v in out):
        raise ValueError(f"{name} must be three positive integers, got {list(values)}")
    return out


def _quad(values: Sequence[int], name: str) -> list[int]:
    out = [int(v) for v in values]
    if len(out) != 4 or any(v < 0 for v in out):
        raise ValueError(f"{name} must be four non-negative integers, got {list(values)}")
    return out


class PromptIR(nn.Module):
    """PromptIR (Potlapalli et al., NeurIPS 2023), official ``net.model.PromptIR``.

    Args:
        inp_channels: Input channels (3: RGB).
        out_channels: Output channels; must equal ``inp_channels`` (global residual).
        dim: Width of level 1 (levels: dim, 2dim, 4dim, 8dim).
        num_blocks: Transformer blocks of encoder levels 1-3 and the latent (decoder
            levels mirror them).
        num_refinement_blocks: Blocks of the final ``refinement`` stage (width 2*dim).
        heads: Attention heads per level; the ``noise_level*`` blocks use ``heads[2]``.
        ffn_expansion_factor: GDFN hidden width ``int(width * factor)``.
        bias: Bias on the block / reduction / output convolutions (never on
            ``patch_embed``, as in the official code).
        LayerNorm_type: ``'WithBias'`` or ``'BiasFree'``.
        decoder: Registers the decoder prompts ``prompt1..3``.  The official default
            is False, but such a network cannot run (see :meth:`forward`); the
            released model uses True.
        prompt_dims: Channels of ``prompt1..3`` (official literals 64, 128, 320).
        prompt_len: Prompts per block (official 5).
        prompt_sizes: Spatial size of the prompts of ``prompt1..3`` (official 64, 32, 16).
        chnl_reduce_dims: Output channels of the unused ``chnl_reduce1..3``
            (``prompt_dims[i] -> chnl_reduce_dims[i]``; official 64, 128, 256), which
            also size the unused ``reduce_noise_channel_1..3``.

    Forward:
        ``inp_img`` ``(B, inp_channels, H, W)`` float, sRGB values in [0, 1]; H and W
        multiples of 8 (the official demo reflect-pads to 8).  ``noise_emb`` is
        accepted and ignored, as in the official code.  Returns
        ``(B, out_channels, H, W)``, same dtype: ``output(...) + inp_img``, not
        clamped (the official test clamps to [0, 1] when scoring and saving).

    Raises:
        ValueError: at construction for inconsistent sizes (a width not divisible by
            its heads, list lengths, ``inp_channels != out_channels``); in ``forward``
            for a wrong input shape or a model built with ``decoder=False``.
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
        decoder: bool = False,
        *,
        prompt_dims: Sequence[int] = (64, 128, 320),
        prompt_len: int = 5,
        prompt_sizes: Sequence[int] = (64, 32, 16),
        chnl_reduce_dims: Sequence[int] = (64, 128, 256),
    ) -> None:
        super().__init__()
        nb, hd = _quad(num_blocks, "num_blocks"), _quad(heads, "heads")
        pd, ps = _triple(prompt_dims, "prompt_dims"), _triple(prompt_sizes, "prompt_sizes")
        cr = _triple(chnl_reduce_dims, "chnl_reduce_dims")
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 2, got {dim}")
        if prompt_len < 1:
            raise ValueError(f"prompt_len must be >= 1, got {prompt_len}")
        if inp_channels != out_channels:
            raise ValueError(f"the global residual needs inp_channels == out_channels (got {inp_channels}, {out_channels})")
        self.hyperparameters: dict[str, Any] = {
            "inp_channels": inp_channels, "out_channels": out_channels, "dim": dim, "num_blocks": nb,
            "num_refinement_blocks": num_refinement_blocks, "heads": hd, "ffn_expansion_factor": ffn_expansion_factor,
            "bias": bias, "LayerNorm_type": LayerNorm_type, "decoder": decoder, "prompt_dims": pd,
            "prompt_len": prompt_len, "prompt_sizes": ps, "chnl_reduce_dims": cr,
        }
        self.inp_channels = inp_channels
        self.decoder = decoder
        w1, w2, w3, w4 = dim, dim * 2, dim * 4, dim * 8

        def block(width: int, n_heads: int) -> TransformerBlock:
            return TransformerBlock(width, n_heads, ffn_expansion_factor, bias, LayerNorm_type)

        def stage(width: int, n_heads: int, n: int) -> nn.Sequential:
            return nn.Sequential(*[block(width, n_heads) for _ in range(n)])

        def conv1x1(c_in: int, c_out: int) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, kernel_size=1, bias=bias)

        # registration order = the official state-dict order
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        if decoder:  # prompt k reads the features of decoder level k (widths 2dim, 4dim, 8dim)
            self.prompt1 = PromptGenBlock(prompt_dim=pd[0], prompt_len=prompt_len, prompt_size=ps[0], lin_dim=w2)
            self.prompt2 = PromptGenBlock(prompt_dim=pd[1], prompt_len=prompt_len, prompt_size=ps[1], lin_dim=w3)
            self.prompt3 = PromptGenBlock(prompt_dim=pd[2], prompt_len=prompt_len, prompt_size=ps[2], lin_dim=w4)
        # unused by forward, present in every checkpoint
        self.chnl_reduce1 = conv1x1(pd[0], cr[0])
        self.chnl_reduce2 = conv1x1(pd[1], cr[1])
        self.chnl_reduce3 = conv1x1(pd[2], cr[2])

        self.reduce_noise_channel_1 = conv1x1(w1 + cr[0], w1)  # unused
        self.encoder_level1 = stage(w1, hd[0], nb[0])
        self.down1_2 = Downsample(w1)
        self.reduce_noise_channel_2 = conv1x1(w2 + cr[1], w2)  # unused
        self.encoder_level2 = stage(w2, hd[1], nb[1])
        self.down2_3 = Downsample(w2)
        self.reduce_noise_channel_3 = conv1x1(w3 + cr[2], w3)  # unused
        self.encoder_level3 = stage(w3, hd[2], nb[2])
        self.down3_4 = Downsample(w3)
        self.latent = stage(w4, hd[3], nb[3])

        # level 3: latent (+ prompt3) -> noise_level3 -> reduce_noise_level3 (4dim) -> up4_3 (2dim) + skip (4dim)
        self.up4_3 = Upsample(w3)
        self.reduce_chan_level3 = conv1x1(w2 + w3, w3)
        self.noise_level3 = block(w4 + pd[2], hd[2])
        self.reduce_noise_level3 = conv1x1(w4 + pd[2], w3)
        self.decoder_level3 = stage(w3, hd[2], nb[2])

        # level 2: (+ prompt2) -> noise_level2 -> reduce_noise_level2 (4dim) -> up3_2 (2dim) + skip (2dim)
        self.up3_2 = Upsample(w3)
        self.reduce_chan_level2 = conv1x1(w3, w2)
        self.noise_level2 = block(w3 + pd[1], hd[2])
        self.reduce_noise_level2 = conv1x1(w3 + pd[1], w3)
        self.decoder_level2 = stage(w2, hd[1], nb[1])

        # level 1: (+ prompt1) -> noise_level1 -> reduce_noise_level1 (2dim) -> up2_1 (dim) + skip (dim)
        self.up2_1 = Upsample(w2)
        self.noise_level1 = block(w2 + pd[0], hd[2])
        self.reduce_noise_level1 = conv1x1(w2 + pd[0], w2)
        self.decoder_level1 = stage(w2, hd[0], nb[0])

        self.refinement = stage(w2, hd[0], num_refinement_blocks)
        self.output = nn.Conv2d(w2, out_channels, kernel_size=3, stride=1, padding=1, bias=bias)

    def _prompted(self, feat: Tensor, prompt: nn.Module, noise: nn.Module, reduce: nn.Module) -> Tensor:
        return reduce(noise(torch.cat([feat, prompt(feat)], 1)))

    def forward(self, inp_img: Tensor, noise_emb: Tensor | None = None) -> Tensor:
        check_input(inp_img, self.inp_channels, name="PromptIR")
        if not self.decoder:
            raise ValueError(
                "PromptIR built with decoder=False cannot run (the official forward fails the same way: "
                "up4_3 expects 4*dim channels); the released model uses decoder=True"
            )
        out_enc_level1 = self.encoder_level1(self.patch_embed(inp_img))
        out_enc_level2 = self.encoder_level2(self.down1_2(out_enc_level1))
        out_enc_level3 = self.encoder_level3(self.down2_3(out_enc_level2))
        latent = self.latent(self.down3_4(out_enc_level3))
        latent = self._prompted(latent, self.prompt3, self.noise_level3, self.reduce_noise_level3)

        inp_dec_level3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), out_enc_level3], 1))
        out_dec_level3 = self.decoder_level3(inp_dec_level3)
        out_dec_level3 = self._prompted(out_dec_level3, self.prompt2, self.noise_level2, self.reduce_noise_level2)

        inp_dec_level2 = self.reduce_chan_level2(torch.cat([self.up3_2(out_dec_level3), out_enc_level2], 1))
        out_dec_level2 = self.decoder_level2(inp_dec_level2)
        out_dec_level2 = self._prompted(out_dec_level2, self.prompt1, self.noise_level1, self.reduce_noise_level1)

        inp_dec_level1 = torch.cat([self.up2_1(out_dec_level2), out_enc_level1], 1)
        out_dec_level1 = self.refinement(self.decoder_level1(inp_dec_level1))
        return self.output(out_dec_level1) + inp_img


# --------------------------------------------------------------------------------------
# Hyper-parameters from the weights
# --------------------------------------------------------------------------------------


def strip_lightning_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``state_dict`` without :data:`LIGHTNING_PREFIX` when EVERY key carries it, else unchanged (a copy)."""
    if state_dict and all(k.startswith(LIGHTNING_PREFIX) for k in state_dict):
        return {k[len(LIGHTNING_PREFIX):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _shape(state_dict: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return tuple(int(s) for s in state_dict[key].shape)


_LEVELS = (  # (prefix, width multiplier of dim, index into heads)
    ("encoder_level1", 1, 0), ("encoder_level2", 2, 1), ("encoder_level3", 4, 2), ("latent", 8, 3),
    ("decoder_level3", 4, 2), ("decoder_level2", 2, 1), ("decoder_level1", 2, 0), ("refinement", 2, 0),
)


def infer_params(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """All :class:`PromptIR` constructor kwargs from key names and tensor shapes.

    ``dim`` / ``inp_channels`` from ``patch_embed``, ``prompt_dims`` /
    ``chnl_reduce_dims`` from ``chnl_reduce1..3``, ``prompt_len`` / ``prompt_sizes``
    from ``prompt1..3.prompt_param`` (official values when ``decoder=False``), block
    counts from the stage indices, heads from the ``temperature`` shapes (levels
    without blocks fall back to 1, 2, 4, 8), the FFN factor from every block
    (official 2.66 preferred).  Accepts the ``net.`` prefix; works on meta tensors.

    Raises:
        KeyError: a required key is missing.
        ValueError: the prompts disagree on ``prompt_len`` or no FFN factor fits.
    """
    sd = strip_lightning_prefix(state_dict)
    dim, in_c = _shape(sd, "patch_embed.proj.weight")[:2]
    reduce = [_shape(sd, f"chnl_reduce{i}.weight")[:2] for i in (1, 2, 3)]
    decoder = "prompt1.prompt_param" in sd
    prompt_len, prompt_sizes = 5, [64, 32, 16]
    if decoder:
        params = [_shape(sd, f"prompt{i}.prompt_param") for i in (1, 2, 3)]
        lens = {p[1] for p in params}
        if len(lens) != 1:
            raise ValueError(f"prompt1..3 have different numbers of prompts {sorted(lens)}")
        prompt_len, prompt_sizes = lens.pop(), [p[3] for p in params]
    heads = [1, 2, 4, 8]
    seen: set[int] = set()
    pairs: set[tuple[int, int]] = set()
    blocks = [(f"{prefix}.{i}", dim * mult, level) for prefix, mult, level in _LEVELS for i in range(count_blocks(sd, prefix))]
    blocks += [(f"noise_level{i}", _shape(sd, f"noise_level{i}.ffn.project_out.weight")[0], 2) for i in (3, 2, 1)]
    for prefix, width, level in blocks:
        if level not in seen:
            heads[level] = _shape(sd, f"{prefix}.attn.temperature")[0]
            seen.add(level)
        pairs.add((width, _shape(sd, f"{prefix}.ffn.project_in.weight")[0] // 2))
    return {
        "inp_channels": in_c,
        "out_channels": _shape(sd, "output.weight")[0],
        "dim": dim,
        "num_blocks": [count_blocks(sd, p) for p, _, _ in _LEVELS[:4]],
        "num_refinement_blocks": count_blocks(sd, "refinement"),
        "heads": heads,
        "ffn_expansion_factor": infer_ffn_expansion_factor(pairs, RESTORMER_FFN_FACTORS),
        "bias": "output.bias" in sd,
        "LayerNorm_type": infer_layernorm_type(sd),
        "decoder": decoder,
        "prompt_dims": [c_in for _, c_in in reduce],
        "prompt_len": prompt_len,
        "prompt_sizes": prompt_sizes,
        "chnl_reduce_dims": [c_out for c_out, _ in reduce],
    }


# --------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------

_WB = r"\.(?:weight|bias)"
_BLOCK = r"(?:norm[12]\.body|attn\.(?:qkv|qkv_dwconv|project_out)|ffn\.(?:project_in|dwconv|project_out))" + _WB
PROMPTIR_KEY_PATTERNS = (
    r"(?:patch_embed\.proj|(?:down1_2|down2_3|down3_4|up4_3|up3_2|up2_1)\.body\.0|reduce_chan_level[23]"
    r"|reduce_noise_level[123]|reduce_noise_channel_[123]|chnl_reduce[123]|output)" + _WB,
    r"(?:encoder_level[123]|latent|decoder_level[123]|refinement)\.\d+\.(?:" + _BLOCK + r"|attn\.temperature)",
    r"noise_level[123]\.(?:" + _BLOCK + r"|attn\.temperature)",
    r"prompt[123]\.(?:prompt_param|linear_layer" + _WB + r"|conv3x3\.weight)",
)
"""Every key a PromptIR state dict may hold (canonical, without ``net.``)."""

_PROMPTIR_REQUIRED = KeyCondition.has_all(
    "patch_embed.proj.weight",
    "down1_2.body.0.weight",
    "up4_3.body.0.weight",
    "reduce_chan_level3.weight",
    "reduce_chan_level2.weight",
    "chnl_reduce1.weight",
    "chnl_reduce2.weight",
    "chnl_reduce3.weight",
    "reduce_noise_channel_1.weight",
    "reduce_noise_channel_3.weight",
    "noise_level1.attn.temperature",
    "noise_level2.attn.temperature",
    "noise_level3.attn.temperature",
    "noise_level3.ffn.project_in.weight",
    "reduce_noise_level1.weight",
    "reduce_noise_level2.weight",
    "reduce_noise_level3.weight",
    "output.weight",
)


def _detect(state_dict: StateDict) -> bool:
    sd = strip_lightning_prefix(state_dict)
    return _PROMPTIR_REQUIRED(sd) and keys_match(sd, PROMPTIR_KEY_PATTERNS)


class PromptIRArch(Architecture[PromptIR]):
    """spandrel architecture for :class:`PromptIR`.

    Detects by the PromptIR-only keys (``noise_level*``, ``reduce_noise_level*``,
    ``chnl_reduce*``, ``reduce_noise_channel_*``) and demands that every key is one a
    PromptIR can own; keys may carry the Lightning ``net.`` prefix of the official
    checkpoint (stripped before the strict load).  Restormer's detection rejects
    these keys, and this one rejects Restormer's (no ``noise_level*``).
    """

    def __init__(self) -> None:
        super().__init__(id="PromptIR", detect=_detect)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[PromptIR]:
        """Build a :class:`PromptIR` from ``state_dict`` (strict load) and describe it.

        Raises:
            ValueError: for inconsistent sizes, or a ``decoder=False`` state dict (no
                ``prompt1..3``; such a network cannot run).
            KeyError / RuntimeError: for a state dict that is not PromptIR's (shape
                mismatch in ``load_state_dict``).
        """
        sd = strip_lightning_prefix(state_dict)
        params = infer_params(sd)
        if not params["decoder"]:
            raise ValueError("PromptIR weights without the decoder prompts prompt1..3 (decoder=False) cannot run")
        tags = [f"{params['dim']}dim", blocks_tag(params["num_blocks"]), params["LayerNorm_type"],
                f"{params['prompt_len']}prompts"]
        # fp16 / bf16 not validated for PromptIR (the per-pixel statistics of the
        # un-normalised 8*dim + prompt features of noise_level3 are the risk).
        return describe(
            self,
            PromptIR(**params),
            sd,
            tags=tags,
            input_channels=params["inp_channels"],
            output_channels=params["out_channels"],
            size_requirements=SizeRequirements(multiple_of=UNET_MULTIPLE),
        )


# The prompt blocks average the features over the WHOLE map (and MDTA's channel
# attention is global too): every output pixel depends on the whole input, so tiles
# never reproduce the whole-image output.  32 px, as Restormer, hides the seams when
# memory forces tiling; it is also the official demo.py's --tile_overlap default.
PromptIRArch = register(  # type: ignore[misc]  # _base's pattern: the name now holds the instance
    PromptIRArch(),
    ArchInfo(
        task="restoration",
        whole_image=True,
        input_encoding="srgb",
        output_range="clamped",
        overlap=32,
        official=Official(
            repo="https://github.com/va1shn9v/PromptIR",
            checkpoints=("ckpt/model.ckpt (all-in-one: denoise sigma 15/25/50, derain, dehaze)",),
            layout="PyTorch Lightning checkpoint {'state_dict': {'net.<key>': tensor}, ...}",
        ),
        notes=(
            "PromptIR (NeurIPS 2023): one model for blind denoising, deraining and dehazing (decoder=True). "
            "Input RGB [0,1], H/W padded to a multiple of 8; output = net + input, clamped to [0,1]. "
            "Prompts pool the whole image: the official test runs whole images."
        ),
    ),
    before=("Restormer",),
)
