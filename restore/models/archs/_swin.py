"""Shared Swin window-attention pieces for the SwinIR-lineage models.

Both HDR-Transformer (Liu et al., "Ghost-free High Dynamic Range Imaging with
Context-aware Transformer", ECCV 2022) and SCTNet (Tel et al., "Alignment-free
HDR Deghosting with Semantics Consistent Transformer", ICCV 2023) build on the
residual Swin blocks of SwinIR (Liang et al., ICCVW 2021), which in turn follow
Swin Transformer (Liu et al., ICCV 2021); so does the SwinIR sub-module of
RRFormer's DRNet (:mod:`restore.models.archs.rrformer`).  This module holds the
pieces they share, written from those papers; the sub-module attribute names (``norm1``,
``attn.qkv``, ``attn.relative_position_bias_table``, ``mlp.fc1`` ...) and the
persistent buffers (``attn.relative_position_index``, ``attn_mask``) match the
official implementations so their checkpoints load with ``strict=True``.

Shape-bound buffers
-------------------
Every shifted block (odd index inside a stage) keeps a persistent
``attn_mask`` buffer of shape ``(nW, ws*ws, ws*ws)`` computed for the
construction-time feature size ``img_size // patch_size``; every block keeps an
int64 ``relative_position_index`` of shape ``(ws*ws, ws*ws)``.  As in the
official code the stored mask is only used when the runtime feature size equals
the construction size; any other size gets a freshly computed mask (cached, see
:func:`cached_attn_mask`).  Because the buffers are part of the state dict, a
checkpoint made with one ``img_size`` only strict-loads into a model built with
the same ``img_size``.  Two ways around that:

* infer the construction size from the stored mask (:func:`infer_mask_resolution`)
  and build the model with it - what the spandrel loaders here do; or
* rewrite the buffer entries of the checkpoint with the target model's own
  values (:func:`checkpoint_filter_fn`, the idea of timm's filter functions), or
  drop them (:func:`drop_swin_buffers`) and load with ``strict=False``.

Both buffers are pure functions of the hyper-parameters, so regenerating them
never changes the network's output.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn


__all__ = [
    "to_2tuple",
    "window_partition",
    "window_reverse",
    "relative_position_index",
    "compute_attn_mask",
    "cached_attn_mask",
    "window_size_from_table",
    "infer_mask_resolution",
    "swin_buffer_keys",
    "drop_swin_buffers",
    "checkpoint_filter_fn",
    "DropPath",
    "Mlp",
    "WindowAttention",
    "SwinTransformerBlock",
    "BasicLayer",
    "PatchEmbed",
    "PatchUnEmbed",
    "RSTB",
    "SwinIRBody",
    "pad_to_window",
    "resi_conv",
    "init_swin_weights",
    "infer_swin_stages",
    "infer_swinir_kwargs",
]

_BUFFER_SUFFIXES = (".attn_mask", ".relative_position_index")



def to_2tuple(x: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Return ``(x, x)`` for an int, ``tuple(x)`` for a 2-sequence.

    Raises:
        ValueError: if a sequence does not have exactly two entries.
    """
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(f"expected an int or a pair, got {x!r}")
        return int(x[0]), int(x[1])
    return int(x), int(x)


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Cut a channels-last map into non-overlapping square windows.

    Args:
        x: ``(B, H, W, C)``, any dtype; H and W multiples of ``window_size``.
        window_size: Window side ``ws``.

    Returns:
        ``(B * H/ws * W/ws, ws, ws, C)``; windows in row-major order per image.
    """
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`.

    Args:
        windows: ``(B * h/ws * w/ws, ws, ws, C)``.
        window_size: Window side ``ws``.
        h, w: Spatial size of the map the windows were cut from.

    Returns:
        ``(B, h, w, C)``.
    """
    nh, nw = h // window_size, w // window_size
    b = windows.shape[0] // (nh * nw)
    x = windows.view(b, nh, nw, window_size, window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def relative_position_index(window_size: tuple[int, int], device: torch.device | str | None = None) -> torch.Tensor:
    """Index into the relative-position bias table for every token pair of a window.

    Token ``i`` at ``(yi, xi)`` and token ``j`` at ``(yj, xj)`` (row-major
    inside the ``Wh x Ww`` window) get
    ``(yi - yj + Wh - 1) * (2*Ww - 1) + (xi - xj + Ww - 1)``.

    Returns:
        int64 ``(Wh*Ww, Wh*Ww)`` with values in ``[0, (2Wh-1)(2Ww-1))``.
    """
    wh, ww = window_size
    ys = torch.arange(wh, device=device).repeat_interleave(ww)
    xs = torch.arange(ww, device=device).repeat(wh)
    dy = ys[:, None] - ys[None, :] + (wh - 1)
    dx = xs[:, None] - xs[None, :] + (ww - 1)
    return dy * (2 * ww - 1) + dx


def compute_attn_mask(
    x_size: tuple[int, int],
    window_size: int,
    shift_size: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Attention mask of shifted-window MSA for a feature map of any size.

    After the cyclic shift by ``-shift_size`` the rows split into three bands
    (``[0, H-ws)``, ``[H-ws, H-shift)``, ``[H-shift, H)``) and so do the
    columns; tokens of one window may only attend to tokens of the same
    band pair.  Pairs from different regions get ``-100``, others ``0``.

    Args:
        x_size: Feature size ``(H, W)``, multiples of ``window_size``.
        window_size: Window side ``ws``.
        shift_size: Shift, ``0 < shift < ws`` (0 gives an all-zero mask).
        device: Where to build it (default device when None).

    Returns:
        float32 ``(H/ws * W/ws, ws*ws, ws*ws)`` with values in {0, -100}.

    Raises:
        ValueError: if H or W is not a positive multiple of ``window_size``.
    """
    h, w = int(x_size[0]), int(x_size[1])
    if h <= 0 or w <= 0 or h % window_size or w % window_size:
        raise ValueError(f"feature size {h}x{w} is not a positive multiple of window_size {window_size}")

    def bands(n: int) -> torch.Tensor:
        idx = torch.arange(n, device=device)
        if shift_size <= 0:
            return torch.zeros(n, dtype=torch.long, device=device)
        return (idx >= n - window_size).long() + (idx >= n - shift_size).long()

    region = (bands(h)[:, None] * 3 + bands(w)[None, :]).to(torch.float32)
    win = window_partition(region.view(1, h, w, 1), window_size).reshape(-1, window_size * window_size)
    diff = win[:, None, :] - win[:, :, None]
    return torch.where(diff != 0, torch.full_like(diff, -100.0), torch.zeros_like(diff))


@functools.lru_cache(maxsize=8)
def _cached_mask(h: int, w: int, window_size: int, shift_size: int, device: str) -> torch.Tensor:
    # Built outside inference mode so the tensor can be reused by autograd later.
    with torch.inference_mode(False), torch.no_grad():
        return compute_attn_mask((h, w), window_size, shift_size, device=device)


def cached_attn_mask(
    x_size: tuple[int, int], window_size: int, shift_size: int, device: torch.device | str
) -> torch.Tensor:
    """:func:`compute_attn_mask` with a small LRU cache (8 entries).

    The shifted blocks of one forward pass all need the same mask; the cache
    computes it once.  The returned tensor is shared: never modify it in place.
    """
    return _cached_mask(int(x_size[0]), int(x_size[1]), int(window_size), int(shift_size), str(torch.device(device)))


def window_size_from_table(num_entries: int) -> int:
    """Square window side ``ws`` from a bias-table length ``(2ws-1)**2``.

    Raises:
        ValueError: if ``num_entries`` is not the square of an odd number.
    """
    side = math.isqrt(int(num_entries))
    if side * side != num_entries or side % 2 == 0:
        raise ValueError(f"relative_position_bias_table has {num_entries} rows, not (2*ws-1)**2")
    return (side + 1) // 2


def infer_mask_resolution(attn_mask: torch.Tensor, window_size: int, shift_size: int | None = None) -> tuple[int, int]:
    """Feature size ``(H, W)`` (in tokens) a stored ``attn_mask`` was computed for.

    ``attn_mask`` has shape ``(nW, ws*ws, ws*ws)`` with ``nW = (H/ws) * (W/ws)``.
    Every factorisation ``nW = a * b`` is tried against the mask's values
    (the masked windows sit in the last window row and column, so the layout is
    unique); the square one is tried first.  For tensors without data (``meta``
    device) the values cannot be compared: the most nearly square factorisation
    is returned (exact for the square sizes every official config uses).

    Args:
        attn_mask: ``(nW, ws*ws, ws*ws)`` float tensor (any device, or meta).
        window_size: ``ws``.
        shift_size: Shift used to build it (default ``ws // 2``, as the models do).

    Returns:
        ``(H, W)`` in tokens (multiply by ``patch_size`` for pixels).

    Raises:
        ValueError: if the shape does not fit ``window_size`` or no layout
            reproduces the stored values.
    """
    n = window_size * window_size
    if attn_mask.dim() != 3 or tuple(attn_mask.shape[1:]) != (n, n):
        raise ValueError(f"attn_mask of shape {tuple(attn_mask.shape)} does not fit window_size {window_size}")
    shift = window_size // 2 if shift_size is None else shift_size
    nw = int(attn_mask.shape[0])
    pairs = [(a, nw // a) for a in range(1, nw + 1) if nw % a == 0]
    pairs.sort(key=lambda p: (abs(p[0] - p[1]), -p[0]))
    if attn_mask.is_meta:
        a, b = pairs[0]
        return a * window_size, b * window_size
    stored = attn_mask.detach().to("cpu", torch.float32)
    for a, b in pairs:
        cand = compute_attn_mask((a * window_size, b * window_size), window_size, shift)
        if torch.equal(cand, stored):
            return a * window_size, b * window_size
    raise ValueError("attn_mask values match no (H, W) layout; the buffer is not a shifted-window mask")


def swin_buffer_keys(state_dict: Mapping[str, object]) -> list[str]:
    """Keys of shape-bound Swin buffers (``*.attn_mask``, ``*.relative_position_index``)."""
    return [k for k in state_dict if k.endswith(_BUFFER_SUFFIXES)]


def drop_swin_buffers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy of ``state_dict`` without the buffers of :func:`swin_buffer_keys`.

    Load the result with ``strict=False``; the model keeps its own buffers,
    which are regenerated from its hyper-parameters at construction.
    """
    drop = set(swin_buffer_keys(state_dict))
    return {k: v for k, v in state_dict.items() if k not in drop}


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Make a checkpoint's Swin buffers match ``model`` so ``strict=True`` loading works.

    Every ``attn_mask`` / ``relative_position_index`` entry is replaced by the
    model's own buffer (or removed where the model has none, e.g. a block whose
    window covers the whole feature map), and model buffers missing from the
    checkpoint are added.  Parameters are passed through untouched, so loading
    a checkpoint made with any ``img_size`` into a model built with another
    gives the same network.

    Returns:
        A new dict; ``state_dict`` is not modified.
    """
    own = {k: v for k, v in model.state_dict().items() if k.endswith(_BUFFER_SUFFIXES)}
    out = drop_swin_buffers(state_dict)
    out.update(own)
    return out


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al., 2016); identity in eval mode or with p=0."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """Token MLP ``fc1 -> act -> drop -> fc2 -> drop`` on ``(..., C)`` tensors (keys ``fc1``, ``fc2``)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a relative position bias (Swin, Liu et al. 2021).

    Keys: ``relative_position_bias_table`` ``((2Wh-1)(2Ww-1), heads)``,
    buffer ``relative_position_index`` int64 ``(Wh*Ww, Wh*Ww)``, ``qkv``
    (``Linear(dim, 3*dim)``), ``proj``.
    """

    def __init__(
        self,
        dim: int,
        window_size: tuple[int, int],
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.window_size = to_2tuple(window_size)
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5
        wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        self.register_buffer("relative_position_index", relative_position_index(self.window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Args: ``x`` ``(nW*B, N, C)`` with ``N = Wh*Ww``; ``mask`` ``(nW, N, N)`` of 0/-100 or None.

        Returns ``(nW*B, N, C)``.
        """
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0).to(q.dtype)  # (1, heads, N, N)
        if mask is not None:
            nw = mask.shape[0]
            bias = bias + mask.to(q.dtype)[:, None]  # (nW, heads, N, N)
            if b_ != nw:
                bias = bias.repeat(b_ // nw, 1, 1, 1)
        # softmax(q k^T * scale + bias) @ v as one fused kernel (the official code materialises
        # the attention map three times; same function, about 2x faster on CPU)
        drop = self.attn_drop.p if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=self.scale)
        x = x.transpose(1, 2).reshape(b_, n, c)
        return self.proj_drop(self.proj(x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window Swin block on tokens ``(B, H*W, C)``: ``x + MSA(LN(x))``, then ``x + MLP(LN(x))``.

    As in the official code, when ``min(input_resolution) <= window_size`` the
    window shrinks to the whole map and the shift is dropped.  Shifted blocks
    register the persistent ``attn_mask`` buffer for ``input_resolution``
    (None - hence absent from the state dict - otherwise).
    """

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = to_2tuple(input_resolution)
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.mlp_ratio = mlp_ratio
        if min(self.input_resolution) <= self.window_size:
            self.shift_size = 0
            self.window_size = min(self.input_resolution)
        if not 0 <= self.shift_size < self.window_size:
            raise ValueError(f"shift_size {self.shift_size} must be in [0, window_size={self.window_size})")

        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(
            dim,
            window_size=to_2tuple(self.window_size),
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop,
            proj_drop=drop,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        mask = (
            compute_attn_mask(self.input_resolution, self.window_size, self.shift_size)
            if self.shift_size > 0
            else None
        )
        self.register_buffer("attn_mask", mask)

    def calculate_mask(self, x_size: tuple[int, int]) -> torch.Tensor:
        """Shifted-window mask for feature size ``x_size`` (see :func:`compute_attn_mask`)."""
        return compute_attn_mask(x_size, self.window_size, self.shift_size)

    def _mask_for(self, x_size: tuple[int, int], device: torch.device) -> torch.Tensor | None:
        if self.shift_size <= 0:
            # The official code computes an all-zero mask here when the size differs.
            return None
        if tuple(x_size) == self.input_resolution and self.attn_mask is not None:
            return self.attn_mask
        return cached_attn_mask(x_size, self.window_size, self.shift_size, device)

    def window_msa(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        """(S)W-MSA of a normalised map ``(B, H, W, C)``; returns tokens ``(B, H*W, C)``."""
        b, h, w, c = x.shape
        ws, s = self.window_size, self.shift_size
        if s > 0:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        windows = window_partition(x, ws).view(-1, ws * ws, c)
        windows = self.attn(windows, mask=self._mask_for(x_size, x.device))
        x = window_reverse(windows.view(-1, ws, ws, c), ws, h, w)
        if s > 0:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        return x.reshape(b, h * w, c)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        """Tokens ``(B, H*W, C)`` -> ``(B, H*W, C)``; ``x_size = (H, W)`` multiples of the window."""
        h, w = x_size
        b, _, c = x.shape
        shortcut = x
        x = self.window_msa(self.norm1(x).view(b, h, w, c), x_size)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, input_resolution={self.input_resolution}, num_heads={self.num_heads}, "
            f"window_size={self.window_size}, shift_size={self.shift_size}, mlp_ratio={self.mlp_ratio}"
        )


class BasicLayer(nn.Module):
    """A stage of ``depth`` blocks (``blocks.{i}``), shift ``ws//2`` on odd blocks; no downsampling.

    ``block_cls`` selects the block type (a :class:`SwinTransformerBlock`
    subclass such as HDR-Transformer's context-aware block).
    """

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float | list[float] = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        use_checkpoint: bool = False,
        block_cls: type[SwinTransformerBlock] = SwinTransformerBlock,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            block_cls(
                dim=dim,
                input_resolution=input_resolution,
                num_heads=num_heads,
                window_size=window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=drop_path[i] if isinstance(drop_path, (list, tuple)) else drop_path,
                norm_layer=norm_layer,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        for blk in self.blocks:
            if self.use_checkpoint and self.training:
                x = torch.utils.checkpoint.checkpoint(blk, x, x_size, use_reentrant=False)
            else:
                x = blk(x, x_size)
        return x


class _PatchGrid(nn.Module):
    """The constructor :class:`PatchEmbed` and :class:`PatchUnEmbed` share (SwinIR's): grid bookkeeping."""

    #: Whether ``norm_layer`` is used (SwinIR's PatchUnEmbed accepts and ignores it).
    _uses_norm: ClassVar[bool] = False

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        img_size = to_2tuple(img_size)
        patch_size = to_2tuple(patch_size)
        self.img_size = img_size
        self.patch_size = patch_size
        self.patches_resolution = [img_size[0] // patch_size[0], img_size[1] // patch_size[1]]
        self.num_patches = self.patches_resolution[0] * self.patches_resolution[1]
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        if self._uses_norm:
            self.norm = norm_layer(embed_dim) if norm_layer is not None else None


class PatchEmbed(_PatchGrid):
    """SwinIR's "patch embedding": ``(B, C, H, W)`` -> tokens ``(B, H*W, C)`` plus optional LayerNorm (key ``norm``).

    There is no projection - with ``patch_size=1`` a pixel is a token;
    ``patches_resolution = img_size // patch_size`` only sizes the buffers.
    """

    _uses_norm = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x) if self.norm is not None else x


class PatchUnEmbed(_PatchGrid):
    """Tokens ``(B, H*W, C)`` -> ``(B, C, H, W)`` (no parameters; same constructor as :class:`PatchEmbed`)."""

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        b = x.shape[0]
        return x.transpose(1, 2).reshape(b, self.embed_dim, x_size[0], x_size[1])


def resi_conv(resi_connection: str, dim: int, dilation: int = 1) -> nn.Module:
    """SwinIR's convolution after a residual group (``RSTB.conv``, ``conv_after_body``).

    ``'1conv'``: one 3x3 conv ``dim -> dim`` (key ``weight``/``bias``);
    ``'3conv'``: 3x3 ``dim -> dim/4``, LeakyReLU(0.2), 1x1, LeakyReLU(0.2),
    3x3 ``-> dim`` (keys ``0``, ``2``, ``4``).  ``dilation`` applies to the 3x3
    convs (padding = dilation keeps the size), as in HDR-Transformer's
    ``dilated_conv``.  Maps ``(B, dim, H, W)`` to the same shape.

    Raises:
        ValueError: for another ``resi_connection``.
    """
    d = int(dilation)
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, d, dilation=d)
    if resi_connection == "3conv":
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, 1, d, dilation=d),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Conv2d(dim // 4, dim // 4, 1, 1, 0),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Conv2d(dim // 4, dim, 3, 1, d, dilation=d),
        )
    raise ValueError(f"resi_connection must be '1conv' or '3conv', got {resi_connection!r}")


def init_swin_weights(m: nn.Module) -> None:
    """SwinIR's ``_init_weights`` (use with ``module.apply``).

    ``nn.Linear``: weight ~ truncated N(0, 0.02^2), bias 0; ``nn.LayerNorm``:
    weight 1, bias 0; other modules untouched.  Only matters for fresh
    models: loading a checkpoint overwrites every parameter.
    """
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.LayerNorm):
        nn.init.constant_(m.bias, 0)
        nn.init.constant_(m.weight, 1.0)


class RSTB(nn.Module):
    """Residual Swin Transformer Block of SwinIR (Liang et al., ICCVW 2021).

    ``tokens(conv(image(residual_group(x)))) + x`` with ``residual_group`` a
    :class:`BasicLayer` of ``depth`` (shifted-)window blocks and ``conv`` from
    :func:`resi_conv`.  Keys: ``residual_group.blocks.{i}.*``, ``conv.*``
    (``patch_embed`` / ``patch_unembed`` have none).  Constructor keywords
    and their order are SwinIR's.

    The descendants (SCTNet's GSAB, HDR-Transformer's context-aware group)
    subclass it and keep that constructor; they change only the class
    attributes below and, for another residual conv, :meth:`make_conv`.

    Attributes:
        block_cls: Block type of the residual group (a
            :class:`SwinTransformerBlock` subclass).
        conv_name: Attribute (and state-dict) name of the residual conv.

    Shapes: tokens ``(B, H*W, dim)`` with ``x_size = (H, W)`` (multiples of
    the window) in and out.

    Raises:
        ValueError: ``downsample`` given (SwinIR stages never downsample) or
            an unknown ``resi_connection``.
    """

    block_cls: ClassVar[type[SwinTransformerBlock]] = SwinTransformerBlock
    conv_name: ClassVar[str] = "conv"

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float | list[float] = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        downsample: None = None,
        use_checkpoint: bool = False,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 4,
        resi_connection: str = "1conv",
    ) -> None:
        super().__init__()
        if downsample is not None:
            raise ValueError(f"{type(self).__name__} has no downsampling")
        self.dim = dim
        self.input_resolution = input_resolution
        self.residual_group = BasicLayer(
            dim=dim,
            input_resolution=input_resolution,
            depth=depth,
            num_heads=num_heads,
            window_size=window_size,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            drop=drop,
            attn_drop=attn_drop,
            drop_path=drop_path,
            norm_layer=norm_layer,
            use_checkpoint=use_checkpoint,
            block_cls=self.block_cls,
        )
        self.add_module(self.conv_name, self.make_conv(resi_connection, dim))
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=0, embed_dim=dim)
        self.patch_unembed = PatchUnEmbed(img_size=img_size, patch_size=patch_size, in_chans=0, embed_dim=dim)

    @staticmethod
    def make_conv(resi_connection: str, dim: int) -> nn.Module:
        """The residual conv after the group: :func:`resi_conv` (override for another one)."""
        return resi_conv(resi_connection, dim)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        conv = getattr(self, self.conv_name)
        return self.patch_embed(conv(self.patch_unembed(self.residual_group(x, x_size), x_size))) + x


class SwinIRBody(nn.Module):
    """Base class of the SwinIR-style networks (HDR-Transformer, SCTNet, RRFormer's SwinIR).

    Subclasses keep their official constructors and call :meth:`_build_body`
    (token embedding and the residual stages), register their own modules,
    then :meth:`_build_tail` (final LayerNorm and ``conv_after_body``), so
    the modules, their state-dict keys and their order are SwinIR's:
    ``patch_embed.norm`` (with ``patch_norm``), ``absolute_pos_embed`` (with
    ``ape``), ``layers.{i}.*``, ``norm``, ``conv_after_body``.
    :meth:`forward_features` runs embedding, stages and norm.
    """

    #: SwinIR's weight init (:func:`init_swin_weights`), under the official method name.
    _init_weights = staticmethod(init_swin_weights)

    def _build_body(
        self,
        img_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        embed_dim: int,
        depths: list[int],
        num_heads: list[int],
        window_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: float | None,
        drop_rate: float,
        attn_drop_rate: float,
        drop_path_rate: float,
        norm_layer: Callable[[int], nn.Module],
        ape: bool,
        patch_norm: bool,
        use_checkpoint: bool,
        resi_connection: str,
        *,
        stage_cls: type[RSTB] = RSTB,
        dpr: list[float] | None = None,
    ) -> tuple[int, int]:
        """Register ``patch_embed``, ``patch_unembed``, ``absolute_pos_embed`` (if ``ape``), ``pos_drop``, ``layers``.

        The positional arguments are SwinIR's constructor keywords, in its order.
        Also sets ``_block_window``, the window side the blocks really use
        (smaller than ``window_size`` when the map is not larger than it).

        Args:
            stage_cls: Residual stage type (:class:`RSTB` or a subclass), built
                with SwinIR's keywords.
            dpr: Stochastic-depth rate of every block; default
                ``torch.linspace(0, drop_path_rate, sum(depths))`` as in SwinIR.

        Returns:
            The construction feature size ``img_size // patch_size`` as ``(H, W)``.
        """
        self.num_layers = len(depths)
        self.embed_dim = embed_dim
        self.ape = ape
        self.patch_norm = patch_norm
        self.num_features = embed_dim
        self.mlp_ratio = mlp_ratio
        # (img_size, patch_size, in_chans, embed_dim[, norm_layer]); in_chans = embed_dim: no conv_first here
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim, embed_dim, norm_layer if patch_norm else None)
        patches_resolution = self.patch_embed.patches_resolution
        self.patches_resolution = patches_resolution
        self.patch_unembed = PatchUnEmbed(img_size, patch_size, embed_dim, embed_dim)
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(p=drop_rate)

        if dpr is None:
            dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths), device="cpu")]
        resolution = (patches_resolution[0], patches_resolution[1])
        self._block_window = min(window_size, *resolution)
        self.layers = nn.ModuleList(
            stage_cls(  # SwinIR's RSTB arguments, in its order
                embed_dim, resolution, depths[i], num_heads[i], window_size, mlp_ratio, qkv_bias, qk_scale,
                drop_rate, attn_drop_rate, dpr[sum(depths[:i]) : sum(depths[: i + 1])], norm_layer,
                use_checkpoint=use_checkpoint, img_size=img_size, patch_size=patch_size,
                resi_connection=resi_connection,
            )
            for i in range(self.num_layers)
        )
        return resolution

    def _build_tail(self, norm_layer: Callable[[int], nn.Module], resi_connection: str) -> None:
        """Register ``norm`` (over ``num_features``) and ``conv_after_body`` (:func:`resi_conv`)."""
        self.norm = norm_layer(self.num_features)
        self.conv_after_body = resi_conv(resi_connection, self.embed_dim)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(B, C, H, W)`` -> tokens ``(B, H*W, C)`` (+ ``absolute_pos_embed``, dropout) and ``(H, W)``."""
        x_size = (x.shape[2], x.shape[3])
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed
        return self.pos_drop(x), x_size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Residual stages + final LayerNorm: ``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        x, x_size = self._embed(x)
        for layer in self.layers:
            x = layer(x, x_size)
        return self.patch_unembed(self.norm(x), x_size)


def pad_to_window(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Reflect-pad ``(B, C, H, W)`` bottom/right so H and W are multiples of ``window_size``.

    Returns ``x`` itself when nothing needs padding (SwinIR's ``check_image_size``).
    """
    _, _, h, w = x.shape
    ph = (window_size - h % window_size) % window_size
    pw = (window_size - w % window_size) % window_size
    return F.pad(x, (0, pw, 0, ph), "reflect") if (ph or pw) else x


def _seq_len(state_dict: Mapping[str, object], prefix: str) -> int:
    p = prefix + "."
    heads = (k[len(p) :].split(".", 1)[0] for k in state_dict if k.startswith(p))
    idx = {int(h) for h in heads if h.isdigit()}
    return max(idx) + 1 if idx else 0


def infer_swin_stages(state_dict: Mapping[str, torch.Tensor], embed_dim: int) -> dict:
    """Hyper-parameters of the ``layers.{i}.residual_group.blocks.{j}`` Swin stages, from shapes.

    Works on real and ``meta`` tensors.

    * ``depths``: number of ``blocks.{j}`` per stage (counted from key names);
    * ``num_heads``: columns of each stage's ``relative_position_bias_table``;
    * ``window_size``: from the table length ``(2ws-1)**2`` (consistent over all blocks);
    * ``mlp_ratio``: ``mlp.fc1`` out-features / ``embed_dim`` (float);
    * ``qkv_bias``: whether ``attn.qkv.bias`` exists;
    * ``feature_size``: ``(H, W)`` tokens of the first stored ``attn_mask``
      (:func:`infer_mask_resolution`), or None when no block stores one.

    Raises:
        ValueError: no stage found, window sizes disagree, or a mask does not fit.
    """
    num_layers = _seq_len(state_dict, "layers")
    if num_layers == 0:
        raise ValueError("no 'layers.N.*' keys: not a SwinIR-style state dict")
    depths: list[int] = []
    num_heads: list[int] = []
    windows: set[int] = set()
    for i in range(num_layers):
        prefix = f"layers.{i}.residual_group.blocks"
        depth = _seq_len(state_dict, prefix)
        if depth == 0:
            raise ValueError(f"stage {i} has no blocks")
        depths.append(depth)
        num_heads.append(int(state_dict[f"{prefix}.0.attn.relative_position_bias_table"].shape[1]))
        for j in range(depth):
            table = state_dict[f"{prefix}.{j}.attn.relative_position_bias_table"]
            windows.add(window_size_from_table(int(table.shape[0])))
    if len(windows) != 1:
        raise ValueError(f"blocks disagree on the window size: {sorted(windows)}")
    window_size = windows.pop()
    blk = "layers.0.residual_group.blocks.0"
    mlp_ratio = float(state_dict[f"{blk}.mlp.fc1.weight"].shape[0]) / float(embed_dim)
    qkv_bias = f"{blk}.attn.qkv.bias" in state_dict
    feature_size = None
    for i in range(num_layers):
        key = f"layers.{i}.residual_group.blocks.1.attn_mask"
        if key in state_dict:
            feature_size = infer_mask_resolution(state_dict[key], window_size)
            break
    return {
        "depths": depths,
        "num_heads": num_heads,
        "window_size": window_size,
        "mlp_ratio": mlp_ratio,
        "qkv_bias": qkv_bias,
        "feature_size": feature_size,
    }


def infer_swinir_kwargs(
    state_dict: Mapping[str, torch.Tensor], *, in_chans: int, embed_dim: int, default_size: int
) -> dict[str, Any]:
    """SwinIR constructor kwargs of a ``patch_size=1`` model (HDR-Transformer, SCTNet) from shapes.

    * ``depths``, ``num_heads``, ``window_size``, ``mlp_ratio``, ``qkv_bias``:
      :func:`infer_swin_stages`;
    * ``img_size`` ``(H, W)``: from the first stored ``attn_mask``; else from
      ``absolute_pos_embed`` (square); else ``(ws, ws)`` when a stage has a
      second block (no mask is stored only when the window covers the whole
      map); else ``(default_size, default_size)``;
    * ``ape``, ``patch_norm``, ``resi_connection``: presence of
      ``absolute_pos_embed``, ``patch_embed.norm.weight``, ``conv_after_body.weight``;
    * ``patch_size`` is not stored: 1, the official value; ``in_chans`` and
      ``embed_dim`` are passed through.

    Works on ``meta`` tensors.  Keys come in the order of the constructors.

    Raises:
        KeyError / ValueError: not a SwinIR-style state dict.
    """
    st = infer_swin_stages(state_dict, embed_dim)
    ws = st["window_size"]
    if st["feature_size"] is not None:
        h, w = st["feature_size"]
    elif "absolute_pos_embed" in state_dict:
        n = int(state_dict["absolute_pos_embed"].shape[1])
        h = w = int(round(n**0.5))
    elif any(d >= 2 for d in st["depths"]):
        h = w = ws
    else:
        h = w = default_size
    return {
        "img_size": (h, w),
        "patch_size": 1,
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "depths": st["depths"],
        "num_heads": st["num_heads"],
        "window_size": ws,
        "mlp_ratio": st["mlp_ratio"],
        "qkv_bias": st["qkv_bias"],
        "ape": "absolute_pos_embed" in state_dict,
        "patch_norm": "patch_embed.norm.weight" in state_dict,
        "resi_connection": "1conv" if "conv_after_body.weight" in state_dict else "3conv",
    }
