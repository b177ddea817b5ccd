"""Tiled inference with overlap blending.

The image stays on the host.  It is cut into tiles that overlap by
``overlap`` input pixels; tiles go to the device in batches; each output tile
is weighted across the region it shares with each neighbour: zero on the
outer quarter (a tile's edge pixels lack context), a raised-cosine (Hann)
ramp over the middle half, one on the inner quarter - complementary weights
that sum to one - and accumulated in float32 at output resolution, then
divided by the accumulated weight.  Tiles at the image border get no ramp on
the border side.  A model whose receptive field (input pixels) is at most a
quarter of the overlap therefore gives tiled output equal to whole-image
output.

Size requirements: the image is reflect-padded at its bottom/right edge up to
the model's ``multiple_of`` and ``minimum`` (exactly what whole-image
inference pads), so a tile covering the whole image reproduces whole-image
inference bit for bit; the padding is cropped from the output.

Precision: ``"auto"`` is float32 on CPU; on CUDA bfloat16 where the
descriptor says the architecture supports it (and the GPU does), else
float16 where supported, else float32.  Low precision runs under
``torch.autocast`` so numerically sensitive ops stay in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TileSpec", "plan_axis", "blend_ramp", "run_tiled", "resolve_precision", "resolve_device"]

Precision = Literal["auto", "fp32", "fp16", "bf16"]


@dataclass(frozen=True)
class TileSpec:
    """Tiling parameters.

    Attributes:
        tile: Tile edge in input pixels (0 = whole image as one tile), or
            ``(height, width)`` for rectangular tiles (models with a fixed
            input size).  Rounded down to the model's ``multiple_of``.
        overlap: Pixels (input resolution) shared by neighbouring tiles; the
            blend ramp spans the shared region.
        batch: Tiles per forward pass.
    """

    tile: int | tuple[int, int] = 256
    overlap: int = 32
    batch: int = 1


def plan_axis(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles along one axis.

    Tiles of size ``tile`` step by ``tile - overlap``; the last tile is aligned
    to the end, so every pixel is covered and no tile leaves the image.

    Args:
        length: Axis length in pixels.
        tile: Tile size (>= 1).
        overlap: Overlap, ``0 <= overlap < tile``.

    Returns:
        Sorted, unique start offsets.

    Raises:
        ValueError: if ``overlap >= tile`` or ``tile < 1``.
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap {overlap} with tile {tile}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = math.ceil((length - tile) / stride) + 1
    starts = [min(i * stride, length - tile) for i in range(n)]
    return sorted(set(starts))


def blend_ramp(n: int) -> np.ndarray:
    """Raised-cosine ramp of ``n`` samples rising from ~0 to ~1.

    ``r[i] = sin^2(pi/2 * (i + 0.5) / n)``; ``r + r[::-1] == 1`` exactly in
    real arithmetic, so two tiles sharing ``n`` pixels blend to weight one.
    """
    i = np.arange(n, dtype=np.float64)
    return (np.sin(0.5 * np.pi * (i + 0.5) / n) ** 2).astype(np.float32)


def _shared_weights(shared: int, scale: int) -> np.ndarray:
    """Weight of the *later* tile across a region of ``shared`` input pixels (output resolution).

    The first and last quarter of the shared region are hard (0 then 1): a
    tile's outermost pixels lack context, so they never contribute while the
    neighbour has pixels with full context there.  The middle half ramps with
    :func:`blend_ramp`.  The earlier tile gets ``1 - w``.
    """
    margin = (shared // 4) * scale
    n = shared * scale
    w = np.zeros(n, dtype=np.float32)
    ramp = n - 2 * margin
    if ramp > 0:
        w[margin : margin + ramp] = blend_ramp(ramp)
    w[margin + max(ramp, 0) :] = 1.0
    return w


def _axis_weights(starts: list[int], tile: int, scale: int) -> list[np.ndarray]:
    """Per-tile 1-D weights at output resolution along one axis."""
    out = []
    n_out = tile * scale
    for j, s in enumerate(starts):
        w = np.ones(n_out, dtype=np.float32)
        if j > 0:
            shared = starts[j - 1] + tile - s
            if shared > 0:
                w[: shared * scale] = _shared_weights(shared, scale)
        if j + 1 < len(starts):
            shared = s + tile - starts[j + 1]
            if shared > 0:
                w[n_out - shared * scale :] = np.minimum(w[n_out - shared * scale :], 1.0 - _shared_weights(shared, scale))
        out.append(w)
    return out


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; otherwise ``torch.device(device)``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: Precision, device: torch.device, supports_half: bool, supports_bf16: bool) -> torch.dtype:
    """Pick the compute dtype.

    Returns:
        ``torch.float32``, ``torch.float16`` or ``torch.bfloat16``.

    Raises:
        ValueError: if fp16/bf16 is requested for an architecture that is not
            safe in it, or fp16 on CPU.
    """
    if precision == "fp32":
        return torch.float32
    if precision == "auto":
        if device.type != "cuda":
            return torch.float32
        if supports_bf16 and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if supports_half else torch.float32
    if precision == "bf16":
        if not supports_bf16:
            raise ValueError("this architecture is not safe in bfloat16; use precision fp32 or auto")
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("fp16 is only supported on CUDA; use bf16 or fp32 on CPU")
        if not supports_half:
            raise ValueError("this architecture is not safe in float16; use precision fp32 or auto")
        return torch.float16
    raise ValueError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")


def _pad_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Reflect-pad (B, C, H, W) at bottom/right to (h, w); replicate where reflect cannot reach."""
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if ph <= 0 and pw <= 0:
        return x
    ph, pw = max(ph, 0), max(pw, 0)
    while ph > 0 or pw > 0:  # reflect can pad at most size-1 per pass
        sh = min(ph, x.shape[-2] - 1)
        sw = min(pw, x.shape[-1] - 1)
        if sh <= 0 and sw <= 0:
            return F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = F.pad(x, (0, max(sw, 0), 0, max(sh, 0)), mode="reflect")
        ph, pw = ph - max(sh, 0), pw - max(sw, 0)
    return x


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def run_tiled(
    forward: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    *,
    scale: int,
    out_channels: int | None = None,
    spec: TileSpec = TileSpec(),
    multiple_of: int = 1,
    min_size: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run ``forward`` over ``image`` tile by tile and blend the tiles seamlessly.

    Args:
        forward: Maps a float tensor ``(B, C_in, h, w)`` on ``device`` to
            ``(B, C_out, h*scale, w*scale)``.  Called under
            ``torch.inference_mode`` (and autocast for fp16/bf16).
        image: float32 ``(C_in, H, W)`` host array (any value range).
        scale: Output/input size ratio (1 for restoration models).
        out_channels: ``C_out`` (default: ``C_in``).
        spec: :class:`TileSpec`.  ``tile=0`` or ``tile >= max(H, W)`` runs the
            whole (padded) image as one tile.
        multiple_of: Model input sides must be multiples of this.
        min_size: Model input sides must be at least this.
        device: Where tiles run; only tiles are moved there.
        dtype: Compute dtype (see :func:`resolve_precision`).
        progress: Called as ``progress(done_tiles, total_tiles)``.

    Returns:
        float32 ``(C_out, H*scale, W*scale)`` array.

    Raises:
        ValueError: bad shapes or tile/overlap values.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {image.shape}")
    device = torch.device(device)
    c_in, h, w = image.shape
    c_out = out_channels or c_in
    m = max(1, int(multiple_of))
    # the padded canvas: what whole-image inference would see
    ph = max(_round_up(h, m), _round_up(max(min_size, 1), m))
    pw = max(_round_up(w, m), _round_up(max(min_size, 1), m))
    tile_h, tile_w = (spec.tile, spec.tile) if isinstance(spec.tile, int) else (int(spec.tile[0]), int(spec.tile[1]))
    min_m = _round_up(max(min_size, 1), m)
    if tile_h <= 0 or tile_w <= 0 or (tile_h >= ph and tile_w >= pw):
        th, tw = ph, pw
    else:
        th = min(max(m, (tile_h // m) * m, min_m), ph)
        tw = min(max(m, (tile_w // m) * m, min_m), pw)
    if not isinstance(spec.tile, int) and (ph < tile_h or pw < tile_w):
        # a fixed-size model: the canvas must hold at least one whole tile
        ph, pw = max(ph, tile_h), max(pw, tile_w)
        th, tw = tile_h, tile_w
    overlap_y = min(spec.overlap, th - 1) if th < ph else 0
    overlap_x = min(spec.overlap, tw - 1) if tw < pw else 0
    ys = plan_axis(ph, th, overlap_y)
    xs = plan_axis(pw, tw, overlap_x)
    wy = _axis_weights(ys, th, scale)
    wx = _axis_weights(xs, tw, scale)

    src = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    src = _pad_to(src, ph, pw)[0]
    acc = np.zeros((c_out, ph * scale, pw * scale), dtype=np.float32)
    wsum = np.zeros((ph * scale, pw * scale), dtype=np.float32)
    jobs = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    total = len(jobs)
    autocast = dtype in (torch.float16, torch.bfloat16)
    batch = max(1, int(spec.batch))
    done = 0
    with torch.inference_mode():
        for b0 in range(0, total, batch):
            chunk = jobs[b0 : b0 + batch]
            x = torch.stack([src[:, ys[iy] : ys[iy] + th, xs[ix] : xs[ix] + tw] for iy, ix in chunk])
            x = x.to(device, non_blocking=True)
            if autocast:
                with torch.autocast(device_type=device.type, dtype=dtype):
                    y = forward(x)
            else:
                y = forward(x)
            y = y.float().cpu().numpy()
            if y.shape[1:] != (c_out, th * scale, tw * scale):
                raise ValueError(f"model returned {tuple(y.shape[1:])}, expected {(c_out, th * scale, tw * scale)}")
            for k, (iy, ix) in enumerate(chunk):
                oy, ox = ys[iy] * scale, xs[ix] * scale
                wt = np.outer(wy[iy], wx[ix])
                acc[:, oy : oy + th * scale, ox : ox + tw * scale] += y[k] * wt
                wsum[oy : oy + th * scale, ox : ox + tw * scale] += wt
            done += len(chunk)
            if progress:
                progress(done, total)
    acc /= wsum
    return acc[:, : h * scale, : w * scale]
